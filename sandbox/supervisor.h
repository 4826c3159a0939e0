// Parent side of the sandbox: starts the worker as a fresh process by exec
// (posix_spawn, never a bare fork, so that it is safe and cheap from a large
// multithreaded host), and reports how it ended.
//
// The worker gets exactly two file descriptors (3: the write end of the result
// pipe, 4: the input, read-only), an empty environment, its own session (no
// controlling terminal) and default signal dispositions.
#ifndef SAFEMODEL_SANDBOX_SUPERVISOR_H_
#define SAFEMODEL_SANDBOX_SUPERVISOR_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace safemodel::sandbox {

struct SpawnOptions {
  std::string worker_path;         // absolute path of the worker executable
  std::vector<std::string> args;   // argv[1..]
  int input_fd = -1;               // becomes fd 4 in the worker
  // Keep the parent's stderr as the worker's fd 2. For debugging sanitizer
  // builds only; the production worker gets no stderr.
  bool inherit_stderr = false;
};

// A running worker. Owns the read end of the result pipe and a pidfd.
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

  // SIGKILL through the pidfd (no PID-reuse race). Idempotent.
  void Kill();

  struct Exit {
    enum class Kind { kExited, kSignaled, kTimeout, kWaitFailed };
    Kind kind = Kind::kWaitFailed;
    int exit_code = 0;   // kExited
    int signal = 0;      // kSignaled
    bool killed_by_us = false;
    uint64_t max_rss_bytes = 0;
    double cpu_seconds = 0;
    std::string error;   // kWaitFailed
  };
  // Waits for the worker to end until `deadline`; past it, kills the worker
  // and reports kTimeout. Reaps it either way.
  Exit Wait(std::chrono::steady_clock::time_point deadline);

 private:
  friend bool Spawn(const SpawnOptions&, Worker*, std::string*);
  void Close();
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int channel_fd_ = -1;
  bool reaped_ = false;
  bool killed_ = false;
};

// Starts the worker. On failure returns false with *error set.
bool Spawn(const SpawnOptions& options, Worker* worker, std::string* error);

// The name of a syscall number on this architecture ("openat"), or "".
std::string SyscallName(int nr);

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_SUPERVISOR_H_
