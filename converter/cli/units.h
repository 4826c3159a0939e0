// Durations and sizes as safe-convert's options take them.
#ifndef SAFEMODEL_CONVERTER_CLI_UNITS_H_
#define SAFEMODEL_CONVERTER_CLI_UNITS_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace safemodel::cli {

// A whole number of seconds, minutes or hours: "90" and "90s" are 90 s,
// "5m" 300 s, "2h" 7200 s. Seconds; nullopt if malformed, zero or over a
// year (kMaxDurationSeconds).
inline constexpr uint64_t kMaxDurationSeconds = 365ull * 86400;  // no conversion needs longer
std::optional<uint64_t> ParseDuration(std::string_view text);

// A whole number of bytes with an optional unit, case-insensitive:
// none or B; K, M, G, T and KiB, MiB, GiB, TiB (powers of 1024: "4G" is
// 4 GiB, as the options always took it); KB, MB, GB, TB (powers of 1000).
// nullopt if malformed or over 2^64 - 1.
std::optional<uint64_t> ParseSize(std::string_view text);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_UNITS_H_
