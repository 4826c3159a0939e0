// File: safemodel/convert.h
//
// Converting an untrusted model file into a .safemodel, the library call.
//
// The input is parsed only by a separate, sandboxed worker process
// (`safemodel-worker`, installed next to the library): it is started fresh by
// exec, confined by seccomp before it reads the input, and streams its result
// back over a pipe. This process re-validates everything the worker sends,
// computes every digest itself, and writes the output to a temporary file in
// the output directory that is renamed into place only when the worker ended
// cleanly and every check passed. On any failure no output file exists.
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
#include <string>
#include <utility>
#include <vector>

#include "safemodel/finding.h"
#include "safemodel/reader.h"
#include "safemodel/status.h"

namespace safemodel {

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
  // fsync the output and its directory before reporting success.
  bool sync_output = true;
  // Path of safemodel-worker; empty = next to this library or executable,
  // then the installed libexec location.
  std::string worker_path;
  // Isolation layers the parent must see in the locked-down worker's /proc
  // entry before it reads a single result frame, on top of the ones always
  // required ("seccomp", "no_new_privs", "no_capabilities", "rlimits").
  // Names: "non_root", "userns", "netns", "mntns", "ipcns", "utsns", "aslr"
  // (README "Sandbox"). A missing layer fails the conversion with
  // kSandboxSetupFailed (exit 70) before the worker reads its input; an
  // unknown name is kInvalidArgument.
  std::vector<std::string> required_isolation;
};

// How the worker process ended.
struct WorkerOutcome {
  // "exited" | "signaled" | "seccomp" | "timeout" | "not_started" | "unknown"
  std::string kind = "not_started";
  int exit_code = 0;
  int signal = 0;
  int syscall_nr = -1;       // on a seccomp violation
  std::string syscall_name;  // e.g. "openat"
  uint64_t max_rss_bytes = 0;
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

struct ConvertReport {
  Status status;  // ok, or what went wrong (ExitCodeFor gives the CLI exit code)
  std::string input_path;
  std::string output_path;
  uint64_t input_bytes = 0;
  std::string input_sha256;   // hex; empty if not computed
  std::string source_format;  // as detected by the worker
  std::vector<Finding> findings;  // refusals (on failure), dropped items, notes
  uint64_t tensor_count = 0;
  uint64_t tensor_bytes = 0;
  uint64_t output_bytes = 0;
  WorkerOutcome worker;
  std::vector<std::string> options;
  double wall_seconds = 0;
  uint64_t parent_max_rss_bytes = 0;

  // The report as one JSON object (README "Report format").
  std::string ToJson() const;
};

ConvertReport ConvertFile(const std::string& input_path, const std::string& output_path,
                          const ConvertOptions& options = {});

// The wall-clock limit a conversion of `input_bytes` gets with `options`.
uint64_t EffectiveTimeoutMs(const ConvertOptions& options, uint64_t input_bytes);

// The converter version recorded in every output ("safemodel 0.1.0").
const char* ConverterVersion();

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERT_H_
