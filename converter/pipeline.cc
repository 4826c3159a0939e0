// ConvertFile: the parent side of a conversion. Everything the worker sends is
// hostile: each frame is capped before it is read, the proposed header is
// rebuilt from validated values (nothing is copied through), every tensor's
// byte count is enforced by the writer, and the output only appears
// (converter/output_file.h) when the worker exited cleanly, the input did not
// change underneath, and every check passed.
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "converter/digest.h"
#include "converter/format.h"
#include "converter/input_file.h"
#include "converter/input_set.h"
#include "converter/output_file.h"
#include "converter/worker_limits.h"
#include "converter/worker_stream.h"
#include "converter/writer.h"
#include "proto/worker.pb.h"
#include "safemodel/convert.h"
#include "safemodel/limits.h"
#include "sandbox/frame_io.h"
#include "sandbox/observe.h"
#include "sandbox/supervisor.h"

#ifndef SAFEMODEL_VERSION
#define SAFEMODEL_VERSION "0.0.0"
#endif
#ifndef SAFEMODEL_INSTALL_WORKER
#define SAFEMODEL_INSTALL_WORKER ""
#endif

namespace safemodel {

const char* ConverterVersion() { return "safemodel " SAFEMODEL_VERSION; }

namespace {

using Clock = std::chrono::steady_clock;
using sandbox::FrameType;

std::string ErrnoText() { return std::strerror(errno); }

// SHA-256 of each part of the input (one file, or the files of a model made
// of several), computed by this (trusted) process on a thread while the
// worker converts. Reads through a small reused buffer: no page faults on
// fresh memory, no growth of resident memory with the input size.
class InputHasher {
 public:
  void Start(std::vector<std::pair<int, uint64_t>> parts) {
    thread_ = std::thread([this, parts = std::move(parts)] {
      for (const auto& [fd, size] : parts) {
        if (!Run(fd, size)) return;
      }
    });
  }
  ~InputHasher() { Stop(); }
  void Stop() {
    cancel_ = true;
    if (thread_.joinable()) thread_.join();
  }
  Result<std::vector<std::string>> Join() {
    if (thread_.joinable()) thread_.join();
    if (!status_.ok()) return status_;
    return digests_;
  }

 private:
  bool Run(int fd, uint64_t size) {
    // The host's (or safe-convert's) signal handlers run on its own threads,
    // never on this one.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    constexpr size_t kBuf = 4 << 20;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kBuf]);
    auto hasher = MakeHasher(DigestAlgorithm::kSha256);
    uint64_t off = 0;
    while (off < size && !cancel_) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kBuf, size - off));
      ssize_t n = pread(fd, buf.get(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status_ = Status::IoError("reading the input for its SHA-256 failed at byte " + Num(off) +
                                  (n < 0 ? ": " + ErrnoText() : ": unexpected end of file"));
        return false;
      }
      hasher->Update(ByteView(buf.get(), static_cast<size_t>(n)));
      off += static_cast<uint64_t>(n);
    }
    if (cancel_) {
      status_ = Status::Internal("hashing cancelled");
      return false;
    }
    digests_.push_back(hasher->Finish());
    return true;
  }
  std::thread thread_;
  std::atomic<bool> cancel_{false};
  Status status_;
  std::vector<std::string> digests_;
};

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// Whether every write end of the worker's channel is closed.
bool ChannelClosed(int fd) {
  struct pollfd pfd = {fd, POLLIN, 0};
  return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP) != 0;
}

const char* WorkerKind(const sandbox::Worker::Exit& exit) {
  switch (exit.kind) {
    case sandbox::Worker::Exit::Kind::kExited: return "exited";
    case sandbox::Worker::Exit::Kind::kSignaled: return "signaled";
    case sandbox::Worker::Exit::Kind::kTimeout: return "timeout";
    case sandbox::Worker::Exit::Kind::kWaitFailed: return "unknown";
  }
  return "unknown";
}

