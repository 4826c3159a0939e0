#include "loader/pickle/pickle_convert.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "safemodel/limits.h"

#include "loader/pickle/pickle_converter.h"
#include "loader/pickle/pickle_run.h"
#include "loader/pickle/pickle_tree.h"
#include "loader/pickle/text_codecs.h"
#include "loader/pickle/torch_sources.h"
#include "loader/stream.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader::pickle {

namespace {

// Bytes values larger than this are not scanned for an embedded pickle: the
// note is advice, and large blobs are data (images, buffers), not payloads.
constexpr uint64_t kMaxEmbeddedScanBytes = 16 << 20;

// A tensor's reference: {"$tensor": name}.
Value TensorRef(const std::string& name) {
  Value ref = Value::Map();
  ref.mutable_entries().emplace_back("$tensor", Value::String(name));
  return ref;
}

}  // namespace

namespace internal {

Result<std::string> Converter::KeyString(Ref key) {
  switch (key.kind) {
    case Kind::kStr:
      return std::string(NameText(key));
    case Kind::kNone:
      return std::string("None");
    case Kind::kBool:
      return std::string(key.i ? "True" : "False");
    case Kind::kInt:
      return std::to_string(key.i);
    case Kind::kFloat:
      return FloatRepr(key.f);
    case Kind::kBigInt:
      return TwosComplementToDecimal(g_.at(key).data());
    case Kind::kBytes:
      return "b'" + Printable(g_.text(key), 4096) + "'";
    case Kind::kTuple: {
      std::string s = "(";
      const std::span<const Ref> items = g_.at(key).items();
      for (size_t i = 0; i < items.size(); ++i) {
        Ref item = items[i];
        if (item.kind == Kind::kTuple)
          return Status::Unsupported(s_.where + ": nested tuples as dict keys");
        SAFEMODEL_ASSIGN_OR_RETURN(std::string part, KeyString(item));
        if (item.kind == Kind::kStr) part = "'" + part + "'";
        s += (i ? ", " : "") + part;
      }
      return s + (items.size() == 1 ? ",)" : ")");
    }
    case Kind::kGlobal:
      return g_.name(key);
    default:
      return Status::Unsupported(s_.where + ": a dict key that is " + KindName(g_, key));
  }
}

// Bytes that are themselves a binary pickle stay inert data in the output,
// but a program that unpickles them later would run what they name: say so.
void Converter::NoteEmbeddedPickle(ByteView bytes, const std::string& name) {
  if (bytes.size() < 4 || bytes.size() > kMaxEmbeddedScanBytes || bytes[0] != 0x80 ||
      bytes[1] < 2 || bytes[1] > 5) {
    return;
  }
  ParseContext scratch(ctx_.options());
  ScanForFindings(bytes, 0, "embedded pickle", scratch);
  std::vector<std::string> names;
  for (const Finding& f : scratch.findings()) {
    for (const std::string& ref : f.references) {
      if (std::find(names.begin(), names.end(), ref) == names.end()) names.push_back(ref);
    }
  }
  if (names.empty()) return;
  std::string list;
  for (size_t i = 0; i < names.size() && i < 8; ++i) list += (i ? ", " : "") + names[i];
  ctx_.Note("pickle.embedded_pickle", s_.where + " value '" + Printable(name) + "'",
            "these bytes are a pickle that names " + list +
                "; they are kept as inert bytes, but a program that unpickles them would run it");
}

std::string Converter::UniqueName(std::string name) {
  if (name.empty()) name = s_.root_name;
  std::string clean;
  for (char c : name) {
    if (c == '\0') {
      clean += "\\x00";
    } else {
      clean.push_back(c);
    }
  }
  if (used_names_.insert(clean).second) return clean;
  for (uint64_t i = 2;; ++i) {
    std::string candidate = clean + "#" + Num(i);
    if (used_names_.insert(candidate).second) {
      ctx_.Note("pickle.name_collision", s_.where,
                "two tensors map to the name '" + Printable(clean) + "'; the second is named '" +
                    Printable(candidate) + "'");
      return candidate;
    }
  }
}

Result<std::string> Converter::RegisterTensor(ObjId id, const std::string& name) {
  auto it = tensor_names_.find(id);
  if (it != tensor_names_.end()) return tensors_[it->second].name;
  std::string full = UniqueName(
      s_.prefix.empty() ? name : JoinName(s_.prefix, name.empty() ? s_.root_name : name));
  if (full.size() > kMaxNameBytes) {
    return Status::LimitExceeded(s_.where + ": tensor name of " + Num(full.size()) +
                                 " bytes exceeds " + Num(kMaxNameBytes));
  }
  tensor_names_.emplace(id, tensors_.size());
  AddPending(id, full);
  return full;
}

void Converter::AddPending(ObjId id, std::string name) {
  const Object& o = g_.objects[id];
  Pending p{id, o.record, o.aux, UINT32_MAX, std::move(name)};
  // The handlers give every strided and quantized tensor a storage and every
  // array a dtype; a record without one keeps no link and StorageFor
  // refuses it rather than reading outside the tables.
  if (o.record == RecordKind::kTensor) {
    p.link = g_.tensors[o.aux].storage_index;
  } else if (o.record == RecordKind::kStorage) {
    p.link = o.aux;
  } else if (o.record == RecordKind::kNdArray) {
    if (const ObjId dtype = g_.arrays[o.aux].dtype; dtype < g_.objects.size()) {
      p.link = g_.objects[dtype].aux;
    }
  }
  tensors_.push_back(std::move(p));
}

Result<Value> Converter::ScalarValue(const ArrayInfo& a) {
  const NpDtypeInfo& dt = g_.dtypes[g_.objects[a.dtype].aux];
  std::vector<uint8_t> b(a.data.begin(), a.data.end());
  if (dt.byteorder == '>' && b.size() > 1) {
    const size_t unit = DTypeSwapUnit(dt.dtype);
    for (size_t i = 0; unit > 1 && i + unit <= b.size(); i += unit) {
      std::reverse(b.begin() + static_cast<std::ptrdiff_t>(i),
                   b.begin() + static_cast<std::ptrdiff_t>(i + unit));
    }
  }
  auto load = [&](size_t off, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | b[off + i];
    return v;
  };
  switch (dt.dtype) {
    case DType::kBool:
      return Value::Bool(b[0] != 0);
    case DType::kI8:
      return Value::Int(static_cast<int8_t>(b[0]));
    case DType::kU8:
      return Value::Int(b[0]);
    case DType::kI16:
      return Value::Int(static_cast<int16_t>(load(0, 2)));
    case DType::kU16:
      return Value::Int(static_cast<int64_t>(load(0, 2)));
    case DType::kI32:
      return Value::Int(static_cast<int32_t>(load(0, 4)));
    case DType::kU32:
      return Value::Int(static_cast<int64_t>(load(0, 4)));
    case DType::kI64:
      return Value::Int(static_cast<int64_t>(load(0, 8)));
    case DType::kU64: {
      uint64_t v = load(0, 8);
      if (v <= static_cast<uint64_t>(INT64_MAX)) return Value::Int(static_cast<int64_t>(v));
      Value m = Value::Map();
      m.mutable_entries().emplace_back("$int", Value::String(std::to_string(v)));
      return m;
    }
    case DType::kF16:
      return Value::Double(HalfToDouble(static_cast<uint16_t>(load(0, 2))));
    case DType::kF32:
      return Value::Double(std::bit_cast<float>(static_cast<uint32_t>(load(0, 4))));
    case DType::kF64:
      return Value::Double(std::bit_cast<double>(load(0, 8)));
    case DType::kC64:
    case DType::kC128: {
      const size_t half = b.size() / 2;
      double re = half == 4 ? std::bit_cast<float>(static_cast<uint32_t>(load(0, 4)))
                            : std::bit_cast<double>(load(0, 8));
      double im = half == 4 ? std::bit_cast<float>(static_cast<uint32_t>(load(4, 4)))
                            : std::bit_cast<double>(load(8, 8));
      Value m = Value::Map();
      m.mutable_entries().emplace_back("$complex",
                                       Value::List({Value::Double(re), Value::Double(im)}));
      return m;
    }
    default:
      return Status::Unsupported(s_.where + ": numpy scalar of dtype '" + Printable(dt.descr) +
                                 "'");
  }
}

Status Converter::EnterContainer(ObjId id, const Work& w) {
  if (on_path_[id]) {
    return Status::Unsupported(s_.where +
                               ": the data contains a cycle (an object that contains itself, at '" +
                               Printable(w.name.empty() ? "<root>" : w.name) + "')");
  }
  on_path_[id] = 1;
  Work exit = w;
  exit.exit = true;
  work_.push_back(std::move(exit));
  return Status::Ok();
}

// Fills `slot` (already a map with `reserved` leading entries) with the
// entries of a dict's items (k0, v0, k1, v1, ...) and queues the values.
// For a module's state, the _parameters/_buffers/_modules entries do not add
// a component to tensor names (state_dict naming).
Status Converter::AddMapChildren(Value* slot, std::span<const Ref> items, const Work& w,
                                 bool module_state, size_t reserved) {
  auto& entries = slot->mutable_entries();
  KeyedStringSet keys;
  for (size_t i = 0; i < reserved; ++i) keys.insert(entries[i].first);
  std::vector<std::string> names;
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string key, KeyString(items[i]));
    if (!keys.insert(key).second) {
      return Status::Unsupported(s_.where + ": two dict keys render as '" + Printable(key) +
                                 "' at '" + Printable(w.name) + "'");
    }
    const bool transparent =
        module_state && (key == "_parameters" || key == "_buffers" || key == "_modules");
    names.push_back(transparent ? w.name : JoinName(w.name, key));
    entries.emplace_back(std::move(key), Value());
  }
  // Queue in reverse so that children are visited in order (names are
  // assigned in file order).
  for (size_t i = names.size(); i-- > 0;) {
    work_.push_back(
        {items[2 * i + 1], &entries[reserved + i].second, std::move(names[i]), w.depth + 1});
  }
  return Status::Ok();
}

