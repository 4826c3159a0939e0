// TensorFlow SavedModel directories: the variables are converted, the graph
// never is.
//
// Input (files/model_files.h): saved_model.pb, keras_metadata.pb if present,
// variables/variables.index and its data files; the parent lists the rest of
// the directory (assets/, assets.extra/, fingerprint.pb, ...) by name only.
//
//   saved_model.pb     walked for its ops, tags, assets and Keras user
//                      metadata (saved_model_scan.h); dropped (tf.graph). Ops
//                      that touch files or call back into Python are findings
//                      (tf.file_op, dropped: the graph is never run); the
//                      checkpoint ops every SavedModel has are named in the
//                      tf.graph finding
//   keras_metadata.pb  (tf.keras 2.5-2.15), or the user metadata of the object
//                      graph (TF 2.2-2.4): the root's {"class_name", "config"}
//                      becomes the architecture through ../keras_h5's
//                      allow-list (keras.* refusals); every other Keras
//                      layer's metadata is checked for code the same way, and
//                      the root's training_config is scanned and dropped
//   variables/         the tensor bundle (../tf_bundle/bundle.h)
//
// Weights are assigned to layers through the bundle's object graph: the
// root's `layer-i` child is model.layers[i] (or, when a file has only
// `layer_with_weights-k` children, the k-th layer that has weights), and a
// layer's weights are the variables reachable from it, in the object graph's
// order. Nested models repeat this one level down.
//
// Output.
//   source_format  "tf_savedmodel"
//   tensors        bundle keys, as in checkpoint.h
//   architecture   with Keras metadata: {"schema": "safemodel.keras/1",
//                  "kind": "full_model", "model": <layer>, "weight_groups":
//                  [{"layer", "weights"}]}; without: checkpoint.h's
//                  "tf_weights" groups
//   metadata       {"kind": "tf_savedmodel", "tags", "tensorflow_version"}
// Findings. Refused: keras.* (metadata), tf.asset_path (an asset file name
// that leaves assets/: TensorFlow would read that file). Dropped: tf.graph,
// tf.file_op, tf.assets, keras.training_config, tf.unreferenced (variables no
// layer reaches), and checkpoint.h's. Malformed or unsupported:
// tf.saved_model (the walk; no variables), tf.keras_metadata, bundle.h's
// rules.
//
// Worst case: O(p) for saved_model.pb (p bytes), O(j·d) for the Keras JSON
// (keras_config.h), plus the bundle's.
//
// Trust: every file is untrusted; the graph is scanned for reporting only,
// never executed, and asset names are compared, never opened.
#ifndef SAFEMODEL_LOADER_TF_SAVEDMODEL_SAVED_MODEL_H_
#define SAFEMODEL_LOADER_TF_SAVEDMODEL_SAVED_MODEL_H_

#include <memory>

#include "loader/parser.h"

namespace safemodel::loader::tf {

std::unique_ptr<MultiFileParser> NewSavedModelParser();

}  // namespace safemodel::loader::tf

#endif  // SAFEMODEL_LOADER_TF_SAVEDMODEL_SAVED_MODEL_H_
