// The opcode loop and the opcodes that only move data: framing, constants,
// the stack, marks and the memo. Strings, containers, names and calls are in
// pickle_ops.cc.
#include "loader/pickle/pickle_machine.h"

#include <bit>
#include <utility>

#include "loader/pickle/pickle_interpreter.h"
#include "loader/pickle/pickle_opcodes.h"
#include "loader/pickle/text_codecs.h"

namespace safemodel::loader::pickle {

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

// ---- Machine ----------------------------------------------------------------------

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
  if (!graph_.free_ids.empty()) {
    // A released object's place (Graph::Release left it default).
    const ObjId id = graph_.free_ids.back();
    graph_.free_ids.pop_back();
    graph_.objects[id].kind = kind;
    if (kind == Kind::kGlobal) graph_.SetOffset(id, offset);
    return Ref::Heap(kind, id);
  }
  if (graph_.objects.size() >= kMaxObjects) {
    return Status::LimitExceeded(options_.where + ": more than " + Num(kMaxObjects) +
                                 " objects (limit)");
  }
  graph_.objects.emplace_back().kind = kind;
  const ObjId id = static_cast<ObjId>(graph_.objects.size() - 1);
  if (kind == Kind::kGlobal) graph_.SetOffset(id, offset);
  return Ref::Heap(kind, id);
}

Result<Ref> Machine::Run(ByteView data, uint64_t start, uint64_t* end) {
  Interpreter interpreter(*this, data, start);
  Result<Ref> r = interpreter.Run(end);
  ctx_.AddBytesRead(interpreter.bytes_read());
  return r;
}

// ---- Memo ---------------------------------------------------------------------------

void Memo::SetSlot(uint64_t key, Ref r) {
  uint32_t& slot = dense_[key];
  const bool had_inline = slot != 0 && (slot & kHeapSlot) == 0;
  if (r.is_heap()) {
    // A replaced inline value's place is free for the next one: inline_
    // never holds more than the slots that hold inline values at once.
    if (had_inline) free_inline_.push_back(slot);
    slot = HeapSlot(r.kind, r.id);
  } else if (had_inline) {
    inline_[slot - 1] = r;
  } else if (!free_inline_.empty()) {
    slot = free_inline_.back();
    free_inline_.pop_back();
    inline_[slot - 1] = r;
  } else {
    // At most one inline value per key of the vector, which kMaxMemoEntries
    // bounds far below kHeapSlot.
    inline_.push_back(r);
    slot = static_cast<uint32_t>(inline_.size());
  }
}

bool Memo::Put(uint64_t key, Ref r) {
  if (key < dense_.size() && dense_[key] != 0) {
    SetSlot(key, r);
    return true;
  }
  auto it = sparse_.find(key);
  if (it != sparse_.end()) {
    it->second = r;
    return true;
  }
  if (count_ >= kMaxMemoEntries) return false;
  ++count_;
  if (key < dense_limit_ || key < 2 * count_ + kDenseSlack) {
    if (key >= dense_limit_) {
      const uint64_t grown = std::max<uint64_t>(key + 1, dense_limit_ * 2);
      const uint64_t cap = std::max<uint64_t>(key + 1, 2 * count_ + kDenseSlack);
      dense_limit_ = std::min(grown, cap);
    }
    dense_.Cover(key);
    SetSlot(key, r);
  } else {
    sparse_.emplace(key, r);  // keys chosen by the file: keyed hash
  }
  return true;
}

void Interpreter::NoteMemoized(uint64_t key, Ref r) {
  if (r.kind == Kind::kStr) {
    // A str remembers its one memo key, for ReleasePersistentId; memoized
    // again, it is kept as it is.
    Object& o = g_.at(r);
    if (o.aux == UINT32_MAX && contexts_.size() == 1 && key < UINT32_MAX && C().memo.Dense(key)) {
      o.aux = static_cast<uint32_t>(key);
    } else {
      o.shared = true;
    }
    return;
  }
  if (r.kind == Kind::kRecord) {
    // A storage record's aux is its side-table index, not a memo key the
    // release could void: memoized, it is kept (torch.save never memoizes
    // one).
    if (g_.at(r).record == RecordKind::kStorage) g_.at(r).shared = true;
    return;
  }
  if (r.kind != Kind::kTuple && r.kind != Kind::kDict) return;
  Object& o = g_.at(r);
  if (o.aux == UINT32_MAX && contexts_.size() == 1 && key < UINT32_MAX && C().memo.Dense(key)) {
    o.aux = static_cast<uint32_t>(key);
  } else {
    o.shared = true;
  }
}

