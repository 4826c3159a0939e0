// File: safemodel/sharded_convert.h
//
// A sharded Hugging Face checkpoint converted as one unit: its index
// (`*.bin.index.json`, `*.safetensors.index.json`) and the shards it names,
// all in one directory, become a .safemodel per shard
// (`SHARD.safemodel`, beside the output index) and an index that the reader
// opens as one model (safemodel/sharded.h, which documents its format).
//
// The HF index is untrusted and is read by this process, strictly: at most
// kMaxHfIndexBytes, one JSON object whose "weight_map" maps tensor names to
// shard file names (other keys, such as "metadata", are ignored), no key
// twice anywhere, every shard a plain file name (no "/", "\", "..", empty),
// at most kMaxShards shards. Each shard is converted on its own, through
// the given ConvertFunction (a sandboxed worker each, as any input); the
// converted shards must then hold exactly the tensors the weight map gives
// them. Whatever fails, the unit fails with it, and no output index is
// written (shards converted before the failure are removed).
#ifndef SAFEMODEL_SHARDED_CONVERT_H_
#define SAFEMODEL_SHARDED_CONVERT_H_

#include <string>
#include <vector>

#include "safemodel/batch.h"
#include "safemodel/convert.h"

namespace safemodel {

inline constexpr uint64_t kMaxHfIndexBytes = 64ull << 20;  // ~600,000 tensors

// Whether `path`'s file name ends in ".bin.index.json" or
// ".safetensors.index.json".
bool IsShardedCheckpointIndex(const std::string& path);

// The shard file names the HF index at `path` names, sorted, each once;
// the errors of the strict reading above.
Result<std::vector<std::string>> ReadShardedCheckpointIndex(const std::string& path);

// "pytorch_model.bin.index.json" -> "pytorch_model.bin.safemodel.index.json"
// (in the same directory): the output index a batch writes for it.
std::string ShardedOutputIndexName(const std::string& hf_index_path);

// Converts the unit. The report covers the whole unit: input_path the HF
// index, input_bytes and input_sha256 of the index and every shard
// (ShardedCheckpointSha256), source_format "hf_sharded/" + the shards'
// format, findings of every shard (location prefixed with the shard's
// name), the first failing shard's status (named), output_bytes and
// tensor_count summed, the worker's CPU time summed and peak memory the
// largest.
ConvertReport ConvertShardedCheckpoint(const std::string& hf_index_path, const std::string& out_index_path,
                                       const ConvertOptions& options, const ConvertFunction& convert);

// The unit's SHA-256, as `sha256sum INDEX SHARD... | sha256sum` would
// print it with the names in bytewise order ("<hex>  <name>\n" per file).
Result<std::string> ShardedCheckpointSha256(const std::string& hf_index_path);

}  // namespace safemodel

#endif  // SAFEMODEL_SHARDED_CONVERT_H_
