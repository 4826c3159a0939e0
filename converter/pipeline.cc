// ConvertFile: the parent side of a conversion. Everything the worker sends is
// hostile: each frame is capped before it is read, the proposed header is
// rebuilt from validated values (nothing is copied through), every tensor's
// byte count is enforced by the writer, and the output only appears, by an
// atomic rename, when the worker exited cleanly and every check passed.
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "converter/digest.h"
#include "converter/format.h"
#include "converter/worker_stream.h"
#include "converter/writer.h"
#include "proto/worker.pb.h"
#include "safemodel/convert.h"
#include "safemodel/limits.h"
#include "sandbox/frame_io.h"
#include "sandbox/observe.h"
#include "sandbox/supervisor.h"

#ifndef SAFEMODEL_VERSION
#define SAFEMODEL_VERSION "0.0.0"
#endif
#ifndef SAFEMODEL_INSTALL_WORKER
#define SAFEMODEL_INSTALL_WORKER ""
#endif

namespace safemodel {

const char* ConverterVersion() { return "safemodel " SAFEMODEL_VERSION; }

namespace {

using Clock = std::chrono::steady_clock;
using sandbox::FrameType;

// Address space the worker needs besides its input map and its data: shared
// libraries, stacks, HDF5 and protobuf caches.
constexpr uint64_t kAddressSpaceSlack = 1ull << 30;
constexpr uint64_t kMinMemoryLimit = 16ull << 20;

std::string Num(uint64_t v) { return std::to_string(v); }

std::string ErrnoText() { return std::strerror(errno); }

// SHA-256 of the input, computed by this (trusted) process on a thread while
// the worker converts. Reads through a small reused buffer: no page faults on
// fresh memory, no growth of resident memory with the input size.
class InputHasher {
 public:
  void Start(int fd, uint64_t size) {
    thread_ = std::thread([this, fd, size] { Run(fd, size); });
  }
  ~InputHasher() { Stop(); }
  void Stop() {
    cancel_ = true;
    if (thread_.joinable()) thread_.join();
  }
  Result<std::string> Join() {
    if (thread_.joinable()) thread_.join();
    if (!status_.ok()) return status_;
    return digest_;
  }

 private:
  void Run(int fd, uint64_t size) {
    constexpr size_t kBuf = 4 << 20;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kBuf]);
    auto hasher = MakeHasher(DigestAlgorithm::kSha256);
    uint64_t off = 0;
    while (off < size && !cancel_) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kBuf, size - off));
      ssize_t n = pread(fd, buf.get(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status_ = Status::IoError("reading the input for its SHA-256 failed at byte " + Num(off) +
                                  (n < 0 ? ": " + ErrnoText() : ": unexpected end of file"));
        return;
      }
      hasher->Update(ByteView(buf.get(), static_cast<size_t>(n)));
      off += static_cast<uint64_t>(n);
    }
    if (cancel_) {
      status_ = Status::Internal("hashing cancelled");
      return;
    }
    digest_ = hasher->Finish();
  }
  std::thread thread_;
  std::atomic<bool> cancel_{false};
  Status status_;
  std::string digest_;
};

