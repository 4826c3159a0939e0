#include "sandbox/fork_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "sandbox/zygote_protocol.h"

namespace safemodel::sandbox {

namespace {

// A zygote answers a request in well under a millisecond (a fork, or the
// wait4 of a child whose group the parent has just killed); one that takes
// this long is stuck, and is killed.
constexpr int kReplyTimeoutMs = 10'000;
// As in supervisor.cc: the result pipe's buffer.
constexpr int kPipeBytes = 1 << 20;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }
Status SetupFailed(std::string message) {
  return Status(StatusCode::kSandboxSetupFailed, "fork server: " + std::move(message));
}

// PPid of `pid` in /proc, or -1.
pid_t ParentOf(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("PPid:", 0) == 0) return static_cast<pid_t>(std::atol(line.c_str() + 5));
  }
  return -1;
}

}  // namespace

ZygoteProcess::~ZygoteProcess() {
  if (socket_ >= 0) close(socket_);  // the zygote's recvmsg sees EOF and it exits
  if (pid_ > 0 && !reaped_) {
    if (pidfd_ >= 0) syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (pidfd_ >= 0) close(pidfd_);
}

bool ZygoteProcess::Alive() const {
  struct pollfd pfd = {pidfd_, POLLIN, 0};
  return pidfd_ >= 0 && poll(&pfd, 1, 0) == 0;
}

namespace {

// One request (with `fds` attached) and its reply, on `socket`, watching
// the zygote's pidfd. Caller holds the zygote's mutex.
Status Exchange(int socket, int pidfd, const ZygoteRequest& req, const std::vector<int>& fds,
                ZygoteReply* reply) {
  struct iovec iov = {const_cast<ZygoteRequest*>(&req), sizeof req};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  while ((n = sendmsg(socket, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof req)) return SetupFailed(Errno("the zygote is gone (send)"));
  struct pollfd pfd[2] = {{socket, POLLIN, 0}, {pidfd, POLLIN, 0}};
  int ready;
  while ((ready = poll(pfd, 2, kReplyTimeoutMs)) < 0 && errno == EINTR) {
  }
  if (ready == 0) return SetupFailed("the zygote did not answer within " + std::to_string(kReplyTimeoutMs) + " ms");
  while ((n = recv(socket, reply, sizeof *reply, MSG_DONTWAIT)) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof *reply) || reply->magic != kZygoteMagic || reply->op != req.op) {
    return SetupFailed("the zygote died or sent a malformed reply");
  }
  return Status::Ok();
}

}  // namespace

Status ZygoteProcess::Spawn(const SpawnOptions& options, Worker* worker) {
  if (3 + options.file_fds.size() > kZygoteMaxFds) {
    return SetupFailed("more than " + std::to_string(kZygoteMaxFds - 3) + " input files");
  }
  ZygoteRequest req;
  req.op = ZygoteOp::kSpawn;
  for (const std::string& a : options.args) {
    if (a.find('\0') != std::string::npos || req.args_bytes + a.size() + 1 > kZygoteArgsBytes) {
      return SetupFailed("the worker's arguments do not fit a request");
    }
    std::memcpy(req.args + req.args_bytes, a.c_str(), a.size() + 1);
    req.args_bytes += static_cast<uint32_t>(a.size() + 1);
  }
  // The process-wide spawn lock (supervisor.h): no other thread's
  // posix_spawn may inherit the worker's ends before they are closed here.
  std::lock_guard<std::mutex> spawn_lock(SpawnMutex());
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return SetupFailed(Errno("pipe2"));
  int control[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, control) != 0) {
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return SetupFailed(Errno("socketpair"));
  }
  fcntl(pipe_fds[0], F_SETPIPE_SZ, kPipeBytes);  // best effort
  std::vector<int> fds = {pipe_fds[1], options.input_fd, control[0]};
  fds.insert(fds.end(), options.file_fds.begin(), options.file_fds.end());
  req.fd_count = static_cast<uint32_t>(fds.size());
  ZygoteReply reply;
  Status sent;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    sent = Exchange(socket_, pidfd_, req, fds, &reply);
  }
  // The zygote closed its copies before it replied; the child has its own.
  close(pipe_fds[1]);
  close(control[0]);
  if (sent.ok() && reply.pid <= 0) {
    sent = SetupFailed(std::string("fork: ") + std::strerror(reply.error));
  }
  int child_pidfd = -1;
  if (sent.ok()) {
    // The pid is reserved until the zygote reaps it, which it does only when
    // asked: the pidfd names the zygote's child, checked here.
    child_pidfd = static_cast<int>(syscall(SYS_pidfd_open, reply.pid, 0));
    if (child_pidfd < 0 || ParentOf(reply.pid) != pid_) {
      sent = SetupFailed("pid " + std::to_string(reply.pid) + " is not a child of the zygote");
      if (child_pidfd >= 0) close(child_pidfd);
    }
  }
  if (!sent.ok()) {
    close(pipe_fds[0]);
    close(control[1]);
    return sent;
  }
  *worker = Worker();
  worker->pid_ = reply.pid;
  worker->reaped_ = false;
  worker->channel_fd_ = pipe_fds[0];
  worker->control_fd_ = control[1];
  worker->pidfd_ = child_pidfd;
  return Status::Ok();
}

