// TensorFlow tensor bundles: a checkpoint's or SavedModel's variables
// (`<prefix>.index` + `<prefix>.data-NNNNN-of-MMMMM`), read with our own
// bounds-checked code, never TensorFlow's.
//
// The index (table.h) maps the key "" to a BundleHeaderProto and every other
// key to a BundleEntryProto (tensorflow/core/protobuf/tensor_bundle.proto):
//   header  1 num_shards int32, 2 endianness (0 little, 1 big),
//           3 version VersionDef {1 producer, 2 min_consumer, 3 bad_consumers}
//   entry   1 dtype, 2 shape TensorShapeProto {2 dim {1 size, 2 name},
//           3 unknown_rank}, 3 shard_id, 4 offset, 5 size, 6 crc32c
//           (fixed32, masked), 7 slices (partitioned variables)
// decoded strictly (proto_wire.h). A numeric tensor is the bytes
// [offset, offset + size) of data file `shard_id`, C order, in the header's
// byte order; its masked CRC32C covers exactly those bytes and is checked
// when the tensor is streamed. The one string tensor safemodel reads is the
// checkpoint's object graph (`_CHECKPOINTABLE_OBJECT_GRAPH`, a
// TrackableObjectGraph naming which keys belong to which object); it is
// checked (length CRC and entry CRC) and decoded, not output.
//
// Refused as malformed or unsupported, each message naming its rule:
//   tf.table          the index table (table.h)
//   tf.bundle_header  no header, or one TensorFlow would not read
//   tf.bundle_entry   unknown fields, negative or unknown dimensions, a size
//                     that is not elements x element size, rank > 32
//   tf.bundle_dtype   a dtype safemodel does not convert (variant, resource,
//                     quantized, strings other than the object graph, ...)
//   tf.bundle_slices  partitioned variables (unsupported)
//   tf.bundle_shard   a shard id outside [0, num_shards), a data file missing
//                     or of another shard count
//   tf.bundle_range   a tensor outside its data file, non-zero bytes no
//                     tensor covers (hidden data)
//   tf.bundle_overlap two tensors sharing bytes
//   tf.bundle_crc     a CRC32C mismatch (found when the tensor is read)
//
// Worst case: O(n log n) for n index entries (sorted by position to find
// overlaps and gaps) plus O(z) for the z uncovered bytes of the data files,
// which must be zero; tensor bytes are read once when streamed (CRC and
// copy), never at parse time.
//
// Trust: every file is untrusted.
#ifndef SAFEMODEL_LOADER_TF_BUNDLE_BUNDLE_H_
#define SAFEMODEL_LOADER_TF_BUNDLE_BUNDLE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loader/model.h"
#include "proto/base/byte_reader.h"
#include "safemodel/dtype.h"
#include "safemodel/status.h"

namespace safemodel::loader::tf {

// The object-graph key of TF2 object-based checkpoints.
inline constexpr std::string_view kObjectGraphKey = "_CHECKPOINTABLE_OBJECT_GRAPH";
// Data file names carry the shard index and count in five digits.
inline constexpr uint64_t kMaxShards = 99'999;
// numpy's and safemodel's maximum rank.
inline constexpr uint64_t kMaxBundleRank = 32;
// The serialized object graph: the real ones are a few KiB; large models
// have ~100 bytes per variable.
inline constexpr uint64_t kMaxObjectGraphBytes = 256ull << 20;

// A data file of the bundle, by its name `<prefix>.data-NNNNN-of-MMMMM`.
struct DataFile {
  std::string name;
  ByteView bytes;
};

struct BundleTensor {
  std::string key;
  DType dtype = DType::kInvalid;
  std::vector<uint64_t> shape;
  uint32_t shard = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint32_t crc = 0;  // unmasked
};

struct Bundle {
  std::vector<BundleTensor> tensors;  // numeric tensors, in key order
  bool big_endian = false;
  std::vector<ByteView> shards;       // by shard index
  std::optional<std::string> object_graph;  // serialized TrackableObjectGraph
};

// Reads the index `index` (named `index_name` in messages) and finds its
// data files among `data` (other files there are an error: the caller
// passes only names of this prefix). Checks everything but the tensor CRCs.
Result<Bundle> ReadBundle(ByteView index, std::string_view index_name,
                          const std::vector<DataFile>& data);

// A tensor of the bundle as a loader::Tensor named `name`; its source
// checks the CRC32C before handing out the bytes (a mismatch is a malformed
// error naming tf.bundle_crc).
Tensor MakeBundleTensor(const Bundle& bundle, const BundleTensor& t, std::string name);

// The parsed TrackableObjectGraph (tensorflow/core/protobuf/
// trackable_object_graph.proto): node 0 is the root.
struct ObjectNode {
  std::vector<std::pair<uint32_t, std::string>> children;  // (node id, local name)
  std::vector<std::string> checkpoint_keys;  // attributes' checkpoint_key, in order
};
struct ObjectGraph {
  std::vector<ObjectNode> nodes;
};
Result<ObjectGraph> ParseObjectGraph(std::string_view bytes);

// Objects and references of one object graph: real graphs have ~10 objects
// per variable; these bound the parsed graph to a few hundred MiB.
inline constexpr uint64_t kMaxGraphObjects = 4'000'000;
inline constexpr uint64_t kMaxGraphReferences = 8'000'000;

// Collects checkpoint keys reachable from objects, each object visited once
// over all calls (children in order, depth first), so that walking from
// every layer of a model costs O(objects + references) in total. A key is
// returned by the first call that reaches it. Iterative.
class KeyWalker {
 public:
  explicit KeyWalker(const ObjectGraph& graph) : graph_(graph), seen_(graph.nodes.size(), false) {}
  std::vector<std::string> From(uint32_t node);

 private:
  const ObjectGraph& graph_;
  std::vector<bool> seen_;
};

}  // namespace safemodel::loader::tf

#endif  // SAFEMODEL_LOADER_TF_BUNDLE_BUNDLE_H_
