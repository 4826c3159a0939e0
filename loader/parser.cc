#include "loader/parser.h"

namespace safemodel::loader {

void ParseContext::Refuse(std::string rule, std::string location, std::string message,
                          std::vector<std::string> references) {
  ++refusals_;
  findings_.push_back({Finding::Severity::kRefused, std::move(rule), std::move(location),
                       std::move(message), std::move(references)});
}

void ParseContext::Drop(std::string rule, std::string location, std::string message) {
  findings_.push_back({Finding::Severity::kDropped, std::move(rule), std::move(location),
                       std::move(message), {}});
}

void ParseContext::Note(std::string rule, std::string location, std::string message) {
  findings_.push_back({Finding::Severity::kNote, std::move(rule), std::move(location),
                       std::move(message), {}});
}

Status ParseContext::RefusedStatus() const {
  for (const Finding& f : findings_) {
    if (f.severity != Finding::Severity::kRefused) continue;
    std::string msg = f.message + " [" + f.rule + " at " + f.location + "]";
    if (refusals_ > 1) msg += " and " + std::to_string(refusals_ - 1) + " more finding(s)";
    return Status::Refused(msg);
  }
  return Status::Internal("RefusedStatus() without a refusal");
}

}  // namespace safemodel::loader
