// The opcodes that build strings and containers, read names and call them,
// and the joblib array data that follows a NumpyArrayWrapper's BUILD.
#include <algorithm>
#include <utility>

#include "loader/pickle/pickle_handlers.h"
#include "loader/pickle/pickle_interpreter.h"
#include "loader/pickle/pickle_keys.h"
#include "loader/pickle/pickle_opcodes.h"
#include "loader/pickle/text_codecs.h"

namespace safemodel::loader::pickle {

namespace {

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; });
}

}  // namespace

// ---- Strings ------------------------------------------------------------------------

// Text and bytes (and out-of-band buffers, which are refused).
Status Interpreter::StepString(uint8_t op) {
  switch (op) {
    case kString:
      return OpString();
    case kBinString:
    case kShortBinString: {
      uint64_t n;
      if (op == kShortBinString) {
        SAFEMODEL_ASSIGN_OR_RETURN(n, ReadUInt(1, "SHORT_BINSTRING"));
      } else {
        SAFEMODEL_ASSIGN_OR_RETURN(uint64_t raw, ReadUInt(4, "BINSTRING"));
        if (static_cast<int32_t>(static_cast<uint32_t>(raw)) < 0) {
          return Bad("BINSTRING with a negative length");
        }
        n = raw;
      }
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, "BINSTRING"));
      // Python 2 str: ASCII text decodes to str (the unpickler's default
      // encoding); anything else is kept as bytes.
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewData(IsAscii(AsChars(b)) ? Kind::kStr : Kind::kBytes, b));
      return Push(r);
    }
    case kUnicode:
      return OpUnicode();
    case kShortBinUnicode:
    case kBinUnicode:
    case kBinUnicode8: {
      const uint64_t width = op == kShortBinUnicode ? 1 : op == kBinUnicode ? 4 : 8;
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, ReadUInt(width, "BINUNICODE"));
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, "BINUNICODE"));
      if (!IsValidUtf8(AsChars(b))) return Bad("string is not valid UTF-8 (or holds a surrogate)");
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewData(Kind::kStr, b));
      return Push(r);
    }
    case kShortBinBytes:
    case kBinBytes:
    case kBinBytes8:
    case kByteArray8: {
      const uint64_t width = op == kShortBinBytes ? 1 : op == kBinBytes ? 4 : 8;
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, ReadUInt(width, "BINBYTES"));
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Take(n, "BINBYTES"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r,
                                 NewData(op == kByteArray8 ? Kind::kByteArray : Kind::kBytes, b));
      return Push(r);
    }
    case kNextBuffer:
      Refuse("pickle.out_of_band_buffer",
             "NEXT_BUFFER at byte " + OpByte() +
                 ": an out-of-band buffer supplied by the loading program, not by the file");
      return Push(Opaque().value());
    case kReadOnlyBuffer:
      return OpReadOnlyBuffer();
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
}

// STRING: a quoted Python 2 str literal, escape-decoded; ASCII text becomes
// a str, anything else bytes (as for BINSTRING).
Status Interpreter::OpString() {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("STRING"));
  Result<std::string> s = DecodeStringLiteral(line);
  if (!s.ok()) return Located(s.status());
  const Kind kind = IsAscii(*s) ? Kind::kStr : Kind::kBytes;
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewOwned(kind, std::move(*s)));
  return Push(r);
}

// UNICODE: raw-unicode-escape text.
Status Interpreter::OpUnicode() {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view line, ReadLine("UNICODE"));
  Result<std::string> s = DecodeRawUnicodeEscape(line);
  if (!s.ok()) return Located(s.status());
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewOwned(Kind::kStr, std::move(*s)));
  return Push(r);
}

// READONLY_BUFFER: a bytearray on top becomes bytes; bytes stay.
Status Interpreter::OpReadOnlyBuffer() {
  SAFEMODEL_ASSIGN_OR_RETURN(Ref * top, Top("READONLY_BUFFER"));
  if (top->kind == Kind::kByteArray) {
    SAFEMODEL_ASSIGN_OR_RETURN(*top, NewData(Kind::kBytes, g_.at(*top).data()));
  } else if (top->kind != Kind::kBytes && !IsOpaque(*top)) {
    SAFEMODEL_ASSIGN_OR_RETURN(*top, Semantic(Bad("READONLY_BUFFER on " + KindName(g_, *top))));
  }
  return Status::Ok();
}

