// The inputs of `safe-convert batch`: a directory tree or a JSON-lines
// manifest, listed, sorted and sliced into shards.
#ifndef SAFEMODEL_CONVERTER_CLI_BATCH_INPUTS_H_
#define SAFEMODEL_CONVERTER_CLI_BATCH_INPUTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "safemodel/sharded_convert.h"
#include "safemodel/status.h"

namespace safemodel::cli {

struct BatchInput {
  // A relative path (for a directory tree, the path under the root; for a
  // manifest, its "id"); the output is OUT_DIR/id.safemodel.
  std::string id;
  std::string path;
  // Not followed: a symbolic link in a directory tree is a result of its
  // own ("symlink"), never converted.
  bool symlink = false;
};

// Limits on what the lister reads (the manifest is the user's, but a
// generated one can be wrong).
inline constexpr uint64_t kMaxManifestBytes = 1ull << 30;   // ~5 million lines
inline constexpr size_t kMaxManifestLineBytes = 64 << 10;   // an id and a path
inline constexpr size_t kMaxListedDepth = 64;               // deeper trees are a loop or a mistake

// Every entry under `root`, recursively, sorted by id (bytewise). Regular
// files and anything else that is not a directory or a link become inputs
// (a FIFO or a device is then refused by the conversion); symbolic links
// are listed, never followed; a directory holding `saved_model.pb` is one
// input (a TensorFlow SavedModel). Entries whose real path is in `exclude`
// (the out-dir, the results file) are left out. The shards of a sharded
// checkpoint's index (safemodel/sharded_convert.h) are left out too, when
// `shards_of` (which reads an index through the worker) names them: they
// are converted with it, as one unit. An index it cannot read stays an
// input of its own (its conversion says why) and claims nothing.
using ShardLister = std::function<Result<std::vector<std::string>>(const std::string& index_path)>;
Result<std::vector<BatchInput>> ListTree(const std::string& root, const std::vector<std::string>& exclude,
                                         const ShardLister& shards_of = nullptr);

// The readings of sharded checkpoints' indexes in one run, each index
// converted (through the worker, by `convert`) once: Lister() gives the
// listing and the rerun check their shard lists (ReadShardedCheckpointIndex,
// the same results and messages as reading each time), and Reader() hands
// the whole reading over to the unit's conversion (Batch's
// read_checkpoint_index), once; a second request reads again. A reading
// handed over is forgotten but for its shard list, so that memory does not
// grow with the weight maps of every unit. Thread-safe.
class CheckpointIndexReadings {
 public:
  CheckpointIndexReadings(ConvertOptions options, ConvertFunction convert);
  ShardLister Lister() const;
  CheckpointIndexReader Reader() const;
  // Frees the reading of an index that will not be converted (a rerun
  // skips it), keeping its shard list.
  void Forget(const std::string& index_path) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// The manifest's lines, {"id": ..., "path": ...} each (blank lines
// skipped), sorted by id. A relative path is taken relative to the
// manifest's directory. An id must be unique and a clean relative path (no
// empty, "." or ".." component, no leading "/", no NUL): it names the
// output. kInvalidArgument naming the line otherwise.
Result<std::vector<BatchInput>> ReadManifest(const std::string& manifest_path);

// Whether `id` is a clean relative path (see ReadManifest).
bool IsCleanId(const std::string& id);

// The shard an id belongs to of `count`: FNV-1a (64 bit) of the id modulo
// count. A pure function of the id: shards do not move when the zoo grows.
uint64_t ShardOf(const std::string& id, uint64_t count);

// "I/N" with 0 <= I < N: true and the two numbers, else false.
bool ParseShard(const std::string& text, uint64_t* index, uint64_t* count);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_BATCH_INPUTS_H_
