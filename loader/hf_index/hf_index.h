// A Hugging Face sharded-checkpoint index (`pytorch_model.bin.index.json`,
// `model.safetensors.index.json`), read strictly inside the worker. The
// parent converts a sharded checkpoint as one unit
// (safemodel/sharded_convert.h) and takes the weight map from this parser's
// output, never from the file itself.
//
// Accepted: at most kMaxHfIndexBytes of JSON (valid UTF-8, no key twice in
// any object, NaN/Infinity as Python's json writes them, nesting at most
// kMaxHfIndexDepth levels, read without recursion) that is exactly one object
// with
//   "weight_map": an object of at least one entry, each a tensor name (not
//                 empty) mapped to a shard's file name: a string that is a
//                 plain file name (IsPlainFileName: not empty, not "." or
//                 "..", no "/", "\", NUL or other control character, at most
//                 255 bytes), at most kMaxHfIndexShards distinct names;
//   "metadata":   optional, an object (transformers keeps "total_size"
//                 there); kept as data, whatever it holds.
// Any other top-level key is dropped with a finding (rule
// hf_index.key_dropped): transformers ignores it too. Anything else is
// refused as malformed, naming the rule. The worker does not know the
// index's own file name; the parent checks that no shard is the index.
//
// Output: no tensors, source_format "hf_index", metadata
// {"weight_map": {tensor: shard, ...}, "metadata": {...}} (the latter only
// when present), both in the file's order.
//
// Worst case: O(n) in the input (one JSON pass; shard names counted with a
// keyed hash set).
//
// Trust: the input is untrusted.
#ifndef SAFEMODEL_LOADER_HF_INDEX_HF_INDEX_H_
#define SAFEMODEL_LOADER_HF_INDEX_HF_INDEX_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// The largest real index (DeepSeek-V3, ~92,000 tensors) is ~9 MB. 16 MiB
// (~170,000 entries of real length) is also about what the worker's stream
// limits admit for the output (converter/protocol/stream_limits.h: a header
// of 8 MiB plus half the input; the weight map re-encoded is ~0.95x its
// JSON), so a larger index would fail there anyway, less plainly.
inline constexpr uint64_t kMaxHfIndexBytes = 16ull << 20;
// A real index nests 2 levels (the object, then weight_map or metadata);
// 8 leaves metadata room for a few nested objects.
inline constexpr uint32_t kMaxHfIndexDepth = 8;
// As many shards as a sharded .safemodel may have (safemodel/sharded.h
// kMaxShards); real checkpoints have at most a few hundred.
inline constexpr size_t kMaxHfIndexShards = 100'000;

// Whether `input` is JSON text whose first value is an object: optional
// JSON whitespace (space, tab, LF, CR), then '{', and no NUL byte in the
// first 8 (a safetensors file's length prefix, whose upper bytes are zero,
// can start with whitespace and '{'). None of those bytes is a pickle
// opcode, nor the first byte of another format's magic.
bool LooksLikeJsonObject(ByteView input);

std::unique_ptr<Parser> NewHfIndexParser();

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_HF_INDEX_HF_INDEX_H_
