// Tensor references inside a Keras model configuration's call nodes
// (inbound_nodes, input_layers, output_layers), turned into safemodel's
// {"layer", "node", "tensor"} maps. Used by keras_config.cc.
//
// Worst case: O(n) for a value of n nodes (an iterative copy).
//
// Trust: the configuration is untrusted.
#ifndef SAFEMODEL_LOADER_KERAS_H5_KERAS_CALL_ARGS_H_
#define SAFEMODEL_LOADER_KERAS_H5_KERAS_CALL_ARGS_H_

#include <string>
#include <string_view>
#include <vector>

#include "proto/base/keyed_hash.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader::keras {

// tf.keras's marker for a constant call argument in place of a layer name.
inline constexpr std::string_view kKerasConstantValue = "_CONSTANT_VALUE";

// How a tensor passed inside call arguments is written.
enum class RefForm {
  kKeras3,  // {"class_name": "__keras_tensor__", "config": {"keras_history": [...]}}
  kKeras2,  // [layer, node, tensor] or [layer, node, tensor, kwargs]: tf.keras
            // treats every 3- or 4-item list that starts with a string as one
};

// A graph reference [name, node, tensor] (or Keras 3 keras_history) to one
// of `names`, as {"layer", "node", "tensor"}. Malformed otherwise, naming
// `where` (a JSON path).
Result<Value> GraphRef(const Value& ref, const KeyedStringSet& names, const std::string& where);

// Copies an args/kwargs value, turning tensor references into
// {"layer", "node", "tensor"} maps, collected in order into *refs.
Result<Value> ConvertCallValue(const Value& v, const KeyedStringSet& names,
                               const std::string& where, RefForm form, std::vector<Value>* refs);

}  // namespace safemodel::loader::keras

#endif  // SAFEMODEL_LOADER_KERAS_H5_KERAS_CALL_ARGS_H_
