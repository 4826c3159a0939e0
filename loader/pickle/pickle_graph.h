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

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "safemodel/dtype.h"
#include "safemodel/status.h"

#include "loader/inline_dims.h"
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

// A tensor's sizes or strides: ranks 1-3 (biases, linear weights,
// embeddings) in the record itself (inline_dims.h).
template <typename T>
using Dims = InlineDims<T, 3>;

// No storage (an index into Graph::storages).
inline constexpr uint32_t kNoStorage = UINT32_MAX;

// A torch tensor: a strided view of a storage, in elements.
struct TensorInfo {
  enum class Layout : uint8_t { kStrided, kQuantized, kSparse };
  // The small fields together: spread between the 8-byte ones they padded
  // each record by 8 bytes (0.8 MB for a checkpoint of 100,000 tensors).
  Layout layout = Layout::kStrided;
  bool requires_grad = false;
  bool parameter = false;
  DType dtype = DType::kInvalid;
  // Strided and quantized: the storage's index in Graph::storages (not the
  // storage record's object, which is released with the tensor's
  // arguments: Graph::Releasable).
  uint32_t storage_index = kNoStorage;
  // The strides: 0 for the C-contiguous ones the shape implies (most
  // tensors: no 32 bytes of them per record), else their place in
  // Graph::tensor_strides + 1 (Graph::StridesOf).
  uint32_t strides = 0;
  uint64_t offset = 0;  // storage offset in elements
  Dims<uint64_t> shape;
  std::unique_ptr<TensorExtra> extra;  // set for kQuantized and kSparse
};
static_assert(sizeof(TensorInfo) <= 64, "TensorInfo grew: memory per tensor grows with it");

// A torch storage: `numel` elements of `dtype` (or bytes when untyped) found
// under key(). The container resolves the bytes after the pickle is read.
// 40 bytes (a checkpoint holds one per tensor): the key's text is a copy in
// Graph::storage_key_text (Graph::SetStorageKey), not a string of its own,
// and the type name is one of Graph::storage_types.
struct StorageInfo {
  const char* key_data = nullptr;  // key_size bytes, never moved
  // e.g. "torch.FloatStorage", for messages: one of Graph::storage_types
  // (a checkpoint names one or two types for 100,000 storages).
  const std::string* type = nullptr;
  uint64_t numel = 0;  // elements of dtype, or bytes when untyped
  // The kStorage record that stands for this storage now, or kNoObj: one
  // at a time, made by the persistent id that first names the key (or the
  // first one after the last was released) and handed to every later one
  // while it lives (Graph::Release clears it).
  ObjId object = kNoObj;
  DType dtype = DType::kInvalid;  // kInvalid: untyped (bytes)
  uint8_t key_size = 0;           // keys are at most kMaxStorageKeyBytes
  bool quantized = false;

  std::string_view key() const { return {key_data, key_size}; }
  std::string_view type_name() const { return type == nullptr ? std::string_view() : *type; }
};
static_assert(sizeof(StorageInfo) <= 40, "StorageInfo grew: memory per tensor grows with it");
// The longest storage key a StorageInfo holds: keys are decimal numbers
// (zip: 0, 1, ...; legacy: a pointer value), anything longer is not a key
// torch writes (the torch formats refuse it).
inline constexpr size_t kMaxStorageKeyBytes = 64;
static_assert(kMaxStorageKeyBytes <= UINT8_MAX, "StorageInfo::key_size is one byte");

// Short strings copied into chunks that never move and are freed together:
// a std::string each would cost 32 bytes (and a heap block past 15 bytes)
// for a 1-6 byte storage key, 100,000 times in a large checkpoint.
class TextArena {
 public:
  static constexpr size_t kChunkBytes = size_t{1} << 16;
  // A copy of `text`, valid as long as the arena (a text longer than
  // kChunkBytes gets a chunk of its own).
  const char* Copy(std::string_view text);

