#include "loader/tf_savedmodel/saved_model_scan.h"

#include <string_view>

#include "loader/tf_bundle/proto_wire.h"
#include "proto/base/text.h"

namespace safemodel::loader::tf {

namespace {

using proto::Field;
using proto::WireType;

Status Bad(const std::string& message) {
  return Status::Malformed("saved_model.pb: " + message + " [tf.saved_model]");
}

std::string Text(const Field& f) { return std::string(AsChars(f.bytes)); }

bool Len(const Field& f, uint32_t number) { return f.number == number && f.type == WireType::kLen; }

// One message's fields, read one at a time (nothing is collected, so memory
// does not grow with the number of fields); `visit` sees each field.
template <typename Visit>
Status EachField(ByteView bytes, const std::string& what, Visit visit) {
  proto::WireReader r(bytes, what);
  while (!r.at_end()) {
    Result<Field> f = r.Next();
    if (!f.ok()) return Bad(f.status().message());
    SAFEMODEL_RETURN_IF_ERROR(visit(*f));
  }
  return Status::Ok();
}

// The walk: one method per message kind, each calling the next level's for
// the fields it enters. The nesting is the schema's (at most six levels),
// fixed in the code; no data decides how deep it goes.
class Scanner {
 public:
  Result<SavedModelScan> Run(ByteView pb) {
    SAFEMODEL_RETURN_IF_ERROR(EachField(pb, "SavedModel", [&](const Field& f) {
      return Len(f, 2) ? MetaGraph(f.bytes, "meta_graphs[" + Num(scan_.meta_graphs++) + "]") : Status::Ok();
    }));
    return std::move(scan_);
  }

 private:
  Status MetaGraph(ByteView bytes, const std::string& where) {
    return EachField(bytes, where, [&](const Field& f) {
      if (Len(f, 1)) return MetaInfo(f.bytes, where);
      if (Len(f, 2)) return Graph(f.bytes, where + " graph");
      if (Len(f, 6)) return Asset(f.bytes, where);
      if (Len(f, 7)) return ObjectGraph(f.bytes, where);
      return Status::Ok();
    });
  }

  Status MetaInfo(ByteView bytes, const std::string& where) {
    return EachField(bytes, where + " meta_info_def", [&](const Field& f) {
      if (Len(f, 4)) scan_.tags.push_back(Text(f));
      if (Len(f, 5)) scan_.tensorflow_version = Text(f);
      return Status::Ok();
    });
  }

  Status Graph(ByteView bytes, const std::string& where) {
    return EachField(bytes, where, [&](const Field& f) {
      if (Len(f, 1)) return Node(f.bytes, where);
      if (Len(f, 2)) return Library(f.bytes, where);
      return Status::Ok();
    });
  }

  Status Library(ByteView bytes, const std::string& where) {
    return EachField(bytes, where + " library", [&](const Field& f) {
      return Len(f, 1) ? Function(f.bytes) : Status::Ok();
    });
  }

  // Read twice: the name (signature.name) first, for the nodes' locations.
  Status Function(ByteView bytes) {
    ++scan_.functions;
    std::string name;
    SAFEMODEL_RETURN_IF_ERROR(EachField(bytes, "function", [&](const Field& f) {
      if (!Len(f, 1)) return Status::Ok();
      return EachField(f.bytes, "function signature", [&](const Field& s) {
        if (Len(s, 1)) name = Printable(AsChars(s.bytes));
        return Status::Ok();
      });
    }));
    const std::string where = "function '" + name + "'";
    return EachField(bytes, where, [&](const Field& f) {
      return Len(f, 3) ? Node(f.bytes, where) : Status::Ok();
    });
  }

  Status Node(ByteView bytes, const std::string& where) {
    ++scan_.nodes;
    std::string name;
    std::vector<std::string> ops;  // protobuf keeps the last; every one is reported
    SAFEMODEL_RETURN_IF_ERROR(EachField(bytes, where + " node", [&](const Field& f) {
      if (Len(f, 1)) name = Printable(AsChars(f.bytes));
      if (Len(f, 2) && ops.size() < 8) ops.push_back(Text(f));
      return Status::Ok();
    }));
    for (std::string& op : ops) {
      auto it = scan_.ops.find(op);
      if (it == scan_.ops.end()) {
        if (scan_.ops.size() >= kMaxDistinctOps) {
          return Status::LimitExceeded("saved_model.pb: more than " + Num(kMaxDistinctOps) + " distinct ops");
        }
        it = scan_.ops.emplace(std::move(op), OpUse{0, where + " node '" + name + "'"}).first;
      }
      ++it->second.count;
    }
    return Status::Ok();
  }

  Status Asset(ByteView bytes, const std::string& where) {
    return EachField(bytes, where + " asset_file_def", [&](const Field& f) {
      if (Len(f, 2)) scan_.assets.push_back(Text(f));
      return Status::Ok();
    });
  }

  Status ObjectGraph(ByteView bytes, const std::string& where) {
    uint64_t index = 0;
    return EachField(bytes, where + " object_graph_def", [&](const Field& f) {
      if (!Len(f, 1)) return Status::Ok();
      const uint64_t node = index++;
      return EachField(f.bytes, "saved object", [&](const Field& o) {
        if (!Len(o, 4)) return Status::Ok();
        UserObject u;
        u.node = node;
        SAFEMODEL_RETURN_IF_ERROR(EachField(o.bytes, "user object", [&](const Field& x) {
          if (Len(x, 1)) u.identifier = Text(x);
          if (Len(x, 3)) u.metadata = Text(x);
          return Status::Ok();
        }));
        if (!u.metadata.empty()) scan_.user_objects.push_back(std::move(u));
        return Status::Ok();
      });
    });
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
