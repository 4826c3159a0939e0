// Which weights of a Keras 3 weight store belong to which layer: the walk
// the writer made over the model, repeated over the converted architecture
// tree (tests/fixtures/keras3_tf/LAYOUTS.md section 4.2), for the writer named in metadata.json.
//
//   Keras 3.x, tf.keras 2.15+  a model's members under `layers/<name>`
//   tf.keras 2.13, 2.14        under `_layer_checkpoint_dependencies/<name>`
// where <name> is snake_case(class) plus `_1`, `_2`, ... per class in
// model.layers order (a Functional model's InputLayer is a member, a
// Sequential's is not); tf.keras 2.13 counted each layer with weights twice
// (the counter skips a number after it). Inside a layer: RNN layers keep
// their weights in `cell`, Bidirectional in `forward_layer` and
// `backward_layer`, TimeDistributed in `layer`, MultiHeadAttention in
// `_query_dense`, `_key_dense`, `_value_dense`, `_output_dense`; nested
// models repeat the scheme under their path. Keras 3 reading a tf.keras
// 2.14 file finds `_layer_checkpoint_dependencies` for `layers` (its
// "2.13 compatibility" lookup), which is applied too.
//
// Each layer's group must hold exactly the keys "0" .. "n-1" (datasets),
// n being the count its class and config give (keras_layers.h), as Keras's
// load_own_variables requires; otherwise the store is malformed
// (keras.weights), as Keras's load fails. The layer's "weights" in the tree
// become the tensor names, in key order.
//
// Worst case: O(l + g log g) for l layers and g groups; the tree is walked
// with an explicit worklist.
//
// Trust: the architecture tree was converted from an untrusted config and
// the store's groups are untrusted; a layer's weight count comes from its
// class and config through keras_layers.h, never from the store.
#ifndef SAFEMODEL_LOADER_KERAS3_WEIGHT_WALK_H_
#define SAFEMODEL_LOADER_KERAS3_WEIGHT_WALK_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loader/keras3/weight_store.h"
#include "safemodel/status.h"
#include "safemodel/value.h"

namespace safemodel::loader::keras3 {

enum class Writer {
  kKeras3,      // Keras 3.x (and files without metadata.json: what Keras 3 loads)
  kTfKeras213,  // tf.keras 2.13: the counter counts layers with weights twice
  kTfKeras214,  // tf.keras 2.14
  kTfKeras215,  // tf.keras 2.15 and later 2.x
};

// The writer named by metadata.json's keras_version; Unsupported for
// versions that did not write this format (before 2.13).
Result<Writer> WriterFromVersion(std::string_view keras_version);

// keras.src.utils.naming.to_snake_case.
std::string SnakeCase(std::string_view class_name);

// The variable count Keras gives a leaf layer of this class and config, or
// nullopt when the config does not pin it down.
std::optional<size_t> ExpectedWeightCount(std::string_view class_name, const Value& config);

// Whether a layer of the converted tree (a leaf, wrapper or model) owns
// variables, as far as its config says.
bool LayerHasWeights(const Value& node);

// A group a layer took its weights from.
struct Assigned {
  std::string layer;  // layer path (names joined by '/')
  const StoreGroup* group;
  std::vector<const StoreVar*> vars;  // in key order
};

// Attaches weights to every layer of `model` (the converted tree, changed
// in place: "weights" lists tensor names) and returns what was taken, in
// tree order. Malformed (keras.weights) where Keras's own load fails.
Result<std::vector<Assigned>> AssignStoreWeights(Value* model, const WeightStore& store,
                                                 Writer writer);

}  // namespace safemodel::loader::keras3

#endif  // SAFEMODEL_LOADER_KERAS3_WEIGHT_WALK_H_
