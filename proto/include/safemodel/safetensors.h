// File: safemodel/safetensors.h
//
// Writing a .safemodel's tensors as a safetensors file (huggingface's
// format: an 8-byte little-endian header length, a JSON header, the byte
// buffer), for engines that read safetensors. Part of libsafemodel.so: it
// reads a Model and needs no sandbox, because the Model is verified first.
//
// The file written:
//  * the header starts with '{', is valid UTF-8 JSON with unique keys, and is
//    padded with spaces to a multiple of 8 bytes (as the reference writer
//    does), so that every tensor's data is aligned to its element size;
//  * `__metadata__` comes first: string to string, keys in bytewise order
//    (SafetensorsMetadata below says what it holds);
//  * tensors follow in data order: by element size, largest first, then by
//    name in bytewise order (the reference writer's order); data_offsets are
//    contiguous from 0 and cover the buffer exactly;
//  * an alias (tied weight, TensorInfo::alias_of) is not written: its name
//    maps to the name of the tensor it shares in `__metadata__`, as
//    safetensors.torch.save_model records the names it removes;
//  * every dtype maps (proto/base/safetensors_format.h) except c128, which
//    safetensors cannot express: kUnsupported naming the tensor.
// The same Model gives byte-identical output.
#ifndef SAFEMODEL_SAFETENSORS_H_
#define SAFEMODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "safemodel/export.h"
#include "safemodel/reader.h"
#include "safemodel/status.h"

namespace safemodel {

// The `__metadata__` of an export of `model`, as a sorted map:
//  * the string entries of the source's own `__metadata__` (a model
//    converted from safetensors keeps them under the metadata key
//    "safetensors_metadata");
//  * "format": "pt" when the source was a PyTorch checkpoint ("pytorch",
//    "pytorch_legacy") and the source did not say otherwise (transformers
//    requires a format of pt, tf, flax or mlx; other sources name no
//    framework, so none is claimed);
//  * for each alias, alias name -> target name, unless a source entry has
//    that key;
//  * provenance: "safemodel.source_format", "safemodel.input_sha256",
//    "safemodel.converter_version", "safemodel.digest_algorithm".
SAFEMODEL_EXPORT std::map<std::string, std::string> SafetensorsMetadata(const Model& model);

struct SafetensorsPlan {
  std::string header;                    // length prefix + padded JSON
  std::vector<const TensorInfo*> order;  // the tensors written, in data order
  uint64_t buffer_bytes = 0;             // bytes after the header
  uint64_t aliases = 0;                  // tensors recorded as aliases only
};

// The header and order of an export, without reading tensor bytes.
// kUnsupported for a c128 tensor; kLimitExceeded for a header over the
// reference reader's cap of 100,000,000 bytes (no reader would open it).
SAFEMODEL_EXPORT Result<SafetensorsPlan> PlanSafetensors(const Model& model);

// Receives the file's bytes in order; a non-OK status stops the export.
using SafetensorsSink = std::function<Status(std::span<const std::byte>)>;

// Verifies `model` (Model::Verify: every digest and all padding; a file that
// fails is not exported) and writes the whole safetensors file to `sink`.
SAFEMODEL_EXPORT Status WriteSafetensors(const Model& model, const SafetensorsSink& sink);

}  // namespace safemodel

#endif  // SAFEMODEL_SAFETENSORS_H_