// A sparse tensor: its component tensors under their roles, its layout and
// size in the metadata.
Status Converter::VisitSparse(const Work& w, const TensorInfo& t) {
  Value& slot = *w.slot;
  slot = Value::Map();
  slot.mutable_entries().emplace_back("$sparse", Value::String(t.extra->sparse_layout));
  std::vector<Value> size;
  for (uint64_t d : t.shape) size.push_back(Value::Int(static_cast<int64_t>(d)));
  slot.mutable_entries().emplace_back("size", Value::List(std::move(size)));
  for (const auto& [role, part] : t.extra->components) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string name, RegisterTensor(part.id, JoinName(w.name, role)));
    slot.mutable_entries().emplace_back(role, TensorRef(name));
  }
  nodes_ += 2 + 2 * t.extra->components.size();
  ctx_.Note("pickle.sparse", s_.where,
            "sparse tensor '" + Printable(w.name) + "' (" + t.extra->sparse_layout +
                ") is stored as its component tensors; its layout and size are in the metadata");
  return Status::Ok();
}

// A quantized tensor's parameters, added to its reference in `slot`.
Status Converter::AddQuantized(const Work& w, const TensorInfo& t, const std::string& name) {
  Value q = Value::Map();
  q.mutable_entries().emplace_back("dtype", Value::String(t.extra->qdtype));
  q.mutable_entries().emplace_back("scheme", Value::String(t.extra->qscheme));
  if (t.extra->scales.kind == Kind::kRecord) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string sn,
                               RegisterTensor(t.extra->scales.id, JoinName(w.name, "q_scales")));
    SAFEMODEL_ASSIGN_OR_RETURN(
        std::string zn, RegisterTensor(t.extra->zero_points.id, JoinName(w.name, "q_zero_points")));
    q.mutable_entries().emplace_back("scales", TensorRef(sn));
    q.mutable_entries().emplace_back("zero_points", TensorRef(zn));
    q.mutable_entries().emplace_back("axis", Value::Int(t.extra->axis));
  } else {
    q.mutable_entries().emplace_back("scale", Value::Double(t.extra->scale));
    q.mutable_entries().emplace_back("zero_point", Value::Int(t.extra->zero_point));
  }
  w.slot->mutable_entries().emplace_back("$quantized", std::move(q));
  nodes_ += 8;
  ctx_.Note("pickle.quantized", s_.where,
            "quantized tensor '" + Printable(name) + "' is stored as its integer representation (" +
                t.extra->qdtype + " as " + std::string(DTypeName(t.dtype)) +
                "); scheme, scale and zero point are in the metadata");
  return Status::Ok();
}

