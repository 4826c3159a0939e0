// Worker-side confinement, applied by the worker to itself before it looks at
// a single untrusted byte (the "sandbox me here" order):
//
//   EnsureAddressRandomization()  first thing in main() (privileges.h):
//                            re-executes once if ASLR was off.
//   PrepareWorkerProcess()   die with the parent, keep only fds 3 (result
//                            channel), 4 (input), 5 (control) and the
//                            files of a multi-file model (6..), not
//                            dumpable, no core files, speculation
//                            mitigations requested.
//   ... the caller maps the input and initialises its libraries ...
//   LockDown()               namespaces (best effort), root identity and
//                            every capability dropped, Landlock (best
//                            effort), no-new-privs, rlimits, the SIGSYS
//                            reporter, the seccomp allowlist; then a LOCKED
//                            frame to the parent and a wait on fd 5 until the
//                            parent, having checked /proc/<pid> itself,
//                            allows the worker to go on.
//
// After LockDown() returns OK the process can write to fd 3, manage its own
// memory and exit; nothing else (sandbox/policy.cc). Every failure is
// kSandboxSetupFailed, naming the step.
#ifndef SAFEMODEL_SANDBOX_LOCKDOWN_H_
#define SAFEMODEL_SANDBOX_LOCKDOWN_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "safemodel/status.h"

namespace safemodel::sandbox {

struct LockdownOptions {
  // RLIMIT_AS; 0 leaves it unset (sanitizer builds reserve terabytes of
  // shadow address space).
  uint64_t address_space_bytes = 0;
  // RLIMIT_CPU soft limit in seconds (SIGXCPU); the hard limit is one more.
  uint64_t cpu_seconds = 0;
  // The process that started the worker; the parent-death signal is re-armed
  // after the credential change and the parent checked again.
  pid_t parent_pid = 0;
};

// Fails if the process cannot be made safe to continue: then the caller must
// exit without reading its input. `file_count` descriptors from kFirstFileFd
// on (the files of a model made of several) are kept as well.
Status PrepareWorkerProcess(pid_t expected_parent, uint32_t file_count = 0);

// `layers` receives the isolation layers the worker believes are in force,
// e.g. "userns", "netns", "mntns", "ipcns", "utsns", "non_root",
// "no_capabilities", "no_new_privs", "landlock", "rlimits", "seccomp"; they
// are also the payload of the LOCKED frame (the worker's claim; the parent
// reports what it observes in /proc instead). Namespaces, the root-identity
// drop and Landlock are best effort; an empty capability set, no-new-privs,
// rlimits and seccomp are mandatory: if any of them fails, or the parent does
// not give the go-ahead on fd 5, this fails.
Status LockDown(const LockdownOptions& options, std::vector<std::string>* layers);

// After the worker's last frame (its result, an error report or a
// hand-off) has reached the result channel: waits for the parent's
// dismissal on the control channel (fd 5, kDismiss; sandbox::Worker::
// Dismiss), so that the parent can read this process's peak memory in
// /proc while it is still alive (an exited process has none to read, and
// wait4's figure includes the parent's own peak: observe.h). Returns at
// any byte, at the channel's end or on an error; a parent that never
// dismisses the worker kills it at its deadline.
// Uses only read on fd 5, which the policy allows (policy.cc). Call only
// once the last frame is written: a worker that waits without one is
// waited for in turn, until the deadline.
void AwaitDismissal();

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_LOCKDOWN_H_
