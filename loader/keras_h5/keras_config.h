// A Keras model configuration (the `model_config` JSON of an .h5 file) into
// safemodel's data-only architecture tree, refusing everything that is code
// or names code.
//
// Refused (one finding per occurrence, naming the layer path and the rule):
//   keras.lambda              Lambda layers and __lambda__ objects, in every
//                             encoding (Keras 1 raw marshal, Keras 2 base64,
//                             Keras 3 dict), anywhere: top level, nested
//                             models, wrappers, other layers' arguments. The
//                             marshal data is decoded as data and the names it
//                             uses are listed in the finding's references.
//   keras.function_reference  {"class_name": "function"} objects and
//                             function_type "function": Python callables
//                             looked up by name (CVE-2025-1550 gadgets).
//   keras.class_not_allowed   layers or nested objects outside the allow-list
//                             (custom and subclassed classes).
//   keras.subclassed_model    a Model without a layer graph.
//   keras.module, keras.registered_name
//                             a `module` outside Keras, a registered custom name.
//   keras.tfoplambda          TFOpLambda outside a closed set of pure ops.
//   keras.torch_module_wrapper, keras.tfsm_layer, keras.jax_layer,
//   keras.tf_op_layer         layers that load pickles, SavedModels or callables.
//   keras.vocabulary_path     lookup layers whose vocabulary is a file or URL.
//   keras.activation          an activation name that is not a Keras built-in.
//
// The architecture schema ("safemodel.keras/1") is documented in
// keras_h5.h; in short every layer becomes
//   {"class_name", "name", "config", ["inbound_nodes"], ["weights"],
//    ["layers", "inputs", "outputs"] (models), ["layer", "backward_layer"]
//    (wrappers)}
// with weights referenced by tensor name.
//
// Worst case: O(n·d) for n configuration nodes and d <= 64 levels of nested
// models; name lookups use keyed hash sets.
//
// Trust: the configuration is untrusted. It is walked with explicit
// worklists (no recursion on its structure).
#ifndef SAFEMODEL_LOADER_KERAS_H5_KERAS_CONFIG_H_
#define SAFEMODEL_LOADER_KERAS_H5_KERAS_CONFIG_H_

#include <string>
#include <vector>

#include "safemodel/finding.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader::keras {

// One layer group of the weights in the file, in the file's layer order
// (layer_names), with the tensors named by its weight_names, in order.
struct WeightGroup {
  std::string layer;
  std::vector<std::string> tensors;
};

struct ConfigResult {
  Value model;                    // the converted model; null if refused
  std::vector<Finding> refusals;  // why the architecture cannot be kept
  std::vector<Finding> notes;
};

// Converts a parsed `model_config`. `groups` is the file's weight layout, or
// null when the file has no weights (then no weights are assigned);
// `model_weights` are weights owned by the model itself
// (top_level_model_weights). Weights are assigned by position as Keras
// loads them: the file's i-th layer group to the model's i-th layer (the
// names must agree), and a nested model's flattened list (all trainable
// weights of its sublayers, then all non-trainable ones) back onto its
// sublayers. Malformed for a configuration that is not a Keras model or that
// disagrees with the weights.
Result<ConfigResult> ConvertModelConfig(const Value& model_config,
                                        const std::vector<WeightGroup>* groups,
                                        const std::vector<std::string>& model_weights);

}  // namespace safemodel::loader::keras

#endif  // SAFEMODEL_LOADER_KERAS_H5_KERAS_CONFIG_H_
