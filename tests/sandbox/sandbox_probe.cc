// sandbox-probe: a stand-in for safemodel-worker that misbehaves on purpose.
//
// It honours the worker's contract (fd 3 = result channel, fd 4 = input,
// fd 5 = control, the same arguments the pipeline passes) and confines itself
// with the PRODUCTION code: sandbox::EnsureAddressRandomization,
// sandbox::PrepareWorkerProcess and sandbox::LockDown, so the tests
// exercise the policy that ships, not a copy of it. Then it does what its
// input file asks. The input is one line of text:
//
//   probe:<mode>[ <argument>]
//
// so a test selects the behaviour through ConvertFile (worker_path = this
// binary) exactly as well as through the supervisor API. Modes are listed in
// kModes below: forbidden system calls (each must end in SIGSYS), allowed
// operations (must work), resource hogs, protocol violations and hygiene
// reports.
//
// Flags besides the worker's own:
//   --unconfined        skip PrepareWorkerProcess and LockDown (test controls:
//                       proves the misbehaviour would have had an effect)
//   --print-policy-pfc  print sandbox::ExportPolicyPfc and exit; regenerates
//                       tests/sandbox/policy.pfc (see tests/sandbox/CMakeLists.txt).
//
// Reports go to the parent as ERROR frames (WorkerError); a probe whose
// forbidden call returned reports "SURVIVED" with code kInternal.
#include <dirent.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/io_uring.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "converter/protocol/conversion_protocol.h"
#include "converter/protocol/stream_limits.h"
#include "converter/protocol/worker.pb.h"
#include "proto/wire/wire.h"
#include "safemodel/status.h"
#include "sandbox/frame_io.h"
#include "sandbox/lockdown.h"
#include "sandbox/policy.h"
#include "sandbox/privileges.h"
#include "sandbox/zygote.h"  // and worker_protocol.h
#include "tests/sandbox/probe.h"

extern char** environ;

