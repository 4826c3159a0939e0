#include "loader/pickle/pickle_machine.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include "converter/keyed_hash.h"
#include "safemodel/limits.h"

namespace safemodel::loader::pickle {

namespace {

// Opcodes (CPython Lib/pickle.py; ../shared/docs/OPCODES.md).
enum Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloat = 'F',
  kInt = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLong = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kPersId = 'P',
  kBinPersId = 'Q',
  kReduce = 'R',
  kString = 'S',
  kBinString = 'T',
  kShortBinString = 'U',
  kUnicode = 'V',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinGet = 'h',
  kInst = 'i',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kProto = 0x80,
  kNewObj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAddItems = 0x90,
  kFrozenSet = 0x91,
  kNewObjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  kByteArray8 = 0x96,
  kNextBuffer = 0x97,
  kReadOnlyBuffer = 0x98,
};

constexpr uint8_t kHighestProtocol = 5;
// Comparison steps for one key equality test (tuples of tuples): a DAG of
// tuples can make a naive comparison exponential.
constexpr uint64_t kMaxKeyCompareSteps = 1'000'000;
// Decimal digits of a protocol-0 INT/LONG: enough for kMaxBigIntBytes.
constexpr size_t kMaxDecimalDigits = 160;
// Dicts and sets switch from linear search to a hash index at this size.
constexpr size_t kIndexThreshold = 8;

const char* OpName(uint8_t op) {
  switch (op) {
    case kGlobal:
      return "GLOBAL";
    case kStackGlobal:
      return "STACK_GLOBAL";
    case kInst:
      return "INST";
    case kObj:
      return "OBJ";
    case kReduce:
      return "REDUCE";
    case kNewObj:
      return "NEWOBJ";
    case kNewObjEx:
      return "NEWOBJ_EX";
    case kBuild:
      return "BUILD";
    case kAppend:
      return "APPEND";
    case kAppends:
      return "APPENDS";
    case kSetItem:
      return "SETITEM";
    case kSetItems:
      return "SETITEMS";
    case kAddItems:
      return "ADDITEMS";
    default:
      return "opcode";
  }
}

// Hash domains: values of different kinds that Python never calls equal
// hash apart; bool, int and integral float share kNumber (True == 1 == 1.0).
enum HashDomain : uint64_t {
  kHashNumber = 1,
  kHashFloat,
  kHashStr,
  kHashBytes,
  kHashBigInt,
  kHashGlobal,
  kHashIdentity,
  kHashTuple,
};

// Never 0: 0 marks a hash that is not computed yet.
uint64_t NonZero(uint64_t h) { return h | 1; }

// True if `f` is an integer that fits int64 (then *out is it): the floats
// Python calls equal to an int. NaN and infinities are not.
bool IntegralFloat(double f, int64_t* out) {
  if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) return false;
  if (f != std::floor(f)) return false;
  *out = static_cast<int64_t>(f);
  return true;
}

// Appends code point `cp` (not a surrogate, <= 0x10FFFF) as UTF-8.
void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Drops redundant sign-extension bytes of a little-endian two's complement
// integer, so that equal values have equal bytes.
ByteView TrimTwosComplement(ByteView b) {
  size_t n = b.size();
  while (n > 1) {
    uint8_t top = b[n - 1];
    bool next_negative = (b[n - 2] & 0x80) != 0;
    if ((top == 0x00 && !next_negative) || (top == 0xFF && next_negative)) {
      --n;
    } else {
      break;
    }
  }
  return b.subspan(0, n);
}

}  // namespace

std::string KindName(const Graph& graph, Ref r) {
  switch (r.kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "a bool";
    case Kind::kInt:
      return "an int";
    case Kind::kFloat:
      return "a float";
    case Kind::kBigInt:
      return "an int";
    case Kind::kStr:
      return "a str";
    case Kind::kBytes:
      return "bytes";
    case Kind::kByteArray:
      return "a bytearray";
    case Kind::kTuple:
      return "a tuple";
    case Kind::kList:
      return "a list";
    case Kind::kDict:
      return graph.at(r).ordered ? "an OrderedDict" : "a dict";
    case Kind::kSet:
      return "a set";
    case Kind::kFrozenSet:
      return "a frozenset";
    case Kind::kGlobal:
      return "the name " + graph.at(r).name;
    case Kind::kOpaque:
      return "the result of a refused call";
    case Kind::kRecord:
      switch (graph.at(r).record) {
        case RecordKind::kTensor:
          return "a tensor";
        case RecordKind::kStorage:
          return "a storage";
        case RecordKind::kNdArray:
          return "a numpy array";
        case RecordKind::kNpDtype:
          return "a numpy dtype";
        case RecordKind::kNpScalar:
          return "a numpy scalar";
        case RecordKind::kInstance:
          return "an instance";
        case RecordKind::kComplex:
          return "a complex";
        case RecordKind::kDevice:
          return "a torch.device";
        case RecordKind::kLayout:
          return "a torch layout";
        case RecordKind::kJoblibArray:
          return "a joblib NumpyArrayWrapper";
      }
  }
  return "a value";
}

Result<int64_t> AsInt(const Graph& graph, Ref r, std::string_view what) {
  if (r.kind == Kind::kInt || r.kind == Kind::kBool) return r.i;
  return Status::Malformed(std::string(what) + " must be an int, not " + KindName(graph, r));
}

Result<std::string_view> AsStr(const Graph& graph, Ref r, std::string_view what) {
  if (r.kind == Kind::kStr) return graph.text(r);
  return Status::Malformed(std::string(what) + " must be a str, not " + KindName(graph, r));
}

Machine::Machine(ParseContext& ctx, Graph& graph, MachineOptions options)
    : ctx_(ctx), graph_(graph), options_(std::move(options)) {}

std::string Machine::Location(uint64_t offset) const {
  return options_.where + " byte " + Num(options_.base + offset);
}

void Machine::Refuse(std::string rule, uint64_t offset, std::string message,
                     std::vector<std::string> references) {
  ++findings_;
  if (findings_ > kMaxFindingsListed) return;
  if (findings_ == kMaxFindingsListed) {
    ctx_.Refuse(rule, Location(offset),
                "more than " + Num(kMaxFindingsListed) + " findings; the rest are not listed");
    return;
  }
  ctx_.Refuse(std::move(rule), Location(offset), std::move(message), std::move(references));
}

Result<Ref> Machine::New(Kind kind, uint64_t offset) {
  if (graph_.objects.size() >= kMaxObjects) {
    return Status::LimitExceeded(options_.where + ": more than " + Num(kMaxObjects) +
                                 " objects (limit)");
  }
  graph_.objects.emplace_back();
  Object& o = graph_.objects.back();
  o.kind = kind;
  o.offset = offset;
  return Ref::Heap(kind, static_cast<ObjId>(graph_.objects.size() - 1));
}

// The memo. Picklers number entries 0, 1, 2, ...: those keys live in a
// vector (no hashing, good locality; 2x faster on memo-heavy pickles than a
// hash map). Any other key goes to a keyed hash map. A key joins the vector
// only while it is below twice the entry count plus kDenseSlack, so one large
// key cannot make the vector large; each key lives in exactly one of the two.
class Memo {
 public:
  const Ref* Find(uint64_t key) const {
    if (key < dense_.size() && present_[key]) return &dense_[key];
    auto it = sparse_.find(key);
    return it == sparse_.end() ? nullptr : &it->second;
  }
  // Stores or replaces; false if a new key would exceed kMaxMemoEntries.
  bool Put(uint64_t key, Ref r) {
    if (key < dense_.size() && present_[key]) {
      dense_[key] = r;
      return true;
    }
    auto it = sparse_.find(key);
    if (it != sparse_.end()) {
      it->second = r;
      return true;
    }
    if (count_ >= kMaxMemoEntries) return false;
    ++count_;
    if (key < dense_.size() || key < 2 * count_ + kDenseSlack) {
      if (key >= dense_.size()) {
        const uint64_t grown = std::max<uint64_t>(key + 1, dense_.size() * 2);
        const uint64_t cap = std::max<uint64_t>(key + 1, 2 * count_ + kDenseSlack);
        dense_.resize(std::min(grown, cap));
        present_.resize(dense_.size(), false);
      }
      dense_[key] = r;
      present_[key] = true;
    } else {
      sparse_.emplace(key, r);  // keys chosen by the file: keyed hash
    }
    return true;
  }
  uint64_t size() const { return count_; }

 private:
  static constexpr uint64_t kDenseSlack = 1024;
  std::vector<Ref> dense_;
  std::vector<bool> present_;
  KeyedIntMap<uint64_t, Ref> sparse_;
  uint64_t count_ = 0;
};

// The interpreter for one Run(). Kept out of the header: it is the only
// code that touches the stream.
class MachineImpl {
 public:
  MachineImpl(Machine& m, ByteView data, uint64_t start)
      : m_(m), g_(m.graph()), data_(data), pos_(start), start_(start) {}

  Result<Ref> Run(uint64_t* end);
  // Bytes of the stream read so far.
  uint64_t bytes_read() const { return pos_ - start_; }

 private:
  struct Context {
    std::vector<Ref> stack;
    std::vector<size_t> marks;
    Memo memo;
    uint8_t proto = 0;
    // A nested pickle (a joblib object array): the outer wrapper it feeds.
    ObjId wrapper = kNoObj;
  };