// An output file that exists only after Commit().
//
// The data goes to an anonymous file (O_TMPFILE) in the output directory:
// if this process is killed (SIGKILL, Ctrl-C, a batch scheduler), the
// kernel frees it and nothing is left behind. Commit links it under a
// hidden temporary name and renames that over the final path (rename is
// the atomic step; linkat cannot replace an existing file). Filesystems
// without O_TMPFILE get a named hidden temporary file from the start,
// removed on every failure path; only a kill can leave that one behind.
class TempOutput {
 public:
  ~TempOutput() { Discard(); }
  Status Create(const std::string& final_path) {
    final_ = final_path;
    std::filesystem::path p(final_path);
    dir_ = p.has_parent_path() ? p.parent_path().string() : ".";
    name_ = p.filename().string();
    if (name_.empty() || name_ == "." || name_ == "..") {
      return Status::InvalidArgument("output path '" + final_path + "' names no file");
    }
    // Naming an anonymous file later goes through /proc/self/fd (linkat
    // by descriptor alone needs a capability on older kernels): without
    // /proc, or if O_TMPFILE fails for any reason (filesystem, seccomp
    // filter of a container runtime), a named temporary file is used; a
    // real problem (permissions, no directory) is reported by mkostemp.
    if (access("/proc/self/fd", X_OK) == 0) {
      fd_ = open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
    }
    if (fd_ >= 0) {
      anonymous_ = true;
    } else {
      SAFEMODEL_ASSIGN_OR_RETURN(fd_, MakeNamed(&tmp_));
    }
    fchmod(fd_, 0644);
    return Status::Ok();
  }
  int fd() const { return fd_; }
  Status Commit(bool sync) {
    if (sync && fsync(fd_) != 0) return Status::IoError("fsync of the output failed: " + ErrnoText());
    if (anonymous_) SAFEMODEL_RETURN_IF_ERROR(LinkAnonymous());
    if (close(fd_) != 0) {
      fd_ = -1;
      return Status::IoError("closing the output failed: " + ErrnoText());
    }
    fd_ = -1;
    if (rename(tmp_.c_str(), final_.c_str()) != 0) {
      return Status::IoError("renaming the output into place failed: " + ErrnoText());
    }
    tmp_.clear();
    if (sync) {
      int dfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
    }
    return Status::Ok();
  }
  void Discard() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) unlink(tmp_.c_str());
    tmp_.clear();
  }

 private:
  // A new hidden file next to the output, named by mkostemp (which fills in
  // the template's last six characters).
  Result<int> MakeNamed(std::string* path) const {
    const std::string tmpl = dir_ + "/." + name_ + ".tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    int fd = mkostemp(buf.data(), O_CLOEXEC);
    if (fd < 0) {
      return Status::IoError("cannot create a temporary file in '" + dir_ + "': " + ErrnoText());
    }
    path->assign(buf.data());
    return fd;
  }

  // Gives the anonymous file a hidden name next to the final path.
  Status LinkAnonymous() {
    const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
    for (int attempt = 0; attempt < 100; ++attempt) {
      // A fresh unique name: mkstemp's, then freed for linkat.
      std::string name;
      SAFEMODEL_ASSIGN_OR_RETURN(int probe, MakeNamed(&name));
      close(probe);
      unlink(name.c_str());
      int r = linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW);
      if (r == 0) {
        tmp_ = std::move(name);
        return Status::Ok();
      }
      if (errno != EEXIST) break;
    }
    return Status::IoError("cannot give the output a name in '" + dir_ + "': " + ErrnoText());
  }

  std::string final_, dir_, name_, tmp_;
  int fd_ = -1;
  bool anonymous_ = false;
};

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string FindWorker(const ConvertOptions& options) {
  if (!options.worker_path.empty()) return options.worker_path;
  std::vector<std::string> candidates;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ConvertFile), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    auto self = std::filesystem::canonical(info.dli_fname, ec);
    if (!ec) {
      candidates.push_back((self.parent_path() / "safemodel-worker").string());
      candidates.push_back((self.parent_path().parent_path() / "libexec" / "safemodel" /
                            "safemodel-worker").string());
    }
  }
  if (std::string(SAFEMODEL_INSTALL_WORKER).size() > 0) candidates.push_back(SAFEMODEL_INSTALL_WORKER);
  for (const std::string& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

// The layers the parent must observe: the mandatory ones and those the
// caller asked for, or an error naming one that cannot be observed.
Result<std::vector<std::string>> RequiredLayers(const ConvertOptions& opt) {
  std::vector<std::string> required = sandbox::MandatoryLayers();
  const auto& known = sandbox::ObservableLayers();
  for (const std::string& layer : opt.required_isolation) {
    if (std::find(known.begin(), known.end(), layer) == known.end()) {
      std::string names;
      for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
      return Status::InvalidArgument(
          "unknown isolation layer '" + layer + "' (the parent can verify: " + names +
          (layer == "landlock" ? "; Landlock is not visible in /proc" : "") + ")");
    }
    if (std::find(required.begin(), required.end(), layer) == required.end()) {
      required.push_back(layer);
    }
  }
  return required;
}

// Checks the locked-down worker in /proc (sandbox/observe.h), records what
// was seen, and lets the worker go on only if every required layer is there.
Status VerifyIsolation(sandbox::Worker& worker, const std::vector<std::string>& required,
                       ConvertReport* report) {
  sandbox::IsolationObservation obs = sandbox::ObserveIsolation(worker.pid());
  report->worker.isolation = obs.layers;
  report->worker.observed = std::move(obs.facts);
  std::string missing;
  for (const std::string& layer : required) {
    if (!obs.Has(layer)) missing += (missing.empty() ? "" : ", ") + layer;
  }
  if (!missing.empty()) {
    return Status(StatusCode::kSandboxSetupFailed,
                  "the worker lacks required isolation: " + missing +
                      " (checked in /proc/<pid> before it read its input" +
                      (obs.error.empty() ? "" : "; " + obs.error) + ")");
  }
  if (!worker.Release()) {
    return Status(StatusCode::kSandboxSetupFailed, "the worker ended before it was released");
  }
  return Status::Ok();
}

// After a worker exited with its result channel still open: wait briefly for
// the processes holding it to die (the process group was killed) and say
// which case it was.
std::string HeldOpenOutcome(int channel_fd) {
  constexpr int kGraceMs = 1000;  // SIGKILLed processes close their fds at once
  struct pollfd pfd = {channel_fd, POLLIN, 0};
  const auto until = Clock::now() + std::chrono::milliseconds(kGraceMs);
  while (Clock::now() < until) {
    char buf[4096];
    if (poll(&pfd, 1, 50) > 0 && read(channel_fd, buf, sizeof buf) == 0) {
      return "it was killed with the worker's process group";
    }
  }
  return "it has left the worker's process group and could not be stopped";
}

// How the worker's run ended, most specific cause first (README "Sandbox"):
// timeout > seccomp violation > missing isolation > a channel held open
// after the worker's exit > output I/O error or limit > invalid result >
// crash > the worker's own error report > non-zero exit > incomplete result.
// OK only for a complete result from a worker that exited 0.
Status Verdict(const WorkerStream& stream, const sandbox::Worker::Exit& exit, int channel_fd,
               uint64_t timeout_ms, uint64_t cpu_seconds, WorkerOutcome* w) {
  if (stream.timed_out || exit.kind == sandbox::Worker::Exit::Kind::kTimeout) {
    w->kind = "timeout";
    return Status(StatusCode::kTimeout, "the conversion exceeded its time limit of " +
                                            Num(timeout_ms) + " ms; the worker was killed");
  }
  if (exit.kind == sandbox::Worker::Exit::Kind::kWaitFailed) {
    w->kind = "unknown";
    return Status::Internal(exit.error);
  }
  if (stream.violation || (exit.kind == sandbox::Worker::Exit::Kind::kSignaled &&
                           exit.signal == SIGSYS && !exit.killed_by_us)) {
    w->kind = "seccomp";
    if (stream.violation) {
      w->syscall_nr = static_cast<int>(stream.violation_nr);
      w->syscall_name = sandbox::SyscallName(static_cast<int>(stream.violation_nr));
      return Status(StatusCode::kSandboxViolation,
                    "the sandbox stopped the worker: it attempted the forbidden system call " +
                        Num(stream.violation_nr) + " (" +
                        (w->syscall_name.empty() ? "unknown"
                                                             : w->syscall_name) +
                        ")");
    }
    return Status(StatusCode::kSandboxViolation,
                  "the sandbox killed the worker (SIGSYS: a system call of a foreign "
                  "architecture or ABI)");
  }
  if (!stream.isolation.ok()) {
    w->kind = "killed";
    return stream.isolation;
  }
  if (stream.held_open) {
    w->kind = exit.kind == sandbox::Worker::Exit::Kind::kSignaled ? "signaled" : "exited";
    return Status(StatusCode::kWorkerCrashed,
                  "the worker exited, but a process it started still held the result channel "
                  "open; " + HeldOpenOutcome(channel_fd) + "; nothing was written");
  }
  if (!stream.io.ok() || !stream.limit.ok()) {
    w->kind = "killed";
    return !stream.io.ok() ? stream.io : stream.limit;
  }
  if (!stream.protocol.ok()) {
    w->kind = exit.kind == sandbox::Worker::Exit::Kind::kSignaled ? "signaled" : "exited";
    return Status(StatusCode::kWorkerCrashed,
                  "the worker sent an invalid result (" + stream.protocol.message() +
                      "); nothing was written");
  }
  if (exit.kind == sandbox::Worker::Exit::Kind::kSignaled) {
    w->kind = "signaled";
    if (exit.signal == SIGXCPU ||
        (exit.signal == SIGKILL && exit.cpu_seconds >= static_cast<double>(cpu_seconds))) {
      return Status::LimitExceeded("the worker exceeded its CPU time limit of " + Num(cpu_seconds) +
                                   " s");
    }
    return Status(StatusCode::kWorkerCrashed,
                  "the worker crashed with " + SignalName(exit.signal) +
                      (exit.signal == SIGKILL ? " (possibly the kernel's out-of-memory killer)" : ""));
  }
  w->kind = "exited";
  if (stream.error_frame) return stream.worker_error;
  if (exit.exit_code != 0) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker exited with code " + Num(static_cast<uint64_t>(exit.exit_code)) +
                      " without reporting a result");
  }
  if (!stream.done) {
    return Status(StatusCode::kWorkerCrashed, "the worker ended without completing its result");
  }
  return Status::Ok();
}

}  // namespace

