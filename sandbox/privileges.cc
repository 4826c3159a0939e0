#include "sandbox/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "sandbox/worker_protocol.h"

namespace safemodel::sandbox {

namespace {

Status SetupFailed(std::string message) {
  return Status(StatusCode::kSandboxSetupFailed, std::move(message));
}
Status Errno(const char* what) { return SetupFailed(std::string(what) + ": " + std::strerror(errno)); }

// Capability numbers go up to 63 in the kernel's 64-bit sets.
constexpr int kMaxCapability = 63;

Status CapabilitySetsEmpty() {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) return Errno("capget");
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) {
      return SetupFailed("capabilities remain after dropping them");
    }
  }
  for (int cap = 0; cap <= kMaxCapability; ++cap) {
    int r = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0);
    if (r < 0) break;  // past the last capability this kernel knows
    if (r == 1) return SetupFailed("an ambient capability remains after dropping them");
  }
  return Status::Ok();
}

}  // namespace

Status EnsureAddressRandomization(int argc, char** argv) {
  int persona = personality(0xffffffff);
  if (persona < 0) return Errno("personality");
  if ((persona & ADDR_NO_RANDOMIZE) == 0) return Status::Ok();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], kReexecutedFlag) == 0) {
      return SetupFailed("address-space randomisation is still off after re-executing");
    }
  }
  if (personality(static_cast<unsigned long>(persona & ~ADDR_NO_RANDOMIZE)) < 0) {
    return Errno("personality(clear ADDR_NO_RANDOMIZE)");
  }
  std::vector<char*> args(argv, argv + argc);
  args.push_back(const_cast<char*>(kReexecutedFlag));
  args.push_back(nullptr);
  char* no_env[] = {nullptr};
  execve("/proc/self/exe", args.data(), no_env);
  return Errno("re-executing the worker to turn address-space randomisation on");
}

void RequestSpeculationMitigations() {
  // EINVAL/ENXIO/EPERM (no per-task control, or mitigated globally) are
  // fine: the parent reads the state from /proc/<pid>/status.
  prctl(PR_SET_SPECULATION_CTRL, PR_SPEC_STORE_BYPASS, PR_SPEC_FORCE_DISABLE, 0, 0);
  prctl(PR_SET_SPECULATION_CTRL, PR_SPEC_INDIRECT_BRANCH, PR_SPEC_FORCE_DISABLE, 0, 0);
}

Status DropRootIdentity() {
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0) {
    return Errno("getresuid");
  }
  if (ruid != 0 && euid != 0 && suid != 0 && rgid != 0 && egid != 0 && sgid != 0) {
    return Status::Ok();
  }
  // Groups first, while CAP_SETGID is still there; the user id last.
  if (setgroups(0, nullptr) != 0) return Errno("setgroups");
  if (setresgid(kUnprivilegedGid, kUnprivilegedGid, kUnprivilegedGid) != 0) return Errno("setresgid");
  if (setresuid(kUnprivilegedUid, kUnprivilegedUid, kUnprivilegedUid) != 0) return Errno("setresuid");
  if (getresuid(&ruid, &euid, &suid) != 0 || ruid == 0 || euid == 0 || suid == 0 ||
      getresgid(&rgid, &egid, &sgid) != 0 || rgid == 0 || egid == 0 || sgid == 0) {
    return SetupFailed("still root after dropping the root identity");
  }
  return Status::Ok();
}

Status DropAllCapabilities() {
  // The bounding set needs CAP_SETPCAP; without it (an unprivileged user
  // outside a new user namespace) it stays, which no-new-privs makes moot:
  // nothing can be executed to gain from it.
  for (int cap = 0; cap <= kMaxCapability; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;  // past the last
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct none[2] = {};
  if (syscall(SYS_capset, &header, none) != 0) return Errno("capset");
  return CapabilitySetsEmpty();
}

}  // namespace safemodel::sandbox