 private:
  std::vector<std::unique_ptr<char[]>> chunks_;
  size_t used_ = 0;  // bytes of the last chunk in use
  std::vector<std::unique_ptr<char[]>> own_;  // texts longer than a chunk
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

inline bool IsByteKind(Kind k) { return k >= Kind::kBigInt && k <= Kind::kByteArray; }

// One heap object. Kept small (32 bytes): a checkpoint of n tensors holds
// about 10n of them. What few objects carry (the name of a kGlobal or a
// record's text and a kGlobal's offset, a dict's BUILD attributes) lives in
// Graph side tables; a
// container's items live in the Graph's item storage (Graph::SetItems,
// Graph::GrowItems), not in a vector of their own.
struct Object {
  Kind kind = Kind::kNone;
  bool ordered : 1 = false;   // kDict: an OrderedDict or Counter
  bool consumed : 1 = false;  // kGlobal: a user class instantiated by NEWOBJ
  // A second reference to the object exists or may exist (fetched from the
  // memo, DUP'd, or memoized under a key Object::aux cannot record): it is
  // never released (Graph::Release).
  bool shared : 1 = false;
  RecordKind record = RecordKind::kTensor;

 private:
  // (Declared here so that the object packs into 32 bytes: see below.)
  uint8_t hi_ = 0;

 public:
  // Records: index into the Graph side table of `record`. kTuple, kDict and
  // kStr: the memo key the object was stored under, or UINT32_MAX (never
  // memoized), so that a release can void that key (a str's: keep its
  // storage's key text there instead, Interpreter::ReleasePersistentId).
  uint32_t aux = UINT32_MAX;
  // kGlobal and text records: index into Graph::named (Graph::name). kDict,
  // kSet and kFrozenSet once large: index into Graph::key_index. (One field:
  // no object has both; Graph::NamedIndex reads it for names only.)
  uint32_t side = UINT32_MAX;

 private:
  uint32_t lo_ = 0;

 public:
  uint64_t hash = 0;  // cached hash of a kStr/kBytes/kBigInt key

  // The largest byte object (kStr, kBytes, ...): its size is 40 bits of the
  // object (Builder::NewData refuses a larger one; no model file holds a
  // single pickled string of a terabyte).
  static constexpr uint64_t kMaxDataBytes = (uint64_t{1} << 40) - 1;

  // The bytes of a kStr, kBytes, kByteArray or kBigInt; empty for any other
  // kind.
  ByteView data() const {
    if (!IsByteKind(kind)) return {};
    return {static_cast<const uint8_t*>(ptr_), uint64_t{lo_} | (uint64_t{hi_} << 32)};
  }
  // Sets the bytes (at most kMaxDataBytes) of an object of a byte kind
  // (IsByteKind); ignored for any other kind, whose payload is items.
  void set_data(ByteView d) {
    if (!IsByteKind(kind)) return;
    ptr_ = d.data();
    lo_ = static_cast<uint32_t>(d.size());
    hi_ = static_cast<uint8_t>(static_cast<uint64_t>(d.size()) >> 32);
  }
  // The items of any other kind (a tuple's, a list's, a dict's k0, v0, ...,
  // a record's parts); empty for the byte kinds. Valid until the object's
  // items are set or grown again (Graph::SetItems, Graph::GrowItems); the
  // items of other objects may change meanwhile, and a released object's
  // span is another object's once it is reused (Graph::Release).
  std::span<const Ref> items() const {
    if (IsByteKind(kind)) return {};
    if (hi_ == kGrown) {
      const auto* v = static_cast<const std::vector<Ref>*>(ptr_);
      return {v->data(), v->size()};
    }
    return {static_cast<const Ref*>(ptr_), lo_};
  }

 private:
  friend struct Graph;
  // hi_ of an object whose items are a growable vector.
  static constexpr uint8_t kGrown = 1;

