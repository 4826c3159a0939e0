// Untrusted JSON text into a safemodel Value tree, with size, depth and node
// caps enforced while parsing (nlohmann's SAX parser is iterative; this
// handler builds the tree with an explicit stack and stops at the caps).
//
// Python's json module writes NaN, Infinity and -Infinity for non-finite
// floats; Keras configs can contain them, so they are accepted outside
// strings and become doubles. Duplicate keys in one object are an error
// (Python would keep the last one silently). Integers that do not fit int64
// become doubles, as in Python's float().
//
// Worst case: O(n) in the text; duplicate keys are found with a keyed hash
// set per object.
//
// Trust: `text` is untrusted.
#ifndef SAFEMODEL_LOADER_KERAS_H5_JSON_VALUE_H_
#define SAFEMODEL_LOADER_KERAS_H5_JSON_VALUE_H_

#include <cstdint>
#include <string_view>

#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader {

// The largest Keras config seen is ~100 KiB (MobileNetV2 in a Teachable
// Machine file); 64 MiB leaves room for very large graphs.
inline constexpr uint64_t kMaxJsonBytes = 64ull << 20;
// Real configs nest <= 14 levels; 48 keeps the converted architecture (which
// adds a few levels) under safemodel's Value depth limit of 64.
inline constexpr uint32_t kMaxJsonDepth = 48;

// Parses `text`; `what` names it in errors ("model_config"). Objects and
// arrays may nest `max_depth` levels (at most kMaxJsonDepth).
Result<Value> ParseJson(std::string_view text, std::string_view what,
                        uint32_t max_depth = kMaxJsonDepth);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_KERAS_H5_JSON_VALUE_H_
