#include "converter/cli/inspect_view.h"

#include "safemodel/inspect.h"

namespace safemodel::cli {

std::string InspectViewText(const Model& model, const InspectView&) { return InspectText(model); }
std::string InspectViewJson(const Model& model, const InspectView&) { return InspectJson(model); }

}  // namespace safemodel::cli
