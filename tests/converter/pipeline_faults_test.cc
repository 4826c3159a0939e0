// ConvertFile under faults: inputs that are not regular files or change
// during the conversion, workers killed from outside, inherited resource
// limits, and full disks. Each conversion that must be "in progress" runs
// against slow-worker (tests/converter/slow_worker.cc) and the test acts
// when the conversion's reserved output is open, never after a sleep.
#include <fcntl.h>
#include <signal.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <thread>

#include "converter/worker_limits.h"
#include "safemodel/convert.h"
#include "safemodel/reader.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

namespace safemodel::testing {
namespace {

std::string SlowWorker() { return BinDir() + "/slow-worker"; }

// An input for slow-worker: its mode line, padded to `size` bytes.
std::string SlowInput(const std::string& line, uint64_t size) {
  std::string s = line + "\n";
  s.resize(std::max<uint64_t>(size, s.size()), 'p');
  return s;
}

// Runs ConvertFile on a thread of this process; the test acts meanwhile.
class Background {
 public:
  Background(std::string in, std::string out, ConvertOptions opt)
      : thread_([this, in, out, opt] { report_ = Convert(in, out, opt); }) {}
  ~Background() {
    if (thread_.joinable()) thread_.join();
  }
  const ConvertReport& Join() {
    thread_.join();
    return report_;
  }

 private:
  ConvertReport report_;
  std::thread thread_;
};

// The conversion into `dir` is in progress: its output is open here and
// reserved (the worker's header arrived).
bool InProgress(const TempDir& dir, int64_t at_least = 1) {
  return OpenOutputSize(getpid(), dir.path()) >= at_least;
}

TEST(PipelineFaults, SpecialInputsAreUsageErrorsFoundBeforeAnyWork) {
  TempDir dir;
  const std::string out = dir.File("out");
  ASSERT_EQ(mkfifo(dir.File("fifo").c_str(), 0600), 0);  // no writer: opening would block
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, dir.File("sock").c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::vector<std::pair<std::string, std::string>> cases = {
      {dir.File("fifo"), "is a FIFO"},
      {dir.File("sock"), "is a socket"},
      {"/dev/null", "is a character device"},
      // A directory is listed, never its special files opened.
      {dir.path(), "is not a regular file or directory [input.not_regular]"},
      {"/proc/self/status", "is on procfs"},
  };
  for (const char* sys : {"/sys/kernel/mm/transparent_hugepage/enabled", "/sys/power/state",
                          "/sys/kernel/uevent_seqnum"}) {
    if (access(sys, R_OK) == 0) {
      cases.push_back({sys, "is on sysfs"});
      break;
    }
  }
  for (const auto& [path, why] : cases) {
    ConvertReport r = Convert(path, out);
    EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument) << path << ": " << r.status.ToString();
    EXPECT_EQ(ExitCodeFor(r.status.code()), 2);
    EXPECT_NE(r.status.message().find(why), std::string::npos) << r.status.ToString();
    EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kNotStarted);
  }
  close(sock);
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"fifo", "sock"}));
}

// CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH let root read anything: drop
// them from this (forked) process so that a mode-000 file is unreadable.
bool DropDacCapabilities() {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  for (int cap : {CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH}) {
    data[cap / 32].effective &= ~(1u << (cap % 32));
  }
  return syscall(SYS_capset, &header, data) == 0;
}

TEST(PipelineFaults, AnUnreadableInputIsAUsageError) {
  TempDir dir;
  WriteFile(dir.File("in.npy"), ReadFile(Fixture("numpy/f32.npy")));
  ASSERT_EQ(chmod(dir.File("in.npy").c_str(), 0), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && !DropDacCapabilities()) _exit(10);
    ConvertReport r = Convert(dir.File("in.npy"), dir.File("out"));
    if (r.status.message().find("cannot be read: Permission denied") == std::string::npos) _exit(11);
    _exit(ExitCodeFor(r.status.code()));
  }
  EXPECT_EQ(WaitChild(pid), 2);
  EXPECT_EQ(dir.List(), std::vector<std::string>{"in.npy"});
}

