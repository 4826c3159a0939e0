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
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "converter/finding_order.h"
#include "converter/input_file.h"
#include "converter/input_set.h"
#include "converter/output_file.h"
#include "converter/protocol/conversion_protocol.h"
#include "converter/protocol/worker.pb.h"
#include "sandbox/fork_server.h"
#include "sandbox/zygote_protocol.h"
#include "converter/worker_limits.h"
#include "converter/worker_stream.h"
#include "proto/base/text.h"
#include "proto/digest.h"
#include "proto/writer.h"
#include "safemodel/convert.h"
#include "safemodel/limits.h"
#include "sandbox/frame_io.h"
#include "sandbox/observe.h"
#include "sandbox/supervisor.h"
#include "sandbox/worker_protocol.h"

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
      done_.store(true, std::memory_order_release);
    });
  }
  ~InputHasher() { Stop(); }
  void Stop() {
    cancel_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // The digests once every part was hashed, before Join; nullptr until
  // then (or on failure). Safe from any thread.
  const std::vector<std::string>* Ready() const {
    return done_.load(std::memory_order_acquire) ? &digests_ : nullptr;
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
    // Pieces that stay in this core's 1 MiB L2 between the pread's copy and
    // the SHA-256 that reads them: 4 MiB pieces cost twice the copy time
    // (0.08 s against 0.036 s per GiB), and this thread is the conversion's
    // critical path for stored inputs (tests/bench/PROFILE.md, fourth round).
    constexpr size_t kBuf = 256 << 10;
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
  std::atomic<bool> done_{false};
  Status status_;
  std::vector<std::string> digests_;
};

// Whether every write end of the worker's channel is closed.
bool ChannelClosed(int fd) {
  struct pollfd pfd = {fd, POLLIN, 0};
  return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP) != 0;
}

// The worker to run, in this order: ConvertOptions::worker_path; else
// $SAFEMODEL_WORKER, which must then be an absolute path (a relative one
// would be resolved against the current directory, often the model's);
// else beside the program or library holding this code (the build tree);
// else where the install layout puts it relative to that file (bin/ or
// lib/ to libexec/safemodel/), so that a moved prefix still works; else the
// install prefix compiled in. A worker named explicitly is never replaced
// by another one.
Result<std::string> FindWorker(const ConvertOptions& options) {
  if (!options.worker_path.empty()) return options.worker_path;
  if (const char* env = secure_getenv("SAFEMODEL_WORKER"); env != nullptr && *env != '\0') {
    if (env[0] != '/') {
      return Status(StatusCode::kSandboxSetupFailed,
                    "SAFEMODEL_WORKER must be an absolute path, not '" + std::string(env) + "'");
    }
    return std::string(env);
  }
  std::vector<std::string> candidates;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ConvertFile), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    auto dir = std::filesystem::canonical(info.dli_fname, ec).parent_path();
    if (!ec) {
      candidates.push_back((dir / "safemodel-worker").string());
      for (const char* rel : {SAFEMODEL_WORKER_FROM_BINDIR, SAFEMODEL_WORKER_FROM_LIBDIR}) {
        candidates.push_back((dir / rel).lexically_normal().string());
      }
    }
  }
  candidates.push_back(SAFEMODEL_INSTALL_WORKER);
  for (const std::string& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  std::string tried;
  for (const std::string& c : candidates) tried += (tried.empty() ? "" : ", ") + c;
  return Status(StatusCode::kSandboxSetupFailed,
                "cannot find the safemodel-worker executable (tried " + tried +
                    "); set SAFEMODEL_WORKER to its absolute path");
}

