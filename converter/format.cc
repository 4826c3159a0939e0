#include "converter/format.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/wire_format_lite.h>

#include <climits>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "safemodel/dtype.h"
#include "safemodel/limits.h"

namespace safemodel::format {

namespace {

void PutU16(uint8_t* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

void EncodePrefix(const Prefix& prefix, uint8_t out[kPrefixBytes]) {
  std::memcpy(out, kMagic, sizeof kMagic);
  PutU16(out + 8, prefix.major);
  PutU16(out + 10, prefix.minor);
  PutU32(out + 12, prefix.flags);
  PutU64(out + 16, prefix.header_off);
  PutU64(out + 24, prefix.header_len);
  PutU64(out + 32, prefix.data_off);
  PutU64(out + 40, prefix.data_len);
  PutU64(out + 48, prefix.trailer_off);
  PutU64(out + 56, prefix.trailer_len);
}

Result<uint64_t> DataOffsetFor(uint64_t header_len) {
  uint64_t end, aligned;
  if (!CheckedAdd(kPrefixBytes, header_len, &end) || !AlignUp(end, kDataAlignment, &aligned)) {
    return Status::Malformed("header length " + Num(header_len) + " overflows");
  }
  return aligned;
}

Result<Prefix> DecodePrefix(ByteView bytes, uint64_t file_size) {
  if (bytes.size() < kPrefixBytes || file_size < kPrefixBytes) {
    return Status::Malformed("file is " + Num(file_size) +
                             " bytes, shorter than the 64-byte .safemodel prefix");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    if (std::memcmp(bytes.data(), "version ", 8) == 0) {
      return Status::Malformed("not a .safemodel file: this looks like a Git LFS pointer");
    }
    return Status::Malformed("not a .safemodel file (bad magic)");
  }
  ByteReader r(bytes.subspan(0, kPrefixBytes));
  Prefix p;
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(8, "magic"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.major, r.U16LE("major version"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.minor, r.U16LE("minor version"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.flags, r.U32LE("flags"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.header_off, r.U64LE("header_off"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.header_len, r.U64LE("header_len"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.data_off, r.U64LE("data_off"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.data_len, r.U64LE("data_len"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.trailer_off, r.U64LE("trailer_off"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.trailer_len, r.U64LE("trailer_len"));

  if (p.major != kMajorVersion) {
    return Status::Unsupported("format major version " + Num(p.major) +
                               " is not supported (this reader knows version " +
                               Num(kMajorVersion) + ")");
  }
  if (p.flags != 0) {
    return Status::Unsupported("prefix flags 0x" + Num(p.flags) + " are not defined in version 1");
  }
  if (p.header_off != kPrefixBytes) {
    return Status::Malformed("header_off is " + Num(p.header_off) + ", must be 64");
  }
  if (p.header_len > kMaxHeaderBytes) {
    return Status::LimitExceeded("header_len " + Num(p.header_len) + " exceeds the limit of " +
                                 Num(kMaxHeaderBytes) + " bytes");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t want_data_off, DataOffsetFor(p.header_len));
  if (p.data_off != want_data_off) {
    return Status::Malformed("data_off is " + Num(p.data_off) + ", the canonical value is " +
                             Num(want_data_off));
  }
  uint64_t data_end;
  if (p.data_len > kMaxFileBytes || !CheckedAdd(p.data_off, p.data_len, &data_end) ||
      p.trailer_off != data_end) {
    return Status::Malformed("trailer_off " + Num(p.trailer_off) +
                             " does not follow the data region (data_off " + Num(p.data_off) +
                             " + data_len " + Num(p.data_len) + ")");
  }
  if (p.trailer_len > kMaxTrailerBytes) {
    return Status::LimitExceeded("trailer_len " + Num(p.trailer_len) + " exceeds the limit of " +
                                 Num(kMaxTrailerBytes) + " bytes");
  }
  uint64_t end;
  if (!CheckedAdd(p.trailer_off, p.trailer_len, &end) || end != file_size) {
    return Status::Malformed("the trailer ends at " + Num(p.trailer_off) + " + " +
                             Num(p.trailer_len) + " but the file is " + Num(file_size) +
                             " bytes (truncated file or trailing bytes)");
  }
  return p;
}

Result<uint64_t> LayoutTensors(google::protobuf::RepeatedPtrField<v1::TensorInfo>* tensors,
                               bool assign_offsets) {
  const uint64_t count = static_cast<uint64_t>(tensors->size());
  if (count > kMaxTensorCount) {
    return Status::LimitExceeded(Num(count) + " tensors exceed the limit of " +
                                 Num(kMaxTensorCount));
  }
  // Pass 1: each tensor on its own, and the sort order.
  for (int i = 0; i < tensors->size(); ++i) {
    v1::TensorInfo& t = (*tensors)[i];
    const std::string& name = t.name();
    const std::string where = "tensor #" + Num(static_cast<uint64_t>(i)) + " '" +
                              Printable(name) + "'";
    if (name.empty() || name.size() > kMaxNameBytes) {
      return Status::Malformed(where + ": name length " + Num(name.size()) +
                               " is outside 1.." + Num(kMaxNameBytes));
    }
    if (name.find('\0') != std::string::npos || !IsValidUtf8(name)) {
      return Status::Malformed(where + ": name is not NUL-free UTF-8");
    }
    if (i > 0 && !((*tensors)[i - 1].name() < name)) {
      return Status::Malformed(where + ": names are not sorted and unique (previous is '" +
                               Printable((*tensors)[i - 1].name()) + "')");
    }
    if (!IsValidDType(static_cast<uint32_t>(t.dtype()))) {
      return Status::Unsupported(where + ": unknown dtype value " +
                                 Num(static_cast<uint32_t>(t.dtype())));
    }
    if (static_cast<uint64_t>(t.shape_size()) > kMaxRank) {
      return Status::LimitExceeded(where + ": rank " + Num(static_cast<uint64_t>(t.shape_size())) +
                                   " exceeds the limit of " + Num(kMaxRank));
    }
    std::vector<uint64_t> shape(t.shape().begin(), t.shape().end());
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t nbytes,
                               TensorByteSize(shape, static_cast<DType>(t.dtype()), where));
    if (nbytes > kMaxFileBytes) {
      return Status::LimitExceeded(where + ": " + Num(nbytes) + " bytes is larger than any file");
    }
    if (t.alias_of().empty()) {
      if (!assign_offsets && t.nbytes() != nbytes) {
        return Status::Malformed(where + ": nbytes " + Num(t.nbytes()) + " != shape x dtype = " +
                                 Num(nbytes));
      }
      t.set_nbytes(nbytes);
    } else if (!assign_offsets && (t.nbytes() != 0 || t.offset() != 0)) {
      return Status::Malformed(where + ": an alias must have offset 0 and nbytes 0");
    }
  }
  // Pass 2: aliases point at real tensors of the same dtype and shape.
  for (v1::TensorInfo& t : *tensors) {
    if (t.alias_of().empty()) continue;
    auto it = std::lower_bound(
        tensors->begin(), tensors->end(), t.alias_of(),
        [](const v1::TensorInfo& a, const std::string& key) { return a.name() < key; });
    const std::string where = "tensor '" + Printable(t.name()) + "'";
    if (it == tensors->end() || it->name() != t.alias_of()) {
      return Status::Malformed(where + ": alias_of names no tensor ('" +
                               Printable(t.alias_of()) + "')");
    }
    if (!it->alias_of().empty()) {
      return Status::Malformed(where + ": alias_of names another alias ('" +
                               Printable(t.alias_of()) + "')");
    }
    if (it->dtype() != t.dtype() ||
        !std::equal(it->shape().begin(), it->shape().end(), t.shape().begin(), t.shape().end())) {
      return Status::Malformed(where + ": alias differs in dtype or shape from '" +
                               Printable(t.alias_of()) + "'");
    }
    t.set_offset(0);
    t.set_nbytes(0);
  }
  // Pass 3: canonical offsets in table order.
  uint64_t cursor = 0;
  for (v1::TensorInfo& t : *tensors) {
    if (!t.alias_of().empty()) continue;
    uint64_t offset, end;
    if (!AlignUp(cursor, TensorAlignmentFor(t.nbytes()), &offset) ||
        !CheckedAdd(offset, t.nbytes(), &end) || end > kMaxFileBytes) {
      return Status::LimitExceeded("tensor data exceeds the maximum file size");
    }
    if (assign_offsets) {
      t.set_offset(offset);
    } else if (t.offset() != offset) {
      return Status::Malformed("tensor '" + Printable(t.name()) + "': offset " + Num(t.offset()) +
                               " is not the canonical offset " + Num(offset) +
                               " (overlap, hole or misalignment)");
    }
    cursor = end;
  }
  return cursor;
}

namespace {
Status CheckText(const std::string& s, std::string_view what) {
  if (s.size() > kMaxFindingTextBytes) {
    return Status::LimitExceeded(std::string(what) + " is longer than " +
                                 Num(kMaxFindingTextBytes) + " bytes");
  }
  if (!IsValidUtf8(s)) return Status::Malformed(std::string(what) + " is not valid UTF-8");
  return Status::Ok();
}
}  // namespace

Status CheckFindings(const google::protobuf::RepeatedPtrField<v1::Finding>& findings) {
  if (static_cast<uint64_t>(findings.size()) > kMaxFindings) {
    return Status::LimitExceeded(Num(static_cast<uint64_t>(findings.size())) + " findings exceed the limit of " +
                                 Num(kMaxFindings));
  }
  for (const v1::Finding& f : findings) {
    if (f.severity() != "refused" && f.severity() != "dropped" && f.severity() != "note") {
      return Status::Malformed("finding has unknown severity '" + Printable(f.severity()) + "'");
    }
    SAFEMODEL_RETURN_IF_ERROR(CheckText(f.rule(), "finding rule"));
    SAFEMODEL_RETURN_IF_ERROR(CheckText(f.location(), "finding location"));
    SAFEMODEL_RETURN_IF_ERROR(CheckText(f.message(), "finding message"));
    if (static_cast<uint64_t>(f.references_size()) > kMaxFindings) {
      return Status::LimitExceeded("finding lists too many references");
    }
    for (const std::string& ref : f.references()) {
      SAFEMODEL_RETURN_IF_ERROR(CheckText(ref, "finding reference"));
    }
  }
  return Status::Ok();
}

Status CheckOptions(const google::protobuf::RepeatedPtrField<std::string>& options) {
  if (static_cast<uint64_t>(options.size()) > kMaxOptions) {
    return Status::LimitExceeded("too many options");
  }
  for (const std::string& o : options) SAFEMODEL_RETURN_IF_ERROR(CheckText(o, "option"));
  return Status::Ok();
}

namespace {
// Findings describe untrusted input; a field that is not UTF-8 or too long is
// escaped and cut rather than sent as is (protobuf would log the bad UTF-8 to
// stderr, which the worker's sandbox forbids, and the parent would reject it).
std::string FindingText(const std::string& s) {
  if (s.size() <= kMaxFindingTextBytes && IsValidUtf8(s)) return s;
  return Printable(s, kMaxFindingTextBytes - 8);
}
}  // namespace

void FindingToProto(const Finding& f, v1::Finding* out) {
  out->set_severity(SeverityName(f.severity));
  out->set_rule(FindingText(f.rule));
  out->set_location(FindingText(f.location));
  out->set_message(FindingText(f.message));
  for (const std::string& r : f.references) out->add_references(FindingText(r));
}

Finding FindingFromProto(const v1::Finding& f) {
  Finding out;
  out.severity = f.severity() == "refused"   ? Finding::Severity::kRefused
                 : f.severity() == "dropped" ? Finding::Severity::kDropped
                                             : Finding::Severity::kNote;
  out.rule = f.rule();
  out.location = f.location();
  out.message = f.message();
  out.references.assign(f.references().begin(), f.references().end());
  return out;
}

void ValueToProto(const Value& value, v1::Value* out) {
  std::vector<std::pair<const Value*, v1::Value*>> work{{&value, out}};
  while (!work.empty()) {
    auto [v, p] = work.back();
    work.pop_back();
    switch (v->kind()) {
      case Value::Kind::kNull: p->set_null_value(true); break;
      case Value::Kind::kBool: p->set_bool_value(v->bool_value()); break;
      case Value::Kind::kInt: p->set_int_value(v->int_value()); break;
      case Value::Kind::kDouble: p->set_double_value(v->double_value()); break;
      case Value::Kind::kString: p->set_string_value(v->string_value()); break;
      case Value::Kind::kBytes: p->set_bytes_value(v->string_value()); break;
      case Value::Kind::kList: {
        v1::ListValue* list = p->mutable_list_value();
        list->mutable_items()->Reserve(static_cast<int>(v->list().size()));
        for (const Value& item : v->list()) work.emplace_back(&item, list->add_items());
        break;
      }
      case Value::Kind::kMap: {
        v1::MapValue* map = p->mutable_map_value();
        for (const auto& [key, item] : v->entries()) {
          v1::MapEntry* entry = map->add_entries();
          entry->set_key(key);
          work.emplace_back(&item, entry->mutable_value());
        }
        break;
      }
    }
  }
}

Result<Value> ValueFromProto(const v1::Value& proto, std::string_view what) {
  struct Item {
    const v1::Value* p;
    Value* v;
    uint32_t depth;
  };
  Value root;
  std::vector<Item> work{{&proto, &root, 1}};
  uint64_t nodes = 0;
  while (!work.empty()) {
    Item item = work.back();
    work.pop_back();
    if (++nodes > kMaxValueNodes || item.depth > kMaxValueDepth) {
      return Status::LimitExceeded(std::string(what) + " exceeds the node or depth limit");
    }
    const v1::Value& p = *item.p;
    switch (p.kind_case()) {
      case v1::Value::KIND_NOT_SET:
      case v1::Value::kNullValue: *item.v = Value(); break;
      case v1::Value::kBoolValue: *item.v = Value::Bool(p.bool_value()); break;
      case v1::Value::kIntValue: *item.v = Value::Int(p.int_value()); break;
      case v1::Value::kDoubleValue: *item.v = Value::Double(p.double_value()); break;
      case v1::Value::kStringValue: *item.v = Value::String(p.string_value()); break;
      case v1::Value::kBytesValue: *item.v = Value::Bytes(p.bytes_value()); break;
      case v1::Value::kListValue: {
        *item.v = Value::List(std::vector<Value>(static_cast<size_t>(p.list_value().items_size())));
        auto& items = item.v->mutable_list();
        for (int i = 0; i < p.list_value().items_size(); ++i) {
          work.push_back({&p.list_value().items(i), &items[static_cast<size_t>(i)], item.depth + 1});
        }
        break;
      }
      case v1::Value::kMapValue: {
        *item.v = Value::Map();
        auto& entries = item.v->mutable_entries();
        // Fill first, then take addresses: the vector must not move meanwhile.
        entries.reserve(static_cast<size_t>(p.map_value().entries_size()));
        for (const v1::MapEntry& e : p.map_value().entries()) entries.emplace_back(e.key(), Value());
        for (int i = 0; i < p.map_value().entries_size(); ++i) {
          work.push_back({&p.map_value().entries(i).value(), &entries[static_cast<size_t>(i)].second,
                          item.depth + 1});
        }
        break;
      }
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckValue(root, what));
  return root;
}

namespace {

// Message levels a parse may nest: each Value level costs up to three
// (Value, MapValue, MapEntry); the envelope adds a few more.
constexpr int kMaxMessageNesting = static_cast<int>(3 * kMaxValueDepth + 8);

// Walks the wire format of `bytes` as message `type` without allocating, and
// counts what parsing it would allocate. False if over `max_objects` or not
// well-formed (parsing would fail too).
bool WithinObjectBudget(const google::protobuf::Descriptor* type, ByteView bytes,
                        uint64_t max_objects, uint64_t* counted = nullptr) {
  using google::protobuf::FieldDescriptor;
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
  struct Level {
    const google::protobuf::Descriptor* type;
    google::protobuf::io::CodedInputStream::Limit limit;
  };
  std::vector<Level> stack;  // explicit: nesting is attacker-controlled
  stack.push_back({type, in.PushLimit(static_cast<int>(bytes.size()))});
  uint64_t objects = 0;
  while (!stack.empty()) {
    uint32_t tag = in.ReadTag();
    if (tag == 0) {  // end of this message, or malformed
      if (in.BytesUntilLimit() != 0) return false;
      in.PopLimit(stack.back().limit);
      stack.pop_back();
      continue;
    }
    const FieldDescriptor* f = stack.back().type->FindFieldByNumber(static_cast<int>(tag >> 3));
    bool counts = f == nullptr ||  // kept as an unknown field
                  (f->is_repeated() && (f->type() == FieldDescriptor::TYPE_STRING ||
                                        f->type() == FieldDescriptor::TYPE_BYTES));
    if (WireFormatLite::GetTagWireType(tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      if (counts && ++objects > max_objects) return false;
      if (!WireFormatLite::SkipField(&in, tag)) return false;
      continue;
    }
    uint32_t length;
    if (!in.ReadVarint32(&length) || length > static_cast<uint32_t>(INT32_MAX)) return false;
    if (f != nullptr && f->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (++objects > max_objects) return false;
      if (stack.size() > static_cast<size_t>(kMaxMessageNesting)) return false;
      stack.push_back({f->message_type(), in.PushLimit(static_cast<int>(length))});
      continue;
    }
    if (counts && ++objects > max_objects) return false;
    if (!in.Skip(static_cast<int>(length))) return false;
  }
  if (counted != nullptr) *counted = objects;
  return true;
}

}  // namespace

bool ParseBounded(ByteView bytes, google::protobuf::MessageLite* out, uint64_t max_objects) {
  if (bytes.size() > kMaxHeaderBytes) return false;
  // Bound what the parse allocates before it allocates (full runtime only;
  // every message of this project is).
  if (auto* message = dynamic_cast<google::protobuf::Message*>(out)) {
    if (!WithinObjectBudget(message->GetDescriptor(), bytes, max_objects)) return false;
  }
  google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
  in.SetRecursionLimit(kMaxMessageNesting);
  return out->ParseFromCodedStream(&in) && in.ConsumedEntireMessage();
}

uint64_t CountParsedObjects(const google::protobuf::Message& message, ByteView bytes) {
  uint64_t n = 0;
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !WithinObjectBudget(message.GetDescriptor(), bytes, UINT64_MAX, &n)) {
    return UINT64_MAX;
  }
  return n;
}

Status SanitizeValue(v1::Value* value, std::string_view what) {
  struct Item {
    v1::Value* v;
    uint32_t depth;
  };
  auto drop_unknown = [](google::protobuf::Message* m) {
    m->GetReflection()->MutableUnknownFields(m)->Clear();
  };
  std::vector<Item> work{{value, 1}};
  uint64_t nodes = 0;
  std::unordered_set<std::string_view> keys;
  while (!work.empty()) {
    Item item = work.back();
    work.pop_back();
    if (++nodes > kMaxValueNodes || item.depth > kMaxValueDepth) {
      return Status::LimitExceeded(std::string(what) + " exceeds the node or depth limit");
    }
    v1::Value& p = *item.v;
    drop_unknown(&p);
    switch (p.kind_case()) {
      case v1::Value::KIND_NOT_SET:
      case v1::Value::kNullValue: p.set_null_value(true); break;
      case v1::Value::kBoolValue:
      case v1::Value::kIntValue:
      case v1::Value::kDoubleValue:
      case v1::Value::kBytesValue: break;
      case v1::Value::kStringValue:
        if (!IsValidUtf8(p.string_value())) {
          return Status::Malformed(std::string(what) + " holds a string that is not valid UTF-8");
        }
        break;
      case v1::Value::kListValue: {
        v1::ListValue* list = p.mutable_list_value();
        drop_unknown(list);
        // Children are pushed in reverse so that they are visited in order,
        // as ValueFromProto does; the result does not depend on it.
        for (int i = list->items_size() - 1; i >= 0; --i) {
          work.push_back({list->mutable_items(i), item.depth + 1});
        }
        break;
      }
      case v1::Value::kMapValue: {
        v1::MapValue* map = p.mutable_map_value();
        drop_unknown(map);
        keys.clear();
        keys.reserve(static_cast<size_t>(map->entries_size()));
        for (int i = map->entries_size() - 1; i >= 0; --i) {
          v1::MapEntry* e = map->mutable_entries(i);
          drop_unknown(e);
          if (!IsValidUtf8(e->key())) {
            return Status::Malformed(std::string(what) + " holds a map key that is not valid UTF-8");
          }
          if (!keys.insert(e->key()).second) {
            return Status::Malformed(std::string(what) + " holds a map with duplicate key '" +
                                     Printable(e->key()) + "'");
          }
          work.push_back({e->mutable_value(), item.depth + 1});
        }
        break;
      }
    }
  }
  return Status::Ok();
}

std::string SerializeDeterministic(const google::protobuf::MessageLite& message) {
  // Sized exactly up front: a string grown while serialising would double
  // its capacity (and touch every page of it) for a large header.
  std::string out(message.ByteSizeLong(), '\0');
  {
    google::protobuf::io::ArrayOutputStream stream(out.data(), static_cast<int>(out.size()));
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeWithCachedSizes(&coded);
  }
  return out;
}

}  // namespace safemodel::format
