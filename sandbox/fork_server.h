// Parent side of the fork server (zygote_protocol.h): one worker process
// started by exec, initialised, which forks a fresh worker per conversion
// instead of an exec (0.25-0.6 ms against 1.8-2.4 ms, tests/bench/PROFILE.md).
//
// Every forked worker still locks itself down before it reads its input,
// and the parent still checks it in /proc and approves it, exactly as an
// exec'd one. What a forked worker does not get is its own address-space
// layout: it shares the zygote's (ASLR is chosen at exec), so a layout
// leaked by one conversion's worker holds for the next ones from the same
// zygote. The zygote is therefore replaced every kForkServerRotation
// conversions, and the fork server is opt-in (SECURITY.md).
//
// Thread-safe: several conversions may spawn through one ForkServer.
#ifndef SAFEMODEL_SANDBOX_FORK_SERVER_H_
#define SAFEMODEL_SANDBOX_FORK_SERVER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "safemodel/status.h"
#include "sandbox/supervisor.h"
#include "sandbox/worker_protocol.h"

namespace safemodel::sandbox {

// Conversions per zygote: bounds how many workers share one address-space
// layout (what one compromised worker learns of the others), at a cost of
// one exec (~2 ms) per this many conversions.
inline constexpr uint64_t kForkServerRotation = 64;

// One zygote process and its socket. Shared by the workers it forked (they
// are reaped through it) and the ForkServer while it is the current one.
class ZygoteProcess {
 public:
  ~ZygoteProcess();  // closes the socket (the zygote exits), kills and reaps it
  pid_t pid() const { return pid_; }

  // Forks a worker with `options`' descriptors and arguments (worker_path
  // is the zygote's). The worker's parent-pid argument must be this
  // zygote's pid. Checks that the pid is an unreaped child of the zygote
  // (/proc/<pid>/status PPid) and opens its pidfd.
  Status Spawn(const SpawnOptions& options, Worker* worker);
  // Reaps a child after the caller killed its group; the status and rusage
  // are the zygote's report.
  Status Reap(pid_t pid, int* wait_status, int64_t* cpu_us, int64_t* max_rss_kib);
  // False once the zygote is known to be gone (its pidfd readable).
  bool Alive() const;

 private:
  friend class ForkServer;
  ZygoteProcess() = default;
  std::mutex mutex_;  // one request and its reply at a time
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int socket_ = -1;
  bool reaped_ = false;
};

class ForkServer {
 public:
  // Starts a zygote of `worker_path` (made absolute) and waits for it to be
  // ready. kSandboxSetupFailed if it cannot.
  static Result<std::shared_ptr<ForkServer>> Start(const std::string& worker_path);

  // As sandbox::Spawn, through the current zygote. A zygote that has forked
  // kForkServerRotation workers, or has died, is replaced first (a new exec,
  // a new layout); the replacement of a dead one is counted in restarts().
  // The args' parent pid is replaced by the zygote's. Failures are
  // kSandboxSetupFailed naming the fork server; nothing falls back.
  Status Spawn(SpawnOptions options, WorkerArgs args, Worker* worker);

  // The fork server of another worker binary that conversions through this
  // one may need (the HDF5 worker of a hand-off): created, and its zygote
  // started, on the first call for that path, so that a batch that never
  // meets such an input never starts it; then the same one, with its own
  // zygote, rotation and restarts. Dropped with this server. The paths come
  // from the caller's options, never from an input: one per path, unbounded.
  Result<std::shared_ptr<ForkServer>> Companion(const std::string& worker_path);

  const std::string& worker_path() const { return worker_path_; }
  uint64_t spawned() const;  // workers forked through this server (not its companions)
  size_t companions() const;  // companions created so far (for tests)
  uint64_t zygotes_started() const;
  uint64_t restarts() const;  // replacements of a zygote found dead
  // The current zygote's pid (for tests), or -1.
  pid_t zygote_pid() const;

 private:
  ForkServer() = default;
  static Result<std::shared_ptr<ZygoteProcess>> StartZygote(const std::string& worker_path);
  mutable std::mutex mutex_;
  std::string worker_path_;
  std::shared_ptr<ZygoteProcess> current_;
  uint64_t forks_on_current_ = 0;
  uint64_t started_ = 0;
  uint64_t restarts_ = 0;
  uint64_t spawned_ = 0;
  mutable std::mutex companions_mutex_;  // not mutex_: a companion's start does not hold up Spawn
  std::map<std::string, std::shared_ptr<ForkServer>> companions_;
};

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_FORK_SERVER_H_
