#include "converter/protocol/stream_limits.h"

#include <algorithm>

#include "proto/wire/wire.h"
#include "safemodel/limits.h"

namespace safemodel {

namespace {

uint64_t Scaled(uint64_t base, uint64_t input_size, uint64_t per, uint64_t cap) {
  const uint64_t extra = input_size / per;
  return std::min(cap, base + std::min(extra, cap));
}

}  // namespace

StreamLimits StreamLimitsFor(uint64_t input_size) {
  StreamLimits l;
  l.tensors = Scaled(kBaseTensorCount, input_size, kMinInputBytesPerTensor, kMaxTensorCount);
  l.header_objects = Scaled(kBaseObjectCount, input_size, kMinInputBytesPerObject,
                            wire::kMaxParsedObjects);
  l.header_bytes = std::min(kMaxHeaderBytes,
                            kBaseHeaderBytes + std::min(input_size, 2 * kMaxHeaderBytes) /
                                                   kInputBytesPerHeaderByte);
  l.findings = Scaled(kBaseFindingCount, input_size, kMinInputBytesPerFinding, wire::kMaxFindings);
  l.findings_bytes = kMaxFindingsTotalBytes;
  return l;
}

uint64_t FindingTextBytes(const Finding& f) {
  uint64_t n = f.rule.size() + f.location.size() + f.message.size();
  for (const std::string& r : f.references) n += r.size();
  return n;
}

uint64_t FindingTextBytes(const v1::Finding& f) {
  uint64_t n = f.rule().size() + f.location().size() + f.message().size();
  for (const std::string& r : f.references()) n += r.size();
  return n;
}

Status CheckFindingsBudget(const google::protobuf::RepeatedPtrField<v1::Finding>& findings,
                           const StreamLimits& limits) {
  if (static_cast<uint64_t>(findings.size()) > limits.findings) {
    return Status::LimitExceeded(std::to_string(findings.size()) +
                                 " findings exceed the limit of " + std::to_string(limits.findings) +
                                 " for an input of this size");
  }
  uint64_t total = 0;
  for (const v1::Finding& f : findings) total += FindingTextBytes(f);
  if (total > limits.findings_bytes) {
    return Status::LimitExceeded("the findings hold " + std::to_string(total) +
                                 " bytes of text, over the limit of " +
                                 std::to_string(limits.findings_bytes));
  }
  return Status::Ok();
}

void TrimFindings(std::vector<Finding>* findings, const StreamLimits& limits) {
  uint64_t all = 0;
  for (const Finding& f : *findings) all += FindingTextBytes(f);
  if (findings->size() <= limits.findings && all <= limits.findings_bytes) return;
  // Room for the note itself.
  constexpr uint64_t kNoteBytes = 256;
  const uint64_t budget = limits.findings_bytes > kNoteBytes ? limits.findings_bytes - kNoteBytes : 0;
  const uint64_t max_count = limits.findings > 0 ? limits.findings - 1 : 0;
  size_t keep = 0;
  uint64_t total = 0;
  while (keep < findings->size() && keep < max_count) {
    uint64_t n = FindingTextBytes((*findings)[keep]);
    if (total + n > budget) break;
    total += n;
    ++keep;
  }
  if (keep == findings->size()) return;
  const size_t dropped = findings->size() - keep;
  findings->resize(keep);
  if (limits.findings == 0) return;
  Finding note;
  note.severity = Finding::Severity::kNote;
  note.rule = "worker.findings_truncated";
  note.location = "(report)";
  note.message = std::to_string(dropped) + " further finding(s) are not listed: the report keeps at most " +
                 std::to_string(limits.findings) + " findings and " +
                 std::to_string(limits.findings_bytes) + " bytes of finding text";
  findings->push_back(std::move(note));
}

}  // namespace safemodel