void Interpreter::CopyOutOfStream(Ref r) {
  if (r.kind != Kind::kStr) return;
  Object& o = g_.at(r);
  const ByteView d = o.data();
  if (d.empty() || d.size() > kCopyOnGetBytes) return;
  if (copied_on_get_ + d.size() > kMaxCopyOnGetTotal) return;
  // The bytes are in the stream or elsewhere (owned already, decoded, or
  // copied by an earlier GET: each object once).
  if (!AddressInside(d.data(), data_)) return;
  g_.owned.emplace_back(AsChars(d));
  o.set_data(AsBytes(g_.owned.back()));
  copied_on_get_ += d.size();
}

// ---- Reading ------------------------------------------------------------------------

Status Interpreter::Truncated(uint64_t need, const char* what) const {
  if (in_frame_) {
    return Status::Malformed(options().where + ": " + what + At() + " needs " + Num(need) +
                             " bytes but its frame ends at byte " +
                             Num(options().base + frame_end_) +
                             " (an opcode may not straddle a frame)");
  }
  return Status::Malformed(options().where + ": truncated: " + what + At() + " needs " +
                           Num(need) + " bytes, " + Num(limit_ - pos_) + " remain");
}

Result<std::string_view> Interpreter::ReadLine(const char* what) {
  const uint8_t* begin = data_.data() + pos_;
  const void* nl = std::memchr(begin, '\n', limit_ - pos_);
  if (nl == nullptr) {
    return Status::Malformed(
        options().where + ": " + what + At() +
        (in_frame_ ? ": no newline before the end of its frame" : ": no terminating newline"));
  }
  uint64_t len = static_cast<uint64_t>(static_cast<const uint8_t*>(nl) - begin);
  std::string_view line(reinterpret_cast<const char*>(begin), len);
  pos_ += len + 1;
  return line;
}

// ---- Stack --------------------------------------------------------------------------

Status Interpreter::Push(Ref r) {
  if (C().stack.size() >= kMaxStackDepth) {
    return Status::LimitExceeded(options().where + ": stack deeper than " + Num(kMaxStackDepth) +
                                 At());
  }
  C().stack.push_back(r);
  return Status::Ok();
}

Result<Ref> Interpreter::Pop(const char* what) {
  if (C().stack.size() <= Fence()) return Bad(std::string(what) + ": stack underflow");
  Ref r = C().stack.back();
  C().stack.pop_back();
  return r;
}

Result<Ref*> Interpreter::Top(const char* what) {
  if (C().stack.size() <= Fence()) return Bad(std::string(what) + ": stack underflow");
  return &C().stack.back();
}

Result<std::vector<Ref>> Interpreter::PopMark(const char* what) {
  if (C().marks.empty()) return Bad(std::string(what) + " without a MARK");
  size_t mark = C().marks.back();
  C().marks.pop_back();
  std::vector<Ref> items(C().stack.begin() + static_cast<std::ptrdiff_t>(mark), C().stack.end());
  C().stack.resize(mark);
  return items;
}

// ---- Integers -----------------------------------------------------------------------

Result<Ref> Interpreter::MakeInt(ByteView le) {
  if (le.empty()) return Ref::Int(0);
  ByteView t = TrimTwosComplement(le);
  if (t.size() <= 8) {
    uint64_t v = 0;
    for (size_t i = t.size(); i-- > 0;) v = (v << 8) | t[i];
    if (t.size() < 8 && (t.back() & 0x80)) v |= ~uint64_t{0} << (8 * t.size());
    return Ref::Int(static_cast<int64_t>(v));
  }
  if (t.size() > kMaxBigIntBytes) {
    return Status::LimitExceeded(options().where + ": integer of " + Num(t.size()) + " bytes" +
                                 At() + " exceeds the limit of " + Num(kMaxBigIntBytes));
  }
  return NewData(Kind::kBigInt, t);
}

Result<Ref> Interpreter::ParseDecimal(std::string_view s, const char* what) {
  Result<std::vector<uint8_t>> le = DecimalToTwosComplement(s);
  if (!le.ok()) return Bad(std::string(what) + ": " + le.status().message());
  const ByteView t(le->data(), le->size());
  if (t.size() <= 8) return MakeInt(t);
  if (t.size() > kMaxBigIntBytes) {
    return Status::LimitExceeded(options().where + ": integer" + At() + " exceeds " +
                                 Num(kMaxBigIntBytes) + " bytes");
  }
  return NewOwned(Kind::kBigInt, std::string(AsChars(t)));
}

