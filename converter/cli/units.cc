#include "converter/cli/units.h"

#include <string>

#include "proto/base/text.h"

namespace safemodel::cli {

namespace {

// Splits "123unit" into its number (no sign, no fraction) and unit.
std::optional<uint64_t> SplitNumber(std::string_view text, std::string* unit) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) return std::nullopt;  // 19 digits always fit 64 bits
  uint64_t v = 0;
  for (size_t i = 0; i < digits; ++i) v = v * 10 + static_cast<uint64_t>(text[i] - '0');
  *unit = AsciiLower(text.substr(digits));  // "10M" and "10m" alike, no locale
  return v;
}

std::optional<uint64_t> Times(uint64_t v, uint64_t mult) {
  if (v != 0 && mult > UINT64_MAX / v) return std::nullopt;
  return v * mult;
}

}  // namespace

std::optional<uint64_t> ParseDuration(std::string_view text) {
  std::string unit;
  std::optional<uint64_t> v = SplitNumber(text, &unit);
  if (!v) return std::nullopt;
  uint64_t mult = 0;
  if (unit.empty() || unit == "s") mult = 1;
  if (unit == "m") mult = 60;
  if (unit == "h") mult = 3600;
  if (mult == 0) return std::nullopt;
  std::optional<uint64_t> s = Times(*v, mult);
  if (!s || *s == 0 || *s > kMaxDurationSeconds) return std::nullopt;
  return s;
}

std::optional<uint64_t> ParseSize(std::string_view text) {
  std::string unit;
  std::optional<uint64_t> v = SplitNumber(text, &unit);
  if (!v) return std::nullopt;
  static constexpr std::string_view kPrefixes = "kmgt";
  if (unit.empty() || unit == "b") return v;
  const size_t power = kPrefixes.find(unit[0]) + 1;  // 0 if not a prefix
  if (power == 0) return std::nullopt;
  const std::string_view rest = std::string_view(unit).substr(1);
  uint64_t base = 0;
  if (rest.empty() || rest == "ib") base = 1024;
  if (rest == "b") base = 1000;
  if (base == 0) return std::nullopt;
  uint64_t mult = 1;
  for (size_t i = 0; i < power; ++i) mult *= base;
  return Times(*v, mult);
}

}  // namespace safemodel::cli
