#include "loader/tf_bundle/bundle.h"

#include <algorithm>

#include "loader/tf_bundle/crc32c.h"
#include "loader/tf_bundle/proto_wire.h"
#include "loader/tf_bundle/table.h"
#include "proto/base/text.h"

namespace safemodel::loader::tf {

namespace {

using proto::FieldSpec;
using proto::WireType;

Status Bad(const std::string& message, std::string_view rule) {
  return Status::Malformed(message + " [" + std::string(rule) + "]");
}
Status Unsupported(const std::string& message, std::string_view rule) {
  return Status::Unsupported(message + " [" + std::string(rule) + "]");
}

// tensorflow/core/framework/types.proto values of the dtypes a bundle
// stores as plain little- or big-endian numbers.
std::optional<DType> NumericDType(uint64_t tf_type) {
  switch (tf_type) {
    case 1: return DType::kF32;
    case 2: return DType::kF64;
    case 3: return DType::kI32;
    case 4: return DType::kU8;
    case 5: return DType::kI16;
    case 6: return DType::kI8;
    case 8: return DType::kC64;
    case 9: return DType::kI64;
    case 10: return DType::kBool;
    case 14: return DType::kBF16;
    case 17: return DType::kU16;
    case 18: return DType::kC128;
    case 19: return DType::kF16;
    case 22: return DType::kU32;
    case 23: return DType::kU64;
    default: return std::nullopt;
  }
}
constexpr uint64_t kDtString = 7;

std::string TfTypeName(uint64_t t) {
  switch (t) {
    case 7: return "string";
    case 11: case 12: case 13: case 15: case 16: return "a quantized type";
    case 20: return "resource";
    case 21: return "variant";
    default: break;
  }
  if (t >= 101 && t <= 130) return "a reference type";
  return "DataType " + Num(t);
}

constexpr FieldSpec kHeaderSpec[] = {
    {1, WireType::kVarint, false}, {2, WireType::kVarint, false}, {3, WireType::kLen, false}};
constexpr FieldSpec kVersionSpec[] = {
    {1, WireType::kVarint, false}, {2, WireType::kVarint, false}, {3, WireType::kLen, true}};
constexpr FieldSpec kEntrySpec[] = {
    {1, WireType::kVarint, false}, {2, WireType::kLen, false},   {3, WireType::kVarint, false},
    {4, WireType::kVarint, false}, {5, WireType::kVarint, false}, {6, WireType::kFixed32, false},
    {7, WireType::kLen, true}};
constexpr FieldSpec kShapeSpec[] = {{2, WireType::kLen, true}, {3, WireType::kVarint, false}};
constexpr FieldSpec kDimSpec[] = {{1, WireType::kVarint, false}, {2, WireType::kLen, false}};

struct Header {
  uint64_t num_shards = 0;
  bool big_endian = false;
};

Result<Header> DecodeHeader(ByteView value, std::string_view where) {
  const std::string what = std::string(where) + " BundleHeaderProto";
  Result<std::vector<proto::Field>> fields = proto::DecodeMessage(value, kHeaderSpec, what);
  if (!fields.ok()) return Bad(fields.status().message(), "tf.bundle_header");
  Header h;
  const int64_t shards = proto::Int(*fields, 1);
  if (shards < 1 || static_cast<uint64_t>(shards) > kMaxShards) {
    return Bad(what + ": num_shards " + std::to_string(shards) + " is outside 1.." +
                   Num(kMaxShards), "tf.bundle_header");
  }
  h.num_shards = static_cast<uint64_t>(shards);
  const uint64_t endianness = proto::Uint(*fields, 2);
  if (endianness > 1) return Bad(what + ": unknown endianness " + Num(endianness), "tf.bundle_header");
  h.big_endian = endianness == 1;
  if (const proto::Field* v = proto::Find(*fields, 3)) {
    Result<std::vector<proto::Field>> version =
        proto::DecodeMessage(v->bytes, kVersionSpec, what + " version");
    if (!version.ok()) return Bad(version.status().message(), "tf.bundle_header");
    // TensorFlow's bundle format version is 1; a reader refuses bundles
    // asking for a newer reader or naming version 1 as bad.
    if (proto::Int(*version, 2) > 1) {
      return Unsupported(what + ": written for bundle readers of version " +
                             std::to_string(proto::Int(*version, 2)) + " and later",
                         "tf.bundle_header");
    }
    for (const proto::Field& f : *version) {
      if (f.number != 3) continue;
      ByteReader packed(f.bytes);
      while (!packed.at_end()) {
        SAFEMODEL_ASSIGN_OR_RETURN(uint64_t bad, proto::ReadVarint(packed, what));
        if (bad == 1) return Unsupported(what + ": marks bundle version 1 as bad", "tf.bundle_header");
      }
    }
  }
  return h;
}

Result<std::vector<uint64_t>> DecodeShape(ByteView bytes, const std::string& what) {
  SAFEMODEL_ASSIGN_OR_RETURN(auto fields, proto::DecodeMessage(bytes, kShapeSpec, what));
  if (proto::Uint(fields, 3) != 0) return Status::Malformed(what + ": unknown rank");
  std::vector<uint64_t> shape;
  for (const proto::Field& f : fields) {
    if (f.number != 2) continue;
    if (shape.size() >= kMaxBundleRank) {
      return Status::Malformed(what + ": rank above " + Num(kMaxBundleRank));
    }
    SAFEMODEL_ASSIGN_OR_RETURN(auto dim, proto::DecodeMessage(f.bytes, kDimSpec, what + " dim"));
    const int64_t size = proto::Int(dim, 1);
    if (size < 0) {
      return Status::Malformed(what + ": dimension " + Num(shape.size()) + " is " +
                               std::to_string(size));
    }
    shape.push_back(static_cast<uint64_t>(size));
  }
  return shape;
}

// A data file name's shard index and count, if it is `<stem>.data-NNNNN-of-MMMMM`.
bool ParseDataName(std::string_view name, std::string_view stem, uint64_t* shard,
                   uint64_t* count) {
  constexpr std::string_view kMid = ".data-";
  constexpr size_t kTail = 5 + 4 + 5;  // NNNNN-of-MMMMM
  if (name.size() != stem.size() + kMid.size() + kTail || name.substr(0, stem.size()) != stem ||
      name.substr(stem.size(), kMid.size()) != kMid) {
    return false;
  }
  std::string_view tail = name.substr(stem.size() + kMid.size());
  if (tail.substr(5, 4) != "-of-") return false;
  *shard = *count = 0;
  for (size_t i = 0; i < kTail; ++i) {
    if (i >= 5 && i < 9) continue;
    if (tail[i] < '0' || tail[i] > '9') return false;
    uint64_t& v = i < 5 ? *shard : *count;
    v = v * 10 + static_cast<uint64_t>(tail[i] - '0');
  }
  return true;
}

Result<std::vector<ByteView>> MatchShards(std::string_view index_name, const Header& header,
                                          const std::vector<DataFile>& data) {
  constexpr std::string_view kIndexSuffix = ".index";
  std::string_view stem = index_name;
  if (stem.size() >= kIndexSuffix.size() &&
      stem.substr(stem.size() - kIndexSuffix.size()) == kIndexSuffix) {
    stem.remove_suffix(kIndexSuffix.size());
  }
  std::vector<ByteView> shards(header.num_shards);
  std::vector<bool> found(header.num_shards, false);
  for (const DataFile& f : data) {
    uint64_t shard = 0, count = 0;
    if (!ParseDataName(f.name, stem, &shard, &count)) {
      return Bad("'" + Printable(f.name) + "' is not a data file of bundle '" +
                     Printable(stem) + "'", "tf.bundle_shard");
    }
    if (count != header.num_shards || shard >= count) {
      return Bad("'" + Printable(f.name) + "' belongs to a bundle of " + Num(count) +
                     " shards, but the index says " + Num(header.num_shards),
                 "tf.bundle_shard");
    }
    if (found[shard]) return Bad("data file '" + Printable(f.name) + "' given twice", "tf.bundle_shard");
    found[shard] = true;
    shards[shard] = f.bytes;
  }
  for (uint64_t i = 0; i < header.num_shards; ++i) {
    if (!found[i]) {
      return Bad("data file " + Num(i) + " of " + Num(header.num_shards) + " of '" +
                     Printable(stem) + "' is missing", "tf.bundle_shard");
    }
  }
  return shards;
}

// The object graph string tensor: one element, its lengths, the masked
// CRC32C of the lengths, the bytes; the entry CRC covers the lengths as
// integers, the stored length CRC and the bytes.
Result<std::string> ReadObjectGraph(ByteView raw, uint32_t entry_crc, const std::string& where) {
  ByteReader r(raw);
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t len, proto::ReadVarint(r, where));
  if (len > kMaxObjectGraphBytes) {
    return Status::LimitExceeded(where + ": object graph of " + Num(len) + " bytes");
  }
  uint8_t len_bytes[8];
  const size_t width = len <= 0xFFFFFFFFu ? 4 : 8;
  for (size_t i = 0; i < width; ++i) len_bytes[i] = static_cast<uint8_t>(len >> (8 * i));
  uint32_t crc = Crc32c(ByteView(len_bytes, width));
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView stored, r.Bytes(4, where));
  uint32_t stored_crc = 0;
  for (size_t i = 0; i < 4; ++i) stored_crc |= static_cast<uint32_t>(stored[i]) << (8 * i);
  if (UnmaskCrc(stored_crc) != crc) {
    return Bad(where + ": the CRC32C of the string lengths does not match", "tf.bundle_crc");
  }
  crc = Crc32cExtend(crc, stored);
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView bytes, r.Bytes(len, where));
  if (!r.at_end()) return Bad(where + ": bytes after the string", "tf.bundle_entry");
  crc = Crc32cExtend(crc, bytes);
  if (crc != entry_crc) return Bad(where + ": CRC32C mismatch", "tf.bundle_crc");
  return std::string(AsChars(bytes));
}