uint64_t EffectiveTimeoutMs(const ConvertOptions& options, uint64_t input_bytes) {
  if (options.timeout_ms != 0) return options.timeout_ms;
  // Conversion runs at ~1 GB/s here; 20 s per GiB is a floor of ~50 MB/s
  // (a cold, slow disk). The fixed part covers small files, whose parse
  // takes milliseconds: a parser stuck in a loop (libhdf5 1.10 has such
  // bugs on crafted files) is stopped after two minutes, not ten.
  constexpr uint64_t kBaseMs = 120'000;
  constexpr uint64_t kPerGiBMs = 20'000;
  return kBaseMs + (input_bytes >> 30) * kPerGiBMs + ((input_bytes & ((1u << 30) - 1)) != 0 ? kPerGiBMs : 0);
}

namespace {

Status Convert(const std::string& in_path, const std::string& out_path, const ConvertOptions& opt,
               ConvertReport* report) {
  const auto start = Clock::now();
  if (opt.memory_limit_bytes < kMinMemoryLimit) {
    return Status::InvalidArgument("the memory limit must be at least " + Num(kMinMemoryLimit) +
                                   " bytes");
  }
  int in_fd = open(in_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (in_fd < 0) {
    if (errno == ELOOP) {
      return Status::InvalidArgument("input '" + in_path +
                                     "' is a symbolic link; pass the path of the file itself");
    }
    if (errno == ENOENT) return Status::InvalidArgument("input '" + in_path + "' does not exist");
    return Status::IoError("cannot open input '" + in_path + "': " + ErrnoText());
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } in_closer{in_fd};
  struct stat st_before;
  if (fstat(in_fd, &st_before) != 0) return Status::IoError("fstat of the input: " + ErrnoText());
  if (!S_ISREG(st_before.st_mode)) {
    return Status::InvalidArgument("input '" + in_path + "' is not a regular file");
  }
  fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) & ~O_NONBLOCK);
  const auto input_size = static_cast<uint64_t>(st_before.st_size);
  report->input_bytes = input_size;
  if (input_size == 0) return Status::Malformed("input '" + in_path + "' is empty");
  if (input_size > opt.max_input_bytes) {
    return Status::LimitExceeded("input is " + Num(input_size) + " bytes, over the limit of " +
                                 Num(opt.max_input_bytes));
  }
  struct stat st_out;
  if (stat(out_path.c_str(), &st_out) == 0 && st_out.st_dev == st_before.st_dev &&
      st_out.st_ino == st_before.st_ino) {
    return Status::InvalidArgument("the output path is the input file");
  }