// A torch tensor (dense, quantized or sparse) or a bare storage.
Status Converter::VisitTensor(const Work& w, const Object& o) {
  const bool tensor = o.record == RecordKind::kTensor;
  if (tensor && g_.tensors[o.aux].layout == TensorInfo::Layout::kSparse) {
    return VisitSparse(w, g_.tensors[o.aux]);
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::string name, RegisterTensor(w.ref.id, w.name));
  *w.slot = TensorRef(name);
  ++nodes_;
  if (tensor && g_.tensors[o.aux].layout == TensorInfo::Layout::kQuantized) {
    return AddQuantized(w, g_.tensors[o.aux], name);
  }
  return Status::Ok();
}

// A numpy array: a tensor when numeric; an object array becomes nested
// lists in C order, its elements queued.
Status Converter::VisitArray(const Work& w, const ArrayInfo& a) {
  if (!a.built) {
    return Status::Malformed(s_.where + ": numpy array at '" + Printable(w.name) + "' has no data");
  }
  if (a.items.kind != Kind::kList) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string name, RegisterTensor(w.ref.id, w.name));
    *w.slot = TensorRef(name);
    ++nodes_;
    return Status::Ok();
  }
  SAFEMODEL_RETURN_IF_ERROR(EnterContainer(w.ref.id, w));
  const std::span<const Ref> elems = g_.at(a.items).items();
  if (a.shape.empty()) {
    // BUILD checked the count (1); a list only grows.
    if (elems.empty())
      return Status::Internal(s_.where + ": numpy scalar object array lost its item");
    work_.push_back({elems[0], w.slot, w.name, w.depth});
    return Status::Ok();
  }
  if (a.shape.size() + w.depth > kMaxValueDepth) {
    return Status::LimitExceeded(s_.where + ": object array nests deeper than " +
                                 Num(kMaxValueDepth));
  }
  std::vector<Value*> leaves;
  std::vector<std::string> leaf_names;
  SAFEMODEL_RETURN_IF_ERROR(NestedLists(w, a.shape, &leaves, &leaf_names));
  for (uint64_t flat = 0; flat < leaves.size(); ++flat) {
    const uint64_t src = a.fortran ? FortranIndex(a.shape, flat) : flat;
    work_.push_back({elems[src], leaves[flat], leaf_names[flat],
                     static_cast<uint32_t>(w.depth + a.shape.size())});
  }
  return Status::Ok();
}

