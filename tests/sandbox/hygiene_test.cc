// Process hygiene of the worker: what it inherits (three fds, no environment,
// `/` as its directory, default signals, its own session), what the kernel
// says about it once it is locked down (no-new-privs, one seccomp filter, no
// capabilities, not root, not dumpable), no core files, death with its
// parent, and no zombies or leaked fds in the parent.
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "converter/protocol/worker.pb.h"
#include "safemodel/convert.h"
#include "tests/sandbox/probe_util.h"

namespace safemodel::testing {
namespace {

using Clock = std::chrono::steady_clock;

// The value of "key=" in a space-separated report.
std::string Field(const std::string& report, const std::string& key) {
  size_t at = report.find(key + "=");
  if (at == std::string::npos) return "<missing>";
  at += key.size() + 1;
  return report.substr(at, report.find(' ', at) - at);
}

TEST(Inheritance, ExactlyThreeFdsNoEnvironmentDefaultSignals) {
  // Descriptors a careless host leaks: 50 without close-on-exec.
  std::vector<int> leaked;
  for (int i = 0; i < 50; ++i) {
    int fd = open("/dev/null", O_RDONLY);  // deliberately not O_CLOEXEC
    ASSERT_GE(fd, 0);
    leaked.push_back(fd);
  }
  ASSERT_EQ(setenv("SAFEMODEL_TEST_SECRET", "do-not-pass-me", 1), 0);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  struct sigaction ignore = {}, old_usr2 = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGUSR2, &ignore, &old_usr2);

  TempDir out;
  ConvertReport r = ConvertWithProbe("inventory", out);
  ProbeRun direct = RunProbe("inventory");

  sigaction(SIGUSR2, &old_usr2, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  unsetenv("SAFEMODEL_TEST_SECRET");
  for (int fd : leaked) close(fd);

  ASSERT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
  for (const std::string& report : {r.status.message(), direct.error_message}) {
    SCOPED_TRACE(report);
    // At exec (what Spawn delivered) and after PrepareWorkerProcess.
    EXPECT_EQ(Field(report, "entry_fds"), "3,4,5");
    EXPECT_EQ(Field(report, "prepared_fds"), "3,4,5");
    EXPECT_EQ(Field(report, "cwd"), "/") << "nothing is looked up beside the caller's files";
    EXPECT_EQ(Field(report, "env_count"), "0");
    EXPECT_EQ(Field(report, "sid_is_pid"), "1") << "own session: no controlling terminal";
    EXPECT_EQ(Field(report, "blocked_signals"), "0");
    EXPECT_EQ(Field(report, "ignored_signals"), "0");
    EXPECT_EQ(Field(report, "dumpable"), "0");
  }
  EXPECT_TRUE(Leftovers(out).empty());
}

// The owner of /proc/<pid>/status: root if the process is not dumpable.
uid_t ProcOwner(pid_t pid) {
  struct stat st = {};
  return stat(("/proc/" + std::to_string(pid) + "/status").c_str(), &st) == 0 ? st.st_uid
                                                                                 : static_cast<uid_t>(-1);
}

// Starts a probe that parks after lockdown; returns once it said so.
// `input` is a "probe:park" file (made by the caller, so that a helper
// process that is SIGKILLed leaves no temporary directory behind).
struct ParkedProbe {
  sandbox::Worker worker;
  std::string claimed;                       // the LOCKED frame's payload
  sandbox::IsolationObservation observed;    // /proc before the release
  uid_t owner_before_release = 0;            // owner of /proc/<pid>/status then
  worker::WorkerError ready;
  std::string error;