  // ---- Reading -------------------------------------------------------------
  std::string At() const { return " at " + m_.Location(op_offset_); }
  Status Truncated(uint64_t need, const char* what) const {
    if (in_frame_) {
      return Status::Malformed(m_.options().where + ": " + what + At() + " needs " + Num(need) +
                               " bytes but its frame ends at byte " +
                               Num(m_.options().base + frame_end_) +
                               " (an opcode may not straddle a frame)");
    }
    return Status::Malformed(m_.options().where + ": truncated: " + what + At() + " needs " +
                             Num(need) + " bytes, " + Num(limit_ - pos_) + " remain");
  }
  Result<ByteView> Take(uint64_t n, const char* what) {
    if (n > limit_ - pos_) return Truncated(n, what);
    ByteView v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  Result<uint64_t> ReadUInt(uint64_t n, const char* what) {
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, what));
    uint64_t v = 0;
    for (uint64_t i = n; i-- > 0;) v = (v << 8) | b[i];
    return v;
  }
  // A newline-terminated argument, without the newline.
  Result<std::string_view> ReadLine(const char* what) {
    const uint8_t* begin = data_.data() + pos_;
    const void* nl = std::memchr(begin, '\n', limit_ - pos_);
    if (nl == nullptr) {
      return Status::Malformed(
          m_.options().where + ": " + what + At() +
          (in_frame_ ? ": no newline before the end of its frame" : ": no terminating newline"));
    }
    uint64_t len = static_cast<uint64_t>(static_cast<const uint8_t*>(nl) - begin);
    std::string_view line(reinterpret_cast<const char*>(begin), len);
    pos_ += len + 1;
    return line;
  }
  Status Bad(std::string msg) const {
    return Status::Malformed(m_.options().where + ": " + msg + At());
  }

  // ---- Stack ---------------------------------------------------------------
  Context& C() { return contexts_.back(); }
  size_t Fence() { return C().marks.empty() ? 0 : C().marks.back(); }
  Status Push(Ref r) {
    if (C().stack.size() >= kMaxStackDepth) {
      return Status::LimitExceeded(m_.options().where + ": stack deeper than " +
                                   Num(kMaxStackDepth) + At());
    }
    C().stack.push_back(r);
    return Status::Ok();
  }
  Result<Ref> Pop(const char* what) {
    if (C().stack.size() <= Fence()) return Bad(std::string(what) + ": stack underflow");
    Ref r = C().stack.back();
    C().stack.pop_back();
    return r;
  }
  Result<Ref*> Top(const char* what) {
    if (C().stack.size() <= Fence()) return Bad(std::string(what) + ": stack underflow");
    return &C().stack.back();
  }
  Result<std::vector<Ref>> PopMark(const char* what) {
    if (C().marks.empty()) return Bad(std::string(what) + " without a MARK");
    size_t mark = C().marks.back();
    C().marks.pop_back();
    std::vector<Ref> items(C().stack.begin() + static_cast<std::ptrdiff_t>(mark), C().stack.end());
    C().stack.resize(mark);
    return items;
  }

  // ---- Objects -------------------------------------------------------------
  Result<Ref> New(Kind kind) { return m_.New(kind, op_offset_); }
  Result<Ref> NewData(Kind kind, ByteView data) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(kind));
    g_.at(r).data = data;
    return r;
  }
  Result<Ref> NewOwned(Kind kind, std::string bytes) {
    g_.owned.push_back(std::move(bytes));
    return NewData(kind, AsBytes(g_.owned.back()));
  }
  Result<Ref> NewContainer(Kind kind, std::vector<Ref> items) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(kind));
    g_.at(r).items = std::move(items);
    return r;
  }
  Result<Ref> NewRecord(RecordKind record) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(Kind::kRecord));
    g_.at(r).record = record;
    return r;
  }
  Result<Ref> Opaque() {
    if (opaque_.kind != Kind::kOpaque) {
      SAFEMODEL_ASSIGN_OR_RETURN(opaque_, New(Kind::kOpaque));
    }
    return opaque_;
  }
  // A handler's error: remembered (the first one is returned at the end) and
  // replaced by an opaque value so that reading goes on.
  Result<Ref> Semantic(const Status& s) {
    Remember(s);
    return Opaque();
  }
  void Remember(const Status& s) {
    if (semantic_.ok()) semantic_ = s;
  }
  bool IsOpaque(Ref r) const { return r.kind == Kind::kOpaque; }

  // Charges work that could grow faster than the input (hash operations,
  // key comparisons, copies of containers) to the file's budget.
  Status Spend(uint64_t units) {
    return m_.ctx_.Spend(units, kWorkPerByte * bytes_read(), m_.options().where);
  }
  // The items of a container, copied (the caller may allocate, which moves
  // objects); the copy is charged as work.
  Result<std::vector<Ref>> CopyItems(Ref r) {
    SAFEMODEL_RETURN_IF_ERROR(Spend(g_.at(r).items.size()));
    return g_.at(r).items;
  }
  // A container about to hold `size` items.
  Status CheckGrowth(uint64_t size, const char* what) const {
    if (size <= kMaxContainerItems) return Status::Ok();
    return Status::LimitExceeded(m_.options().where + ": a " + what + " of more than " +
                                 Num(kMaxContainerItems) + " items" + At());
  }

  Result<Ref> MakeInt(ByteView le) {
    if (le.empty()) return Ref::Int(0);
    ByteView t = TrimTwosComplement(le);
    if (t.size() <= 8) {
      uint64_t v = 0;
      for (size_t i = t.size(); i-- > 0;) v = (v << 8) | t[i];
      if (t.size() < 8 && (t.back() & 0x80)) v |= ~uint64_t{0} << (8 * t.size());
      return Ref::Int(static_cast<int64_t>(v));
    }
    if (t.size() > kMaxBigIntBytes) {
      return Status::LimitExceeded(m_.options().where + ": integer of " + Num(t.size()) + " bytes" +
                                   At() + " exceeds the limit of " + Num(kMaxBigIntBytes));
    }
    return NewData(Kind::kBigInt, t);
  }
  Result<Ref> ParseDecimal(std::string_view s, const char* what);

  // ---- Keys (dict/set semantics) -------------------------------------------
  Result<uint64_t> KeyHash(Ref r);
  Result<bool> KeysEqual(Ref a, Ref b);
  // Position of `key` among the keys of dict/set `c` (stride 2 for dicts).
  Result<std::optional<size_t>> FindKey(Object& c, Ref key, size_t stride);
  Status SetItem(Ref dict, Ref key, Ref value);
  Status AddItem(Ref set, Ref item);

  // ---- Names and handlers --------------------------------------------------
  Result<Ref> MakeGlobal(std::string_view module, std::string_view name, uint8_t op);
  Result<Ref> Call(Ref callable, Ref args, uint8_t op);
  Result<Ref> Reduce(Ref callable, const std::vector<Ref>& args);
  Result<Ref> NewObject(Ref cls, const std::vector<Ref>& args, uint8_t op);
  Status Build(Ref* target, Ref state);
  Status BuildArray(Object& obj, Ref state);
  Status BuildDtype(Object& obj, Ref state);
  Status BuildInstance(Ref obj, Ref state);
  Status BuildOrderedDict(Ref obj, Ref state);
  Result<Ref> Snapshot(Ref dict);
  Status Merge(Ref dst, Ref src);
  Status CheckState(Ref dict, const std::string& cls, bool setattr, bool module);
  Status BuildJoblibWrapper(Ref* target, Ref state);
  Status FinishNested(Ref result);
  Result<Ref> RebuildTensor(GlobalKind kind, const std::vector<Ref>& args);
  Result<Ref> RebuildQTensor(const std::vector<Ref>& args);
  Result<Ref> RebuildSparse(const std::vector<Ref>& args);
  Result<Ref> NewDtype(std::string_view descr);
  Result<std::vector<uint64_t>> Shape(Ref r, const char* what);
  Result<std::vector<int64_t>> Strides(Ref r, const char* what);
  Result<ByteView> BytesLike(Ref r, const char* what);
  Status CheckEmptyHooks(Ref r);
  Result<bool> RequiresGrad(Ref r, DType dtype, const char* function);
  Status CheckNumericDtype(const NpDtypeInfo& info) const;
  Status ContainerOp(uint8_t op, Ref target, const std::vector<Ref>& items);

  // One opcode (already read); *stop is set at STOP, whose value is returned.
  Result<Ref> Step(uint8_t op, bool* stop);
  Result<Ref> StepFraming(uint8_t op, bool* stop);
  Result<Ref> StepConstant(uint8_t op);
  Result<Ref> StepString(uint8_t op);
  Result<Ref> StepContainer(uint8_t op);
  Result<Ref> StepMemo(uint8_t op);
  Result<Ref> StepName(uint8_t op);

  Machine& m_;
  Graph& g_;
  ByteView data_;
  uint64_t pos_;
  uint64_t start_;
  uint64_t op_offset_ = 0;
  uint64_t limit_ = 0;
  bool in_frame_ = false;
  uint64_t frame_end_ = 0;
  std::vector<Context> contexts_;
  Status semantic_;
  Ref opaque_;
  std::vector<ObjId> user_globals_;
  bool noted_mmap_ = false;
};

Result<Ref> MachineImpl::ParseDecimal(std::string_view s, const char* what) {
  bool negative = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    negative = s[i] == '-';
    ++i;
  }
  std::string_view digits = s.substr(i);
  if (digits.empty() || digits.size() > kMaxDecimalDigits ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Bad(std::string(what) + ": '" + Printable(s, 40) + "' is not a decimal integer");
  }
  if (digits.size() > 1 && digits[0] == '0' &&
      digits.find_first_not_of('0') != std::string_view::npos) {
    return Bad(std::string(what) + ": '" + Printable(s, 40) + "' has leading zeros");
  }
  // Magnitude as little-endian base-256 digits.
  std::vector<uint8_t> mag;
  for (char c : digits) {
    unsigned carry = static_cast<unsigned>(c - '0');
    for (uint8_t& b : mag) {
      unsigned v = b * 10u + carry;
      b = static_cast<uint8_t>(v & 0xFF);
      carry = v >> 8;
    }
    while (carry) {
      mag.push_back(static_cast<uint8_t>(carry & 0xFF));
      carry >>= 8;
    }
  }
  mag.push_back(0);  // room for the sign bit
  if (negative) {
    NegateTwosComplement(&mag);
  }
  ByteView t = TrimTwosComplement(ByteView(mag.data(), mag.size()));
  if (t.size() <= 8) return MakeInt(t);
  if (t.size() > kMaxBigIntBytes) {
    return Status::LimitExceeded(m_.options().where + ": integer" + At() + " exceeds " +
                                 Num(kMaxBigIntBytes) + " bytes");
  }
  return NewOwned(Kind::kBigInt, std::string(AsChars(t)));
}

// Python's hash/eq rules for the key types pickles use: None, bool, int and
// float compare numerically (True == 1 == 1.0), str and bytes by content,
// tuples element-wise; names by their name; other records by identity.
// Hashes are SipHash-2-4 under the process key (converter/keyed_hash.h), so a
// file cannot choose keys that collide: each lookup is O(1) expected.
Result<uint64_t> MachineImpl::KeyHash(Ref root) {
  auto scalar = [](Ref r) -> std::optional<uint64_t> {
    switch (r.kind) {
      case Kind::kNone:
        return NonZero(KeyedHashU64(0, kHashIdentity));
      case Kind::kBool:
      case Kind::kInt:
        return NonZero(KeyedHashU64(static_cast<uint64_t>(r.i), kHashNumber));
      case Kind::kFloat: {
        int64_t as_int;
        if (IntegralFloat(r.f, &as_int)) {
          return NonZero(KeyedHashU64(static_cast<uint64_t>(as_int), kHashNumber));
        }
        return NonZero(KeyedHashU64(std::bit_cast<uint64_t>(r.f), kHashFloat));
      }
      default:
        return std::nullopt;
    }
  };
  if (auto h = scalar(root)) return *h;
  // Iterative post-order over tuples; every heap object caches its hash, so
  // hashing costs O(objects) over the whole run, however keys share parts.
  std::vector<std::pair<Ref, bool>> work{{root, false}};
  uint64_t steps = 0;
  while (!work.empty()) {
    auto [r, expanded] = work.back();
    work.pop_back();
    ++steps;
    if (!r.is_heap()) continue;
    Object& o = g_.at(r);
    if (o.hash != 0) continue;
    switch (r.kind) {
      case Kind::kStr:
        o.hash = NonZero(KeyedHash(o.data.data(), o.data.size(), kHashStr));
        break;
      case Kind::kBytes:
        o.hash = NonZero(KeyedHash(o.data.data(), o.data.size(), kHashBytes));
        break;
      case Kind::kBigInt:
        o.hash = NonZero(KeyedHash(o.data.data(), o.data.size(), kHashBigInt));
        break;
      case Kind::kGlobal:
        o.hash = NonZero(KeyedHash(o.name, kHashGlobal));
        break;
      case Kind::kRecord:
      case Kind::kOpaque:
        o.hash = NonZero(KeyedHashU64(r.id, kHashIdentity));
        break;
      case Kind::kTuple:
        if (!expanded) {
          work.push_back({r, true});
          for (Ref item : o.items) work.push_back({item, false});
        } else {
          // The item hashes, in order, hashed again: a tuple's hash is as
          // unpredictable as its items'.
          std::vector<uint64_t> hashes;
          hashes.reserve(o.items.size());
          for (Ref item : o.items) hashes.push_back(item.is_heap() ? g_.at(item).hash : *scalar(item));
          o.hash = NonZero(KeyedHash(hashes.data(), hashes.size() * sizeof(uint64_t), kHashTuple));
        }
        break;
      default:
        return Status::Malformed("unhashable dict key or set item (" + KindName(g_, r) + ")" +
                                 At());
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(Spend(steps));
  return g_.at(root).hash;
}

Result<bool> MachineImpl::KeysEqual(Ref a0, Ref b0) {
  std::vector<std::pair<Ref, Ref>> work{{a0, b0}};
  uint64_t steps = 0;
  auto is_number = [](Kind k) { return k == Kind::kBool || k == Kind::kInt || k == Kind::kFloat; };
  bool equal = true;
  while (!work.empty()) {
    if (++steps > kMaxKeyCompareSteps) {
      return Status::LimitExceeded("comparing dict keys took more than " +
                                   Num(kMaxKeyCompareSteps) + " steps" + At());
    }
    auto [a, b] = work.back();
    work.pop_back();
    if (is_number(a.kind) && is_number(b.kind)) {
      // Exact comparison, as Python's int == float: 2**53 + 1 != 2.0**53.
      bool eq;
      if (a.kind == Kind::kFloat && b.kind == Kind::kFloat) {
        eq = a.f == b.f;
      } else if (a.kind == Kind::kFloat || b.kind == Kind::kFloat) {
        const double f = a.kind == Kind::kFloat ? a.f : b.f;
        const int64_t i = a.kind == Kind::kFloat ? b.i : a.i;
        int64_t as_int;
        eq = IntegralFloat(f, &as_int) && as_int == i;
      } else {
        eq = a.i == b.i;
      }
      if (!eq) {
        equal = false;
        break;
      }
      continue;
    }
    if (a.kind != b.kind) {
      equal = false;
      break;
    }
    if (!a.is_heap()) continue;  // None
    if (a.id == b.id) continue;
    const Object& x = g_.at(a);
    const Object& y = g_.at(b);
    if (x.hash != 0 && y.hash != 0 && x.hash != y.hash) {
      equal = false;
      break;
    }
    bool same = true;
    switch (a.kind) {
      case Kind::kStr:
      case Kind::kBytes:
      case Kind::kBigInt:
        same = x.data.size() == y.data.size() &&
               (x.data.empty() || std::memcmp(x.data.data(), y.data.data(), x.data.size()) == 0);
        break;
      case Kind::kGlobal:
        same = x.name == y.name;
        break;
      case Kind::kTuple:
        same = x.items.size() == y.items.size();
        if (same) {
          for (size_t i = 0; i < x.items.size(); ++i) work.push_back({x.items[i], y.items[i]});
        }
        break;
      default:
        same = false;  // identity, and the ids differ
    }
    if (!same) {
      equal = false;
      break;
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(Spend(steps));
  return equal;
}

Result<std::optional<size_t>> MachineImpl::FindKey(Object& c, Ref key, size_t stride) {
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t h, KeyHash(key));
  const size_t n = c.items.size() / stride;
  if (n < kIndexThreshold && !c.index) {
    for (size_t i = 0; i < n; ++i) {
      SAFEMODEL_ASSIGN_OR_RETURN(bool eq, KeysEqual(c.items[i * stride], key));
      if (eq) return std::optional<size_t>(i);
    }
    return std::optional<size_t>();
  }
  if (!c.index) {
    c.index = std::make_unique<std::unordered_multimap<uint64_t, uint32_t>>();
    for (size_t i = 0; i < n; ++i) {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t ih, KeyHash(c.items[i * stride]));
      c.index->emplace(ih, static_cast<uint32_t>(i));
    }
  }
  auto [lo, hi] = c.index->equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    SAFEMODEL_ASSIGN_OR_RETURN(bool eq, KeysEqual(c.items[it->second * stride], key));
    if (eq) return std::optional<size_t>(it->second);
  }
  return std::optional<size_t>();
}

Status MachineImpl::SetItem(Ref dict, Ref key, Ref value) {
  SAFEMODEL_RETURN_IF_ERROR(Spend(1));
  // FindKey may add heap objects (hash caches only), never new objects, so
  // the reference stays valid.
  SAFEMODEL_ASSIGN_OR_RETURN(std::optional<size_t> pos, FindKey(g_.at(dict), key, 2));
  Object& d = g_.at(dict);
  if (pos) {
    d.items[*pos * 2 + 1] = value;  // Python keeps the first key object
    return Status::Ok();
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckGrowth(d.items.size() / 2 + 1, "dict"));
  d.items.push_back(key);
  d.items.push_back(value);
  if (d.index) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t h, KeyHash(key));
    d.index->emplace(h, static_cast<uint32_t>(d.items.size() / 2 - 1));
  }
  return Status::Ok();
}