// The HDF5 worker, started only when the lean one hands the input off
// (conversion_protocol.h), in this order: ConvertOptions::hdf5_worker_path;
// else $SAFEMODEL_HDF5_WORKER, absolute only (as SAFEMODEL_WORKER); else
// safemodel-worker-hdf5 in the directory of the lean worker that ran,
// however that one was found: the two are built and installed side by
// side, and a lean worker named explicitly gets its own pair, never one
// from elsewhere.
Result<std::string> FindHdf5Worker(const ConvertOptions& options, const std::string& lean_worker) {
  if (!options.hdf5_worker_path.empty()) return options.hdf5_worker_path;
  if (const char* env = secure_getenv("SAFEMODEL_HDF5_WORKER"); env != nullptr && *env != '\0') {
    if (env[0] != '/') {
      return Status(StatusCode::kSandboxSetupFailed,
                    "SAFEMODEL_HDF5_WORKER must be an absolute path, not '" + std::string(env) + "'");
    }
    return std::string(env);
  }
  std::string dir = std::filesystem::path(lean_worker).parent_path().string();
  if (dir.empty()) dir = ".";
  const std::string path = dir + "/" + std::string(protocol::kHdf5WorkerName);
  if (access(path.c_str(), X_OK) == 0) return path;
  return Status(StatusCode::kSandboxSetupFailed,
                "the input needs libhdf5, and the " + std::string(protocol::kHdf5WorkerName) +
                    " executable that reads it is not in " + dir +
                    ", beside the worker that ran (--hdf5-worker or SAFEMODEL_HDF5_WORKER name it)");
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
                   sandbox::ForkServer* fork_server, sandbox::Worker* worker) {
  sandbox::WorkerArgs args;
  args.parent_pid = getpid();
  args.input_size = input.total_size();
  args.address_space = limits.address_space;
  args.memory_limit = limits.memory_limit;
  args.cpu_seconds = limits.cpu_seconds;
  args.flags = options;
  sandbox::SpawnOptions spawn;
  spawn.worker_path = worker_path;
  spawn.input_fd = input.primary().fd();
  int list_fd = -1;
  if (input.multi_file()) {
    const std::string list = input.Manifest();
    SAFEMODEL_ASSIGN_OR_RETURN(list_fd, SealedMemoryFile(list));
    spawn.input_fd = list_fd;
    for (const auto& part : input.Parts()) spawn.file_fds.push_back(part.first);
    args.input_files = spawn.file_fds.size();
    args.manifest_size = list.size();
  }
  spawn.args = sandbox::EncodeWorkerArgs(args);
  // Forked from the fork server (its zygote replaces the parent pid), except
  // for a model of more files than one request carries: that one is
  // started by exec, which is at least as isolated.
  Status spawned = fork_server != nullptr && spawn.file_fds.size() + 3 <= sandbox::kZygoteMaxFds
                       ? fork_server->Spawn(spawn, args, worker)
                       : sandbox::Spawn(spawn, worker);
  if (list_fd >= 0) close(list_fd);
  return spawned;
}

// What every worker run of one conversion shares.
struct RunSetup {
  const InputSet* input;
  WorkerLimits limits;
  std::vector<std::string> options;  // sorted
  std::vector<std::string> required_layers;
  Clock::time_point deadline;  // of the whole conversion
  uint64_t timeout_ms;
  int out_fd;
  DigestAlgorithm digest;
  uint64_t max_output_bytes;
  ProgressHook progress;  // output bytes so far, for a progress display
  bool write_behind;      // the output is fsynced at commit and not read back whole
};

