// Strict parsing of the small JSON file the format library reads in process:
// a sharded .safemodel index (safemodel/sharded.h), a reader library's input
// like the .safemodel itself. What nlohmann would accept silently (a repeated
// key: the last one wins) is refused. A Hugging Face checkpoint index is
// never read here: it is untrusted input, parsed only in the sandboxed
// worker (loader/hf_index).
#ifndef SAFEMODEL_PROTO_STRICT_JSON_H_
#define SAFEMODEL_PROTO_STRICT_JSON_H_

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

#include "proto/base/text.h"  // IsPlainFileName, for the callers of ReadSmallFile
#include "safemodel/status.h"

namespace safemodel {

// Nesting allowed in an index (its deepest value is at 3).
inline constexpr size_t kMaxIndexJsonDepth = 8;

// `text` as JSON: kMalformed (naming `what`) if it is not valid JSON, has a
// key twice in one object, or nests deeper than kMaxIndexJsonDepth. The
// caller caps the size before reading.
Result<nlohmann::json> ParseStrictJson(std::string_view text, const std::string& what);

// The whole file at `path` if it is a regular file of at most `max_bytes`
// (not followed if it is a symbolic link); kIoError, kInvalidArgument or
// kLimitExceeded otherwise.
Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes, const std::string& what);

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_STRICT_JSON_H_