namespace safemodel::probe {

using sandbox::FrameType;
using sandbox::kOutputFd;

// ---------------------------------------------------------------------------
// Shared with probe_streams.cc (probe.h)

void SendError(StatusCode code, const std::string& message, const Context& /*ctx*/) {
  worker::WorkerError e;
  e.set_code(static_cast<uint32_t>(code));
  e.set_message(message);
  std::string bytes = wire::SerializeDeterministic(e);
  sandbox::WriteFrame(kOutputFd, FrameType::kError, bytes.data(), bytes.size());
}

std::string HeaderBytes(const Context& /*ctx*/, const std::vector<std::string>& names, int dtype,
                        std::vector<uint64_t> shape) {
  worker::WorkerHeader h;
  h.set_source_format("probe");
  for (const std::string& n : names) {
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(n);
    t->set_dtype(static_cast<v1::DType>(dtype));
    for (uint64_t d : shape) t->add_shape(d);
  }
  return wire::SerializeDeterministic(h);
}

bool SendHeader(const std::string& bytes) {
  return sandbox::WriteFrame(kOutputFd, FrameType::kHeader, bytes.data(), bytes.size());
}

bool SendData(const void* p, size_t n) {
  return sandbox::WriteFrame(kOutputFd, FrameType::kTensorData, p, n);
}

bool SendDone(uint64_t tensors, uint64_t bytes) {
  worker::WorkerDone d;
  d.set_tensors_sent(tensors);
  d.set_bytes_sent(bytes);
  std::string b = wire::SerializeDeterministic(d);
  return sandbox::WriteFrame(kOutputFd, FrameType::kDone, b.data(), b.size());
}

namespace {

// A number in a mode's argument (the input line, not argv). Leaves *out
// unchanged if `s` is not one.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

// The worker's argument contract (sandbox/worker_protocol.h), plus the
// probe's own flags: --unconfined, or --print-policy-pfc alone.
bool ParseArgs(int argc, char** argv, Args* a) {
  if (argc == 2 && std::string_view(argv[1]) == "--print-policy-pfc") {
    a->print_pfc = true;
    return true;
  }
  auto parsed = sandbox::ParseWorkerArgs(argc, argv);
  if (!parsed.ok()) return false;
  a->parent_pid = parsed->parent_pid;
  a->input_size = parsed->input_size;
  a->address_space = parsed->address_space;
  a->memory_limit = parsed->memory_limit;
  a->cpu_seconds = parsed->cpu_seconds;
  a->reexecuted = parsed->reexecuted;
  for (const std::string& flag : parsed->flags) {
    if (flag == "unconfined") {
      a->unconfined = true;
    } else if (flag != protocol::kOptionWeightsOnly && flag != protocol::kOptionKeepOptimizer) {
      // (the conversion options are accepted, as by the worker)
      return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Reporting

// A forbidden call came back: the sandbox failed. Exit code 70 on top.
int Survived(const char* what, long ret, const Context& ctx) {
  int err = errno;
  SendError(StatusCode::kInternal,
            std::string("SURVIVED: ") + what + " returned " + std::to_string(ret) +
                (ret < 0 ? std::string(" (") + std::strerror(err) + ")" : ""),
            ctx);
  return 70;
}

// Open fds, excluding the directory stream used to list them.
std::string ListFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return "unavailable";
  int self = dirfd(d);
  std::vector<int> fds;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != self) fds.push_back(fd);
  }
  closedir(d);
  std::sort(fds.begin(), fds.end());
  std::string out;
  for (int fd : fds) out += (out.empty() ? "" : ",") + std::to_string(fd);
  return out;
}

// The process as exec left it, before any of our own code ran.
std::string EntryReport() {
  size_t env = 0;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) ++env;
  sigset_t mask;
  sigprocmask(SIG_SETMASK, nullptr, &mask);
  int blocked = 0, ignored = 0;
  for (int s = 1; s < NSIG; ++s) {
    if (sigismember(&mask, s) == 1) ++blocked;
    struct sigaction sa;
    if (sigaction(s, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) ++ignored;
  }
  char cwd[512] = "?";
  if (getcwd(cwd, sizeof cwd) == nullptr) std::strcpy(cwd, "?");
  char persona[32];
  std::snprintf(persona, sizeof persona, "%#x", static_cast<unsigned>(personality(0xffffffff)));
  return "entry_fds=" + ListFds() + " env_count=" + std::to_string(env) + " cwd=" + cwd +
         " personality=" + persona +
         " sid_is_pid=" + std::to_string(getsid(0) == getpid() ? 1 : 0) +
         " blocked_signals=" + std::to_string(blocked) +
         " ignored_signals=" + std::to_string(ignored);
}

[[noreturn]] void Spin() {
  volatile uint64_t n = 0;
  for (;;) n = n + 1;
}

// An address the compiler cannot prove invalid, so it emits a real store.
volatile uintptr_t segv_address = 16;

void Segfault() { *reinterpret_cast<volatile int*>(segv_address) = 1; }

// ---------------------------------------------------------------------------
// Forbidden system calls. Each returns what the call returned, which it must
// never do: the filter traps (or kills) first. Arguments are harmless even if
// a call did run (signal 0, nonexistent paths, queries).

char* const kTrueArgv[] = {const_cast<char*>("/bin/true"), nullptr};
char* const kNoEnv[] = {nullptr};
constexpr const char* kNowhere = "/nonexistent-safemodel-probe";

void* PageRw() {
  return mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

long DoOpenat(const Context& c) {
  const char* path = c.argument.empty() ? kNowhere : c.argument.c_str();
  return syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
}
long DoOpen(const Context&) { return syscall(SYS_open, "/etc/passwd", O_RDONLY | O_CLOEXEC); }
long DoOpenat2(const Context&) {
  struct open_how how = {};
  how.flags = O_RDONLY | O_CLOEXEC;
  return syscall(SYS_openat2, AT_FDCWD, "/etc/passwd", &how, sizeof how);
}
long DoExecve(const Context&) { return syscall(SYS_execve, "/bin/true", kTrueArgv, kNoEnv); }
long DoExecveat(const Context&) {
  return syscall(SYS_execveat, AT_FDCWD, "/bin/true", kTrueArgv, kNoEnv, 0);
}
long DoSocket(const Context&) { return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0); }
long DoConnect(const Context&) {
  struct sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, kNowhere, sizeof a.sun_path - 1);
  return syscall(SYS_connect, kOutputFd, &a, sizeof a);
}
long DoBind(const Context&) {
  struct sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  return syscall(SYS_bind, kOutputFd, &a, sizeof(sa_family_t));
}
long DoFork(const Context&) { return syscall(SYS_fork); }
long DoVfork(const Context&) { return syscall(SYS_vfork); }
long DoClone(const Context&) { return syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0); }
long DoCloneNewuser(const Context&) {
  return syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
}
long DoClone3(const Context&) {
  struct clone_args a = {};
  a.exit_signal = SIGCHLD;
  return syscall(SYS_clone3, &a, sizeof a);
}
long DoPtrace(const Context&) { return syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0); }
long DoProcessVmReadv(const Context& c) {
  char buf[16];
  struct iovec local = {buf, sizeof buf};
  struct iovec remote = {reinterpret_cast<void*>(static_cast<uintptr_t>(0x400000)), sizeof buf};
  return syscall(SYS_process_vm_readv, c.args.parent_pid, &local, 1, &remote, 1, 0);
}
long DoKill(const Context& c) { return syscall(SYS_kill, c.args.parent_pid, 0); }
long DoTgkill(const Context& c) {
  return syscall(SYS_tgkill, c.args.parent_pid, c.args.parent_pid, 0);
}
long DoIoctlTiocsti(const Context&) {
  char ch = 'x';
  return syscall(SYS_ioctl, kOutputFd, TIOCSTI, &ch);
}
long DoIoctlTiocstiHigh(const Context&) {
  char ch = 'x';
  return syscall(SYS_ioctl, kOutputFd, (1ul << 32) | TIOCSTI, &ch);
}
long DoMmapExec(const Context&) {
  return syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
// MAP_FIXED over the probe's own code: would replace it with writable
// memory. The filter allows private anonymous mappings only.
long DoMmapFixed(const Context&) {
  auto code = reinterpret_cast<uintptr_t>(&DoMmapExec) & ~static_cast<uintptr_t>(4095);
  return syscall(SYS_mmap, code, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
}
long DoMmapFixedNoreplace(const Context&) {
  return syscall(SYS_mmap, 0x200000000000ul, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
}
long DoMmapShared(const Context&) {
  return syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
}
long DoMmapGrowsdown(const Context&) {
  return syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
}
long DoReadFd3(const Context&) {
  char c;
  return syscall(SYS_read, kOutputFd, &c, 1);
}
long DoMprotectExec(const Context&) {
  void* p = PageRw();
  return syscall(SYS_mprotect, p, 4096, PROT_READ | PROT_EXEC);
}
long DoPkeyMprotectExec(const Context&) {
  void* p = PageRw();
  return syscall(SYS_pkey_mprotect, p, 4096, PROT_READ | PROT_EXEC, -1);
}
long DoWriteStdout(const Context&) { return syscall(SYS_write, 1, "x", 1); }
long DoWriteStderr(const Context&) { return syscall(SYS_write, 2, "x", 1); }
// The kernel would truncate the fd to 32 bits and write to fd 3; the filter
// compares all 64 bits.
long DoWriteFd3High(const Context&) {
  return syscall(SYS_write, (1ul << 32) | static_cast<unsigned long>(kOutputFd), "x", 1);
}
long DoPrctl(const Context&) { return syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0); }
long DoPrctlSetName(const Context&) { return syscall(SYS_prctl, PR_SET_NAME, "probe", 0, 0, 0); }
long DoSeccomp(const Context&) {
  struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  struct sock_fprog prog = {1, &allow};
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}
long DoUnshare(const Context&) { return syscall(SYS_unshare, CLONE_NEWUSER); }
long DoSetns(const Context&) { return syscall(SYS_setns, kOutputFd, 0); }
long DoMount(const Context&) { return syscall(SYS_mount, "none", kNowhere, "tmpfs", 0, nullptr); }
long DoChroot(const Context&) { return syscall(SYS_chroot, kNowhere); }
long DoSetuid(const Context&) { return syscall(SYS_setuid, 0); }
long DoPersonality(const Context&) { return syscall(SYS_personality, 0xffffffffUL); }
long DoIoUringSetup(const Context&) {
  struct io_uring_params p = {};
  return syscall(SYS_io_uring_setup, 1, &p);
}
long DoBpf(const Context&) {
  uint8_t attr[128] = {};
  return syscall(SYS_bpf, 0, attr, sizeof attr);
}
long DoUserfaultfd(const Context&) { return syscall(SYS_userfaultfd, O_CLOEXEC); }
long DoMemfdCreate(const Context&) { return syscall(SYS_memfd_create, "probe", MFD_CLOEXEC); }
long DoMadviseWillneed(const Context&) {
  void* p = PageRw();
  return syscall(SYS_madvise, p, 4096, MADV_WILLNEED);
}
long DoFutexShared(const Context&) {
  static int word = 0;
  return syscall(SYS_futex, &word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}
long DoFutexLockPi(const Context&) {
  static int word = 0;
  return syscall(SYS_futex, &word, FUTEX_LOCK_PI_PRIVATE, 0, nullptr, nullptr, 0);
}
long DoMremapNoMove(const Context&) {
  void* p = PageRw();
  return syscall(SYS_mremap, p, 4096, 8192, 0);
}
long DoMremapFixed(const Context&) {
  void* p = PageRw();
  void* q = PageRw();
  return syscall(SYS_mremap, p, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, q);
}
long DoGetcwd(const Context&) {
  char buf[256];
  return syscall(SYS_getcwd, buf, sizeof buf);
}
long DoGetpid(const Context&) { return syscall(SYS_getpid); }
long DoExitThread(const Context&) { return syscall(SYS_exit, 0); }
// i386 getpid (20) through the 32-bit entry point: a foreign architecture for
// the filter, which kills the process without a trap.
long DoInt80(const Context&) {
  long ret = 20;
  asm volatile("int $0x80" : "+a"(ret) : : "memory");
  return ret;
}
// x32 getpid: native architecture, syscall number with bit 30 set.
long DoX32(const Context&) { return syscall(0x40000000L | SYS_getpid); }

// ---------------------------------------------------------------------------
// Allowed operations: must all work after lockdown.

int DoAllowed(const Context& ctx) {
  // Big blocks: mmap + munmap.
  constexpr size_t kBig = 64u << 20;
  auto* big = static_cast<uint8_t*>(std::malloc(kBig));
  if (big == nullptr) return Survived("malloc(64 MiB) failed;", 0, ctx);
  std::memset(big, 0x5a, kBig);
  std::free(big);
  // Many small blocks: brk.
  std::vector<void*> small;
  for (int i = 0; i < 20000; ++i) small.push_back(std::malloc(64 + static_cast<size_t>(i % 512)));
  for (void* p : small) std::free(p);
  // realloc of an mmapped block: mremap(MREMAP_MAYMOVE).
  auto* r = static_cast<uint8_t*>(std::malloc(1u << 20));
  if (r == nullptr) return Survived("malloc(1 MiB) failed;", 0, ctx);
  std::memset(r, 0x33, 1u << 20);
  for (size_t size : {16u << 20, 64u << 20, 128u << 20}) {
    auto* g = static_cast<uint8_t*>(std::realloc(r, size));
    if (g == nullptr) return Survived("realloc failed;", 0, ctx);
    r = g;
  }
  bool kept = r[0] == 0x33 && r[(1u << 20) - 1] == 0x33;
  std::free(r);
  if (!kept) return Survived("realloc lost data;", 0, ctx);
  // C++ exceptions, of a type not thrown before lockdown.
  std::string caught;
  try {
    throw std::runtime_error("thrown after lockdown");
  } catch (const std::exception& e) {
    caught = e.what();
  }
  if (caught != "thrown after lockdown") return Survived("throw/catch failed;", 0, ctx);
  // Dropping converted input pages, and process-private futexes.
  if (madvise(const_cast<uint8_t*>(ctx.input), ctx.input_size, MADV_DONTNEED) != 0) {
    return Survived("madvise(MADV_DONTNEED) failed;", -1, ctx);
  }
  int word = 1;
  syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);  // EAGAIN: 1 != 0
  return SendValidResult(ctx);
}

// ---------------------------------------------------------------------------
// Resources

// Allocates address space in `step` blocks (untouched: RLIMIT_AS counts
// mappings, not resident pages) until the allocator fails, then reports it
// the way the worker does.
char* volatile sink = nullptr;

int DoAllocate(const Context& ctx, uint64_t step) {
  uint64_t total = 0;
  try {
    for (;;) {
      // Deliberately leaked; the volatile store keeps the compiler from
      // eliding the allocation.
      sink = new char[step];
      total += step;
      if (total > (1ull << 46)) return Survived("64 TiB allocated;", 0, ctx);
    }
  } catch (const std::bad_alloc&) {
    SendError(StatusCode::kLimitExceeded,
              "the worker ran out of memory after " + std::to_string(total) +
                  " bytes (address space " + std::to_string(ctx.args.address_space) + ")",
              ctx);
    return 1;
  }
}

// ---------------------------------------------------------------------------
// Protocol violations: hostile byte streams on the result channel.

int DoGarbage(const Context&) {
  uint8_t junk[256];
  for (size_t i = 0; i < sizeof junk; ++i) junk[i] = static_cast<uint8_t>(i * 37 + 11);
  syscall(SYS_write, kOutputFd, junk, sizeof junk);
  return 0;
}

// A frame header declaring `length` bytes of `type`, and nothing after it.
int DoOversized(const Context& ctx, FrameType type, uint64_t length, bool header_first) {
  if (header_first) SendHeader(HeaderBytes(ctx, {"t"}));
  uint8_t h[sandbox::kFrameHeaderBytes];
  sandbox::EncodeFrameHeader(type, length, h);
  syscall(SYS_write, kOutputFd, h, sizeof h);
  Park();
}

// Half a frame, then silence: the parent must not wait past its deadline.
int DoPartialFrame(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  uint8_t h[sandbox::kFrameHeaderBytes];
  sandbox::EncodeFrameHeader(FrameType::kTensorData, sizeof kTensor, h);
  syscall(SYS_write, kOutputFd, h, sizeof h);
  syscall(SYS_write, kOutputFd, kTensor, 4);
  Park();
}

int DoFlood(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  // The declared tensor holds 16 bytes; keep sending until the parent hangs up.
  for (int i = 0; i < 1'000'000; ++i) {
    if (!SendData(kTensor, sizeof kTensor)) return 1;
  }
  return SendDone(1, sizeof kTensor) ? 0 : 1;
}

int DoEmptyData(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  SendData(kTensor, 0);
  SendData(kTensor, sizeof kTensor);
  return SendDone(1, sizeof kTensor) ? 0 : 1;
}

int DoHeaderThenCrash(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  SendData(kTensor, 8);
  Segfault();
  return 0;
}

int DoHeaderThenExit(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  SendData(kTensor, sizeof kTensor);
  return 0;  // no DONE frame
}

int DoDoneEarly(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  SendData(kTensor, 8);
  return SendDone(1, 8) ? 0 : 1;
}

// A complete result whose DONE frame miscounts what it sent.
int DoDoneMiscount(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  SendData(kTensor, sizeof kTensor);
  return ctx.argument == "bytes" ? (SendDone(1, sizeof kTensor - 1) ? 0 : 1)
                                 : (SendDone(2, sizeof kTensor) ? 0 : 1);
}

// A header echoing options the worker was not given (the argument).
int DoOptionsEcho(const Context& ctx) {
  worker::WorkerHeader h;
  if (!h.ParseFromString(HeaderBytes(ctx, {"t"}))) return 1;
  h.add_options(ctx.argument);
  SendHeader(wire::SerializeDeterministic(h));
  SendData(kTensor, sizeof kTensor);
  return SendDone(1, sizeof kTensor) ? 0 : 1;
}

int DoAfterDone(const Context& ctx) {
  if (SendValidResult(ctx) != 0) return 1;
  SendData(kTensor, sizeof kTensor);
  return 0;
}

int DoSecondHeader(const Context& ctx) {
  std::string h = HeaderBytes(ctx, {"t"});
  SendHeader(h);
  SendHeader(h);
  return 0;
}

int DoDataBeforeHeader(const Context&) {
  SendData(kTensor, sizeof kTensor);
  return 0;
}

int DoErrorCode(const Context& ctx) {
  uint64_t code = 99;
  ParseU64(ctx.argument, &code);
  SendError(static_cast<StatusCode>(code), "an error with code " + std::to_string(code), ctx);
  return 1;
}

int DoErrorThenData(const Context& ctx) {
  SendError(StatusCode::kMalformed, "malformed, allegedly", ctx);
  SendHeader(HeaderBytes(ctx, {"t"}));
  return 1;
}

// A refusal reported with exit code 0: the parent must still refuse.
int DoErrorExit0(const Context& ctx) {
  SendError(StatusCode::kRefused, "refused, but exiting 0", ctx);
  return 0;
}

int DoHeaderNames(const Context& ctx, std::vector<std::string> names) {
  if (!SendHeader(HeaderBytes(ctx, names))) return 1;
  for (size_t i = 0; i < names.size(); ++i) SendData(kTensor, sizeof kTensor);
  return SendDone(names.size(), names.size() * sizeof kTensor) ? 0 : 1;
}

int DoHeaderDtype(const Context& ctx) {
  uint64_t dtype = 999;
  ParseU64(ctx.argument, &dtype);
  if (!SendHeader(HeaderBytes(ctx, {"t"}, static_cast<int>(dtype)))) return 1;
  SendData(kTensor, sizeof kTensor);
  return SendDone(1, sizeof kTensor) ? 0 : 1;
}

// shape [2^32, 2^32, 2^32] f32: the element count overflows 64 bits.
int DoHeaderOverflowShape(const Context& ctx) {
  if (!SendHeader(HeaderBytes(ctx, {"t"}, v1::F32, {1ull << 32, 1ull << 32, 1ull << 32}))) {
    return 1;
  }
  return SendDone(1, 0) ? 0 : 1;
}

// A 4 TiB tensor (representable) and then almost nothing: the parent must not
// allocate or write anything near the declared size.
int DoHeaderHugeTensor(const Context& ctx) {
  if (!SendHeader(HeaderBytes(ctx, {"t"}, v1::F32, {1ull << 40}))) return 1;
  SendData(kTensor, sizeof kTensor);
  return SendDone(1, sizeof kTensor) ? 0 : 1;
}

// kMaxTensorCount + 1 tensors in one header, written on the wire directly
// (field 2, length 0 each: two bytes per tensor).
int DoHeaderTooManyTensors(const Context& ctx) {
  uint64_t count = 2'000'001;
  ParseU64(ctx.argument, &count);
  std::string bytes = HeaderBytes(ctx, {});
  bytes.reserve(bytes.size() + 2 * count);
  for (uint64_t i = 0; i < count; ++i) bytes.append("\x12\x00", 2);
  return SendHeader(bytes) && SendDone(0, 0) ? 0 : 1;
}

// An architecture Value that is a list of N empty Values (two bytes each).
int DoHeaderValueBomb(const Context& ctx) {
  uint64_t count = 20'000'000;
  ParseU64(ctx.argument, &count);
  std::string items;
  items.reserve(2 * count);
  for (uint64_t i = 0; i < count; ++i) items.append("\x0a\x00", 2);
  std::string value = "\x3a";  // Value.list_value
  AppendVarint(&value, items.size());
  value += items;
  std::string bytes = HeaderBytes(ctx, {});
  bytes += "\x1a";  // WorkerHeader.architecture
  AppendVarint(&bytes, value.size());
  bytes += value;
  return SendHeader(bytes) && SendDone(0, 0) ? 0 : 1;
}

// N unknown varint fields (number 100), which protobuf would keep.
int DoHeaderUnknownFields(const Context& ctx) {
  uint64_t count = 20'000'000;
  ParseU64(ctx.argument, &count);
  std::string bytes = HeaderBytes(ctx, {});
  bytes.reserve(bytes.size() + 3 * count);
  for (uint64_t i = 0; i < count; ++i) bytes.append("\xa0\x06\x00", 3);
  return SendHeader(bytes) && SendDone(0, 0) ? 0 : 1;
}

// ---------------------------------------------------------------------------
// Hygiene

int DoInventory(const Context& ctx) {
  SendError(StatusCode::kUnsupported,
            ctx.entry_report + " prepared_fds=" + ctx.prepared_fds +
                " dumpable=" + std::to_string(ctx.dumpable_before_lockdown) +
                " reexecuted=" + (ctx.args.reexecuted ? "1" : "0"),
            ctx);
  return 1;
}

// Tells the parent it is locked down, then sleeps until killed.
int DoPark(const Context& ctx) {
  SendError(StatusCode::kUnsupported,
            "parked dumpable=" + std::to_string(ctx.dumpable_before_lockdown), ctx);
  Park();
}

// ---------------------------------------------------------------------------
// A worker that lies and one that leaves processes behind. These stand for a
// replaced worker binary (--worker): the parent must not rely on them.

// Claims every layer in a LOCKED frame without locking down, then, if the
// parent lets it, sends a valid result.
int DoLie(const Context& ctx) {
  const std::string claim =
      "userns,netns,mntns,ipcns,utsns,non_root,no_capabilities,no_new_privs,landlock,rlimits,seccomp";
  sandbox::WriteFrame(kOutputFd, FrameType::kLocked, claim.data(), claim.size());
  char go = 0;
  if (read(sandbox::kControlFd, &go, 1) != 1) return 1;
  return SendValidResult(ctx);
}

// Before lockdown: a filter that makes unshare and Landlock fail with EPERM,
// as a container runtime's seccomp profile or a sysctl would.
void DenyNamespacesAndLandlock(Context&) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_landlock_create_ruleset, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_landlock_restrict_self, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(std::size(filter)), filter};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

// Before lockdown: a child that holds the result channel and outlives the
// probe (a worker binary that forks). `escape` makes it leave the process
// group first. Either way it ends by itself after a while (SIGALRM).
void ForkHolder(bool escape) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    if (escape) setsid();
    alarm(escape ? 8 : 30);
    close(ready[0]);
    close(ready[1]);  // tells the probe the child is set up
    for (;;) pause();
  }
  close(ready[1]);
  char c;
  while (read(ready[0], &c, 1) < 0 && errno == EINTR) {
  }
  close(ready[0]);
}