// Builds the nested list skeleton of `shape` in *w.slot, level by level;
// the leaves (in C order) and their names are returned.
Status Converter::NestedLists(const Work& w, const std::vector<uint64_t>& shape,
                              std::vector<Value*>* leaves, std::vector<std::string>* names) {
  std::vector<Value*> level{w.slot};
  std::vector<std::string> level_names{w.name};
  for (size_t d = 0; d < shape.size(); ++d) {
    std::vector<Value*> next;
    std::vector<std::string> next_names;
    for (size_t k = 0; k < level.size(); ++k) {
      *level[k] = Value::List(std::vector<Value>(shape[d]));
      nodes_ += shape[d];
      if (nodes_ > kMaxValueNodes) return Count(0);
      for (uint64_t i = 0; i < shape[d]; ++i) {
        next.push_back(&level[k]->mutable_list()[i]);
        next_names.push_back(JoinName(level_names[k], Num(i)));
      }
    }
    level = std::move(next);
    level_names = std::move(next_names);
  }
  *leaves = std::move(level);
  *names = std::move(level_names);
  return Status::Ok();
}

// The element of a Fortran-order array (first index fastest) at C-order
// position `flat`.
uint64_t Converter::FortranIndex(const std::vector<uint64_t>& shape, uint64_t flat) {
  uint64_t rem = flat, mul = 1, src = 0;
  std::vector<uint64_t> multi(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    multi[d] = rem % shape[d];
    rem /= shape[d];
  }
  for (size_t d = 0; d < shape.size(); ++d) {
    src += multi[d] * mul;
    mul *= shape[d];
  }
  return src;
}

