// Small text helpers for messages about, and checks of, untrusted text.
#ifndef SAFEMODEL_PROTO_BASE_TEXT_H_
#define SAFEMODEL_PROTO_BASE_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "safemodel/status.h"

namespace safemodel {

// Decimal rendering of a count, size or offset for an error message.
inline std::string Num(uint64_t v) { return std::to_string(v); }

// "1 tensor", "2 tensors": `one` and `many` are the noun's two forms.
std::string Count(uint64_t n, std::string_view one, std::string_view many);

// 1536 -> "1.5 KiB"; below 1 KiB "N bytes". Binary units, one decimal.
std::string HumanBytes(uint64_t n);

// `s` with A-Z mapped to a-z and every other byte unchanged (no locale):
// for names compared the way ASCII case-insensitive readers do.
std::string AsciiLower(std::string_view s);

// The longest identifier a worker may send (a source format, an isolation
// layer): the longest real one is 16 characters.
inline constexpr size_t kMaxIdentifierBytes = 32;

// kMalformed unless `s` is 1 to kMaxIdentifierBytes characters of
// [a-z0-9_]; `what` names it in the message ("source format 'x' is not an
// identifier").
Status CheckIdentifier(std::string_view s, std::string_view what);

// A file name as an index may name it (a Hugging Face checkpoint's shard, a
// sharded .safemodel's shard): a plain name in the index's own directory (not
// empty, not "." or "..", no "/" or "\", no control character, at most 255
// bytes, the longest name Linux file systems store). Checked by the worker
// that reads an HF index and again by the parent that uses its result.
inline constexpr size_t kMaxPlainFileNameBytes = 255;
bool IsPlainFileName(std::string_view name);

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_BASE_TEXT_H_
