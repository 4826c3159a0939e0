// JSON renderings shared by reports and inspect (nlohmann, ordered keys).
#ifndef SAFEMODEL_PROTO_JSON_UTIL_H_
#define SAFEMODEL_PROTO_JSON_UTIL_H_

#include <nlohmann/json.hpp>

#include <vector>

#include "safemodel/finding.h"

namespace safemodel {

// [{"severity", "rule", "location", "message", "references"}, ...]
nlohmann::ordered_json FindingsToJson(const std::vector<Finding>& findings);

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_JSON_UTIL_H_
