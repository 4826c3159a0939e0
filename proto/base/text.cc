#include "proto/base/text.h"

#include <algorithm>
#include <cstdio>

#include "proto/base/byte_reader.h"

namespace safemodel {

Status CheckIdentifier(std::string_view s, std::string_view what) {
  const bool ok = !s.empty() && s.size() <= kMaxIdentifierBytes &&
                  std::all_of(s.begin(), s.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                  });
  if (!ok) {
    return Status::Malformed(std::string(what) + " '" + Printable(s) + "' is not an identifier");
  }
  return Status::Ok();
}

bool IsPlainFileName(std::string_view name) {
  if (name.empty() || name.size() > kMaxPlainFileNameBytes || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

std::string Count(uint64_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::string HumanBytes(uint64_t n) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 1024) return Count(n, "byte", "bytes");
  double v = static_cast<double>(n) / 1024;
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < sizeof kUnits / sizeof kUnits[0]) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  return buf;
}

std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace safemodel