// An instance: {"$class": name, ["$user_class": true,] ["$slots": {...},]
// attributes...}; a module's _parameters/_buffers/_modules add no name part.
Status Converter::VisitInstance(const Work& w, const InstanceInfo& inst) {
  const std::string& cls_name = g_.name(inst.cls);
  const bool user = g_.global(inst.cls).kind == GlobalKind::kUnknown;
  const bool module = g_.global(inst.cls).kind == GlobalKind::kNnModule || user;
  if (user && noted_user_classes_.insert(cls_name).second) {
    ctx_.Note("pickle.user_class", s_.where + " byte " + Num(g_.offset(inst.cls)),
              "instance of " + cls_name +
                  ", a class defined by the program that saved the file: recorded by name only; "
                  "its code is not in the file and is not part of the output");
  }
  SAFEMODEL_RETURN_IF_ERROR(EnterContainer(w.ref.id, w));
  Value& slot = *w.slot;
  slot = Value::Map();
  slot.mutable_entries().emplace_back("$class", Value::String(cls_name));
  size_t reserved = 1;
  if (user) {
    slot.mutable_entries().emplace_back("$user_class", Value::Bool(true));
    ++reserved;
  }
  if (inst.slots.kind == Kind::kDict) {
    slot.mutable_entries().emplace_back("$slots", Value());
    ++reserved;
    work_.push_back({inst.slots, &slot.mutable_entries().back().second, w.name, w.depth + 1});
  }
  if (inst.state.kind != Kind::kDict) return Status::Ok();
  const std::span<const Ref> state = g_.at(inst.state).items();
  // Reserve all entries before taking pointers into the vector.
  slot.mutable_entries().reserve(reserved + state.size() / 2);
  if (inst.slots.kind == Kind::kDict)
    work_.back().slot = &slot.mutable_entries()[reserved - 1].second;
  const bool module_state = module && std::find_if(state.begin(), state.end(), [&](Ref k) {
                                        return k.kind == Kind::kStr && g_.text(k) == "_modules";
                                      }) != state.end();
  return AddMapChildren(&slot, state, w, module_state, reserved);
}

Status Converter::VisitRecord(const Work& w) {
  Object& o = g_.at(w.ref);
  Value& slot = *w.slot;
  switch (o.record) {
    case RecordKind::kTensor:
    case RecordKind::kStorage:
      return VisitTensor(w, o);
    case RecordKind::kNdArray:
      return VisitArray(w, g_.arrays[o.aux]);
    case RecordKind::kNpScalar: {
      SAFEMODEL_ASSIGN_OR_RETURN(slot, ScalarValue(g_.arrays[o.aux]));
      return Status::Ok();
    }
    case RecordKind::kNpDtype: {
      const NpDtypeInfo& d = g_.dtypes[o.aux];
      slot = Value::Map();
      slot.mutable_entries().emplace_back(
          "$dtype",
          Value::String((d.byteorder ? std::string(1, d.byteorder) : std::string()) + d.descr));
      return Status::Ok();
    }
    case RecordKind::kComplex: {
      slot = Value::Map();
      slot.mutable_entries().emplace_back(
          "$complex", Value::List({Value::Double(o.items()[0].f), Value::Double(o.items()[1].f)}));
      nodes_ += 3;
      return Status::Ok();
    }
    case RecordKind::kDevice:
    case RecordKind::kLayout: {
      slot = Value::Map();
      slot.mutable_entries().emplace_back(o.record == RecordKind::kDevice ? "$device" : "$layout",
                                          Value::String(g_.name(w.ref)));
      return Status::Ok();
    }
    case RecordKind::kInstance:
      return VisitInstance(w, g_.instances[o.aux]);
    case RecordKind::kJoblibArray:
      return Status::Unsupported(s_.where +
                                 ": a joblib NumpyArrayWrapper whose data was not read (inside a "
                                 "nested pickle)");
  }
  return Status::Internal("unknown record");
}

