// File: safemodel/export_safetensors.h
//
// `safe-convert export`: a .safemodel file written as a .safetensors file.
// The bytes come from safemodel/safetensors.h (WriteSafetensors: the model
// is verified first, a file that fails is not exported); this adds the
// output file rules of a conversion (README "Output files"): the output
// appears atomically or not at all, an existing OUT is replaced only with
// `force` and only if it is a regular file, OUT may not be the input, and a
// new file's mode follows the umask.
//
// A sharded model (safemodel/sharded.h) exports as safetensors shards plus
// a Hugging Face index: ExportShardedSafetensors below.
#ifndef SAFEMODEL_EXPORT_SAFETENSORS_H_
#define SAFEMODEL_EXPORT_SAFETENSORS_H_

#include <cstdint>
#include <string>

#include "safemodel/status.h"

namespace safemodel {

struct ExportOptions {
  bool force = false;  // replace an existing regular file at OUT
  bool sync = true;    // fsync the output (and its directory) before naming it
};

struct ExportSummary {
  uint64_t tensors = 0;       // tensors written
  uint64_t aliases = 0;       // aliases recorded in __metadata__ only
  uint64_t output_bytes = 0;  // size of the file written (all files, sharded)
  uint64_t shards = 0;        // safetensors shards written (0: one file)
};

// Exports `model_path` to `out_path`. Errors: the reader's for an input that
// does not open or verify (kMalformed, kIoError, kInvalidArgument for a
// missing file), kUnsupported for a dtype safetensors cannot express,
// kInvalidArgument for the OUT rules, kIoError for write failures.
Result<ExportSummary> ExportSafetensorsFile(const std::string& model_path,
                                            const std::string& out_path,
                                            const ExportOptions& options = {});

// The name a shard's export gets: the shard's file name without
// ".safemodel", then without a final ".safetensors" or ".bin", then plus
// ".safetensors" ("model-00001-of-00002.safetensors.safemodel" and
// "model-00001-of-00002.bin.safemodel" both give
// "model-00001-of-00002.safetensors", "a.pt.safemodel" gives
// "a.pt.safetensors").
std::string SafetensorsShardName(const std::string& shard_file);

// Exports the sharded model whose index is `index_path`
// (NAME.safemodel.index.json) to `out_index_path`, which must end in
// ".safetensors.index.json" (kInvalidArgument otherwise). ShardedModel::Open
// checks the index against its shards; every shard is planned (names, dtypes)
// before anything is written, then each is verified (every digest) and
// written to OUT's directory under SafetensorsShardName, with the rules of
// ExportSafetensorsFile for each file. Two shards that would get the same
// name are refused. OUT, the Hugging Face index
//   {"metadata": {"total_size": BYTES}, "weight_map": {"tensor": "shard"}}
// (keys sorted; total_size is the sum of the tensors' data bytes; the
// weight map names every tensor written, aliases stay in their shard's
// __metadata__), is written last, so an index never names a missing shard.
// On any failure the shards this call wrote are removed again (with `force`
// a file they replaced is then gone too) and no index is written.
Result<ExportSummary> ExportShardedSafetensors(const std::string& index_path,
                                               const std::string& out_index_path,
                                               const ExportOptions& options = {});

}  // namespace safemodel

#endif  // SAFEMODEL_EXPORT_SAFETENSORS_H_
