#include "loader/tf_bundle/proto_wire.h"

namespace safemodel::loader::proto {

namespace {

// Field numbers are 29 bits (descriptor.proto).
constexpr uint64_t kMaxFieldNumber = (1u << 29) - 1;
// A varint encodes at most 64 bits: 9 bytes of 7 bits and one of 1.
constexpr int kMaxVarintBytes = 10;

}  // namespace

Result<uint64_t> ReadVarint(ByteReader& reader, std::string_view what) {
  uint64_t value = 0;
  for (int i = 0; i < kMaxVarintBytes; ++i) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t b, reader.U8(what));
    if (i == kMaxVarintBytes - 1 && b > 1) {
      return Status::Malformed(std::string(what) + ": varint wider than 64 bits at byte " +
                               std::to_string(reader.absolute_position() - 1));
    }
    value |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
    if ((b & 0x80) == 0) {
      // A last byte of 0 after the first means a longer encoding than the
      // value needs, which no protobuf writer produces.
      if (b == 0 && i > 0) {
        return Status::Malformed(std::string(what) + ": varint not in its shortest form at byte " +
                                 std::to_string(reader.absolute_position() - 1));
      }
      return value;
    }
  }
  return Status::Malformed(std::string(what) + ": varint longer than 10 bytes");
}

Result<Field> WireReader::Next() {
  Field f;
  f.offset = reader_.position();
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t tag, ReadVarint(reader_, what_));
  const uint64_t number = tag >> 3;
  const uint32_t type = static_cast<uint32_t>(tag & 7);
  if (number == 0 || number > kMaxFieldNumber) {
    return Status::Malformed(what_ + ": field number " + std::to_string(number) + " at byte " +
                             std::to_string(f.offset) + " is out of range");
  }
  f.number = static_cast<uint32_t>(number);
  switch (type) {
    case 0: {
      f.type = WireType::kVarint;
      SAFEMODEL_ASSIGN_OR_RETURN(f.value, ReadVarint(reader_, what_));
      return f;
    }
    case 1: {
      f.type = WireType::kFixed64;
      SAFEMODEL_ASSIGN_OR_RETURN(f.value, reader_.U64LE(what_));
      return f;
    }
    case 2: {
      f.type = WireType::kLen;
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, ReadVarint(reader_, what_));
      SAFEMODEL_ASSIGN_OR_RETURN(f.bytes, reader_.Bytes(n, what_));
      return f;
    }
    case 5: {
      f.type = WireType::kFixed32;
      SAFEMODEL_ASSIGN_OR_RETURN(uint32_t v, reader_.U32LE(what_));
      f.value = v;
      return f;
    }
    default:
      break;
  }
  return Status::Malformed(what_ + ": field " + std::to_string(number) + " at byte " +
                           std::to_string(f.offset) + " has wire type " + std::to_string(type) +
                           (type == 3 || type == 4 ? " (a group, which no TensorFlow message uses)"
                                                   : " (not a protobuf wire type)"));
}

Result<std::vector<Field>> DecodeMessage(ByteView data, std::span<const FieldSpec> spec,
                                         std::string_view what) {
  std::vector<Field> out;
  std::vector<bool> seen(spec.size(), false);
  WireReader reader(data, std::string(what));
  while (!reader.at_end()) {
    SAFEMODEL_ASSIGN_OR_RETURN(Field f, reader.Next());
    size_t k = 0;
    while (k < spec.size() && spec[k].number != f.number) ++k;
    if (k == spec.size()) {
      return Status::Malformed(std::string(what) + ": unknown field " + std::to_string(f.number) +
                               " at byte " + std::to_string(f.offset));
    }
    if (spec[k].type != f.type) {
      return Status::Malformed(std::string(what) + ": field " + std::to_string(f.number) +
                               " has wire type " + std::to_string(static_cast<int>(f.type)) +
                               ", expected " + std::to_string(static_cast<int>(spec[k].type)));
    }
    if (!spec[k].repeated && seen[k]) {
      return Status::Malformed(std::string(what) + ": field " + std::to_string(f.number) +
                               " occurs twice (protobuf would keep the last, or merge them)");
    }
    seen[k] = true;
    out.push_back(f);
  }
  return out;
}

const Field* Find(const std::vector<Field>& fields, uint32_t number) {
  for (const Field& f : fields) {
    if (f.number == number) return &f;
  }
  return nullptr;
}

uint64_t Uint(const std::vector<Field>& fields, uint32_t number) {
  const Field* f = Find(fields, number);
  return f == nullptr ? 0 : f->value;
}

int64_t Int(const std::vector<Field>& fields, uint32_t number) {
  return static_cast<int64_t>(Uint(fields, number));
}

std::string_view Bytes(const std::vector<Field>& fields, uint32_t number) {
  const Field* f = Find(fields, number);
  return f == nullptr ? std::string_view() : AsChars(f->bytes);
}

}  // namespace safemodel::loader::proto
