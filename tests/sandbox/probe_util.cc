#include "tests/sandbox/probe_util.h"

#include <gtest/gtest.h>

#include "sandbox/fork_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "converter/protocol/worker.pb.h"
#include "sandbox/observe.h"

namespace safemodel::testing {

std::string ProbePath() { return BinDir() + "/sandbox-probe"; }

std::string WriteProbeInput(const TempDir& dir, const std::string& mode_line) {
  std::string path = dir.File("probe-input");
  WriteFile(path, "probe:" + mode_line + "\n");
  return path;
}

std::string ProbeRun::Describe() const {
  std::ostringstream s;
  s << "spawned=" << spawned << " " << spawn_error << " exit.kind=" << static_cast<int>(exit.kind)
    << " exit_code=" << exit.exit_code << " signal=" << exit.signal
    << " killed_by_us=" << exit.killed_by_us << " frames=" << frames.size()
    << " end=" << static_cast<int>(end) << " reader_error='" << reader_error << "'"
    << " violation=" << violation << " nr=" << syscall_nr << " error_frame=" << error_frame
    << " code=" << error_code << " message='" << error_message << "' locked=" << locked
    << " claimed='" << claimed << "'";
  return s.str();
}

namespace {

// Forked from one zygote kept for the whole test program.
Result<std::shared_ptr<sandbox::ForkServer>>& ProbeForkServer() {
  static Result<std::shared_ptr<sandbox::ForkServer>> server = sandbox::ForkServer::Start(ProbePath());
  return server;
}

// In the forked runs the fork servers start before the first test, so that
// their descriptors (a socket and a pidfd each) are part of every test's
// "descriptors before" count.
class ForkServerEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!ForkServerMode()) return;
    ProbeForkServer();
    TempDir dir;
    ConvertOptions probe;
    probe.worker_path = ProbePath();
    Convert(WriteProbeInput(dir, "ok"), dir.File("a.safemodel"), probe);
    Convert(WriteProbeInput(dir, "ok"), dir.File("b.safemodel"));
  }
};
[[maybe_unused]] ::testing::Environment* const kForkServerEnvironment =
    ::testing::AddGlobalTestEnvironment(new ForkServerEnvironment);

}  // namespace

ProbeRun RunProbe(const std::string& mode_line, const ProbeOptions& options) {
  ProbeRun run;
  TempDir dir;
  std::string input = WriteProbeInput(dir, mode_line);
  int fd = open(input.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    run.spawn_error = "cannot open the probe input";
    return run;
  }
  off_t size = lseek(fd, 0, SEEK_END);
  sandbox::SpawnOptions spawn;
  spawn.worker_path = ProbePath();
  spawn.input_fd = fd;
  pid_t parent = options.parent_pid != 0 ? options.parent_pid : getpid();
  sandbox::WorkerArgs args;
  args.parent_pid = parent;
  args.input_size = static_cast<uint64_t>(size);
  args.cpu_seconds = options.cpu_seconds;
  args.flags = options.flags;
  spawn.args = sandbox::EncodeWorkerArgs(args);
  sandbox::Worker worker;
  Status spawned;
  if (ForkServerMode() && options.parent_pid == 0) {
    Result<std::shared_ptr<sandbox::ForkServer>>& server = ProbeForkServer();
    spawned = server.ok() ? (*server)->Spawn(spawn, args, &worker) : server.status();
  } else {
    spawned = sandbox::Spawn(spawn, &worker);
  }
  run.spawned = spawned.ok();
  run.spawn_error = spawned.message();
  close(fd);
  if (!run.spawned) return run;

  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  sandbox::FrameReader reader(worker.channel_fd(), deadline, worker.exit_fd());
  const sandbox::FrameCaps caps = {0,       1 << 20, 1 << 20, 1 << 20,
                                   1 << 20, sandbox::kViolationPayloadBytes,
                                   sandbox::kMaxLockedPayloadBytes};
  for (;;) {
    sandbox::FrameHeader h;
    run.end = reader.Next(&h, caps);
    if (run.end != sandbox::FrameReader::Result::kOk) break;
    ProbeFrame f{h.type, std::string(h.length, '\0')};
    run.end = reader.ReadExact(f.payload.data(), f.payload.size());
    if (run.end != sandbox::FrameReader::Result::kOk) break;
    if (f.type == sandbox::FrameType::kLocked && !run.locked) {
      // What ConvertFile checks in /proc is its business; here the probe is
      // simply let go, after the same observation is recorded.
      run.locked = true;
      run.claimed = f.payload;
      run.observed = sandbox::ObserveIsolation(worker.pid());
      worker.Release();
    }
    if (f.type == sandbox::FrameType::kViolation &&
        f.payload.size() == sandbox::kViolationPayloadBytes && !run.violation) {
      const sandbox::Violation v =
          sandbox::DecodeViolation(reinterpret_cast<const uint8_t*>(f.payload.data()));
      run.violation = true;
      run.syscall_nr = v.syscall_nr;
      run.arch = v.arch;
    }
    if (f.type == sandbox::FrameType::kError && !run.error_frame) {
      worker::WorkerError e;
      if (e.ParseFromString(f.payload)) {
        run.error_frame = true;
        run.error_code = e.code();
        run.error_message = e.message();
      }
    }
    run.frames.push_back(std::move(f));
  }
  run.reader_error = reader.error();
  if (run.end != sandbox::FrameReader::Result::kEof) worker.Kill();
  run.exit = worker.Wait(deadline);
  return run;
}

ConvertReport ConvertWithProbe(const std::string& mode_line, const TempDir& out_dir,
                               ConvertOptions options) {
  TempDir in_dir;
  std::string input = WriteProbeInput(in_dir, mode_line);
  options.worker_path = ProbePath();
  return Convert(input, out_dir.File("out.safemodel"), options);
}

std::vector<std::string> Leftovers(const TempDir& dir) { return dir.List(); }

int CountOpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory stream itself
}

std::string ProcStatus(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace safemodel::testing
