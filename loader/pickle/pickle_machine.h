// The pickle machine: reads a pickle stream (protocols 0-5) and builds an
// inert object graph. It never resolves a name and never calls anything.
//
// Every opcode is parsed byte-exactly with an explicit, bounded stack, a
// bounded memo (keys 0, 1, 2, ... in a vector, any other key in a keyed hash
// map: PUT does not pop, MEMOIZE uses the memo's size),
// bounded marks, and every length checked against the remaining input before
// it is used. FRAME is honoured strictly: an opcode and its argument must lie
// inside the frame they start in, and a frame must be used up before the next
// one starts. Nothing recurses.
//
// Names (GLOBAL, STACK_GLOBAL, INST) become tags from the closed table in
// pickle_globals.h. REDUCE, NEWOBJ and BUILD on a tag run our own C++ handler,
// which builds data: tensor and storage references, ordered maps, numpy arrays
// and scalars, namespace and module records, sets, bytes. Everything else
// that a real unpickler would import or call - a name outside the table,
// extension codes, text persistent ids, out-of-band buffers, BUILD on a name,
// calling a non-name - is a finding: ParseContext::Refuse names the callable
// and the byte offset of its opcode, and the machine goes on reading so that
// every callable in the stream is listed. A finding taints the result; the
// caller refuses the file.
//
// Errors: a stream the machine cannot read (truncated, unknown opcode, bad
// memo key, stack underflow) stops it with Malformed. A stream it can read
// but whose data does not fit a handler (wrong argument types) is a "semantic"
// error: the machine records the first one, replaces the value by an opaque
// placeholder and reads on, so that later callables are still found; Run()
// then returns the error (after any findings).
//
// Worst case: O(n) for a stream of n bytes. Each opcode is O(1) amortized,
// dict/set/memo operations are O(1) expected (SipHash-2-4 under a per-process
// key: a file cannot choose colliding keys), hashes are cached per object,
// and everything that could grow faster than the input (copies of
// containers, key comparisons, hash operations) is charged to the file's
// work budget of kWorkBase + kWorkPerByte per byte read (loader/parser.h).
// Memory: O(n) objects and at most kMaxContainerItems per container.
//
// Trust: the stream is untrusted; all offsets are checked here.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_MACHINE_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_MACHINE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "safemodel/dtype.h"
#include "safemodel/status.h"

#include "loader/parser.h"
#include "loader/pickle/pickle_globals.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::pickle {

// Negates a little-endian two's complement integer in place (invert, add 1).
inline void NegateTwosComplement(std::vector<uint8_t>* bytes) {
  unsigned carry = 1;
  for (uint8_t& b : *bytes) {
    unsigned v = static_cast<uint8_t>(~b) + carry;
    b = static_cast<uint8_t>(v & 0xFF);
    carry = v >> 8;
  }
}

// Items on the stack at once. Real pickles stay below a few thousand (the
// pickler batches containers by 1000); 4M bounds the stack to 64 MiB.
inline constexpr uint64_t kMaxStackDepth = 1u << 22;
// Open MARKs at once: one per nesting level of a container being built;
// Python's own recursion limit keeps real pickles below ~1000.
inline constexpr uint64_t kMaxMarks = 4096;
// Memo entries: one per memoized object. 4M covers checkpoints with ~500k
// tensors; the hash map (not an array indexed by the key) keeps
// LONG_BINPUT 0xFFFFFFFF from costing memory.
inline constexpr uint64_t kMaxMemoEntries = 1u << 22;
// Heap objects (strings, containers, records) per file: 8 M objects is
// ~1 GiB of bookkeeping; real checkpoints need ~10 per tensor.
inline constexpr uint64_t kMaxObjects = 1u << 23;
// Integers wider than this many bytes are refused: the largest real one is
// the legacy torch magic number (10 bytes); sizes and offsets need 8.
inline constexpr uint64_t kMaxBigIntBytes = 64;
// Findings listed per file; a stream with more is refused all the same.
inline constexpr uint64_t kMaxFindingsListed = 256;
// Items in one list, tuple, dict or set: 16 M items is 256 MiB of
// references; the largest real containers (vocabularies, index lists) hold
// a few million.
inline constexpr uint64_t kMaxContainerItems = 1u << 24;
// joblib object arrays hold one nested pickle; nothing nests deeper.
inline constexpr uint32_t kMaxNestedPickles = 1;

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

