#include "proto/wire/wire.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "proto/base/text.h"
#include "safemodel/dtype.h"
#include "safemodel/limits.h"

namespace safemodel::wire {

// DType values are the schema's (safemodel/dtype.h says they are pinned):
// Value-for-value, checked here so that the casts between them are exact.
#define SAFEMODEL_SAME_DTYPE(ours, theirs) \
  static_assert(static_cast<int>(DType::ours) == v1::theirs, #ours " differs from v1::" #theirs)
SAFEMODEL_SAME_DTYPE(kInvalid, DTYPE_INVALID);
SAFEMODEL_SAME_DTYPE(kBool, BOOL);
SAFEMODEL_SAME_DTYPE(kU8, U8);
SAFEMODEL_SAME_DTYPE(kI8, I8);
SAFEMODEL_SAME_DTYPE(kU16, U16);
SAFEMODEL_SAME_DTYPE(kI16, I16);
SAFEMODEL_SAME_DTYPE(kU32, U32);
SAFEMODEL_SAME_DTYPE(kI32, I32);
SAFEMODEL_SAME_DTYPE(kU64, U64);
SAFEMODEL_SAME_DTYPE(kI64, I64);
SAFEMODEL_SAME_DTYPE(kF16, F16);
SAFEMODEL_SAME_DTYPE(kBF16, BF16);
SAFEMODEL_SAME_DTYPE(kF32, F32);
SAFEMODEL_SAME_DTYPE(kF64, F64);
SAFEMODEL_SAME_DTYPE(kC64, C64);
SAFEMODEL_SAME_DTYPE(kC128, C128);
SAFEMODEL_SAME_DTYPE(kF8E4M3FN, F8_E4M3FN);
SAFEMODEL_SAME_DTYPE(kF8E5M2, F8_E5M2);
SAFEMODEL_SAME_DTYPE(kF8E4M3FNUZ, F8_E4M3FNUZ);
SAFEMODEL_SAME_DTYPE(kF8E5M2FNUZ, F8_E5M2FNUZ);
SAFEMODEL_SAME_DTYPE(kF8E8M0FNU, F8_E8M0FNU);
#undef SAFEMODEL_SAME_DTYPE
// No value on one side only: the schema's last value is ours.
static_assert(kMaxDType == static_cast<uint32_t>(v1::DType_MAX) && v1::DType_MIN == 0,
              "safemodel/dtype.h and proto/safemodel.proto list different dtypes");

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

// The `bytes` fields of the schemas that hold binary data; every other
// `bytes` (or `string`) field is text and must be UTF-8 (safemodel.proto).
bool IsTextField(const google::protobuf::FieldDescriptor* f) {
  using google::protobuf::FieldDescriptor;
  if (f->type() == FieldDescriptor::TYPE_STRING) return true;
  if (f->type() != FieldDescriptor::TYPE_BYTES) return false;
  static const auto* const kBinary = new std::unordered_set<const FieldDescriptor*>{
      v1::Value::descriptor()->FindFieldByName("bytes_value"),
      v1::Provenance::descriptor()->FindFieldByName("input_sha256"),
      v1::Trailer::descriptor()->FindFieldByName("tensor_digests"),
      v1::Trailer::descriptor()->FindFieldByName("header_digest"),
  };
  return kBinary->count(f) == 0;
}

// A message level of WithinObjectBudget's walk. The stack is explicit
// (nesting is attacker-controlled), and a caller that walks many small
// messages passes its own, so that each walk does not allocate one.
struct BudgetLevel {
  const google::protobuf::Descriptor* type;
  google::protobuf::io::CodedInputStream::Limit limit;
};

// Walks the wire format of `bytes` as message `type` without allocating
// (but for the stack of levels: `scratch`, or its own), and counts what
// parsing it would allocate. False if over `max_objects` or not
// well-formed (parsing would fail too), or, with `check_text`, if a text
// field is not UTF-8: the schemas declare text as `bytes` so that protobuf
// neither logs about it nor checks it, and this is the check.
bool WithinObjectBudget(const google::protobuf::Descriptor* type, ByteView bytes,
                        uint64_t max_objects, bool check_text, uint64_t* counted = nullptr,
                        std::vector<BudgetLevel>* scratch = nullptr) {
  using google::protobuf::FieldDescriptor;
  using google::protobuf::internal::WireFormatLite;
  google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
  std::vector<BudgetLevel> own;
  std::vector<BudgetLevel>& stack = scratch != nullptr ? *scratch : own;
  stack.clear();
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
    const int at = in.CurrentPosition();
    if (!in.Skip(static_cast<int>(length))) return false;
    if (check_text && f != nullptr && IsTextField(f) &&
        !IsValidUtf8(AsChars(bytes.subspan(static_cast<size_t>(at), length)))) {
      return false;
    }
  }
  if (counted != nullptr) *counted = objects;
  return true;
}

// protobuf's own parse of the whole of `bytes`, nested at most
// `recursion_limit` messages deep.
bool ParseWhole(ByteView bytes, google::protobuf::MessageLite* out, int recursion_limit) {
  google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
  in.SetRecursionLimit(recursion_limit);
  return out->ParseFromCodedStream(&in) && in.ConsumedEntireMessage();
}

// The same, merged into what `out` holds already.
bool MergeWhole(ByteView bytes, google::protobuf::MessageLite* out, int recursion_limit) {
  google::protobuf::io::CodedInputStream in(bytes.data(), static_cast<int>(bytes.size()));
  in.SetRecursionLimit(recursion_limit);
  return out->MergeFromCodedStream(&in) && in.ConsumedEntireMessage();
}

}  // namespace