Result<uint64_t> Interpreter::DecimalKey(const char* what) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine(what));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref k, ParseDecimal(line, what));
  if (k.kind != Kind::kInt || k.i < 0) {
    return Bad(std::string(what) + " with a negative or huge key");
  }
  return static_cast<uint64_t>(k.i);
}

// ---- The loop -----------------------------------------------------------------------

Result<Ref> Interpreter::Run(uint64_t* end) {
  contexts_.reserve(kMaxNestedPickles + 1);
  contexts_.emplace_back();
  for (;;) {
    op_offset_ = pos_;
    if (in_frame_ && pos_ == frame_end_) in_frame_ = false;
    limit_ = in_frame_ ? frame_end_ : data_.size();
    if (pos_ >= limit_) {
      return Status::Malformed(options().where + ": the stream ends at byte " +
                               Num(options().base + pos_) + " without a STOP opcode");
    }
    uint8_t op = data_[pos_++];
    bool stop = false;
    SAFEMODEL_ASSIGN_OR_RETURN(Ref result, Step(op, &stop));
    if (pos_ - behind_ >= kReadBehindLag + kReadBehindBytes && options().read_behind) {
      const uint64_t upto = pos_ - kReadBehindLag;
      options().read_behind(data_.subspan(behind_, upto - behind_));
      behind_ = upto;
    }
    if (!stop) continue;
    if (contexts_.size() > 1) {
      if (!C().stack.empty() || !C().marks.empty()) {
        return Bad("STOP of a nested pickle leaves values or marks on the stack");
      }
      SAFEMODEL_RETURN_IF_ERROR(FinishNested(result));
      continue;
    }
    SAFEMODEL_RETURN_IF_ERROR(FinishOuter());
    *end = pos_;
    if (!semantic().ok()) return semantic();
    return result;
  }
}

Status Interpreter::FinishOuter() {
  if (in_frame_ && pos_ != frame_end_) {
    return Status::Malformed(options().where + ": STOP at byte " + OpByte() +
                             " leaves bytes of its frame unread");
  }
  if (!C().stack.empty() || !C().marks.empty()) {
    return Status::Malformed(options().where + ": STOP at byte " + OpByte() +
                             " leaves values or marks on the stack");
  }
  // Names of user classes that were referred to but never instantiated
  // (a bare reference to a user function, say) are refused like any
  // unknown name.
  for (ObjId id : user_globals()) {
    Object& g = g_.objects[id];
    if (!g.consumed) {
      m_.Refuse("pickle.global", g_.offset(id),
                g_.name(id) + " at byte " + Num(options().base + g_.offset(id)) +
                    ": a name from the user's script that is not used as a class to "
                    "instantiate; loading would resolve it",
                {g_.name(id)});
    }
  }
  return Status::Ok();
}

Result<Ref> Interpreter::Step(uint8_t op, bool* stop) {
  Status s;
  switch (kOpFamilies[op]) {
    case OpFamily::kFraming:
      return StepFraming(op, stop);
    case OpFamily::kConstant:
      s = StepConstant(op);
      break;
    case OpFamily::kString:
      s = StepString(op);
      break;
    case OpFamily::kContainer:
      s = StepContainer(op);
      break;
    case OpFamily::kMemo:
      s = StepMemo(op);
      break;
    case OpFamily::kName:
      s = StepName(op);
      break;
    case OpFamily::kUnknown: {
      const char* hex = "0123456789abcdef";
      return Bad(std::string("unknown opcode 0x") + hex[op >> 4] + hex[op & 15]);
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(s);
  return Ref::None();
}

// PROTO, FRAME and STOP.
Result<Ref> Interpreter::StepFraming(uint8_t op, bool* stop) {
  switch (op) {
    case kProto: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, ReadUInt(1, "PROTO"));
      if (v > kHighestProtocol) return Bad("unsupported pickle protocol " + Num(v));
      C().proto = static_cast<uint8_t>(v);
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
Status Interpreter::StepConstant(uint8_t op) {
  Ref r;
  switch (op) {
    case kNone:
      r = Ref::None();
      break;
    case kNewTrue:
    case kNewFalse:
      r = Ref::Bool(op == kNewTrue);
      break;
    case kInt: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("INT"));
      if (line == "00" || line == "01") {
        r = Ref::Bool(line == "01");  // protocol 0's False and True
        break;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(r, ParseDecimal(line, "INT"));
      break;
    }
    case kLong: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("LONG"));
      if (!line.empty() && line.back() == 'L') line.remove_suffix(1);
      SAFEMODEL_ASSIGN_OR_RETURN(r, ParseDecimal(line, "LONG"));
      break;
    }
    case kBinInt: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, ReadUInt(4, "BININT"));
      r = Ref::Int(static_cast<int32_t>(static_cast<uint32_t>(v)));
      break;
    }
    case kBinInt1:
    case kBinInt2: {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, op == kBinInt1 ? ReadUInt(1, "BININT1")
                                                            : ReadUInt(2, "BININT2"));
      r = Ref::Int(static_cast<int64_t>(v));
      break;
    }
    case kLong1:
    case kLong4: {
      uint64_t n;
      if (op == kLong1) {
        SAFEMODEL_ASSIGN_OR_RETURN(n, ReadUInt(1, "LONG1"));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(uint64_t raw, ReadUInt(4, "LONG4"));
        if (static_cast<int32_t>(static_cast<uint32_t>(raw)) < 0) {
          return Bad("LONG4 with a negative byte count");
        }
        n = raw;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, op == kLong1 ? "LONG1" : "LONG4"));
      SAFEMODEL_ASSIGN_OR_RETURN(r, MakeInt(b));
      break;
    }
    case kFloat: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("FLOAT"));
      std::optional<double> v = ParseFloatText(line);
      if (!v) return Bad("FLOAT '" + Printable(line, 40) + "' is not a number");
      r = Ref::Float(*v);
      break;
    }
    case kBinFloat: {
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(8, "BINFLOAT"));
      uint64_t bits = 0;
      for (uint8_t x : b) bits = (bits << 8) | x;  // big-endian
      r = Ref::Float(std::bit_cast<double>(bits));
      break;
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
  return Push(r);
}