Status MachineImpl::AddItem(Ref set, Ref item) {
  SAFEMODEL_RETURN_IF_ERROR(Spend(1));
  SAFEMODEL_ASSIGN_OR_RETURN(std::optional<size_t> pos, FindKey(g_.at(set), item, 1));
  if (pos) return Status::Ok();
  Object& s = g_.at(set);
  SAFEMODEL_RETURN_IF_ERROR(CheckGrowth(s.items.size() + 1, "set"));
  s.items.push_back(item);
  if (s.index) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t h, KeyHash(item));
    s.index->emplace(h, static_cast<uint32_t>(s.items.size() - 1));
  }
  return Status::Ok();
}

// ---- Names --------------------------------------------------------------------

Result<Ref> MachineImpl::MakeGlobal(std::string_view module_in, std::string_view name_in,
                                    uint8_t op) {
  std::string module(module_in), name(name_in);
  if (C().proto < 3) std::tie(module, name) = MapPython2Name(module_in, name_in);
  const std::string full = module + "." + name;
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(Kind::kGlobal));
  Object& o = g_.at(r);
  o.name = full;
  const std::string where = full + " at byte " + Num(m_.options().base + op_offset_);
  if (module.empty() || name.empty() || name.find('.') != std::string::npos) {
    m_.Refuse("pickle.global", op_offset_,
              where + ": " + OpName(op) +
                  " with an empty or dotted name (an attribute path through " + module +
                  "), which the loader would resolve and could call",
              {full});
    return r;
  }
  o.global = LookupGlobal(module, name);
  if (o.global.kind != GlobalKind::kUnknown) return r;
  if (IsUserModule(module)) {
    user_globals_.push_back(r.id);
    return r;
  }
  m_.Refuse("pickle.global", op_offset_,
            where + ": " + OpName(op) +
                " of a name outside the table of known data constructors; loading the file "
                "would import it and could call it",
            {full});
  return r;
}

Result<Ref> MachineImpl::Call(Ref callable, Ref args, uint8_t op) {
  if (IsOpaque(callable) || IsOpaque(args)) return Opaque();
  if (callable.kind == Kind::kGlobal) {
    Object& g = g_.at(callable);
    if (g.global.kind == GlobalKind::kUnknown) {
      if (g.consumed || std::find(user_globals_.begin(), user_globals_.end(), callable.id) !=
                            user_globals_.end()) {
        m_.Refuse("pickle.call", op_offset_,
                  g.name + " at byte " + Num(m_.options().base + op_offset_) + ": " + OpName(op) +
                      " calls a user-defined name, which runs its code",
                  {g.name});
        g.consumed = true;  // refused here; not again as a bare name
      }
      return Opaque();  // refused when the name was read
    }
    if (args.kind != Kind::kTuple) {
      return Semantic(Bad(std::string(OpName(op)) + " of " + g.name +
                          ": arguments must be a tuple, not " + KindName(g_, args)));
    }
    SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, CopyItems(args));
    for (Ref a : items) {
      if (IsOpaque(a)) return Opaque();
    }
    Result<Ref> r = Reduce(callable, items);
    if (!r.ok()) return Semantic(r.status());
    return r;
  }
  // Only a name can be called. Anything else is a value some earlier call
  // produced, or an instance whose class would run its own code.
  m_.Refuse("pickle.call", op_offset_,
            std::string(OpName(op)) + " at byte " + Num(m_.options().base + op_offset_) +
                " calls " + KindName(g_, callable) + ", not a known data constructor",
            {KindName(g_, callable)});
  return Opaque();
}

Result<std::vector<uint64_t>> MachineImpl::Shape(Ref r, const char* what) {
  if (r.kind != Kind::kTuple && r.kind != Kind::kList) {
    return Status::Malformed(std::string(what) + " must be a tuple of ints, not " +
                             KindName(g_, r));
  }
  const auto& items = g_.at(r).items;
  if (items.size() > kMaxRank) {
    return Status::LimitExceeded(std::string(what) + " has rank " + Num(items.size()) +
                                 ", over the limit of " + Num(kMaxRank));
  }
  std::vector<uint64_t> out;
  for (Ref d : items) {
    if (d.kind != Kind::kInt || d.i < 0) {
      return Status::Malformed(std::string(what) + " must hold non-negative ints");
    }
    out.push_back(static_cast<uint64_t>(d.i));
  }
  return out;
}

Result<std::vector<int64_t>> MachineImpl::Strides(Ref r, const char* what) {
  if (r.kind != Kind::kTuple && r.kind != Kind::kList) {
    return Status::Malformed(std::string(what) + " must be a tuple of ints, not " +
                             KindName(g_, r));
  }
  std::vector<int64_t> out;
  for (Ref d : g_.at(r).items) {
    // torch never writes negative strides; a negative one is a crafted file.
    if (d.kind != Kind::kInt || d.i < 0) {
      return Status::Malformed(std::string(what) + " must hold non-negative ints");
    }
    out.push_back(d.i);
  }
  return out;
}

Result<ByteView> MachineImpl::BytesLike(Ref r, const char* what) {
  if (r.kind == Kind::kBytes || r.kind == Kind::kByteArray) return g_.at(r).data;
  // Python 2 str data (BINSTRING) that was ASCII decodes to str; its bytes
  // are the same.
  if (r.kind == Kind::kStr) {
    ByteView d = g_.at(r).data;
    if (std::all_of(d.begin(), d.end(), [](uint8_t c) { return c < 0x80; })) return d;
  }
  return Status::Malformed(std::string(what) + " must be bytes, not " + KindName(g_, r));
}

Status MachineImpl::CheckEmptyHooks(Ref r) {
  if (r.kind == Kind::kNone) return Status::Ok();
  if (r.kind == Kind::kDict && g_.at(r).items.empty()) return Status::Ok();
  return Status::Unsupported("tensor backward hooks must be empty (found " + KindName(g_, r) + ")");
}

// requires_grad as torch checks it (torch/_utils.py): `tensor.requires_grad
// = x` and Parameter's `_make_subclass` take only a bool ("requires_grad
// must be a bool"), and True only for floating-point and complex dtypes.
Result<bool> MachineImpl::RequiresGrad(Ref r, DType dtype, const char* function) {
  if (r.kind != Kind::kBool) {
    return Status::Malformed(std::string(function) + ": requires_grad must be a bool, not " +
                             KindName(g_, r) + " (torch refuses it)" + At());
  }
  const bool floating = dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF32 ||
                        dtype == DType::kF64 || dtype == DType::kC64 || dtype == DType::kC128 ||
                        dtype == DType::kF8E4M3FN || dtype == DType::kF8E5M2 ||
                        dtype == DType::kF8E4M3FNUZ || dtype == DType::kF8E5M2FNUZ ||
                        dtype == DType::kF8E8M0FNU;
  if (r.i != 0 && !floating) {
    return Status::Malformed(std::string(function) + ": requires_grad=True on a " +
                             std::string(DTypeName(dtype)) +
                             " tensor (torch: only floating point and complex tensors can "
                             "require gradients)" +
                             At());
  }
  return r.i != 0;
}

// A dtype numeric data can be read with: a safemodel dtype, and a byte
// order from BUILD (numpy always writes one) unless elements are one byte.
Status MachineImpl::CheckNumericDtype(const NpDtypeInfo& info) const {
  if (info.object || info.dtype == DType::kInvalid) {
    return Status::Unsupported("numpy dtype '" + Printable(info.descr) + "' is not supported" +
                               At());
  }
  if (info.byteorder == '\0' && info.itemsize > 1) {
    return Status::Malformed("numpy dtype '" + Printable(info.descr) +
                             "' was never given a byte order" + At());
  }
  return Status::Ok();
}

Result<Ref> MachineImpl::NewDtype(std::string_view descr) {
  NpDtypeInfo info;
  info.descr = std::string(descr);
  // numpy's pickled descr: kind letter + item size ("f4", "O8", "b1", "U5").
  if (descr.size() < 2)
    return Status::Malformed("numpy dtype '" + Printable(descr) + "' is not a descr");
  char kind = descr[0];
  uint64_t size = 0;
  auto [p, ec] = std::from_chars(descr.data() + 1, descr.data() + descr.size(), size);
  if (ec != std::errc() || p != descr.data() + descr.size() || size > (1u << 30)) {
    return Status::Unsupported("numpy dtype '" + Printable(descr) + "' is not supported");
  }
  info.itemsize = static_cast<uint32_t>(size);
  struct Code {
    char kind;
    uint32_t size;
    DType dtype;
  };
  static constexpr Code kCodes[] = {
      {'b', 1, DType::kBool}, {'i', 1, DType::kI8},    {'u', 1, DType::kU8},  {'i', 2, DType::kI16},
      {'u', 2, DType::kU16},  {'i', 4, DType::kI32},   {'u', 4, DType::kU32}, {'i', 8, DType::kI64},
      {'u', 8, DType::kU64},  {'f', 2, DType::kF16},   {'f', 4, DType::kF32}, {'f', 8, DType::kF64},
      {'c', 8, DType::kC64},  {'c', 16, DType::kC128},
  };
  for (const Code& c : kCodes) {
    if (c.kind == kind && c.size == size) info.dtype = c.dtype;
  }
  info.object = kind == 'O';
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewRecord(RecordKind::kNpDtype));
  g_.at(r).aux = static_cast<uint32_t>(g_.dtypes.size());
  g_.dtypes.push_back(std::move(info));
  return r;
}

// ---- REDUCE handlers -------------------------------------------------------------