// ---------------------------------------------------------------------------

struct Mode {
  const char* name;
  long (*forbidden)(const Context&);  // a forbidden call, or
  int (*run)(const Context&);         // anything else
  void (*before_lockdown)(Context&) = nullptr;
  bool skip_lockdown = false;         // the mode does its own (or none)
};

const Mode kModes[] = {
    {"openat", DoOpenat, nullptr},
    {"open", DoOpen, nullptr},
    {"openat2", DoOpenat2, nullptr},
    {"execve", DoExecve, nullptr},
    {"execveat", DoExecveat, nullptr},
    {"socket", DoSocket, nullptr},
    {"connect", DoConnect, nullptr},
    {"bind", DoBind, nullptr},
    {"fork", DoFork, nullptr},
    {"vfork", DoVfork, nullptr},
    {"clone", DoClone, nullptr},
    {"clone-newuser", DoCloneNewuser, nullptr},
    {"clone3", DoClone3, nullptr},
    {"ptrace", DoPtrace, nullptr},
    {"process_vm_readv", DoProcessVmReadv, nullptr},
    {"kill", DoKill, nullptr},
    {"tgkill", DoTgkill, nullptr},
    {"ioctl-tiocsti", DoIoctlTiocsti, nullptr},
    {"ioctl-tiocsti-high", DoIoctlTiocstiHigh, nullptr},
    {"mmap-exec", DoMmapExec, nullptr},
    {"mprotect-exec", DoMprotectExec, nullptr},
    {"pkey_mprotect-exec", DoPkeyMprotectExec, nullptr},
    {"write-stdout", DoWriteStdout, nullptr},
    {"write-stderr", DoWriteStderr, nullptr},
    {"write-fd3-high", DoWriteFd3High, nullptr},
    {"prctl", DoPrctl, nullptr},
    {"seccomp", DoSeccomp, nullptr},
    {"unshare", DoUnshare, nullptr},
    {"setns", DoSetns, nullptr},
    {"mount", DoMount, nullptr},
    {"chroot", DoChroot, nullptr},
    {"setuid", DoSetuid, nullptr},
    {"personality", DoPersonality, nullptr},
    {"io_uring_setup", DoIoUringSetup, nullptr},
    {"bpf", DoBpf, nullptr},
    {"userfaultfd", DoUserfaultfd, nullptr},
    {"memfd_create", DoMemfdCreate, nullptr},
    {"madvise-willneed", DoMadviseWillneed, nullptr},
    {"futex-shared", DoFutexShared, nullptr},
    {"futex-lock-pi", DoFutexLockPi, nullptr},
    {"mremap-nomove", DoMremapNoMove, nullptr},
    {"mremap-fixed", DoMremapFixed, nullptr},
    {"getcwd", DoGetcwd, nullptr},
    {"getpid", DoGetpid, nullptr},
    {"exit-thread", DoExitThread, nullptr},
    {"int80", DoInt80, nullptr},
    {"x32", DoX32, nullptr},

    {"allowed", nullptr, DoAllowed},
    {"allowed-cold", nullptr, DoAllowed},  // without the exception warm-up
    {"ok", nullptr, SendValidResult},
    {"ok-then-wait", nullptr, DoOkThenWait},
    {"ok-then-park", nullptr, [](const Context& c) -> int { DoOkThenPark(c); }},

    {"spin", nullptr, [](const Context&) -> int { Spin(); }},
    {"park", nullptr, DoPark},
    {"silent", nullptr, [](const Context&) -> int { Park(); }},
    {"alloc-loop", nullptr, [](const Context& c) { return DoAllocate(c, 32ull << 20); }},
    {"alloc-huge", nullptr, [](const Context& c) { return DoAllocate(c, 8ull << 30); }},
    {"segv", nullptr, [](const Context&) { Segfault(); return 0; }},
    {"abort", nullptr, [](const Context&) -> int { std::abort(); }},
    {"exit3", nullptr, [](const Context&) { return 3; }},

    {"garbage", nullptr, DoGarbage},
    {"oversized-data", nullptr,
     [](const Context& c) { return DoOversized(c, FrameType::kTensorData, (16ull << 20) + 1, true); }},
    {"oversized-header", nullptr,
     [](const Context& c) {
       return DoOversized(c, FrameType::kHeader, StreamLimitsFor(c.input_size).header_bytes + 1,
                          false);
     }},
    {"oversized-error", nullptr,
     [](const Context& c) { return DoOversized(c, FrameType::kError, kMaxErrorFrameBytes + 1, false); }},
    {"oversized-done", nullptr,
     [](const Context& c) { return DoOversized(c, FrameType::kDone, 4097, true); }},
    {"oversized-locked", nullptr,
     [](const Context& c) {
       return DoOversized(c, FrameType::kLocked, sandbox::kMaxLockedPayloadBytes + 1, false);
     }},
    {"oversized-violation", nullptr,
     [](const Context& c) { return DoOversized(c, FrameType::kViolation, 17, false); }},
    {"unknown-frame-type", nullptr, [](const Context& c) {
       return DoOversized(c, static_cast<FrameType>(sandbox::kMaxFrameType + 1), 0, false); }},
    {"flood", nullptr, DoFlood},
    {"partial-frame", nullptr, DoPartialFrame},
    {"empty-data", nullptr, DoEmptyData},
    {"bad-xform", nullptr, DoBadXform},
    {"header-then-crash", nullptr, DoHeaderThenCrash},
    {"header-then-exit", nullptr, DoHeaderThenExit},
    {"done-early", nullptr, DoDoneEarly},
    {"after-done", nullptr, DoAfterDone},
    {"done-miscount", nullptr, DoDoneMiscount},
    {"options-echo", nullptr, DoOptionsEcho},
    {"second-header", nullptr, DoSecondHeader},
    {"data-before-header", nullptr, DoDataBeforeHeader},
    {"error-code", nullptr, DoErrorCode},
    {"error-then-data", nullptr, DoErrorThenData},
    {"error-exit0", nullptr, DoErrorExit0},
    {"header-unsorted", nullptr, [](const Context& c) { return DoHeaderNames(c, {"b", "a"}); }},
    {"header-duplicate", nullptr, [](const Context& c) { return DoHeaderNames(c, {"a", "a"}); }},
    {"header-empty-name", nullptr, [](const Context& c) { return DoHeaderNames(c, {""}); }},
    {"header-dtype", nullptr, DoHeaderDtype},
    {"header-overflow-shape", nullptr, DoHeaderOverflowShape},
    {"header-huge-tensor", nullptr, DoHeaderHugeTensor},
    {"header-too-many-tensors", nullptr, DoHeaderTooManyTensors},
    {"header-value-bomb", nullptr, DoHeaderValueBomb},
    {"header-unknown-fields", nullptr, DoHeaderUnknownFields},

    {"inventory", nullptr, DoInventory},

    {"lie", nullptr, DoLie, nullptr, /*skip_lockdown=*/true},
    {"no-namespaces", nullptr, SendValidResult, DenyNamespacesAndLandlock},
    {"grandchild", nullptr, SendValidResult, [](Context&) { ForkHolder(false); }},
    {"grandchild-escaped", nullptr, SendValidResult, [](Context&) { ForkHolder(true); }},
    {"hostile-text", nullptr, DoHostileText},
    {"hostile-error", nullptr, DoHostileError},
    {"hand-off", nullptr, DoHandOff},
    {"hand-off-unlocked", nullptr, DoHandOff, nullptr, /*skip_lockdown=*/true},
    {"hand-off-then", nullptr, DoHandOffThen},
    {"mmap-fixed", DoMmapFixed, nullptr},
    {"mmap-fixed-noreplace", DoMmapFixedNoreplace, nullptr},
    {"mmap-shared", DoMmapShared, nullptr},
    {"mmap-growsdown", DoMmapGrowsdown, nullptr},
    {"read-fd3", DoReadFd3, nullptr},
    {"prctl-set-name", DoPrctlSetName, nullptr},

    {"max-tensors", nullptr, DoMaxTensors},
    {"max-objects", nullptr, DoMaxObjects},
    {"max-header-bytes", nullptr, DoMaxHeaderBytes},
    {"max-findings", nullptr, DoMaxFindings},
    {"max-error-findings", nullptr, DoMaxErrorFindings},
    {"max-data-frames", nullptr, DoMaxDataFrames},
    {"max-all", nullptr, DoMaxAll},
};

