// Forbidden system calls after lockdown. sandbox-probe applies the production
// PrepareWorkerProcess + LockDown and then makes one forbidden call. Each must
// end with the worker killed by SIGSYS and the call reported by number and
// name, both by the supervisor API (VIOLATION frame + exit status) and by
// ConvertFile (kSandboxViolation, exit code 5, no output, no temp file).
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "safemodel/convert.h"
#include "safemodel/reader.h"
#include "sandbox/supervisor.h"
#include "tests/sandbox/probe_util.h"

namespace safemodel::testing {
namespace {

constexpr uint32_t kAuditArchX86_64 = 0xC000003E;

struct Forbidden {
  const char* mode;  // probe mode (tests/sandbox/sandbox_probe.cc)
  int nr;            // expected syscall number (x86-64)
  const char* name;  // expected name
  // The sanitizer policy bundle allows this call (policy.cc): skip there.
  bool allowed_under_sanitizers = false;
};

std::ostream& operator<<(std::ostream& os, const Forbidden& f) { return os << f.mode; }

const Forbidden kForbidden[] = {
    {"openat", SYS_openat, "openat"},
    {"open", SYS_open, "open"},
    {"openat2", SYS_openat2, "openat2"},
    {"execve", SYS_execve, "execve"},
    {"execveat", SYS_execveat, "execveat"},
    {"socket", SYS_socket, "socket"},
    {"connect", SYS_connect, "connect"},
    {"bind", SYS_bind, "bind"},
    {"fork", SYS_fork, "fork"},
    {"vfork", SYS_vfork, "vfork"},
    {"clone", SYS_clone, "clone"},
    {"clone-newuser", SYS_clone, "clone"},
    {"clone3", SYS_clone3, "clone3"},
    {"ptrace", SYS_ptrace, "ptrace"},
    {"process_vm_readv", SYS_process_vm_readv, "process_vm_readv"},
    {"kill", SYS_kill, "kill"},
    {"tgkill", SYS_tgkill, "tgkill"},
    {"ioctl-tiocsti", SYS_ioctl, "ioctl"},
    {"ioctl-tiocsti-high", SYS_ioctl, "ioctl"},
    {"mmap-exec", SYS_mmap, "mmap"},
    {"mprotect-exec", SYS_mprotect, "mprotect"},
    {"pkey_mprotect-exec", SYS_pkey_mprotect, "pkey_mprotect"},
    {"write-stdout", SYS_write, "write"},
    {"write-stderr", SYS_write, "write", /*allowed_under_sanitizers=*/true},
    {"write-fd3-high", SYS_write, "write"},
    {"prctl", SYS_prctl, "prctl"},
    {"seccomp", SYS_seccomp, "seccomp"},
    {"unshare", SYS_unshare, "unshare"},
    {"setns", SYS_setns, "setns"},
    {"mount", SYS_mount, "mount"},
    {"chroot", SYS_chroot, "chroot"},
    {"setuid", SYS_setuid, "setuid"},
    {"personality", SYS_personality, "personality"},
    {"io_uring_setup", SYS_io_uring_setup, "io_uring_setup"},
    {"bpf", SYS_bpf, "bpf"},
    {"userfaultfd", SYS_userfaultfd, "userfaultfd"},
    {"memfd_create", SYS_memfd_create, "memfd_create"},
    {"madvise-willneed", SYS_madvise, "madvise", /*allowed_under_sanitizers=*/true},
    {"futex-shared", SYS_futex, "futex"},
    {"futex-lock-pi", SYS_futex, "futex"},
    {"mremap-nomove", SYS_mremap, "mremap"},
    {"mremap-fixed", SYS_mremap, "mremap"},
    {"getcwd", SYS_getcwd, "getcwd"},
    {"getpid", SYS_getpid, "getpid", /*allowed_under_sanitizers=*/true},
    {"exit-thread", SYS_exit, "exit"},
    // mmap is allowed for private anonymous memory only (Chrome's baseline
    // restricts its flags too): no fixed address (it could overwrite the
    // worker's own code or RELRO), no shared or stack-like mappings.
    {"mmap-fixed", SYS_mmap, "mmap", /*allowed_under_sanitizers=*/true},
    {"mmap-fixed-noreplace", SYS_mmap, "mmap", /*allowed_under_sanitizers=*/true},
    {"mmap-shared", SYS_mmap, "mmap", /*allowed_under_sanitizers=*/true},
    {"mmap-growsdown", SYS_mmap, "mmap", /*allowed_under_sanitizers=*/true},
    // read is allowed on the control channel (fd 5) only.
    {"read-fd3", SYS_read, "read"},
    // prctl is allowed for PR_SET_DUMPABLE 0 only ("prctl" above sets 1).
    {"prctl-set-name", SYS_prctl, "prctl"},
};

class ForbiddenSyscall : public ::testing::TestWithParam<Forbidden> {
 protected:
  void SetUp() override {
#if defined(SAFEMODEL_SANITIZER_BUILD)
    if (GetParam().allowed_under_sanitizers) {
      GTEST_SKIP() << "the sanitizer policy bundle allows " << GetParam().name;
    }
#endif
  }
};

TEST_P(ForbiddenSyscall, KilledAndNamedViaSupervisor) {
  const Forbidden& f = GetParam();
  ProbeRun run = RunProbe(f.mode);
  ASSERT_TRUE(run.spawned) << run.spawn_error;
  EXPECT_FALSE(run.error_frame) << "the forbidden call returned: " << run.Describe();
  ASSERT_TRUE(run.violation) << run.Describe();
  EXPECT_EQ(run.syscall_nr, static_cast<uint32_t>(f.nr)) << run.Describe();
  EXPECT_EQ(run.arch, kAuditArchX86_64);
  EXPECT_EQ(sandbox::SyscallName(static_cast<int>(run.syscall_nr)), f.name);
  // The lockdown report and the violation frame are the whole stream, and
  // the kernel, not the parent, ended the worker, with SIGSYS.
  ASSERT_EQ(run.frames.size(), 2u) << run.Describe();
  EXPECT_EQ(run.frames[0].type, sandbox::FrameType::kLocked);
  EXPECT_EQ(run.frames[1].type, sandbox::FrameType::kViolation);
  EXPECT_EQ(run.end, sandbox::FrameReader::Result::kEof) << run.Describe();
  EXPECT_TRUE(run.SignaledWith(SIGSYS)) << run.Describe();
  EXPECT_FALSE(run.exit.killed_by_us);
}

TEST_P(ForbiddenSyscall, ReportedByConvertFileWithNoOutput) {
  const Forbidden& f = GetParam();
  TempDir out;
  int fds_before = CountOpenFds();
  ConvertReport r = ConvertWithProbe(f.mode, out);
  EXPECT_EQ(r.status.code(), StatusCode::kSandboxViolation) << r.status.ToString();
  EXPECT_EQ(ExitCodeFor(r.status.code()), 5);
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kSeccomp);
  EXPECT_EQ(r.worker.signal, SIGSYS);
  EXPECT_EQ(r.worker.syscall_nr, f.nr);
  EXPECT_EQ(r.worker.syscall_name, f.name);
  const std::string expected =
      "forbidden system call " + std::to_string(f.nr) + " (" + f.name + ")";
  EXPECT_NE(r.status.message().find(expected), std::string::npos) << r.status.message();
  EXPECT_TRUE(Leftovers(out).empty()) << "left behind: " << ::testing::PrintToString(out.List());
  EXPECT_EQ(CountOpenFds(), fds_before) << "the parent leaked a descriptor";
}

INSTANTIATE_TEST_SUITE_P(AfterLockdown, ForbiddenSyscall, ::testing::ValuesIn(kForbidden),
                         [](const ::testing::TestParamInfo<Forbidden>& param) {
                           std::string n = param.param.mode;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

// The strongest claim: the trapped call never ran. openat(O_CREAT) on a path
// in a fresh directory leaves no file; the same probe unconfined creates it.
TEST(Openat, CreatNeverRuns) {
  TempDir dir;
  const std::string target = dir.File("created-by-the-worker");
  ProbeRun run = RunProbe("openat " + target);
  ASSERT_TRUE(run.violation) << run.Describe();
  EXPECT_EQ(run.syscall_nr, static_cast<uint32_t>(SYS_openat));
  EXPECT_FALSE(Exists(target));

  TempDir out;
  ConvertReport r = ConvertWithProbe("openat " + target, out);
  EXPECT_EQ(r.status.code(), StatusCode::kSandboxViolation) << r.status.ToString();
  EXPECT_EQ(r.worker.syscall_name, "openat");
  EXPECT_FALSE(Exists(target));
  EXPECT_TRUE(Leftovers(out).empty());

  // Control: without lockdown the same code does create the file, so its
  // absence above is the sandbox's doing.
  ProbeRun control = RunProbe("openat " + target, {.flags = {"unconfined"}});
  EXPECT_TRUE(control.exit.kind == sandbox::Worker::Exit::Kind::kExited &&
              control.exit.exit_code == 0)
      << control.Describe();
  EXPECT_TRUE(Exists(target));
}

// i386 `int $0x80` is a foreign architecture for the filter: KILL_PROCESS,
// no trap, so no number. Reported as SIGSYS without a syscall.
TEST(ForeignAbi, Int80IsKilledWithoutANumber) {
  ProbeRun run = RunProbe("int80");
  if (run.SignaledWith(SIGSEGV)) GTEST_SKIP() << "this kernel has no IA32 emulation";
  EXPECT_FALSE(run.error_frame) << run.Describe();
  EXPECT_FALSE(run.violation) << run.Describe();
  EXPECT_TRUE(run.SignaledWith(SIGSYS)) << run.Describe();
  EXPECT_FALSE(run.exit.killed_by_us);

  TempDir out;
  ConvertReport r = ConvertWithProbe("int80", out);
  EXPECT_EQ(r.status.code(), StatusCode::kSandboxViolation) << r.status.ToString();
  EXPECT_EQ(ExitCodeFor(r.status.code()), 5);
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kSeccomp);
  EXPECT_EQ(r.worker.syscall_nr, -1);
  EXPECT_EQ(r.worker.syscall_name, "");
  EXPECT_NE(r.status.message().find("SIGSYS"), std::string::npos) << r.status.message();
  EXPECT_TRUE(Leftovers(out).empty());
}

// An x32 syscall number (bit 30 set) on the native architecture. libseccomp's
// x86-64 filter sends it to the bad-architecture action: killed, no number.
TEST(ForeignAbi, X32NumberIsKilled) {
  ProbeRun run = RunProbe("x32");
  EXPECT_FALSE(run.error_frame) << run.Describe();
  EXPECT_TRUE(run.SignaledWith(SIGSYS)) << run.Describe();
  EXPECT_FALSE(run.exit.killed_by_us);

  TempDir out;
  ConvertReport r = ConvertWithProbe("x32", out);
  EXPECT_EQ(r.status.code(), StatusCode::kSandboxViolation) << r.status.ToString();
  EXPECT_EQ(ExitCodeFor(r.status.code()), 5);
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kSeccomp);
  EXPECT_TRUE(Leftovers(out).empty());
}

// What the worker needs keeps working after lockdown: writes to fd 3, big
// malloc/free (mmap/munmap), many small ones (brk), realloc (mremap MAYMOVE),
// throw/catch, madvise(DONTNEED), private futexes. The result converts.
TEST(Allowed, WorkerNeedsStillWork) {
  TempDir out;
  ConvertReport r = ConvertWithProbe("allowed", out);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kExited);
  EXPECT_EQ(r.worker.exit_code, 0);
  for (const char* layer : {"no_new_privs", "rlimits", "seccomp"}) {
    EXPECT_NE(std::find(r.worker.isolation.begin(), r.worker.isolation.end(), layer),
              r.worker.isolation.end())
        << layer;
  }
  EXPECT_EQ(out.List(), std::vector<std::string>{"out.safemodel"});
  auto model = Model::Open(out.File("out.safemodel"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ(model->tensors().size(), 1u);
  const TensorInfo* t = model->Find("t");
  ASSERT_NE(t, nullptr);
  auto data = model->Data(*t);
  const float expected[4] = {1, 2, 3, 4};
  ASSERT_EQ(data.size(), sizeof expected);
  EXPECT_EQ(std::memcmp(data.data(), expected, sizeof expected), 0);
  EXPECT_TRUE(model->Verify().ok());
}

// Without the worker's pre-lockdown warm-up, the first throw initialises the
// unwinder after lockdown; the futex rule covers what that needs.
TEST(Allowed, FirstThrowAfterLockdown) {
  ProbeRun run = RunProbe("allowed-cold");
  EXPECT_FALSE(run.violation) << run.Describe() << " ("
                              << sandbox::SyscallName(static_cast<int>(run.syscall_nr)) << ")";
  EXPECT_FALSE(run.error_frame) << run.Describe();
  EXPECT_TRUE(run.exit.kind == sandbox::Worker::Exit::Kind::kExited && run.exit.exit_code == 0)
      << run.Describe();
}

}  // namespace
}  // namespace safemodel::testing
