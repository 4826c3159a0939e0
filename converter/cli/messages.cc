#include "converter/cli/messages.h"

#include <cstdio>

#include "safemodel/display.h"

namespace safemodel::cli {

std::string E(std::string_view text) { return EscapeForDisplay(text); }

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

}  // namespace safemodel::cli