struct Span {
  uint32_t shard;
  uint64_t offset;
  uint64_t size;
  const std::string* key;
};

// Tensors may not share bytes, and bytes no tensor covers must be zero
// (TensorFlow writes tensors back to back; with data_alignment > 1 the gaps
// are zero padding). Anything else is data no reader of the bundle sees.
Status CheckCoverage(std::vector<Span> spans, const std::vector<ByteView>& shards) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.shard != b.shard ? a.shard < b.shard : a.offset < b.offset;
  });
  auto zero = [](ByteView v) { return std::all_of(v.begin(), v.end(), [](uint8_t b) { return b == 0; }); };
  size_t i = 0;
  for (uint32_t s = 0; s < shards.size(); ++s) {
    uint64_t cursor = 0;
    const std::string* last = nullptr;
    for (; i < spans.size() && spans[i].shard == s; ++i) {
      const Span& sp = spans[i];
      if (sp.size == 0) continue;
      if (sp.offset < cursor) {
        return Bad("tensors '" + Printable(*last) + "' and '" + Printable(*sp.key) +
                       "' share bytes of data file " + Num(s), "tf.bundle_overlap");
      }
      if (!zero(shards[s].subspan(cursor, sp.offset - cursor))) {
        return Bad("data file " + Num(s) + " holds non-zero bytes [" + Num(cursor) + ", " +
                       Num(sp.offset) + ") that no tensor covers", "tf.bundle_range");
      }
      cursor = sp.offset + sp.size;
      last = sp.key;
    }
    if (!zero(shards[s].subspan(cursor))) {
      return Bad("data file " + Num(s) + " holds non-zero bytes after its last tensor (from byte " +
                     Num(cursor) + ")", "tf.bundle_range");
    }
  }
  return Status::Ok();
}

