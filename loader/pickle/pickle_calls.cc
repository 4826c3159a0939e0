// Dispatch from the opcode loop to the handlers: which callables may run
// (only table names; a user-script name only as a class without arguments),
// the table from GlobalKind to handler, NEWOBJ and BUILD, and the argument
// readers the handlers share.
#include <algorithm>
#include <array>

#include "safemodel/limits.h"

#include "loader/pickle/pickle_handlers.h"
#include "loader/pickle/pickle_opcodes.h"

namespace safemodel::loader::pickle {

namespace {

// The handler of each table kind; null for kinds that are never called
// (types such as torch.float32 or numpy.ndarray, used only as arguments).
constexpr std::array<Handler, kGlobalKindCount> MakeHandlers() {
  std::array<Handler, kGlobalKindCount> t{};
  auto set = [&t](GlobalKind kind, Handler h) { t[static_cast<size_t>(kind)] = h; };
  set(GlobalKind::kOrderedDict, ReduceOrderedDict);
  set(GlobalKind::kCounter, ReduceOrderedDict);
  set(GlobalKind::kSet, ReduceSet);
  set(GlobalKind::kFrozenSet, ReduceSet);
  set(GlobalKind::kBytes, ReduceBytes);
  set(GlobalKind::kByteArray, ReduceBytes);
  set(GlobalKind::kCodecsEncode, ReduceCodecsEncode);
  set(GlobalKind::kComplex, ReduceComplex);
  set(GlobalKind::kReconstructor, ReduceReconstructor);
  set(GlobalKind::kNewObj, ReduceNewObj);
  set(GlobalKind::kNamespace, ReduceNamespace);
  set(GlobalKind::kRebuildTensor, ReduceRebuildTensor);
  set(GlobalKind::kRebuildTensorV2, ReduceRebuildTensor);
  set(GlobalKind::kRebuildTensorV3, ReduceRebuildTensor);
  set(GlobalKind::kRebuildParameter, ReduceRebuildParameter);
  set(GlobalKind::kRebuildParameterWithState, ReduceRebuildParameter);
  set(GlobalKind::kRebuildQTensor, ReduceRebuildQTensor);
  set(GlobalKind::kRebuildSparseTensor, ReduceRebuildSparse);
  set(GlobalKind::kRebuildFromTypeV2, ReduceRebuildFromTypeV2);
  set(GlobalKind::kRebuildUnsupported, ReduceRebuildUnsupported);
  set(GlobalKind::kTorchSize, ReduceTorchSize);
  set(GlobalKind::kTorchDevice, ReduceTorchDevice);
  set(GlobalKind::kGetLayout, ReduceGetLayout);
  set(GlobalKind::kNpReconstruct, ReduceNpReconstruct);
  set(GlobalKind::kNpDtype, ReduceNpDtype);
  set(GlobalKind::kNpScalar, ReduceNpScalar);
  set(GlobalKind::kNpFromBuffer, ReduceNpFromBuffer);
  return t;
}

constexpr std::array<Handler, kGlobalKindCount> kHandlers = MakeHandlers();

// Classes whose instances NEWOBJ may make: their state is plain data.
bool InstantiableKind(GlobalKind kind) {
  return kind == GlobalKind::kNamespace || kind == GlobalKind::kNnModule ||
         kind == GlobalKind::kJoblibArrayWrapper;
}

}  // namespace

Status Call::Arity(const Builder& m, size_t lo, size_t hi) const {
  if (args.size() < lo || args.size() > hi) {
    return Status::Malformed(name + " called with " + Num(args.size()) + " arguments" + m.At());
  }
  return Status::Ok();
}

Result<Ref> CallName(Builder& m, Ref callable, Ref args, uint8_t op) {
  if (m.IsOpaque(callable) || m.IsOpaque(args)) return m.Opaque();
  Graph& g = m.graph();
  if (callable.kind != Kind::kGlobal) {
    // Only a name can be called. Anything else is a value some earlier call
    // produced, or an instance whose class would run its own code.
    m.Refuse("pickle.call",
             std::string(OpName(op)) + " at byte " + m.OpByte() + " calls " +
                 KindName(g, callable) + ", not a known data constructor",
             {KindName(g, callable)});
    return m.Opaque();
  }
  Object& name = g.at(callable);
  if (g.global(callable).kind == GlobalKind::kUnknown) {
    if (name.consumed || m.IsUserGlobal(callable.id)) {
      m.Refuse("pickle.call",
               g.name(callable) + " at byte " + m.OpByte() + ": " + OpName(op) +
                   " calls a user-defined name, which runs its code",
               {g.name(callable)});
      name.consumed = true;  // refused here; not again as a bare name
    }
    return m.Opaque();  // refused when the name was read
  }
  if (args.kind != Kind::kTuple) {
    return m.Semantic(m.Bad(std::string(OpName(op)) + " of " + g.name(callable) +
                            ": arguments must be a tuple, not " + KindName(g, args)));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, m.CopyItems(args));
  for (Ref a : items) {
    if (m.IsOpaque(a)) return m.Opaque();
  }
  Result<Ref> r = Reduce(m, callable, items);
  if (!r.ok()) return m.Semantic(r.status());
  return r;
}

Result<Ref> Reduce(Builder& m, Ref callable, const std::vector<Ref>& args) {
  const Graph& g = m.graph();
  const Call call{callable, g.global(callable), g.name(callable), args};
  const Handler handler = kHandlers[static_cast<size_t>(call.entry.kind)];
  if (handler == nullptr) {
    return Status::Unsupported(call.name +
                               " is a known name but is not called this way by any "
                               "known writer" +
                               m.At());
  }
  return handler(m, call);
}

Result<Ref> NewObject(Builder& m, Ref cls, const std::vector<Ref>& args, uint8_t op) {
  if (m.IsOpaque(cls)) return m.Opaque();
  Graph& g = m.graph();
  if (cls.kind != Kind::kGlobal) {
    return Status::Malformed(std::string(OpName(op)) + " of " + KindName(g, cls) +
                             ", which is not a class" + m.At());
  }
  const GlobalKind kind = g.global(cls).kind;
  const std::string& cls_name = g.name(cls);
  const bool user = kind == GlobalKind::kUnknown && m.IsUserGlobal(cls.id);
  if (kind == GlobalKind::kUnknown && !user) return m.Opaque();  // refused when read
  if (kind == GlobalKind::kOrderedDict && args.empty()) return Reduce(m, cls, {});
  if (kind == GlobalKind::kJoblibFileWrapper) {
    m.Refuse("pickle.external_file",
             cls_name + " at byte " + m.OpByte() +
                 ": the array's data lives in a separate file, which safemodel does not read",
             {cls_name});
    return m.Opaque();
  }
  if (!InstantiableKind(kind) && !user) {
    return Status::Unsupported(std::string(OpName(op)) + " of " + cls_name + m.At());
  }
  if (!args.empty()) {
    if (user) {
      m.Refuse("pickle.call",
               cls_name + " at byte " + m.OpByte() + ": " + OpName(op) +
                   " passes arguments to a user-defined class's __new__",
               {cls_name});
      return m.Opaque();
    }
    return Status::Unsupported(std::string(OpName(op)) + " of " + cls_name + " with arguments" +
                               m.At());
  }
  if (user) g.at(cls).consumed = true;
  const RecordKind record =
      kind == GlobalKind::kJoblibArrayWrapper ? RecordKind::kJoblibArray : RecordKind::kInstance;
  return m.NewRecordWith(record, g.instances,
                         InstanceInfo{cls.id, Ref::None(), Ref::None(), false});
}

Status Build(Builder& m, Ref* target, Ref state) {
  Ref obj = *target;
  if (m.IsOpaque(obj) || m.IsOpaque(state)) return Status::Ok();
  Graph& g = m.graph();
  if (obj.kind == Kind::kGlobal) {
    const std::string& name = g.name(obj);
    m.Refuse("pickle.build_global",
             name + " at byte " + m.OpByte() +
                 ": BUILD sets attributes on a module, class or function, which changes what "
                 "later names resolve to",
             {name});
    *target = m.Opaque().value();
    return Status::Ok();
  }
  if (obj.kind == Kind::kDict && g.at(obj).ordered) return BuildOrderedDict(m, obj, state);
  if (obj.kind == Kind::kRecord) {
    Object& o = g.at(obj);
    switch (o.record) {
      case RecordKind::kInstance:
        return BuildInstance(m, obj, state);
      case RecordKind::kNdArray:
        return BuildNpArray(m, o, state);
      case RecordKind::kNpDtype:
        return BuildNpDtype(m, o, state);
      default:
        break;
    }
  }
  return Status::Malformed("BUILD on " + KindName(g, obj) + m.At());
}

Result<std::vector<uint64_t>> ShapeArg(Builder& m, Ref r, const char* what) {
  const Graph& g = m.graph();
  if (r.kind != Kind::kTuple && r.kind != Kind::kList) {
    return Status::Malformed(std::string(what) + " must be a tuple of ints, not " +
                             KindName(g, r));
  }
  const std::span<const Ref> items = g.at(r).items();
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

Result<std::vector<int64_t>> StridesArg(Builder& m, Ref r, const char* what) {
  const Graph& g = m.graph();
  if (r.kind != Kind::kTuple && r.kind != Kind::kList) {
    return Status::Malformed(std::string(what) + " must be a tuple of ints, not " +
                             KindName(g, r));
  }
  std::vector<int64_t> out;
  for (Ref d : g.at(r).items()) {
    // torch never writes negative strides; a negative one is a crafted file.
    if (d.kind != Kind::kInt || d.i < 0) {
      return Status::Malformed(std::string(what) + " must hold non-negative ints");
    }
    out.push_back(d.i);
  }
  return out;
}

Result<ByteView> BytesArg(Builder& m, Ref r, const char* what) {
  const Graph& g = m.graph();
  if (r.kind == Kind::kBytes || r.kind == Kind::kByteArray) return g.at(r).data();
  // Python 2 str data (BINSTRING) that was ASCII decodes to str; its bytes
  // are the same.
  if (r.kind == Kind::kStr) {
    ByteView d = g.at(r).data();
    if (std::all_of(d.begin(), d.end(), [](uint8_t c) { return c < 0x80; })) return d;
  }
  return Status::Malformed(std::string(what) + " must be bytes, not " + KindName(g, r));
}

bool IsEmptyState(const Graph& g, Ref r) {
  return r.kind == Kind::kNone || (r.kind == Kind::kDict && g.at(r).items().empty());
}

}  // namespace safemodel::loader::pickle
