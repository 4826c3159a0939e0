#include "safemodel/finding.h"

namespace safemodel {

const char* SeverityName(Finding::Severity severity) {
  switch (severity) {
    case Finding::Severity::kRefused: return "refused";
    case Finding::Severity::kDropped: return "dropped";
    case Finding::Severity::kNote: return "note";
  }
  return "note";
}

}  // namespace safemodel
