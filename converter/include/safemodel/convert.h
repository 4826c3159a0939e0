// File: safemodel/convert.h
//
// Converting an untrusted model file into a .safemodel, the library call.
//
// The input is parsed only by a separate, sandboxed worker process
// (`safemodel-worker`, installed next to the library): it is started fresh by
// exec, confined by seccomp before it reads the input, and streams its result
// back over a pipe. That worker links no libhdf5; an input that needs it
// (Keras .h5, anything libhdf5 finds a superblock in) is converted again,
// from the start, by `safemodel-worker-hdf5`, installed beside it, which
// links every parser (the report's worker.hand_off). This process
// re-validates everything the worker sends, computes every digest itself, and
// writes the output to a temporary file in the output directory that gets the
// output's name only when the worker ended cleanly, the input did not change
// meanwhile, and every check passed. On any failure the output path is as it
// was before the call.
//
// The output path (README "Output files"):
//  * must not exist, or be a regular file and `force` be set; a symbolic
//    link, FIFO, socket, device or directory there is refused (exit 2), with
//    or without `force`. Checked before any work and again at the end; a file
//    that appears there during the conversion is never replaced silently.
//  * A new file's mode is 0666 & ~umask (or the directory's default ACL);
//    a replaced file's permission bits (without set-ID and sticky bits) and,
//    where this process may set them, its owner and group carry over.
//  * Temporary files are anonymous where the kernel allows (O_TMPFILE) and
//    otherwise named `.sm-XXXXXX` in the output directory. The library never
//    installs signal handlers: a host that wants such files removed when it
//    is interrupted calls RemoveTemporaryOutputs() from its own handler
//    (safe-convert does, for SIGINT, SIGTERM, SIGHUP and SIGQUIT).
//
// Safe to call from a multithreaded host; each call spawns its own worker.
//
// Example:
//   safemodel::ConvertReport r = safemodel::ConvertFile("model.npz", "model.safemodel");
//   if (!r.status.ok()) {
//     std::cerr << r.status.ToString() << "\n";       // what, where, which rule
//     for (const auto& f : r.findings) std::cerr << f.rule << " " << f.location << "\n";
//     return safemodel::ExitCodeFor(r.status.code());
//   }
#ifndef SAFEMODEL_CONVERT_H_
#define SAFEMODEL_CONVERT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "safemodel/finding.h"
#include "safemodel/reader.h"
#include "safemodel/status.h"

