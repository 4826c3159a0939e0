// The order of a report's findings: worst first, so that the headline (the
// status message of a refusal) and the first line a person reads name the
// most serious thing found, not the first one by offset.
#ifndef SAFEMODEL_CONVERTER_FINDING_ORDER_H_
#define SAFEMODEL_CONVERTER_FINDING_ORDER_H_

#include <vector>

#include "safemodel/finding.h"
#include "safemodel/status.h"

namespace safemodel {

// Sorts stably: refusals, then dropped items, then notes. Among refusals,
// one whose references all lie in a model library's own namespaces
// (torch, numpy, collections, joblib: an unknown constructor of the format,
// e.g. a class from another torch version) comes after the others (os.system,
// builtins.eval, a Keras Lambda's code). This is an order for display, not
// a decision: every refusal refuses the file alike.
void OrderFindings(std::vector<Finding>* findings);

// For a refusal: the status re-headlined with the worst refusal in
// `findings` (already ordered), in the form the loader uses
// ("MESSAGE [RULE at LOCATION] and N more refusal(s)"). Other statuses are
// returned unchanged.
Status HeadlineWorst(const Status& status, const std::vector<Finding>& findings);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_FINDING_ORDER_H_
