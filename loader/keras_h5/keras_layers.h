// What safemodel knows about Keras classes: which layer classes it converts
// (an allow-list; everything else is refused), which auxiliary objects may
// appear inside a layer's configuration (initializers, regularizers,
// constraints, dtype policies), which activation and tf-op names are plain
// data, and the weights each layer class owns, in Keras's saved order.
//
// The tables cover Keras 1.x, Keras 2.x / tf.keras and Keras 3 spellings.
// Weights are listed in the order of a layer's weight_names in an .h5 file
// (the same order as a .keras file's vars/0..n), matched by position: the
// names differ between versions (DepthwiseConv2D's depthwise_kernel in
// Keras 2 is kernel in Keras 3).
//
// Pure lookups over constant tables: O(1) or O(table) per call; no input is
// read here.
#ifndef SAFEMODEL_LOADER_KERAS_H5_KERAS_LAYERS_H_
#define SAFEMODEL_LOADER_KERAS_H5_KERAS_LAYERS_H_

#include <optional>
#include <string_view>
#include <vector>

#include "safemodel/value.h"

namespace safemodel::loader::keras {

enum class LayerKind {
  kNotAllowed,  // refused
  kLeaf,        // an ordinary layer
  kModel,       // Sequential / Functional / Model: has member layers
  kWrapper,     // TimeDistributed / Bidirectional: wraps config.layer
};

// How the class `class_name` is treated when it appears as a layer.
LayerKind ClassifyLayer(std::string_view class_name);

// Auxiliary objects that may appear inside a layer configuration as
// {"class_name": ..., "config": ...}: initializers, regularizers,
// constraints, dtype policies, and Keras 3's tensor and numpy literals.
bool IsAllowedAuxiliaryClass(std::string_view class_name);

// Built-in activation names (keras.activations); any other name would be
// looked up among the user's custom Python objects.
bool IsBuiltinActivation(std::string_view name);

// tf-keras TFOpLambda functions accepted as plain tensor ops (pure, no I/O).
bool IsAllowedTfOp(std::string_view function);

// True if `module` names a Keras module ("keras", "keras.*", "tf_keras.*").
bool IsKerasModule(std::string_view module);

// Keras 3 quantized dtype policies (QuantizedDTypePolicy, Int4, Float8,
// GPTQ, AWQ, ...), as a class name or as a policy name ("int8_from_float32").
bool IsQuantizedPolicy(std::string_view class_name);
bool IsQuantizedPolicyName(std::string_view name);

// Plain numeric dtype names ("float32", "int64", "bool", "bfloat16", ...):
// the dtypes of __numpy__ / __tensor__ literals that are data.
bool IsNumericDtypeName(std::string_view name);

// What a compile_config (Keras 3) or training_config (tf.keras) may name:
// Keras's built-in optimizers, learning-rate schedules, loss and metric
// classes and functions. Anything else needs the user's code at load time.
bool IsBuiltinCompileClass(std::string_view class_name);
bool IsBuiltinLossOrMetricName(std::string_view name);

// The weights a leaf layer of this class owns, in saved order, as one
// `trainable` flag per weight (false: non-trainable, e.g. moving statistics).
// nullopt when the count cannot be derived from the configuration.
std::optional<std::vector<bool>> LeafWeightSpec(std::string_view class_name, const Value& config);

}  // namespace safemodel::loader::keras

#endif  // SAFEMODEL_LOADER_KERAS_H5_KERAS_LAYERS_H_