// The parent knows the input's identity and size: whatever the worker saw
// (a SIGBUS in its map when the file shrinks, different bytes when it is
// rewritten), the verdict is exit 6 "the input changed during the
// conversion", and nothing is written.
TEST(PipelineFaults, AnInputThatChangesDuringTheConversionIsExitSix) {
  constexpr uint64_t kSize = 1 << 20;
  const std::string line = "slow:trickle " + std::to_string(kSize) + " 4096 4";
  struct Case {
    const char* name;
    std::function<void(const std::string&)> change;
    const char* says;
  };
  const Case cases[] = {
      {"truncated", [](const std::string& p) { ASSERT_EQ(truncate(p.c_str(), 4096), 0); },
       "its size went from 1048576 to 4096 bytes"},
      {"rewritten in place",
       [](const std::string& p) {
         int fd = open(p.c_str(), O_WRONLY);
         ASSERT_EQ(pwrite(fd, "X", 1, kSize - 10), 1);
         close(fd);
       },
       "it was written to"},
      {"grown",
       [](const std::string& p) { ASSERT_EQ(truncate(p.c_str(), kSize + 4096), 0); },
       "its size went from 1048576 to 1052672 bytes"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir, in_dir;  // apart: the parent holds the input open too
    const std::string in = in_dir.File("in");
    WriteFile(in, SlowInput(line, kSize));
    // An hour-old modification time: a change made within the same tick of
    // the kernel's coarse file clock must still show (README, "Limits").
    const struct timespec an_hour_ago[2] = {{time(nullptr) - 3600, 0}, {time(nullptr) - 3600, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, in.c_str(), an_hour_ago, 0), 0);
    ConvertOptions opt;
    opt.worker_path = SlowWorker();
    Background conversion(in, dir.File("out"), opt);
    ASSERT_TRUE(WaitFor([&] { return InProgress(dir); }));
    c.change(in);
    const ConvertReport& r = conversion.Join();
    EXPECT_EQ(r.status.code(), StatusCode::kIoError) << r.status.ToString();
    EXPECT_EQ(ExitCodeFor(r.status.code()), 6);
    EXPECT_NE(r.status.message().find("the input changed during the conversion"), std::string::npos)
        << r.status.ToString();
    EXPECT_NE(r.status.message().find(c.says), std::string::npos) << r.status.ToString();
    if (std::string(c.name) == "truncated") {
      EXPECT_EQ(r.worker.signal, SIGBUS) << "the worker faulted in its map of the file";
    }
    EXPECT_EQ(dir.List(), std::vector<std::string>{});
  }
}

// A signal the worker cannot send itself is named, not reported as the
// broken stream it caused; SIGKILL carries the memory-limit hint.
TEST(PipelineFaults, AWorkerKilledFromOutsideIsReportedWithTheSignal) {
  for (const auto& [mode, sig] : {std::pair<const char*, int>{"partial", SIGKILL}, {"park", SIGKILL},
                                  {"park", SIGTERM}, {"partial", SIGUSR1}}) {
    SCOPED_TRACE(std::string(mode) + " " + strsignal(sig));
    TempDir dir, in_dir;
    WriteFile(in_dir.File("in"), SlowInput(std::string("slow:") + mode + " 1048576", 64));
    ConvertOptions opt;
    opt.worker_path = SlowWorker();
    opt.memory_limit_bytes = 300 << 20;
    Background conversion(in_dir.File("in"), dir.File("out"), opt);
    ASSERT_TRUE(WaitFor([&] { return InProgress(dir); }));
    std::vector<pid_t> workers = ChildrenNamed(getpid(), "slow-worker");
    ASSERT_EQ(workers.size(), 1u);
    ASSERT_EQ(kill(workers[0], sig), 0);
    const ConvertReport& r = conversion.Join();
    EXPECT_EQ(r.status.code(), StatusCode::kWorkerCrashed) << r.status.ToString();
    EXPECT_EQ(r.status.message().find("invalid result"), std::string::npos) << r.status.ToString();
    EXPECT_NE(r.status.message().find(std::string("killed by SIG") + sigabbrev_np(sig)), std::string::npos)
        << r.status.ToString();
    EXPECT_NE(r.status.message().find("cannot send itself"), std::string::npos) << r.status.ToString();
    if (sig == SIGKILL) {
      EXPECT_NE(r.status.message().find("out-of-memory killer"), std::string::npos);
      EXPECT_NE(r.status.message().find("may use 314572800 bytes, --memory-limit"), std::string::npos)
          << r.status.ToString();
    }
    EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kSignaled);
    EXPECT_EQ(r.worker.signal, sig);
    EXPECT_EQ(dir.List(), std::vector<std::string>{});
  }
}

