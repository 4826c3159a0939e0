// BUILD states of instances (argparse.Namespace, nn modules, user classes)
// and of OrderedDicts: a (dict, slots) pair or a dict, applied as Python
// applies it (__dict__.update and setattr), with the keys that would be
// instructions rather than data refused.
#include <string>
#include <utility>
#include <vector>

#include "loader/pickle/pickle_handlers.h"
#include "loader/pickle/pickle_keys.h"

namespace safemodel::loader::pickle {

namespace {

// Attribute names that are instructions, not data, once set on an object:
// __class__ and __dict__ (set through the setattr half of a BUILD state they
// replace the object's class - joblib then reads raw array bytes from the
// stream where the converter saw opcodes - or all its attributes), and
// __setstate__/__reduce__/__reduce_ex__/__getstate__ and every other special
// name (a later BUILD calls inst.__setstate__ found on the instance; copy and
// pickle call __reduce_ex__ found there). Every dunder name is refused, so a
// hook added to Python later is refused too.
bool IsSpecialName(std::string_view k) {
  return k.size() >= 4 && k.substr(0, 2) == "__" && k.substr(k.size() - 2) == "__";
}

// Merges the items of dict `src` into dict `dst` (a __dict__ update).
Status Merge(Builder& m, Ref dst, Ref src) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, m.CopyItems(src));
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    SAFEMODEL_RETURN_IF_ERROR(SetItem(m, dst, items[i], items[i + 1]));
  }
  return Status::Ok();
}

// *current (a dict, or None before the first BUILD) updated with `part`; the
// object keeps its own copy.
Status Update(Builder& m, Ref* current, Ref part) {
  if (current->kind == Kind::kDict) return Merge(m, *current, part);
  SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, Snapshot(m, part));
  *current = copy;
  return Status::Ok();
}

}  // namespace

// Python copies a BUILD state into the instance's __dict__ item by item, so
// later changes to the state dict (a SETITEM through the memo) do not reach
// the instance: neither may they here.
Result<Ref> Snapshot(Builder& m, Ref d) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, m.CopyItems(d));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref copy, m.New(Kind::kDict));
  m.graph().GrowItems(copy.id) = std::move(items);
  return copy;
}

// Non-str keys in the __dict__ half are stored by the C unpickler (torch,
// numpy) and rejected by the Python one (joblib): two loaders, two objects.
// nn.Module hooks are callables torch calls when the module runs or its
// state dict is saved or loaded; a saved module has none.
Status CheckState(Builder& m, Ref dict, const std::string& cls, bool setattr, bool module) {
  if (dict.kind != Kind::kDict) return Status::Ok();
  const Graph& g = m.graph();
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, m.CopyItems(dict));
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    Ref k = items[i], v = items[i + 1];
    if (k.kind != Kind::kStr) {
      return Status::Unsupported(
          "BUILD state of " + cls + " has a key that is " + KindName(g, k) +
          ", not a str (the C unpickler stores it, the Python one used by joblib rejects it)" +
          m.At());
    }
    const std::string_view name = g.text(k);
    if (IsSpecialName(name)) {
      m.Refuse("pickle.state",
               "BUILD at byte " + m.OpByte() + " sets '" + Printable(name) +
                   "' on an instance of " + cls + " (" +
                   (setattr ? "through setattr" : "in its __dict__") +
                   "): a special name is an instruction to the loader (a class change, a hook "
                   "that later opcodes or loaders call), not data",
               {cls + "." + std::string(name)});
      continue;
    }
    const bool hooks = name.size() > 6 && name.substr(name.size() - 6) == "_hooks";
    if (module && hooks && !IsEmptyState(g, v) && !m.IsOpaque(v)) {
      m.Refuse("pickle.state",
               "BUILD at byte " + m.OpByte() + " gives " + cls + " '" + Printable(name) + "' (" +
                   KindName(g, v) +
                   "): hooks are called by torch when the module runs, saves or loads",
               {cls + "." + std::string(name)});
    }
  }
  return Status::Ok();
}

Status BuildInstance(Builder& m, Ref obj, Ref state) {
  Graph& g = m.graph();
  const uint32_t aux = g.at(obj).aux;
  const std::string cls = g.name(g.instances[aux].cls);
  const bool module = g.global(g.instances[aux].cls).kind == GlobalKind::kNnModule;
  Ref dict = state, slots = Ref::None();
  if (state.kind == Kind::kTuple && g.at(state).items().size() == 2) {
    if (module) {
      // Module.__setstate__ does self.__dict__.update(state): a tuple fails.
      return Status::Malformed("BUILD state of " + cls +
                               " is a tuple; torch.nn.Module.__setstate__ takes a dict" + m.At());
    }
    dict = g.at(state).items()[0];
    slots = g.at(state).items()[1];
    if (slots.kind != Kind::kNone && slots.kind != Kind::kDict) {
      return Status::Malformed("instance slot state must be a dict" + m.At());
    }
  }
  if (dict.kind != Kind::kDict && dict.kind != Kind::kNone) {
    return Status::Unsupported("instance state of " + cls + " is " + KindName(g, dict) +
                               ", not a dict" + m.At());
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckState(m, dict, cls, /*setattr=*/false, module));
  SAFEMODEL_RETURN_IF_ERROR(CheckState(m, slots, cls, /*setattr=*/true, module));
  // Both halves update what the instance already has (a second BUILD, as
  // __dict__.update and setattr do).
  if (dict.kind == Kind::kDict) {
    Ref current = g.instances[aux].state;
    SAFEMODEL_RETURN_IF_ERROR(Update(m, &current, dict));
    g.instances[aux].state = current;
  }
  if (slots.kind == Kind::kDict) {
    Ref current = g.instances[aux].slots;
    SAFEMODEL_RETURN_IF_ERROR(Update(m, &current, slots));
    g.instances[aux].slots = current;
  }
  g.instances[aux].built = true;
  return Status::Ok();
}

// OrderedDict attributes (a torch state_dict's _metadata), kept as attrs.
// OrderedDict has no __setstate__: the dict half updates its __dict__.
Status BuildOrderedDict(Builder& m, Ref obj, Ref state) {
  Graph& g = m.graph();
  Ref dict = state;
  if (state.kind == Kind::kTuple && g.at(state).items().size() == 2) {
    dict = g.at(state).items()[0];
    if (!IsEmptyState(g, g.at(state).items()[1])) {
      return Status::Unsupported("OrderedDict BUILD with slot state (setattr on the dict)" +
                                 m.At());
    }
  }
  if (dict.kind != Kind::kDict && dict.kind != Kind::kNone) {
    return Status::Malformed("OrderedDict state must be a dict" + m.At());
  }
  if (dict.kind != Kind::kDict) return Status::Ok();
  SAFEMODEL_RETURN_IF_ERROR(CheckState(m, dict, "collections.OrderedDict", false, false));
  Ref current = g.attrs_of(obj.id);
  SAFEMODEL_RETURN_IF_ERROR(Update(m, &current, dict));
  g.attrs[obj.id] = current;
  return Status::Ok();
}

}  // namespace safemodel::loader::pickle
