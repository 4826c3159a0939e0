#include "sandbox/lockdown.h"

#include <linux/landlock.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "sandbox/frame_io.h"
#include "sandbox/policy.h"
#include "sandbox/privileges.h"

namespace safemodel::sandbox {

namespace {

std::string ErrnoText(const char* what) { return std::string(what) + ": " + std::strerror(errno); }
Status Errno(const char* what) { return Status(StatusCode::kSandboxSetupFailed, ErrnoText(what)); }
Status SetupFailed(std::string message) {
  return Status(StatusCode::kSandboxSetupFailed, std::move(message));
}

// Reports the trapped syscall to the parent, then dies by SIGSYS.
//
// The handler runs with SIGSYS blocked (no SA_NODEFER). Its last act is a
// syscall the policy denies; the kernel cannot deliver a blocked trap signal,
// so it resets SIGSYS to its default action and the process is killed by
// SIGSYS. rt_sigreturn is not allowed either, so the handler cannot return.
void OnSigsys(int /*sig*/, siginfo_t* info, void* /*ucontext*/) {
  uint8_t frame[kFrameHeaderBytes + kViolationPayloadBytes] = {};
  EncodeFrameHeader(FrameType::kViolation, kViolationPayloadBytes, frame);
  Violation v;
  v.syscall_nr = static_cast<uint32_t>(info->si_syscall);
  v.arch = info->si_arch;
  v.instruction_pointer = reinterpret_cast<uint64_t>(info->si_call_addr);
  EncodeViolation(v, frame + kFrameHeaderBytes);
  size_t off = 0;
  while (off < sizeof frame) {
    long w = syscall(SYS_write, kOutputFd, frame + off, sizeof frame - off);
    if (w <= 0) break;
    off += static_cast<size_t>(w);
  }
  syscall(SYS_tkill, 0, SIGSYS);     // denied: the kernel forces a fatal SIGSYS
  syscall(SYS_exit_group, 159);      // unreachable unless tkill were ever allowed
}

constexpr size_t kAltStackBytes = 64 * 1024;

// Landlock with every filesystem access right handled and no rule: no path
// can be opened, even if seccomp had a hole. Best effort (ABI-dependent).
bool RestrictWithLandlock() {
#ifdef SYS_landlock_create_ruleset
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) return false;
  struct {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
  } attr = {};
  attr.handled_access_fs = (1ull << 13) - 1;     // ABI 1: execute .. make_sym
  if (abi >= 2) attr.handled_access_fs |= 1ull << 13;  // refer
  if (abi >= 3) attr.handled_access_fs |= 1ull << 14;  // truncate
  if (abi >= 5) attr.handled_access_fs |= 1ull << 15;  // ioctl_dev
  size_t size = sizeof(uint64_t);
  if (abi >= 4) {
    attr.handled_access_net = 3;  // bind_tcp | connect_tcp
    size = sizeof attr;
  }
  long fd = syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (fd < 0) return false;
  long rc = syscall(SYS_landlock_restrict_self, static_cast<int>(fd), 0);
  close(static_cast<int>(fd));
  return rc == 0;
#else
  return false;
#endif
}

Status ArmParentDeathSignal(pid_t expected_parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return Errno("prctl(PR_SET_PDEATHSIG)");
  // The parent may have died before the signal was armed.
  if (expected_parent != 0 && getppid() != expected_parent) {
    return SetupFailed("the parent process is gone");
  }
  return Status::Ok();
}

// Namespaces (best effort), then identity and capabilities. A root worker
// creates the namespaces it can create as root first, then becomes nobody
// (a root-owned file stays readable to a kuid-0 process even inside a new
// user namespace), then enters a user namespace as nobody. A non-root worker
// enters all of them at once (a user namespace grants the rest). Either way
// every capability, including those of the new user namespace, is dropped.
Status IsolateIdentity(pid_t parent, std::vector<std::string>* layers) {
  constexpr int kOtherNamespaces = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  const std::vector<std::string> kOtherLayers = {"netns", "mntns", "ipcns", "utsns"};
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  getresuid(&ruid, &euid, &suid);
  getresgid(&rgid, &egid, &sgid);
  const bool root = ruid == 0 || euid == 0 || suid == 0 || rgid == 0 || egid == 0 || sgid == 0;
  bool non_root = !root;
  if (root) {
    if (unshare(kOtherNamespaces) == 0) layers->insert(layers->end(), kOtherLayers.begin(), kOtherLayers.end());
    // Fails where uid 65534 is not mapped (some containers): then only the
    // empty capability set protects, and the parent sees a uid of 0.
    non_root = DropRootIdentity().ok();
    if (non_root && unshare(CLONE_NEWUSER) == 0) layers->insert(layers->begin(), "userns");
  } else if (unshare(CLONE_NEWUSER | kOtherNamespaces) == 0) {
    layers->push_back("userns");
    layers->insert(layers->end(), kOtherLayers.begin(), kOtherLayers.end());
  } else if (unshare(kOtherNamespaces) == 0) {
    layers->insert(layers->end(), kOtherLayers.begin(), kOtherLayers.end());
  }
  if (non_root) layers->push_back("non_root");
  SAFEMODEL_RETURN_IF_ERROR(DropAllCapabilities());
  layers->push_back("no_capabilities");
  // A credential change clears the parent-death signal.
  return ArmParentDeathSignal(parent);
}

// Tells the parent the worker is locked down and waits for its go-ahead: the
// parent reads /proc/<pid> (seccomp, no-new-privs, ids, capabilities,
// namespaces, limits) while the worker is alive and idle, and writes one byte
// on fd 5 only if that is what it requires. Without it the worker stops.
Status AwaitApproval(const std::vector<std::string>& layers) {
  const std::string claim = EncodeLockedClaim(layers);
  if (!WriteFrame(kOutputFd, FrameType::kLocked, claim.data(), claim.size())) {
    return SetupFailed("the parent closed the result channel");
  }
  char go = 0;
  ssize_t n;
  while ((n = read(kControlFd, &go, 1)) < 0 && errno == EINTR) {
  }
  if (n != 1 || go != kGoAhead) return SetupFailed("the parent did not accept the worker's isolation");
  return Status::Ok();
}

// Sets a limit no higher than the inherited hard limit: lowering is always
// permitted, raising above it never is. The parent already fitted the values
// it passes to its own hard limits (converter/worker_limits.cc) and reports
// that; clamping here as well keeps a host that changed its limits in between
// from turning a stricter limit into a failed lockdown.
bool SetLimit(int resource, rlim_t soft, rlim_t hard) {
  struct rlimit current;
  if (getrlimit(resource, &current) == 0 && current.rlim_max != RLIM_INFINITY) {
    hard = std::min(hard, current.rlim_max);
    soft = std::min(soft, hard);
  }
  struct rlimit rl = {soft, hard};
  return setrlimit(resource, &rl) == 0;
}

}  // namespace