// Space for the whole output is reserved from the worker's header on, before
// its first tensor byte: the in-progress output already has its final size.
TEST(PipelineFaults, TheOutputIsReservedBeforeItsFirstTensorByte) {
  TempDir dir, in_dir;
  WriteFile(in_dir.File("in"), SlowInput("slow:park 3000000", 64));
  ConvertOptions opt;
  opt.worker_path = SlowWorker();
  Background conversion(in_dir.File("in"), dir.File("out"), opt);
  ASSERT_TRUE(WaitFor([&] { return InProgress(dir); }));
  // The worker sent only its header; the output already holds 3,000,000
  // tensor bytes' worth of space (plus prefix, header and trailer).
  EXPECT_GE(OpenOutputSize(getpid(), dir.path()), 3'000'000);
  std::vector<pid_t> workers = ChildrenNamed(getpid(), "slow-worker");
  ASSERT_EQ(workers.size(), 1u);
  kill(workers[0], SIGKILL);
  conversion.Join();
  EXPECT_EQ(dir.List(), std::vector<std::string>{});
}

// A stored .npz's member CRC-32 is checked by the worker as it streams each
// tensor, and the frames gathered so far leave once a finished tensor
// stands for 4 MiB (worker_main.cc, kFlushAfterBytes): the parent copies
// the first tensor while the worker checks the second. A CRC error in the
// second then arrives after the parent received the header and copied the
// first tensor (the progress hook saw the output, which a worker holding
// every frame to the end never showed), and still fails the conversion
// exactly as for a small input whose frames never left, leaving nothing.
TEST(PipelineFaults, ACrcErrorAfterTheFirstTensorWasCopiedLeavesNothing) {
  std::vector<std::string> messages;
  for (const uint64_t tensor_bytes : {uint64_t{5} << 20, uint64_t{1} << 20}) {
    SCOPED_TRACE(tensor_bytes);
    TempDir dir;
    const std::string member = NpyBytes(tensor_bytes);
    WriteFile(dir.File("m.npz"),
              BuildZip({{.name = "a.npy", .data = member},
                        {.name = "b.npy", .data = member, .crc = Crc32Of(member) ^ 1}}));
    ConvertOptions opt;
    uint64_t seen = 0;
    opt.progress = [&seen](const ConvertProgress& p) { seen = std::max(seen, p.bytes_written); };
    const ConvertReport r = Convert(dir.File("m.npz"), dir.File("m.safemodel"), opt);
    EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
    EXPECT_NE(r.status.message().find("CRC mismatch"), std::string::npos) << r.status.ToString();
    EXPECT_EQ(dir.List(), std::vector<std::string>{"m.npz"});
    const std::string how = r.status.ToString() + "; worker exit " +
                            std::to_string(r.worker.exit_code) + ", signal " +
                            std::to_string(r.worker.signal);
    if (tensor_bytes >= (uint64_t{4} << 20)) {
      EXPECT_GE(seen, kProgressStepBytes)
          << "the first tensor was not copied before the error; " << how;
    } else {
      EXPECT_EQ(seen, 0u) << "the frames of a small input leave together; " << how;
    }
    // The same message but for the CRC values.
    messages.push_back(r.status.message().substr(0, r.status.message().find("(stored")));
  }
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0], "zip entry 'b.npy': CRC mismatch ");
  EXPECT_EQ(messages[0], messages[1]);
}

// A full file system, reached through this process's RLIMIT_FSIZE (in a
// child; the limit is process-wide): refused before writing, exit 4, the
// option named, nothing left and no SIGXFSZ.
TEST(PipelineFaults, AnOutputOverTheFileSizeLimitIsRefusedBeforeWriting) {
  TempDir dir;
  WriteFile(dir.File("in.npy"), NpyBytes(1 << 20));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_DFL);
    struct rlimit rl = {256 << 10, RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(10);
    ConvertReport r = Convert(dir.File("in.npy"), dir.File("out"));
    if (r.status.message().find("`ulimit -f`") == std::string::npos) _exit(11);
    _exit(ExitCodeFor(r.status.code()));
  }
  EXPECT_EQ(WaitChild(pid), 4);
  EXPECT_EQ(dir.List(), std::vector<std::string>{"in.npy"});
}

// Runs one conversion in a child under hard limits; returns its report.
nlohmann::json ConvertUnderLimits(const std::string& in, const std::string& out,
                                  const std::vector<std::pair<int, uint64_t>>& limits) {
  TempDir scratch;
  const std::string report_file = scratch.File("report.json");
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& [resource, value] : limits) {
      struct rlimit rl = {value, value};
      if (setrlimit(resource, &rl) != 0) _exit(10);
    }
    ConvertReport r = Convert(in, out);
    WriteFile(report_file, r.ToJson());
    _exit(0);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  return nlohmann::json::parse(ReadFile(report_file));
}

