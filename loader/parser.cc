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

Status ParseContext::Spend(uint64_t units, uint64_t reading, std::string_view where) {
  uint64_t limit = allowance_;
  if (!CheckedAdd(limit, reading, &limit)) limit = UINT64_MAX;
  if (!CheckedAdd(work_, units, &work_) || work_ > limit) {
    work_ = UINT64_MAX;
    return Status::LimitExceeded(std::string(where) + ": more than " + std::to_string(limit) +
                                 " units of work (hash-table operations, key comparisons, "
                                 "container copies) for the bytes read so far; the limit is " +
                                 std::to_string(kWorkBase) + " + " + std::to_string(kWorkPerByte) +
                                 " per byte");
  }
  return Status::Ok();
}

void ParseContext::AddBytesRead(uint64_t bytes) {
  uint64_t add;
  if (!CheckedMul(bytes, kWorkPerByte, &add) || !CheckedAdd(allowance_, add, &allowance_)) {
    allowance_ = UINT64_MAX;
  }
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