Result<Ref> MachineImpl::Reduce(Ref callable, const std::vector<Ref>& args) {
  const Object& g = g_.at(callable);
  const std::string name = g.name;
  const GlobalEntry entry = g.global;
  auto arity = [&](size_t lo, size_t hi) -> Status {
    if (args.size() < lo || args.size() > hi) {
      return Status::Malformed(name + " called with " + Num(args.size()) + " arguments" + At());
    }
    return Status::Ok();
  };
  switch (entry.kind) {
    case GlobalKind::kOrderedDict:
    case GlobalKind::kCounter: {
      SAFEMODEL_RETURN_IF_ERROR(arity(0, 1));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref d, New(Kind::kDict));
      g_.at(d).ordered = true;
      if (args.empty()) return d;
      Ref src = args[0];
      if (src.kind == Kind::kDict) {
        SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, CopyItems(src));
        for (size_t i = 0; i + 1 < items.size(); i += 2) {
          SAFEMODEL_RETURN_IF_ERROR(SetItem(d, items[i], items[i + 1]));
        }
        return d;
      }
      if (src.kind != Kind::kList && src.kind != Kind::kTuple) {
        return Status::Malformed(name + " argument must be a list of pairs" + At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> pairs, CopyItems(src));
      for (Ref p : pairs) {
        if ((p.kind != Kind::kList && p.kind != Kind::kTuple) || g_.at(p).items.size() != 2) {
          return Status::Malformed(name + " argument must be a list of pairs" + At());
        }
        Ref k = g_.at(p).items[0], v = g_.at(p).items[1];
        SAFEMODEL_RETURN_IF_ERROR(SetItem(d, k, v));
      }
      return d;
    }
    case GlobalKind::kSet:
    case GlobalKind::kFrozenSet: {
      SAFEMODEL_RETURN_IF_ERROR(arity(0, 1));
      SAFEMODEL_ASSIGN_OR_RETURN(
          Ref s, New(entry.kind == GlobalKind::kSet ? Kind::kSet : Kind::kFrozenSet));
      if (args.empty()) return s;
      Ref src = args[0];
      if (src.kind != Kind::kList && src.kind != Kind::kTuple && src.kind != Kind::kSet &&
          src.kind != Kind::kFrozenSet) {
        return Status::Malformed(name + " argument must be a list" + At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, CopyItems(src));
      for (Ref item : items) SAFEMODEL_RETURN_IF_ERROR(AddItem(s, item));
      return s;
    }
    case GlobalKind::kBytes:
    case GlobalKind::kByteArray: {
      SAFEMODEL_RETURN_IF_ERROR(arity(0, 2));
      Kind kind = entry.kind == GlobalKind::kBytes ? Kind::kBytes : Kind::kByteArray;
      if (args.empty()) return NewOwned(kind, "");
      if (args.size() == 1) {
        SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, BytesLike(args[0], "bytearray argument"));
        return NewData(kind, b);
      }
      // (str, 'latin-1'): Python 2 protocols encode bytes as latin-1 text.
      [[fallthrough]];
    }
    case GlobalKind::kCodecsEncode: {
      SAFEMODEL_RETURN_IF_ERROR(arity(2, 2));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view text, AsStr(g_, args[0], name + " text"));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view encoding, AsStr(g_, args[1], name + " encoding"));
      if (encoding != "latin1" && encoding != "latin-1" && encoding != "iso-8859-1") {
        return Status::Unsupported(name + " with encoding '" + Printable(encoding) +
                                   "' (only latin-1 is what pickle writes)" + At());
      }
      std::string out;
      out.reserve(text.size());
      for (size_t i = 0; i < text.size();) {
        auto c = static_cast<uint8_t>(text[i]);
        if (c < 0x80) {
          out.push_back(static_cast<char>(c));
          ++i;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < text.size() && c <= 0xC3) {
          out.push_back(
              static_cast<char>(((c & 0x1F) << 6) | (static_cast<uint8_t>(text[i + 1]) & 0x3F)));
          i += 2;
        } else {
          return Status::Malformed(name + ": text has a character beyond latin-1" + At());
        }
      }
      return NewOwned(entry.kind == GlobalKind::kByteArray ? Kind::kByteArray : Kind::kBytes,
                      std::move(out));
    }
    case GlobalKind::kComplex: {
      SAFEMODEL_RETURN_IF_ERROR(arity(1, 2));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref c, NewRecord(RecordKind::kComplex));
      for (size_t i = 0; i < 2; ++i) {
        Ref v = i < args.size() ? args[i] : Ref::Float(0);
        if (v.kind == Kind::kInt || v.kind == Kind::kBool) v = Ref::Float(static_cast<double>(v.i));
        if (v.kind != Kind::kFloat)
          return Status::Malformed("complex parts must be numbers" + At());
        g_.at(c).items.push_back(v);
      }
      return c;
    }
    case GlobalKind::kReconstructor: {
      // copyreg._reconstructor(cls, object, None): object.__new__(cls).
      SAFEMODEL_RETURN_IF_ERROR(arity(3, 3));
      if (args[1].kind != Kind::kGlobal || g_.at(args[1]).global.kind != GlobalKind::kObject ||
          args[2].kind != Kind::kNone) {
        return Status::Unsupported("copyreg._reconstructor with a base other than object" + At());
      }
      return NewObject(args[0], {}, kReduce);
    }
    case GlobalKind::kNewObj: {
      if (args.empty()) return Status::Malformed("copyreg.__newobj__ without a class" + At());
      return NewObject(args[0], std::vector<Ref>(args.begin() + 1, args.end()), kReduce);
    }
    case GlobalKind::kNamespace:
      SAFEMODEL_RETURN_IF_ERROR(arity(0, 0));
      return NewObject(callable, {}, kReduce);
    case GlobalKind::kRebuildTensor:
    case GlobalKind::kRebuildTensorV2:
    case GlobalKind::kRebuildTensorV3:
      return RebuildTensor(entry.kind, args);
    case GlobalKind::kRebuildParameter:
    case GlobalKind::kRebuildParameterWithState: {
      SAFEMODEL_RETURN_IF_ERROR(entry.kind == GlobalKind::kRebuildParameter ? arity(3, 3)
                                                                            : arity(4, 4));
      Ref t = args[0];
      if (t.kind != Kind::kRecord || g_.at(t).record != RecordKind::kTensor) {
        return Status::Malformed(name + ": data must be a tensor" + At());
      }
      SAFEMODEL_RETURN_IF_ERROR(CheckEmptyHooks(args[2]));
      if (args.size() == 4) {
        Ref st = args[3];
        bool empty = st.kind == Kind::kNone || (st.kind == Kind::kDict && g_.at(st).items.empty());
        if (!empty) return Status::Unsupported(name + ": parameters with extra state" + At());
      }
      TensorInfo& info = g_.tensors[g_.at(t).aux];
      info.parameter = true;
      SAFEMODEL_ASSIGN_OR_RETURN(info.requires_grad,
                                 RequiresGrad(args[1], info.dtype, name.c_str()));
      return t;
    }
    case GlobalKind::kRebuildQTensor:
      return RebuildQTensor(args);
    case GlobalKind::kRebuildSparseTensor:
      return RebuildSparse(args);
    case GlobalKind::kRebuildFromTypeV2: {
      SAFEMODEL_RETURN_IF_ERROR(arity(4, 4));
      Ref func = args[0], type = args[1], fargs = args[2], state = args[3];
      if (func.kind != Kind::kGlobal || type.kind != Kind::kGlobal || fargs.kind != Kind::kTuple) {
        return Status::Malformed(name + ": expects (function, type, args, state)" + At());
      }
      GlobalKind tk = g_.at(type).global.kind;
      if (tk != GlobalKind::kTensorType && tk != GlobalKind::kParameterType) {
        return Status::Unsupported(name + " to tensor subclass " + g_.at(type).name + At());
      }
      bool empty =
          state.kind == Kind::kNone || (state.kind == Kind::kDict && g_.at(state).items.empty());
      if (!empty) return Status::Unsupported(name + ": tensor with extra state" + At());
      GlobalKind fk = g_.at(func).global.kind;
      if (fk != GlobalKind::kRebuildTensor && fk != GlobalKind::kRebuildTensorV2 &&
          fk != GlobalKind::kRebuildTensorV3 && fk != GlobalKind::kRebuildParameter &&
          fk != GlobalKind::kRebuildQTensor && fk != GlobalKind::kRebuildSparseTensor) {
        return Status::Unsupported(name + " with function " + g_.at(func).name + At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> inner, CopyItems(fargs));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref t, Reduce(func, inner));
      if (tk == GlobalKind::kParameterType && t.kind == Kind::kRecord) {
        g_.tensors[g_.at(t).aux].parameter = true;
      }
      return t;
    }
    case GlobalKind::kRebuildUnsupported:
      return Status::Unsupported(name +
                                 ": this kind of tensor (no CPU data, or a layout safemodel "
                                 "does not represent) is not converted" +
                                 At());
    case GlobalKind::kTorchSize: {
      SAFEMODEL_RETURN_IF_ERROR(arity(1, 1));
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<uint64_t> dims, Shape(args[0], "torch.Size"));
      std::vector<Ref> items;
      for (uint64_t d : dims) items.push_back(Ref::Int(static_cast<int64_t>(d)));
      return NewContainer(Kind::kTuple, std::move(items));
    }
    case GlobalKind::kTorchDevice: {
      SAFEMODEL_RETURN_IF_ERROR(arity(1, 2));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view type, AsStr(g_, args[0], "torch.device type"));
      std::string device(type);
      if (args.size() == 2 && args[1].kind != Kind::kNone) {
        SAFEMODEL_ASSIGN_OR_RETURN(int64_t index, AsInt(g_, args[1], "torch.device index"));
        device += ":" + std::to_string(index);
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref d, NewRecord(RecordKind::kDevice));
      g_.at(d).name = device;
      return d;
    }
    case GlobalKind::kGetLayout: {
      SAFEMODEL_RETURN_IF_ERROR(arity(1, 1));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view layout, AsStr(g_, args[0], "layout name"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref l, NewRecord(RecordKind::kLayout));
      g_.at(l).name = std::string(layout);
      return l;
    }
    case GlobalKind::kNpReconstruct: {
      // _reconstruct(ndarray, (0,), b'b'): an empty array that BUILD fills.
      SAFEMODEL_RETURN_IF_ERROR(arity(3, 3));
      if (args[0].kind != Kind::kGlobal || g_.at(args[0]).global.kind != GlobalKind::kNpNdarray) {
        return Status::Unsupported(name + " of a numpy subclass (" + KindName(g_, args[0]) + ")" +
                                   At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref a, NewRecord(RecordKind::kNdArray));
      g_.at(a).aux = static_cast<uint32_t>(g_.arrays.size());
      g_.arrays.emplace_back();
      return a;
    }
    case GlobalKind::kNpDtype: {
      SAFEMODEL_RETURN_IF_ERROR(arity(1, 3));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view descr, AsStr(g_, args[0], "numpy dtype"));
      return NewDtype(descr);
    }
    case GlobalKind::kNpScalar: {
      SAFEMODEL_RETURN_IF_ERROR(arity(2, 2));
      Ref dt = args[0];
      if (dt.kind != Kind::kRecord || g_.at(dt).record != RecordKind::kNpDtype) {
        return Status::Malformed("numpy scalar without a dtype" + At());
      }
      const NpDtypeInfo& info = g_.dtypes[g_.at(dt).aux];
      if (info.object) return Status::Unsupported("numpy object scalar" + At());
      SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(info));
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, BytesLike(args[1], "numpy scalar data"));
      if (b.size() != info.itemsize) {
        return Status::Malformed("numpy scalar of dtype '" + info.descr + "' has " + Num(b.size()) +
                                 " bytes" + At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref s, NewRecord(RecordKind::kNpScalar));
      g_.at(s).aux = static_cast<uint32_t>(g_.arrays.size());
      ArrayInfo a;
      a.dtype = dt.id;
      a.data = b;
      a.built = true;
      g_.arrays.push_back(std::move(a));
      return s;
    }
    case GlobalKind::kNpFromBuffer: {
      // _frombuffer(buffer, dtype, shape, order): protocol-5 arrays.
      SAFEMODEL_RETURN_IF_ERROR(arity(4, 4));
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, BytesLike(args[0], "numpy buffer"));
      Ref dt = args[1];
      if (dt.kind != Kind::kRecord || g_.at(dt).record != RecordKind::kNpDtype) {
        return Status::Malformed("numpy _frombuffer without a dtype" + At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<uint64_t> shape, Shape(args[2], "numpy shape"));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view order, AsStr(g_, args[3], "numpy order"));
      if (order != "C" && order != "F")
        return Status::Malformed("numpy order must be 'C' or 'F'" + At());
      const NpDtypeInfo& dinfo = g_.dtypes[g_.at(dt).aux];
      SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(dinfo));
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(shape, "numpy shape"));
      uint64_t need;
      if (!CheckedMul(count, dinfo.itemsize, &need) || need != b.size()) {
        return Status::Malformed("numpy buffer of " + Num(b.size()) + " bytes for " + Num(count) +
                                 " elements of '" + dinfo.descr + "'" + At());
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref a, NewRecord(RecordKind::kNdArray));
      g_.at(a).aux = static_cast<uint32_t>(g_.arrays.size());
      ArrayInfo info;
      info.dtype = dt.id;
      info.shape = std::move(shape);
      info.fortran = order == "F";
      info.data = b;
      info.built = true;
      g_.arrays.push_back(std::move(info));
      return a;
    }
    default:
      return Status::Unsupported(name +
                                 " is a known name but is not called this way by any "
                                 "known writer" +
                                 At());
  }
}

Result<Ref> MachineImpl::NewObject(Ref cls, const std::vector<Ref>& args, uint8_t op) {
  if (IsOpaque(cls)) return Opaque();
  if (cls.kind != Kind::kGlobal) {
    return Status::Malformed(std::string(OpName(op)) + " of " + KindName(g_, cls) +
                             ", which is not a class" + At());
  }
  Object& c = g_.at(cls);
  const GlobalKind kind = c.global.kind;
  const bool user =
      kind == GlobalKind::kUnknown &&
      std::find(user_globals_.begin(), user_globals_.end(), cls.id) != user_globals_.end();
  if (kind == GlobalKind::kUnknown && !user) return Opaque();  // refused when read
  if (kind == GlobalKind::kOrderedDict && args.empty()) return Reduce(cls, {});
  if (kind == GlobalKind::kJoblibFileWrapper) {
    m_.Refuse("pickle.external_file", op_offset_,
              c.name + " at byte " + Num(m_.options().base + op_offset_) +
                  ": the array's data lives in a separate file, which safemodel does not read",
              {c.name});
    return Opaque();
  }
  if (kind != GlobalKind::kNamespace && kind != GlobalKind::kNnModule &&
      kind != GlobalKind::kJoblibArrayWrapper && !user) {
    return Status::Unsupported(std::string(OpName(op)) + " of " + c.name + At());
  }
  if (!args.empty()) {
    if (user) {
      m_.Refuse("pickle.call", op_offset_,
                c.name + " at byte " + Num(m_.options().base + op_offset_) + ": " + OpName(op) +
                    " passes arguments to a user-defined class's __new__",
                {c.name});
      return Opaque();
    }
    return Status::Unsupported(std::string(OpName(op)) + " of " + c.name + " with arguments" +
                               At());
  }
  if (user) c.consumed = true;
  if (kind == GlobalKind::kJoblibArrayWrapper) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref w, NewRecord(RecordKind::kJoblibArray));
    g_.at(w).aux = static_cast<uint32_t>(g_.instances.size());
    g_.instances.push_back({cls.id, Ref::None(), Ref::None(), false});
    return w;
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref inst, NewRecord(RecordKind::kInstance));
  g_.at(inst).aux = static_cast<uint32_t>(g_.instances.size());
  g_.instances.push_back({cls.id, Ref::None(), Ref::None(), false});
  return inst;
}

// ---- Tensors ------------------------------------------------------------------------

