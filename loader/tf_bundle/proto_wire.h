// A strict reader of the protobuf wire format, for the few TensorFlow
// messages safemodel decodes (tensor-bundle entries and headers, the
// checkpoint object graph, SavedModel and Keras metadata). No generated code,
// no reflection: callers name the fields they accept.
//
// Strict, unlike libprotobuf: truncation anywhere, a varint longer than 10
// bytes or not in its shortest form, a field number of 0 or above 2^29 - 1,
// the group wire types (3, 4) and wire types 6, 7 are errors. Decoding a
// message with DecodeMessage() also makes unknown fields, a known field with
// the wrong wire type, and a second occurrence of a singular field errors
// (libprotobuf skips the first two and keeps the last value, so two readers
// of such bytes may disagree).
//
// Worst case: O(n) for n bytes; nothing recurses (nested messages are
// decoded by the caller, one level at a time).
//
// Trust: the bytes are untrusted; every length is checked against what
// remains of the enclosing message.
#ifndef SAFEMODEL_LOADER_TF_BUNDLE_PROTO_WIRE_H_
#define SAFEMODEL_LOADER_TF_BUNDLE_PROTO_WIRE_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/status.h"

namespace safemodel::loader::proto {

enum class WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// One field as it appears on the wire.
struct Field {
  uint32_t number = 0;
  WireType type = WireType::kVarint;
  uint64_t value = 0;  // kVarint, kFixed64, kFixed32
  ByteView bytes;      // kLen
  uint64_t offset = 0; // of the tag, relative to the message start
};

// Reads the fields of one message in order.
class WireReader {
 public:
  // `what` names the message in errors ("bundle entry 'x'").
  WireReader(ByteView data, std::string what) : reader_(data), what_(std::move(what)) {}
  bool at_end() const { return reader_.at_end(); }
  Result<Field> Next();

 private:
  ByteReader reader_;
  std::string what_;
};

// A base-128 varint in its shortest form (at most 10 bytes, the tenth 0 or 1).
Result<uint64_t> ReadVarint(ByteReader& reader, std::string_view what);

// What a message may hold: its fields by number and wire type.
struct FieldSpec {
  uint32_t number;
  WireType type;
  bool repeated;
};

// Decodes `data` strictly against `spec` (see the header comment); the
// fields are returned in wire order.
Result<std::vector<Field>> DecodeMessage(ByteView data, std::span<const FieldSpec> spec,
                                         std::string_view what);

// Helpers over decoded fields. The first (singular fields occur at most
// once after DecodeMessage) or null.
const Field* Find(const std::vector<Field>& fields, uint32_t number);
// proto3 scalars: the value, or the default when the field is absent.
uint64_t Uint(const std::vector<Field>& fields, uint32_t number);
// int32/int64 fields are varints of the two's complement value.
int64_t Int(const std::vector<Field>& fields, uint32_t number);
std::string_view Bytes(const std::vector<Field>& fields, uint32_t number);

}  // namespace safemodel::loader::proto

#endif  // SAFEMODEL_LOADER_TF_BUNDLE_PROTO_WIRE_H_
