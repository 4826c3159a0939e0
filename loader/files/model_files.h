// Which files make up a model that is more than one file: a TensorFlow
// SavedModel directory, a TF checkpoint (a prefix, its `.index` file, or its
// directory), and a Keras sharded weight store (`*.weights.json` beside its
// shard files). loader/README.md ("Models made of several files") states the
// rule in words.
//
// This module decides from names and file types only; it reads no file
// content, so that the parent process (which must not parse untrusted
// bytes) can use it to choose the few files it opens and hands to the
// sandboxed worker as descriptors. It depends on nothing but the status
// type, and is linked into the worker as well, which checks the same names
// again (loader/registry.h, ParseModelFiles).
//
// Worst case: O(e log e) for e listed entries (at most kMaxListedEntries).
//
// Trust: the names come from the file system the input lives on and are
// untrusted (any bytes but '/' and NUL per component); they are only
// compared, and a plan never names a file outside the listed directory.
#ifndef SAFEMODEL_LOADER_FILES_MODEL_FILES_H_
#define SAFEMODEL_LOADER_FILES_MODEL_FILES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "safemodel/status.h"

namespace safemodel::loader {

// Entries listed under a directory input (recursively). SavedModels have
// fewer than ten; tokenizer assets can add a few hundred.
inline constexpr uint64_t kMaxListedEntries = 10'000;
// Directory levels under the input that are listed. `assets/` may nest; the
// model's own files are at most one level down (`variables/`).
inline constexpr uint32_t kMaxListedDepth = 8;
// Files opened for one model: each is a descriptor in both processes. TF
// writes one data file per device; 1,000 covers large sharded saves.
inline constexpr uint64_t kMaxModelFiles = 1'000;

// What an opened file is to the model.
enum class FileRole : uint8_t {
  kSavedModel = 1,       // saved_model.pb
  kKerasMetadata = 2,    // keras_metadata.pb (tf.keras 2.5-2.15)
  kBundleIndex = 3,      // <prefix>.index
  kBundleData = 4,       // <prefix>.data-NNNNN-of-MMMMM
  kCheckpointState = 5,  // checkpoint (text CheckpointState)
  kWeightsJson = 6,      // <base>.weights.json
  kWeightsShard = 7,     // <base>_NNNNN.weights.h5
};
std::string_view FileRoleName(FileRole role);
bool IsValidFileRole(uint32_t raw);

enum class ModelKind : uint8_t {
  kSavedModel = 1,
  kCheckpoint = 2,      // one prefix, or a directory with a `checkpoint` file
  kShardedWeights = 3,  // Keras *.weights.json and its shards
};
std::string_view ModelKindName(ModelKind kind);
bool IsValidModelKind(uint32_t raw);

// One entry of a listing: a '/'-separated name relative to the input
// directory (or, for a file input, its base name among its siblings).
struct ListedEntry {
  enum class Type : uint8_t { kRegular, kDirectory, kSymlink, kOther };
  std::string name;
  Type type = Type::kRegular;
};

struct PlannedFile {
  FileRole role;
  std::string name;  // relative to the directory that was listed
};

struct FilePlan {
  ModelKind kind = ModelKind::kCheckpoint;
  std::vector<PlannedFile> open;   // the files of the model, opened and passed on
  std::vector<std::string> listed; // other entries, reported by name, never opened
};

// The plan for a directory input whose entries (recursively, directories
// included) are `listing`. Errors: an entry that is a symbolic link or not
// a regular file or directory anywhere below the input (InvalidArgument,
// rule input.symlink / input.not_regular: nothing is opened), a name with
// an empty, "." or ".." component (InvalidArgument), too many entries or
// files (LimitExceeded, input.too_many_files), a directory that is no model
// this module knows (Unsupported), an entry that is neither a file of the
// model nor one of the few a SavedModel may hold beside them
// (`fingerprint.pb`, `assets/`, `assets.extra/`: listed) (Unsupported,
// input.unknown_file).
Result<FilePlan> PlanDirectory(const std::vector<ListedEntry>& listing);

// The plan for a file input named `name` whose siblings in its directory
// (itself included) are `siblings`, if the name makes it part of a
// multi-file model: `<p>.index` or a prefix `<p>` for which `<p>.index`
// exists (a checkpoint), `<base>.weights.json` (a sharded store). nullopt
// for any other single file. Errors: a sibling whose name makes it a file of
// the model but that is a link or not a regular file (InvalidArgument), too
// many siblings or files (LimitExceeded).
Result<std::optional<FilePlan>> PlanFile(std::string_view name,
                                         const std::vector<ListedEntry>& siblings);

// A name relative to the input: non-empty '/'-separated components, none
// "." or "..", no NUL.
bool IsPlainRelativeName(std::string_view name);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_FILES_MODEL_FILES_H_
