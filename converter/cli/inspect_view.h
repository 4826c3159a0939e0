// What `safe-convert inspect` prints about a .safemodel: a readable tree of
// the architecture (one line per layer: name, class, key configuration,
// then its weights with dtype and shape), the tensors in source order with
// human sizes, a total and the count per dtype; or all of it as one JSON
// object with a schema_version.
//
// Source order: a .safemodel stores tensors sorted bytewise by name (its
// canonical order), so the order of the source is recovered from the
// architecture where it names each layer's weights (Keras: layer order);
// the other tensors follow in natural order ("layers.2" before "layers.10").
#ifndef SAFEMODEL_CONVERTER_CLI_INSPECT_VIEW_H_
#define SAFEMODEL_CONVERTER_CLI_INSPECT_VIEW_H_

#include <string>
#include <vector>

#include "safemodel/reader.h"

namespace safemodel::cli {

// The "schema_version" of `inspect --json`: raised when a field changes
// meaning or goes away (new fields may appear without it).
inline constexpr int kInspectSchemaVersion = 1;

struct InspectView {
  bool json = false;
  bool tensors = false;       // only the tensors (with `architecture`: both)
  bool architecture = false;  // only the architecture
  bool sha256 = false;        // also hash every tensor's stored bytes (reads them all)
};

std::string InspectViewText(const Model& model, const InspectView& view);
std::string InspectViewJson(const Model& model, const InspectView& view);

// The tensors in source order (see above). Exposed for tests.
std::vector<const TensorInfo*> SourceOrder(const Model& model);

// Natural order: runs of digits compare as numbers ("a.2" < "a.10"), the
// rest bytewise; equal-looking names ("a.01", "a.1") fall back to bytewise.
bool NaturalLess(const std::string& a, const std::string& b);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_INSPECT_VIEW_H_