bool ParseBounded(ByteView bytes, google::protobuf::MessageLite* out, uint64_t max_objects) {
  if (bytes.size() > kMaxHeaderBytes) return false;
  // Bound what the parse allocates before it allocates (full runtime only;
  // every message of this project is).
  if (auto* message = dynamic_cast<google::protobuf::Message*>(out)) {
    if (!WithinObjectBudget(message->GetDescriptor(), bytes, max_objects, /*check_text=*/true)) {
      return false;
    }
  }
  return ParseWhole(bytes, out, kMaxMessageNesting);
}

namespace {

// The bytes of a streamed parse not yet consumed: those read ahead, in one
// buffer, and a count of those still in the source.
class Window {
 public:
  Window(ByteSource& source, uint64_t length) : source_(source), unread_(length) {}

  // Makes the next min(n, Remaining()) bytes contiguous, reading at least
  // kParseWindowBytes at a time while the source has them; false if the
  // source failed. The buffer grows only for a field larger than it.
  bool Fill(uint64_t n) {
    const size_t have = end_ - pos_;
    if (have >= n || unread_ == 0) return true;
    const uint64_t want = std::min<uint64_t>(std::max<uint64_t>(n, kParseWindowBytes) - have, unread_);
    if (pos_ != 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, have);
      pos_ = 0;
      end_ = have;
    }
    if (buf_.size() < have + want) buf_.resize(static_cast<size_t>(have + want));
    if (!source_.Read(buf_.data() + have, static_cast<size_t>(want))) return false;
    end_ += static_cast<size_t>(want);
    unread_ -= want;
    return true;
  }
  ByteView Available() const { return ByteView(buf_.data() + pos_, end_ - pos_); }
  // Whether every byte left is in the buffer.
  bool AllIn() const { return unread_ == 0; }
  uint64_t Remaining() const { return end_ - pos_ + unread_; }
  void Consume(size_t n) { pos_ += n; }

 private:
  ByteSource& source_;
  uint64_t unread_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, end_ = 0;
};

// Room for a tag and a varint (at most ten bytes each) or a fixed64.
constexpr uint64_t kFieldHeadBytes = 32;

