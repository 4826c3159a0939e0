// model_config -> architecture: every encoding of every refusal, the graph in
// both inbound_nodes forms, and weights mapped by position as Keras does.
#include "loader/keras_h5/keras_config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loader/keras_h5/json_value.h"

namespace safemodel::loader::keras {
namespace {

Result<ConfigResult> Convert(const std::string& json,
                             const std::vector<WeightGroup>* groups = nullptr,
                             const std::vector<std::string>& model_weights = {}) {
  auto config = ParseJson(json, "model_config");
  if (!config.ok()) return config.status();
  return ConvertModelConfig(*config, groups, model_weights);
}

std::vector<std::string> RefusalRules(const ConfigResult& r) {
  std::vector<std::string> out;
  for (const Finding& f : r.refusals) out.push_back(f.rule);
  return out;
}

const Value* Member(const Value& model, const std::string& name) {
  for (const Value& l : model.Find("layers")->list()) {
    if (l.Find("name")->is_string() && l.Find("name")->string_value() == name) return &l;
  }
  return nullptr;
}

std::vector<std::string> Weights(const Value* layer) {
  std::vector<std::string> out;
  const Value* w = layer == nullptr ? nullptr : layer->Find("weights");
  if (w != nullptr) {
    for (const Value& s : w->list()) out.push_back(s.string_value());
  }
  return out;
}

// A Keras 2 base64 marshal code object (Python 3.8: exploit -> os.system).
constexpr char kCode[] =
    "4wEAAAAAAAAAAAAAAAIAAAADAAAAQwAAAHMWAAAAZAFkAGwAfQF8AaABZAKhAQEAfABTACkDTukA"
    "AAAA+i1jcCAvYXBwL2ZsYWcudHh0IC9hcHAvYmFja2VuZC9tb2RlbHMvZmxhZy50eHQpAtoCb3Pa"
    "BnN5c3RlbSkC2gF4cgMAAACpAHIGAAAA+h48aXB5dGhvbi1pbnB1dC0yLTVlNzI0YTE0MjIyNz7a"
    "B2V4cGxvaXQDAAAAcwYAAAAIAQoBBAE=";

std::string Lambda(const std::string& name) {
  return R"({"class_name": "Lambda", "config": {"name": ")" + name + R"(", "function": [")" +
         kCode + R"(", null, null], "function_type": "lambda", "module": "__main__"}})";
}

TEST(KerasConfig, Keras1SequentialListForm) {
  auto r = Convert(R"({"class_name": "Sequential", "config": [
      {"class_name": "Convolution2D", "config": {"name": "c1", "nb_filter": 4, "bias": true,
                                                 "activation": "relu"}},
      {"class_name": "Flatten", "config": {"name": "f"}},
      {"class_name": "Dense", "config": {"name": "d", "output_dim": 2}}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->refusals.empty());
  const Value& model = r->model;
  EXPECT_EQ(model.Find("class_name")->string_value(), "Sequential");
  EXPECT_TRUE(model.Find("name")->is_null());
  ASSERT_EQ(model.Find("layers")->list().size(), 3u);
  EXPECT_EQ(Member(model, "c1")->Find("config")->Find("nb_filter")->int_value(), 4);
  EXPECT_EQ(Member(model, "c1")->Find("inbound_nodes"), nullptr);
}

