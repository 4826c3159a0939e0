// Keras HDF5 models (.h5): legacy full models (Keras 1.x, 2.x, tf.keras and
// Keras 3's legacy writer), legacy weights-only files (save_weights), and
// Keras 3 weight stores (model.weights.h5). Layouts: a full model has the
// root attributes model_config (JSON), keras_version and backend, and its
// weights under model_weights/<layer>/ with weight_names attributes; a
// weights-only file has the layer groups at the root; a Keras 3 store has
// layers/<path>/vars/<i> datasets.
//
// The file is opened from the worker's read-only map of the input through
// an in-memory driver (h5_memory_driver.h) and walked strictly (h5_file.h):
// soft, external and user-defined links, virtual datasets, external raw
// storage and filter plugins are refused wherever they are.
//
// Output.
//   source_format  "keras_h5"
//   metadata       {"kind", "keras_version", "backend"} (those present)
//   tensors        one per weight Keras would load, named by Keras's own
//                  weight name (weight_names, e.g. "dense_1/kernel:0" or, in
//                  Keras 3 files, "sequential/dense/kernel"). A name that
//                  occurs again gets "#2", "#3", ... appended, in file order.
//                  Kept optimizer tensors are "optimizer_weights/<name>".
//                  Keras 3 weight stores use the dataset path
//                  ("layers/dense/vars/0").
//   architecture   {"schema": "safemodel.keras/1",
//                   "kind": "full_model" | "weights_only" | "keras3_weights",
//                   "model": <layer> (full models whose config is kept),
//                   "weight_groups": [{"layer": name, "weights": [tensor...]}]
//                       (the file's layer groups in layer_names order;
//                        Keras 3 stores: {"path", "name", "weights"}),
//                   "model_weights": [tensor...] (weights of the model itself),
//                   "optimizer_weights": [tensor...] (with keep_optimizer)}
//   <layer>        {"class_name": allow-listed Keras class,
//                   "name": string or null,
//                   "config": the layer's configuration as data, minus the
//                             member layers below,
//                   "inbound_nodes": [{"inputs": [{"layer", "node", "tensor"}],
//                                      "kwargs": {...}, ["args": [...]]}]
//                                      (members of Functional models),
//                   "weights": [tensor names in Keras's saved order],
//                   "layers": [<layer>...], "inputs": [ref], "outputs": [ref]
//                                      (Sequential / Functional / Model),
//                   "layer": <layer>, "backward_layer": <layer>
//                                      (TimeDistributed / Bidirectional; a
//                                      backward layer Keras derives from the
//                                      forward one has "derived": true)}
//
// Findings. Refused (exit 1): the HDF5 rules above (hdf5.*) and the
// configuration rules of keras_config.h (keras.*). Dropped: optimizer state
// (keras.optimizer, unless keep_optimizer), training_config
// (keras.training_config), datasets no layer refers to
// (keras.unreferenced_dataset). With weights_only, configuration refusals
// become dropped findings and the architecture's "model" is left out
// (keras.architecture); HDF5 refusals stay refusals.
//
// Worst case: O(o + n·d) for o HDF5 objects, n configuration nodes (at most
// 1 M, json_value.h) and d <= 64 levels of nested models (weight lists are
// gathered up each level), plus libhdf5's own work on the file, which this
// code cannot bound: a crafted file can make libhdf5 loop, and the worker's
// time limit stops it (README, "Known limit").
//
// Trust: the file is untrusted; libhdf5 parses it in the sandboxed worker,
// and every structure it reports is checked again here before use.
#ifndef SAFEMODEL_LOADER_KERAS_H5_KERAS_H5_H_
#define SAFEMODEL_LOADER_KERAS_H5_KERAS_H5_H_

#include <memory>

#include "loader/parser.h"

namespace safemodel::loader {

// Puts libhdf5 into its safe state and initialises it; called before
// lockdown. Clears libhdf5's environment variables (plugin paths, link and
// external-file prefixes, drivers), turns off error printing and plugin
// loading, and registers the in-memory driver and safemodel's LZF decoder
// (h5py's filter 32000). Reached through ../hdf5_seam.h.
Status PrepareHdf5();

std::unique_ptr<Parser> NewKerasH5Parser();

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_KERAS_H5_KERAS_H5_H_