// A name kept as a value: {"$global": name} for a table name (a dtype such
// as torch.float32). A user-script name kept as a value (a hook, a
// callback), not only instantiated as a class, is refused: the loaded object
// would hold and could call the user's code. The machine has let it through
// because the same name is instantiated elsewhere.
Status Converter::VisitGlobal(const Work& w) {
  const std::string& name = g_.name(w.ref);
  if (g_.global(w.ref).kind == GlobalKind::kUnknown) {
    ctx_.Refuse("pickle.global", s_.where + " byte " + Num(g_.offset(w.ref.id)),
                name + " at byte " + Num(g_.offset(w.ref.id)) + " of " + s_.where +
                    ": a name from the user's script is kept as a value (at '" + Printable(w.name) +
                    "'), not only instantiated; loading would resolve it "
                    "and the object would hold it",
                {name});
    return ctx_.RefusedStatus();
  }
  *w.slot = Value::Map();
  w.slot->mutable_entries().emplace_back("$global", Value::String(name));
  return Status::Ok();
}

// Tuples and lists become lists; sets {"$set": [...]}; items are queued.
Status Converter::VisitSequence(const Work& w) {
  const Ref r = w.ref;
  SAFEMODEL_RETURN_IF_ERROR(EnterContainer(r.id, w));
  Value& slot = *w.slot;
  const std::span<const Ref> items = g_.at(r).items();
  Value list = Value::List(std::vector<Value>(items.size()));
  Value* target;
  if (r.kind == Kind::kSet || r.kind == Kind::kFrozenSet) {
    slot = Value::Map();
    slot.mutable_entries().emplace_back("$set", std::move(list));
    target = &slot.mutable_entries().back().second;
  } else {
    slot = std::move(list);
    target = &slot;
  }
  for (size_t i = items.size(); i-- > 0;) {
    work_.push_back({items[i], &target->mutable_list()[i], JoinName(w.name, Num(i)), w.depth + 1});
  }
  return Status::Ok();
}

// A dict becomes a map; an OrderedDict's attributes (a torch state_dict's
// _metadata) come first under "$attrs".
Status Converter::VisitDict(const Work& w) {
  SAFEMODEL_RETURN_IF_ERROR(EnterContainer(w.ref.id, w));
  const Object& d = g_.at(w.ref);
  const Ref attrs = g_.attrs_of(w.ref.id);
  Value& slot = *w.slot;
  slot = Value::Map();
  size_t reserved = 0;
  if (attrs.kind == Kind::kDict && !g_.at(attrs).items().empty()) {
    slot.mutable_entries().reserve(1 + d.items().size() / 2);
    slot.mutable_entries().emplace_back("$attrs", Value());
    reserved = 1;
    work_.push_back(
        {attrs, &slot.mutable_entries()[0].second, JoinName(w.name, "$attrs"), w.depth + 1});
  } else {
    slot.mutable_entries().reserve(d.items().size() / 2);
  }
  return AddMapChildren(&slot, d.items(), w, false, reserved);
}