TEST(KerasConfig, LambdaRefusedInEveryPlaceAndEncoding) {
  // Top level (Keras 2 list encoding), with the names its bytecode uses.
  auto top = Convert(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [)" +
                     Lambda("l") + "]}}");
  ASSERT_TRUE(top.ok());
  ASSERT_EQ(RefusalRules(*top), std::vector<std::string>{"keras.lambda"});
  EXPECT_EQ(top->refusals[0].location, "model_config layer 's/l'");
  EXPECT_EQ(top->refusals[0].references, (std::vector<std::string>{"os", "system"}));
  EXPECT_TRUE(top->model.is_null());

  // Inside a wrapper inside a nested model.
  auto nested = Convert(R"({"class_name": "Sequential", "config": {"name": "outer", "layers": [
      {"class_name": "Sequential", "config": {"name": "inner", "layers": [
        {"class_name": "TimeDistributed", "config": {"name": "td", "layer": )" +
                        Lambda("deep") + "}}]}}]}}");
  ASSERT_TRUE(nested.ok());
  ASSERT_EQ(RefusalRules(*nested), std::vector<std::string>{"keras.lambda"});
  EXPECT_EQ(nested->refusals[0].location, "model_config layer 'outer/inner/td/deep'");

  // Keras 3 __lambda__ dict, and a __lambda__ used as another layer's activation.
  auto k3 = Convert(std::string(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "Lambda", "config": {"name": "l3", "function": {"class_name": "__lambda__",
        "config": {"code": ")") +
                    kCode + R"(", "defaults": null, "closure": null}}}},
      {"class_name": "Dense", "config": {"name": "d", "units": 1, "activation": {"class_name": "__lambda__",
        "config": {"code": ")" +
                    kCode + R"("}}}}]}})");
  ASSERT_TRUE(k3.ok());
  EXPECT_EQ(RefusalRules(*k3), (std::vector<std::string>{"keras.lambda", "keras.lambda"}));
  EXPECT_EQ(k3->refusals[1].location, "model_config layer 's/d'");

  // function_type "function": a name, not bytecode (the old gadget form).
  auto named = Convert(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "Lambda", "config": {"name": "g", "function": "system", "function_type": "function",
                                          "module": "os"}}]}})");
  ASSERT_TRUE(named.ok());
  ASSERT_EQ(RefusalRules(*named), std::vector<std::string>{"keras.lambda"});
  EXPECT_EQ(named->refusals[0].references, std::vector<std::string>{"os.system"});

  // Keras 1 Merge with a lambda mode.
  auto merge = Convert(R"({"class_name": "Sequential", "config": [
      {"class_name": "Merge", "config": {"name": "m", "mode": [")" +
                       std::string(kCode) + R"(", null, null], "mode_type": "lambda"}}]})");
  ASSERT_TRUE(merge.ok());
  EXPECT_EQ(RefusalRules(*merge), std::vector<std::string>{"keras.lambda"});
}

TEST(KerasConfig, RefusesNamedFunctionsModulesAndCustomClasses) {
  auto r = Convert(R"({"class_name": "Functional", "config": {"name": "f", "layers": [
      {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
      {"class_name": "Dense", "name": "a", "inbound_nodes": [[["in", 0, 0, {}]]],
       "config": {"name": "a", "units": 1, "activation": {"module": "keras.utils", "class_name": "function",
                                                         "config": "get_file", "registered_name": "get_file"},
                  "kernel_initializer": {"module": "evil", "class_name": "Zeros", "config": {}}}},
      {"module": "keras.layers", "class_name": "Dense", "registered_name": "Custom>Dense", "name": "b",
       "inbound_nodes": [], "config": {"name": "b", "units": 1}},
      {"class_name": "MyLayer", "name": "c", "inbound_nodes": [], "config": {"name": "c"}},
      {"class_name": "TFSMLayer", "name": "d", "inbound_nodes": [], "config": {"name": "d", "filepath": "/x"}},
      {"class_name": "TFOpLambda", "name": "e", "inbound_nodes": [], "config": {"name": "e", "function": "io.read_file"}},
      {"class_name": "IntegerLookup", "name": "g", "inbound_nodes": [], "config": {"name": "g", "vocabulary": "gs://v"}},
      {"class_name": "Dense", "name": "h", "inbound_nodes": [], "config": {"name": "h", "units": 1,
                                                                             "activation": "evil_fn"}},
      {"class_name": "Dense", "name": "i", "inbound_nodes": [], "config": {"name": "i", "units": 1,
        "bias_regularizer": {"class_name": "MyRegularizer", "config": {}}}}],
      "input_layers": [["in", 0, 0]], "output_layers": [["a", 0, 0]]}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(RefusalRules(*r),
            (std::vector<std::string>{
                "keras.function_reference", "keras.module", "keras.registered_name",
                "keras.class_not_allowed", "keras.tfsm_layer", "keras.tfoplambda",
                "keras.vocabulary_path", "keras.activation", "keras.class_not_allowed"}));
  EXPECT_EQ(r->refusals[0].references, std::vector<std::string>{"keras.utils.get_file"});
  EXPECT_EQ(r->refusals[3].location, "model_config layer 'f/c'");
}

