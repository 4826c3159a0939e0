// The object graph the pickle machine builds in place of Python objects:
// inline scalars, heap objects shared by reference (as the memo and
// containers share them in Python), and records for the data our handlers
// build (tensors, storages, numpy arrays and dtypes, instances). Nothing in
// it is callable; names are strings with a table entry.
//
// Worst case: every accessor is O(1); the graph holds O(n) objects for a
// stream of n bytes.
//
// Trust: everything here was derived from an untrusted stream; indices
// (Ref::id, Object::aux) are valid by construction, sizes are bounded by the
// machine's limits (pickle_machine.h).
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_GRAPH_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_GRAPH_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "safemodel/dtype.h"
#include "safemodel/status.h"

#include "loader/pickle/pickle_globals.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::pickle {

using ObjId = uint32_t;
inline constexpr ObjId kNoObj = UINT32_MAX;

enum class Kind : uint8_t {
  // Inline values.
  kNone,
  kBool,
  kInt,
  kFloat,
  // Heap objects: Ref::id indexes Graph::objects.
  kBigInt,     // wider than int64: little-endian two's complement in `data`
  kStr,        // valid UTF-8 in `data`
  kBytes,      // `data`
  kByteArray,  // `data`
  kTuple,
  kList,
  kDict,  // items = k0, v0, k1, v1, ...; `ordered` for OrderedDict
  kSet,
  kFrozenSet,
  kGlobal,  // a name; `global` says what it is
  kRecord,  // data built by a handler; `record` says what it is
  kOpaque,  // anything derived from a refused name; carries nothing
};

// A value on the stack, in the memo or in a container. Small values are held
// inline; everything else refers to a heap object, which gives Python's
// reference semantics (the memo and containers share objects).
struct Ref {
  Kind kind = Kind::kNone;
  ObjId id = kNoObj;
  union {
    int64_t i = 0;  // kBool (0 or 1), kInt
    double f;       // kFloat
  };
  static Ref None() { return {}; }
  static Ref Bool(bool b) {
    Ref r;
    r.kind = Kind::kBool;
    r.i = b ? 1 : 0;
    return r;
  }
  static Ref Int(int64_t v) {
    Ref r;
    r.kind = Kind::kInt;
    r.i = v;
    return r;
  }
  static Ref Float(double v) {
    Ref r;
    r.kind = Kind::kFloat;
    r.f = v;
    return r;
  }
  static Ref Heap(Kind kind, ObjId id) {
    Ref r;
    r.kind = kind;
    r.id = id;
    return r;
  }
  bool is_heap() const { return kind >= Kind::kBigInt; }
};

// Records: the data our handlers build in place of Python objects.
enum class RecordKind : uint8_t {
  kTensor,       // a torch tensor (dense, parameter, quantized or sparse)
  kStorage,      // a torch storage (a persistent id)
  kNdArray,      // a numpy array (numeric or object)
  kNpDtype,      // a numpy dtype
  kNpScalar,     // a numpy scalar
  kInstance,     // an instance of a class: Namespace, nn module, user class
  kComplex,      // builtins.complex
  kDevice,       // torch.device
  kLayout,       // a torch layout (sparse_coo, sparse_csr, ...)
  kJoblibArray,  // a NumpyArrayWrapper waiting for its BUILD
};

// What only quantized and sparse tensors carry (kept apart so that the
// common dense tensor record stays small).
struct TensorExtra {
  // Quantized: the scheme (e.g. "per_tensor_affine"), the element type name
  // ("quint8"), scale/zero point, or per-channel tensors and axis.
  std::string qscheme;
  std::string qdtype;
  double scale = 0;
  int64_t zero_point = 0;
  Ref scales, zero_points;
  int64_t axis = 0;
  // Sparse: the layout name and the component tensors in torch's order
  // (coo: indices, values; compressed: compressed, plain indices, values).
  std::string sparse_layout;
  std::vector<std::pair<std::string, Ref>> components;
};