bool HasNote(const nlohmann::json& report, const std::string& text) {
  for (const auto& f : report["findings"]) {
    if (f["rule"] == "limits.inherited" && f["message"].get<std::string>().find(text) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// Hard limits below what the options ask for are fitted, noted in the
// report, and the conversion proceeds; below the minimum it is exit 4 with
// the `ulimit` that fixes it.
TEST(PipelineFaults, InheritedHardLimitsAreFittedAndNoted) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  GTEST_SKIP() << "sanitizers reserve terabytes of address space";
#endif
  TempDir dir;
  const std::string in = Fixture("numpy/stored.npz");
  const uint64_t as = 2ull << 30;  // default wish: input + 4 GiB + 1 GiB
  nlohmann::json r = ConvertUnderLimits(in, dir.File("a"), {{RLIMIT_AS, as}, {RLIMIT_CPU, 30}});
  EXPECT_EQ(r["status"], "ok") << r.dump(2);
  EXPECT_TRUE(HasNote(r, "limited to 2147483648 bytes, the inherited hard limit (`ulimit -v`)")) << r.dump(2);
  const uint64_t input_size = ReadFile(in).size();
  EXPECT_TRUE(HasNote(r, "its memory limit is " + std::to_string(as - input_size - kAddressSpaceFloor)))
      << r.dump(2);
  EXPECT_TRUE(HasNote(r, "CPU limit is 29 s instead of 61 s, to fit the inherited hard limit of 30 s"))
      << r.dump(2);
  EXPECT_TRUE(Model::Open(dir.File("a")).ok());

  // Room for the process itself, but not for the worker's minimum.
  r = ConvertUnderLimits(in, dir.File("b"), {{RLIMIT_AS, 200ull << 20}});
  EXPECT_EQ(r["exit_code"], 4) << r.dump(2);
  EXPECT_NE(r["message"].get<std::string>().find("raise it with `ulimit -H -v`"), std::string::npos)
      << r.dump(2);
  EXPECT_EQ(r["worker"]["outcome"], "not_started");
  EXPECT_EQ(dir.List(), std::vector<std::string>{"a"});
}

// The library spawns its worker with posix_spawn and closes what it opens:
// a handful of descriptors suffice, and too few is exit 4 naming `ulimit -n`.
TEST(PipelineFaults, AFewDescriptorsAreEnough) {
  TempDir dir;
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The limit that leaves exactly `free_slots` descriptor numbers unused.
    auto limit_with = [](int free_slots) {
      rlim_t limit = 0;
      for (int unused = 0; unused < free_slots; ++limit) {
        if (fcntl(static_cast<int>(limit), F_GETFD) < 0) ++unused;
      }
      return limit;
    };
    // The input and the conversion's own descriptors: enough.
    rlim_t limit = limit_with(1 + kConversionDescriptors);
    struct rlimit rl = {limit, limit};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(10);
    if (!Convert(Fixture("numpy/f32.npy"), dir.File("ok")).status.ok()) _exit(11);
    limit = limit_with(1 + kConversionDescriptors - 3);
    rl = {limit, limit};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(12);
    ConvertReport r = Convert(Fixture("numpy/f32.npy"), dir.File("too_few"));
    if (r.status.message().find("`ulimit -n`") == std::string::npos) _exit(13);
    _exit(ExitCodeFor(r.status.code()));
  }
  EXPECT_EQ(WaitChild(pid), 4);
  EXPECT_EQ(dir.List(), std::vector<std::string>{"ok"});
}

TEST(PipelineFaults, ADescriptorGetsTheOutputOnlyWhenItIsValid) {
  TempDir dir;
  ASSERT_TRUE(Convert(Fixture("numpy/stored.npz"), dir.File("file.safemodel")).status.ok());
  for (const char* in : {"numpy/stored.npz", "numpy/object_malicious.npy"}) {
    const int fd = open(dir.File("via_fd").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ConvertOptions opt;
    opt.output_fd = fd;
    ConvertReport r = Convert(Fixture(in), "-", opt);
    close(fd);
    if (std::string(in) == "numpy/stored.npz") {
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      EXPECT_EQ(ReadFile(dir.File("via_fd")), ReadFile(dir.File("file.safemodel")));
    } else {
      EXPECT_EQ(r.status.code(), StatusCode::kRefused);
      EXPECT_EQ(ReadFile(dir.File("via_fd")), "") << "nothing before the conversion is validated";
    }
  }
}

}  // namespace
}  // namespace safemodel::testing