TEST(KerasConfig, AcceptsBuiltinObjectsAndPureOps) {
  auto r = Convert(R"({"class_name": "Functional", "config": {"name": "f", "layers": [
      {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
      {"class_name": "Dense", "name": "a", "inbound_nodes": [[["in", 0, 0, {}]]], "config": {"name": "a",
        "units": 1, "activation": {"module": "keras.activations", "class_name": "function", "config": "relu",
                                   "registered_name": null},
        "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null},
        "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.0, "l2": NaN}}}},
      {"class_name": "TFOpLambda", "name": "tf.math.add", "inbound_nodes": [["a", 0, 0, {"y": ["in", 0, 0]}]],
       "config": {"name": "tf.math.add", "function": "math.add"}}],
      "input_layers": [["in", 0, 0]], "output_layers": ["tf.math.add", 0, 0]}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->refusals.empty()) << r->refusals[0].message;
  const Value* op = Member(r->model, "tf.math.add");
  ASSERT_NE(op, nullptr);
  const Value& node = op->Find("inbound_nodes")->list()[0];
  EXPECT_EQ(node.Find("inputs")->list()[0].Find("layer")->string_value(), "a");
  // A tensor passed by keyword (tf.keras writes it as [layer, node, tensor])
  // is a reference and an edge, like a positional one.
  EXPECT_EQ(node.Find("kwargs")->Find("y")->Find("layer")->string_value(), "in");
  ASSERT_EQ(node.Find("kwarg_inputs")->list().size(), 1u);
  EXPECT_EQ(node.Find("kwarg_inputs")->list()[0].Find("layer")->string_value(), "in");
  EXPECT_EQ(r->model.Find("outputs")->list()[0].Find("layer")->string_value(), "tf.math.add");
}

TEST(KerasConfig, SubclassedModelIsRefused) {
  auto r = Convert(R"({"class_name": "MaliciousModel", "config": {"trainable": true}})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(RefusalRules(*r), std::vector<std::string>{"keras.class_not_allowed"});
  EXPECT_EQ(r->refusals[0].location, "model_config layer '(model)'");
  auto model = Convert(R"({"class_name": "Model", "config": {"name": "m"}})");
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(RefusalRules(*model), std::vector<std::string>{"keras.subclassed_model"});
}

TEST(KerasConfig, Keras3GraphFromKerasTensors) {
  auto r =
      Convert(R"({"module": "keras", "class_name": "Functional", "config": {"name": "f", "layers": [
      {"class_name": "InputLayer", "name": "x", "config": {"name": "x"}, "inbound_nodes": []},
      {"class_name": "InputLayer", "name": "y", "config": {"name": "y"}, "inbound_nodes": []},
      {"class_name": "Concatenate", "name": "c", "config": {"name": "c", "axis": -1}, "inbound_nodes": [
        {"args": [[{"class_name": "__keras_tensor__", "config": {"shape": [null, 2], "keras_history": ["x", 0, 0]}},
                   {"class_name": "__keras_tensor__", "config": {"shape": [null, 2], "keras_history": ["y", 0, 0]}}]],
         "kwargs": {"mask": null}}]}],
      "input_layers": [["x", 0, 0], ["y", 0, 0]], "output_layers": [["c", 0, 0]]}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Value& node = Member(r->model, "c")->Find("inbound_nodes")->list()[0];
  ASSERT_EQ(node.Find("inputs")->list().size(), 2u);
  EXPECT_EQ(node.Find("inputs")->list()[1].Find("layer")->string_value(), "y");
  EXPECT_EQ(node.Find("args")->list()[0].list()[0].Find("layer")->string_value(), "x");
  EXPECT_TRUE(node.Find("kwargs")->Find("mask")->is_null());
}

TEST(KerasConfig, GraphErrorsAreMalformed) {
  auto unknown = Convert(R"({"class_name": "Functional", "config": {"name": "f", "layers": [
      {"class_name": "Dense", "name": "a", "config": {"name": "a"}, "inbound_nodes": [[["ghost", 0, 0, {}]]]}],
      "input_layers": [], "output_layers": []}})");
  EXPECT_EQ(unknown.status().code(), StatusCode::kMalformed);
  EXPECT_NE(unknown.status().message().find("ghost"), std::string::npos);
  auto twice = Convert(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "Dense", "config": {"name": "a"}}, {"class_name": "Dense", "config": {"name": "a"}}]}})");
  EXPECT_EQ(twice.status().code(), StatusCode::kMalformed);
  auto not_layer =
      Convert(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [7]}})");
  EXPECT_EQ(not_layer.status().code(), StatusCode::kMalformed);
}