// Runs one worker on the whole input (every file of a multi-file one, with
// its list): starts it, checks its isolation, reads its stream into *stream
// (the result into setup.out_fd) and classifies how it ended into *verdict
// and report->worker. A non-OK return: it did not start.
Status RunWorker(const RunSetup& setup, const std::string& path, sandbox::ForkServer* fork_server,
                 bool hand_off_allowed, ConvertReport* report, StreamOutcome* stream,
                 Verdict* verdict) {
  report->worker.program = std::filesystem::path(path).filename().string();
  const uint64_t input_size = setup.input->total_size();
  sandbox::Worker worker;
  SAFEMODEL_RETURN_IF_ERROR(
      StartWorker(path, *setup.input, setup.limits, setup.options, fork_server, &worker));

  // The reader also watches the worker's exit, so that a process it left
  // behind holding the channel cannot keep the parent waiting.
  sandbox::FrameReader reader(worker.channel_fd(), setup.deadline, worker.exit_fd());
  const LockedHook on_locked = [&](const std::vector<std::string>&) {
    return VerifyIsolation(worker, setup.required_layers, report);
  };
  // Its last frame in, the worker waits to be dismissed: its peak memory is
  // read from /proc first (sandbox::Worker::Dismiss), and the stream is read
  // on to its end, which the worker's exit brings.
  const LastFrameHook on_last_frame = [&] { worker.Dismiss(); };
  const int input_fd = setup.input->multi_file() ? -1 : setup.input->primary().fd();
  ReadWorkerStream(reader, setup.out_fd, input_size, input_fd, setup.options, setup.digest,
                   setup.max_output_bytes, on_locked, report, stream, hand_off_allowed,
                   setup.progress, on_last_frame);
  // A worker whose channel is closed is already exiting (after lockdown it
  // cannot close fd 3): it is left to end, so that a signal from outside
  // (the out-of-memory killer's SIGKILL) is reported as that, not as the cut
  // stream it left behind (its exit shows in Wait within microseconds).
  const bool exiting =
      stream->end() == StreamEnd::kProtocolError && ChannelClosed(worker.channel_fd());
  if (stream->end() != StreamEnd::kEof && !exiting) worker.Kill();
  RunOutcome run;
  run.stream = stream;
  run.exit = worker.Wait(reader.deadline());  // moved by the parent's own output waits
  report->worker.max_rss_bytes = run.exit.max_rss_bytes;
  switch (run.exit.max_rss_source) {
    case sandbox::Worker::PeakSource::kVmHwm: report->worker.max_rss_source = "vmhwm"; break;
    case sandbox::Worker::PeakSource::kRusage: report->worker.max_rss_source = "rusage"; break;
    case sandbox::Worker::PeakSource::kNone: report->worker.max_rss_source = ""; break;
  }
  report->worker.cpu_seconds = run.exit.cpu_seconds;
  report->worker.exit_code = run.exit.exit_code;
  report->worker.signal = run.exit.signal;
  run.input_unchanged = setup.input->CheckUnchanged();
  if (stream->end() == StreamEnd::kHeldOpen) {
    run.held_open_detail = HeldOpenOutcome(worker.channel_fd());
  }
  run.timeout_ms = setup.timeout_ms;
  run.limits = setup.limits;

  // The verdict, most specific cause first; OK means the result may be
  // committed.
  *verdict = Classify(run);
  report->worker.kind = verdict->kind;
  report->worker.syscall_nr = verdict->syscall_nr;
  report->worker.syscall_name = verdict->syscall_name;
  return Status::Ok();
}

// Whether the input is one file named as HDF5 files are: .h5 (h5py, Keras
// 2's model.save, Keras 3's *.weights.h5), .hdf5 (h5py, Keras
// checkpoints), .he5 (HDF-EOS5), ASCII case-insensitive. Not .keras (a zip
// that may hold HDF5 weights: the lean worker reads the zip) nor .hdf (HDF4
// as often as HDF5). Only the name is looked at, never a byte: it picks
// which of the two equally confined workers starts first, nothing else.
// ConvertFd's and ConvertBuffer's labels ("descriptor 5") never match.
bool NameSuggestsHdf5(const InputSet& input, std::string_view path) {
  if (input.multi_file()) return false;
  const size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || path.find('/', dot) != std::string_view::npos) return false;
  const std::string ext = AsciiLower(path.substr(dot + 1));
  return ext == "h5" || ext == "hdf5" || ext == "he5";
}

