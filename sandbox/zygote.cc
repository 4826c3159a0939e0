#include "sandbox/zygote.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/worker_protocol.h"
#include "sandbox/zygote_protocol.h"

namespace safemodel::sandbox {

namespace {

// The zygote's own CPU: a fork costs well under a millisecond, and the
// parent replaces the zygote every kForkServerRotation (fork_server.h)
// conversions. A zygote stuck in a loop is stopped by this. Children reset
// the soft limit to the hard one before their own lockdown sets theirs.
constexpr rlim_t kZygoteCpuSeconds = 60;

bool SendReply(const ZygoteReply& reply) {
  ssize_t n;
  while ((n = send(kZygoteFd, &reply, sizeof reply, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  return n == static_cast<ssize_t>(sizeof reply);
}

// Receives one request and its descriptors. False on EOF or anything
// malformed (then the zygote exits: the parent is the only peer).
bool ReceiveRequest(ZygoteRequest* req, std::vector<int>* fds) {
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kZygoteMaxFds)];
  struct iovec iov = {req, sizeof *req};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  while ((n = recvmsg(kZygoteFd, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); n > 0 && c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds->push_back(fd);
    }
  }
  const bool ok = n == static_cast<ssize_t>(sizeof *req) && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0 &&
                  req->magic == kZygoteMagic &&
                  (req->op == ZygoteOp::kReap ||
                   (req->op == ZygoteOp::kSpawn && req->fd_count >= 3 && req->fd_count == fds->size() &&
                    req->args_bytes <= kZygoteArgsBytes));
  return ok;
}

// In the forked child: the passed descriptors to 3, 4, 5, 6..., nothing
// else open, its own session, default signals; then the worker's main.
[[noreturn]] void RunChild(const ZygoteRequest& req, const std::vector<int>& fds, char* argv0,
                           WorkerMainFn worker_main) {
  // Above every target first, so that no dup2 clobbers a source.
  const int high = kOutputFd + static_cast<int>(fds.size());
  std::vector<int> moved;
  for (int fd : fds) {
    const int m = fcntl(fd, F_DUPFD_CLOEXEC, high);
    if (m < 0) _exit(125);
    moved.push_back(m);
  }
  for (size_t i = 0; i < moved.size(); ++i) {
    if (dup2(moved[i], kOutputFd + static_cast<int>(i)) < 0) _exit(125);
  }
  // Everything else: the zygote's socket, the received originals (which
  // recvmsg may have put at 0, 1 and 2, closed in the zygote) and their
  // moved copies.
  if (syscall(SYS_close_range, static_cast<unsigned>(high), ~0U, 0) != 0) _exit(125);
  for (int fd = 0; fd < kOutputFd; ++fd) close(fd);
  if (setsid() < 0) _exit(125);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct rlimit cpu;
  if (getrlimit(RLIMIT_CPU, &cpu) == 0) {
    cpu.rlim_cur = cpu.rlim_max;
    setrlimit(RLIMIT_CPU, &cpu);
  }
  // argv: the zygote's argv[0], then the request's NUL-separated arguments.
  std::vector<char*> argv = {argv0};
  std::string_view args(req.args, req.args_bytes);
  std::vector<std::string> storage;
  while (!args.empty()) {
    const size_t end = args.find('\0');
    if (end == std::string_view::npos) _exit(125);
    storage.emplace_back(args.substr(0, end));
    args.remove_prefix(end + 1);
  }
  for (std::string& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  _exit(worker_main(static_cast<int>(argv.size()) - 1, argv.data()));
}

ZygoteReply Spawn(const ZygoteRequest& req, const std::vector<int>& fds, char* argv0,
                  WorkerMainFn worker_main) {
  ZygoteReply reply;
  reply.op = ZygoteOp::kSpawn;
  const pid_t pid = fork();
  if (pid == 0) RunChild(req, fds, argv0, worker_main);
  if (pid < 0) {
    reply.error = errno;
  } else {
    reply.pid = pid;
  }
  return reply;
}

ZygoteReply Reap(pid_t pid) {
  ZygoteReply reply;
  reply.op = ZygoteOp::kReap;
  int status = 0;
  struct rusage usage = {};
  pid_t r;
  // Only a child of this zygote (wait4 refuses any other pid with ECHILD).
  while ((r = pid > 0 ? wait4(pid, &status, 0, &usage) : -1) < 0 && errno == EINTR) {
  }
  if (r != pid || pid <= 0) {
    reply.error = pid <= 0 ? EINVAL : errno;
    return reply;
  }
  reply.pid = r;
  reply.wait_status = status;
  reply.utime_us = usage.ru_utime.tv_sec * 1'000'000 + usage.ru_utime.tv_usec;
  reply.stime_us = usage.ru_stime.tv_sec * 1'000'000 + usage.ru_stime.tv_usec;
  reply.max_rss_kib = usage.ru_maxrss;
  return reply;
}

// The zygote's own confinement, before `init`.
//
// No parent-death signal: the kernel sends it when the *thread* that
// started the process ends, and a batch's conversion threads end one by one
// (a zygote replaced on one of them died with it while the other threads
// still used it: seen at the end of a 1,000-file batch). The zygote dies
// with the parent through its socket instead: it is blocked in recvmsg
// whenever it is not forking or reaping, and the parent's end is its only
// other copy (close-on-exec, created under the spawn lock), so the parent's
// death is an EOF and the zygote exits. Its children's parent-death signal
// names the zygote (single-threaded), so they die with it.
bool PrepareZygote(pid_t parent) {
  if (getppid() != parent) return false;
  if (syscall(SYS_close_range, static_cast<unsigned>(kZygoteFd) + 1, ~0U, 0) != 0) return false;
  for (int fd = 0; fd < kZygoteFd; ++fd) close(fd);
  struct rlimit core = {0, 0};
  if (prctl(PR_SET_DUMPABLE, 0) != 0 || setrlimit(RLIMIT_CORE, &core) != 0) return false;
  struct rlimit cpu;
  if (getrlimit(RLIMIT_CPU, &cpu) != 0) return false;
  cpu.rlim_cur = cpu.rlim_max == RLIM_INFINITY ? kZygoteCpuSeconds
                                                 : std::min<rlim_t>(cpu.rlim_max, kZygoteCpuSeconds);
  if (setrlimit(RLIMIT_CPU, &cpu) != 0) return false;
  // Children stay zombies until the parent asks for their reap (an ignored
  // SIGCHLD would reap them at once and free their pids).
  signal(SIGCHLD, SIG_DFL);
  return true;
}

}  // namespace

bool IsZygoteInvocation(int argc, char** argv) {
  return argc >= 2 && std::string_view(argv[1]).starts_with(kZygoteFlag);
}

int RunZygote(int argc, char** argv, ZygoteInitFn init, WorkerMainFn worker_main) {
  const std::string_view flag(argv[1]);
  const std::string_view digits = flag.substr(std::strlen(kZygoteFlag));
  pid_t parent = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), parent);
  if (ec != std::errc() || end != digits.data() + digits.size() || parent <= 0) return 2;
  // argc: the flag and at most kReexecutedFlag (EnsureAddressRandomization).
  if (argc > 3 || (argc == 3 && std::string_view(argv[2]) != kReexecutedFlag)) return 2;
  // Started with LD_BIND_NOW=1 alone (fork_server.cc), which the dynamic
  // linker has acted on: its workers get no environment, as exec'd ones.
  clearenv();
  if (!PrepareZygote(parent)) return 3;
  if (init != nullptr) init();
  for (;;) {
    ZygoteRequest req;
    std::vector<int> fds;
    const bool ok = ReceiveRequest(&req, &fds);
    ZygoteReply reply;
    if (ok && req.op == ZygoteOp::kSpawn) reply = Spawn(req, fds, argv[0], worker_main);
    // The zygote holds no worker descriptor past its fork: the next child
    // inherits nothing of this one.
    for (int fd : fds) close(fd);
    if (!ok) return 0;
    if (req.op == ZygoteOp::kReap) reply = Reap(req.pid);
    if (!SendReply(reply)) return 0;
  }
}

int ZygoteOrMain(int argc, char** argv, WorkerMainFn worker_main) {
  return IsZygoteInvocation(argc, argv) ? RunZygote(argc, argv, nullptr, worker_main)
                                        : worker_main(argc, argv);
}

}  // namespace safemodel::sandbox
