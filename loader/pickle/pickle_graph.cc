#include "loader/pickle/pickle_graph.h"

namespace safemodel::loader::pickle {

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
      return "the name " + graph.name(r);
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

}  // namespace safemodel::loader::pickle