  std::vector<std::string> options;
  if (opt.weights_only) options.push_back("weights_only");
  if (opt.keep_optimizer) options.push_back("keep_optimizer");
  std::sort(options.begin(), options.end());
  report->options = options;

  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<std::string> required_layers, RequiredLayers(opt));
  std::string worker_path = FindWorker(opt);
  if (worker_path.empty()) {
    return Status(StatusCode::kSandboxSetupFailed,
                  "cannot find the safemodel-worker executable next to the library or in " +
                      std::string(SAFEMODEL_INSTALL_WORKER));
  }

  TempOutput out;
  SAFEMODEL_RETURN_IF_ERROR(out.Create(out_path));

  InputHasher hasher;
  hasher.Start(in_fd, input_size);

  const uint64_t timeout_ms = EffectiveTimeoutMs(opt, input_size);
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  uint64_t cpu_seconds = opt.cpu_limit_seconds;
  if (cpu_seconds == 0) cpu_seconds = timeout_ms / 1000 + 1;
  uint64_t address_space = 0;
  if (!CheckedAdd(input_size, opt.memory_limit_bytes, &address_space) ||
      !CheckedAdd(address_space, kAddressSpaceSlack, &address_space)) {
    return Status::InvalidArgument("memory limit overflows");
  }
  sandbox::SpawnOptions spawn;
  spawn.worker_path = worker_path;
  spawn.input_fd = in_fd;
  spawn.args = {"--parent-pid=" + Num(static_cast<uint64_t>(getpid())),
                "--input-size=" + Num(input_size),
                "--address-space=" + Num(address_space),
                "--memory-limit=" + Num(opt.memory_limit_bytes),
                "--cpu-seconds=" + Num(cpu_seconds)};
  for (const std::string& o : options) spawn.args.push_back("--" + o);
  sandbox::Worker worker;
  std::string spawn_error;
  if (!sandbox::Spawn(spawn, &worker, &spawn_error)) {
    return Status(StatusCode::kSandboxSetupFailed, spawn_error);
  }

  // The reader also watches the worker's exit, so that a process it left
  // behind holding the channel cannot keep the parent waiting.
  sandbox::FrameReader reader(worker.channel_fd(), deadline, worker.exit_fd());
  WorkerStream stream;
  const LockedHook on_locked = [&](const std::vector<std::string>&) {
    return VerifyIsolation(worker, required_layers, report);
  };
  ReadWorkerStream(reader, out.fd(), input_size, options, opt.digest, opt.max_output_bytes,
                   on_locked, report, &stream);
  if (stream.timed_out || stream.held_open || !stream.isolation.ok() || !stream.protocol.ok() ||
      !stream.io.ok() || !stream.limit.ok()) {
    worker.Kill();
  }
  sandbox::Worker::Exit exit = worker.Wait(deadline);
  report->worker.max_rss_bytes = exit.max_rss_bytes;
  report->worker.cpu_seconds = exit.cpu_seconds;
  report->worker.exit_code = exit.exit_code;
  report->worker.signal = exit.signal;

  // Verdict, most specific cause first; OK means the result may be committed.
  SAFEMODEL_RETURN_IF_ERROR(
      Verdict(stream, exit, worker.channel_fd(), timeout_ms, cpu_seconds, &report->worker));

  SAFEMODEL_ASSIGN_OR_RETURN(std::string sha, hasher.Join());
  struct stat st_after;
  if (fstat(in_fd, &st_after) != 0 || st_after.st_size != st_before.st_size ||
      st_after.st_mtim.tv_sec != st_before.st_mtim.tv_sec ||
      st_after.st_mtim.tv_nsec != st_before.st_mtim.tv_nsec ||
      st_after.st_ctim.tv_sec != st_before.st_ctim.tv_sec ||
      st_after.st_ctim.tv_nsec != st_before.st_ctim.tv_nsec) {
    return Status::IoError("the input file changed during the conversion");
  }
  report->input_sha256 = ToHex(sha);
  SAFEMODEL_RETURN_IF_ERROR(stream.writer->Finish(sha));
  report->tensor_count = stream.writer->tensor_count();
  report->tensor_bytes = stream.data_bytes;
  report->output_bytes = stream.writer->file_size();
  SAFEMODEL_RETURN_IF_ERROR(out.Commit(opt.sync_output));
  return Status::Ok();
}

}  // namespace

ConvertReport ConvertFile(const std::string& input_path, const std::string& output_path,
                          const ConvertOptions& options) {
  ConvertReport report;
  report.input_path = input_path;
  report.output_path = output_path;
  auto t0 = Clock::now();
  report.status = Convert(input_path, output_path, options, &report);
  report.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  struct rusage self;
  if (getrusage(RUSAGE_SELF, &self) == 0) {
    report.parent_max_rss_bytes = static_cast<uint64_t>(self.ru_maxrss) * 1024;
  }
  return report;
}

}  // namespace safemodel