// ---- Containers ---------------------------------------------------------------------

// Building tuples, lists, dicts and sets.
Status Interpreter::StepContainer(uint8_t op) {
  switch (op) {
    case kEmptyTuple:
      // Python's () is one object: an empty tuple can never change, so
      // every EMPTY_TUPLE of a run is one object too (torch.save writes one
      // per tensor, the arguments of its OrderedDict()).
      if (empty_tuple_.kind != Kind::kTuple) {
        SAFEMODEL_ASSIGN_OR_RETURN(empty_tuple_, New(Kind::kTuple));
      }
      return Push(empty_tuple_);
    case kEmptyList:
    case kEmptyDict:
    case kEmptySet: {
      const Kind k = op == kEmptyList ? Kind::kList : op == kEmptyDict ? Kind::kDict : Kind::kSet;
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(k));
      return Push(r);
    }
    case kTuple1:
    case kTuple2:
    case kTuple3: {
      const size_t n = op - kTuple1 + 1;
      Ref items[3];
      for (size_t i = n; i-- > 0;) {
        SAFEMODEL_ASSIGN_OR_RETURN(items[i], Pop("TUPLE"));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, NewContainer(Kind::kTuple, std::span<const Ref>(items, n)));
      return Push(r);
    }
    case kTuple:
    case kList: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark(op == kTuple ? "TUPLE" : "LIST"));
      SAFEMODEL_ASSIGN_OR_RETURN(
          Ref r, NewContainer(op == kTuple ? Kind::kTuple : Kind::kList, std::move(items)));
      return Push(r);
    }
    case kFrozenSet:
    case kDict: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items,
                                 PopMark(op == kDict ? "DICT" : "FROZENSET"));
      if (op == kDict && items.size() % 2 != 0) return Bad("DICT with an odd number of items");
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(op == kDict ? Kind::kDict : Kind::kFrozenSet));
      const size_t stride = op == kDict ? 2 : 1;
      for (size_t i = 0; i < items.size(); i += stride) {
        Status s = op == kDict ? SetItem(*this, r, items[i], items[i + 1])
                               : AddItem(*this, r, items[i]);
        if (!s.ok()) {
          SAFEMODEL_ASSIGN_OR_RETURN(r, Semantic(s));
          break;
        }
      }
      return Push(r);
    }
    case kAppend:
    case kSetItem: {
      std::vector<Ref> items;
      SAFEMODEL_ASSIGN_OR_RETURN(Ref v, Pop(op == kAppend ? "APPEND" : "SETITEM"));
      if (op == kSetItem) {
        SAFEMODEL_ASSIGN_OR_RETURN(Ref k, Pop("SETITEM"));
        items.push_back(k);
      }
      items.push_back(v);
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top(op == kAppend ? "APPEND" : "SETITEM"));
      return ContainerOp(op, *t, items);
    }
    case kAppends:
    case kSetItems:
    case kAddItems: {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark(OpName(op)));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top(OpName(op)));
      return ContainerOp(op, *t, items);
    }
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
}