// How a worker that died by a signal is reported. The seccomp policy denies
// kill and tkill, so the worker cannot send itself a signal: a fault
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE), abort() (SIGABRT), the kernel enforcing
// an rlimit (SIGXCPU; SIGKILL at the hard CPU limit) or the out-of-memory
// killer (SIGKILL), or another process.
Status SignalVerdict(const sandbox::Worker::Exit& exit, const WorkerLimits& limits) {
  const std::string name = SignalName(exit.signal);
  if (exit.signal == SIGXCPU ||
      (exit.signal == SIGKILL && exit.cpu_seconds >= static_cast<double>(limits.cpu_seconds))) {
    return Status::LimitExceeded("the worker exceeded its CPU time limit of " + Num(limits.cpu_seconds) +
                                 " s" + (limits.cpu_lowered ? " (lowered to fit `ulimit -t`)" : ""));
  }
  if (exit.signal == SIGBUS) {
    // The worker reads the input through a map; the input is unchanged (checked
    // first), so the storage failed under it.
    return Status::IoError("the worker could not read the input (SIGBUS in its map of the file: an "
                           "I/O error of the storage)");
  }
  if (exit.signal == SIGKILL) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker was killed by SIGKILL, which it cannot send itself: most likely the "
                  "kernel's out-of-memory killer (the worker may use " + Num(limits.memory_limit) +
                      " bytes, --memory-limit; a lower limit makes it fail cleanly instead), or "
                      "another process");
  }
  switch (exit.signal) {
    case SIGSEGV:
    case SIGILL:
    case SIGFPE:
    case SIGABRT:
    case SIGTRAP:
      return Status(StatusCode::kWorkerCrashed, "the worker crashed with " + name);
    default:
      return Status(StatusCode::kWorkerCrashed,
                    "the worker was killed by " + name +
                        ", which it cannot send itself (another process sent it)");
  }
}