struct DecodedEntry {
  uint64_t dtype = 0;
  std::vector<uint64_t> shape;
  uint64_t shard = 0, offset = 0, size = 0;
  uint32_t crc = 0;
};

Result<DecodedEntry> DecodeEntry(const TableEntry& e, const Header& header,
                                 const std::vector<ByteView>& shards) {
  const std::string where = "bundle entry '" + Printable(e.key) + "'";
  Result<std::vector<proto::Field>> fields = proto::DecodeMessage(e.value, kEntrySpec, where);
  if (!fields.ok()) return Bad(fields.status().message(), "tf.bundle_entry");
  if (proto::Find(*fields, 7) != nullptr) {
    return Unsupported(where + " is a slice of a partitioned variable", "tf.bundle_slices");
  }
  DecodedEntry d;
  d.dtype = proto::Uint(*fields, 1);
  if (const proto::Field* s = proto::Find(*fields, 2)) {
    Result<std::vector<uint64_t>> shape = DecodeShape(s->bytes, where + " shape");
    if (!shape.ok()) return Bad(shape.status().message(), "tf.bundle_entry");
    d.shape = std::move(*shape);
  }
  const int64_t shard = proto::Int(*fields, 3), offset = proto::Int(*fields, 4),
                size = proto::Int(*fields, 5);
  if (offset < 0 || size < 0) return Bad(where + ": negative offset or size", "tf.bundle_entry");
  if (shard < 0 || static_cast<uint64_t>(shard) >= header.num_shards) {
    return Bad(where + ": shard " + std::to_string(shard) + " of a bundle of " +
                   Num(header.num_shards), "tf.bundle_shard");
  }
  d.shard = static_cast<uint64_t>(shard);
  d.offset = static_cast<uint64_t>(offset);
  d.size = static_cast<uint64_t>(size);
  d.crc = UnmaskCrc(static_cast<uint32_t>(proto::Uint(*fields, 6)));
  const ByteView file = shards[d.shard];
  if (d.offset > file.size() || d.size > file.size() - d.offset) {
    return Bad(where + ": bytes [" + Num(d.offset) + ", +" + Num(d.size) + ") lie outside data file " +
                   Num(d.shard) + " (" + Num(file.size()) + " bytes)", "tf.bundle_range");
  }
  return d;
}

}  // namespace