namespace safemodel {

namespace sandbox {
class ForkServer;  // sandbox/fork_server.h; opaque here
}  // namespace sandbox

// How far a conversion is: bytes of the output written, of the size planned
// for it once the worker has described the model (an upper bound: the final
// file can be a few bytes smaller, its trailer being planned at its largest).
struct ConvertProgress {
  uint64_t bytes_written = 0;
  uint64_t bytes_total = 0;
};

struct ConvertOptions {
  // Wall-clock limit for the whole conversion; the worker is killed after it.
  // 0 = automatic: 120 s plus 20 s per GiB of input (EffectiveTimeoutMs).
  uint64_t timeout_ms = 0;
  // Memory the worker may allocate beyond its read-only map of the input.
  // Converting needs about the largest tensor plus a few MiB.
  uint64_t memory_limit_bytes = 4ull << 30;
  // CPU seconds for the worker; 0 = derived from the timeout.
  uint64_t cpu_limit_seconds = 0;
  // Inputs larger than this are refused before a worker starts.
  uint64_t max_input_bytes = 256ull << 30;
  // Cap on the output file's size; 0 = none. Independently of it, the output
  // must fit in the free space of its file system (checked against the size
  // the worker declares, before any tensor byte is written).
  uint64_t max_output_bytes = 0;
  DigestAlgorithm digest = DigestAlgorithm::kXxh3_128;
  // Keras: convert tensors only when the architecture cannot be represented
  // (recorded in the output and the report). Never copies code.
  bool weights_only = false;
  // Keras: keep optimizer state tensors (dropped by default).
  bool keep_optimizer = false;
  // fsync the output and its directory before reporting success. A synced
  // output is also written behind as it grows: every 64 MiB goes to the
  // disk at once and leaves the page cache once there (on file systems that
  // write back this way; not tmpfs or overlayfs), so a large output does not
  // fill the page cache; a caller that maps it right after reads it from
  // the disk, but for its last ~128 MiB. The time waited for the disk is
  // added to timeout_ms. Off: the output stays cached.
  bool sync_output = true;
  // Replace an existing output file (only ever a regular file); without it an
  // existing output is refused (kInvalidArgument, exit 2), as zstd and gzip do.
  bool force = false;
  // >= 0: write the output to this open descriptor (safe-convert's `-` is
  // standard output) instead of a file at the output path, which is then
  // only a label for the report. The output is spooled in an anonymous file
  // in $TMPDIR (or /tmp), which needs room for it, and copied to the
  // descriptor in one pass after every check passed: a failed conversion
  // writes nothing to it. If that final copy fails part-way (a closed pipe,
  // a full disk), the bytes already written are incomplete and the status is
  // kIoError: a reader must check the exit status.
  int output_fd = -1;
  // A Hugging Face sharded-checkpoint index (`*.bin.index.json`) converts to
  // a .safemodel with no tensors and the weight map as metadata: alone, that
  // output would mislead, so it is refused (kUnsupported, naming `safe-convert
  // batch` and ConvertShardedCheckpoint) unless this is set, as
  // ConvertShardedCheckpoint (safemodel/sharded_convert.h) sets it to read
  // the index through the worker.
  bool read_checkpoint_index = false;
  // Compute the output file's SHA-256 (ConvertReport::output_sha256) from
  // the bytes as they are written, instead of reading the output again
  // afterwards: what `safe-convert batch` records. Costs one SHA-256 pass
  // over the output (~2 GB/s per core), so it is off by default.
  bool hash_output = false;
  // Path of safemodel-worker, the lean worker every conversion starts;
  // empty = $SAFEMODEL_WORKER (an absolute path), else next to the program
  // or library holding the pipeline, else the install layout's
  // libexec/safemodel/ relative to it (a moved prefix works), else the
  // configured install prefix.
  std::string worker_path;
  // Path of safemodel-worker-hdf5, started only when the lean worker hands
  // off an input that needs libhdf5; empty = $SAFEMODEL_HDF5_WORKER (an
  // absolute path), else safemodel-worker-hdf5 in the directory of the lean
  // worker that ran, however that one was found (the two are built and
  // installed side by side).
  std::string hdf5_worker_path;
  // When the input is one file whose name ends in .h5, .hdf5 or .he5 (ASCII
  // case-insensitive; not .keras, a zip), start the HDF5 worker directly
  // instead of the lean one and its hand-off: one worker instead of two.
  // The name is a hint, never a verdict: this process reads no byte of the
  // input to decide, and the HDF5 worker detects the format itself exactly
  // as the lean one does (it links every parser, runs the same lockdown,
  // limits and isolation checks), so the result (status, message, findings,
  // format, output bytes) is the same with the hint as without it; only
  // the worker fields of the report differ (worker.name_hint). An input
  // named otherwise, a descriptor or a buffer goes through the lean worker.
  // If the HDF5 worker cannot be found or its zygote cannot start, the
  // lean worker runs as without the hint.
  bool hdf5_name_hint = true;
  // Isolation layers the parent must see in the locked-down worker's /proc
  // entry before it reads a single result frame, on top of the ones always
  // required ("seccomp", "no_new_privs", "no_capabilities", "rlimits").
  // Names: "non_root", "userns", "netns", "mntns", "ipcns", "utsns", "aslr"
  // (README "Sandbox"). A missing layer fails the conversion with
  // kSandboxSetupFailed (exit 70) before the worker reads its input; an
  // unknown name is kInvalidArgument.
  std::vector<std::string> required_isolation;
  // If set (StartForkServer below), the lean worker is forked from this
  // fork server's zygote instead of started by exec: about 2 ms less per
  // conversion, at the cost of sharing one address-space layout among the
  // workers of up to sandbox::kForkServerRotation conversions (SECURITY.md).
  // Each forked worker still locks itself down and is checked in /proc
  // before it reads its input. The worker is the fork server's (worker_path
  // is not used). The HDF5 worker of a hand-off (hdf5_worker_path, found as
  // without a fork server) is forked from a second zygote, started at the
  // first hand-off and kept by this fork server (ForkServer::Companion).
  std::shared_ptr<sandbox::ForkServer> fork_server;
  // If set, called on the calling thread as the output grows: once when its
  // size is known, then after every kProgressStepBytes written. Must return
  // quickly and not throw. safe-convert shows it on a terminal.
  std::function<void(const ConvertProgress&)> progress;
  // If set, asked on the calling thread at the same points as `progress`
  // (once the output's size is known, then every kProgressStepBytes
  // written); returning true cancels the conversion: the worker is killed,
  // nothing is written, and the status is kIoError ("cancelled by the
  // caller", exit 6, as for an output failure). A parse that has produced
  // no output yet is not asked (the timeout bounds it). Must return quickly
  // and not throw; an std::atomic<bool> flag read here is the usual form.
  std::function<bool()> cancel;
};

// The output bytes between two progress calls.
inline constexpr uint64_t kProgressStepBytes = 4ull << 20;  // a call per ~4 ms at 1 GB/s

// How the worker process ended.
struct WorkerOutcome {
  // The report's worker.outcome (WorkerOutcomeName gives the string).
  enum class Kind {
    kNotStarted,  // "not_started": the conversion ended before a worker ran
    kExited,      // "exited": the worker exited by itself (exit_code)
    kSignaled,    // "signaled": a signal ended it (signal): a crash, a limit, another process
    kSeccomp,     // "seccomp": the sandbox stopped a forbidden system call (syscall_*)
    kTimeout,     // "timeout": the wall-clock limit passed; the worker was killed
    kKilled,      // "killed": this process killed it: the output failed (I/O error, no
                  // space, --max-output-size) or a required isolation layer was missing
    kUnknown,     // "unknown": how it ended could not be observed (wait failed)
  };
  Kind kind = Kind::kNotStarted;
  // The file name of the worker this outcome is of ("safemodel-worker",
  // "safemodel-worker-hdf5", or what worker_path names); "" if none started.
  std::string program;
  // The lean worker asked for the HDF5 worker (the input needs libhdf5),
  // which then converted the input from the start; every other field is
  // the HDF5 worker's.
  bool hand_off = false;
  // The HDF5 worker was started directly, without the lean one, because the
  // input's name ends in .h5, .hdf5 or .he5 (ConvertOptions::hdf5_name_hint);
  // every field is that worker's.
  bool name_hint = false;
  int exit_code = 0;
  int signal = 0;
  int syscall_nr = -1;       // on a seccomp violation
  std::string syscall_name;  // e.g. "openat"
  // The peak resident size of the worker, bytes; where it comes from is
  // max_rss_source (converter/REPORT.md):
  //   "vmhwm"   the worker's own: VmHWM of /proc/<pid>/status, read by this
  //             process while the worker was alive, after its last frame
  //             (or just before this process killed it);
  //   "rusage"  wait4's ru_maxrss, where /proc could not be read (the worker
  //             died before its result was in). For a worker started by
  //             exec it includes this process's peak until the spawn: the
  //             kernel folds the spawner's in at exec. A fork server's
  //             worker is counted from the small zygote.
  //   ""        no worker ran.
  uint64_t max_rss_bytes = 0;
  std::string max_rss_source;
  double cpu_seconds = 0;
  // Isolation layers this process saw in the worker's /proc entry after the
  // worker locked itself down and before it read its input (the evidence).
  std::vector<std::string> isolation;
  // What the worker said it enabled (its claim; not trusted). Includes
  // "landlock", which /proc does not show.
  std::vector<std::string> claimed_isolation;
  // The /proc facts behind `isolation` ("seccomp": "2", "uid": "65534 ...",
  // "cap_eff": "0000000000000000", ...), in the order read.
  std::vector<std::pair<std::string, std::string>> observed;
};

// "not_started", "exited", "signaled", "seccomp", "timeout", "killed" or
// "unknown".
const char* WorkerOutcomeName(WorkerOutcome::Kind kind);

// The report's "schema_version": raised when a field changes meaning or
// goes away (new fields may appear without it). 1: the first numbered one.
inline constexpr int kReportSchemaVersion = 1;

struct ConvertReport {
  Status status;  // ok, or what went wrong (ExitCodeFor gives the CLI exit code)
  std::string input_path;
  std::string output_path;
  uint64_t input_bytes = 0;
  // Whatever the outcome, once the input could be opened: the parent hashes
  // it itself (empty only if it could not be read whole or it changed).
  std::string input_sha256;   // hex
  // As detected by the worker, also for a refused or malformed input;
  // "unknown" when no worker said (a crash, a limit, a usage error).
  std::string source_format;
  // Worst first: refusals, then dropped items, then notes; the status
  // message of a refusal names the first (converter/finding_order.h).
  std::vector<Finding> findings;
  uint64_t tensor_count = 0;
  uint64_t tensor_bytes = 0;
  uint64_t output_bytes = 0;
  // With ConvertOptions::hash_output and a converted output: SHA-256 of
  // the output file as committed (hex; what `sha256sum OUT` prints; for a
  // descriptor output, of the bytes copied to it). "" otherwise. For
  // ConvertShardedCheckpoint: of the output index file.
  std::string output_sha256;
  WorkerOutcome worker;
  std::vector<std::string> options;
  double wall_seconds = 0;
  uint64_t parent_max_rss_bytes = 0;