constexpr char kNested[] = R"({"class_name": "Sequential", "config": {"name": "outer", "layers": [
    {"class_name": "InputLayer", "config": {"name": "outer_in"}},
    {"class_name": "Sequential", "config": {"name": "inner", "layers": [
      {"class_name": "Dense", "config": {"name": "d1", "use_bias": true}},
      {"class_name": "BatchNormalization", "config": {"name": "bn", "trainable": false}},
      {"class_name": "Dense", "config": {"name": "d2", "use_bias": false}}]}},
    {"class_name": "Dense", "config": {"name": "top"}}]}})";

TEST(KerasConfig, NestedModelWeightsAreTrainableFirstThenFrozen) {
  std::vector<WeightGroup> groups = {{"inner",
                                      {"d1/kernel:0", "d1/bias:0", "d2/kernel:0", "bn/gamma:0",
                                       "bn/beta:0", "bn/moving_mean:0", "bn/moving_variance:0"}},
                                     {"top", {"top/kernel:0", "top/bias:0"}}};
  auto r = Convert(kNested, &groups, {"model/step:0"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Value* inner = Member(r->model, "inner");
  EXPECT_EQ(Weights(Member(*inner, "d1")), (std::vector<std::string>{"d1/kernel:0", "d1/bias:0"}));
  EXPECT_EQ(Weights(Member(*inner, "bn")),
            (std::vector<std::string>{"bn/gamma:0", "bn/beta:0", "bn/moving_mean:0",
                                      "bn/moving_variance:0"}));
  EXPECT_EQ(Weights(Member(*inner, "d2")), std::vector<std::string>{"d2/kernel:0"});
  EXPECT_TRUE(Weights(inner).empty());
  EXPECT_EQ(Weights(Member(r->model, "top")),
            (std::vector<std::string>{"top/kernel:0", "top/bias:0"}));
  EXPECT_EQ(Weights(&r->model), std::vector<std::string>{"model/step:0"});
}

TEST(KerasConfig, UnmappableNestedWeightsStayOnTheContainer) {
  std::vector<WeightGroup> groups = {{"inner", {"a", "b", "c"}}, {"top", {"t"}}};
  auto r = Convert(kNested, &groups);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Weights(Member(r->model, "inner")), (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(r->notes.size(), 1u);
  EXPECT_EQ(r->notes[0].rule, "keras.weight_mapping");
}

TEST(KerasConfig, WeightsMustMatchTheLayers) {
  std::vector<WeightGroup> renamed = {{"inner", {}}, {"other", {}}};
  EXPECT_EQ(Convert(kNested, &renamed).status().code(), StatusCode::kMalformed);
  std::vector<WeightGroup> short_list = {{"inner", {}}};
  EXPECT_EQ(Convert(kNested, &short_list).status().code(), StatusCode::kMalformed);
  std::vector<WeightGroup> weights_on_flatten = {{"f", {"f/kernel:0"}}};
  auto flat = Convert(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "Flatten", "config": {"name": "f"}}]}})",
                      &weights_on_flatten);
  EXPECT_EQ(flat.status().code(), StatusCode::kMalformed);
}

TEST(KerasConfig, BidirectionalDerivesItsBackwardLayer) {
  std::vector<WeightGroup> groups = {{"bi", {"f/k", "f/r", "f/b", "b/k", "b/r", "b/b"}}};
  auto r = Convert(R"({"class_name": "Sequential", "config": {"name": "s", "layers": [
      {"class_name": "Bidirectional", "config": {"name": "bi", "layer": {"class_name": "LSTM",
        "config": {"name": "lstm", "units": 2, "go_backwards": false}}}}]}})",
                   &groups);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Value* bi = Member(r->model, "bi");
  EXPECT_EQ(Weights(bi->Find("layer")), (std::vector<std::string>{"f/k", "f/r", "f/b"}));
  const Value* backward = bi->Find("backward_layer");
  ASSERT_NE(backward, nullptr);
  EXPECT_EQ(backward->Find("name")->string_value(), "backward_lstm");
  EXPECT_TRUE(backward->Find("derived")->bool_value());
  EXPECT_TRUE(backward->Find("config")->Find("go_backwards")->bool_value());
  EXPECT_EQ(Weights(backward), (std::vector<std::string>{"b/k", "b/r", "b/b"}));
}

}  // namespace
}  // namespace safemodel::loader::keras
