// Strict parsing of small JSON files that arrive from elsewhere (a Hugging
// Face checkpoint index, a sharded .safemodel index): what nlohmann would
// accept silently (a repeated key: the last one wins) is refused.
#ifndef SAFEMODEL_PROTO_STRICT_JSON_H_
#define SAFEMODEL_PROTO_STRICT_JSON_H_

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

#include "safemodel/status.h"

namespace safemodel {

// Nesting allowed in an index (its deepest value is at 3).
inline constexpr size_t kMaxIndexJsonDepth = 8;

// `text` as JSON: kMalformed (naming `what`) if it is not valid JSON, has a
// key twice in one object, or nests deeper than kMaxIndexJsonDepth. The
// caller caps the size before reading.
Result<nlohmann::json> ParseStrictJson(std::string_view text, const std::string& what);

// A shard's file name as an index may name it: a plain name in the index's
// own directory (not empty, not "." or "..", no "/" or "\", no control
// character, at most 255 bytes).
bool IsPlainFileName(std::string_view name);

// The whole file at `path` if it is a regular file of at most `max_bytes`
// (not followed if it is a symbolic link); kIoError, kInvalidArgument or
// kLimitExceeded otherwise.
Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes, const std::string& what);

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_STRICT_JSON_H_