// A torch tensor: a strided view of a storage, in elements.
struct TensorInfo {
  enum class Layout : uint8_t { kStrided, kQuantized, kSparse };
  Layout layout = Layout::kStrided;
  ObjId storage = kNoObj;  // kStorage record (strided, quantized)
  DType dtype = DType::kInvalid;
  uint64_t offset = 0;  // storage offset in elements
  std::vector<uint64_t> shape;
  std::vector<int64_t> strides;
  bool requires_grad = false;
  bool parameter = false;
  std::unique_ptr<TensorExtra> extra;  // set for kQuantized and kSparse
};

// A torch storage: `numel` elements of `dtype` (or bytes when untyped) found
// under `key`. The container resolves `bytes` after the pickle is read.
struct StorageInfo {
  std::string key;
  std::string location;
  DType dtype = DType::kInvalid;  // kInvalid: untyped (bytes)
  bool quantized = false;
  // e.g. "torch.FloatStorage", for messages: one of Graph::storage_types
  // (a checkpoint names one or two types for 100,000 storages).
  std::string_view type_name;
  uint64_t numel = 0;     // elements of dtype, or bytes when untyped
  uint64_t offset = 0;    // the persistent-id offset, for messages
};

// A numpy array or scalar. Numeric data is `data` (a view of the input or of
// bytes the machine decoded); object arrays keep their elements in `items`.
struct ArrayInfo {
  ObjId dtype = kNoObj;  // kNpDtype record
  std::vector<uint64_t> shape;
  bool fortran = false;
  bool built = false;  // BUILD has supplied the data
  ByteView data;
  Ref items;  // object arrays: a kList
};

// A numpy dtype: kind and item size from the descr ("f4", "O8"), byte order
// from BUILD.
struct NpDtypeInfo {
  std::string descr;
  DType dtype = DType::kInvalid;  // kInvalid for object and unsupported kinds
  bool object = false;
  char byteorder = '\0';  // '<', '>' or '|' once BUILD has set it
  uint32_t itemsize = 0;
};

// An instance of a class reached through NEWOBJ (or copyreg._reconstructor):
// the class name and the state its BUILD supplied.
struct InstanceInfo {
  ObjId cls = kNoObj;  // kGlobal
  Ref state;           // a kDict, or None before BUILD
  Ref slots;           // slot state of a (dict, slots) BUILD, or None
  bool built = false;
};

// One heap object. Kept small (72 bytes): a checkpoint of n tensors holds
// about 10n of them. What few objects carry (the name of a kGlobal or a
// record's text, a dict's BUILD attributes) lives in Graph side tables.
struct Object {
  Kind kind = Kind::kNone;
  bool ordered = false;   // kDict: an OrderedDict or Counter
  bool consumed = false;  // kGlobal: a user class instantiated by NEWOBJ
  RecordKind record = RecordKind::kTensor;
  uint32_t aux = UINT32_MAX;    // index into the Graph side table of `record`
  uint32_t named = UINT32_MAX;  // kGlobal, text records: index into Graph::named
  uint32_t keys = UINT32_MAX;   // kDict, kSet once large: index into Graph::key_index
  ByteView data;                // kStr, kBytes, kByteArray, kBigInt
  std::vector<Ref> items;
  uint64_t offset = 0;  // byte offset of the opcode that made it
  uint64_t hash = 0;    // cached hash of a kStr/kBytes/kBigInt key
};
// A file of n tensors holds ~10n objects: keep them small (LP64).
static_assert(sizeof(Object) <= 72, "Object grew: memory per tensor grows with it");

// The objects of a graph, by id, in chunks of kChunk that never move: a
// vector grown by doubling would move every object (a million for 100,000
// tensors, each with its item vector) some twenty times, and hold both
// copies at once while it does.
class ObjectStore {
 public:
  static constexpr size_t kChunkBits = 15;  // 32,768 objects (2.3 MB) a chunk
  static constexpr size_t kChunk = size_t{1} << kChunkBits;