std::string FindWorker(const ConvertOptions& options) {
  if (!options.worker_path.empty()) return options.worker_path;
  std::vector<std::string> candidates;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ConvertFile), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    auto self = std::filesystem::canonical(info.dli_fname, ec);
    if (!ec) {
      candidates.push_back((self.parent_path() / "safemodel-worker").string());
      candidates.push_back((self.parent_path().parent_path() / "libexec" / "safemodel" /
                            "safemodel-worker").string());
    }
  }
  if (std::string(SAFEMODEL_INSTALL_WORKER).size() > 0) candidates.push_back(SAFEMODEL_INSTALL_WORKER);
  for (const std::string& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

// The layers the parent must observe: the mandatory ones and those the
// caller asked for, or an error naming one that cannot be observed.
Result<std::vector<std::string>> RequiredLayers(const ConvertOptions& opt) {
  std::vector<std::string> required = sandbox::MandatoryLayers();
  const auto& known = sandbox::ObservableLayers();
  for (const std::string& layer : opt.required_isolation) {
    if (std::find(known.begin(), known.end(), layer) == known.end()) {
      std::string names;
      for (const std::string& k : known) names += (names.empty() ? "" : ", ") + k;
      return Status::InvalidArgument(
          "unknown isolation layer '" + layer + "' (the parent can verify: " + names +
          (layer == "landlock" ? "; Landlock is not visible in /proc" : "") + ")");
    }
    if (std::find(required.begin(), required.end(), layer) == required.end()) {
      required.push_back(layer);
    }
  }
  return required;
}

// Checks the locked-down worker in /proc (sandbox/observe.h), records what
// was seen, and lets the worker go on only if every required layer is there.
Status VerifyIsolation(sandbox::Worker& worker, const std::vector<std::string>& required,
                       ConvertReport* report) {
  sandbox::IsolationObservation obs = sandbox::ObserveIsolation(worker.pid());
  report->worker.isolation = obs.layers;
  report->worker.observed = std::move(obs.facts);
  std::string missing;
  for (const std::string& layer : required) {
    if (!obs.Has(layer)) missing += (missing.empty() ? "" : ", ") + layer;
  }
  if (!missing.empty()) {
    return Status(StatusCode::kSandboxSetupFailed,
                  "the worker lacks required isolation: " + missing +
                      " (checked in /proc/<pid> before it read its input" +
                      (obs.error.empty() ? "" : "; " + obs.error) + ")");
  }
  if (!worker.Release()) {
    return Status(StatusCode::kSandboxSetupFailed, "the worker ended before it was released");
  }
  return Status::Ok();
}

// After a worker exited with its result channel still open: wait briefly for
// the processes holding it to die (the process group was killed) and say
// which case it was.
std::string HeldOpenOutcome(int channel_fd) {
  constexpr int kGraceMs = 1000;  // SIGKILLed processes close their fds at once
  struct pollfd pfd = {channel_fd, POLLIN, 0};
  const auto until = Clock::now() + std::chrono::milliseconds(kGraceMs);
  while (Clock::now() < until) {
    char buf[4096];
    if (poll(&pfd, 1, 50) > 0 && read(channel_fd, buf, sizeof buf) == 0) {
      return "it was killed with the worker's process group";
    }
  }
  return "it has left the worker's process group and could not be stopped";
}

// Starts the worker on the input (fd 4; for a model made of several files,
// their list on fd 4 and the files from fd 6 on) with the fitted limits.
Status StartWorker(const std::string& worker_path, const InputSet& input,
                   const WorkerLimits& limits, const std::vector<std::string>& options,
                   sandbox::Worker* worker) {
  sandbox::SpawnOptions spawn;
  spawn.worker_path = worker_path;
  spawn.input_fd = input.primary().fd();
  int list_fd = -1;
  if (input.multi_file()) {
    const std::string list = input.Manifest();
    SAFEMODEL_ASSIGN_OR_RETURN(list_fd, SealedMemoryFile(list));
    spawn.input_fd = list_fd;
    for (const auto& part : input.Parts()) spawn.file_fds.push_back(part.first);
    spawn.args = {"--input-files=" + Num(spawn.file_fds.size()), "--manifest-size=" + Num(list.size())};
  }
  spawn.args.insert(spawn.args.end(), {"--parent-pid=" + Num(static_cast<uint64_t>(getpid())),
                "--input-size=" + Num(input.total_size()),
                "--address-space=" + Num(limits.address_space),
                "--memory-limit=" + Num(limits.memory_limit),
                "--cpu-seconds=" + Num(limits.cpu_seconds)});
  for (const std::string& o : options) spawn.args.push_back("--" + o);
  std::string spawn_error;
  const bool spawned = sandbox::Spawn(spawn, worker, &spawn_error);
  if (list_fd >= 0) close(list_fd);
  if (!spawned) return Status(StatusCode::kSandboxSetupFailed, spawn_error);
  return Status::Ok();
}

// What the verdict needs besides the stream and the exit.
struct VerdictContext {
  const InputSet* input;
  int channel_fd;
  uint64_t timeout_ms;
  const WorkerLimits* limits;
};

// How the worker's run ended, most specific cause first (README "Sandbox"):
// input changed > timeout > seccomp violation > a channel held open after
// the worker's exit > output I/O error or limit > a signal the worker did
// not get from us > missing isolation > invalid result > crash > the
// worker's own error report > non-zero exit > incomplete result. An input
// that changed underneath explains whatever the worker did (a SIGBUS in its
// map, odd bytes, a refusal of bytes that are no longer there); a signal
// from outside explains a stream cut short or a worker gone before its
// release. OK only for a complete result from a worker that exited 0.
Status Verdict(const WorkerStream& stream, const sandbox::Worker::Exit& exit,
               const VerdictContext& ctx, WorkerOutcome* w) {
  using Kind = sandbox::Worker::Exit::Kind;
  w->kind = WorkerKind(exit);
  if (Status changed = ctx.input->CheckUnchanged(); !changed.ok()) return changed;
  if (stream.timed_out || exit.kind == Kind::kTimeout) {
    w->kind = "timeout";
    return Status(StatusCode::kTimeout, "the conversion exceeded its time limit of " +
                                            Num(ctx.timeout_ms) + " ms; the worker was killed");
  }
  if (exit.kind == Kind::kWaitFailed) return Status::Internal(exit.error);
  if (stream.violation ||
      (exit.kind == Kind::kSignaled && exit.signal == SIGSYS && !exit.killed_by_us)) {
    w->kind = "seccomp";
    if (!stream.violation) {
      return Status(StatusCode::kSandboxViolation,
                    "the sandbox killed the worker (SIGSYS: a system call of a foreign "
                    "architecture or ABI)");
    }
    w->syscall_nr = static_cast<int>(stream.violation_nr);
    w->syscall_name = sandbox::SyscallName(static_cast<int>(stream.violation_nr));
    return Status(StatusCode::kSandboxViolation,
                  "the sandbox stopped the worker: it attempted the forbidden system call " +
                      Num(stream.violation_nr) + " (" +
                      (w->syscall_name.empty() ? "unknown" : w->syscall_name) + ")");
  }
  if (stream.held_open) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker exited, but a process it started still held the result channel "
                  "open; " + HeldOpenOutcome(ctx.channel_fd) + "; nothing was written");
  }
  if (!stream.io.ok() || !stream.limit.ok()) {
    w->kind = "killed";
    return !stream.io.ok() ? stream.io : stream.limit;
  }
  if (exit.kind == Kind::kSignaled && !exit.killed_by_us) return SignalVerdict(exit, *ctx.limits);
  if (!stream.isolation.ok()) {
    w->kind = "killed";
    return stream.isolation;
  }
  if (!stream.protocol.ok()) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker sent an invalid result (" + stream.protocol.message() +
                      "); nothing was written");
  }
  if (exit.kind == Kind::kSignaled) return SignalVerdict(exit, *ctx.limits);
  if (stream.error_frame) return stream.worker_error;
  if (exit.exit_code != 0) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker exited with code " + Num(static_cast<uint64_t>(exit.exit_code)) +
                      " without reporting a result");
  }
  if (!stream.done) {
    return Status(StatusCode::kWorkerCrashed, "the worker ended without completing its result");
  }
  return Status::Ok();
}

}  // namespace