Status Interpreter::ContainerOp(uint8_t op, Ref target, const std::vector<Ref>& items) {
  if (IsOpaque(target)) return Status::Ok();
  const bool to_list = op == kAppend || op == kAppends;
  const bool to_dict = op == kSetItem || op == kSetItems;
  // On anything but a container these opcodes call a method.
  if (target.kind == Kind::kRecord && g_.at(target).record == RecordKind::kInstance) {
    const std::string& cls = g_.name(g_.instances[g_.at(target).aux].cls);
    Refuse("pickle.call",
           std::string(OpName(op)) + " at byte " + OpByte() + " on an instance of " + cls +
               " calls its " +
               (to_list   ? "append/extend"
                : to_dict ? "__setitem__"
                          : "add") +
               " method",
           {cls});
    return Status::Ok();
  }
  if (target.kind == Kind::kGlobal) {
    Refuse("pickle.call",
           std::string(OpName(op)) + " at byte " + OpByte() + " on the name " +
               g_.name(target) + " calls one of its methods",
           {g_.name(target)});
    return Status::Ok();
  }
  const Kind want = to_list ? Kind::kList : to_dict ? Kind::kDict : Kind::kSet;
  if (target.kind != want) {
    Remember(Bad(std::string(to_list || to_dict ? OpName(op) : "ADDITEMS") + " on " +
                 KindName(g_, target) + ", not a " +
                 (to_list ? "list" : to_dict ? "dict" : "set")));
    return Status::Ok();
  }
  if (to_list) {
    SAFEMODEL_RETURN_IF_ERROR(CheckGrowth(g_.items(target).size() + items.size(), "list"));
    std::vector<Ref>& list = g_.GrowItems(target.id);
    list.insert(list.end(), items.begin(), items.end());
    return Status::Ok();
  }
  if (to_dict && items.size() % 2 != 0) {
    return Bad(std::string(OpName(op)) + " with an odd number of items");
  }
  for (size_t i = 0; i < items.size(); i += to_dict ? 2 : 1) {
    Status s = to_dict ? SetItem(*this, target, items[i], items[i + 1])
                       : AddItem(*this, target, items[i]);
    if (!s.ok()) {
      Remember(s);
      return Status::Ok();
    }
  }
  return Status::Ok();
}

// ---- Names and calls ------------------------------------------------------------------

// Names, calls and everything else that would reach outside the data.
Status Interpreter::StepName(uint8_t op) {
  switch (op) {
    case kGlobal:
    case kInst:
      return OpGlobalOrInst(op);
    case kStackGlobal:
      return OpStackGlobal();
    case kReduce: {
      SAFEMODEL_ASSIGN_OR_RETURN(Ref args, Pop("REDUCE"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref callable, Pop("REDUCE"));
      SAFEMODEL_ASSIGN_OR_RETURN(Ref r, CallName(*this, callable, args, op));
      ReleaseArguments(callable, args, r);
      return Push(r);
    }
    case kObj:
      return OpObj();
    case kNewObj:
    case kNewObjEx:
      return OpNewObj(op);
    case kBuild:
      return OpBuild();
    case kPersId:
      return OpPersId();
    case kBinPersId:
      return OpBinPersId();
    case kExt1:
    case kExt2:
    case kExt4:
      return OpExt(op);
    default:
      return Status::Internal("opcode dispatched to the wrong family");
  }
}

Result<Ref> Interpreter::MakeGlobal(std::string_view module_in, std::string_view name_in,
                                    uint8_t op) {
  std::string module(module_in), name(name_in);
  if (C().proto < 3) std::tie(module, name) = MapPython2Name(module_in, name_in);
  const std::string full = module + "." + name;
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, New(Kind::kGlobal));
  g_.SetName(r.id, full);
  const std::string where = full + " at byte " + OpByte();
  if (module.empty() || name.empty() || name.find('.') != std::string::npos) {
    Refuse("pickle.global",
           where + ": " + OpName(op) +
               " with an empty or dotted name (an attribute path through " + module +
               "), which the loader would resolve and could call",
           {full});
    return r;
  }
  const GlobalEntry entry = LookupGlobal(module, name);
  g_.SetName(r.id, full, entry);
  if (entry.kind != GlobalKind::kUnknown) return r;
  if (IsUserModule(module)) {
    AddUserGlobal(r.id);
    return r;
  }
  Refuse("pickle.global",
         where + ": " + OpName(op) +
             " of a name outside the table of known data constructors; loading the file "
             "would import it and could call it",
         {full});
  return r;
}

Result<Ref> Interpreter::Instantiate(Ref cls, std::vector<Ref> args, uint8_t op) {
  if (args.empty() && cls.kind == Kind::kGlobal &&
      g_.global(cls).kind == GlobalKind::kUnknown) {
    // No arguments is cls.__new__(cls): an instantiation.
    Result<Ref> inst = NewObject(*this, cls, {}, op);
    return inst.ok() ? inst : Semantic(inst.status());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref tuple, NewContainer(Kind::kTuple, std::move(args)));
  return CallName(*this, cls, tuple, op);
}