  // The report as one JSON object (README "Report format").
  std::string ToJson() const;
};

ConvertReport ConvertFile(const std::string& input_path, const std::string& output_path,
                          const ConvertOptions& options = {});

// The same for an input already open as `input_fd` (a regular file open for
// reading, e.g. received over a socket with SCM_RIGHTS): it is duplicated,
// the caller keeps its own descriptor. Single-file formats only. The
// input-change check applies as for a path (size, mtime, ctime); hand over a
// descriptor nobody writes to, or a sealed memfd. The report names it
// "descriptor N".
ConvertReport ConvertFd(int input_fd, const std::string& output_path,
                        const ConvertOptions& options = {});

// The same for bytes in memory (a service receiving a model over the
// network): they are copied once into a sealed memfd (memfd_create, sealed
// against writing, growing and shrinking), which the worker maps, so the
// input cannot change during the conversion. Needs memory for one copy of
// the input. The report names it "buffer of N bytes".
ConvertReport ConvertBuffer(std::span<const std::byte> input, const std::string& output_path,
                            const ConvertOptions& options = {});

// Starts a fork server of the lean worker that `options` would run (its
// worker_path, or the same search as ConvertFile), for
// ConvertOptions::fork_server. kSandboxSetupFailed if it cannot start. The
// zygotes (the lean worker's, and the HDF5 worker's once an input needed
// it) die with this process, or when the last reference is dropped.
Result<std::shared_ptr<sandbox::ForkServer>> StartForkServer(const ConvertOptions& options);

// Removes the named temporary files (`.sm-XXXXXX`) of every conversion in
// progress in this process; those conversions then fail with kIoError.
// Async-signal-safe: meant for a host's SIGINT/SIGTERM/SIGHUP handler just
// before it ends the process (anonymous temporary files need nothing: the
// kernel frees them with the process).
void RemoveTemporaryOutputs();

// The wall-clock limit a conversion of `input_bytes` gets with `options`.
uint64_t EffectiveTimeoutMs(const ConvertOptions& options, uint64_t input_bytes);

// The converter version recorded in every output ("safemodel 0.1.0").
const char* ConverterVersion();

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERT_H_
