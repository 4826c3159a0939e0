// File: safemodel/batch.h
//
// Converting many model files, the library call behind `safe-convert batch`.
//
// Each item is converted by one call of BatchOptions::convert (by default
// ConvertFile, exactly as a single conversion: its own freshly started
// sandboxed worker, its own limits), `jobs` at a time. A hostile, hanging or
// crashing input costs its own slot for at most its own time limit; the
// others go on.
//
// An item whose input is a sharded Hugging Face checkpoint's index
// (`*.bin.index.json`, `*.safetensors.index.json`) is converted as one unit
// (safemodel/sharded_convert.h): its output path names the output index, and
// each shard goes through the same function.
//
// Results arrive through a callback as each item finishes, one call at a
// time (never concurrently), on the thread that converted the item. Cancel()
// (from any thread, also from the callback) stops starting new items; the
// conversions already running are not interrupted: each ends by itself,
// within its own time limit, and its result is delivered. Run() then returns
// and BatchSummary::not_started counts what was left.
//
// Example:
//   safemodel::BatchOptions opt;
//   opt.jobs = 4;
//   safemodel::Batch batch(opt);
//   batch.Run(items, [](const safemodel::BatchResult& r) {
//     std::cout << safemodel::BatchResultJson(r) << "\n";
//   });
#ifndef SAFEMODEL_BATCH_H_
#define SAFEMODEL_BATCH_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "safemodel/convert.h"

namespace safemodel {

// One input of a batch: `id` names it in the results (unique in a batch;
// a path relative to the batch's root, or a manifest's id).
struct BatchItem {
  std::string id;
  std::string input_path;
  std::string output_path;
};

// The one function every conversion of a batch goes through; ConvertFile's
// signature. A host that converts differently (a pre-forked worker pool, a
// remote service) passes its own.
using ConvertFunction =
    std::function<ConvertReport(const std::string& input_path, const std::string& output_path,
                                const ConvertOptions& options)>;

// A reading of a sharded checkpoint's index (safemodel/sharded_convert.h),
// for a caller that read the index already and hands its reading over.
struct ShardedCheckpointIndexReading;
using CheckpointIndexReader =
    std::function<ShardedCheckpointIndexReading(const std::string& hf_index_path)>;

struct BatchOptions {
  // For every item (its `progress` hook is not used: a batch reports whole
  // items). `force` is the caller's choice: safe-convert batch sets it, the
  // out-dir being the batch's own.
  ConvertOptions convert;
  // Conversions at a time; 0 = the number of cores the process may use.
  unsigned jobs = 0;
  // Empty = ConvertFile.
  ConvertFunction convert_function;
  // How a unit's index is read (ConvertShardedCheckpoint); empty = through
  // convert_function, by the unit itself. safe-convert batch hands over the
  // reading its listing made, so that an index is converted once.
  CheckpointIndexReader read_checkpoint_index;
  // Hash each converted output (BatchResult::output_sha256), reading it
  // back once; a resume uses it to check an existing output.
  bool hash_outputs = true;
};

// The batch status of an item: the issue-12 classes of a ConvertReport's
// status (README "Results file").
//   "converted", "refused" (code found), "malformed", "unsupported",
//   "limit" (size, memory or time), "sandbox" (the worker was stopped or
//   crashed, or the sandbox could not be set up), "io_error" (worth a retry:
//   reading, writing, the input changed), "invalid" (not a convertible
//   input or an unusable output path: a FIFO, a device, an output that is a
//   link), "symlink" (not followed, not converted: set by the lister).
const char* BatchStatusName(StatusCode code);

struct BatchResult {
  size_t index = 0;  // in the list given to Run
  BatchItem item;
  ConvertReport report;
  // SHA-256 of the output file as written (hex), if converted and
  // BatchOptions::hash_outputs; "" otherwise.
  std::string output_sha256;
};

struct BatchSummary {
  size_t finished = 0;     // results delivered
  size_t not_started = 0;  // left by Cancel()
};

class Batch {
 public:
  explicit Batch(BatchOptions options);
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Converts `items` in order of their index (`jobs` at a time), calling
  // `on_result` as each finishes (it must not throw; it may call Cancel()).
  // Blocks until every started item finished. Call Run once per Batch.
  BatchSummary Run(const std::vector<BatchItem>& items,
                   const std::function<void(const BatchResult&)>& on_result);

  // Stops starting new items (see the file comment). Thread-safe.
  void Cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

 private:
  BatchResult ConvertOne(size_t index, const BatchItem& item) const;
  BatchOptions options_;
  std::atomic<bool> cancelled_{false};
};

// The number of conversions `jobs` = 0 means: the CPUs this process may
// run on (sched_getaffinity), at least 1.
unsigned DefaultBatchJobs();

// What a result depends on besides the input and the converter version,
// as sorted "name=value" strings: the digest, the Keras options and the
// limits. Recorded in every results line; a resume redoes an item when
// they differ.
std::vector<std::string> BatchOptionsFingerprint(const ConvertOptions& options);

// `safe-convert batch`'s exit code when some inputs hit I/O errors worth a
// retry (EX_TEMPFAIL of sysexits.h); 0 when every input reached a final
// status.
inline constexpr int kExitBatchRetry = 75;

// The results-file schema version (README "Results file"): raised when a
// field changes meaning or goes away.
inline constexpr int kBatchResultsSchemaVersion = 1;

// One results line (no newline): a JSON object with schema_version, id,
// input {path, bytes, sha256, format}, status, exit_code, message, findings,
// output {path, bytes, sha256, tensors}, wall_seconds, cpu_seconds,
// peak_memory_bytes and peak_memory_source, worker outcome, converter, options.
std::string BatchResultJson(const BatchResult& result, const std::vector<std::string>& fingerprint);

// A results line for an input that was not converted because the lister
// did not follow it or could not read it (`status`: "symlink" or
// "io_error"; `exit_code` its batch meaning).
std::string BatchSkipJson(const BatchItem& item, const std::string& status, int exit_code,
                          const std::string& message, const std::vector<std::string>& fingerprint);

// SHA-256 of a whole file (hex), read by this process; an error if it
// cannot be read. For resume checks.
Result<std::string> Sha256OfFile(const std::string& path);

}  // namespace safemodel

#endif  // SAFEMODEL_BATCH_H_
