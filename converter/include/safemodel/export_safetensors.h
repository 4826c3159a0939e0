// File: safemodel/export_safetensors.h
//
// `safe-convert export`: a .safemodel file written as a .safetensors file.
// The bytes come from safemodel/safetensors.h (WriteSafetensors: the model
// is verified first, a file that fails is not exported); this adds the
// output file rules of a conversion (README "Output files"): the output
// appears atomically or not at all, an existing OUT is replaced only with
// `force` and only if it is a regular file, OUT may not be the input, and a
// new file's mode follows the umask.
//
// Exported models are one file: a sharded export with an index is not
// written (yet).
#ifndef SAFEMODEL_EXPORT_SAFETENSORS_H_
#define SAFEMODEL_EXPORT_SAFETENSORS_H_

#include <cstdint>
#include <string>

#include "safemodel/status.h"

namespace safemodel {

struct ExportOptions {
  bool force = false;  // replace an existing regular file at OUT
  bool sync = true;    // fsync the output (and its directory) before naming it
};

struct ExportSummary {
  uint64_t tensors = 0;       // tensors written
  uint64_t aliases = 0;       // aliases recorded in __metadata__ only
  uint64_t output_bytes = 0;  // size of the file written
};

// Exports `model_path` to `out_path`. Errors: the reader's for an input that
// does not open or verify (kMalformed, kIoError, kInvalidArgument for a
// missing file), kUnsupported for a dtype safetensors cannot express,
// kInvalidArgument for the OUT rules, kIoError for write failures.
Result<ExportSummary> ExportSafetensorsFile(const std::string& model_path,
                                            const std::string& out_path,
                                            const ExportOptions& options = {});

}  // namespace safemodel

#endif  // SAFEMODEL_EXPORT_SAFETENSORS_H_