  Object& operator[](ObjId id) { return chunks_[id >> kChunkBits][id & (kChunk - 1)]; }
  const Object& operator[](ObjId id) const {
    return chunks_[id >> kChunkBits][id & (kChunk - 1)];
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Appends a default object; references to the others stay valid.
  Object& emplace_back() {
    if ((size_ & (kChunk - 1)) == 0) {
      chunks_.emplace_back();
      chunks_.back().reserve(kChunk);
    }
    ++size_;
    return chunks_.back().emplace_back();
  }
  Object& back() { return chunks_.back().back(); }
  // Frees every object.
  void clear() {
    std::vector<std::vector<Object>>().swap(chunks_);
    size_ = 0;
  }

 private:
  std::vector<std::vector<Object>> chunks_;
  size_t size_ = 0;
};

// The name of a kGlobal ("module.name") and its table entry, or the text
// payload of a record (a torch.device, a layout).
struct Named {
  std::string name;
  GlobalEntry global;  // kGlobal
};

// The objects of one or more pickle streams (a legacy torch file has five
// sharing one graph).
struct Graph {
  ObjectStore objects;
  std::deque<std::string> owned;  // bytes the machine decoded (never moves)
  std::deque<Named> named;  // Object::named indexes it (never moves: names are held by reference)
  std::unordered_map<ObjId, Ref> attrs;  // kDict: attributes set by BUILD (OrderedDict)
  // Key hash -> position, for dicts and sets of kIndexThreshold or more keys
  // (Object::keys indexes it; a deque: an index is never moved).
  std::deque<std::unordered_multimap<uint64_t, uint32_t>> key_index;
  std::vector<TensorInfo> tensors;
  std::vector<StorageInfo> storages;
  // The distinct storage type names StorageInfo::type_name refers to (a
  // deque: they never move). Only names of the global table's storage
  // types are interned, so there are a few dozen at most.
  std::deque<std::string> storage_types;
  std::vector<ArrayInfo> arrays;
  std::vector<NpDtypeInfo> dtypes;
  std::vector<InstanceInfo> instances;
  bool joblib = false;  // a NumpyArrayWrapper's inline data was read

  const Object& at(Ref r) const { return objects[r.id]; }
  Object& at(Ref r) { return objects[r.id]; }
  // Text of a kStr / kBytes object.
  std::string_view text(Ref r) const { return AsChars(objects[r.id].data); }
  // The name (kGlobal) or text (record) of an object; empty when it has none.
  const std::string& name(ObjId id) const {
    static const std::string kEmpty;
    const uint32_t n = objects[id].named;
    return n == UINT32_MAX ? kEmpty : named[n].name;
  }
  const std::string& name(Ref r) const { return name(r.id); }
  // The table entry of a kGlobal (kUnknown for any other object).
  GlobalEntry global(ObjId id) const {
    const uint32_t n = objects[id].named;
    return n == UINT32_MAX ? GlobalEntry{} : named[n].global;
  }
  GlobalEntry global(Ref r) const { return global(r.id); }
  // Sets an object's name (and table entry); at most one entry per object.
  void SetName(ObjId id, std::string name, GlobalEntry global = {}) {
    uint32_t& n = objects[id].named;
    if (n == UINT32_MAX) {
      n = static_cast<uint32_t>(named.size());
      named.push_back({std::move(name), global});
    } else {
      named[n] = {std::move(name), global};
    }
  }
  // `name` as one of storage_types (added on first use).
  std::string_view InternStorageType(std::string_view name) {
    for (const std::string& t : storage_types) {
      if (t == name) return t;
    }
    return storage_types.emplace_back(name);
  }
  // A dict's BUILD attributes, or None.
  Ref attrs_of(ObjId id) const {
    auto it = attrs.find(id);
    return it == attrs.end() ? Ref::None() : it->second;
  }
};

// Text for a value's kind in messages ("a tuple", "an int", ...).
std::string KindName(const Graph& graph, Ref r);

// Reads scalar arguments: an int (kInt or kBool), a non-negative int, a
// float, a str.
Result<int64_t> AsInt(const Graph& graph, Ref r, std::string_view what);
Result<std::string_view> AsStr(const Graph& graph, Ref r, std::string_view what);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_GRAPH_H_
