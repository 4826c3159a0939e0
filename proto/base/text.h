// Small text helpers for messages about untrusted input.
#ifndef SAFEMODEL_PROTO_BASE_TEXT_H_
#define SAFEMODEL_PROTO_BASE_TEXT_H_

#include <cstdint>
#include <string>

namespace safemodel {

// Decimal rendering of a count, size or offset for an error message.
inline std::string Num(uint64_t v) { return std::to_string(v); }

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_BASE_TEXT_H_
