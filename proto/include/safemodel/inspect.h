// File: safemodel/inspect.h
//
// Human- and machine-readable descriptions of a .safemodel (what
// `safe-convert inspect` prints).
#ifndef SAFEMODEL_INSPECT_H_
#define SAFEMODEL_INSPECT_H_

#include <string>

#include "safemodel/export.h"
#include "safemodel/reader.h"

namespace safemodel {

// A text summary: provenance, findings, architecture, then one line per tensor.
SAFEMODEL_EXPORT std::string InspectText(const Model& model);

// One JSON object: format version, provenance, digest algorithm,
// architecture, metadata, and per tensor name, dtype, shape, offset, nbytes,
// alias_of, the stored digest, and the SHA-256 of its stored bytes computed
// now (reads every tensor).
SAFEMODEL_EXPORT std::string InspectJson(const Model& model);

}  // namespace safemodel

#endif  // SAFEMODEL_INSPECT_H_
