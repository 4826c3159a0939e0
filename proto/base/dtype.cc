#include "safemodel/dtype.h"

#include <array>

namespace safemodel {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  uint32_t size;
  uint32_t swap_unit;
};

// Indexed by the DType value.
constexpr std::array<DTypeInfo, kMaxDType + 1> kInfo = {{
    {DType::kInvalid, "invalid", 0, 0},
    {DType::kBool, "bool", 1, 1},
    {DType::kU8, "u8", 1, 1},
    {DType::kI8, "i8", 1, 1},
    {DType::kU16, "u16", 2, 2},
    {DType::kI16, "i16", 2, 2},
    {DType::kU32, "u32", 4, 4},
    {DType::kI32, "i32", 4, 4},
    {DType::kU64, "u64", 8, 8},
    {DType::kI64, "i64", 8, 8},
    {DType::kF16, "f16", 2, 2},
    {DType::kBF16, "bf16", 2, 2},
    {DType::kF32, "f32", 4, 4},
    {DType::kF64, "f64", 8, 8},
    {DType::kC64, "c64", 8, 4},
    {DType::kC128, "c128", 16, 8},
    {DType::kF8E4M3FN, "f8_e4m3fn", 1, 1},
    {DType::kF8E5M2, "f8_e5m2", 1, 1},
    {DType::kF8E4M3FNUZ, "f8_e4m3fnuz", 1, 1},
    {DType::kF8E5M2FNUZ, "f8_e5m2fnuz", 1, 1},
    {DType::kF8E8M0FNU, "f8_e8m0fnu", 1, 1},
}};

const DTypeInfo& Info(DType d) {
  auto raw = static_cast<uint32_t>(d);
  return raw <= kMaxDType ? kInfo[raw] : kInfo[0];
}

}  // namespace

uint32_t DTypeSize(DType dtype) { return Info(dtype).size; }
uint32_t DTypeSwapUnit(DType dtype) { return Info(dtype).swap_unit; }
std::string_view DTypeName(DType dtype) { return Info(dtype).name; }

std::optional<DType> DTypeFromName(std::string_view name) {
  for (const auto& info : kInfo) {
    if (info.dtype != DType::kInvalid && info.name == name) return info.dtype;
  }
  return std::nullopt;
}

bool IsValidDType(uint32_t raw) { return raw >= 1 && raw <= kMaxDType; }

}  // namespace safemodel
