#include "converter/cli/messages.h"

#include <cstdio>

#include "safemodel/display.h"

namespace safemodel::cli {

std::string E(std::string_view text) { return EscapeForDisplay(text); }

std::string Count(uint64_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

std::string FileLine(std::string_view file, std::string_view what) {
  return "safe-convert: " + E(file) + ": " + std::string(what) + "\n";
}

std::string FindingLine(std::string_view file, const Finding& f) {
  std::string what = std::string(SeverityName(f.severity)) + ": " + E(f.message) + " (" + E(f.rule);
  if (!f.location.empty()) what += " at " + E(f.location);
  for (size_t k = 0; k < f.references.size(); ++k) {
    what += (k ? ", " : "; refers to ") + E(f.references[k]);
  }
  return FileLine(file, what + ")");
}

std::string StatusLine(std::string_view file, const Status& s) {
  return FileLine(file, std::string(StatusCodeDescription(s.code())) + ": " + E(s.message()));
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

}  // namespace safemodel::cli