// GLOBAL pushes a name; INST calls it on the items above the mark.
Status Interpreter::OpGlobalOrInst(uint8_t op) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view module, ReadLine(OpName(op)));
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view name, ReadLine(OpName(op)));
  if (!IsValidUtf8(module) || !IsValidUtf8(name)) {
    return Bad(std::string(OpName(op)) + " name is not valid UTF-8");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref g, MakeGlobal(module, name, op));
  if (op == kGlobal) return Push(g);
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> args, PopMark("INST"));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, Instantiate(g, std::move(args), op));
  return Push(r);
}

Status Interpreter::OpStackGlobal() {
  SAFEMODEL_ASSIGN_OR_RETURN(Ref name, Pop("STACK_GLOBAL"));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref module, Pop("STACK_GLOBAL"));
  // A name that is not a literal string was computed while loading (a
  // call's result, or a module attribute a BUILD replaced).
  auto computed = [&](Ref r) {
    return IsOpaque(r) || r.kind == Kind::kGlobal || r.kind == Kind::kRecord;
  };
  if (computed(name) || computed(module)) {
    Refuse("pickle.global", "STACK_GLOBAL at byte " + OpByte() + ": a name computed by an earlier call",
           {"<computed name>"});
    return Push(Opaque().value());
  }
  if (name.kind != Kind::kStr || module.kind != Kind::kStr) {
    SAFEMODEL_ASSIGN_OR_RETURN(
        Ref r, Semantic(Bad("STACK_GLOBAL operands must be str (got " + KindName(g_, module) +
                            " and " + KindName(g_, name) + ")")));
    return Push(r);
  }
  std::string m(g_.text(module)), n(g_.text(name));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref g, MakeGlobal(m, n, kStackGlobal));
  return Push(g);
}

// OBJ: the class is the first item above the mark, the arguments the rest.
Status Interpreter::OpObj() {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, PopMark("OBJ"));
  if (items.empty()) return Bad("OBJ without a class");
  const Ref cls = items[0];
  items.erase(items.begin());
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, Instantiate(cls, std::move(items), kObj));
  return Push(r);
}

// NEWOBJ(cls, args) and NEWOBJ_EX(cls, args, kwargs): cls.__new__.
Status Interpreter::OpNewObj(uint8_t op) {
  Ref kwargs = Ref::None();
  if (op == kNewObjEx) {
    SAFEMODEL_ASSIGN_OR_RETURN(kwargs, Pop("NEWOBJ_EX"));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref args, Pop(OpName(op)));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref cls, Pop(OpName(op)));
  Ref r;
  if (IsOpaque(cls) || IsOpaque(args) || IsOpaque(kwargs)) {
    SAFEMODEL_ASSIGN_OR_RETURN(r, Opaque());
  } else if (args.kind != Kind::kTuple ||
             (op == kNewObjEx && (kwargs.kind != Kind::kDict || !g_.at(kwargs).items().empty()))) {
    SAFEMODEL_ASSIGN_OR_RETURN(
        r, Semantic(Bad(std::string(OpName(op)) + " arguments must be a tuple (and no keywords)")));
  } else {
    Result<std::vector<Ref>> items = CopyItems(args);  // NewObject may move objects
    Result<Ref> obj = items.ok() ? NewObject(*this, cls, *items, op) : Result<Ref>(items.status());
    SAFEMODEL_ASSIGN_OR_RETURN(r, obj.ok() ? obj : Semantic(obj.status()));
  }
  return Push(r);
}

Status Interpreter::OpBuild() {
  SAFEMODEL_ASSIGN_OR_RETURN(Ref state, Pop("BUILD"));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref * t, Top("BUILD"));
  const bool joblib = t->kind == Kind::kRecord && g_.at(*t).record == RecordKind::kJoblibArray;
  // A joblib wrapper's data follows in the stream: this loop reads it.
  Status s = joblib && !IsOpaque(state) ? BuildJoblibWrapper(t, state) : Build(*this, t, state);
  if (s.ok()) return Status::Ok();
  if (joblib) return s;  // the stream cannot be followed past it
  // Top() may have moved if Build allocated; fetch again.
  SAFEMODEL_ASSIGN_OR_RETURN(t, Top("BUILD"));
  SAFEMODEL_ASSIGN_OR_RETURN(*t, Semantic(s));
  return Status::Ok();
}

