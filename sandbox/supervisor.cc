#include "sandbox/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "sandbox/fork_server.h"
#include "sandbox/frame_io.h"
#include "sandbox/observe.h"

namespace safemodel::sandbox {

namespace {

// A pipe buffer of 1 MiB doubles hand-off throughput over the 64 KiB default
// (measured with the worker's 1 MiB data frames); it is the system maximum
// for unprivileged users (/proc/sys/fs/pipe-max-size).
constexpr int kPipeBytes = 1 << 20;
// Source fds are moved above the targets (3, 4, 5, and 6.. for the files of
// a model made of several) before the child's dup2s, so that none of them
// can be clobbered by another's target number. Just above is enough, and
// works under a small `ulimit -n`.
int HighFd(size_t file_count) { return kFirstFileFd + static_cast<int>(file_count); }

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

Status SetupFailed(std::string message) {
  return Status(StatusCode::kSandboxSetupFailed, std::move(message));
}

}  // namespace

Worker::Worker(Worker&& o) noexcept { *this = std::move(o); }

Worker& Worker::operator=(Worker&& o) noexcept {
  if (this != &o) {
    Close();
    pid_ = o.pid_;
    pidfd_ = o.pidfd_;
    channel_fd_ = o.channel_fd_;
    control_fd_ = o.control_fd_;
    reaped_ = o.reaped_;
    killed_ = o.killed_;
    peak_sampled_ = o.peak_sampled_;
    peak_bytes_ = o.peak_bytes_;
    zygote_ = std::move(o.zygote_);
    o.pid_ = -1;
    o.pidfd_ = -1;
    o.channel_fd_ = -1;
    o.control_fd_ = -1;
    o.reaped_ = true;
  }
  return *this;
}

Worker::~Worker() { Close(); }

void Worker::Close() {
  if (pid_ > 0 && !reaped_) {
    Kill();
    int status;
    struct rusage usage;
    std::string error;
    Reap(&status, &usage, &error);
  }
  zygote_.reset();
  if (pidfd_ >= 0) close(pidfd_);
  if (channel_fd_ >= 0) close(channel_fd_);
  if (control_fd_ >= 0) close(control_fd_);
  pidfd_ = channel_fd_ = control_fd_ = -1;
  pid_ = -1;
}

bool Worker::Release() {
  if (control_fd_ < 0 || reaped_) return false;
  const char go = kGoAhead;
  ssize_t n;
  while ((n = send(control_fd_, &go, 1, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  // The channel stays open for the worker's dismissal (Dismiss).
  return n == 1;
}

void Worker::SamplePeak() {
  if (peak_sampled_ || pid_ <= 0 || reaped_) return;
  peak_sampled_ = true;
  peak_bytes_ = ObservePeakResidentBytes(pid_);
}

void Worker::Dismiss() {
  // First the figure, then the byte: a worker waiting on the channel exits
  // as soon as it reads it, and its memory goes with it. One byte fits any
  // socket buffer; a worker already gone makes it fail, harmlessly.
  SamplePeak();
  if (control_fd_ < 0) return;
  const char bye = kDismiss;
  while (send(control_fd_, &bye, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EINTR) {
  }
  close(control_fd_);
  control_fd_ = -1;
}

void Worker::KillGroup() {
  // The worker leads its own session and group (POSIX_SPAWN_SETSID), so the
  // group id is its pid, reserved for it until it is reaped.
  if (pid_ > 0 && !reaped_) kill(-pid_, SIGKILL);
}

void Worker::Kill() {
  if (pid_ <= 0 || reaped_) return;
  // A worker that already died (killed by someone else, crashed) was not
  // killed by us, whatever we send now: killed_by_us must stay false for the
  // verdict to name the real cause. What it left in its group is killed
  // either way (the unreaped worker still reserves the group id).
  siginfo_t info = {};
  struct pollfd exited = {pidfd_, POLLIN, 0};
  const bool already_dead =
      zygote_ ? poll(&exited, 1, 0) == 1
              : waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
                    info.si_pid == pid_;
  if (!already_dead) {
    SamplePeak();
    killed_ = true;
    if (pidfd_ >= 0) {
      syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
    } else {
      kill(pid_, SIGKILL);
    }
  }
  KillGroup();
}

Worker::Exit Worker::Wait(std::chrono::steady_clock::time_point deadline) {
  Exit out;
  if (pid_ <= 0 || reaped_) {
    out.error = "no worker to wait for";
    return out;
  }
  bool timed_out = false;
  int status = 0;
  struct rusage usage = {};
  pid_t r = 0;
  if (pidfd_ < 0 && !zygote_) {
    // No pidfd (kernel < 5.3): poll for the exit, still bounded by the deadline.
    while ((r = wait4(pid_, &status, WNOHANG, &usage)) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        timed_out = true;
        Kill();
        break;
      }
      usleep(2000);
    }
  } else {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        timed_out = true;
        Kill();
        break;
      }
      struct pollfd pfd = {pidfd_, POLLIN, 0};
      int ready = poll(&pfd, 1, left.count() > 60'000 ? 60'000 : static_cast<int>(left.count()));
      if (ready > 0) break;
      if (ready < 0 && errno != EINTR) break;
    }
  }
  if (r <= 0) {
    // Exited (or killed): take down whatever it left in its process group
    // before the reap frees the group id.
    KillGroup();
    if (!Reap(&status, &usage, &out.error)) {
      // A figure read from /proc before the end is still the worker's own.
      if (peak_bytes_) {
        out.max_rss_bytes = *peak_bytes_;
        out.max_rss_source = PeakSource::kVmHwm;
      }
      return out;
    }
  } else {
    reaped_ = true;
  }
  // The worker's own peak where it was read from /proc; else the kernel's
  // rusage figure, which for an exec'd worker includes this process's peak
  // (the kernel folds the old memory's peak in at exec).
  out.max_rss_bytes = peak_bytes_ ? *peak_bytes_ : static_cast<uint64_t>(usage.ru_maxrss) * 1024;
  out.max_rss_source = peak_bytes_ ? PeakSource::kVmHwm : PeakSource::kRusage;
  out.cpu_seconds = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                    static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  out.killed_by_us = killed_;
  if (timed_out) {
    out.kind = Exit::Kind::kTimeout;
  } else if (WIFEXITED(status)) {
    out.kind = Exit::Kind::kExited;
    out.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    out.kind = Exit::Kind::kSignaled;
    out.signal = WTERMSIG(status);
  }
  return out;
}

bool Worker::Reap(int* status, struct rusage* usage, std::string* error) {
  reaped_ = true;
  if (zygote_) {
    // The zygote's account of its child: the exit status and rusage are
    // its word (it never read untrusted bytes); the exit itself was seen
    // on the pidfd, or the group was just killed.
    int64_t cpu_us = 0, rss_kib = 0;
    Status reaped = zygote_->Reap(pid_, status, &cpu_us, &rss_kib);
    if (!reaped.ok()) {
      *error = reaped.message();
      return false;
    }
    *usage = {};
    usage->ru_utime.tv_sec = cpu_us / 1'000'000;
    usage->ru_utime.tv_usec = cpu_us % 1'000'000;
    usage->ru_maxrss = rss_kib;
    return true;
  }
  pid_t r;
  while ((r = wait4(pid_, status, 0, usage)) < 0 && errno == EINTR) {
  }
  if (r != pid_) {
    *error = Errno("wait4 on the worker (did the host reap it?)");
    return false;
  }
  return true;
}

std::mutex& SpawnMutex() {
  static std::mutex spawn_mutex;
  return spawn_mutex;
}

Status Spawn(const SpawnOptions& options, Worker* worker) {
  // One spawn at a time in this process: between pipe2 and the close of the
  // parent's copies of the worker's ends below, a child that another thread
  // spawns (posix_spawn: clone, then exec) would inherit those ends until
  // its exec closes them (close-on-exec). If this worker exited within that
  // window, its channel would still be open and the conversion would fail
  // as "held open by another process" (seen with safe-convert batch -j4 on
  // 2 cores). The lock covers the whole window; a spawn takes ~1 ms.
  std::lock_guard<std::mutex> lock(SpawnMutex());
  // The worker starts in `/`: a relative path must be resolved here.
  std::error_code ec;
  const std::string worker_path = std::filesystem::absolute(options.worker_path, ec).string();
  if (ec || options.worker_path.empty()) {
    return SetupFailed("cannot resolve the worker path '" + options.worker_path + "'");
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return SetupFailed(Errno("pipe2"));
  // The control channel is a socket so that the go-ahead can be sent with
  // MSG_NOSIGNAL: a worker that died first must not raise SIGPIPE in the host.
  int control[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0) {
    Status failed = SetupFailed(Errno("socketpair"));
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return failed;
  }
  fcntl(pipe_fds[0], F_SETPIPE_SZ, kPipeBytes);  // best effort
  const int high = HighFd(options.file_fds.size());
  int high_out = fcntl(pipe_fds[1], F_DUPFD_CLOEXEC, high);
  int high_in = fcntl(options.input_fd, F_DUPFD_CLOEXEC, high);
  int high_control = fcntl(control[0], F_DUPFD_CLOEXEC, high);
  std::vector<int> high_files;
  bool files_ok = true;
  for (int fd : options.file_fds) {
    high_files.push_back(fcntl(fd, F_DUPFD_CLOEXEC, high));
    if (high_files.back() < 0) {
      files_ok = false;
      break;
    }
  }
  close(pipe_fds[1]);
  close(control[0]);
  auto cleanup = [&] {
    for (int fd : {high_out, high_in, high_control}) {
      if (fd >= 0) close(fd);
    }
    for (int fd : high_files) {
      if (fd >= 0) close(fd);
    }
  };
  if (high_out < 0 || high_in < 0 || high_control < 0 || !files_ok) {
    Status failed = SetupFailed(Errno("dup of the worker's descriptors"));
    cleanup();
    close(pipe_fds[0]);
    close(control[1]);
    return failed;
  }

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  // dup2 clears close-on-exec on the target, so exactly 3, 4 and 5 survive exec.
  posix_spawn_file_actions_adddup2(&actions, high_out, kOutputFd);
  posix_spawn_file_actions_adddup2(&actions, high_in, kInputFd);
  posix_spawn_file_actions_adddup2(&actions, high_control, kControlFd);
  for (size_t i = 0; i < high_files.size(); ++i) {
    posix_spawn_file_actions_adddup2(&actions, high_files[i], kFirstFileFd + static_cast<int>(i));
  }
  posix_spawn_file_actions_addclose(&actions, 0);
  posix_spawn_file_actions_addclose(&actions, 1);
  posix_spawn_file_actions_addclose(&actions, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, high);
  // Nothing is looked up relative to the caller's directory: not the
  // libraries (an empty or relative RUNPATH entry), not anything else.
  posix_spawn_file_actions_addchdir_np(&actions, "/");

  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);  // undo the host's SIG_IGN dispositions
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSID);

  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(worker_path.c_str()));
  for (const std::string& a : options.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char* envp[] = {nullptr};

  pid_t pid = -1;
  int rc = posix_spawn(&pid, worker_path.c_str(), &actions, &attr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  cleanup();
  if (rc != 0) {
    close(pipe_fds[0]);
    close(control[1]);
    return SetupFailed("cannot start the worker '" + options.worker_path + "': " + std::strerror(rc));
  }
  *worker = Worker();
  worker->pid_ = pid;
  worker->reaped_ = false;
  worker->channel_fd_ = pipe_fds[0];
  worker->control_fd_ = control[1];
  worker->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return Status::Ok();
}

std::string SyscallName(int nr) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  if (name == nullptr) return "";
  std::string out(name);
  std::free(name);
  return out;
}

}  // namespace safemodel::sandbox
