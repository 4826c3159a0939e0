#include "loader/tf_savedmodel/saved_model_scan.h"

#include <string_view>

#include "loader/tf_bundle/proto_wire.h"

namespace safemodel::loader::tf {

namespace {

using proto::Field;
using proto::WireType;

std::string Num(uint64_t v) { return std::to_string(v); }

Status Bad(const std::string& message) {
  return Status::Malformed("saved_model.pb: " + message + " [tf.saved_model]");
}

enum class Kind {
  kSavedModel, kMetaGraph, kMetaInfo, kGraph, kNode, kLibrary, kFunction, kAsset, kObjectGraph,
  kSavedObject, kUserObject,
};

struct Work {
  ByteView bytes;
  Kind kind;
  std::string where;  // "meta_graphs[0] graph", "function 'f'"
  uint64_t index = 0; // kSavedObject: its node index
};

std::string Text(const Field& f) { return std::string(AsChars(f.bytes)); }

class Scanner {
 public:
  Result<SavedModelScan> Run(ByteView pb) {
    std::vector<Work> stack{{pb, Kind::kSavedModel, "", 0}};
    while (!stack.empty()) {
      Work w = std::move(stack.back());
      stack.pop_back();
      SAFEMODEL_RETURN_IF_ERROR(Visit(w, &stack));
    }
    return std::move(scan_);
  }

 private:
  // The length-delimited fields of a message, checked to the last byte.
  static Result<std::vector<Field>> Fields(ByteView bytes, const std::string& where) {
    std::vector<Field> out;
    proto::WireReader r(bytes, where.empty() ? "SavedModel" : where);
    while (!r.at_end()) {
      Result<Field> f = r.Next();
      if (!f.ok()) return Bad(f.status().message());
      out.push_back(*f);
    }
    return out;
  }

  static bool Len(const Field& f, uint32_t number) {
    return f.number == number && f.type == WireType::kLen;
  }

  Status Visit(const Work& w, std::vector<Work>* stack) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Field> fields, Fields(w.bytes, w.where));
    // Children are pushed in reverse so that they are visited in file order.
    std::vector<Work> next;
    switch (w.kind) {
      case Kind::kSavedModel:
        for (const Field& f : fields) {
          if (Len(f, 2)) next.push_back({f.bytes, Kind::kMetaGraph, "meta_graphs[" + Num(scan_.meta_graphs++) + "]"});
        }
        break;
      case Kind::kMetaGraph:
        for (const Field& f : fields) {
          if (Len(f, 1)) next.push_back({f.bytes, Kind::kMetaInfo, w.where});
          if (Len(f, 2)) next.push_back({f.bytes, Kind::kGraph, w.where + " graph"});
          if (Len(f, 6)) next.push_back({f.bytes, Kind::kAsset, w.where});
          if (Len(f, 7)) next.push_back({f.bytes, Kind::kObjectGraph, w.where});
        }
        break;
      case Kind::kMetaInfo:
        for (const Field& f : fields) {
          if (Len(f, 4)) scan_.tags.push_back(Text(f));
          if (Len(f, 5)) scan_.tensorflow_version = Text(f);
        }
        break;
      case Kind::kGraph:
        for (const Field& f : fields) {
          if (Len(f, 1)) next.push_back({f.bytes, Kind::kNode, w.where});
          if (Len(f, 2)) next.push_back({f.bytes, Kind::kLibrary, w.where});
        }
        break;
      case Kind::kLibrary:
        for (const Field& f : fields) {
          if (Len(f, 1)) next.push_back({f.bytes, Kind::kFunction, w.where});
        }
        break;
      case Kind::kFunction: {
        ++scan_.functions;
        std::string name;
        for (const Field& f : fields) {
          if (!Len(f, 1)) continue;
          SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Field> sig, Fields(f.bytes, "function signature"));
          for (const Field& s : sig) {
            if (Len(s, 1)) name = Text(s);
          }
        }
        for (const Field& f : fields) {
          if (Len(f, 3)) next.push_back({f.bytes, Kind::kNode, "function '" + Printable(name) + "'"});
        }
        break;
      }
      case Kind::kNode:
        SAFEMODEL_RETURN_IF_ERROR(Node(w, fields));
        break;
      case Kind::kAsset:
        for (const Field& f : fields) {
          if (Len(f, 2)) scan_.assets.push_back(Text(f));
        }
        break;
      case Kind::kObjectGraph: {
        uint64_t index = 0;
        for (const Field& f : fields) {
          if (Len(f, 1)) next.push_back({f.bytes, Kind::kSavedObject, w.where, index++});
        }
        break;
      }
      case Kind::kSavedObject:
        for (const Field& f : fields) {
          if (Len(f, 4)) next.push_back({f.bytes, Kind::kUserObject, w.where, w.index});
        }
        break;
      case Kind::kUserObject: {
        UserObject u;
        u.node = w.index;
        for (const Field& f : fields) {
          if (Len(f, 1)) u.identifier = Text(f);
          if (Len(f, 3)) u.metadata = Text(f);
        }
        if (!u.metadata.empty()) scan_.user_objects.push_back(std::move(u));
        break;
      }
    }
    for (auto it = next.rbegin(); it != next.rend(); ++it) stack->push_back(std::move(*it));
    return Status::Ok();
  }

  Status Node(const Work& w, const std::vector<Field>& fields) {
    ++scan_.nodes;
    std::string name;
    for (const Field& f : fields) {
      if (Len(f, 1)) name = Text(f);
    }
    for (const Field& f : fields) {
      if (!Len(f, 2)) continue;
      const std::string op = Text(f);
      auto it = scan_.ops.find(op);
      if (it == scan_.ops.end()) {
        if (scan_.ops.size() >= kMaxDistinctOps) {
          return Status::LimitExceeded("saved_model.pb: more than " + Num(kMaxDistinctOps) + " distinct ops");
        }
        it = scan_.ops.emplace(op, OpUse{0, w.where + " node '" + Printable(name) + "'"}).first;
      }
      ++it->second.count;
    }
    return Status::Ok();
  }

  SavedModelScan scan_;
};

}  // namespace