Result<Ref> MachineImpl::RebuildTensor(GlobalKind kind, const std::vector<Ref>& args) {
  const char* name = kind == GlobalKind::kRebuildTensor     ? "torch._utils._rebuild_tensor"
                     : kind == GlobalKind::kRebuildTensorV2 ? "torch._utils._rebuild_tensor_v2"
                                                            : "torch._utils._rebuild_tensor_v3";
  size_t lo = kind == GlobalKind::kRebuildTensor ? 4 : kind == GlobalKind::kRebuildTensorV2 ? 6 : 7;
  size_t hi = kind == GlobalKind::kRebuildTensor ? 4 : lo + 1;
  if (args.size() < lo || args.size() > hi) {
    return Status::Malformed(std::string(name) + " called with " + Num(args.size()) + " arguments" +
                             At());
  }
  Ref storage = args[0];
  if (storage.kind != Kind::kRecord || g_.at(storage).record != RecordKind::kStorage) {
    return Status::Malformed(std::string(name) + ": first argument must be a storage, not " +
                             KindName(g_, storage) + At());
  }
  TensorInfo t;
  t.storage = storage.id;
  const StorageInfo& s = g_.storages[g_.at(storage).aux];
  // torch's set_() takes an int offset; a bool (an int to pickle) is refused.
  if (args[1].kind != Kind::kInt) {
    return Status::Malformed(std::string(name) + ": storage offset must be an int, not " +
                             KindName(g_, args[1]) + At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(int64_t offset, AsInt(g_, args[1], "storage offset"));
  if (offset < 0) return Status::Malformed("negative storage offset" + At());
  t.offset = static_cast<uint64_t>(offset);
  SAFEMODEL_ASSIGN_OR_RETURN(t.shape, Shape(args[2], "tensor size"));
  SAFEMODEL_ASSIGN_OR_RETURN(t.strides, Strides(args[3], "tensor stride"));
  if (t.strides.size() != t.shape.size()) {
    return Status::Malformed("tensor has " + Num(t.shape.size()) + " sizes but " +
                             Num(t.strides.size()) + " strides" + At());
  }
  size_t meta_index = kind == GlobalKind::kRebuildTensorV2 ? 6 : 7;
  if (args.size() > meta_index) {
    Ref meta = args[meta_index];
    bool empty =
        meta.kind == Kind::kNone || (meta.kind == Kind::kDict && g_.at(meta).items.empty());
    if (!empty) {
      return Status::Unsupported("tensor with metadata (conjugate/negative bits) is not converted" +
                                 At());
    }
  }
  if (kind == GlobalKind::kRebuildTensorV3) {
    Ref dt = args[6];
    if (dt.kind != Kind::kGlobal || g_.at(dt).global.kind != GlobalKind::kTorchDType) {
      return Status::Malformed(std::string(name) + ": dtype must be a torch dtype" + At());
    }
    if (g_.at(dt).global.dtype == DType::kInvalid || g_.at(dt).global.quantized) {
      return Status::Unsupported("tensor dtype " + g_.at(dt).name + " is not supported" + At());
    }
    t.dtype = g_.at(dt).global.dtype;
    if (s.dtype != DType::kInvalid && s.dtype != t.dtype) {
      return Status::Malformed("tensor dtype " + g_.at(dt).name +
                               " differs from its storage type " + s.type_name + At());
    }
  } else {
    if (s.quantized) {
      return Status::Malformed("a plain tensor over quantized storage " + s.type_name + At());
    }
    if (s.dtype == DType::kInvalid) {
      return Status::Malformed(std::string(name) + " over an untyped storage" + At());
    }
    t.dtype = s.dtype;
  }
  if (kind != GlobalKind::kRebuildTensor) {
    SAFEMODEL_ASSIGN_OR_RETURN(t.requires_grad, RequiresGrad(args[4], t.dtype, name));
    SAFEMODEL_RETURN_IF_ERROR(CheckEmptyHooks(args[5]));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewRecord(RecordKind::kTensor));
  g_.at(r).aux = static_cast<uint32_t>(g_.tensors.size());
  g_.tensors.push_back(std::move(t));
  return r;
}

Result<Ref> MachineImpl::RebuildQTensor(const std::vector<Ref>& args) {
  if (args.size() != 7) {
    return Status::Malformed("torch._utils._rebuild_qtensor called with " + Num(args.size()) +
                             " arguments" + At());
  }
  Ref storage = args[0];
  if (storage.kind != Kind::kRecord || g_.at(storage).record != RecordKind::kStorage) {
    return Status::Malformed("quantized tensor without a storage" + At());
  }
  const StorageInfo& s = g_.storages[g_.at(storage).aux];
  if (!s.quantized || s.dtype == DType::kInvalid) {
    return Status::Unsupported("quantized tensor over storage " + s.type_name +
                               " (quint8, qint8 and qint32 are converted)" + At());
  }
  TensorInfo t;
  t.layout = TensorInfo::Layout::kQuantized;
  t.storage = storage.id;
  t.dtype = s.dtype;
  t.qdtype = s.dtype == DType::kU8 ? "quint8" : s.dtype == DType::kI8 ? "qint8" : "qint32";
  if (args[1].kind != Kind::kInt) {
    return Status::Malformed("torch._utils._rebuild_qtensor: storage offset must be an int, not " +
                             KindName(g_, args[1]) + At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(int64_t offset, AsInt(g_, args[1], "storage offset"));
  if (offset < 0) return Status::Malformed("negative storage offset" + At());
  t.offset = static_cast<uint64_t>(offset);
  SAFEMODEL_ASSIGN_OR_RETURN(t.shape, Shape(args[2], "tensor size"));
  SAFEMODEL_ASSIGN_OR_RETURN(t.strides, Strides(args[3], "tensor stride"));
  if (t.strides.size() != t.shape.size())
    return Status::Malformed("sizes and strides differ in rank" + At());
  Ref q = args[4];
  if (q.kind != Kind::kTuple || g_.at(q).items.empty() || g_.at(q).items[0].kind != Kind::kGlobal ||
      g_.at(g_.at(q).items[0]).global.kind != GlobalKind::kQScheme) {
    return Status::Malformed("quantizer parameters must start with a qscheme" + At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<Ref> qp, CopyItems(q));
  const std::string scheme = g_.at(qp[0]).name.substr(std::string_view("torch.").size());
  t.qscheme = scheme;
  if (scheme == "per_tensor_affine" || scheme == "per_tensor_symmetric") {
    if (qp.size() != 3 || (qp[1].kind != Kind::kFloat && qp[1].kind != Kind::kInt)) {
      return Status::Malformed("per-tensor quantizer expects (scheme, scale, zero_point)" + At());
    }
    t.scale = qp[1].kind == Kind::kFloat ? qp[1].f : static_cast<double>(qp[1].i);
    SAFEMODEL_ASSIGN_OR_RETURN(t.zero_point, AsInt(g_, qp[2], "zero point"));
  } else if (scheme == "per_channel_affine" || scheme == "per_channel_symmetric" ||
             scheme == "per_channel_affine_float_qparams") {
    auto is_tensor = [&](Ref r) {
      return r.kind == Kind::kRecord && g_.at(r).record == RecordKind::kTensor &&
             g_.tensors[g_.at(r).aux].layout == TensorInfo::Layout::kStrided;
    };
    if (qp.size() != 4 || !is_tensor(qp[1]) || !is_tensor(qp[2])) {
      return Status::Malformed("per-channel quantizer expects (scheme, scales, zero_points, axis)" +
                               At());
    }
    t.scales = qp[1];
    t.zero_points = qp[2];
    SAFEMODEL_ASSIGN_OR_RETURN(t.axis, AsInt(g_, qp[3], "axis"));
  } else {
    return Status::Unsupported("quantization scheme " + scheme + At());
  }
  // Quantized dtypes are integers to torch: requires_grad must be False.
  SAFEMODEL_ASSIGN_OR_RETURN(t.requires_grad,
                             RequiresGrad(args[5], DType::kI8, "torch._utils._rebuild_qtensor"));
  SAFEMODEL_RETURN_IF_ERROR(CheckEmptyHooks(args[6]));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewRecord(RecordKind::kTensor));
  g_.at(r).aux = static_cast<uint32_t>(g_.tensors.size());
  g_.tensors.push_back(std::move(t));
  return r;
}

Result<Ref> MachineImpl::RebuildSparse(const std::vector<Ref>& args) {
  if (args.size() != 2 || args[0].kind != Kind::kRecord ||
      g_.at(args[0]).record != RecordKind::kLayout || args[1].kind != Kind::kTuple) {
    return Status::Malformed("a sparse tensor rebuild expects (layout, data)" + At());
  }
  const std::string layout = g_.at(args[0]).name;
  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<Ref> data, CopyItems(args[1]));
  std::vector<std::string> roles;
  if (layout == "torch.sparse_coo") {
    roles = {"indices", "values"};
  } else if (layout == "torch.sparse_csr" || layout == "torch.sparse_bsr") {
    roles = {"crow_indices", "col_indices", "values"};
  } else if (layout == "torch.sparse_csc" || layout == "torch.sparse_bsc") {
    roles = {"ccol_indices", "row_indices", "values"};
  } else {
    return Status::Unsupported("sparse layout '" + Printable(layout) + "'" + At());
  }
  // COO may carry a trailing is_coalesced flag (torch >= 2.1).
  if (data.size() != roles.size() + 1 &&
      !(layout == "torch.sparse_coo" && data.size() == roles.size() + 2)) {
    return Status::Malformed("sparse tensor data has " + Num(data.size()) + " parts" + At());
  }
  TensorInfo t;
  t.layout = TensorInfo::Layout::kSparse;
  t.sparse_layout = layout.substr(std::string_view("torch.").size());
  for (size_t i = 0; i < roles.size(); ++i) {
    Ref c = data[i];
    if (c.kind != Kind::kRecord || g_.at(c).record != RecordKind::kTensor ||
        g_.tensors[g_.at(c).aux].layout != TensorInfo::Layout::kStrided) {
      return Status::Malformed("sparse tensor part '" + roles[i] + "' must be a dense tensor" +
                               At());
    }
    t.components.emplace_back(roles[i], c);
  }
  SAFEMODEL_ASSIGN_OR_RETURN(t.shape, Shape(data[roles.size()], "sparse tensor size"));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewRecord(RecordKind::kTensor));
  g_.at(r).aux = static_cast<uint32_t>(g_.tensors.size());
  g_.tensors.push_back(std::move(t));
  return r;
}

// ---- BUILD ------------------------------------------------------------------------

Status MachineImpl::BuildDtype(Object& obj, Ref state) {
  if (state.kind != Kind::kTuple)
    return Status::Malformed("numpy dtype state must be a tuple" + At());
  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<Ref> s, CopyItems(state));
  // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
  if (s.size() != 8 && s.size() != 9) {
    return Status::Unsupported("numpy dtype state of " + Num(s.size()) + " items" + At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view order, AsStr(g_, s[1], "numpy byte order"));
  if (order != "<" && order != ">" && order != "|") {
    return Status::Unsupported("numpy byte order '" + Printable(order) + "'" + At());
  }
  if (s[2].kind != Kind::kNone || s[3].kind != Kind::kNone || s[4].kind != Kind::kNone) {
    return Status::Unsupported("structured or sub-array numpy dtypes are not supported" + At());
  }
  NpDtypeInfo& info = g_.dtypes[obj.aux];
  // numpy writes flags 0 for numeric types and 63 (NPY_OBJECT_DTYPE_FLAGS)
  // for object; setstate applies whatever the file says, and a numeric dtype
  // with NPY_ITEM_HASOBJECT/NPY_LIST_PICKLE makes numpy read the array's data
  // as a list of objects (or its bytes as object pointers).
  SAFEMODEL_ASSIGN_OR_RETURN(int64_t flags, AsInt(g_, s[7], "numpy dtype flags"));
  const int64_t want_flags = info.object ? 63 : 0;
  if (flags != want_flags) {
    return Status::Unsupported("numpy dtype '" + Printable(info.descr) + "' with flags " +
                               std::to_string(flags) + " (numpy writes " +
                               std::to_string(want_flags) + "; other flags change how numpy reads "
                               "the array's data)" + At());
  }
  info.byteorder = order[0];
  if (info.byteorder == '|' && info.itemsize > 1 && info.dtype != DType::kInvalid) {
    return Status::Malformed("numpy dtype '" + info.descr + "' needs a byte order" + At());
  }
  return Status::Ok();
}

Status MachineImpl::BuildArray(Object& obj, Ref state) {
  ArrayInfo& a = g_.arrays[obj.aux];
  if (a.built) return Status::Malformed("numpy array built twice" + At());
  if (state.kind != Kind::kTuple)
    return Status::Malformed("numpy array state must be a tuple" + At());
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> s, CopyItems(state));
  if (s.size() == 5) {
    SAFEMODEL_ASSIGN_OR_RETURN(int64_t version, AsInt(g_, s[0], "numpy state version"));
    if (version != 1)
      return Status::Unsupported("numpy array state version " + std::to_string(version) + At());
    s.erase(s.begin());
  }
  if (s.size() != 4)
    return Status::Malformed("numpy array state has " + Num(s.size()) + " items" + At());
  SAFEMODEL_ASSIGN_OR_RETURN(a.shape, Shape(s[0], "numpy shape"));
  Ref dt = s[1];
  if (dt.kind != Kind::kRecord || g_.at(dt).record != RecordKind::kNpDtype) {
    return Status::Malformed("numpy array state without a dtype" + At());
  }
  a.dtype = dt.id;
  if (s[2].kind != Kind::kBool && s[2].kind != Kind::kInt) {
    return Status::Malformed("numpy fortran flag must be a bool" + At());
  }
  a.fortran = s[2].i != 0;
  const NpDtypeInfo& info = g_.dtypes[g_.at(dt).aux];
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(a.shape, "numpy shape"));
  if (info.object) {
    if (s[3].kind != Kind::kList || g_.at(s[3]).items.size() != count) {
      return Status::Malformed("numpy object array state must list its " + Num(count) +
                               " elements" + At());
    }
    a.items = s[3];
  } else {
    SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(info));
    SAFEMODEL_ASSIGN_OR_RETURN(a.data, BytesLike(s[3], "numpy array data"));
    uint64_t need;
    if (!CheckedMul(count, info.itemsize, &need) || need != a.data.size()) {
      return Status::Malformed("numpy array data is " + Num(a.data.size()) +
                               " bytes; its shape and dtype need " + Num(need) + At());
    }
  }
  a.built = true;
  return Status::Ok();
}

// A copy of dict `d` as it is now. Python copies a BUILD state into the
// instance's __dict__ item by item, so later changes to the state dict (a
// SETITEM through the memo) do not reach the instance: neither may they here.
Result<Ref> MachineImpl::Snapshot(Ref d) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, CopyItems(d));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, New(Kind::kDict));
  g_.at(copy).items = std::move(items);
  return copy;
}

// Attribute names that are instructions, not data, once set on an object:
// __class__ and __dict__ (set through the setattr half of a BUILD state they
// replace the object's class - joblib then reads raw array bytes from the
// stream where the converter saw opcodes - or all its attributes), and
// __setstate__/__reduce__/__reduce_ex__/__getstate__ and every other special
// name (a later BUILD calls inst.__setstate__ found on the instance; copy and
// pickle call __reduce_ex__ found there). Every dunder name is refused, so a
// hook added to Python later is refused too.
static bool IsSpecialName(std::string_view k) {
  return k.size() >= 4 && k.substr(0, 2) == "__" && k.substr(k.size() - 2) == "__";
}