Status Interpreter::OpPersId() {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view pid, ReadLine("PERSID"));
  Refuse("pickle.persistent_id",
         "PERSID at byte " + OpByte() +
             ": asks the loading program for the "
             "external object '" +
             Printable(pid, 60) + "'",
         {std::string("persistent id ") + Printable(pid, 60)});
  return Push(Opaque().value());
}

Status Interpreter::OpBinPersId() {
  SAFEMODEL_ASSIGN_OR_RETURN(Ref pid, Pop("BINPERSID"));
  Ref r;
  if (IsOpaque(pid)) {
    SAFEMODEL_ASSIGN_OR_RETURN(r, Opaque());
  } else if (!options().persistent_load) {
    Refuse("pickle.persistent_id",
           "BINPERSID at byte " + OpByte() + ": asks the loading program for an external object (" +
               KindName(g_, pid) + "); a plain pickle has no such objects",
           {"persistent id"});
    SAFEMODEL_ASSIGN_OR_RETURN(r, Opaque());
  } else {
    Result<Ref> loaded = options().persistent_load(m_, pid, op_offset_);
    SAFEMODEL_ASSIGN_OR_RETURN(r, loaded.ok() ? loaded : Semantic(loaded.status()));
    if (loaded.ok() && options().release_consumed && contexts_.size() == 1) {
      ReleasePersistentId(pid, r);
    }
  }
  return Push(r);
}

// The storage record holds what it needs of the id (its key, type, location
// and size are copied): the tuple is spent. torch.save memoizes the key str
// and fetches it again only for a second tensor over the same storage; kept
// as the storage's text in the memo, it costs no object per storage (3.2 MB
// for 100,000 tensors), and such a GET makes a str of the same text.
void Interpreter::ReleasePersistentId(Ref pid, Ref loaded) {
  ObjId key_str = kNoObj;
  uint32_t storage = kNoStorage;
  if (pid.kind == Kind::kTuple && g_.Releasable(pid.id) && loaded.kind == Kind::kRecord &&
      g_.at(loaded).record == RecordKind::kStorage) {
    storage = g_.at(loaded).aux;
    const std::string_view key = g_.storages[storage].key();
    for (Ref item : g_.items(pid)) {
      // Not shared and memoized once (Object::aux, NoteMemoized): the memo
      // and this tuple are its only holders.
      if (item.kind == Kind::kStr && !g_.at(item).shared && g_.at(item).aux != UINT32_MAX &&
          g_.text(item) == key) {
        key_str = item.id;
        break;
      }
    }
  }
  // Strs the tuple alone holds (not shared, never memoized): torch.save's
  // key str fetched again for a second tensor over a storage (a GET of the
  // text above makes a new one each time) would otherwise stay, one object
  // per tensor of a checkpoint whose tensors view a few flat buffers.
  ObjId spent[ItemArena::kReuseItems];
  size_t n = 0;
  if (storage != kNoStorage) {
    for (Ref item : g_.items(pid)) {
      if (item.kind == Kind::kStr && !g_.at(item).shared && g_.at(item).aux == UINT32_MAX &&
          n < ItemArena::kReuseItems) {
        spent[n++] = item.id;
      }
    }
  }
  ReleaseOne(pid);
  for (size_t i = 0; i < n; ++i) g_.Release(spent[i]);
  // The tuple is gone: the memo holds the key str alone, and no longer once
  // its key holds the text.
  if (key_str != kNoObj && C().memo.KeepAsStorageKey(g_.objects[key_str].aux, key_str, storage)) {
    g_.Release(key_str);
  }
}

