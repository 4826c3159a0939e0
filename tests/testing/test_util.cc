#include "tests/testing/test_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

namespace safemodel::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string base = fs::temp_directory_path().string() + "/safemodel-test-XXXXXX";
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) std::abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::string> TempDir::List() const {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string Fixture(const std::string& relative) {
  return std::string(SAFEMODEL_SOURCE_DIR) + "/tests/fixtures/" + relative;
}

std::string CorpusFile(const std::string& relative) {
  std::string p = std::string(SAFEMODEL_SOURCE_DIR) + "/../shared/corpus/" + relative;
  return fs::exists(p) ? p : "";
}

std::string BinDir() { return SAFEMODEL_BIN_DIR; }

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool Exists(const std::string& path) { return fs::exists(path); }

bool ForkServerMode() {
  const char* v = std::getenv("SAFEMODEL_TEST_FORK_SERVER");
  return v != nullptr && std::string(v) == "1";
}

ConvertReport Convert(const std::string& in, const std::string& out, ConvertOptions options) {
  if (ForkServerMode() && !options.fork_server) {
    // One fork server per worker, kept for the whole test program: each
    // conversion's worker is forked from a zygote that forked the previous.
    static std::mutex mutex;
    static std::map<std::string, std::shared_ptr<sandbox::ForkServer>> servers;
    std::lock_guard<std::mutex> lock(mutex);
    std::shared_ptr<sandbox::ForkServer>& server = servers[options.worker_path];
    if (!server) {
      Result<std::shared_ptr<sandbox::ForkServer>> started = StartForkServer(options);
      if (!started.ok()) {
        ConvertReport failed;
        failed.status = started.status();
        return failed;
      }
      server = *started;
    }
    options.fork_server = server;
  }
  options.sync_output = false;
  if (options.timeout_ms == 0) options.timeout_ms = 60'000;
  return ConvertFile(in, out, options);
}

int RunCommand(const std::string& command, std::string* output, bool stderr_too) {
  FILE* p = popen((command + (stderr_too ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (p == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

pid_t StartChild(const std::vector<std::string>& argv, const ChildOptions& options) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls from here on.
  for (const auto& [resource, value] : options.rlimits) {
    struct rlimit rl = {value, value};
    if (setrlimit(resource, &rl) != 0) _exit(125);
  }
  for (const std::string& e : options.env) putenv(const_cast<char*>(e.c_str()));
  if (options.umask >= 0) umask(static_cast<mode_t>(options.umask));
  auto redirect = [](const std::string& file, int target) {
    int fd = open(file.empty() ? "/dev/null" : file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, target) < 0) _exit(126);
    close(fd);
  };
  redirect(options.stdout_file, 1);
  redirect(options.stderr_file, 2);
  // Only the three standard descriptors, as a shell would start it.
  syscall(SYS_close_range, 3, ~0U, 0);
  execv(args[0], args.data());
  _exit(127);
}

int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

int RunChild(const std::vector<std::string>& argv, const ChildOptions& options) {
  return WaitChild(StartChild(argv, options));
}

bool WaitFor(const std::function<bool()>& ready, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!ready()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

int64_t OpenOutputSize(pid_t pid, const std::string& dir) {
  int64_t largest = -1;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fd_dir, ec)) {
    std::error_code link_ec;
    const std::string target = fs::read_symlink(e.path(), link_ec).string();
    if (link_ec || target.compare(0, dir.size() + 1, dir + "/") != 0) continue;
    struct stat st;
    if (stat(e.path().c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      largest = std::max<int64_t>(largest, st.st_size);
    }
  }
  return largest;
}

std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
    const std::string stat = ReadFile(e.path().string() + "/stat");
    const size_t open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && stat.substr(open + 1, close - open - 1) == comm) {
      out.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return out;
}

std::string NpyImage(const std::string& descr, bool fortran, const std::string& shape,
                     const std::string& data) {
  std::string header = "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
                       ", 'shape': (" + shape + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out.reserve(out.size() + header.size() + data.size());
  return out + header + data;
}

std::string NpyBytes(uint64_t n) {
  std::string data;
  data.reserve(n);
  for (uint64_t i = 0; i < n; ++i) data += static_cast<char>(i % 251);
  return NpyImage("|u1", false, std::to_string(n) + ",", data);
}

int64_t ResidentPages(const std::string& path, uint64_t from, uint64_t to) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st{};
  const bool sized = fstat(fd, &st) == 0 && st.st_size > 0;
  const auto size = sized ? static_cast<size_t>(st.st_size) : 0;
  void* map = sized ? mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  close(fd);
  if (map == MAP_FAILED) return -1;
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in((size + page - 1) / page);
  const bool told = mincore(map, size, in.data()) == 0;
  munmap(map, size);
  if (!told) return -1;
  int64_t n = 0;
  for (uint64_t p = from / page; p < to / page && p < in.size(); ++p) n += (in[p] & 1u) != 0 ? 1 : 0;
  return n;
}

int MappedHere(const void* address) {
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uint64_t entry = 0;
  const auto at = static_cast<off_t>(reinterpret_cast<uintptr_t>(address) / page * sizeof(entry));
  const bool read = pread(fd, &entry, sizeof(entry), at) == static_cast<ssize_t>(sizeof(entry));
  close(fd);
  if (!read) return -1;
  return (entry >> 63) != 0 ? 1 : 0;  // bit 63: page present
}

uint64_t ProcStatusBytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  const std::string prefix = field + ":";
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stoull(line.substr(prefix.size())) * 1024;  // kB
  }
  return 0;
}

bool ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

MappedFile::MappedFile(const std::string& image) : size_(image.size()) {
  WriteFile(dir_.File("image"), image);
  const int fd = open(dir_.File("image").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p != MAP_FAILED) data_ = p;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(data_, size_);
}

void MappedFile::Drop() const { madvise(data_, size_, MADV_DONTNEED); }

bool PageCacheDropWorks(const std::string& dir) {
  const std::string path = dir + "/page-cache-probe";
  constexpr size_t kBytes = 1 << 20;
  WriteFile(path, std::string(kBytes, '\x5a'));
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  bool dropped = false;
  if (fd >= 0) {
    dropped = sync_file_range(fd, 0, kBytes,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) == 0 &&
              posix_fadvise(fd, 0, kBytes, POSIX_FADV_DONTNEED) == 0;
    close(fd);
  }
  dropped = dropped && ResidentPages(path, 0, kBytes) == 0;
  unlink(path.c_str());
  return dropped;
}

namespace {
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}
}  // namespace

int RunPython(const std::string& script, const std::vector<std::string>& args, std::string* output) {
  if (access("/usr/bin/python3", X_OK) != 0) return -1;
  std::string cmd = "/usr/bin/python3 " + Quote(script);
  for (const std::string& a : args) cmd += " " + Quote(a);
  return RunCommand(cmd, output);
}

bool PythonHas(const std::vector<std::string>& modules) {
  if (access("/usr/bin/python3", X_OK) != 0) return false;
  std::string imports;
  for (const std::string& m : modules) imports += "import " + m + ";";
  return RunCommand("/usr/bin/python3 -c " + Quote(imports)) == 0;
}

}  // namespace safemodel::testing
