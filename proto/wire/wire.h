// The protobuf side of the .safemodel format and of the worker's messages:
// Value and Finding to and from their messages, parsing with a byte, depth
// and object budget, and deterministic serialisation. Everything a process
// needs to speak the schema and nothing that touches a file or a digest, so
// that the sandboxed worker links only this (proto/FORMAT.md has the rules).
//
// Trust: every function that takes bytes or a parsed message treats it as
// untrusted.
#ifndef SAFEMODEL_PROTO_WIRE_WIRE_H_
#define SAFEMODEL_PROTO_WIRE_WIRE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "proto/base/byte_reader.h"
#include "proto/safemodel.pb.h"
#include "safemodel/finding.h"
#include "safemodel/limits.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::wire {

// Caps on provenance and findings text, so that a hostile worker cannot bloat
// the header with prose.
inline constexpr uint64_t kMaxFindings = 10'000;
inline constexpr uint64_t kMaxFindingTextBytes = 64 * 1024;
inline constexpr uint64_t kMaxOptions = 64;

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
// Every text field must be valid UTF-8 (checked on the wire first, as
// protobuf itself would for a `string` field, but without its logging).
bool ParseBounded(ByteView bytes, google::protobuf::MessageLite* out,
                  uint64_t max_objects = kMaxParsedObjects);

// Where ParseBoundedEntries hands the entries of the field it streams.
class EntrySink {
 public:
  virtual ~EntrySink() = default;
  // Each entry, in the order of the bytes. The whole message may still
  // turn out not to parse (then ParseBoundedEntries returns false, and the
  // caller drops what it was handed).
  virtual void Add(const google::protobuf::Message& entry) = 0;
};

// Where a streamed ParseBoundedEntries reads its bytes from, in order.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Exactly `n` (> 0) bytes into `out`, or false; after a false the parse
  // fails without asking again.
  virtual bool Read(uint8_t* out, size_t n) = 0;
};

// ParseBounded, except that the occurrences of `field`, a repeated message
// field of `out`'s type (a header's tensor entries), are not stored in
// `out`: each is parsed on its own into `entry` (cleared each time, with
// the nesting budget it has inside `out`) and handed to `sink`, so that the
// caller keeps a compact form of them instead of one message each. Accepts
// exactly the bytes ParseBounded accepts (the same budget walk, field by
// top-level field, then protobuf's own parse of every part), and leaves
// `out` as ParseBounded would with that field empty.
bool ParseBoundedEntries(ByteView bytes, google::protobuf::Message* out, int field,
                         google::protobuf::Message* entry, EntrySink* sink,
                         uint64_t max_objects = kMaxParsedObjects);

// The same over `length` bytes read from `source`, holding one top-level
// field at a time (at least kParseWindowBytes) instead of the whole: the
// parent reads a worker's HEADER frame this way, whose bytes were 20 per
// tensor beside the ~24 it keeps (tests/bench/PROFILE.md, eleventh round).
// The verdict and `out` are the ByteView form's for the same bytes, but
// entries reach `sink` as they are read, before a later field can make the
// whole fail. False also when `source` fails (the caller knows which).
inline constexpr size_t kParseWindowBytes = 64 << 10;
bool ParseBoundedEntries(ByteSource& source, uint64_t length, google::protobuf::Message* out,
                         int field, google::protobuf::Message* entry, EntrySink* sink,
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

}  // namespace safemodel::wire

#endif  // SAFEMODEL_PROTO_WIRE_WIRE_H_
