// Deflate decompression for the containers: a whole zlib or gzip stream
// (compressed joblib files), and the raw deflate data of zip members that
// are only scanned.
//
// Output is bounded: by the caller's cap, and for whole streams also by the
// most deflate can expand its input (kMaxDeflateRatio), so a bomb stops at
// the cap instead of filling memory. Worst case: O(output).
//
// Trust: the input is untrusted; zlib bounds every read and write.
#ifndef SAFEMODEL_LOADER_CONTAINERS_INFLATE_H_
#define SAFEMODEL_LOADER_CONTAINERS_INFLATE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "safemodel/status.h"

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Deflate cannot expand data by more than 1032:1 (RFC 1951, 258-byte matches
// in 2-bit codes); a stream or member claiming more is lying about its size.
inline constexpr uint64_t kMaxDeflateRatio = 1100;

// Inflates a zlib (RFC 1950) or gzip (RFC 1952) stream whole, to at most
// `max_bytes` and at most kMaxDeflateRatio times the input (plus a little).
// LimitExceeded beyond either; Malformed for a corrupt or truncated stream
// or for bytes after its end.
Result<std::shared_ptr<std::string>> InflateWhole(ByteView input, bool gzip, uint64_t max_bytes);

// Inflates raw deflate data as far as it inflates cleanly (a truncated
// member can still hold a complete payload), to at most `cap` bytes. Never
// fails: what did not inflate is simply not in the result.
std::string InflateRaw(ByteView in, uint64_t cap);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_INFLATE_H_