// Checks the keys of one half of a BUILD state for an object of class `cls`.
// `setattr`: the slot-state half, applied with setattr (str keys only).
// Non-str keys in the __dict__ half are stored by the C unpickler (torch,
// numpy) and rejected by the Python one (joblib): two loaders, two objects.
Status MachineImpl::CheckState(Ref dict, const std::string& cls, bool setattr, bool module) {
  if (dict.kind != Kind::kDict) return Status::Ok();
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, CopyItems(dict));
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    Ref k = items[i], v = items[i + 1];
    if (k.kind != Kind::kStr) {
      return Status::Unsupported(
          "BUILD state of " + cls + " has a key that is " + KindName(g_, k) +
          ", not a str (the C unpickler stores it, the Python one used by joblib rejects it)" +
          At());
    }
    const std::string_view name = g_.text(k);
    if (IsSpecialName(name)) {
      m_.Refuse("pickle.state", op_offset_,
                "BUILD at byte " + Num(m_.options().base + op_offset_) + " sets '" +
                    Printable(name) + "' on an instance of " + cls + " (" +
                    (setattr ? "through setattr" : "in its __dict__") +
                    "): a special name is an instruction to the loader (a class change, a hook "
                    "that later opcodes or loaders call), not data",
                {cls + "." + std::string(name)});
      continue;
    }
    // nn.Module hooks are callables torch calls when the module runs or its
    // state dict is saved or loaded; a saved module has none.
    const bool hooks = name.size() > 6 && name.substr(name.size() - 6) == "_hooks";
    const bool empty = v.kind == Kind::kNone || (v.kind == Kind::kDict && g_.at(v).items.empty());
    if (module && hooks && !empty && !IsOpaque(v)) {
      m_.Refuse("pickle.state", op_offset_,
                "BUILD at byte " + Num(m_.options().base + op_offset_) + " gives " + cls + " '" +
                    Printable(name) + "' (" + KindName(g_, v) +
                    "): hooks are called by torch when the module runs, saves or loads",
                {cls + "." + std::string(name)});
    }
  }
  return Status::Ok();
}

// Merges the items of dict `src` into dict `dst` (a __dict__ update).
Status MachineImpl::Merge(Ref dst, Ref src) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, CopyItems(src));
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    SAFEMODEL_RETURN_IF_ERROR(SetItem(dst, items[i], items[i + 1]));
  }
  return Status::Ok();
}

Status MachineImpl::BuildInstance(Ref obj, Ref state) {
  const uint32_t aux = g_.at(obj).aux;
  const std::string cls = g_.objects[g_.instances[aux].cls].name;
  const bool module = g_.objects[g_.instances[aux].cls].global.kind == GlobalKind::kNnModule;
  Ref dict = state, slots = Ref::None();
  if (state.kind == Kind::kTuple && g_.at(state).items.size() == 2) {
    if (module) {
      // Module.__setstate__ does self.__dict__.update(state): a tuple fails.
      return Status::Malformed("BUILD state of " + cls +
                               " is a tuple; torch.nn.Module.__setstate__ takes a dict" + At());
    }
    dict = g_.at(state).items[0];
    slots = g_.at(state).items[1];
    if (slots.kind != Kind::kNone && slots.kind != Kind::kDict) {
      return Status::Malformed("instance slot state must be a dict" + At());
    }
  }
  if (dict.kind != Kind::kDict && dict.kind != Kind::kNone) {
    return Status::Unsupported("instance state of " + cls + " is " + KindName(g_, dict) +
                               ", not a dict" + At());
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckState(dict, cls, /*setattr=*/false, module));
  SAFEMODEL_RETURN_IF_ERROR(CheckState(slots, cls, /*setattr=*/true, module));
  // Both halves update what the instance already has (a second BUILD, as
  // __dict__.update and setattr do); the instance keeps its own copies.
  for (auto [part, is_slots] : {std::pair{dict, false}, std::pair{slots, true}}) {
    if (part.kind != Kind::kDict) continue;
    Ref current = is_slots ? g_.instances[aux].slots : g_.instances[aux].state;
    if (current.kind != Kind::kDict) {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, Snapshot(part));
      (is_slots ? g_.instances[aux].slots : g_.instances[aux].state) = copy;
    } else {
      SAFEMODEL_RETURN_IF_ERROR(Merge(current, part));
    }
  }
  g_.instances[aux].built = true;
  return Status::Ok();
}

// OrderedDict attributes (a torch state_dict's _metadata), kept as attrs.
// OrderedDict has no __setstate__: the dict half updates its __dict__.
Status MachineImpl::BuildOrderedDict(Ref obj, Ref state) {
  Ref dict = state;
  if (state.kind == Kind::kTuple && g_.at(state).items.size() == 2) {
    dict = g_.at(state).items[0];
    Ref slots = g_.at(state).items[1];
    if (slots.kind != Kind::kNone && !(slots.kind == Kind::kDict && g_.at(slots).items.empty())) {
      return Status::Unsupported("OrderedDict BUILD with slot state (setattr on the dict)" + At());
    }
  }
  if (dict.kind != Kind::kDict && dict.kind != Kind::kNone) {
    return Status::Malformed("OrderedDict state must be a dict" + At());
  }
  if (dict.kind != Kind::kDict) return Status::Ok();
  SAFEMODEL_RETURN_IF_ERROR(CheckState(dict, "collections.OrderedDict", false, false));
  if (g_.at(obj).attrs.kind != Kind::kDict) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, Snapshot(dict));
    g_.at(obj).attrs = copy;
    return Status::Ok();
  }
  return Merge(g_.at(obj).attrs, dict);
}

Status MachineImpl::Build(Ref* target, Ref state) {
  Ref obj = *target;
  if (IsOpaque(obj) || IsOpaque(state)) return Status::Ok();
  if (obj.kind == Kind::kGlobal) {
    const std::string& name = g_.at(obj).name;
    m_.Refuse("pickle.build_global", op_offset_,
              name + " at byte " + Num(m_.options().base + op_offset_) +
                  ": BUILD sets attributes on a module, class or function, which changes what "
                  "later names resolve to",
              {name});
    *target = Opaque().value();
    return Status::Ok();
  }
  if (obj.kind == Kind::kDict && g_.at(obj).ordered) return BuildOrderedDict(obj, state);
  if (obj.kind != Kind::kRecord) {
    return Status::Malformed("BUILD on " + KindName(g_, obj) + At());
  }
  Object& o = g_.at(obj);
  switch (o.record) {
    case RecordKind::kInstance:
      return BuildInstance(obj, state);
    case RecordKind::kNdArray:
      return BuildArray(o, state);
    case RecordKind::kNpDtype:
      return BuildDtype(o, state);
    case RecordKind::kJoblibArray:
      return BuildJoblibWrapper(target, state);
    default:
      return Status::Malformed("BUILD on " + KindName(g_, obj) + At());
  }
}

// joblib writes an array's bytes right after the wrapper's BUILD, outside any
// pickle opcode: [1-byte pad length, pad bytes] when the state names an
// alignment, then the elements (or, for object arrays, a nested pickle).
// Reading them is part of the stream syntax, so errors here are structural.
Status MachineImpl::BuildJoblibWrapper(Ref* target, Ref state) {
  const uint32_t aux = g_.at(*target).aux;
  const std::string cls = g_.objects[g_.instances[aux].cls].name;
  if (contexts_.size() > 1 || !m_.options().joblib) {
    // A plain unpickler only sets the wrapper's attributes; nothing follows.
    Ref dict = state;
    if (state.kind == Kind::kTuple && g_.at(state).items.size() == 2) {
      dict = g_.at(state).items[0];
      SAFEMODEL_RETURN_IF_ERROR(CheckState(g_.at(state).items[1], cls, true, false));
    }
    SAFEMODEL_RETURN_IF_ERROR(CheckState(dict, cls, false, false));
    if (dict.kind == Kind::kDict) {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, Snapshot(dict));
      g_.instances[aux].state = copy;
    }
    g_.instances[aux].built = true;
    return Status::Ok();
  }
  if (state.kind != Kind::kDict) return Bad("joblib NumpyArrayWrapper state must be a dict");
  SAFEMODEL_RETURN_IF_ERROR(CheckState(state, cls, false, false));
  auto field = [&](std::string_view key) -> std::optional<Ref> {
    const auto& items = g_.at(state).items;
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      if (items[i].kind == Kind::kStr && g_.text(items[i]) == key) return items[i + 1];
    }
    return std::nullopt;
  };
  auto subclass = field("subclass"), shape_ref = field("shape"), order_ref = field("order"),
       dtype_ref = field("dtype"), align = field("numpy_array_alignment_bytes"),
       allow_mmap = field("allow_mmap");
  if (m_.options().compressed && allow_mmap && allow_mmap->kind == Kind::kBool && allow_mmap->i &&
      !noted_mmap_) {
    // joblib 1.2 writes this itself; only a caller passing mmap_mode reads
    // the array differently (joblib's own bug), so it is noted, not refused.
    noted_mmap_ = true;
    m_.ctx_.Note("joblib.mmap_compressed", m_.Location(op_offset_),
                 "a wrapper in this compressed file allows mmap: joblib.load(mmap_mode=...) maps "
                 "the compressed file at the decompressed offset and returns other bytes; the "
                 "arrays converted are those joblib.load returns without mmap_mode");
  }
  if (!subclass || !shape_ref || !order_ref || !dtype_ref) {
    return Bad("joblib NumpyArrayWrapper state lacks subclass, shape, order or dtype");
  }
  if (subclass->kind != Kind::kGlobal || (g_.at(*subclass).global.kind != GlobalKind::kNpNdarray &&
                                          g_.at(*subclass).global.kind != GlobalKind::kNpMemmap)) {
    return Status::Unsupported(m_.options().where + ": joblib array of subclass " +
                               KindName(g_, *subclass) + At());
  }
  Result<std::vector<uint64_t>> shape = Shape(*shape_ref, "joblib array shape");
  if (!shape.ok()) return Bad(shape.status().message());
  Result<std::string_view> order = AsStr(g_, *order_ref, "joblib array order");
  if (!order.ok() || (*order != "C" && *order != "F"))
    return Bad("joblib array order must be 'C' or 'F'");
  if (dtype_ref->kind != Kind::kRecord || g_.at(*dtype_ref).record != RecordKind::kNpDtype) {
    return Bad("joblib array dtype must be a numpy dtype");
  }
  const NpDtypeInfo& dt = g_.dtypes[g_.at(*dtype_ref).aux];
  // The array's bytes are read from the file, not from a frame: the frame
  // before them must be used up (joblib commits it before writing).
  if (in_frame_ && pos_ != frame_end_) {
    return Bad("joblib array data starts inside a pickle frame");
  }
  in_frame_ = false;
  limit_ = data_.size();
  g_.joblib = true;
  // Numeric arrays are padded to the alignment the state names; object
  // arrays are a nested pickle with no padding (joblib's write_array).
  if (!dt.object && align && align->kind != Kind::kNone) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t pad, ReadUInt(1, "joblib array padding length"));
    SAFEMODEL_RETURN_IF_ERROR(Take(pad, "joblib array padding").status());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref array, NewRecord(RecordKind::kNdArray));
  g_.at(array).aux = static_cast<uint32_t>(g_.arrays.size());
  ArrayInfo info;
  info.dtype = dtype_ref->id;
  info.shape = *shape;
  info.fortran = *order == "F";
  Result<uint64_t> count = ElementCount(info.shape, "joblib array shape");
  if (!count.ok()) return count.status();
  if (dt.object) {
    g_.arrays.push_back(std::move(info));
    *target = array;
    // The elements are a complete nested pickle; the machine reads it in a
    // new context and FinishNested() hands the result to this array.
    if (contexts_.size() > kMaxNestedPickles) return Bad("nested pickles deeper than allowed");
    contexts_.emplace_back();
    C().wrapper = array.id;
    return Status::Ok();
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(dt));
  uint64_t nbytes;
  if (!CheckedMul(*count, dt.itemsize, &nbytes)) return Bad("joblib array size overflows");
  SAFEMODEL_ASSIGN_OR_RETURN(info.data, Take(nbytes, "joblib array data"));
  info.built = true;
  g_.arrays.push_back(std::move(info));
  *target = array;
  return Status::Ok();
}

Status MachineImpl::FinishNested(Ref result) {
  const ObjId array = C().wrapper;
  if (in_frame_ && pos_ != frame_end_) return Bad("nested pickle ends inside a frame");
  in_frame_ = false;
  contexts_.pop_back();
  ArrayInfo& a = g_.arrays[g_.objects[array].aux];
  if (IsOpaque(result)) {
    a.built = true;
    return Status::Ok();
  }
  if (result.kind != Kind::kRecord || g_.at(result).record != RecordKind::kNdArray) {
    return Bad("joblib object array data is " + KindName(g_, result) + ", not an array");
  }
  const ArrayInfo& inner = g_.arrays[g_.at(result).aux];
  if (!inner.built || inner.items.kind != Kind::kList) {
    return Bad("joblib object array data is not an object array");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(a.shape, "joblib array shape"));
  if (g_.at(inner.items).items.size() != count) {
    return Bad("joblib object array holds " + Num(g_.at(inner.items).items.size()) +
               " elements, its shape needs " + Num(count));
  }
  a.items = inner.items;
  a.built = true;
  return Status::Ok();
}