Result<Bundle> ReadBundle(ByteView index, std::string_view index_name,
                          const std::vector<DataFile>& data) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<TableEntry> entries, ReadTable(index, index_name));
  if (entries.empty() || !entries[0].key.empty()) {
    return Bad(std::string(index_name) + ": no BundleHeaderProto (the key \"\")", "tf.bundle_header");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Header header, DecodeHeader(entries[0].value, index_name));
  Bundle bundle;
  bundle.big_endian = header.big_endian;
  SAFEMODEL_ASSIGN_OR_RETURN(bundle.shards, MatchShards(index_name, header, data));
  std::vector<Span> spans;
  for (size_t i = 1; i < entries.size(); ++i) {
    const TableEntry& e = entries[i];
    const std::string where = "bundle entry '" + Printable(e.key) + "'";
    SAFEMODEL_ASSIGN_OR_RETURN(DecodedEntry d, DecodeEntry(e, header, bundle.shards));
    spans.push_back({static_cast<uint32_t>(d.shard), d.offset, d.size, &e.key});
    if (d.dtype == kDtString && e.key == kObjectGraphKey && d.shape.empty()) {
      SAFEMODEL_ASSIGN_OR_RETURN(
          bundle.object_graph,
          ReadObjectGraph(bundle.shards[d.shard].subspan(d.offset, d.size), d.crc, where));
      continue;
    }
    std::optional<DType> dtype = NumericDType(d.dtype);
    if (!dtype.has_value()) {
      return Unsupported(where + " has dtype " + TfTypeName(d.dtype) +
                             ", which safemodel does not convert", "tf.bundle_dtype");
    }
    Result<uint64_t> bytes = TensorByteSize(d.shape, *dtype, where);
    if (!bytes.ok()) return Bad(bytes.status().message(), "tf.bundle_entry");
    if (*bytes != d.size) {
      return Bad(where + ": its shape and dtype need " + Num(*bytes) + " bytes, the entry says " +
                     Num(d.size), "tf.bundle_entry");
    }
    bundle.tensors.push_back({e.key, *dtype, std::move(d.shape), static_cast<uint32_t>(d.shard),
                              d.offset, d.size, d.crc});
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckCoverage(std::move(spans), bundle.shards));
  return bundle;
}