Status PrepareWorkerProcess(pid_t expected_parent, uint32_t file_count) {
  SAFEMODEL_RETURN_IF_ERROR(ArmParentDeathSignal(expected_parent));
  // Only the result channel, the input, the control channel and the files
  // of the model may stay open, whatever the host process leaked into us.
  if (syscall(SYS_close_range, static_cast<unsigned>(kFirstFileFd) + file_count, ~0U, 0) != 0) {
    return Errno("close_range");
  }
  for (int fd = 0; fd < kOutputFd; ++fd) close(fd);
  if (prctl(PR_SET_DUMPABLE, 0) != 0 || !SetLimit(RLIMIT_CORE, 0, 0)) {
    return Errno("disabling core dumps");
  }
  // The map of the input is made before LockDown sets the real address-space
  // limit: an inherited soft limit below the hard one (which the parent
  // fitted the worker's limits to) must not make that map fail.
  struct rlimit as;
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != as.rlim_max) {
    as.rlim_cur = as.rlim_max;
    setrlimit(RLIMIT_AS, &as);
  }
  RequestSpeculationMitigations();
  return Status::Ok();
}

Status LockDown(const LockdownOptions& options, std::vector<std::string>* layers) {
  // Namespaces (best effort): no network, no IPC, a private mount table, and
  // no privilege over the host's user namespace; then no root, no
  // capabilities.
  SAFEMODEL_RETURN_IF_ERROR(IsolateIdentity(options.parent_pid, layers));

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Errno("prctl(PR_SET_NO_NEW_PRIVS)");
  layers->push_back("no_new_privs");
  if (RestrictWithLandlock()) layers->push_back("landlock");

  bool limits_ok = SetLimit(RLIMIT_FSIZE, 0, 0) && SetLimit(RLIMIT_NOFILE, 0, 0) &&
                   SetLimit(RLIMIT_MEMLOCK, 0, 0);
  if (limits_ok && options.address_space_bytes > 0) {
    limits_ok = SetLimit(RLIMIT_AS, options.address_space_bytes, options.address_space_bytes);
  }
  if (limits_ok && options.cpu_seconds > 0) {
    limits_ok = SetLimit(RLIMIT_CPU, options.cpu_seconds, options.cpu_seconds + 1);
  }
  if (!limits_ok) return Errno("setrlimit");
  layers->push_back("rlimits");

  // The violation reporter runs on its own stack, so that it works even if
  // the fault came with a corrupt stack pointer.
  static void* alt_stack = std::malloc(kAltStackBytes);
  stack_t ss = {};
  ss.ss_sp = alt_stack;
  ss.ss_size = kAltStackBytes;
  struct sigaction sa = {};
  sa.sa_sigaction = OnSigsys;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (alt_stack == nullptr || sigaltstack(&ss, nullptr) != 0 ||
      sigaction(SIGSYS, &sa, nullptr) != 0) {
    return Errno("installing the SIGSYS reporter");
  }
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, SIGSYS);
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);

  // Dumpable until the parent has looked: a non-dumpable process's
  // /proc/<pid>/ns links are closed to an unprivileged parent. Core dumps
  // stay off (RLIMIT_CORE 0); the policy allows setting it back to 0 only.
  if (prctl(PR_SET_DUMPABLE, 1) != 0) return Errno("prctl(PR_SET_DUMPABLE)");
  SAFEMODEL_RETURN_IF_ERROR(InstallPolicy());
  layers->push_back("seccomp");
  SAFEMODEL_RETURN_IF_ERROR(AwaitApproval(*layers));
  if (prctl(PR_SET_DUMPABLE, 0) != 0) return Errno("prctl(PR_SET_DUMPABLE, 0)");
  return Status::Ok();
}

void AwaitDismissal() {
  // kDismiss is the only byte the parent sends after the go-ahead; whatever
  // comes, or the channel's end, ends the wait: nothing is decided on it.
  char bye;
  while (read(kControlFd, &bye, 1) < 0 && errno == EINTR) {
  }
}

}  // namespace safemodel::sandbox
