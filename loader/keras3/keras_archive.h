// Keras 3 `.keras` archives (what model.save() writes since Keras 3 and
// tf.keras 2.13), and Keras sharded weight stores given as files.
//
// The archive passes the strict zip reader of ../containers (names, duplicates,
// symlinks, encryption, sizes, CRCs) before this parser sees it. Members:
//   metadata.json     {"keras_version", "date_saved"}: picks the writer's
//                     naming rules (weight_walk.h); absent: Keras 3's
//   config.json       the model (Keras 3 object envelope or tf.keras's),
//                     converted by ../keras_h5/keras_config.h into the
//                     architecture tree with its allow-list and code rules;
//                     compile_config is scanned (compile_config.h), dropped
//   model.weights.h5 | model.weights.npz | model.weights.json + shards
//                     exactly one weight store (weight_store.h)
//   assets/...        reported (keras.assets), never extracted or converted
// Any other member is scanned for pickles (exit 1 if one names code) and
// otherwise makes the archive unsupported (keras.member): Keras extracts
// every member of an archive with more than three.
//
// Output.
//   source_format  "keras_v3"
//   tensors        every weight a layer of the config loads, named by its
//                  stored path ("layers/dense/vars/0"); kept optimizer
//                  variables ("optimizer/vars/3") with keep_optimizer
//   architecture   {"schema": "safemodel.keras/1", "kind": "full_model",
//                   "model": <layer> (keras_h5.h's schema, each layer's
//                   "weights" the tensors it loads),
//                   "weight_groups": [{"layer": layer path, "path": store
//                   path, "weights": [...]}],
//                   ["optimizer_weights": [...]]}
//                  with weights_only (or no usable architecture):
//                  {"schema", "kind": "keras3_weights", "weight_groups":
//                   [{"path", "weights"}]}
//   metadata       {"kind": "keras_archive", "keras_version", "weights_format"}
// Findings. Refused: keras_config.h's rules (location "config.json layer
// '...'"), compile_config.h's, hdf5.* in the store, pickle.global in npz
// stores and unknown members. Dropped: keras.optimizer, keras.metrics,
// keras.compile_config, keras.assets, keras.unreferenced_dataset,
// keras.architecture (weights_only). Notes: keras.metadata (no
// metadata.json), keras.sharded_in_archive (Keras itself cannot load it),
// hdf5.byte_order, hdf5.bfloat16_layout. Malformed or unsupported, each
// naming its rule: keras.config, keras.weight_store, keras.weights,
// keras.shard_name, keras.member, keras.version, keras.quantized and
// keras.numpy_dtype (a quantized layer or a non-numeric __numpy__ literal
// is no code, but nothing safemodel represents: exit 3).
//
// Worst case: the zip reader's, plus the config conversion's O(n·d), plus
// the store's (weight_store.h), plus O(m) for m bytes of unknown members
// scanned by the pickle machine.
//
// Trust: the archive is untrusted; every member is read through the strict
// zip reader's bounds and caps, and nothing is extracted to disk.
#ifndef SAFEMODEL_LOADER_KERAS3_KERAS_ARCHIVE_H_
#define SAFEMODEL_LOADER_KERAS3_KERAS_ARCHIVE_H_

#include <memory>

#include "loader/containers/zip_archive.h"
#include "loader/keras3/weight_store.h"
#include "loader/parser.h"

namespace safemodel::loader {

// metadata.json is 60-odd bytes; a Keras version string and a date.
inline constexpr uint64_t kMaxKerasMetadataBytes = 1 << 20;

// True if the archive's member names are a Keras archive's: a top-level
// config.json, metadata.json or model.weights.{h5,npz,json}.
bool LooksLikeKerasArchive(const ZipArchive& zip);

// Parses an opened (and validated) zip archive as a .keras file. `image`
// is the archive's bytes. `open_h5` opens HDF5 weight stores (the HDF5
// seam's, ../hdf5_seam.h; weight_store.h, H5StoreOpener).
Status ParseKerasArchive(ByteView image, std::shared_ptr<ZipArchive> zip,
                         keras3::H5StoreOpener open_h5, ParseContext& ctx, ParsedModel* out);

// A sharded store given as files: the *.weights.json and its shards.
// Weights only (the store holds no architecture); source_format
// "keras_sharded_weights", architecture kind "keras3_weights".
// `open_h5` opens the shards (as for ParseKerasArchive).
std::unique_ptr<MultiFileParser> NewShardedWeightsParser(keras3::H5StoreOpener open_h5);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_KERAS3_KERAS_ARCHIVE_H_