Status Converter::Visit(const Work& w) {
  SAFEMODEL_RETURN_IF_ERROR(Count(w.depth));
  Ref r = w.ref;
  Value& slot = *w.slot;
  switch (r.kind) {
    case Kind::kNone:
      slot = Value::Null();
      return Status::Ok();
    case Kind::kBool:
      slot = Value::Bool(r.i != 0);
      return Status::Ok();
    case Kind::kInt:
      slot = Value::Int(r.i);
      return Status::Ok();
    case Kind::kFloat:
      slot = Value::Double(r.f);
      return Status::Ok();
    case Kind::kBigInt:
      slot = Value::Map();
      slot.mutable_entries().emplace_back("$int",
                                          Value::String(TwosComplementToDecimal(g_.at(r).data())));
      return Status::Ok();
    case Kind::kStr:
      slot = Value::String(std::string(NameText(r)));
      return Status::Ok();
    case Kind::kBytes:
    case Kind::kByteArray:
      slot = Value::Bytes(std::string(g_.text(r)));
      NoteEmbeddedPickle(g_.at(r).data(), w.name);
      return Status::Ok();
    case Kind::kGlobal:
      return VisitGlobal(w);
    case Kind::kOpaque:
      return Status::Internal(s_.where + ": converting the result of a refused call");
    case Kind::kRecord:
      return VisitRecord(w);
    case Kind::kTuple:
    case Kind::kList:
    case Kind::kSet:
    case Kind::kFrozenSet:
      return VisitSequence(w);
    case Kind::kDict:
      return VisitDict(w);
  }
  return Status::Internal("unknown kind");
}

// A pure state_dict: a dict (without BUILD attributes) of str keys, each
// naming a distinct plain tensor (strided), storage or numeric numpy array,
// no key empty or holding a NUL (UniqueName would rewrite it), no name
// prefix. Its
// tree would be {key: {"$tensor": key}, ...}, which Run drops as saying
// nothing the tensor list does not; RunPureStateDict registers the same
// tensors, in the same order, with the same checks and node count, without
// building the tree (~350 bytes per tensor). Anything else takes the walk.
bool Converter::PureStateDict(Ref root) {
  if (root.kind != Kind::kDict || !s_.prefix.empty()) return false;
  const std::span<const Ref> items = g_.at(root).items();
  if (items.empty()) return false;
  const Ref attrs = g_.attrs_of(root.id);
  if (attrs.kind == Kind::kDict && !g_.at(attrs).items().empty()) return false;
  bool pure = true;
  size_t i = 0;
  for (; pure && i + 1 < items.size(); i += 2) {
    const Ref k = items[i], v = items[i + 1];
    if (k.kind != Kind::kStr || v.kind != Kind::kRecord || on_path_[v.id]) break;
    const std::string_view key = NameText(k);
    if (key.empty() || key.find('\0') != std::string_view::npos) break;
    const Object& o = g_.at(v);
    if (o.record == RecordKind::kTensor) {
      pure = g_.tensors[o.aux].layout == TensorInfo::Layout::kStrided;
    } else if (o.record == RecordKind::kNdArray) {
      pure = g_.arrays[o.aux].built && g_.arrays[o.aux].items.kind != Kind::kList;
    } else {
      pure = o.record == RecordKind::kStorage;
    }
    on_path_[v.id] = 1;  // a tensor reached twice is named once: not pure
  }
  pure = pure && i + 1 >= items.size();
  for (size_t j = 1; j < i + 1 && j < items.size(); j += 2) on_path_[items[j].id] = 0;
  return pure;
}

// The walk's steps for a pure state_dict (Visit of the dict, then of each
// value), in its order: each entry is counted and named (VisitTensor). The
// walk's checks for two keys rendering alike (AddMapChildren) and for two
// tensors named alike (UniqueName) cannot fire: every dict the machine
// builds holds its keys once as Python compares them (pickle_keys.h), and
// str keys compare by their bytes, which are the names.
Status Converter::RunPureStateDict(Ref root) {
  SAFEMODEL_RETURN_IF_ERROR(Count(1));
  const std::span<const Ref> items = g_.at(root).items();
  tensors_.reserve(items.size() / 2);
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    SAFEMODEL_RETURN_IF_ERROR(Count(2));
    std::string name(NameText(items[i]));
    if (name.size() > kMaxNameBytes) {
      return Status::LimitExceeded(s_.where + ": tensor name of " + Num(name.size()) +
                                   " bytes exceeds " + Num(kMaxNameBytes));
    }
    AddPending(items[i + 1].id, std::move(name));
    ++nodes_;
  }
  return Status::Ok();
}

