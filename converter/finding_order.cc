#include "converter/finding_order.h"

#include <algorithm>
#include <string>
#include <string_view>

namespace safemodel {

namespace {

// Namespaces of the libraries whose objects model files legitimately hold;
// a reference into one is most likely a constructor safemodel does not know
// yet, rather than a way to run code. Only used to order findings.
constexpr std::string_view kModelLibraries[] = {"torch", "numpy", "collections", "joblib"};

bool InModelLibrary(const std::string& name) {
  for (std::string_view lib : kModelLibraries) {
    if (name.size() >= lib.size() && name.compare(0, lib.size(), lib) == 0 &&
        (name.size() == lib.size() || name[lib.size()] == '.')) {
      return true;
    }
  }
  return false;
}

int Rank(const Finding& f) {
  switch (f.severity) {
    case Finding::Severity::kRefused:
      if (!f.references.empty() &&
          std::all_of(f.references.begin(), f.references.end(), InModelLibrary)) {
        return 1;
      }
      return 0;
    case Finding::Severity::kDropped:
      return 2;
    case Finding::Severity::kNote:
      return 3;
  }
  return 3;
}

}  // namespace

void OrderFindings(std::vector<Finding>* findings) {
  std::stable_sort(findings->begin(), findings->end(),
                   [](const Finding& a, const Finding& b) { return Rank(a) < Rank(b); });
}

Status HeadlineWorst(const Status& status, const std::vector<Finding>& findings) {
  if (status.code() != StatusCode::kRefused || findings.empty() ||
      findings.front().severity != Finding::Severity::kRefused) {
    return status;
  }
  const Finding& worst = findings.front();
  const auto refusals = std::count_if(findings.begin(), findings.end(), [](const Finding& f) {
    return f.severity == Finding::Severity::kRefused;
  });
  std::string msg = worst.message + " [" + worst.rule + " at " + worst.location + "]";
  if (refusals > 1) {
    msg += " and " + std::to_string(refusals - 1) + (refusals == 2 ? " more refusal" : " more refusals");
  }
  return Status::Refused(msg);
}

}  // namespace safemodel
