// File: safemodel/inspect.h
//
// What `safe-convert inspect` prints about a .safemodel, for a person or a
// program: a readable tree of the architecture (one line per layer: name,
// class, key configuration, then its weights with dtype and shape), the
// tensors in source order with human sizes, a total and the count per dtype;
// or all of it as one JSON object with a schema_version.
//
// Source order: a .safemodel stores tensors sorted bytewise by name (its
// canonical order). Format 1.1 records the source's order; for a 1.0 file it
// is recovered from the architecture where it names each layer's weights
// (Keras: layer order), the other tensors following in natural order
// ("layers.2" before "layers.10").
#ifndef SAFEMODEL_INSPECT_H_
#define SAFEMODEL_INSPECT_H_

#include <string>
#include <vector>

#include "safemodel/export.h"
#include "safemodel/reader.h"

namespace safemodel {

// The "schema_version" of InspectJson: raised when a field changes meaning
// or goes away (new fields may appear without it).
inline constexpr int kInspectSchemaVersion = 1;

struct InspectOptions {
  bool tensors = false;       // only the tensors (with `architecture`: both)
  bool architecture = false;  // only the architecture
  bool sha256 = false;        // JSON: also hash every tensor's stored bytes (reads them all)
};

// The text view: provenance and findings, architecture tree, tensors. Every
// string that came from the file is escaped (safemodel/display.h).
SAFEMODEL_EXPORT std::string InspectText(const Model& model, const InspectOptions& options = {});

// One JSON object: schema_version, format version, provenance, metadata,
// architecture, digest algorithm, and per tensor (source order) name, dtype,
// shape, offset, nbytes, the stored digest or alias_of, and with `sha256`
// the SHA-256 of its stored bytes computed now; totals and dtype counts.
SAFEMODEL_EXPORT std::string InspectJson(const Model& model, const InspectOptions& options = {});

// The tensors in source order (see above).
SAFEMODEL_EXPORT std::vector<const TensorInfo*> SourceOrder(const Model& model);

// Natural order: runs of digits compare as numbers ("a.2" < "a.10"), the
// rest bytewise; equal-looking names ("a.01", "a.1") fall back to bytewise.
SAFEMODEL_EXPORT bool NaturalLess(const std::string& a, const std::string& b);

}  // namespace safemodel

#endif  // SAFEMODEL_INSPECT_H_