// Runs the workers of one conversion: the lean worker, and the HDF5 worker
// if the lean one hands the input off; or, for an input whose name says
// HDF5 (NameSuggestsHdf5, ConvertOptions::hdf5_name_hint), the HDF5 worker
// alone, which detects the format itself as the lean one does, so that the
// result does not depend on the name. Where the HDF5 worker cannot be
// found or forked, the lean worker runs as without the hint (and hands off,
// and fails there, exactly as it would have). A non-OK return: a worker
// did not start.
Status RunWorkers(const RunSetup& setup, const ConvertOptions& opt, const std::string& worker_path,
                  bool named_hdf5, const SafemodelWriter::InputSha256Source& hash_output_with,
                  ConvertReport* report, StreamOutcome* stream, Verdict* verdict) {
  const std::shared_ptr<sandbox::ForkServer>& fork_server = opt.fork_server;
  // The HDF5 worker, and with a fork server its zygote, started at the
  // first input that needs it (ForkServer::Companion).
  const auto hdf5_worker = [&](std::shared_ptr<sandbox::ForkServer>* server) -> Result<std::string> {
    SAFEMODEL_ASSIGN_OR_RETURN(const std::string path, FindHdf5Worker(opt, worker_path));
    if (fork_server) {
      SAFEMODEL_ASSIGN_OR_RETURN(*server, fork_server->Companion(path));
    }
    return path;
  };
  // Each worker's stream starts empty, with the output hashed as written.
  const auto fresh_stream = [&] {
    *stream = StreamOutcome();
    stream->hash_output_with = hash_output_with;
    stream->write_behind = setup.write_behind;
  };
  fresh_stream();
  if (named_hdf5 && opt.hdf5_name_hint) {
    std::shared_ptr<sandbox::ForkServer> hdf5_server;
    Result<std::string> hdf5 = hdf5_worker(&hdf5_server);
    if (hdf5.ok() && access(hdf5->c_str(), X_OK) == 0) {
      report->worker.name_hint = true;
      Status started = RunWorker(setup, *hdf5, hdf5_server.get(), /*hand_off_allowed=*/false,
                                 report, stream, verdict);
      if (started.ok()) return started;
      report->worker = WorkerOutcome();
      fresh_stream();
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(RunWorker(setup, worker_path, fork_server.get(),
                                      /*hand_off_allowed=*/true, report, stream, verdict));
  if (!verdict->hand_off) return Status::Ok();
  // The lean worker sent nothing but the request (the stream reader saw
  // to it): the HDF5 worker converts the whole input (every file of a
  // multi-file one, and their list) from the start, and may not hand it
  // off again.
  report->worker = WorkerOutcome();
  report->worker.hand_off = true;
  // A hand-off means libhdf5 finds a superblock: the format is known even
  // if the HDF5 worker then hangs or crashes before it says so.
  if (report->source_format.empty()) report->source_format = "hdf5";
  std::shared_ptr<sandbox::ForkServer> hdf5_server;
  SAFEMODEL_ASSIGN_OR_RETURN(const std::string hdf5, hdf5_worker(&hdf5_server));
  fresh_stream();
  return RunWorker(setup, hdf5, hdf5_server.get(), /*hand_off_allowed=*/false, report, stream,
                   verdict);
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

// The conversion of an opened input whose SHA-256 `hasher` is computing.
Status ConvertOpened(InputSet& input, InputHasher& hasher, const std::string& in_path,
                     const std::string& out_path, const ConvertOptions& opt,
                     Clock::time_point start, ConvertReport* report) {
  const int in_fd = input.primary().fd();
  const uint64_t input_size = input.total_size();
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
  if (opt.weights_only) options.emplace_back(protocol::kOptionWeightsOnly);
  if (opt.keep_optimizer) options.emplace_back(protocol::kOptionKeepOptimizer);
  std::sort(options.begin(), options.end());
  report->options = options;

  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<std::string> required_layers, RequiredLayers(opt));
  ProgressHook progress;
  if (opt.progress || opt.cancel) {
    progress = [&opt](const ConvertProgress& p) {
      if (opt.progress) opt.progress(p);
      return !(opt.cancel && opt.cancel());
    };
  }
  // A spool is read back whole at commit: written behind, it would be read
  // from the disk.
  const bool write_behind = opt.sync_output && out->kind() != TempKind::kSpool;
  const RunSetup setup{&input, limits, options, required_layers, deadline, timeout_ms, out->fd(),
                       opt.digest, opt.max_output_bytes, progress, write_behind};
  std::string worker_path;
  if (opt.fork_server) {
    worker_path = opt.fork_server->worker_path();
  } else {
    SAFEMODEL_ASSIGN_OR_RETURN(worker_path, FindWorker(opt));
  }

  // The output's SHA-256, if asked, as it is written: the writer asks for
  // the input's (its header holds it) from the hasher thread.
  SafemodelWriter::InputSha256Source hash_output_with;
  if (opt.hash_output) {
    hash_output_with = [&hasher, &input]() -> std::optional<std::string> {
      const std::vector<std::string>* digests = hasher.Ready();
      if (digests == nullptr) return std::nullopt;
      return input.CombineDigests(*digests);
    };
  }
  StreamOutcome stream;
  Verdict verdict;
  SAFEMODEL_RETURN_IF_ERROR(RunWorkers(setup, opt, worker_path, NameSuggestsHdf5(input, in_path),
                                       hash_output_with, report, &stream, &verdict));
  SAFEMODEL_RETURN_IF_ERROR(verdict.status);
  if (report->source_format == "hf_index" && !opt.read_checkpoint_index) {
    return Status::Unsupported(
        "'" + in_path + "' is a Hugging Face sharded-checkpoint index: it names the shards of a "
        "checkpoint and holds no tensor, so it is not converted alone; convert the checkpoint as one "
        "unit with 'safe-convert batch DIR --out-dir OUT' (DIR holding the index and its shards) or "
        "the library's ConvertShardedCheckpoint (safemodel/sharded_convert.h)");
  }

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
  if (opt.hash_output) report->output_sha256 = ToHex(stream.writer->file_sha256());
  return Status::Ok();
}

// `open` opens the input (a path or a descriptor); `in_path` names it.
Status Convert(const std::function<Result<InputSet>()>& open, const std::string& in_path,
               const std::string& out_path, const ConvertOptions& opt, ConvertReport* report) {
  const auto start = Clock::now();
  if (opt.memory_limit_bytes < kMinMemoryLimit) {
    return Status::InvalidArgument("the memory limit must be at least " + Num(kMinMemoryLimit) +
                                   " bytes");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(InputSet input, open());
  report->input_bytes = input.total_size();
  if (input.multi_file()) report->findings.push_back(input.FilesNote());
  // Hashed whatever the outcome: a refusal, a limit or a crash is recorded
  // with the digest of what was refused (an audit needs it; the parent reads
  // the bytes itself, the worker's word is not needed). A multi-file input's
  // is the SHA-256 of its files' SHA-256s (InputSet::CombineDigests).
  InputHasher hasher;
  hasher.Start(input.Parts());
  Status status = ConvertOpened(input, hasher, in_path, out_path, opt, start, report);
  if (report->input_sha256.empty()) {
    Result<std::vector<std::string>> hashed = hasher.Join();
    if (hashed.ok() && input.CheckUnchanged().ok()) {
      report->input_sha256 = ToHex(input.CombineDigests(*hashed));
    }
  }
  return status;
}

}  // namespace

namespace {

ConvertReport ConvertOpening(const std::function<Result<InputSet>()>& open,
                             const std::string& input_path, const std::string& output_path,
                             const ConvertOptions& options) {
  ConvertReport report;
  report.input_path = input_path;
  report.output_path = output_path;
  auto t0 = Clock::now();
  report.status = Convert(open, input_path, output_path, options, &report);
  if (report.source_format.empty()) report.source_format = "unknown";
  OrderFindings(&report.findings);
  report.status = HeadlineWorst(report.status, report.findings);
  report.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  struct rusage self;
  if (getrusage(RUSAGE_SELF, &self) == 0) {
    report.parent_max_rss_bytes = static_cast<uint64_t>(self.ru_maxrss) * 1024;
  }
  return report;
}

}  // namespace

ConvertReport ConvertFile(const std::string& input_path, const std::string& output_path,
                          const ConvertOptions& options) {
  return ConvertOpening([&] { return InputSet::Open(input_path); }, input_path, output_path,
                        options);
}

ConvertReport ConvertFd(int input_fd, const std::string& output_path,
                        const ConvertOptions& options) {
  const std::string label = "descriptor " + std::to_string(input_fd);
  return ConvertOpening([&] { return InputSet::FromDescriptor(input_fd, label); }, label,
                        output_path, options);
}

ConvertReport ConvertBuffer(std::span<const std::byte> input, const std::string& output_path,
                            const ConvertOptions& options) {
  const std::string label = "buffer of " + std::to_string(input.size()) + " bytes";
  // The bytes go into a sealed memory file (no write, grow or shrink is
  // possible any more): the worker maps it like a file, and the input
  // cannot change under the conversion, whoever holds the buffer.
  Result<int> fd = SealedMemoryFile(
      std::string(reinterpret_cast<const char*>(input.data()), input.size()));
  if (!fd.ok()) {
    ConvertReport report;
    report.input_path = label;
    report.output_path = output_path;
    report.source_format = "unknown";
    report.status = fd.status();
    return report;
  }
  ConvertReport report = ConvertFd(*fd, output_path, options);
  close(*fd);
  report.input_path = label;
  return report;
}

}  // namespace safemodel

namespace safemodel {

Result<std::shared_ptr<sandbox::ForkServer>> StartForkServer(const ConvertOptions& options) {
  SAFEMODEL_ASSIGN_OR_RETURN(const std::string worker_path, FindWorker(options));
  return sandbox::ForkServer::Start(worker_path);
}

}  // namespace safemodel
