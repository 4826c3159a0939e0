// The seccomp policy of the worker: one table, one row per allowed syscall
// (or per allowed argument pattern), each with the reason it is needed.
//
// Everything not in the table is denied. Native x86-64 syscalls outside the
// table are trapped (SECCOMP_RET_TRAP): the trap handler installed by
// LockDown() reports the syscall number to the parent and the worker then
// dies by a kernel-forced SIGSYS; the syscall itself never runs. Any other
// architecture (i386 `int $0x80`, x32) is KILL_PROCESS, the filter's
// bad-architecture action.
#ifndef SAFEMODEL_SANDBOX_POLICY_H_
#define SAFEMODEL_SANDBOX_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "safemodel/status.h"

namespace safemodel::sandbox {

struct ArgCondition {
  enum class Op { kEqual, kMaskedEqual };
  unsigned index;  // argument number, 0-based
  Op op;
  uint64_t mask;   // kMaskedEqual only
  uint64_t value;
};

struct PolicyRule {
  const char* syscall;
  std::vector<ArgCondition> conditions;  // all must hold; empty = any arguments
  const char* reason;
};

// The allowlist, in the order it is documented.
const std::vector<PolicyRule>& Allowlist();

// Compiles the table with libseccomp and loads it into the calling process.
// The caller must already have set PR_SET_NO_NEW_PRIVS. Failures are
// kSandboxSetupFailed.
Status InstallPolicy();

// The compiled policy as libseccomp pseudo-filter-code text, for review and
// for the golden-file test that makes every policy change a visible diff.
Result<std::string> ExportPolicyPfc();

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_POLICY_H_