Result<SavedModelScan> ScanSavedModel(ByteView pb) {
  Scanner s;
  return s.Run(pb);
}

Result<std::vector<UserObject>> ReadKerasMetadata(ByteView pb) {
  using proto::FieldSpec;
  constexpr FieldSpec kTop[] = {{1, WireType::kLen, true}};
  constexpr FieldSpec kNode[] = {{2, WireType::kVarint, false}, {3, WireType::kLen, false},
                                 {4, WireType::kLen, false},    {5, WireType::kLen, false},
                                 {6, WireType::kLen, false}};
  auto bad = [](const Status& s) {
    return Status::Malformed("keras_metadata.pb: " + s.message() + " [tf.keras_metadata]");
  };
  Result<std::vector<Field>> nodes = proto::DecodeMessage(pb, kTop, "SavedMetadata");
  if (!nodes.ok()) return bad(nodes.status());
  std::vector<UserObject> out;
  for (const Field& n : *nodes) {
    Result<std::vector<Field>> f = proto::DecodeMessage(n.bytes, kNode, "SavedMetadata node");
    if (!f.ok()) return bad(f.status());
    UserObject u;
    u.node = proto::Uint(*f, 2);
    u.path = std::string(proto::Bytes(*f, 3));
    u.identifier = std::string(proto::Bytes(*f, 4));
    u.metadata = std::string(proto::Bytes(*f, 5));
    out.push_back(std::move(u));
  }
  return out;
}

bool IsFileOp(std::string_view op, bool* standard) {
  *standard = false;
  for (std::string_view s : {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename"}) {
    if (op == s) {
      *standard = true;
      return true;
    }
  }
  for (std::string_view s :
       {"ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "Save", "SaveSlices", "Restore",
        "RestoreSlice", "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
        "LookupTableImport", "LookupTableImportV2", "TextLineDataset", "TFRecordDataset",
        "FixedLengthRecordDataset", "SaveDataset", "SaveDatasetV2", "LoadDataset",
        "SnapshotDataset", "SnapshotDatasetV2", "CreateSummaryFileWriter", "WriteSummary",
        "WriteScalarSummary", "PrintV2", "DebugIdentity", "DebugIdentityV2", "DecodeProtoV2",
        "EncodeProto", "PyFunc", "PyFuncStateless", "EagerPyFunc", "LoadLibrary"}) {
    if (op == s) return true;
  }
  return false;
}

}  // namespace safemodel::loader::tf
