#include "sandbox/policy.h"

#include <linux/futex.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "sandbox/worker_protocol.h"

namespace safemodel::sandbox {

namespace {
using Op = ArgCondition::Op;
}  // namespace

const std::vector<PolicyRule>& Allowlist() {
  static const std::vector<PolicyRule> kRules = {
      {"write", {{0, Op::kEqual, 0, static_cast<uint64_t>(kOutputFd)}},
       "frames to the parent on the result channel; no other fd may be written"},
      // Flags as measured (strace of every fixture and corpus file, 20 MiB
      // inputs of each format): glibc malloc maps MAP_PRIVATE|MAP_ANONYMOUS
      // only. No MAP_FIXED (it could overwrite the worker's own text or
      // RELRO), no MAP_SHARED, no file mappings that need other flags.
      {"mmap",
       {{2, Op::kMaskedEqual, PROT_EXEC, 0},
        {3, Op::kMaskedEqual, ~static_cast<uint64_t>(MAP_PRIVATE | MAP_ANONYMOUS), 0}},
       "malloc of large blocks and parser buffers; private anonymous memory only, never "
       "executable, never at a fixed address"},
      {"munmap", {}, "free of large blocks"},
      {"brk", {}, "malloc growing and trimming the main arena"},
      {"mremap", {{3, Op::kEqual, 0, MREMAP_MAYMOVE}},
       "realloc of large blocks; only the plain move form"},
      {"madvise", {{2, Op::kEqual, 0, MADV_DONTNEED}},
       "drop input pages already converted, so memory stays bounded"},
      {"futex", {{1, Op::kEqual, 0, FUTEX_WAIT_PRIVATE}},
       "C++ runtime one-time initialisation (pthread_once), process-private only"},
      {"futex", {{1, Op::kEqual, 0, FUTEX_WAKE_PRIVATE}},
       "C++ runtime one-time initialisation (pthread_once), process-private only"},
      {"read", {{0, Op::kEqual, 0, static_cast<uint64_t>(kControlFd)}},
       "the parent's one-byte go-ahead after it checked the locked-down worker in /proc, and "
       "after the last frame its one-byte dismissal (AwaitDismissal), so that the parent "
       "reads the worker's peak memory while it is alive; no other fd may be read (the "
       "input is mapped before lockdown)"},
      {"prctl", {{0, Op::kEqual, 0, PR_SET_DUMPABLE}, {1, Op::kEqual, 0, 0}},
       "becoming non-dumpable again once the parent has read /proc/<pid>/ns; only the value 0"},
      {"exit_group", {}, "the worker's normal end"},
#if defined(SAFEMODEL_SANITIZER_BUILD)
      // Sanitizer runtimes make these calls to report errors and to manage
      // their shadow memory. Sanitizer builds are for testing only.
      {"write", {{0, Op::kEqual, 0, 2}}, "sanitizer reports on stderr (sanitizer builds only)"},
      {"getpid", {}, "sanitizer runtime (sanitizer builds only)"},
      {"gettid", {}, "sanitizer runtime (sanitizer builds only)"},
      {"sched_yield", {}, "sanitizer runtime (sanitizer builds only)"},
      {"madvise", {}, "sanitizer shadow memory (sanitizer builds only)"},
      {"mprotect", {{2, Op::kMaskedEqual, PROT_EXEC, 0}}, "sanitizer allocator (sanitizer builds only)"},
      {"mmap", {{2, Op::kMaskedEqual, PROT_EXEC, 0}},
       "sanitizer allocator: fixed and no-reserve mappings (sanitizer builds only)"},
      {"rt_sigprocmask", {}, "sanitizer runtime (sanitizer builds only)"},
      {"sigaltstack", {}, "sanitizer runtime (sanitizer builds only)"},
#endif
  };
  return kRules;
}

namespace {

Status SetupFailed(std::string message) {
  return Status(StatusCode::kSandboxSetupFailed, std::move(message));
}

// Builds (but does not load) the filter. Returns nullptr on failure.
scmp_filter_ctx BuildFilter(std::string* error) {
  // Native syscalls outside the table trap so the handler can name them; the
  // bad-architecture action (i386, x32) kills the process outright.
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
  if (ctx == nullptr) {
    *error = "seccomp_init failed";
    return nullptr;
  }
  auto fail = [&](const std::string& what, int rc) {
    *error = what + ": " + std::strerror(-rc);
    seccomp_release(ctx);
    return nullptr;
  };
  int rc;
  if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) != 0) {
    return fail("setting the bad-architecture action", rc);
  }
  // Report kernel errors as such rather than as -ECANCELED.
  if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1)) != 0) {
    return fail("setting SYSRAWRC", rc);
  }
  // The worker is single-threaded; TSYNC makes sure of it for the filter.
  if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0) {
    return fail("setting TSYNC", rc);
  }
  for (const PolicyRule& rule : Allowlist()) {
    int nr = seccomp_syscall_resolve_name(rule.syscall);
    if (nr == __NR_SCMP_ERROR) {
      *error = std::string("unknown syscall in the policy table: ") + rule.syscall;
      seccomp_release(ctx);
      return nullptr;
    }
    scmp_arg_cmp cmps[6];
    unsigned n = 0;
    for (const ArgCondition& c : rule.conditions) {
      cmps[n++] = c.op == Op::kEqual ? SCMP_CMP64(c.index, SCMP_CMP_EQ, c.value)
                                     : SCMP_CMP64(c.index, SCMP_CMP_MASKED_EQ, c.mask, c.value);
    }
    rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, n, cmps);
    if (rc != 0) return fail(std::string("adding the rule for ") + rule.syscall, rc);
  }
  return ctx;
}

}  // namespace

Status InstallPolicy() {
  std::string error;
  scmp_filter_ctx ctx = BuildFilter(&error);
  if (ctx == nullptr) return SetupFailed(std::move(error));
  int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) return SetupFailed(std::string("loading the seccomp filter failed: ") + std::strerror(-rc));
  return Status::Ok();
}

Result<std::string> ExportPolicyPfc() {
  std::string error;
  scmp_filter_ctx ctx = BuildFilter(&error);
  if (ctx == nullptr) return SetupFailed(std::move(error));
  // libseccomp writes PFC to a file descriptor; an anonymous memory file
  // keeps this free of the file system.
  int fd = memfd_create("safemodel-policy-pfc", MFD_CLOEXEC);
  if (fd < 0) {
    seccomp_release(ctx);
    return SetupFailed(std::string("memfd_create failed: ") + std::strerror(errno));
  }
  int rc = seccomp_export_pfc(ctx, fd);
  seccomp_release(ctx);
  if (rc != 0) {
    close(fd);
    return SetupFailed(std::string("seccomp_export_pfc failed: ") + std::strerror(-rc));
  }
  std::string pfc;
  char buf[4096];
  ssize_t n;
  off_t off = 0;
  while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
    pfc.append(buf, static_cast<size_t>(n));
    off += n;
  }
  close(fd);
  return pfc;
}

}  // namespace safemodel::sandbox
