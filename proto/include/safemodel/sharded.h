// File: safemodel/sharded.h
//
// A model stored as several .safemodel shards plus an index, as a sharded
// Hugging Face checkpoint converts (safemodel/sharded_convert.h), opened as
// one model.
//
// The index, `NAME.safemodel.index.json` beside its shards (README
// "Sharded checkpoints"), is one JSON object:
//   {"format": "safemodel.sharded", "version": 1,
//    "source": {"index": "pytorch_model.bin.index.json", "sha256": HEX},
//    "shards": [{"file": "pytorch_model-00001-of-00002.bin.safemodel",
//                "bytes": N, "sha256": HEX, "tensors": K}, ...],
//    "weight_map": {"tensor name": "shard file", ...}}
// `sha256` of a shard is that of the whole .safemodel file.
//
// Open refuses (kMalformed, naming what) an index over kMaxShardedIndexBytes,
// one that is not that object, has a key twice, names a shard that is not a
// plain file name in the index's own directory ("/", "\", "..", empty), names
// a shard twice, maps a tensor to a shard not listed, leaves a tensor of a
// shard out of the weight map or maps it to another shard, or has a shard in
// two places; and a shard whose size or SHA-256 is not the index's, or that
// does not open as a .safemodel (Model::Open). Open reads every shard once
// (its SHA-256); Verify() also checks every tensor digest.
#ifndef SAFEMODEL_SHARDED_H_
#define SAFEMODEL_SHARDED_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "safemodel/export.h"
#include "safemodel/reader.h"
#include "safemodel/status.h"

namespace safemodel {

// An index of 100,000 tensors is ~10 MB.
inline constexpr uint64_t kMaxShardedIndexBytes = 64ull << 20;
inline constexpr size_t kMaxShards = 100'000;

class SAFEMODEL_EXPORT ShardedModel {
 public:
  static Result<ShardedModel> Open(const std::string& index_path);

  ShardedModel(ShardedModel&&) noexcept;
  ShardedModel& operator=(ShardedModel&&) noexcept;
  ~ShardedModel();

  size_t shard_count() const;
  const Model& shard(size_t i) const;
  const std::string& shard_file(size_t i) const;
  // Every tensor name of the model, sorted.
  std::vector<std::string> tensor_names() const;
  // The tensor and the shard holding it; nullptr if there is none.
  const TensorInfo* Find(std::string_view name, const Model** shard = nullptr) const;
  // Its bytes (zero-copy, valid while this object lives); empty if absent.
  std::span<const std::byte> Data(std::string_view name) const;
  // Every tensor digest of every shard.
  Status Verify() const;

 private:
  struct Impl;
  explicit ShardedModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace safemodel

#endif  // SAFEMODEL_SHARDED_H_