uint64_t EffectiveTimeoutMs(const ConvertOptions& options, uint64_t input_bytes) {
  if (options.timeout_ms != 0) return options.timeout_ms;
  // Conversion runs at ~1 GB/s here; 20 s per GiB is a floor of ~50 MB/s
  // (a cold, slow disk). The fixed part covers small files, whose parse
  // takes milliseconds: a parser stuck in a loop (libhdf5 1.10 has such
  // bugs on crafted files) is stopped after two minutes, not ten.
  constexpr uint64_t kBaseMs = 120'000;
  constexpr uint64_t kPerGiBMs = 20'000;
  return kBaseMs + (input_bytes >> 30) * kPerGiBMs + ((input_bytes & ((1u << 30) - 1)) != 0 ? kPerGiBMs : 0);
}

namespace {

Status Convert(const std::string& in_path, const std::string& out_path, const ConvertOptions& opt,
               ConvertReport* report) {
  const auto start = Clock::now();
  if (opt.memory_limit_bytes < kMinMemoryLimit) {
    return Status::InvalidArgument("the memory limit must be at least " + Num(kMinMemoryLimit) +
                                   " bytes");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(InputSet input, InputSet::Open(in_path));
  const int in_fd = input.primary().fd();
  const uint64_t input_size = input.total_size();
  report->input_bytes = input_size;
  if (input.multi_file()) report->findings.push_back(input.FilesNote());
  if (input_size == 0) return Status::Malformed("input '" + in_path + "' is empty");
  if (input_size > opt.max_input_bytes) {
    return Status::LimitExceeded("input is " + Num(input_size) + " bytes, over the limit of " +
                                 Num(opt.max_input_bytes));
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckSpareDescriptors(in_fd));
  const uint64_t timeout_ms = EffectiveTimeoutMs(opt, input_size);
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  uint64_t cpu_seconds = opt.cpu_limit_seconds;
  if (cpu_seconds == 0) cpu_seconds = timeout_ms / 1000 + 1;
  SAFEMODEL_ASSIGN_OR_RETURN(WorkerLimits limits,
                             FitWorkerLimits(input_size, opt.memory_limit_bytes, cpu_seconds));
  for (Finding& note : limits.notes) report->findings.push_back(std::move(note));
  // OUT's rules are checked before any work (and again at commit).
  std::unique_ptr<OutputFile> out;
  if (opt.output_fd >= 0) {
    SAFEMODEL_ASSIGN_OR_RETURN(out, OutputFile::OpenDescriptor(opt.output_fd));
  } else {
    SAFEMODEL_RETURN_IF_ERROR(input.CheckNotOutput(out_path));
    SAFEMODEL_ASSIGN_OR_RETURN(out, OutputFile::OpenPath(out_path, opt.force, input.primary().stat()));
  }

  std::vector<std::string> options;
  if (opt.weights_only) options.push_back("weights_only");
  if (opt.keep_optimizer) options.push_back("keep_optimizer");
  std::sort(options.begin(), options.end());
  report->options = options;

  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<std::string> required_layers, RequiredLayers(opt));
  const std::string worker_path = FindWorker(opt);
  if (worker_path.empty()) {
    return Status(StatusCode::kSandboxSetupFailed,
                  "cannot find the safemodel-worker executable next to the library or in " +
                      std::string(SAFEMODEL_INSTALL_WORKER));
  }

  InputHasher hasher;
  hasher.Start(input.Parts());
  sandbox::Worker worker;
  SAFEMODEL_RETURN_IF_ERROR(StartWorker(worker_path, input, limits, options, &worker));

  // The reader also watches the worker's exit, so that a process it left
  // behind holding the channel cannot keep the parent waiting.
  sandbox::FrameReader reader(worker.channel_fd(), deadline, worker.exit_fd());
  WorkerStream stream;
  const LockedHook on_locked = [&](const std::vector<std::string>&) {
    return VerifyIsolation(worker, required_layers, report);
  };
  ReadWorkerStream(reader, out->fd(), input_size, options, opt.digest, opt.max_output_bytes,
                   on_locked, report, &stream);
  // A worker whose channel is closed is already exiting (after lockdown it
  // cannot close fd 3): it is left to end, so that a signal from outside
  // (the out-of-memory killer's SIGKILL) is reported as that, not as the cut
  // stream it left behind (its exit shows in Wait within microseconds).
  const bool exiting = !stream.protocol.ok() && ChannelClosed(worker.channel_fd());
  if (stream.timed_out || stream.held_open || !stream.isolation.ok() ||
      (!stream.protocol.ok() && !exiting) || !stream.io.ok() || !stream.limit.ok()) {
    worker.Kill();
  }
  sandbox::Worker::Exit exit = worker.Wait(deadline);
  report->worker.max_rss_bytes = exit.max_rss_bytes;
  report->worker.cpu_seconds = exit.cpu_seconds;
  report->worker.exit_code = exit.exit_code;
  report->worker.signal = exit.signal;

  // Verdict, most specific cause first; OK means the result may be committed.
  SAFEMODEL_RETURN_IF_ERROR(Verdict(stream, exit, {&input, worker.channel_fd(), timeout_ms, &limits},
                                    &report->worker));

  // A short read of the hasher is the input changing, if it did.
  Result<std::vector<std::string>> hashed = hasher.Join();
  SAFEMODEL_RETURN_IF_ERROR(input.CheckUnchanged());
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<std::string> digests, std::move(hashed));
  const std::string sha = input.CombineDigests(digests);
  report->input_sha256 = ToHex(sha);
  SAFEMODEL_RETURN_IF_ERROR(stream.writer->Finish(sha));
  report->tensor_count = stream.writer->tensor_count();
  report->tensor_bytes = stream.data_bytes;
  report->output_bytes = stream.writer->file_size();
  SAFEMODEL_RETURN_IF_ERROR(out->Commit(stream.writer->file_size(), opt.sync_output));
  return Status::Ok();
}

}  // namespace

ConvertReport ConvertFile(const std::string& input_path, const std::string& output_path,
                          const ConvertOptions& options) {
  ConvertReport report;
  report.input_path = input_path;
  report.output_path = output_path;
  auto t0 = Clock::now();
  report.status = Convert(input_path, output_path, options, &report);
  report.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  struct rusage self;
  if (getrusage(RUSAGE_SELF, &self) == 0) {
    report.parent_max_rss_bytes = static_cast<uint64_t>(self.ru_maxrss) * 1024;
  }
  return report;
}

}  // namespace safemodel
