// Worker-side confinement, applied by the worker to itself before it looks at
// a single untrusted byte (the "sandbox me here" order):
//
//   PrepareWorkerProcess()   first thing in main(): die with the parent, keep
//                            only fds 3 (result channel) and 4 (input), not
//                            dumpable, no core files.
//   ... the caller maps the input and initialises its libraries ...
//   LockDown()               namespaces and Landlock (best effort, reported),
//                            no-new-privs, rlimits, the SIGSYS reporter, and
//                            the seccomp allowlist (mandatory).
//
// After LockDown() returns true the process can write to fd 3, manage its own
// memory and exit; nothing else (sandbox/policy.cc).
#ifndef SAFEMODEL_SANDBOX_LOCKDOWN_H_
#define SAFEMODEL_SANDBOX_LOCKDOWN_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace safemodel::sandbox {

struct LockdownOptions {
  // RLIMIT_AS; 0 leaves it unset (sanitizer builds reserve terabytes of
  // shadow address space).
  uint64_t address_space_bytes = 0;
  // RLIMIT_CPU soft limit in seconds (SIGXCPU); the hard limit is one more.
  uint64_t cpu_seconds = 0;
};

// Returns false (with *error set) if the process cannot be made safe to
// continue: then the caller must exit without reading its input.
bool PrepareWorkerProcess(pid_t expected_parent, std::string* error);

// `layers` receives the isolation layers in force, e.g. "seccomp",
// "no_new_privs", "rlimits", "userns", "netns", "mntns", "landlock".
// Namespaces and Landlock are best effort; seccomp, no-new-privs and rlimits
// are mandatory: if any of them fails, this returns false.
bool LockDown(const LockdownOptions& options, std::vector<std::string>* layers,
              std::string* error);

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_LOCKDOWN_H_
