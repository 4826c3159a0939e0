// Keras 3 weight stores as one view: `model.weights.h5` (and standalone
// `*.weights.h5`), sharded `*.weights.json` with its `*_NNNNN.weights.h5`
// shards, and `model.weights.npz`.
//
// Every store is a set of `vars` groups, one per saved object, at the
// object's path, holding the object's variables under the keys "0", "1",
// ... (tests/fixtures/keras3_tf/LAYOUTS.md section 4). A group's logical path splits its stored path
// on '/' and on '\' (tf.keras 2.13-2.15 on Windows wrote one link named
// `layers\dense`, which its Windows loader finds again): two groups with the
// same logical path are two different weights for one object, malformed
// (keras.weights).
//
// HDF5 stores go through the hardened HDF5 path of ../keras_h5 (h5_file.h),
// one in-memory image per member or shard, with its refusals (hdf5.*), by
// h5_store.h, the only part of this folder that needs libhdf5 (reached
// through ../hdf5_seam.h, see H5StoreOpener).
// Sharded stores: the JSON's weight_map names each group's shards; the names
// must be plain file (or archive member) names among the given shards
// (keras.shard_name), every group holding variables must be listed for the
// shard it is in, and a variable may not be in two shards. npz stores: each
// member `<path>.npy` is a 0-d object array, i.e. a pickle; it is read by
// the pickle machine and must use numpy's data constructors only
// (pickle.global otherwise), holding a dict of numeric arrays.
//
// Tensor names are the stored paths: `layers/dense/vars/0` (backslashes
// kept: `layers\dense/vars/0`); npz: `<member path>/vars/<key>`. The `vars`
// groups' `name` attribute (Keras >= 3.6) is not read: Keras never reads it
// on load, and variable-length strings are where libhdf5 1.10's global heap
// code is weakest (loader/README.md, "Known limit").
//
// Worst case: O(o) for o HDF5 objects (plus libhdf5's own work), O(n) for an
// npz of n bytes (the pickle machine), O(g log g) for g groups.
//
// Trust: every store, shard and JSON map is untrusted; names are checked
// before use and every variable's size against its dataset or array.
#ifndef SAFEMODEL_LOADER_KERAS3_WEIGHT_STORE_H_
#define SAFEMODEL_LOADER_KERAS3_WEIGHT_STORE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loader/model.h"
#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::keras3 {

// A weight_map or its shard list is JSON written by Keras (a few KiB).
inline constexpr uint64_t kMaxShardMapBytes = 64ull << 20;
// Shards of one store: Keras's default shard size is 5 GB; 10,000 shards
// hold 50 TB.
inline constexpr uint64_t kMaxShards = 10'000;

struct StoreVar {
  std::string key;          // the link name inside `vars`
  std::string tensor_name;  // "<stored path>/vars/<key>"
  bool is_dataset = true;   // false: a group or other object inside `vars`
  // Builds the tensor (named as given); called once.
  std::function<Result<Tensor>(std::string name)> make;
};

struct StoreGroup {
  std::string path;                 // logical path, "" for the model itself
  std::string stored;               // as stored, for messages and names
  std::vector<StoreVar> vars;       // in stored order
};

struct WeightStore {
  std::string format;  // "h5", "sharded", "npz"
  std::vector<StoreGroup> groups;  // sorted by logical path
  // Datasets (or npz values) outside any vars group, by tensor-name form.
  std::vector<std::string> stray;
  std::vector<std::shared_ptr<void>> keepalive;
  uint64_t big_endian = 0, widened_bf16 = 0;  // dataset counts, for notes
  std::vector<std::string> used_files;  // sharded: the shards the map names
  const StoreGroup* Find(std::string_view path) const;
};

// Opens a single HDF5 store in `image` (which must outlive the store); HDF5
// refusals go to ctx (the caller checks ctx.refused()). Reading HDF5 needs
// libhdf5, which this folder's library does not link: the caller passes
// the opener of the program's HDF5 seam (../hdf5_seam.h), which is
// h5_store.h's OpenH5Store where libhdf5 is linked, and otherwise one that
// records the need and fails (the lean worker then hands the input off).
using H5StoreOpener = Result<WeightStore> (*)(ByteView image, std::string_view where,
                                              ParseContext& ctx);

// A sharded store: the JSON and the shard files (or archive members) it may
// name, by plain name.
struct NamedBytes {
  std::string name;
  ByteView bytes;
};
Result<WeightStore> OpenShardedStore(ByteView json, std::string_view where,
                                     const std::vector<NamedBytes>& shards, H5StoreOpener open_h5,
                                     ParseContext& ctx);

// An npz store; `npz` must outlive the store.
Result<WeightStore> OpenNpzStore(ByteView npz, std::string_view where, ParseContext& ctx);

// Splits a stored path on '/' and '\' and joins the parts with '/'.
std::string LogicalPath(std::string_view stored);

// Sorts a store's groups by logical path and refuses two groups with one
// path (keras.weights); the last step of every Open*Store.
Status FinishStore(WeightStore* store, std::string_view where);

}  // namespace safemodel::loader::keras3

#endif  // SAFEMODEL_LOADER_KERAS3_WEIGHT_STORE_H_