const Mode* FindMode(std::string_view name) {
  for (const Mode& m : kModes) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

// The C++ runtime initialises its unwinder on the first throw; the worker
// does this before lockdown (worker_main.cc), so the probe does too.
void WarmUpExceptions() {
  try {
    throw std::bad_alloc();
  } catch (const std::bad_alloc&) {
  }
}

int Main(int argc, char** argv) {
  Context ctx;
  ctx.entry_report = EntryReport();  // first, before anything opens a file
  ctx.program = argc > 0 ? argv[0] : "";
  if (!ParseArgs(argc, argv, &ctx.args)) {
    SendError(StatusCode::kInvalidArgument, "bad probe arguments", ctx);
    return 2;
  }
  // As the worker does, first (--unconfined: a control that leaves ASLR as
  // inherited).
  if (!ctx.args.unconfined && !ctx.args.print_pfc) {
    if (Status aslr = sandbox::EnsureAddressRandomization(argc, argv); !aslr.ok()) {
      SendError(StatusCode::kSandboxSetupFailed, aslr.message(), ctx);
      return 1;
    }
  }
  if (ctx.args.print_pfc) {
    auto pfc = sandbox::ExportPolicyPfc();
    if (!pfc.ok()) {
      std::fprintf(stderr, "sandbox-probe: %s\n", pfc.status().message().c_str());
      return 1;
    }
    std::fwrite(pfc->data(), 1, pfc->size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;  // _exit skips stdio flushing
  }
  if (!ctx.args.unconfined) {
    if (Status prepared = sandbox::PrepareWorkerProcess(ctx.args.parent_pid); !prepared.ok()) {
      SendError(StatusCode::kSandboxSetupFailed, prepared.message(), ctx);
      return 1;
    }
  }
  ctx.prepared_fds = ListFds();

  struct stat st;
  if (fstat(sandbox::kInputFd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      (ctx.args.input_size != 0 && static_cast<uint64_t>(st.st_size) != ctx.args.input_size)) {
    SendError(StatusCode::kSandboxSetupFailed, "fd 4 is not the input", ctx);
    return 1;
  }
  ctx.input_size = static_cast<uint64_t>(st.st_size);
  void* map = mmap(nullptr, ctx.input_size, PROT_READ, MAP_PRIVATE, sandbox::kInputFd, 0);
  if (map == MAP_FAILED) {
    SendError(StatusCode::kSandboxSetupFailed, "cannot map the input", ctx);
    return 1;
  }
  close(sandbox::kInputFd);
  ctx.input = static_cast<const uint8_t*>(map);

  // "probe:<mode>[ <argument>]\n"
  std::string_view text(reinterpret_cast<const char*>(ctx.input), ctx.input_size);
  text = text.substr(0, text.find('\n'));
  constexpr std::string_view kPrefix = "probe:";
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    SendError(StatusCode::kMalformed, "not a probe input", ctx);
    return 1;
  }
  text.remove_prefix(kPrefix.size());
  size_t space = text.find(' ');
  std::string_view name = text.substr(0, space);
  if (space != std::string_view::npos) ctx.argument = std::string(text.substr(space + 1));
  const Mode* mode = FindMode(name);
  if (mode == nullptr) {
    SendError(StatusCode::kMalformed, "unknown probe mode '" + std::string(name) + "'", ctx);
    return 1;
  }

  if (name != "allowed-cold") WarmUpExceptions();
  ctx.dumpable_before_lockdown = prctl(PR_GET_DUMPABLE);
  if (mode->before_lockdown != nullptr) mode->before_lockdown(ctx);
  if (!ctx.args.unconfined && !mode->skip_lockdown) {
    sandbox::LockdownOptions lock;
#if !defined(SAFEMODEL_SANITIZER_BUILD)
    lock.address_space_bytes = ctx.args.address_space;
#endif
    lock.cpu_seconds = ctx.args.cpu_seconds;
    lock.parent_pid = ctx.args.parent_pid;
    if (Status locked = sandbox::LockDown(lock, &ctx.layers); !locked.ok()) {
      SendError(StatusCode::kSandboxSetupFailed, "lockdown failed: " + locked.message(), ctx);
      return 1;
    }
  }

  // From here on only the sandbox's system calls.
  if (mode->forbidden != nullptr) {
    long ret = mode->forbidden(ctx);
    if (ctx.args.unconfined) return 0;
    return Survived(mode->name, ret, ctx);
  }
  return mode->run(ctx);
}

}  // namespace
}  // namespace safemodel::probe

#if defined(SAFEMODEL_SANITIZER_BUILD)
// The worker has no environment, so ASAN_OPTIONS cannot reach it. ASan's own
// SIGSEGV/SIGABRT handlers would try to print a report after lockdown and be
// killed for that (ioctl, ...); the crash tests want the plain signal.
extern "C" const char* __asan_default_options() { return "handle_segv=0:handle_abort=0"; }
#endif

// _exit, like the worker: no atexit handlers inside the sandbox (as a zygote: fork_server_test).
int main(int argc, char** argv) { _exit(safemodel::sandbox::ZygoteOrMain(argc, argv, safemodel::probe::Main)); }