Tensor MakeBundleTensor(const Bundle& bundle, const BundleTensor& t, std::string name) {
  Tensor out;
  out.name = std::move(name);
  out.dtype = t.dtype;
  out.shape = t.shape;
  std::string origin = "bundle entry '" + Printable(t.key) + "'";
  out.origin = origin;
  const ByteView bytes = bundle.shards[t.shard].subspan(t.offset, t.size);
  const uint32_t crc = t.crc;
  const uint32_t swap = bundle.big_endian ? DTypeSwapUnit(t.dtype) : 0;
  out.source = [bytes, crc, swap, origin]() -> Result<Elements> {
    const uint32_t computed = Crc32c(bytes);
    if (computed != crc) {
      return Bad(origin + ": CRC32C mismatch (stored " + Num(crc) + ", computed " +
                     Num(computed) + ")", "tf.bundle_crc");
    }
    Elements e;
    e.view = bytes;
    e.swap_unit = swap;
    return e;
  };
  return out;
}

Result<ObjectGraph> ParseObjectGraph(std::string_view bytes) {
  // Only the fields safemodel uses are decoded (children, attributes);
  // others, e.g. slot variable references and registered savers, are
  // skipped: the graph only groups the bundle's keys, it is not output.
  ObjectGraph graph;
  uint64_t references = 0;
  proto::WireReader top(AsBytes(bytes), "object graph");
  while (!top.at_end()) {
    SAFEMODEL_ASSIGN_OR_RETURN(proto::Field node, top.Next());
    if (node.number != 1 || node.type != WireType::kLen) {
      return Status::Malformed("object graph: unexpected field " + Num(node.number));
    }
    ObjectNode n;
    proto::WireReader r(node.bytes, "object graph node " + Num(graph.nodes.size()));
    while (!r.at_end()) {
      SAFEMODEL_ASSIGN_OR_RETURN(proto::Field f, r.Next());
      if ((f.number == 1 || f.number == 2) && f.type != WireType::kLen) {
        return Status::Malformed("object graph: field " + Num(f.number) + " is not a message");
      }
      if (f.number == 1) {
        constexpr FieldSpec kRef[] = {{1, WireType::kVarint, false}, {2, WireType::kLen, false}};
        SAFEMODEL_ASSIGN_OR_RETURN(auto ref, proto::DecodeMessage(f.bytes, kRef, "object reference"));
        const int64_t id = proto::Int(ref, 1);
        if (id < 0 || id > INT32_MAX) return Status::Malformed("object graph: bad node id");
        if (++references > kMaxGraphReferences) {
          return Status::LimitExceeded("object graph: more than " + Num(kMaxGraphReferences) + " references");
        }
        n.children.emplace_back(static_cast<uint32_t>(id), std::string(proto::Bytes(ref, 2)));
      } else if (f.number == 2) {
        constexpr FieldSpec kAttr[] = {{1, WireType::kLen, false}, {2, WireType::kLen, false},
                                       {3, WireType::kLen, false}, {4, WireType::kVarint, false}};
        SAFEMODEL_ASSIGN_OR_RETURN(auto attr, proto::DecodeMessage(f.bytes, kAttr, "serialized tensor"));
        n.checkpoint_keys.emplace_back(proto::Bytes(attr, 3));
      }
    }
    graph.nodes.push_back(std::move(n));
    if (graph.nodes.size() > kMaxGraphObjects) {
      return Status::LimitExceeded("object graph: more than " + Num(kMaxGraphObjects) + " objects");
    }
  }
  for (const ObjectNode& n : graph.nodes) {
    for (const auto& [id, name] : n.children) {
      if (id >= graph.nodes.size()) return Status::Malformed("object graph: child id " + Num(id) + " out of range");
    }
  }
  if (graph.nodes.empty()) return Status::Malformed("object graph: no nodes");
  return graph;
}

std::vector<std::string> KeyWalker::From(uint32_t node) {
  std::vector<std::string> keys;
  std::vector<uint32_t> stack{node};
  while (!stack.empty()) {
    const uint32_t n = stack.back();
    stack.pop_back();
    if (seen_[n]) continue;
    seen_[n] = true;
    const ObjectNode& o = graph_.nodes[n];
    keys.insert(keys.end(), o.checkpoint_keys.begin(), o.checkpoint_keys.end());
    for (auto it = o.children.rbegin(); it != o.children.rend(); ++it) {
      if (!seen_[it->first]) stack.push_back(it->first);
    }
  }
  return keys;
}

}  // namespace safemodel::loader::tf