// A tensor rebuild keeps from its arguments only the storage's index
// (TensorInfo::storage_index) or, for a parameter, the tensor record: the
// argument tuple, the storage record, the size and stride tuples and the
// empty hook dict are spent once the record is built. Other records, names
// and strings are never released (Graph::Releasable), and neither is
// anything a second reference may reach.
void Interpreter::ReleaseArguments(Ref callable, Ref args, Ref result) {
  if (!options().release_consumed || contexts_.size() != 1) return;
  if (result.kind != Kind::kRecord || callable.kind != Kind::kGlobal) return;  // an error
  const GlobalKind kind = g_.global(callable).kind;
  if (kind != GlobalKind::kRebuildTensor && kind != GlobalKind::kRebuildTensorV2 &&
      kind != GlobalKind::kRebuildTensorV3 && kind != GlobalKind::kRebuildParameter) {
    return;
  }
  if (args.kind != Kind::kTuple || !g_.Releasable(args.id)) return;
  // Copied first: releasing the tuple gives its items back to the arena.
  // (A rebuild takes at most 8 arguments; heap items past the 8th of a
  // longer tuple are left as they are, merely not reused.)
  const std::span<const Ref> items = g_.items(args);
  Ref spent[ItemArena::kReuseItems];
  size_t n = 0;
  for (Ref a : items) {
    if (a.is_heap() && n < ItemArena::kReuseItems) spent[n++] = a;
  }
  ReleaseOne(args);
  for (size_t i = 0; i < n; ++i) ReleaseOne(spent[i]);
}

void Interpreter::ReleaseOne(Ref r) {
  if (!r.is_heap() || r.id == empty_tuple_.id || !g_.Releasable(r.id)) return;
  // A tuple's or dict's aux is its memo key; a record's is not (and a
  // releasable record was never memoized: NoteMemoized).
  const uint32_t key = g_.at(r).aux;
  if (key != UINT32_MAX && (r.kind == Kind::kTuple || r.kind == Kind::kDict)) {
    C().memo.Release(key, r.id);
  }
  g_.Release(r.id);
}

Status Interpreter::OpExt(uint8_t op) {
  const uint64_t width = op == kExt1 ? 1 : op == kExt2 ? 2 : 4;
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t code, ReadUInt(width, "EXT"));
  Refuse("pickle.extension_code",
         "EXT code " + Num(code) + " at byte " + OpByte() +
             ": a name from the loading program's copyreg extension registry",
         {"extension code " + Num(code)});
  return Push(Opaque().value());
}

// ---- joblib ---------------------------------------------------------------------------

// joblib writes an array's bytes right after the wrapper's BUILD, outside any
// pickle opcode: [1-byte pad length, pad bytes] when the state names an
// alignment, then the elements (or, for object arrays, a nested pickle).
// Reading them is part of the stream syntax, so errors here are structural.
Status Interpreter::BuildJoblibWrapper(Ref* target, Ref state) {
  const uint32_t aux = g_.at(*target).aux;
  const std::string cls = g_.name(g_.instances[aux].cls);
  if (contexts_.size() > 1 || !options().joblib) return BuildPlainWrapper(aux, cls, state);
  if (state.kind != Kind::kDict) return Bad("joblib NumpyArrayWrapper state must be a dict");
  SAFEMODEL_RETURN_IF_ERROR(CheckState(*this, state, cls, false, false));
  const WrapperFields f = ReadWrapperFields(state);
  if (options().compressed && f.allow_mmap && f.allow_mmap->kind == Kind::kBool &&
      f.allow_mmap->i && !noted_mmap_) {
    // joblib 1.2 writes this itself; only a caller passing mmap_mode reads
    // the array differently (joblib's own bug), so it is noted, not refused.
    noted_mmap_ = true;
    m_.context().Note(
        "joblib.mmap_compressed", m_.Location(op_offset_),
        "a wrapper in this compressed file allows mmap: joblib.load(mmap_mode=...) maps "
        "the compressed file at the decompressed offset and returns other bytes; the "
        "arrays converted are those joblib.load returns without mmap_mode");
  }
  return ReadWrapperData(f, target);
}

// A plain unpickler (pickle.load, or a nested pickle) only sets the
// wrapper's attributes; nothing follows in the stream.
Status Interpreter::BuildPlainWrapper(uint32_t aux, const std::string& cls, Ref state) {
  Ref dict = state;
  if (state.kind == Kind::kTuple && g_.at(state).items().size() == 2) {
    dict = g_.at(state).items()[0];
    SAFEMODEL_RETURN_IF_ERROR(CheckState(*this, g_.at(state).items()[1], cls, true, false));
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckState(*this, dict, cls, false, false));
  if (dict.kind == Kind::kDict) {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, Snapshot(*this, dict));
    g_.instances[aux].state = copy;
  }
  g_.instances[aux].built = true;
  return Status::Ok();
}