// APPEND(S), SETITEM(S), ADDITEMS on their target.
Status MachineImpl::ContainerOp(uint8_t op, Ref target, const std::vector<Ref>& items) {
  if (IsOpaque(target)) return Status::Ok();
  const bool to_list = op == kAppend || op == kAppends;
  const bool to_dict = op == kSetItem || op == kSetItems;
  if (target.kind == Kind::kRecord && g_.at(target).record == RecordKind::kInstance) {
    const std::string& cls = g_.objects[g_.instances[g_.at(target).aux].cls].name;
    m_.Refuse("pickle.call", op_offset_,
              std::string(OpName(op)) + " at byte " + Num(m_.options().base + op_offset_) +
                  " on an instance of " + cls + " calls its " +
                  (to_list   ? "append/extend"
                   : to_dict ? "__setitem__"
                             : "add") +
                  " method",
              {cls});
    return Status::Ok();
  }
  if (target.kind == Kind::kGlobal) {
    m_.Refuse("pickle.call", op_offset_,
              std::string(OpName(op)) + " at byte " + Num(m_.options().base + op_offset_) +
                  " on the name " + g_.at(target).name + " calls one of its methods",
              {g_.at(target).name});
    return Status::Ok();
  }
  if (to_list) {
    if (target.kind != Kind::kList) {
      Remember(Bad(std::string(OpName(op)) + " on " + KindName(g_, target) + ", not a list"));
      return Status::Ok();
    }
    auto& list = g_.at(target).items;
    SAFEMODEL_RETURN_IF_ERROR(CheckGrowth(list.size() + items.size(), "list"));
    list.insert(list.end(), items.begin(), items.end());
    return Status::Ok();
  }
  if (to_dict) {
    if (target.kind != Kind::kDict) {
      Remember(Bad(std::string(OpName(op)) + " on " + KindName(g_, target) + ", not a dict"));
      return Status::Ok();
    }
    if (items.size() % 2 != 0) return Bad(std::string(OpName(op)) + " with an odd number of items");
    for (size_t i = 0; i < items.size(); i += 2) {
      Status s = SetItem(target, items[i], items[i + 1]);
      if (!s.ok()) {
        Remember(s);
        return Status::Ok();
      }
    }
    return Status::Ok();
  }
  if (target.kind != Kind::kSet) {
    Remember(Bad("ADDITEMS on " + KindName(g_, target) + ", not a set"));
    return Status::Ok();
  }
  for (Ref item : items) {
    Status s = AddItem(target, item);
    if (!s.ok()) {
      Remember(s);
      return Status::Ok();
    }
  }
  return Status::Ok();
}

// ---- The loop -------------------------------------------------------------------------

Result<Ref> MachineImpl::Run(uint64_t* end) {
  contexts_.reserve(kMaxNestedPickles + 1);
  contexts_.emplace_back();
  for (;;) {
    op_offset_ = pos_;
    if (in_frame_ && pos_ == frame_end_) in_frame_ = false;
    limit_ = in_frame_ ? frame_end_ : data_.size();
    if (pos_ >= limit_) {
      return Status::Malformed(m_.options().where + ": the stream ends at byte " +
                               Num(m_.options().base + pos_) + " without a STOP opcode");
    }
    uint8_t op = data_[pos_++];
    bool stop = false;
    SAFEMODEL_ASSIGN_OR_RETURN(Ref result, Step(op, &stop));
    if (!stop) continue;
    if (contexts_.size() > 1) {
      if (!C().stack.empty() || !C().marks.empty()) {
        return Bad("STOP of a nested pickle leaves values or marks on the stack");
      }
      SAFEMODEL_RETURN_IF_ERROR(FinishNested(result));
      continue;
    }
    if (in_frame_ && pos_ != frame_end_) {
      return Status::Malformed(m_.options().where + ": STOP at byte " +
                               Num(m_.options().base + op_offset_) +
                               " leaves bytes of its frame unread");
    }
    if (!C().stack.empty() || !C().marks.empty()) {
      return Status::Malformed(m_.options().where + ": STOP at byte " +
                               Num(m_.options().base + op_offset_) +
                               " leaves values or marks on the stack");
    }
    // Names of user classes that were referred to but never instantiated
    // (a bare reference to a user function, say) are refused like any
    // unknown name.
    for (ObjId id : user_globals_) {
      Object& g = g_.objects[id];
      if (!g.consumed) {
        m_.Refuse("pickle.global", g.offset,
                  g.name + " at byte " + Num(m_.options().base + g.offset) +
                      ": a name from the user's script that is not used as a class to "
                      "instantiate; loading would resolve it",
                  {g.name});
      }
    }
    *end = pos_;
    if (!semantic_.ok()) return semantic_;
    return result;
  }
}

