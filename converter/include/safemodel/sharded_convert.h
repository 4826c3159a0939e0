// File: safemodel/sharded_convert.h
//
// A sharded Hugging Face checkpoint converted as one unit: its index
// (`*.bin.index.json`, `*.safetensors.index.json`) and the shards it names,
// all in one directory, become a .safemodel per shard
// (`SHARD.safemodel`, beside the output index) and an index that the reader
// opens as one model (safemodel/sharded.h, which documents its format).
//
// The HF index is untrusted, and this process never parses it: it is
// converted through the given ConvertFunction like any input (the sandboxed
// worker reads it strictly, loader/hf_index/hf_index.h: at most
// kMaxHfIndexBytes of JSON, one object whose "weight_map" maps tensor names
// to plain shard file names, no key twice anywhere, an optional "metadata"
// object, other keys dropped with a finding) into an anonymous memory file;
// this process opens the result with the reader and takes the weight map
// from its metadata, checking again what it uses: every shard a plain file
// name other than the index's, at most kMaxShards shards and
// kMaxValueNodes tensors, each tensor mapped once. Each shard is then
// converted on its own, through the same function; the converted shards
// must hold exactly the tensors the weight map gives them. Whatever fails,
// the unit fails with it, and no output index is written (shards converted
// before the failure are removed).
#ifndef SAFEMODEL_SHARDED_CONVERT_H_
#define SAFEMODEL_SHARDED_CONVERT_H_

#include <map>
#include <string>
#include <vector>

#include "safemodel/batch.h"
#include "safemodel/convert.h"
#include "safemodel/value.h"

namespace safemodel {

// The worker's cap on an HF index (loader/hf_index/hf_index.h, which the
// parent does not include; tests/converter/sharded_convert_test checks that
// the two agree): ~170,000 tensors, twice the largest real checkpoint's.
inline constexpr uint64_t kMaxHfIndexBytes = 16ull << 20;

// An HF index as the worker read it, checked again by this process.
struct ShardedCheckpointIndex {
  std::map<std::string, std::string> weight_map;  // tensor name -> shard file name
  std::vector<std::string> shards;                // the shard file names, sorted, each once
  Value metadata;                                 // the index's "metadata" object, or null
};

// Whether `path`'s file name ends in ".bin.index.json" or
// ".safetensors.index.json".
bool IsShardedCheckpointIndex(const std::string& path);

// The HF index at `path` (a regular file, not a link), converted through
// `convert` (ConvertFile when empty) with `options` (its output goes to a
// memory file: output_fd and progress are replaced); the errors of the
// strict reading above, naming the index. `report`, when given, receives
// the index conversion's report (its findings, the worker's costs).
Result<ShardedCheckpointIndex> ReadShardedCheckpointIndex(const std::string& path, const ConvertOptions& options,
                                                          const ConvertFunction& convert,
                                                          ConvertReport* report = nullptr);

// An index read as ReadShardedCheckpointIndex reads it: the result, and the
// report of the index's conversion (its findings, the worker's costs, the
// parent's SHA-256 of the index as read).
struct ShardedCheckpointIndexReading {
  Result<ShardedCheckpointIndex> index = Status::Internal("the checkpoint index was not read");
  ConvertReport report;
};

// "pytorch_model.bin.index.json" -> "pytorch_model.bin.safemodel.index.json"
// (in the same directory): the output index a batch writes for it.
std::string ShardedOutputIndexName(const std::string& hf_index_path);

// Converts the unit. The report covers the whole unit: input_path the HF
// index, input_bytes and input_sha256 of the index and every shard
// (ShardedCheckpointSha256), source_format "hf_sharded/" + the shards'
// format, findings of the index's conversion (location prefixed with
// "index NAME") and of every shard ("shard NAME"), the index's or the
// first failing shard's status (named), output_bytes and
// tensor_count summed, the worker's CPU time summed and peak memory the
// largest.
// `read_index`, when given, supplies the index's reading instead of a new
// conversion of it (a batch's listing read it already): the index file
// must still have the SHA-256 that reading recorded (whether the reading
// succeeded or not), else the unit fails (kIoError: it changed meanwhile).
ConvertReport ConvertShardedCheckpoint(const std::string& hf_index_path, const std::string& out_index_path,
                                       const ConvertOptions& options, const ConvertFunction& convert,
                                       const CheckpointIndexReader& read_index = nullptr);

// The unit's SHA-256, as `sha256sum INDEX SHARD... | sha256sum` would
// print it with the names in bytewise order ("<hex>  <name>\n" per file);
// `shards` as ReadShardedCheckpointIndex gave them (none: the index alone).
Result<std::string> ShardedCheckpointSha256(const std::string& hf_index_path, std::vector<std::string> shards);

}  // namespace safemodel

#endif  // SAFEMODEL_SHARDED_CONVERT_H_
