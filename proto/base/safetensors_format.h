// Facts of the safetensors format defined once for both directions, the
// parser (loader/safetensors) and the exporter (proto/safetensors_export.cc):
// the length prefix, the header cap and the dtype names with the safemodel
// dtypes they stand for.
//
// Names are those of the reference implementation's `Dtype` enum
// (huggingface/safetensors, safetensors/src/tensor.rs). F4, F6_E2M3 and
// F6_E3M2 are sub-byte types that .safemodel format 1 cannot hold; they have
// no entry here and are refused by both directions. C128 has no safetensors
// name.
#ifndef SAFEMODEL_PROTO_BASE_SAFETENSORS_FORMAT_H_
#define SAFEMODEL_PROTO_BASE_SAFETENSORS_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "safemodel/dtype.h"

namespace safemodel {

// The header's length prefix: an unsigned 64-bit little-endian integer.
inline constexpr uint64_t kSafetensorsLengthBytes = 8;

// The reference reader refuses headers over 100,000,000 bytes
// (MAX_HEADER_SIZE in safetensors/src/tensor.rs): no loader reads a file
// beyond it, so safemodel neither reads nor writes one. Real headers are well
// under 10 MB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// The safemodel dtype of a safetensors dtype name ("F32", "BF16",
// "F8_E4M3"), or nullopt for a name that is not one or has no safemodel
// dtype.
std::optional<DType> DTypeFromSafetensorsName(std::string_view name);

// The safetensors name of `dtype`, or an empty view when safetensors cannot
// express it (C128, kInvalid).
std::string_view SafetensorsDTypeName(DType dtype);

// True for the names the reference implementation knows but safemodel cannot
// represent (sub-byte floats), so that a message can say which rule refused.
bool IsSubByteSafetensorsName(std::string_view name);

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_BASE_SAFETENSORS_FORMAT_H_
