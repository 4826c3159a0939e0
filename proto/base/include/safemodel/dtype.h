// File: safemodel/dtype.h
//
// Element types a .safemodel tensor can have. The numeric values are the ones
// stored in the file (proto/safemodel.proto `DType`) and are pinned forever.
// Every dtype has a whole number of bytes per element; sub-byte packed types
// are not part of format version 1.
#ifndef SAFEMODEL_DTYPE_H_
#define SAFEMODEL_DTYPE_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "safemodel/export.h"

namespace safemodel {

enum class DType : uint32_t {
  kInvalid = 0,
  kBool = 1,
  kU8 = 2,
  kI8 = 3,
  kU16 = 4,
  kI16 = 5,
  kU32 = 6,
  kI32 = 7,
  kU64 = 8,
  kI64 = 9,
  kF16 = 10,
  kBF16 = 11,
  kF32 = 12,
  kF64 = 13,
  kC64 = 14,   // two f32: real, imaginary
  kC128 = 15,  // two f64
  kF8E4M3FN = 16,
  kF8E5M2 = 17,
  kF8E4M3FNUZ = 18,
  kF8E5M2FNUZ = 19,
  kF8E8M0FNU = 20,
};

inline constexpr uint32_t kMaxDType = 20;

// Bytes per element; 0 for kInvalid or an unknown value.
SAFEMODEL_EXPORT uint32_t DTypeSize(DType dtype);

// Size of the unit that is byte-swapped when converting from big-endian
// (the component size for complex types, 1 for byte-sized types).
SAFEMODEL_EXPORT uint32_t DTypeSwapUnit(DType dtype);

// Stable lower-case name: "f32", "bf16", "c64", "f8_e4m3fn", "bool", ...
SAFEMODEL_EXPORT std::string_view DTypeName(DType dtype);

// Inverse of DTypeName; nullopt for an unknown name.
SAFEMODEL_EXPORT std::optional<DType> DTypeFromName(std::string_view name);

// True for a value that names a defined dtype (not kInvalid).
SAFEMODEL_EXPORT bool IsValidDType(uint32_t raw);

}  // namespace safemodel

#endif  // SAFEMODEL_DTYPE_H_