  // Byte kinds: ptr_ the bytes, hi_:lo_ their size. Other kinds: ptr_ the
  // first of lo_ items in Graph::item_arena (hi_ 0), or the
  // std::vector<Ref> in Graph::grown that holds them (hi_ kGrown). hi_ and
  // lo_ sit in the gaps the 1-byte and 4-byte fields above leave before the
  // 8-byte ones.
  const void* ptr_ = nullptr;
};
// A file of n tensors holds ~10n objects: keep them small (LP64).
static_assert(sizeof(Object) <= 32, "Object grew: memory per tensor grows with it");

// Whether this is a sanitizer build (SAFEMODEL_SANITIZER_BUILD, set by the
// sanitizer presets): the graph then takes its memory from the sanitizer's
// allocator, in blocks the sanitizer can bound (AllocateChunk, ItemArena).
#if defined(SAFEMODEL_SANITIZER_BUILD)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// Memory for the graph's chunks (objects, items). A store's first chunk
// comes from malloc's heap: a small graph (one of the many pickles of an
// .npz of object arrays) then costs no system call. Every later chunk is
// pages mapped for it alone, so that freeing a large graph before the
// conversion returns them at once: taken from malloc's heap, chunks freed in
// the middle of it stay resident as holes that the conversion's own large
// blocks (its tensor list) do not fit, and the conversion's peak sits on top
// of them. Sanitizer builds take every chunk from the sanitizer's allocator.
// `first` must be the same at FreeChunk as at AllocateChunk. Throws
// std::bad_alloc when the memory is not there (as operator new).
void* AllocateChunk(size_t bytes, bool first);
void FreeChunk(void* chunk, size_t bytes, bool first);

// The items of containers that are complete when they are built (tuples,
// the arguments of a call, a record's parts), copied into chunks of
// kChunkItems that never move and are freed all at once (a released
// object's span is only reused, Free): one
// allocation per megabyte instead of one per tuple, and no vector header per
// object. A span longer than kOwnBlockItems gets a block of its own, so a
// chunk wastes less than a quarter of its size at its end. In sanitizer
// builds every span gets a block of its own, so that reading past a
// container's items is caught there rather than landing in the next one's.
class ItemArena {
 public:
  static constexpr size_t kChunkItems = size_t{1} << 16;  // 65,536 items (1 MiB) a chunk
  static constexpr size_t kOwnBlockItems = kChunkItems / 4;
  static constexpr bool kBlockPerSpan = kSanitizerBuild;  // every span its own block (see above)

  ItemArena() = default;
  ItemArena(const ItemArena&) = delete;
  ItemArena& operator=(const ItemArena&) = delete;
  ~ItemArena() { clear(); }

  // A copy of `items` that stays where it is until clear() or Free();
  // null when empty. A span of up to kReuseItems items takes the place of
  // one freed before, if any.
  const Ref* Copy(std::span<const Ref> items);
  // Gives back the `count` items at `items` (from Copy) for reuse by a later
  // Copy of as many. Spans longer than kReuseItems stay where they are.
  void Free(const Ref* items, size_t count);
  static constexpr size_t kReuseItems = 8;  // a tensor's arguments: 6-8 items
  // Blocks allocated so far (chunks and own blocks).
  size_t blocks() const { return blocks_.size(); }
  // Frees every copy.
  void clear();

 private:
  struct Block {
    Ref* items;
    size_t count;
  };
  std::vector<Block> blocks_;
  Ref* next_ = nullptr;  // free space in the last chunk
  size_t left_ = 0;
  std::vector<Ref*> free_[kReuseItems + 1];  // freed spans, by item count
};

// The objects of a graph, by id, in chunks of kChunk that never move: a
// vector grown by doubling would move every object (a million for 100,000
// tensors) some twenty times, and hold both copies at once while it does.
class ObjectStore {
 public:
  static constexpr size_t kChunkBits = 15;  // 32,768 objects (1 MiB) a chunk
  static constexpr size_t kChunk = size_t{1} << kChunkBits;

  ObjectStore() = default;
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;
  ~ObjectStore() { clear(); }

