// The .safemodel container (proto/FORMAT.md): the fixed prefix, the canonical
// tensor layout, and the validation rules shared by the reader and by the
// parent process that checks the worker's proposal.
//
// Trust: every function here treats its input as untrusted.
#ifndef SAFEMODEL_CONVERTER_FORMAT_H_
#define SAFEMODEL_CONVERTER_FORMAT_H_

#include <cstdint>
#include <string>

#include "proto/base/byte_reader.h"
#include "proto/safemodel.pb.h"
#include "safemodel/finding.h"
#include "safemodel/limits.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::format {

// "\x89SFM\r\n\x1a\n": the high byte catches 7-bit transfers, CR LF catches
// newline translation, 0x1a stops `type` on DOS (the PNG idea).
inline constexpr uint8_t kMagic[8] = {0x89, 'S', 'F', 'M', '\r', '\n', 0x1a, '\n'};
inline constexpr uint16_t kMajorVersion = 1;
inline constexpr uint16_t kMinorVersion = 0;
inline constexpr uint64_t kPrefixBytes = 64;
// The data region starts on a page so that it can be mmapped and used in place.
inline constexpr uint64_t kDataAlignment = 4096;
// Every tensor starts on a cache line (AVX-512 loads, accelerator DMA)...
inline constexpr uint64_t kTensorAlignment = 64;
// ...and tensors of 1 MiB or more on a page, so they can be mapped on their own.
inline constexpr uint64_t kLargeTensorAlignment = 4096;
inline constexpr uint64_t kLargeTensorBytes = 1 << 20;

// Caps on provenance and findings text, so that a hostile worker cannot bloat
// the header with prose.
inline constexpr uint64_t kMaxFindings = 10'000;
inline constexpr uint64_t kMaxFindingTextBytes = 64 * 1024;
inline constexpr uint64_t kMaxOptions = 64;

struct Prefix {
  uint16_t major = kMajorVersion;
  uint16_t minor = kMinorVersion;
  uint32_t flags = 0;
  uint64_t header_off = kPrefixBytes;
  uint64_t header_len = 0;
  uint64_t data_off = 0;
  uint64_t data_len = 0;
  uint64_t trailer_off = 0;
  uint64_t trailer_len = 0;
};

void EncodePrefix(const Prefix& prefix, uint8_t out[kPrefixBytes]);

// Decodes and checks the prefix against the size of the whole file: magic,
// known major version, flags zero, regions in order, aligned, and ending
// exactly at the end of the file.
Result<Prefix> DecodePrefix(ByteView prefix_bytes, uint64_t file_size);

// Alignment required for a tensor of `nbytes` bytes.
inline uint64_t TensorAlignmentFor(uint64_t nbytes) {
  return nbytes >= kLargeTensorBytes ? kLargeTensorAlignment : kTensorAlignment;
}

// data_off for a header of `header_len` bytes.
Result<uint64_t> DataOffsetFor(uint64_t header_len);

// Checks the tensor table (count, names sorted and unique, dtypes, ranks,
// aliases) and recomputes nbytes. With `assign_offsets` it then assigns the
// canonical offsets and returns data_len; otherwise it checks that the stored
// offsets and nbytes are exactly the canonical ones.
Result<uint64_t> LayoutTensors(google::protobuf::RepeatedPtrField<v1::TensorInfo>* tensors,
                               bool assign_offsets);

// Checks the findings and options lists (counts, text sizes, UTF-8).
Status CheckFindings(const google::protobuf::RepeatedPtrField<v1::Finding>& findings);
Status CheckOptions(const google::protobuf::RepeatedPtrField<std::string>& options);

// Finding <-> protobuf. FindingToProto copies field by field, so a finding
// that went through it carries no unknown fields.
void FindingToProto(const Finding& finding, v1::Finding* out);
Finding FindingFromProto(const v1::Finding& proto);

// Value <-> protobuf, iteratively and depth-checked (kMaxValueDepth).
void ValueToProto(const Value& value, v1::Value* out);
Result<Value> ValueFromProto(const v1::Value& proto, std::string_view what);

// Objects a parse may allocate: one per submessage, repeated string element
// or unknown field. Protobuf spends ~100 bytes on an object that costs two
// bytes on the wire (an empty TensorInfo), so without this cap a header of
// kMaxHeaderBytes could make the parser allocate ~27 GB. The cap admits every
// header within the format's limits: kMaxTensorCount tensors, two Value trees
// of kMaxValueNodes nodes at up to three messages per node, and findings.
inline constexpr uint64_t kMaxParsedObjects = kMaxTensorCount + 6 * kMaxValueNodes + 1'000'000;

// Parses a protobuf message with a byte cap, a recursion limit deep enough
// for kMaxValueDepth Value levels and no deeper, and at most `max_objects`
// allocated objects (counted on the wire before anything is allocated).
bool ParseBounded(ByteView bytes, google::protobuf::MessageLite* out,
                  uint64_t max_objects = kMaxParsedObjects);

// The number of objects parsing `bytes` as `message`'s type would allocate
// (as ParseBounded counts them), or UINT64_MAX if the bytes are not
// well-formed or nest too deeply.
uint64_t CountParsedObjects(const google::protobuf::Message& message, ByteView bytes);

// Checks a Value tree in place, as ValueFromProto would (depth, node count,
// UTF-8 strings and keys, unique keys), and canonicalises it to what
// ValueToProto(ValueFromProto(v)) would give: null for an unset kind, a
// value for every map entry, no unknown fields. No copy of the tree is made,
// so a hostile tree costs the parent one parse, not three.
Status SanitizeValue(v1::Value* value, std::string_view what);

// Deterministic serialization (fixed field order, no map reordering).
std::string SerializeDeterministic(const google::protobuf::MessageLite& message);

}  // namespace safemodel::format

#endif  // SAFEMODEL_CONVERTER_FORMAT_H_
