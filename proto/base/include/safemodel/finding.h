// File: safemodel/finding.h
//
// A finding is one thing a conversion noticed in its input: something refused
// (the input carries code or a reference to code or to another file),
// something dropped (not part of the output, on purpose), or a note.
// Findings name where they are and which rule produced them, so that a user
// can see exactly why a file was refused.
#ifndef SAFEMODEL_FINDING_H_
#define SAFEMODEL_FINDING_H_

#include <string>
#include <vector>

#include "safemodel/export.h"

namespace safemodel {

struct Finding {
  enum class Severity { kRefused, kDropped, kNote };
  Severity severity = Severity::kNote;
  std::string rule;      // stable identifier, e.g. "keras.lambda", "pickle.global"
  std::string location;  // e.g. "model_config/layers[3] (lambda_1)", "data.pkl byte 2"
  std::string message;   // one sentence for a human
  std::vector<std::string> references;  // names referred to, e.g. "posix.system"
};

// "refused" | "dropped" | "note"
SAFEMODEL_EXPORT const char* SeverityName(Finding::Severity severity);

}  // namespace safemodel

#endif  // SAFEMODEL_FINDING_H_