  Object& operator[](ObjId id) { return chunks_[id >> kChunkBits][id & (kChunk - 1)]; }
  const Object& operator[](ObjId id) const {
    return chunks_[id >> kChunkBits][id & (kChunk - 1)];
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Appends a default object; references to the others stay valid.
  Object& emplace_back();
  Object& back() { return (*this)[static_cast<ObjId>(size_ - 1)]; }
  // Frees every object.
  void clear();

 private:
  std::vector<Object*> chunks_;
  size_t size_ = 0;
};

// A side table indexed by position, in chunks of 2^kChunkBits entries that
// never move: grown by doubling, a table of 100,000 tensor or storage records
// (~10 MB) would hold its old and new buffers at once and keep up to half
// its capacity unused. Chunks come from AllocateChunk: a chunk freed before
// the table (DropChunk) gives its pages back at once, where a heap block
// would stay resident as free space under the blocks allocated after it.
template <typename T, size_t kChunkBits>
class ChunkedTable {
 public:
  static constexpr size_t kChunk = size_t{1} << kChunkBits;

  ChunkedTable() = default;
  ChunkedTable(const ChunkedTable&) = delete;
  ChunkedTable& operator=(const ChunkedTable&) = delete;
  ~ChunkedTable() {
    for (size_t c = 0; c < chunks_.size(); ++c) DropChunk(c);
  }

  T& operator[](size_t i) { return chunks_[i >> kChunkBits][i & (kChunk - 1)]; }
  const T& operator[](size_t i) const { return chunks_[i >> kChunkBits][i & (kChunk - 1)]; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Appends `value`; references to the others stay valid. Throws
  // std::bad_alloc when the memory is not there (as a vector would).
  void push_back(T value) {
    if ((size_ & (kChunk - 1)) == 0) {
      // The list has room first, so that a failed allocation leaves the
      // table as it was (no null chunk).
      if (chunks_.size() == chunks_.capacity()) chunks_.reserve(2 * chunks_.size() + 1);
      chunks_.push_back(static_cast<T*>(AllocateChunk(kChunkBytes, chunks_.empty())));
    }
    new (&chunks_.back()[size_ & (kChunk - 1)]) T(std::move(value));
    ++size_;
  }
  // The chunk entry i is in, and the number of chunks.
  static size_t ChunkOf(size_t i) { return i >> kChunkBits; }
  size_t chunks() const { return chunks_.size(); }
  // Frees chunk c's entries for good (the conversion is done with them):
  // size() stays, and reading an entry of the chunk again is an error the
  // caller rules out (its pointer is null). Dropping it twice does nothing.
  void DropChunk(size_t c) {
    T* chunk = chunks_[c];
    if (chunk == nullptr) return;
    const size_t n = c + 1 < chunks_.size() ? kChunk : size_ - c * kChunk;
    std::destroy_n(chunk, n);
    FreeChunk(chunk, kChunkBytes, c == 0);
    chunks_[c] = nullptr;
  }

 private:
  static constexpr size_t kChunkBytes = kChunk * sizeof(T);
  std::vector<T*> chunks_;
  size_t size_ = 0;
};

// Key hash -> position of a key in a large dict or set (Object::side): open
// addressing over 8-byte slots (the position and the hash's low 32 bits,
// which also place the slot), at most half full. A node map took ~40 bytes
// a key (a node, its bucket), 4 MB for a state_dict of 100,000 tensors,
// live while the whole pickle is. The hashes are keyed (keyed_hash.h), so a
// file cannot choose keys that crowd one run of slots. Positions are below
// kMaxContainerItems (2^24).
class KeyIndex {
 public:
  // Adds position `pos` for a key of hash `hash` (equal hashes may repeat).
  void Add(uint64_t hash, uint32_t pos);
  // Calls `match(pos)` for each position added with a hash whose low 32
  // bits are `hash`'s, until it returns true (then returns that position).
  template <typename Match>
  std::optional<uint32_t> Find(uint64_t hash, Match match) const {
    if (slots_.empty()) return std::nullopt;
    const auto tag = static_cast<uint32_t>(hash);
    for (size_t i = tag & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.pos == kEmpty) return std::nullopt;
      if (s.tag == tag && match(s.pos)) return s.pos;
    }
  }
  size_t size() const { return count_; }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  struct Slot {
    uint32_t pos = kEmpty;
    uint32_t tag = 0;
  };
  void Place(Slot s);
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// The name of a kGlobal ("module.name") and its table entry, or the text
// payload of a record (a torch.device, a layout).
struct Named {
  std::string name;
  GlobalEntry global;   // kGlobal
  uint64_t offset = 0;  // kGlobal: byte offset of the opcode that made it
};

// The objects of one or more pickle streams (a legacy torch file has five
// sharing one graph).
struct Graph {
  ObjectStore objects;
  // Items of objects (Object::items): fixed spans in the arena, growable
  // vectors for containers that grow after they are built (lists, dicts,
  // sets; a deque: a vector is never moved, Object points to it).
  ItemArena item_arena;
  std::deque<std::vector<Ref>> grown;
  std::deque<std::string> owned;  // bytes the machine decoded (never moves)
  std::deque<Named> named;  // Object::side indexes it (never moves: names are held by reference)
  std::unordered_map<ObjId, Ref> attrs;  // kDict: attributes set by BUILD (OrderedDict)
  // Key hash -> position, for dicts and sets of kIndexThreshold or more keys
  // (Object::side indexes it; a deque: an index is never moved).
  std::deque<KeyIndex> key_index;
  ChunkedTable<TensorInfo, 12> tensors;    // 4,096 a chunk (360 KB)
  ChunkedTable<StorageInfo, 12> storages;  // 4,096 a chunk (160 KiB)
  // The distinct storage type names StorageInfo::type refers to (a
  // deque: they never move). Only names of the global table's storage
  // types are interned, so there are a few dozen at most.
  std::deque<std::string> storage_types;
  // The text of the storages' keys (StorageInfo::key_data).
  TextArena storage_key_text;
  // The strides of tensors whose strides are not the C-contiguous ones
  // (TensorInfo::strides).
  std::deque<Dims<int64_t>> tensor_strides;
  std::vector<ArrayInfo> arrays;
  std::vector<NpDtypeInfo> dtypes;
  std::vector<InstanceInfo> instances;
  bool joblib = false;  // a NumpyArrayWrapper's inline data was read