Status ZygoteProcess::Reap(pid_t pid, int* wait_status, int64_t* cpu_us, int64_t* max_rss_kib) {
  ZygoteRequest req;
  req.op = ZygoteOp::kReap;
  req.pid = pid;
  ZygoteReply reply;
  std::lock_guard<std::mutex> lock(mutex_);
  SAFEMODEL_RETURN_IF_ERROR(Exchange(socket_, pidfd_, req, {}, &reply));
  if (reply.pid != pid) return SetupFailed(std::string("wait4: ") + std::strerror(reply.error));
  *wait_status = reply.wait_status;
  *cpu_us = reply.utime_us + reply.stime_us;
  *max_rss_kib = reply.max_rss_kib;
  return Status::Ok();
}

Result<std::shared_ptr<ZygoteProcess>> ForkServer::StartZygote(const std::string& worker_path) {
  // Under the spawn lock: no other thread's posix_spawn may inherit the
  // parent's end (the zygote's death signal is that end's closing).
  std::lock_guard<std::mutex> spawn_lock(SpawnMutex());
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return SetupFailed(Errno("socketpair"));
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&actions, sv[1], kZygoteFd);
  posix_spawn_file_actions_addclose(&actions, 0);
  posix_spawn_file_actions_addclose(&actions, 1);
  posix_spawn_file_actions_addclose(&actions, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, kZygoteFd + 1);
  posix_spawn_file_actions_addchdir_np(&actions, "/");
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID);
  const std::string flag = std::string(kZygoteFlag) + std::to_string(getpid());
  char* argv[] = {const_cast<char*>(worker_path.c_str()), const_cast<char*>(flag.c_str()), nullptr};
  // Every lazy PLT entry of every library bound once, at the zygote's start,
  // instead of by _dl_fixup in each forked worker on its first call (the
  // HDF5 worker's 44 libraries bind lazily: tests/bench/PROFILE.md, tinyh5).
  // The workers inherit the environment; nothing in them reads it.
  char bind_now[] = "LD_BIND_NOW=1";
  char* envp[] = {bind_now, nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, worker_path.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    return SetupFailed("cannot start the zygote '" + worker_path + "': " + std::strerror(rc));
  }
  std::shared_ptr<ZygoteProcess> z(new ZygoteProcess());
  z->pid_ = pid;
  z->socket_ = sv[0];
  z->pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (z->pidfd_ < 0) return SetupFailed(Errno("pidfd_open (a fork server needs Linux 5.3)"));
  return z;
}

Result<std::shared_ptr<ForkServer>> ForkServer::Start(const std::string& worker_path) {
  std::error_code ec;
  const std::string path = std::filesystem::absolute(worker_path, ec).string();
  if (ec || worker_path.empty()) return SetupFailed("cannot resolve the worker path '" + worker_path + "'");
  std::shared_ptr<ForkServer> server(new ForkServer());
  server->worker_path_ = path;
  SAFEMODEL_ASSIGN_OR_RETURN(server->current_, StartZygote(path));
  server->started_ = 1;
  return server;
}

Status ForkServer::Spawn(SpawnOptions options, WorkerArgs args, Worker* worker) {
  std::shared_ptr<ZygoteProcess> zygote;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool dead = !current_->Alive();
    if (dead || forks_on_current_ >= kForkServerRotation) {
      // The old zygote lives on while its workers do (they hold it).
      SAFEMODEL_ASSIGN_OR_RETURN(current_, StartZygote(worker_path_));
      forks_on_current_ = 0;
      ++started_;
      if (dead) ++restarts_;
    }
    ++forks_on_current_;
    ++spawned_;
    zygote = current_;
  }
  args.parent_pid = zygote->pid();
  options.args = EncodeWorkerArgs(args);
  Status spawned = zygote->Spawn(options, worker);
  if (spawned.ok()) worker->zygote_ = zygote;
  return spawned;
}

Result<std::shared_ptr<ForkServer>> ForkServer::Companion(const std::string& worker_path) {
  std::error_code ec;
  const std::string path = std::filesystem::absolute(worker_path, ec).string();
  if (ec || worker_path.empty()) return SetupFailed("cannot resolve the worker path '" + worker_path + "'");
  std::lock_guard<std::mutex> lock(companions_mutex_);
  std::shared_ptr<ForkServer>& companion = companions_[path];
  if (!companion) {
    Result<std::shared_ptr<ForkServer>> started = Start(path);
    if (!started.ok()) {
      companions_.erase(path);  // the next conversion tries again
      return started.status();
    }
    companion = *started;
  }
  return companion;
}

size_t ForkServer::companions() const {
  std::lock_guard<std::mutex> lock(companions_mutex_);
  return companions_.size();
}
uint64_t ForkServer::spawned() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return spawned_;
}
uint64_t ForkServer::zygotes_started() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return started_;
}
uint64_t ForkServer::restarts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return restarts_;
}
pid_t ForkServer::zygote_pid() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return current_ ? current_->pid() : -1;
}

}  // namespace safemodel::sandbox
