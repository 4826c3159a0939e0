// The fork server (sandbox/fork_server.h) with the probe as its worker:
// what a forked worker holds when it is checked (before it reads its
// input), and what happens when the zygote dies. The isolation, violation,
// robustness and hygiene tests run against forked workers as well
// ("sandbox.forked.*", tests/sandbox/CMakeLists.txt).
#include "sandbox/fork_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "sandbox/frame_io.h"
#include "sandbox/worker_protocol.h"
#include "tests/sandbox/probe_util.h"

namespace safemodel::testing {
namespace {

std::vector<std::string> OpenFds(pid_t pid) {
  std::vector<std::string> out;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (d == nullptr) return {"unreadable"};
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') out.push_back(e->d_name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// True if `needle` occurs in a readable mapping of `pid` (/proc/<pid>/mem;
// the worker is dumpable while it waits for the go-ahead).
bool MemoryContains(pid_t pid, const std::string& needle, std::string* error) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  const int mem = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (!maps || mem < 0) {
    *error = "cannot open /proc/<pid>/maps or mem";
    if (mem >= 0) close(mem);
    return false;
  }
  std::string line;
  bool found = false;
  // Read a window at a time, each overlapping the one before by the needle's
  // length less one: a mapping's worth at once (256 MiB regions in a
  // sanitizer build) cost the test ~1 s of zero-filling per conversion.
  constexpr size_t kWindow = size_t{1} << 20;
  std::string window;
  while (!found && std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r') continue;
    if (line.find("[vvar") != std::string::npos || end - start > (256ul << 20)) continue;
    window.clear();
    for (unsigned long at = start; at < end && !found;) {
      const size_t keep = std::min(window.size(), needle.empty() ? 0 : needle.size() - 1);
      window.erase(0, window.size() - keep);
      const size_t want = std::min<size_t>(kWindow, end - at);
      window.resize(keep + want);
      const ssize_t n = pread(mem, window.data() + keep, want, static_cast<off_t>(at));
      if (n <= 0) break;
      window.resize(keep + static_cast<size_t>(n));
      found = window.find(needle) != std::string::npos;
      at += static_cast<unsigned long>(n);
    }
  }
  close(mem);
  return found;
}

struct Forked {
  sandbox::Worker worker;
  std::vector<std::string> fds_at_lock;
  bool canary_at_lock = false;
  bool argv_at_lock = false;
  std::string error;
  sandbox::Worker::Exit exit;
};

// Forks a probe on `mode_line`, checks it at LOCKED, lets it run to the end.
Forked RunForked(sandbox::ForkServer& server, const TempDir& dir, const std::string& mode_line,
                 const std::string& canary) {
  Forked f;
  const std::string input = WriteProbeInput(dir, mode_line);
  const int fd = open(input.c_str(), O_RDONLY | O_CLOEXEC);
  sandbox::SpawnOptions spawn;
  spawn.input_fd = fd;
  sandbox::WorkerArgs args;
  args.input_size = static_cast<uint64_t>(lseek(fd, 0, SEEK_END));
  Status s = server.Spawn(spawn, args, &f.worker);
  close(fd);
  if (!s.ok()) {
    f.error = s.ToString();
    return f;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  sandbox::FrameReader reader(f.worker.channel_fd(), deadline, f.worker.exit_fd());
  const sandbox::FrameCaps caps = {0, 1 << 20, 1 << 20, 1 << 20, 1 << 20, sandbox::kViolationPayloadBytes,
                                   sandbox::kMaxLockedPayloadBytes};
  for (;;) {
    sandbox::FrameHeader h;
    if (reader.Next(&h, caps) != sandbox::FrameReader::Result::kOk) break;
    std::string payload(h.length, '\0');
    if (reader.ReadExact(payload.data(), payload.size()) != sandbox::FrameReader::Result::kOk) break;
    if (h.type == sandbox::FrameType::kLocked) {
      f.fds_at_lock = OpenFds(f.worker.pid());
      f.canary_at_lock = MemoryContains(f.worker.pid(), canary, &f.error);
      f.argv_at_lock = MemoryContains(f.worker.pid(), "--input-size=", &f.error);
      f.worker.Release();
    }
  }
  f.exit = f.worker.Wait(deadline);
  return f;
}

TEST(ForkServer, AForkedWorkerHoldsNoDescriptorOrByteOfThePreviousConversion) {
  auto server = sandbox::ForkServer::Start(ProbePath());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  TempDir dir;
  const std::string canary = "CANARY-of-the-first-conversion-7f3a";
  Forked first = RunForked(**server, dir, "ok " + canary, canary);
  ASSERT_TRUE(first.error.empty()) << first.error;
  EXPECT_EQ(first.exit.kind, sandbox::Worker::Exit::Kind::kExited);
  EXPECT_EQ(first.exit.exit_code, 0);
  EXPECT_GT(first.exit.cpu_seconds, 0.0) << "rusage comes through the zygote";
  // Exactly the worker's descriptors: result channel, input, control.
  for (const std::string& fd : first.fds_at_lock) EXPECT_TRUE(fd == "3" || fd == "4" || fd == "5") << fd;
  EXPECT_FALSE(first.fds_at_lock.empty());
  EXPECT_TRUE(first.argv_at_lock) << "the memory scan finds what is there";

  TempDir dir2;
  Forked second = RunForked(**server, dir2, "ok", canary);
  ASSERT_TRUE(second.error.empty()) << second.error;
  EXPECT_NE(second.worker.pid(), first.worker.pid());
  // The probe may have closed its input (fd 4) after reading its mode.
  for (const std::string& fd : second.fds_at_lock) EXPECT_TRUE(fd == "3" || fd == "4" || fd == "5") << fd;
  EXPECT_TRUE(second.argv_at_lock);
  EXPECT_FALSE(second.canary_at_lock) << "the first conversion's input is in the next worker";
  EXPECT_EQ(second.exit.exit_code, 0);
}

TEST(ForkServer, AKilledZygoteIsReplacedAndCounted) {
  auto server = sandbox::ForkServer::Start(ProbePath());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const pid_t zygote = (*server)->zygote_pid();
  ASSERT_GT(zygote, 0);
  EXPECT_NE(ProcStatus(zygote).find("PPid:\t" + std::to_string(getpid())), std::string::npos);
  kill(zygote, SIGKILL);
  usleep(100'000);
  TempDir dir;
  Forked f = RunForked(**server, dir, "ok", "x");
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_EQ(f.exit.exit_code, 0);
  EXPECT_EQ((*server)->restarts(), 1u);
  EXPECT_NE((*server)->zygote_pid(), zygote);
}

TEST(ForkServer, AZygoteKilledDuringAConversionFailsItClosed) {
  auto server = sandbox::ForkServer::Start(ProbePath());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  TempDir dir;
  const std::string input = WriteProbeInput(dir, "ok");
  const int fd = open(input.c_str(), O_RDONLY | O_CLOEXEC);
  sandbox::SpawnOptions spawn;
  spawn.input_fd = fd;
  sandbox::WorkerArgs args;
  args.input_size = static_cast<uint64_t>(lseek(fd, 0, SEEK_END));
  sandbox::Worker worker;
  ASSERT_TRUE((*server)->Spawn(spawn, args, &worker).ok());
  close(fd);
  kill((*server)->zygote_pid(), SIGKILL);
  // The worker dies with its zygote (parent-death signal, or the kill of
  // its group); its end cannot be reported by anyone, and is not invented.
  sandbox::Worker::Exit exit = worker.Wait(std::chrono::steady_clock::now() + std::chrono::seconds(20));
  EXPECT_EQ(exit.kind, sandbox::Worker::Exit::Kind::kWaitFailed);
  EXPECT_NE(exit.error.find("fork server"), std::string::npos) << exit.error;
}

// A zygote started on a thread that then ends (a batch's conversion thread
// that replaced it) lives on; it ends when the fork server is dropped.
TEST(ForkServer, TheZygoteOutlivesTheThreadThatStartedItNotTheServer) {
  Result<std::shared_ptr<sandbox::ForkServer>> server = Status::Internal("not started");
  std::thread([&] { server = sandbox::ForkServer::Start(ProbePath()); }).join();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  usleep(100'000);
  {
    TempDir dir;
    Forked f = RunForked(**server, dir, "ok", "x");  // its worker holds the zygote until here
    ASSERT_TRUE(f.error.empty()) << f.error;
    EXPECT_EQ(f.exit.exit_code, 0);
  }
  EXPECT_EQ((*server)->restarts(), 0u);
  const pid_t zygote = (*server)->zygote_pid();
  server = Status::Internal("dropped");
  EXPECT_EQ(ProcStatus(zygote), "") << "the zygote is reaped with its server";
}

TEST(ForkServer, TheZygoteIsReplacedAfterTheRotationCount) {
  auto server = sandbox::ForkServer::Start(ProbePath());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const pid_t first = (*server)->zygote_pid();
  TempDir dir;
  for (uint64_t i = 0; i <= sandbox::kForkServerRotation; ++i) {
    Forked f = RunForked(**server, dir, "ok", "x");
    ASSERT_TRUE(f.error.empty()) << f.error;
  }
  EXPECT_EQ((*server)->zygotes_started(), 2u);
  EXPECT_EQ((*server)->restarts(), 0u);
  EXPECT_NE((*server)->zygote_pid(), first);
}

}  // namespace
}  // namespace safemodel::testing