// The size of the top-level field at the start of `w` (tag included), with
// at least kFieldHeadBytes of it (or all that is left) in the buffer, and
// whether it is an occurrence of `field` (its payload then follows
// *head bytes). False if it is not well-formed or cannot be complete; a
// group is read ahead until it ends. Leaves the field whole in the buffer.
// These refusals are the streamed parse's own, not the whole-frame budget
// walk's: that walk (WithinObjectBudget over the frame) lets through a
// trailing zero byte or a last tag cut short (it consumes them and finds no
// bytes left) and a top-level length-delimited field whose length overruns
// the frame (PushLimit clamps it to the frame's end). ParseWhole then
// refuses each of them, so the verdicts agree, but through protobuf's parse,
// not the walk (parse_entries_test compares the two on mutated frames).
bool MeasureField(Window& w, int field, uint64_t* size, bool* is_entry, uint64_t* head) {
  using google::protobuf::internal::WireFormatLite;
  for (;;) {
    const ByteView avail = w.Available();
    google::protobuf::io::CodedInputStream in(avail.data(), static_cast<int>(avail.size()));
    const uint32_t tag = in.ReadTag();
    // A zero tag where bytes remain, or one that does not read: refused
    // here. The whole-frame walk may consume such bytes and pass; its
    // ParseWhole refuses them, so the verdict is the same.
    if (tag == 0) return false;
    const auto wire_type = WireFormatLite::GetTagWireType(tag);
    if (wire_type == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t length;
      if (!in.ReadVarint32(&length) || length > static_cast<uint32_t>(INT32_MAX)) return false;
      *head = static_cast<uint64_t>(in.CurrentPosition());
      *size = *head + length;
      *is_entry = static_cast<int>(tag >> 3) == field;
      return *size <= w.Remaining() && w.Fill(*size);
    }
    *is_entry = false;
    if (WireFormatLite::SkipField(&in, tag)) {
      *size = static_cast<uint64_t>(in.CurrentPosition());
      return true;
    }
    // Only a group can be longer than the head bytes: read on, doubling.
    if (wire_type != WireFormatLite::WIRETYPE_START_GROUP || w.AllIn()) return false;
    if (!w.Fill(2 * avail.size())) return false;
  }
}

}  // namespace

bool ParseBoundedEntries(ByteSource& source, uint64_t length, google::protobuf::Message* out,
                         int field, google::protobuf::Message* entry, EntrySink* sink,
                         uint64_t max_objects) {
  if (length > kMaxHeaderBytes) return false;
  // Field by field, each whole in the window: its budget walk as part of
  // the top level (the objects of all fields so far within `max_objects`),
  // then an entry parsed on its own and handed over, or any other field
  // merged into `out`. A repeated message field's occurrences are
  // independent of each other and of every other field, and parsing fields
  // one after the other into the same message is parsing them together
  // (protobuf's merge rule), so this is the whole's parse.
  out->Clear();
  Window w(source, length);
  uint64_t objects = 0;
  std::vector<BudgetLevel> levels;  // reused by every field's budget walk
  for (;;) {
    if (!w.Fill(kFieldHeadBytes)) return false;
    if (w.Remaining() == 0) return true;
    uint64_t size = 0, head = 0;
    bool is_entry = false;
    if (!MeasureField(w, field, &size, &is_entry, &head)) return false;
    const ByteView bytes = w.Available().first(static_cast<size_t>(size));
    uint64_t counted = 0;
    if (!WithinObjectBudget(out->GetDescriptor(), bytes, max_objects - objects, /*check_text=*/true,
                            &counted, &levels)) {
      return false;
    }
    objects += counted;
    if (is_entry) {
      // One level below the top: the budget the entry has inside `out`.
      if (!ParseWhole(bytes.subspan(static_cast<size_t>(head)), entry, kMaxMessageNesting - 1)) {
        return false;
      }
      sink->Add(*entry);
    } else if (!MergeWhole(bytes, out, kMaxMessageNesting)) {
      return false;
    }
    w.Consume(static_cast<size_t>(size));
  }
}

bool ParseBoundedEntries(ByteView bytes, google::protobuf::Message* out, int field,
                         google::protobuf::Message* entry, EntrySink* sink, uint64_t max_objects) {
  class ViewSource final : public ByteSource {
   public:
    explicit ViewSource(ByteView bytes) : bytes_(bytes) {}
    bool Read(uint8_t* out, size_t n) override {
      if (n > bytes_.size() - at_) return false;
      std::memcpy(out, bytes_.data() + at_, n);
      at_ += n;
      return true;
    }

   private:
    ByteView bytes_;
    size_t at_ = 0;
  };
  ViewSource source(bytes);
  return ParseBoundedEntries(source, bytes.size(), out, field, entry, sink, max_objects);
}

uint64_t CountParsedObjects(const google::protobuf::Message& message, ByteView bytes) {
  uint64_t n = 0;
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !WithinObjectBudget(message.GetDescriptor(), bytes, UINT64_MAX, /*check_text=*/false, &n)) {
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

}  // namespace safemodel::wire
