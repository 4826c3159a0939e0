// How much a worker may send for an input of a given size: the limits the
// worker keeps to (it trims or refuses with a clear message) and the parent
// enforces (it refuses the stream), defined once for both ends.
//
// Why the input's size: a file of N bytes cannot honestly describe more than
// O(N) tensors, findings or architecture nodes, so a header far bigger than
// its input is a compromised worker trying to exhaust the parent. Bounding
// every header quantity by a small constant plus a fraction of N bounds the
// parent's memory by the input, not by the format's absolute caps (limits.h),
// which stay in force as well. Each constant below says why it has its value.
//
// The resulting bound, measured for the worst stream of each frame kind in
// tests/sandbox/parent_memory_test.cc: the parent's peak resident memory
// stays below kParentBaseBytes + kParentBytesPerInputByte x the input size.
#ifndef SAFEMODEL_CONVERTER_PROTOCOL_STREAM_LIMITS_H_
#define SAFEMODEL_CONVERTER_PROTOCOL_STREAM_LIMITS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "proto/safemodel.pb.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"

namespace safemodel {

// Every format spends at least this many input bytes on a tensor: a stored
// npz member ~140 (two zip headers, an npy header of 64), an HDF5 dataset
// ~300 (object header and link), a torch zip storage member ~110, and the
// leanest, a legacy pickle's view of a shared storage, ~75 plus its name
// (the leanest file in the corpus: 112 bytes per tensor). 64 stays below
// all of them.
inline constexpr uint64_t kMinInputBytesPerTensor = 64;
// Small inputs may always have this many: covers every real small model.
inline constexpr uint64_t kBaseTensorCount = 4096;

// A parsed protobuf object (a tensor entry, a Value, a map entry, a finding,
// a repeated string) costs the parent ~50-180 bytes for as little as two
// bytes on the wire; their number, not the frame's size, drives the parse's
// memory. One object per 64 input bytes matches the tensor rule (a tensor
// entry is one object); a Keras architecture costs ~2 objects per node and
// a node ~10 bytes of JSON, which is a small part of any real file, and the
// base admits a config of ~50,000 nodes (5x MobileNetV2) for any input.
inline constexpr uint64_t kMinInputBytesPerObject = 64;
inline constexpr uint64_t kBaseObjectCount = 128 * 1024;

// Header frame bytes: names, strings and numbers come from the input (an
// architecture re-encoded as Value is ~1.5x its JSON, a part of the input),
// so beyond the base a header is at most half its input; the largest ratio
// in the corpus is 3.4 for a 23-byte pickle, well inside the base.
inline constexpr uint64_t kBaseHeaderBytes = 8ull << 20;
inline constexpr uint64_t kInputBytesPerHeaderByte = 2;

// Findings: each comes from something in the input (a refused call, a
// dropped group); a worker reports at most kMaxFindings (proto/wire/wire.h). Their
// text is printed on stderr, kept in the report and stored in the output, so
// its total is capped: 2 MiB holds ~10,000 findings of real length
// (~200 bytes each); a worker with more reports the first ones and a note.
inline constexpr uint64_t kBaseFindingCount = 256;
inline constexpr uint64_t kMinInputBytesPerFinding = 8;
inline constexpr uint64_t kMaxFindingsTotalBytes = 2ull << 20;

// An ERROR frame is a status message (<= 64 KiB), findings within the total
// above, and protobuf framing (a few bytes per finding and reference).
inline constexpr uint64_t kMaxErrorFrameBytes = 4ull << 20;

inline constexpr uint64_t kParentBaseBytes = 64ull << 20;
inline constexpr uint64_t kParentBytesPerInputByte = 4;

struct StreamLimits {
  uint64_t header_bytes = 0;
  uint64_t header_objects = 0;
  uint64_t tensors = 0;
  uint64_t findings = 0;
  uint64_t findings_bytes = 0;
};

// The limits for an input of `input_size` bytes; each is also capped by the
// format's absolute limit (limits.h, format.h).
StreamLimits StreamLimitsFor(uint64_t input_size);

// Text bytes of a finding, as counted against findings_bytes: rule,
// location, message and references.
uint64_t FindingTextBytes(const Finding& finding);
uint64_t FindingTextBytes(const v1::Finding& finding);

// Checks a list of findings from the worker against `limits`.
Status CheckFindingsBudget(const google::protobuf::RepeatedPtrField<v1::Finding>& findings,
                           const StreamLimits& limits);

// Worker side: keeps the findings that fit `limits` (in order) and, if any
// had to go, replaces the last kept one by a note saying how many were left
// out, so that a file with too many findings is still reported, not lost.
void TrimFindings(std::vector<Finding>* findings, const StreamLimits& limits);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_PROTOCOL_STREAM_LIMITS_H_