  // A tensor's strides as the file gave them; empty for C-contiguous ones
  // (the shape's rank of them, implied by it).
  std::vector<int64_t> StridesOf(const TensorInfo& t) const {
    return t.strides == 0 ? std::vector<int64_t>() : tensor_strides[t.strides - 1].ToVector();
  }

  const Object& at(Ref r) const {
    CheckKind(r);
    return objects[r.id];
  }
  Object& at(Ref r) {
    CheckKind(r);
    return objects[r.id];
  }
  // Text of a kStr / kBytes object.
  std::string_view text(Ref r) const {
    CheckKind(r);
    return AsChars(objects[r.id].data());
  }
  // The items of an object (see Object::items).
  std::span<const Ref> items(Ref r) const {
    CheckKind(r);
    return objects[r.id].items();
  }
  // Sanitizer builds: a reference whose object is of another kind can only
  // be a stale one, to an object released and its place taken again
  // (MachineOptions::release_consumed): stop there, as on a use after free.
  // An object's kind is set once, when it is made (Machine::New).
  void CheckKind(Ref r) const {
    if constexpr (kSanitizerBuild) {
      if (objects[r.id].kind != r.kind) __builtin_trap();
    }
  }
  // Sets the items of object `id` (not of a byte kind) to a copy of `items`:
  // in the arena, or in its vector if it has grown before (a set replaces
  // what any holder of the object sees, as before).
  void SetItems(ObjId id, std::span<const Ref> items);
  // The items of object `id` (not of a byte kind) as a vector to append to or
  // change in place: an object's items move into one the first time it is
  // asked for. Every holder of the object sees the changes (Python's
  // reference semantics); spans from Object::items() of this object are
  // invalidated by them.
  std::vector<Ref>& GrowItems(ObjId id);
  // Frees the objects and their items.
  void ClearObjects() {
    objects.clear();
    item_arena.clear();
    std::deque<std::vector<Ref>>().swap(grown);
    std::vector<ObjId>().swap(free_ids);
  }
  // Whether object `id` may be released: a tuple with items, an empty dict
  // with no BUILD attributes, or a storage record, that no one else refers
  // to (not Object::shared). A storage record's StorageInfo stays (its
  // tensors refer to it by index); a later persistent id of the same key
  // gets a new record for it. Strings, names and other records are never
  // released: torch refers back to a storage key or a tensor from later
  // entries.
  bool Releasable(ObjId id) const;
  // Releases object `id` (Releasable, or a str whose holders, a spent
  // persistent id and the memo, gave it up: Interpreter::ReleasePersistentId):
  // its items go back to the arena and its id to free_ids, which
  // Machine::New takes before growing the store (a storage record's
  // StorageInfo::object is cleared). The caller has voided the memo key
  // (Object::aux) that held it and owns the only reference, which it drops.
  void Release(ObjId id);
  // Ids of released objects, reused last in, first out.
  std::vector<ObjId> free_ids;
  // What GrowItems returns for an object of a byte kind (never kept).
  std::vector<Ref> discarded_items;
  // The index into `named` of object `id`, or UINT32_MAX: only names and
  // records have one (a dict's or set's Object::side is its key index).
  uint32_t NamedIndex(ObjId id) const {
    const Object& o = objects[id];
    return o.kind == Kind::kGlobal || o.kind == Kind::kRecord ? o.side : UINT32_MAX;
  }
  // The name (kGlobal) or text (record) of an object; empty when it has none.
  const std::string& name(ObjId id) const {
    static const std::string kEmpty;
    const uint32_t n = NamedIndex(id);
    return n == UINT32_MAX ? kEmpty : named[n].name;
  }
  const std::string& name(Ref r) const { return name(r.id); }
  // The table entry of a kGlobal (kUnknown for any other object).
  GlobalEntry global(ObjId id) const {
    const uint32_t n = NamedIndex(id);
    return n == UINT32_MAX ? GlobalEntry{} : named[n].global;
  }
  GlobalEntry global(Ref r) const { return global(r.id); }
  // Sets the name (and table entry) of a kGlobal or a record (the kinds
  // with a name; ignored for any other); at most one entry per object.
  void SetName(ObjId id, std::string name, GlobalEntry global = {}) {
    const Kind kind = objects[id].kind;
    if (kind != Kind::kGlobal && kind != Kind::kRecord) return;
    uint32_t& n = objects[id].side;
    if (n == UINT32_MAX) {
      n = static_cast<uint32_t>(named.size());
      named.push_back({std::move(name), global});
    } else {
      named[n].name = std::move(name);
      named[n].global = global;
    }
  }
  // Records where a kGlobal was made (its entry made now, named later).
  void SetOffset(ObjId id, uint64_t offset) {
    SetName(id, "");
    if (const uint32_t n = NamedIndex(id); n != UINT32_MAX) named[n].offset = offset;
  }
  // The byte offset of the opcode that made a kGlobal (0 for other objects:
  // only names are located in messages).
  uint64_t offset(ObjId id) const {
    const uint32_t n = NamedIndex(id);
    return n == UINT32_MAX ? 0 : named[n].offset;
  }
  // `name` as one of storage_types (added on first use).
  const std::string* InternStorageType(std::string_view name) {
    for (const std::string& t : storage_types) {
      if (t == name) return &t;
    }
    return &storage_types.emplace_back(name);
  }
  // Sets `s`'s key to a copy of `key`, which the caller has checked is at
  // most kMaxStorageKeyBytes long (ValidKey); a longer one is a bug, and
  // stops the process rather than becoming another, shorter key.
  void SetStorageKey(StorageInfo* s, std::string_view key) {
    if (key.size() > kMaxStorageKeyBytes) __builtin_trap();
    s->key_data = storage_key_text.Copy(key);
    s->key_size = static_cast<uint8_t>(key.size());
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