// Frees the objects (and what only the walk needs) once every tensor is
// pending: EmitTensors reads the side tables only.
void Converter::ReleaseObjects() {
  if (!s_.release_objects) return;
  g_.ClearObjects();
  std::vector<uint8_t>().swap(on_path_);
  std::unordered_map<ObjId, size_t>().swap(tensor_names_);
  KeyedStringSet().swap(used_names_);
  g_.attrs.clear();
  if (s_.after_walk) s_.after_walk();
}

Result<Converted> Converter::Run(Ref root) {
  Converted result;
  // The dicts' key indices serve the machine's lookups (SETITEM) only: the
  // walk reads items in order. Freed before it adds its pending list (2 MB
  // for a state_dict of 100,000 tensors, at the walk's peak).
  if (s_.release_objects) std::deque<KeyIndex>().swap(g_.key_index);
  if (PureStateDict(root)) {
    SAFEMODEL_RETURN_IF_ERROR(RunPureStateDict(root));
    ReleaseObjects();
    SAFEMODEL_RETURN_IF_ERROR(EmitTensors());
    if (!g_.owned.empty()) {
      out_->keepalive.push_back(std::make_shared<std::deque<std::string>>(std::move(g_.owned)));
    }
    return result;
  }
  Value tree;
  work_.push_back({root, &tree, "", 1});
  while (!work_.empty()) {
    Work w = std::move(work_.back());
    work_.pop_back();
    if (w.exit) {
      on_path_[w.ref.id] = 0;
      continue;
    }
    SAFEMODEL_RETURN_IF_ERROR(Visit(w));
  }
  const bool root_instance =
      root.kind == Kind::kRecord && g_.at(root).record == RecordKind::kInstance;
  ReleaseObjects();
  SAFEMODEL_RETURN_IF_ERROR(EmitTensors());
  // The tensors only view the input and the bytes the machine decoded
  // (numpy data, Graph::owned); nothing reads the rest of the graph once
  // they are emitted. Keeping just those bytes lets the objects and side
  // tables (hundreds of MB for 100,000 tensors) be freed when the parser
  // returns, before anything is streamed. Moving a deque keeps its elements
  // (and so every view of them) in place.
  if (!g_.owned.empty()) {
    out_->keepalive.push_back(std::make_shared<std::deque<std::string>>(std::move(g_.owned)));
  }
  const bool root_module = root_instance && tree.is_map() && tree.Find("_modules") != nullptr;
  if (root_module && s_.architecture_from_root_module) {
    result.architecture = ModuleArchitecture(tree);
    return result;
  }
  // A root that is just a tensor, or a map of tensors with nothing else,
  // carries no metadata beyond the tensor list.
  // The tree says nothing the tensor list does not when it is a tensor, or
  // a map whose every entry is the tensor of that name (a state_dict).
  auto is_ref = [](const Value& v, std::string_view name) {
    const Value* t = v.is_map() && v.entries().size() == 1 ? v.Find("$tensor") : nullptr;
    return t != nullptr && t->is_string() && t->string_value() == name;
  };
  if (tree.is_map() && tree.entries().size() == 1 && tree.Find("$tensor") != nullptr) return result;
  bool only_tensors = tree.is_map() && !tree.entries().empty() && s_.prefix.empty();
  if (tree.is_map()) {
    for (const auto& entry : tree.entries())
      only_tensors = only_tensors && is_ref(entry.second, entry.first);
  }
  if (!only_tensors) result.metadata = std::move(tree);
  return result;
}

}  // namespace internal

Result<Converted> ConvertGraph(std::shared_ptr<Graph> graph, Ref root,
                               const ConvertSettings& settings, ParseContext& ctx,
                               ParsedModel* out) {
  internal::Converter c(std::move(graph), settings, ctx, out);
  return c.Run(root);
}

void StoreTrees(Converted converted, ParsedModel* out) {
  if (!converted.architecture.is_null()) out->architecture = std::move(converted.architecture);
  if (!converted.metadata.is_null()) out->metadata = std::move(converted.metadata);
}

}  // namespace safemodel::loader::pickle
