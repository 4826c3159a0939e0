// The seccomp policy as data: the table is well-formed and the compiled filter
// is exactly the reviewed golden file, so every policy change is a diff.
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include <set>
#include <string>

#include <gtest/gtest.h>

#include "sandbox/policy.h"
#include "tests/testing/test_util.h"

namespace safemodel::sandbox {
namespace {

TEST(PolicyTable, EveryRowHasAKnownSyscallAndAReason) {
  ASSERT_FALSE(Allowlist().empty());
  for (const PolicyRule& rule : Allowlist()) {
    SCOPED_TRACE(rule.syscall);
    EXPECT_NE(seccomp_syscall_resolve_name(rule.syscall), __NR_SCMP_ERROR);
    ASSERT_NE(rule.reason, nullptr);
    EXPECT_GE(std::string(rule.reason).size(), 10u) << "a reason says why the call is needed";
    EXPECT_LE(rule.conditions.size(), 6u);
    for (const ArgCondition& c : rule.conditions) EXPECT_LT(c.index, 6u);
  }
}

// The allowlist of the production build, by name. Widening it is a security
// decision: update this list, the golden file and the README together.
TEST(PolicyTable, AllowsExactlyTheDocumentedSyscalls) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  GTEST_SKIP() << "sanitizer builds add the runtimes' syscalls to the table";
#endif
  std::set<std::string> names;
  for (const PolicyRule& rule : Allowlist()) names.insert(rule.syscall);
  EXPECT_EQ(names, (std::set<std::string>{"write", "read", "mmap", "munmap", "brk", "mremap",
                                          "madvise", "futex", "prctl", "exit_group"}));
}

// The rows that allow a call with some arguments only: exactly those.
TEST(PolicyTable, ConditionalRowsAreNarrow) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  GTEST_SKIP() << "sanitizer builds add unconditional rows";
#endif
  for (const PolicyRule& rule : Allowlist()) {
    const std::string s = rule.syscall;
    SCOPED_TRACE(s);
    if (s == "read" || s == "write") {
      ASSERT_EQ(rule.conditions.size(), 1u);
      EXPECT_EQ(rule.conditions[0].index, 0u);  // the fd
      EXPECT_EQ(rule.conditions[0].op, ArgCondition::Op::kEqual);
      EXPECT_EQ(rule.conditions[0].value, s == "read" ? 5u : 3u);
    }
    if (s == "prctl") {
      ASSERT_EQ(rule.conditions.size(), 2u);
      EXPECT_EQ(rule.conditions[0].value, static_cast<uint64_t>(PR_SET_DUMPABLE));
      EXPECT_EQ(rule.conditions[1].index, 1u);
      EXPECT_EQ(rule.conditions[1].value, 0u);  // not dumpable, never back to dumpable
    }
    if (s == "mmap") {
      ASSERT_EQ(rule.conditions.size(), 2u);
      EXPECT_EQ(rule.conditions[0].mask, static_cast<uint64_t>(PROT_EXEC));
      EXPECT_EQ(rule.conditions[1].index, 3u);  // flags: nothing but private anonymous
      EXPECT_EQ(~rule.conditions[1].mask, static_cast<uint64_t>(MAP_PRIVATE | MAP_ANONYMOUS));
    }
  }
}

TEST(PolicyTable, DangerousCallsAreNeverAllowed) {
  // Even in sanitizer builds.
  for (const PolicyRule& rule : Allowlist()) {
    std::string s = rule.syscall;
    for (const char* bad : {"open", "openat", "openat2", "execve", "execveat", "socket", "connect",
                            "fork", "vfork", "clone", "clone3", "ptrace", "process_vm_readv",
                            "process_vm_writev", "kill", "tgkill", "tkill", "ioctl",
                            "seccomp", "unshare", "setns", "mount", "chroot", "bpf",
                            "io_uring_setup", "userfaultfd", "memfd_create", "personality"}) {
      EXPECT_NE(s, bad);
    }
  }
}

std::string GoldenPath() { return testing::Fixture("../sandbox/policy.pfc"); }

TEST(PolicyGolden, CompiledFilterMatchesTheReviewedFile) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  GTEST_SKIP() << "sanitizer builds compile a wider policy; the golden file is the production one";
#endif
  auto exported = ExportPolicyPfc();
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  const std::string& pfc = *exported;
  ASSERT_TRUE(testing::Exists(GoldenPath())) << GoldenPath();
  std::string golden = testing::ReadFile(GoldenPath());
  EXPECT_EQ(pfc, golden)
      << "The compiled seccomp policy differs from tests/sandbox/policy.pfc.\n"
      << "If the change is intended, review the diff and regenerate the file with\n"
      << "  " << testing::BinDir() << "/sandbox-probe --print-policy-pfc > "
      << "tests/sandbox/policy.pfc\n";
}

TEST(PolicyGolden, DefaultAndBadArchActions) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  GTEST_SKIP() << "the golden file is the production policy";
#endif
  std::string golden = testing::ReadFile(GoldenPath());
  // Everything unlisted traps (reported by number, then killed by SIGSYS);
  // foreign architectures are killed outright.
  EXPECT_NE(golden.find("action TRAP;"), std::string::npos);
  EXPECT_NE(golden.find("action KILL_PROCESS;"), std::string::npos);
  EXPECT_NE(golden.find("if ($arch == 3221225534)"), std::string::npos);  // AUDIT_ARCH_X86_64
  EXPECT_EQ(golden.find("action ALLOW;\n# default"), std::string::npos);
}

}  // namespace
}  // namespace safemodel::sandbox