  bool Start(const std::string& input, pid_t parent) {
    int fd = open(input.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    sandbox::SpawnOptions spawn;
    spawn.worker_path = ProbePath();
    spawn.input_fd = fd;
    sandbox::WorkerArgs args;
    args.parent_pid = parent;
    args.input_size = static_cast<uint64_t>(lseek(fd, 0, SEEK_END));
    spawn.args = sandbox::EncodeWorkerArgs(args);
    Status spawned = sandbox::Spawn(spawn, &worker);
    close(fd);
    if (!spawned.ok()) {
      error = spawned.message();
      return false;
    }
    sandbox::FrameReader reader(worker.channel_fd(), Clock::now() + std::chrono::seconds(20));
    const sandbox::FrameCaps caps = {0, 0, 0, 0, 1 << 20, 0, 1024};
    sandbox::FrameHeader h;
    if (reader.Next(&h, caps) != sandbox::FrameReader::Result::kOk ||
        h.type != sandbox::FrameType::kLocked) {
      error = "no lockdown frame: " + reader.error();
      return false;
    }
    claimed.assign(h.length, '\0');
    if (reader.ReadExact(claimed.data(), claimed.size()) != sandbox::FrameReader::Result::kOk) {
      error = "bad lockdown frame";
      return false;
    }
    observed = sandbox::ObserveIsolation(worker.pid());
    owner_before_release = ProcOwner(worker.pid());
    if (!worker.Release()) {
      error = "cannot release the probe";
      return false;
    }
    if (reader.Next(&h, caps) != sandbox::FrameReader::Result::kOk) {
      error = "no ready frame: " + reader.error();
      return false;
    }
    std::string payload(h.length, '\0');
    if (reader.ReadExact(payload.data(), payload.size()) != sandbox::FrameReader::Result::kOk ||
        !ready.ParseFromString(payload)) {
      error = "bad ready frame";
      return false;
    }
    return true;
  }
};

std::string NamespaceOf(pid_t pid, const char* ns) {
  char buf[64] = {};
  std::string link = "/proc/" + (pid == 0 ? std::string("self") : std::to_string(pid)) + "/ns/" + ns;
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

std::vector<std::string> SplitClaim(const std::string& claim) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= claim.size() && !claim.empty()) {
    size_t comma = claim.find(',', start);
    out.push_back(claim.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

TEST(LockedDown, KernelConfirmsNoNewPrivsSeccompAndNotDumpable) {
  TempDir dir;
  ParkedProbe probe;
  ASSERT_TRUE(probe.Start(WriteProbeInput(dir, "park"), getpid())) << probe.error;
  EXPECT_EQ(probe.ready.message(), "parked dumpable=0");
  const pid_t pid = probe.worker.pid();
  std::string status = ProcStatus(pid);
  EXPECT_NE(status.find("NoNewPrivs:\t1\n"), std::string::npos) << status;
  EXPECT_NE(status.find("Seccomp:\t2\n"), std::string::npos) << status;  // filter mode
  EXPECT_NE(status.find("Seccomp_filters:\t1\n"), std::string::npos) << status;
  // No capability in any set, and (started by root) not root any more.
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapAmb"}) {
    EXPECT_NE(status.find(std::string(set) + ":\t0000000000000000\n"), std::string::npos)
        << set << "\n" << status;
  }
  if (geteuid() == 0) {
    EXPECT_NE(status.find("Uid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
    EXPECT_NE(status.find("Gid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
    EXPECT_NE(status.find("CapBnd:\t0000000000000000\n"), std::string::npos) << status;
  }
  // Not dumpable once released: /proc/<pid> of a non-dumpable process
  // belongs to root (while it waited for the parent it was dumpable, so that
  // an unprivileged parent could read its namespaces; see lockdown.cc).
  EXPECT_EQ(ProcOwner(pid), 0u);
  EXPECT_NE(probe.owner_before_release, 0u) << "dumpable while waiting for the parent";

  // Every layer it claims that /proc can show, the parent saw.
  std::vector<std::string> claimed = SplitClaim(probe.claimed);
  for (const char* layer : {"seccomp", "no_new_privs", "no_capabilities", "rlimits", "landlock"}) {
    EXPECT_NE(std::find(claimed.begin(), claimed.end(), layer), claimed.end()) << layer;
  }
  for (const std::string& layer : claimed) {
    const auto& observable = sandbox::ObservableLayers();
    if (std::find(observable.begin(), observable.end(), layer) == observable.end()) continue;
    EXPECT_TRUE(probe.observed.Has(layer)) << layer << " claimed but not seen; " << probe.observed.error;
  }
  const std::pair<const char*, const char*> kNamespaces[] = {
      {"userns", "user"}, {"netns", "net"}, {"mntns", "mnt"}, {"ipcns", "ipc"}, {"utsns", "uts"}};
  for (const auto& [layer, ns] : kNamespaces) {
    EXPECT_EQ(probe.observed.Has(layer), NamespaceOf(pid, ns) != NamespaceOf(0, ns)) << layer;
  }
  // Its rlimits, as the kernel holds them.
  std::ifstream limits("/proc/" + std::to_string(pid) + "/limits");
  std::string text((std::istreambuf_iterator<char>(limits)), std::istreambuf_iterator<char>());
  auto row = [&](const std::string& name) {
    size_t at = text.find(name);
    return at == std::string::npos ? std::string() : text.substr(at, text.find('\n', at) - at);
  };
  EXPECT_NE(row("Max core file size").find(" 0 "), std::string::npos) << row("Max core file size");
  EXPECT_NE(row("Max open files").find(" 0 "), std::string::npos) << row("Max open files");
  EXPECT_NE(row("Max file size").find(" 0 "), std::string::npos) << row("Max file size");
  probe.worker.Kill();
  auto exit = probe.worker.Wait(Clock::now() + std::chrono::seconds(10));
  EXPECT_EQ(exit.signal, SIGKILL);
}

// A forked helper runs `body` in `dir` with RLIMIT_CORE unlimited and exits
// with its return value.
int InHelper(const std::string& dir, int (*body)()) {
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    if (chdir(dir.c_str()) != 0 || setrlimit(RLIMIT_CORE, &unlimited) != 0) _exit(100);
    _exit(body());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

// Core files (core_pattern "core" or "core.PID") in `dir`.
std::vector<std::string> CoreFiles(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == "core" || name.rfind("core.", 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

// Held while a CoreDump test looks at `/`: the plain and the sandbox.forked.
// runs of it (ctest -j) would otherwise each see the other's control core
// appear there. A lock file, not a ctest property, so any runner is covered.
class CoreScanLock {
 public:
  CoreScanLock() : fd_(open("/tmp/safemodel-test-core-scan.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0600)) {
    if (fd_ >= 0) flock(fd_, LOCK_EX);
  }
  ~CoreScanLock() {
    if (fd_ >= 0) close(fd_);
  }
  CoreScanLock(const CoreScanLock&) = delete;
  CoreScanLock& operator=(const CoreScanLock&) = delete;

 private:
  int fd_;
};

// The worker starts in `/` (a core would land there with core_pattern
// "core"), the helper in its own directory: both are checked.
TEST(CoreDump, NoCoreFileEvenWithCoreDumpsEnabled) {
  const CoreScanLock lock;
  TempDir cwd;
  const std::vector<std::string> root_before = CoreFiles("/");
  int rc = InHelper(cwd.path(), [] { return RunProbe("segv").SignaledWith(SIGSEGV) ? 0 : 1; });
  ASSERT_EQ(rc, 0) << "the confined probe did not crash with SIGSEGV";
  EXPECT_TRUE(CoreFiles(cwd.path()).empty()) << ::testing::PrintToString(cwd.List());
  EXPECT_EQ(CoreFiles("/"), root_before);

  // Control: the same crash unconfined does dump core here, when this
  // machine's core_pattern writes cores into the working directory (`/` for
  // a worker) and that directory is writable.
#if defined(SAFEMODEL_SANITIZER_BUILD)
  std::cout << "note: ASan disables core dumps itself; no control run\n";
  return;
#endif
  TempDir control;
  rc = InHelper(control.path(), [] {
    return RunProbe("segv", {.flags = {"unconfined"}}).SignaledWith(SIGSEGV) ? 0 : 1;
  });
  ASSERT_EQ(rc, 0);
  std::vector<std::string> root_after = CoreFiles("/");
  std::vector<std::string> created;
  for (const std::string& f : root_after) {
    if (std::find(root_before.begin(), root_before.end(), f) == root_before.end()) {
      created.push_back(f);
      std::remove(f.c_str());  // the control's own core
    }
  }
  std::ifstream pattern_file("/proc/sys/kernel/core_pattern");
  std::string pattern;
  std::getline(pattern_file, pattern);
  if (ForkServerMode()) {
    // A forked probe, even unconfined, inherits the zygote's non-dumpable
    // state and RLIMIT_CORE 0 (sandbox/zygote.cc): no core either way.
    EXPECT_TRUE(created.empty());
  } else if (!pattern.empty() && pattern[0] != '|' && pattern[0] != '/' && access("/", W_OK) == 0) {
    EXPECT_FALSE(created.empty()) << "core_pattern '" << pattern
                                  << "' but the unconfined crash left no core in /";
  } else {
    std::cout << "note: core_pattern '" << pattern << "' does not write into a writable `/`; "
              << "the control is inconclusive\n";
  }
}

// PDEATHSIG: when the process that started the worker dies (SIGKILL: no
// cleanup code runs), the kernel kills the worker.
TEST(ParentDeath, WorkerDiesWithinASecond) {
  // Become the orphaned worker's reaper, so that it can be waited for here.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  TempDir dir;
  const std::string input = WriteProbeInput(dir, "park");
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  pid_t helper = fork();
  if (helper == 0) {
    close(pipe_fds[0]);
    ParkedProbe probe;
    if (!probe.Start(input, getpid())) _exit(1);
    pid_t worker = probe.worker.pid();
    if (write(pipe_fds[1], &worker, sizeof worker) != sizeof worker) _exit(1);
    for (;;) pause();
  }
  close(pipe_fds[1]);
  pid_t worker = -1;
  struct pollfd wait_pipe = {pipe_fds[0], POLLIN, 0};
  ASSERT_EQ(poll(&wait_pipe, 1, 20'000), 1);
  ASSERT_EQ(read(pipe_fds[0], &worker, sizeof worker), static_cast<ssize_t>(sizeof worker));
  close(pipe_fds[0]);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, worker, 0));
  ASSERT_GE(pidfd, 0) << std::strerror(errno);

  ASSERT_EQ(kill(helper, SIGKILL), 0);
  ASSERT_EQ(waitpid(helper, nullptr, 0), helper);
  auto t0 = Clock::now();
  struct pollfd gone = {pidfd, POLLIN, 0};
  int ready = poll(&gone, 1, 1000);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(ready, 1) << "the worker outlived its parent by more than 1 s";
  if (ready != 1) kill(worker, SIGKILL);
  siginfo_t info = {};
  EXPECT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED), 0);
  EXPECT_EQ(info.si_code, CLD_KILLED);
  EXPECT_EQ(info.si_status, SIGKILL);
  close(pidfd);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  std::cout << "worker gone " << ms << " ms after its parent\n";
}

// A parent that died before the worker armed PDEATHSIG: the worker notices
// (getppid is not the parent it was told about) and stops before reading.
TEST(ParentDeath, WorkerRefusesToRunForAnotherParent) {
  ProbeRun run = RunProbe("ok", {.parent_pid = 1});
  EXPECT_TRUE(run.error_frame) << run.Describe();
  EXPECT_EQ(run.error_code, static_cast<uint32_t>(StatusCode::kSandboxSetupFailed));
  EXPECT_NE(run.error_message.find("parent process is gone"), std::string::npos)
      << run.error_message;
}

TEST(ManyRuns, NoZombiesNoLeakedFds) {
  const char* kModes[] = {"ok", "openat", "segv", "garbage", "exit3", "flood", "int80"};
  int fds_before = CountOpenFds();
  TempDir out;
  for (size_t i = 0; i < 105; ++i) {
    const char* mode = kModes[i % std::size(kModes)];
    ConvertReport r = ConvertWithProbe(mode, out);
    ASSERT_EQ(r.status.ok(), std::string(mode) == "ok") << mode << ": " << r.status.ToString();
    std::remove(out.File("out.safemodel").c_str());
  }
  EXPECT_TRUE(Leftovers(out).empty());
  EXPECT_EQ(CountOpenFds(), fds_before);
  // No child of this process is left, not even a zombie (waitpid would reap
  // and return it; ECHILD means there is none).
  errno = 0;
  if (ForkServerMode()) {
    // The fork servers' zygotes are this process's children, alive: 0 means
    // children exist and none has exited (no zombie).
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), 0);
  } else {
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
  }
}

}  // namespace
}  // namespace safemodel::testing
