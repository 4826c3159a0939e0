// What `safe-convert inspect` prints about a .safemodel.
#ifndef SAFEMODEL_CONVERTER_CLI_INSPECT_VIEW_H_
#define SAFEMODEL_CONVERTER_CLI_INSPECT_VIEW_H_

#include <string>

#include "safemodel/reader.h"

namespace safemodel::cli {

// The "schema_version" of `inspect --json`.
inline constexpr int kInspectSchemaVersion = 1;

struct InspectView {
  bool json = false;
  bool tensors = false;       // only the tensors (with --architecture: both)
  bool architecture = false;  // only the architecture
  bool sha256 = false;        // hash every tensor's stored bytes (reads them all)
};

std::string InspectViewText(const Model& model, const InspectView& view);
std::string InspectViewJson(const Model& model, const InspectView& view);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_INSPECT_VIEW_H_
