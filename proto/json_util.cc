#include "proto/json_util.h"

namespace safemodel {

nlohmann::ordered_json FindingsToJson(const std::vector<Finding>& findings) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const Finding& f : findings) {
    out.push_back({{"severity", SeverityName(f.severity)},
                   {"rule", f.rule},
                   {"location", f.location},
                   {"message", f.message},
                   {"references", f.references}});
  }
  return out;
}

}  // namespace safemodel
