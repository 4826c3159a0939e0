#include "proto/base/safetensors_format.h"

#include <array>
#include <utility>

namespace safemodel {

namespace {

// F8_E4M3 is the "fn" variant (finite, no infinities), the one torch calls
// float8_e4m3fn and safetensors maps to it; likewise F8_E8M0 is
// float8_e8m0fnu.
constexpr std::array<std::pair<std::string_view, DType>, 19> kNames = {{
    {"BOOL", DType::kBool},
    {"U8", DType::kU8},
    {"I8", DType::kI8},
    {"U16", DType::kU16},
    {"I16", DType::kI16},
    {"U32", DType::kU32},
    {"I32", DType::kI32},
    {"U64", DType::kU64},
    {"I64", DType::kI64},
    {"F16", DType::kF16},
    {"BF16", DType::kBF16},
    {"F32", DType::kF32},
    {"F64", DType::kF64},
    {"C64", DType::kC64},
    {"F8_E4M3", DType::kF8E4M3FN},
    {"F8_E5M2", DType::kF8E5M2},
    {"F8_E4M3FNUZ", DType::kF8E4M3FNUZ},
    {"F8_E5M2FNUZ", DType::kF8E5M2FNUZ},
    {"F8_E8M0", DType::kF8E8M0FNU},
}};

}  // namespace

std::optional<DType> DTypeFromSafetensorsName(std::string_view name) {
  for (const auto& [n, d] : kNames) {
    if (n == name) return d;
  }
  return std::nullopt;
}

std::string_view SafetensorsDTypeName(DType dtype) {
  for (const auto& [n, d] : kNames) {
    if (d == dtype) return n;
  }
  return {};
}

bool IsSubByteSafetensorsName(std::string_view name) {
  return name == "F4" || name == "F6_E2M3" || name == "F6_E3M2";
}

}  // namespace safemodel