// A torch storage: `numel` elements of `dtype` (or bytes when untyped) found
// under `key`. The container resolves `bytes` after the pickle is read.
struct StorageInfo {
  std::string key;
  std::string location;
  DType dtype = DType::kInvalid;  // kInvalid: untyped (bytes)
  bool quantized = false;
  std::string type_name;  // e.g. "torch.FloatStorage", for messages
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

struct Object {
  Kind kind = Kind::kNone;
  bool ordered = false;   // kDict: an OrderedDict or Counter
  bool consumed = false;  // kGlobal: a user class instantiated by NEWOBJ
  RecordKind record = RecordKind::kTensor;
  GlobalEntry global;  // kGlobal
  std::string name;    // kGlobal: "module.name"; kRecord: text payload
  ByteView data;       // kStr, kBytes, kByteArray, kBigInt
  std::vector<Ref> items;
  Ref attrs;                  // kDict: attributes set by BUILD (OrderedDict)
  uint32_t aux = UINT32_MAX;  // index into the Graph side table of `record`
  uint64_t offset = 0;        // byte offset of the opcode that made it
  uint64_t hash = 0;          // cached hash of a kStr/kBytes/kBigInt key
  std::unique_ptr<std::unordered_multimap<uint64_t, uint32_t>> index;  // dict/set keys
};

// The objects of one or more pickle streams (a legacy torch file has five
// sharing one graph).
struct Graph {
  std::vector<Object> objects;
  std::deque<std::string> owned;  // bytes the machine decoded (never moves)
  std::vector<TensorInfo> tensors;
  std::vector<StorageInfo> storages;
  std::vector<ArrayInfo> arrays;
  std::vector<NpDtypeInfo> dtypes;
  std::vector<InstanceInfo> instances;
  bool joblib = false;  // a NumpyArrayWrapper's inline data was read

  const Object& at(Ref r) const { return objects[r.id]; }
  Object& at(Ref r) { return objects[r.id]; }
  // Text of a kStr / kBytes object.
  std::string_view text(Ref r) const { return AsChars(objects[r.id].data); }
};

class Machine;

// Resolves a BINPERSID id (the torch containers); errors are semantic.
using PersistentLoad = std::function<Result<Ref>(Machine& machine, Ref pid, uint64_t offset)>;

struct MachineOptions {
  // Label for locations in findings and errors: "data.pkl", "pickle", ...
  std::string where = "pickle";
  // Added to stream positions in messages (the stream's offset in its file).
  uint64_t base = 0;
  // Null: every BINPERSID is a finding (plain pickles).
  PersistentLoad persistent_load;
  // joblib: NumpyArrayWrapper BUILD is followed by the array's bytes.
  bool joblib = true;
  // The stream was decompressed (a zlib/gzip joblib file): a wrapper that
  // allows mmap is noted, since joblib.load(mmap_mode=...) would map the
  // compressed file at the decompressed offset.
  bool compressed = false;
};

class Machine {
 public:
  Machine(ParseContext& ctx, Graph& graph, MachineOptions options);

  // Reads one pickle from data[start] up to and including its STOP. On
  // success *end is the position after STOP and the result is the root.
  // Findings are reported to the context; tainted() then says so.
  Result<Ref> Run(ByteView data, uint64_t start, uint64_t* end);

  // True once this machine reported a finding.
  bool tainted() const { return findings_ > 0; }
  uint64_t findings() const { return findings_; }

  // Reports a finding (used by persistent_load callbacks too).
  void Refuse(std::string rule, uint64_t offset, std::string message,
              std::vector<std::string> references = {});

  // Allocates a heap object.
  Result<Ref> New(Kind kind, uint64_t offset);
  Graph& graph() { return graph_; }
  const MachineOptions& options() const { return options_; }
  // "data.pkl byte 42" for a stream offset.
  std::string Location(uint64_t offset) const;

 private:
  friend class MachineImpl;
  ParseContext& ctx_;
  Graph& graph_;
  MachineOptions options_;
  uint64_t findings_ = 0;
};

// Text for a value's kind in messages ("a tuple", "an int", ...).
std::string KindName(const Graph& graph, Ref r);

// Reads scalar arguments: an int (kInt or kBool), a non-negative int, a
// float, a str.
Result<int64_t> AsInt(const Graph& graph, Ref r, std::string_view what);
Result<std::string_view> AsStr(const Graph& graph, Ref r, std::string_view what);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_MACHINE_H_