Interpreter::WrapperFields Interpreter::ReadWrapperFields(Ref state) {
  auto field = [&](std::string_view key) -> std::optional<Ref> {
    const std::span<const Ref> items = g_.at(state).items();
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      if (items[i].kind == Kind::kStr && g_.text(items[i]) == key) return items[i + 1];
    }
    return std::nullopt;
  };
  return {field("subclass"), field("shape"),
          field("order"),    field("dtype"),
          field("numpy_array_alignment_bytes"), field("allow_mmap")};
}

// The array the wrapper describes, and its data from the stream: numeric
// elements in place, or a nested pickle for an object array.
Status Interpreter::ReadWrapperData(const WrapperFields& f, Ref* target) {
  if (!f.subclass || !f.shape || !f.order || !f.dtype) {
    return Bad("joblib NumpyArrayWrapper state lacks subclass, shape, order or dtype");
  }
  const GlobalKind sub = f.subclass->kind == Kind::kGlobal ? g_.global(*f.subclass).kind
                                                           : GlobalKind::kUnknown;
  if (sub != GlobalKind::kNpNdarray && sub != GlobalKind::kNpMemmap) {
    return Status::Unsupported(options().where + ": joblib array of subclass " +
                               KindName(g_, *f.subclass) + At());
  }
  Result<std::vector<uint64_t>> shape = ShapeArg(*this, *f.shape, "joblib array shape");
  if (!shape.ok()) return Bad(shape.status().message());
  Result<std::string_view> order = AsStr(g_, *f.order, "joblib array order");
  if (!order.ok() || (*order != "C" && *order != "F")) {
    return Bad("joblib array order must be 'C' or 'F'");
  }
  if (f.dtype->kind != Kind::kRecord || g_.at(*f.dtype).record != RecordKind::kNpDtype) {
    return Bad("joblib array dtype must be a numpy dtype");
  }
  const NpDtypeInfo& dt = g_.dtypes[g_.at(*f.dtype).aux];
  // The array's bytes are read from the file, not from a frame: the frame
  // before them must be used up (joblib commits it before writing).
  if (in_frame_ && pos_ != frame_end_) return Bad("joblib array data starts inside a pickle frame");
  in_frame_ = false;
  limit_ = data_.size();
  g_.joblib = true;
  // Numeric arrays are padded to the alignment the state names; object
  // arrays are a nested pickle with no padding (joblib's write_array).
  if (!dt.object && f.align && f.align->kind != Kind::kNone) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t pad, ReadUInt(1, "joblib array padding length"));
    SAFEMODEL_RETURN_IF_ERROR(Take(pad, "joblib array padding").status());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref array, NewRecord(RecordKind::kNdArray));
  g_.at(array).aux = static_cast<uint32_t>(g_.arrays.size());
  ArrayInfo info;
  info.dtype = f.dtype->id;
  info.shape = *shape;
  info.fortran = *order == "F";
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(info.shape, "joblib array shape"));
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
  SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(*this, dt));
  uint64_t nbytes;
  if (!CheckedMul(count, dt.itemsize, &nbytes)) return Bad("joblib array size overflows");
  SAFEMODEL_ASSIGN_OR_RETURN(info.data, Take(nbytes, "joblib array data"));
  info.built = true;
  g_.arrays.push_back(std::move(info));
  *target = array;
  return Status::Ok();
}

// The STOP of a nested pickle: its result must be the object array whose
// elements the outer wrapper's array takes.
Status Interpreter::FinishNested(Ref result) {
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
  if (g_.at(inner.items).items().size() != count) {
    return Bad("joblib object array holds " + Num(g_.at(inner.items).items().size()) +
               " elements, its shape needs " + Num(count));
  }
  a.items = inner.items;
  a.built = true;
  return Status::Ok();
}

}  // namespace safemodel::loader::pickle