// PROTO, FRAME and STOP.
Result<Ref> MachineImpl::StepFraming(uint8_t op, bool* stop) {
  Context& c = C();
  switch (op) {
    case kProto: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, ReadUInt(1, "PROTO"));
      if (v > kHighestProtocol) return Bad("unsupported pickle protocol " + Num(v));
      c.proto = static_cast<uint8_t>(v);
      break;
    }
    case kFrame: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t len, ReadUInt(8, "FRAME"));
      if (in_frame_) return Bad("FRAME before the end of the current frame");
      if (len > data_.size() - pos_) {
        // The C unpickler stops here; the Python one reads on with a short
        // frame. Read on (to name what the rest refers to) and fail at the end.
        Remember(Bad("FRAME of " + Num(len) + " bytes but only " + Num(data_.size() - pos_) +
                     " remain"));
        len = data_.size() - pos_;
      }
      in_frame_ = true;
      frame_end_ = pos_ + len;
      break;
    }
    case kStop: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, Pop("STOP"));
      *stop = true;
      return r;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Ref::None();
}
// None, bools, ints and floats.
Result<Ref> MachineImpl::StepConstant(uint8_t op) {
  switch (op) {
    case kNone:
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::None()));
      break;
    case kNewTrue:
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Bool(true)));
      break;
    case kNewFalse:
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Bool(false)));
      break;
    case kInt: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("INT"));
      if (line == "00" || line == "01") {
        SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Bool(line == "01")));
        break;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, ParseDecimal(line, "INT"));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kLong: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("LONG"));
      if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, ParseDecimal(line, "LONG"));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kBinInt: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, ReadUInt(4, "BININT"));
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Int(static_cast<int32_t>(static_cast<uint32_t>(v)))));
      break;
    }
    case kBinInt1: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, ReadUInt(1, "BININT1"));
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Int(static_cast<int64_t>(v))));
      break;
    }
    case kBinInt2: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, ReadUInt(2, "BININT2"));
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Int(static_cast<int64_t>(v))));
      break;
    }
    case kLong1:
    case kLong4: {
      uint64_t n;
      if (op == kLong1) {
        SAFEMODEL_ASSIGN_OR_RETURN(n, ReadUInt(1, "LONG1"));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(uint64_t raw, ReadUInt(4, "LONG4"));
        if (static_cast<int32_t>(static_cast<uint32_t>(raw)) < 0)
          return Bad("LONG4 with a negative byte count");
        n = raw;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, op == kLong1 ? "LONG1" : "LONG4"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, MakeInt(b));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kFloat: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("FLOAT"));
      double v = 0;
      auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
      if (line.empty() || ec != std::errc() || p != line.data() + line.size()) {
        return Bad("FLOAT '" + Printable(line, 40) + "' is not a number");
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Float(v)));
      break;
    }
    case kBinFloat: {
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(8, "BINFLOAT"));
      uint64_t bits = 0;
      for (uint8_t x : b) bits = (bits << 8) | x;  // big-endian
      SAFEMODEL_RETURN_IF_ERROR(Push(Ref::Float(std::bit_cast<double>(bits))));
      break;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Ref::None();
}
// Text and bytes (and out-of-band buffers, which are refused).
Result<Ref> MachineImpl::StepString(uint8_t op) {
  switch (op) {
    case kString: {
      // A quoted Python 2 str literal, escape-decoded (codecs.escape_decode).
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("STRING"));
      if (line.size() < 2 || line.front() != line.back() ||
          (line.front() != '\'' && line.front() != '"')) {
        return Bad("STRING argument must be quoted");
      }
      std::string_view s = line.substr(1, line.size() - 2);
      std::string out;
      for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '\\') {
          out.push_back(s[i]);
          continue;
        }
        if (++i >= s.size()) return Bad("STRING ends with a lone backslash");
        char e = s[i];
        switch (e) {
          case '\n':
            break;
          case '\\':
            out.push_back('\\');
            break;
          case '\'':
            out.push_back('\'');
            break;
          case '"':
            out.push_back('"');
            break;
          case 'a':
            out.push_back('\a');
            break;
          case 'b':
            out.push_back('\b');
            break;
          case 'f':
            out.push_back('\f');
            break;
          case 'n':
            out.push_back('\n');
            break;
          case 'r':
            out.push_back('\r');
            break;
          case 't':
            out.push_back('\t');
            break;
          case 'v':
            out.push_back('\v');
            break;
          case 'x': {
            int hi = i + 1 < s.size() ? HexValue(static_cast<uint8_t>(s[i + 1])) : -1;
            int lo = i + 2 < s.size() ? HexValue(static_cast<uint8_t>(s[i + 2])) : -1;
            if (hi < 0 || lo < 0) return Bad("STRING has an invalid \\x escape");
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
            break;
          }
          default:
            if (e >= '0' && e <= '7') {
              int v = e - '0';
              for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7';
                   ++k) {
                v = v * 8 + (s[++i] - '0');
              }
              out.push_back(static_cast<char>(v & 0xFF));
            } else {
              out.push_back('\\');  // unknown escapes are kept
              out.push_back(e);
            }
        }
      }
      bool ascii = std::all_of(out.begin(), out.end(),
                               [](char ch) { return static_cast<uint8_t>(ch) < 0x80; });
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r,
                                 NewOwned(ascii ? Kind::kStr : Kind::kBytes, std::move(out)));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kBinString:
    case kShortBinString: {
      uint64_t n;
      if (op == kShortBinString) {
        SAFEMODEL_ASSIGN_OR_RETURN(n, ReadUInt(1, "SHORT_BINSTRING"));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(uint64_t raw, ReadUInt(4, "BINSTRING"));
        if (static_cast<int32_t>(static_cast<uint32_t>(raw)) < 0)
          return Bad("BINSTRING with a negative length");
        n = raw;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, "BINSTRING"));
      // Python 2 str: ASCII text decodes to str (the unpickler's default
      // encoding); anything else is kept as bytes.
      bool ascii = std::all_of(b.begin(), b.end(), [](uint8_t ch) { return ch < 0x80; });
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewData(ascii ? Kind::kStr : Kind::kBytes, b));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kUnicode: {
      // raw-unicode-escape: bytes are latin-1 except \uXXXX and \UXXXXXXXX.
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view s, ReadLine("UNICODE"));
      std::string out;
      for (size_t i = 0; i < s.size();) {
        auto ch = static_cast<uint8_t>(s[i++]);
        if (ch != '\\' || i >= s.size() || (s[i] != 'u' && s[i] != 'U')) {
          AppendUtf8(&out, ch);
          if (ch == '\\' && i < s.size()) AppendUtf8(&out, static_cast<uint8_t>(s[i++]));
          continue;
        }
        size_t count = s[i++] == 'u' ? 4 : 8;
        if (i + count > s.size()) return Bad("UNICODE has a truncated \\u escape");
        uint32_t cp = 0;
        for (size_t k = 0; k < count; ++k) {
          int h = HexValue(static_cast<uint8_t>(s[i + k]));
          if (h < 0) return Bad("UNICODE has an invalid \\u escape");
          cp = cp * 16 + static_cast<uint32_t>(h);
        }
        i += count;
        if (cp > 0x10FFFF) return Bad("UNICODE escape beyond U+10FFFF");
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          return Status::Unsupported(m_.options().where + ": UNICODE string with a surrogate" +
                                     At());
        }
        AppendUtf8(&out, cp);
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewOwned(Kind::kStr, std::move(out)));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kShortBinUnicode:
    case kBinUnicode:
    case kBinUnicode8: {
      uint64_t width = op == kShortBinUnicode ? 1 : op == kBinUnicode ? 4 : 8;
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, ReadUInt(width, "BINUNICODE"));
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, "BINUNICODE"));
      if (!IsValidUtf8(AsChars(b))) return Bad("string is not valid UTF-8 (or holds a surrogate)");
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewData(Kind::kStr, b));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kShortBinBytes:
    case kBinBytes:
    case kBinBytes8:
    case kByteArray8: {
      uint64_t width = op == kShortBinBytes ? 1 : op == kBinBytes ? 4 : 8;
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, ReadUInt(width, "BINBYTES"));
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, "BINBYTES"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r,
                                 NewData(op == kByteArray8 ? Kind::kByteArray : Kind::kBytes, b));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kNextBuffer:
      m_.Refuse("pickle.out_of_band_buffer", op_offset_,
                "NEXT_BUFFER at byte " + Num(m_.options().base + op_offset_) +
                    ": an out-of-band buffer supplied by the loading program, not by the file");
      SAFEMODEL_RETURN_IF_ERROR(Push(Opaque().value()));
      break;
    case kReadOnlyBuffer: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * top, Top("READONLY_BUFFER"));
      if (top->kind == Kind::kByteArray) {
        SAFEMODEL_ASSIGN_OR_RETURN(*top, NewData(Kind::kBytes, g_.at(*top).data));
      } else if (top->kind != Kind::kBytes && !IsOpaque(*top)) {
        SAFEMODEL_ASSIGN_OR_RETURN(*top, Semantic(Bad("READONLY_BUFFER on " + KindName(g_, *top))));
      }
      break;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Ref::None();
}
// Building tuples, lists, dicts and sets.
Result<Ref> MachineImpl::StepContainer(uint8_t op) {
  switch (op) {
    case kEmptyList:
    case kEmptyTuple:
    case kEmptyDict:
    case kEmptySet: {
      Kind k = op == kEmptyList    ? Kind::kList
               : op == kEmptyTuple ? Kind::kTuple
               : op == kEmptyDict  ? Kind::kDict
                                   : Kind::kSet;
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(k));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kTuple1:
    case kTuple2:
    case kTuple3: {
      size_t n = op - kTuple1 + 1;
      std::vector<Ref> items(n);
      for (size_t i = n; i-- > 0;) {
        SAFEMODEL_ASSIGN_OR_RETURN(items[i], Pop("TUPLE"));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewContainer(Kind::kTuple, std::move(items)));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kTuple:
    case kList: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark(op == kTuple ? "TUPLE" : "LIST"));
      SAFEMODEL_ASSIGN_OR_RETURN(
          Ref r, NewContainer(op == kTuple ? Kind::kTuple : Kind::kList, std::move(items)));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kFrozenSet: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark("FROZENSET"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(Kind::kFrozenSet));
      for (Ref item : items) {
        Status s = AddItem(r, item);
        if (!s.ok()) {
          SAFEMODEL_ASSIGN_OR_RETURN(r, Semantic(s));
          break;
        }
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kDict: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark("DICT"));
      if (items.size() % 2 != 0) return Bad("DICT with an odd number of items");
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(Kind::kDict));
      for (size_t i = 0; i < items.size(); i += 2) {
        Status s = SetItem(r, items[i], items[i + 1]);
        if (!s.ok()) {
          SAFEMODEL_ASSIGN_OR_RETURN(r, Semantic(s));
          break;
        }
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kAppend: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref v, Pop("APPEND"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top("APPEND"));
      SAFEMODEL_RETURN_IF_ERROR(ContainerOp(op, *t, {v}));
      break;
    }
    case kSetItem: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref v, Pop("SETITEM"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref k, Pop("SETITEM"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top("SETITEM"));
      SAFEMODEL_RETURN_IF_ERROR(ContainerOp(op, *t, {k, v}));
      break;
    }
    case kAppends:
    case kSetItems:
    case kAddItems: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark(OpName(op)));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top(OpName(op)));
      SAFEMODEL_RETURN_IF_ERROR(ContainerOp(op, *t, items));
      break;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Ref::None();
}
// The stack, marks and the memo.
Result<Ref> MachineImpl::StepMemo(uint8_t op) {
  Context& c = C();
  switch (op) {
    case kPop: {
      // With nothing above the topmost mark, CPython pops the mark itself.
      if (c.stack.size() > Fence()) {
        c.stack.pop_back();
      } else if (!c.marks.empty()) {
        c.marks.pop_back();
      } else {
        return Bad("POP: stack underflow");
      }
      break;
    }
    case kDup: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top("DUP"));
      SAFEMODEL_RETURN_IF_ERROR(Push(*t));
      break;
    }
    case kMark:
      if (c.marks.size() >= kMaxMarks) {
        return Status::LimitExceeded(m_.options().where + ": more than " + Num(kMaxMarks) +
                                     " open marks" + At());
      }
      c.marks.push_back(c.stack.size());
      break;
    case kPopMark:
      SAFEMODEL_RETURN_IF_ERROR(PopMark("POP_MARK").status());
      break;
    case kGet:
    case kBinGet:
    case kLongBinGet: {
      uint64_t key;
      if (op == kGet) {
        SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("GET"));
        SAFEMODEL_ASSIGN_OR_RETURN(Ref k, ParseDecimal(line, "GET"));
        if (k.kind != Kind::kInt || k.i < 0) return Bad("GET with a negative or huge key");
        key = static_cast<uint64_t>(k.i);
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(key, ReadUInt(op == kBinGet ? 1 : 4, "BINGET"));
      }
      const Ref* found = c.memo.Find(key);
      if (found == nullptr) return Bad("memo key " + Num(key) + " was never stored");
      SAFEMODEL_RETURN_IF_ERROR(Push(*found));
      break;
    }
    case kPut:
    case kBinPut:
    case kLongBinPut:
    case kMemoize: {
      uint64_t key;
      if (op == kPut) {
        SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("PUT"));
        SAFEMODEL_ASSIGN_OR_RETURN(Ref k, ParseDecimal(line, "PUT"));
        if (k.kind != Kind::kInt || k.i < 0) return Bad("PUT with a negative or huge key");
        key = static_cast<uint64_t>(k.i);
      } else if (op == kMemoize) {
        key = c.memo.size();
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(key, ReadUInt(op == kBinPut ? 1 : 4, "BINPUT"));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top(op == kMemoize ? "MEMOIZE" : "PUT"));
      if (!c.memo.Put(key, *t)) {
        return Status::LimitExceeded(m_.options().where + ": more than " + Num(kMaxMemoEntries) +
                                     " memo entries" + At());
      }
      break;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Ref::None();
}
// Names, calls and everything else that would reach outside the data.
Result<Ref> MachineImpl::StepName(uint8_t op) {
  switch (op) {
    case kGlobal:
    case kInst: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view module, ReadLine(OpName(op)));
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view name, ReadLine(OpName(op)));
      if (!IsValidUtf8(module) || !IsValidUtf8(name)) {
        return Bad(std::string(OpName(op)) + " name is not valid UTF-8");
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref g, MakeGlobal(module, name, op));
      if (op == kGlobal) {
        SAFEMODEL_RETURN_IF_ERROR(Push(g));
        break;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> args, PopMark("INST"));
      Ref r;
      if (args.empty() && g_.at(g).global.kind == GlobalKind::kUnknown) {
        // INST with no arguments is cls.__new__(cls): an instantiation.
        Result<Ref> inst = NewObject(g, {}, op);
        SAFEMODEL_ASSIGN_OR_RETURN(r, inst.ok() ? inst : Semantic(inst.status()));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(Ref tuple, NewContainer(Kind::kTuple, std::move(args)));
        SAFEMODEL_ASSIGN_OR_RETURN(r, Call(g, tuple, op));
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kStackGlobal: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref name, Pop("STACK_GLOBAL"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref module, Pop("STACK_GLOBAL"));
      // A name that is not a literal string was computed while loading
      // (a call's result, or a module attribute a BUILD replaced).
      auto computed = [&](Ref r) {
        return IsOpaque(r) || r.kind == Kind::kGlobal || r.kind == Kind::kRecord;
      };
      if (computed(name) || computed(module)) {
        m_.Refuse("pickle.global", op_offset_,
                  "STACK_GLOBAL at byte " + Num(m_.options().base + op_offset_) +
                      ": a name computed by an earlier call",
                  {"<computed name>"});
        SAFEMODEL_RETURN_IF_ERROR(Push(Opaque().value()));
        break;
      }
      if (name.kind != Kind::kStr || module.kind != Kind::kStr) {
        SAFEMODEL_ASSIGN_OR_RETURN(
            Ref r, Semantic(Bad("STACK_GLOBAL operands must be str (got " + KindName(g_, module) +
                                " and " + KindName(g_, name) + ")")));
        SAFEMODEL_RETURN_IF_ERROR(Push(r));
        break;
      }
      std::string m(g_.text(module)), n(g_.text(name));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref g, MakeGlobal(m, n, op));
      SAFEMODEL_RETURN_IF_ERROR(Push(g));
      break;
    }
    case kReduce: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref args, Pop("REDUCE"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref callable, Pop("REDUCE"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, Call(callable, args, op));
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kObj: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark("OBJ"));
      if (items.empty()) return Bad("OBJ without a class");
      Ref cls = items[0];
      items.erase(items.begin());
      Ref r;
      if (items.empty() && cls.kind == Kind::kGlobal &&
          g_.at(cls).global.kind == GlobalKind::kUnknown) {
        Result<Ref> inst = NewObject(cls, {}, op);
        SAFEMODEL_ASSIGN_OR_RETURN(r, inst.ok() ? inst : Semantic(inst.status()));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(Ref tuple, NewContainer(Kind::kTuple, std::move(items)));
        SAFEMODEL_ASSIGN_OR_RETURN(r, Call(cls, tuple, op));
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kNewObj:
    case kNewObjEx: {
      Ref kwargs = Ref::None();
      if (op == kNewObjEx) {
        SAFEMODEL_ASSIGN_OR_RETURN(kwargs, Pop("NEWOBJ_EX"));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref args, Pop(OpName(op)));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref cls, Pop(OpName(op)));
      Ref r;
      if (IsOpaque(cls) || IsOpaque(args) || IsOpaque(kwargs)) {
        SAFEMODEL_ASSIGN_OR_RETURN(r, Opaque());
      } else if (args.kind != Kind::kTuple || (op == kNewObjEx && (kwargs.kind != Kind::kDict ||
                                                                   !g_.at(kwargs).items.empty()))) {
        SAFEMODEL_ASSIGN_OR_RETURN(
            r, Semantic(
                   Bad(std::string(OpName(op)) + " arguments must be a tuple (and no keywords)")));
      } else {
        Result<std::vector<Ref>> items = CopyItems(args);  // NewObject may move objects
        Result<Ref> obj = items.ok() ? NewObject(cls, *items, op) : Result<Ref>(items.status());
        SAFEMODEL_ASSIGN_OR_RETURN(r, obj.ok() ? obj : Semantic(obj.status()));
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kBuild: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref state, Pop("BUILD"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top("BUILD"));
      const bool joblib = t->kind == Kind::kRecord && g_.at(*t).record == RecordKind::kJoblibArray;
      Status s = Build(t, state);
      if (!s.ok()) {
        if (joblib) return s;  // the stream cannot be followed past it
        // Top() may have moved if Build allocated; fetch again.
        SAFEMODEL_ASSIGN_OR_RETURN(t, Top("BUILD"));
        SAFEMODEL_ASSIGN_OR_RETURN(*t, Semantic(s));
      }
      break;
    }
    case kPersId: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view pid, ReadLine("PERSID"));
      m_.Refuse("pickle.persistent_id", op_offset_,
                "PERSID at byte " + Num(m_.options().base + op_offset_) +
                    ": asks the loading program for the "
                    "external object '" +
                    Printable(pid, 60) + "'",
                {std::string("persistent id ") + Printable(pid, 60)});
      SAFEMODEL_RETURN_IF_ERROR(Push(Opaque().value()));
      break;
    }
    case kBinPersId: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref pid, Pop("BINPERSID"));
      Ref r;
      if (IsOpaque(pid)) {
        SAFEMODEL_ASSIGN_OR_RETURN(r, Opaque());
      } else if (!m_.options().persistent_load) {
        m_.Refuse("pickle.persistent_id", op_offset_,
                  "BINPERSID at byte " + Num(m_.options().base + op_offset_) +
                      ": asks the loading program for an external object (" + KindName(g_, pid) +
                      "); a plain pickle has no such objects",
                  {"persistent id"});
        SAFEMODEL_ASSIGN_OR_RETURN(r, Opaque());
      } else {
        Result<Ref> loaded = m_.options().persistent_load(m_, pid, op_offset_);
        SAFEMODEL_ASSIGN_OR_RETURN(r, loaded.ok() ? loaded : Semantic(loaded.status()));
      }
      SAFEMODEL_RETURN_IF_ERROR(Push(r));
      break;
    }
    case kExt1:
    case kExt2:
    case kExt4: {
      uint64_t width = op == kExt1 ? 1 : op == kExt2 ? 2 : 4;
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t code, ReadUInt(width, "EXT"));
      m_.Refuse("pickle.extension_code", op_offset_,
                "EXT code " + Num(code) + " at byte " + Num(m_.options().base + op_offset_) +
                    ": a name from the loading program's copyreg extension registry",
                {"extension code " + Num(code)});
      SAFEMODEL_RETURN_IF_ERROR(Push(Opaque().value()));
      break;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Ref::None();
}
Result<Ref> MachineImpl::Step(uint8_t op, bool* stop) {
  switch (op) {
    case kProto:
    case kFrame:
    case kStop:
      return StepFraming(op, stop);
    case kNone:
    case kNewTrue:
    case kNewFalse:
    case kInt:
    case kLong:
    case kBinInt:
    case kBinInt1:
    case kBinInt2:
    case kLong1:
    case kLong4:
    case kFloat:
    case kBinFloat:
      return StepConstant(op);
    case kString:
    case kBinString:
    case kShortBinString:
    case kUnicode:
    case kShortBinUnicode:
    case kBinUnicode:
    case kBinUnicode8:
    case kShortBinBytes:
    case kBinBytes:
    case kBinBytes8:
    case kByteArray8:
    case kNextBuffer:
    case kReadOnlyBuffer:
      return StepString(op);
    case kEmptyList:
    case kEmptyTuple:
    case kEmptyDict:
    case kEmptySet:
    case kTuple1:
    case kTuple2:
    case kTuple3:
    case kTuple:
    case kList:
    case kFrozenSet:
    case kDict:
    case kAppend:
    case kSetItem:
    case kAppends:
    case kSetItems:
    case kAddItems:
      return StepContainer(op);
    case kPop:
    case kDup:
    case kMark:
    case kPopMark:
    case kGet:
    case kBinGet:
    case kLongBinGet:
    case kPut:
    case kBinPut:
    case kLongBinPut:
    case kMemoize:
      return StepMemo(op);
    case kGlobal:
    case kInst:
    case kStackGlobal:
    case kReduce:
    case kObj:
    case kNewObj:
    case kNewObjEx:
    case kBuild:
    case kPersId:
    case kBinPersId:
    case kExt1:
    case kExt2:
    case kExt4:
      return StepName(op);
    default: {
      const char* hex = "0123456789abcdef";
      return Bad(std::string("unknown opcode 0x") + hex[op >> 4] + hex[op & 15]);
    }
  }
}

Result<Ref> Machine::Run(ByteView data, uint64_t start, uint64_t* end) {
  MachineImpl impl(*this, data, start);
  Result<Ref> r = impl.Run(end);
  ctx_.AddBytesRead(impl.bytes_read());
  return r;
}

}  // namespace safemodel::loader::pickle