// The stack, marks and the memo.
Status Interpreter::StepMemo(uint8_t op) {
  Context& c = C();
  switch (op) {
    case kPop:
      // With nothing above the topmost mark, CPython pops the mark itself.
      if (c.stack.size() > Fence()) {
        c.stack.pop_back();
      } else if (!c.marks.empty()) {
        c.marks.pop_back();
      } else {
        return Bad("POP: stack underflow");
      }
      return Status::Ok();
    case kDup: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top("DUP"));
      if (t->is_heap()) g_.at(*t).shared = true;  // two references now
      return Push(*t);
    }
    case kMark:
      if (c.marks.size() >= kMaxMarks) {
        return Status::LimitExceeded(options().where + ": more than " + Num(kMaxMarks) +
                                     " open marks" + At());
      }
      c.marks.push_back(c.stack.size());
      return Status::Ok();
    case kPopMark:
      return PopMark("POP_MARK").status();
    case kGet:
    case kBinGet:
    case kLongBinGet: {
      uint64_t key;
      if (op == kGet) {
        SAFEMODEL_ASSIGN_OR_RETURN(key, DecimalKey("GET"));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(key, ReadUInt(op == kBinGet ? 1 : 4, "BINGET"));
      }
      if (c.memo.Released(key)) {
        return Status::Unsupported(
            options().where + ": memo key " + Num(key) +
            " refers back to the arguments of a tensor or storage already built, which are "
            "released as they are used (torch.save makes them afresh for each tensor)" +
            At());
      }
      if (const std::optional<uint32_t> storage = c.memo.StorageKeyAt(key)) {
        // A storage's key str, kept as its text (ReleasePersistentId): a new
        // str of it, which only the stack holds (the memo keeps the text).
        SAFEMODEL_ASSIGN_OR_RETURN(Ref str, New(Kind::kStr));
        g_.at(str).set_data(AsBytes(g_.storages[*storage].key()));
        return Push(str);
      }
      const std::optional<Ref> found = c.memo.Find(key);
      if (!found) return Bad("memo key " + Num(key) + " was never stored");
      if (found->is_heap()) {
        g_.at(*found).shared = true;  // two references now
        if (options().read_behind) CopyOutOfStream(*found);
      }
      return Push(*found);
    }
    case kPut:
    case kBinPut:
    case kLongBinPut:
    case kMemoize: {
      uint64_t key;
      if (op == kPut) {
        SAFEMODEL_ASSIGN_OR_RETURN(key, DecimalKey("PUT"));
      } else if (op == kMemoize) {
        key = c.memo.size();
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(key, ReadUInt(op == kBinPut ? 1 : 4, "BINPUT"));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top(op == kMemoize ? "MEMOIZE" : "PUT"));
      if (!c.memo.Put(key, *t)) {
        return Status::LimitExceeded(options().where + ": more than " + Num(kMaxMemoEntries) +
                                     " memo entries" + At());
      }
      NoteMemoized(key, *t);
      return Status::Ok();
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
}

}  // namespace safemodel::loader::pickle
