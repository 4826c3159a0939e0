// Handlers for Python's own data types: OrderedDict and Counter, set and
// frozenset, bytes and bytearray (and _codecs.encode, how protocols 0-2
// write bytes), complex, copyreg's protocol-0/1 object patterns, and
// argparse.Namespace / types.SimpleNamespace.
#include <string>
#include <utility>
#include <vector>

#include "loader/pickle/pickle_handlers.h"
#include "loader/pickle/pickle_keys.h"
#include "loader/pickle/pickle_opcodes.h"
#include "loader/pickle/text_codecs.h"

namespace safemodel::loader::pickle {

namespace {

// The items of a dict (k0, v0, ...) or of a list of (key, value) pairs,
// inserted into dict `d` in order.
Status FillFromPairs(Builder& m, const Call& call, Ref d, Ref src) {
  Graph& g = m.graph();
  if (src.kind == Kind::kDict) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, m.CopyItems(src));
    for (size_t i = 0; i + 1 < items.size(); i += 2) {
      SAFEMODEL_RETURN_IF_ERROR(SetItem(m, d, items[i], items[i + 1]));
    }
    return Status::Ok();
  }
  if (src.kind != Kind::kList && src.kind != Kind::kTuple) {
    return Status::Malformed(call.name + " argument must be a list of pairs" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> pairs, m.CopyItems(src));
  for (Ref p : pairs) {
    if ((p.kind != Kind::kList && p.kind != Kind::kTuple) || g.at(p).items().size() != 2) {
      return Status::Malformed(call.name + " argument must be a list of pairs" + m.At());
    }
    Ref k = g.at(p).items()[0], v = g.at(p).items()[1];
    SAFEMODEL_RETURN_IF_ERROR(SetItem(m, d, k, v));
  }
  return Status::Ok();
}

}  // namespace

Result<Ref> ReduceOrderedDict(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 0, 1));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref d, m.New(Kind::kDict));
  m.graph().at(d).ordered = true;
  if (!call.args.empty()) SAFEMODEL_RETURN_IF_ERROR(FillFromPairs(m, call, d, call.args[0]));
  return d;
}

Result<Ref> ReduceSet(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 0, 1));
  SAFEMODEL_ASSIGN_OR_RETURN(
      Ref s, m.New(call.entry.kind == GlobalKind::kSet ? Kind::kSet : Kind::kFrozenSet));
  if (call.args.empty()) return s;
  Ref src = call.args[0];
  if (src.kind != Kind::kList && src.kind != Kind::kTuple && src.kind != Kind::kSet &&
      src.kind != Kind::kFrozenSet) {
    return Status::Malformed(call.name + " argument must be a list" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> items, m.CopyItems(src));
  for (Ref item : items) SAFEMODEL_RETURN_IF_ERROR(AddItem(m, s, item));
  return s;
}

Result<Ref> ReduceBytes(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 0, 2));
  const Kind kind = call.entry.kind == GlobalKind::kBytes ? Kind::kBytes : Kind::kByteArray;
  if (call.args.empty()) return m.NewOwned(kind, "");
  if (call.args.size() == 1) {
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, BytesArg(m, call.args[0], "bytearray argument"));
    return m.NewData(kind, b);
  }
  // (str, 'latin-1'): Python 2 protocols encode bytes as latin-1 text.
  return ReduceCodecsEncode(m, call);
}

Result<Ref> ReduceCodecsEncode(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 2, 2));
  const Graph& g = m.graph();
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view text, AsStr(g, call.args[0], call.name + " text"));
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view encoding,
                             AsStr(g, call.args[1], call.name + " encoding"));
  if (encoding != "latin1" && encoding != "latin-1" && encoding != "iso-8859-1") {
    return Status::Unsupported(call.name + " with encoding '" + Printable(encoding) +
                               "' (only latin-1 is what pickle writes)" + m.At());
  }
  Result<std::string> bytes = EncodeLatin1(text);
  if (!bytes.ok()) {
    return Status(bytes.status().code(), call.name + ": " + bytes.status().message() + m.At());
  }
  return m.NewOwned(call.entry.kind == GlobalKind::kByteArray ? Kind::kByteArray : Kind::kBytes,
                    std::move(*bytes));
}

Result<Ref> ReduceComplex(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 1, 2));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref c, m.NewRecord(RecordKind::kComplex));
  Ref parts[2];
  for (size_t i = 0; i < 2; ++i) {
    Ref v = i < call.args.size() ? call.args[i] : Ref::Float(0);
    if (v.kind == Kind::kInt || v.kind == Kind::kBool) v = Ref::Float(static_cast<double>(v.i));
    if (v.kind != Kind::kFloat) return Status::Malformed("complex parts must be numbers" + m.At());
    parts[i] = v;
  }
  m.graph().SetItems(c.id, parts);
  return c;
}

// copyreg._reconstructor(cls, object, None): object.__new__(cls).
Result<Ref> ReduceReconstructor(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 3, 3));
  const Graph& g = m.graph();
  const std::vector<Ref>& args = call.args;
  if (args[1].kind != Kind::kGlobal || g.global(args[1]).kind != GlobalKind::kObject ||
      args[2].kind != Kind::kNone) {
    return Status::Unsupported("copyreg._reconstructor with a base other than object" + m.At());
  }
  return NewObject(m, args[0], {}, kReduce);
}

// copyreg.__newobj__(cls, *args): cls.__new__(cls, *args).
Result<Ref> ReduceNewObj(Builder& m, const Call& call) {
  if (call.args.empty()) return Status::Malformed("copyreg.__newobj__ without a class" + m.At());
  return NewObject(m, call.args[0], std::vector<Ref>(call.args.begin() + 1, call.args.end()),
                   kReduce);
}

Result<Ref> ReduceNamespace(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 0, 0));
  return NewObject(m, call.callable, {}, kReduce);
}

}  // namespace safemodel::loader::pickle
