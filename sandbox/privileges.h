// Worker-side credential and process-property hardening, used by
// PrepareWorkerProcess() and LockDown() (lockdown.h). Each function is
// applied by the worker to itself, before it reads its input; the parent
// checks the result in /proc itself (observe.h), so nothing here is trusted
// on the worker's word.
#ifndef SAFEMODEL_SANDBOX_PRIVILEGES_H_
#define SAFEMODEL_SANDBOX_PRIVILEGES_H_

#include <sys/types.h>

#include <string>

#include "safemodel/status.h"

namespace safemodel::sandbox {

// The unprivileged identity a worker started as root takes on: "nobody" /
// "nogroup" on Debian, owning no file a conversion could touch.
inline constexpr uid_t kUnprivilegedUid = 65534;
inline constexpr gid_t kUnprivilegedGid = 65534;

// If the process runs with ASLR off (personality ADDR_NO_RANDOMIZE, inherited
// from `setarch -R` or a debugger), clears the flag and re-executes
// /proc/self/exe with the same arguments plus kReexecutedFlag
// (worker_protocol.h) and an empty environment: address-space layout is
// chosen at exec, so clearing the flag alone would not randomise this image.
// Returns OK when ASLR is on (after a re-exec, in the new image), or
// kSandboxSetupFailed if it cannot be turned on. Call first thing in main(),
// before any other setup.
Status EnsureAddressRandomization(int argc, char** argv);

// Asks the kernel to force speculative-store-bypass and indirect-branch
// speculation mitigations on for this process (PR_SET_SPECULATION_CTRL, as
// Chrome's and Firefox's sandboxes do). Kernels and CPUs that do not support
// per-process control refuse; that is tolerated (the parent reports what
// /proc shows).
void RequestSpeculationMitigations();

// When any of the process's user or group ids is 0: leaves every
// supplementary group and becomes kUnprivilegedUid/kUnprivilegedGid (real,
// effective and saved). Otherwise does nothing. The kernel clears the
// parent-death signal and the dumpable flag on a credential change; the
// caller re-arms them. Fails (kSandboxSetupFailed) if it was root and is
// still.
Status DropRootIdentity();

// Empties every capability set this process can empty: bounding (possible
// with CAP_SETPCAP, e.g. as root or inside a new user namespace), ambient,
// inheritable, permitted and effective. Fails (kSandboxSetupFailed) if the
// effective, permitted, inheritable or ambient set is not empty afterwards.
Status DropAllCapabilities();

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_PRIVILEGES_H_
