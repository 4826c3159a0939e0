// Parent side of the sandbox: starts the worker as a fresh process by exec
// (posix_spawn, never a bare fork, so that it is safe and cheap from a large
// multithreaded host), and reports how it ended.
//
// The worker gets exactly three file descriptors (3: the write end of the
// result pipe, 4: the input, read-only, 5: the read end of the control pipe),
// and for a model made of several files one more per file (6, 7, ...),
// an empty environment, `/` as its working directory (a relative library
// search path can find nothing planted beside a model), its own session and
// process group (no controlling terminal; one signal reaches every process
// it may have left behind) and default signal dispositions.
#ifndef SAFEMODEL_SANDBOX_SUPERVISOR_H_
#define SAFEMODEL_SANDBOX_SUPERVISOR_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "safemodel/status.h"

namespace safemodel::sandbox {

class ZygoteProcess;  // fork_server.h

struct SpawnOptions {
  std::string worker_path;         // the worker executable (made absolute before the spawn)
  std::vector<std::string> args;   // argv[1..] (EncodeWorkerArgs, worker_protocol.h)
  int input_fd = -1;               // becomes fd 4 in the worker
  std::vector<int> file_fds;       // become fds 6, 7, ... (kFirstFileFd) in the worker
};

// A running worker. Owns the read end of the result pipe and a pidfd. A
// worker forked by a fork server (fork_server.h) is the zygote's child, not
// ours: it is waited for through its pidfd and reaped through the zygote,
// which keeps it unreaped (its pid and group id reserved) until then.
class Worker {
 public:
  Worker() = default;
  Worker(Worker&& other) noexcept;
  Worker& operator=(Worker&& other) noexcept;
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;
  ~Worker();  // kills and reaps a worker that is still running

  pid_t pid() const { return pid_; }
  int channel_fd() const { return channel_fd_; }
  // Readable once the worker has exited (a pidfd), or -1 on kernels < 5.3.
  int exit_fd() const { return pidfd_; }

  // Lets a locked-down worker go on (writes the go-ahead byte on the control
  // channel, which stays open until Dismiss). Call only after checking the
  // worker in /proc (observe.h). Returns false if the worker is gone.
  bool Release();

  // The worker's result is in (its stream's last frame was read): records
  // its peak memory from /proc while it is still alive (PeakSource below),
  // then sends kDismiss on the control channel and closes it: the worker's
  // cue to exit (AwaitDismissal, lockdown.h). Nothing here waits for the
  // worker, and a worker that does not exit is still ended by Wait's
  // deadline. Idempotent.
  void Dismiss();

  // SIGKILL to the worker through the pidfd (no PID-reuse race) and to its
  // whole process group, while the worker is not yet reaped (so its pid,
  // which is the group's id, cannot have been reused). A worker still
  // alive has its peak memory recorded first, as Dismiss does. Idempotent.
  void Kill();

  // Where Exit::max_rss_bytes comes from.
  enum class PeakSource {
    // VmHWM of /proc/<pid>/status, read by Dismiss or Kill while the worker
    // was alive: its own address space's peak (observe.h).
    kVmHwm,
    // wait4's ru_maxrss (the zygote's, for a forked worker): the fallback
    // where /proc could not be read, e.g. a worker that exited or crashed
    // before its result was in. For an exec'd worker it includes the peak
    // of this process until the spawn; the kernel folds it in at exec.
    kRusage,
    // No figure: the wait failed before the worker was reaped, and /proc
    // was not read before it ended.
    kNone,
  };

  struct Exit {
    enum class Kind { kExited, kSignaled, kTimeout, kWaitFailed };
    Kind kind = Kind::kWaitFailed;
    int exit_code = 0;   // kExited
    int signal = 0;      // kSignaled
    bool killed_by_us = false;
    uint64_t max_rss_bytes = 0;
    PeakSource max_rss_source = PeakSource::kNone;
    double cpu_seconds = 0;
    std::string error;   // kWaitFailed
  };
  // Waits for the worker to end until `deadline`; past it, kills the worker
  // and reports kTimeout. Either way it then sends SIGKILL to the worker's
  // process group, so no process the worker started outlives it there, and
  // reaps the worker.
  Exit Wait(std::chrono::steady_clock::time_point deadline);

 private:
  friend Status Spawn(const SpawnOptions&, Worker*);
  friend class ZygoteProcess;
  friend class ForkServer;
  void Close();
  // The reap: wait4 for our own child, the zygote's report for a forked one.
  bool Reap(int* status, struct rusage* usage, std::string* error);
  void KillGroup();
  // VmHWM into peak_bytes_, once, if the worker is still there to read.
  void SamplePeak();
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int channel_fd_ = -1;
  int control_fd_ = -1;
  bool reaped_ = false;
  bool killed_ = false;
  bool peak_sampled_ = false;  // SamplePeak ran (whether or not it read a value)
  std::optional<uint64_t> peak_bytes_;
  std::shared_ptr<ZygoteProcess> zygote_;  // set for a forked worker
};

// Held by whoever creates a worker's descriptors until the parent's copies
// of the worker's ends are closed (see Spawn in supervisor.cc).
std::mutex& SpawnMutex();

// Starts the worker. Failures are kSandboxSetupFailed.
Status Spawn(const SpawnOptions& options, Worker* worker);

// The name of a syscall number on this architecture ("openat"), or "".
std::string SyscallName(int nr);

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_SUPERVISOR_H_
