// The Keras 3 parser's parts: Keras's snake_case naming, writer versions,
// logical store paths, the compile_config scan, and the config converter's
// Keras 3 envelope rules.
#include <gtest/gtest.h>

#include "loader/keras3/compile_config.h"
#include "loader/keras3/weight_store.h"
#include "loader/keras3/weight_walk.h"
#include "loader/keras_h5/json_value.h"
#include "loader/keras_h5/keras_config.h"

namespace safemodel::loader::keras3 {
namespace {

TEST(Keras3Naming, SnakeCaseIsKerassToSnakeCase) {
  // keras.src.utils.naming.to_snake_case, by the values it gives.
  for (const auto& [cls, snake] : std::vector<std::pair<std::string, std::string>>{
           {"Dense", "dense"}, {"Conv2D", "conv2d"}, {"DepthwiseConv2D", "depthwise_conv2d"},
           {"ReLU", "re_lu"}, {"UpSampling2D", "up_sampling2d"}, {"Conv2DTranspose", "conv2d_transpose"},
           {"SimpleRNN", "simple_rnn"}, {"InputLayer", "input_layer"}, {"LSTM", "lstm"},
           {"BatchNormalization", "batch_normalization"}, {"MultiHeadAttention", "multi_head_attention"},
           {"GlobalAveragePooling2D", "global_average_pooling2d"}, {"PReLU", "p_re_lu"},
           {"My-Layer!", "my_layer"}, {"ABCDef", "abc_def"}}) {
    EXPECT_EQ(SnakeCase(cls), snake) << cls;
  }
}

TEST(Keras3Naming, WriterVersions) {
  EXPECT_EQ(*WriterFromVersion("3.10.0"), Writer::kKeras3);
  EXPECT_EQ(*WriterFromVersion("2.13.1"), Writer::kTfKeras213);
  EXPECT_EQ(*WriterFromVersion("2.14.0"), Writer::kTfKeras214);
  EXPECT_EQ(*WriterFromVersion("2.15.0"), Writer::kTfKeras215);
  EXPECT_EQ(*WriterFromVersion("2.16.1"), Writer::kTfKeras215);
  for (const char* v : {"2.12.0", "1.2.0", "", "x", "4.0"}) {
    auto w = WriterFromVersion(v);
    ASSERT_FALSE(w.ok()) << v;
    EXPECT_NE(w.status().message().find("keras.version"), std::string::npos);
  }
  EXPECT_EQ(LogicalPath("_layer_checkpoint_dependencies\\simple_rnn\\cell"),
            "_layer_checkpoint_dependencies/simple_rnn/cell");
  EXPECT_EQ(LogicalPath("layers/dense"), "layers/dense");
  EXPECT_EQ(LogicalPath(""), "");
}

std::vector<std::string> Refusals(const std::string& json) {
  ParseContext ctx({});
  auto v = ParseJson(json, "t");
  EXPECT_TRUE(v.ok());
  keras::ScanAndDropCompileConfig(*v, "compile_config", "keras.compile_config", ctx);
  std::vector<std::string> out;
  for (const Finding& f : ctx.findings()) {
    if (f.severity == Finding::Severity::kRefused) out.push_back(f.rule);
  }
  return out;
}

TEST(CompileConfig, BuiltinsPassAndCodeIsRefused) {
  EXPECT_TRUE(Refusals(R"({"optimizer": {"module": "keras.optimizers", "class_name": "Adam", "config": {"name": "adam"},
      "registered_name": null}, "loss": "categorical_crossentropy", "metrics": ["accuracy"]})").empty());
  EXPECT_TRUE(Refusals(R"({"loss": {"module": "keras.losses", "class_name": "function", "config": "mean_squared_error",
      "registered_name": "mean_squared_error"}, "metrics": [{"module": "keras.metrics", "class_name": "AUC", "config": {}}]})").empty());
  // A custom name as a plain string is looked up in the loading program, not loaded from the file.
  EXPECT_TRUE(Refusals(R"({"loss": "focal_loss"})").empty());
  EXPECT_EQ(Refusals(R"({"loss": {"class_name": "__lambda__", "config": {"code": "4wEAAAAA"}}})"),
            std::vector<std::string>{"keras.lambda"});
  EXPECT_EQ(Refusals(R"({"loss": {"module": "keras.utils", "class_name": "function", "config": "get_file"}})"),
            std::vector<std::string>{"keras.function_reference"});
  EXPECT_EQ(Refusals(R"({"optimizer": {"module": "mylib", "class_name": "MyOpt", "config": {}}})"),
            (std::vector<std::string>{"keras.module", "keras.class_not_allowed"}));
  EXPECT_EQ(Refusals(R"({"metrics": [{"module": "keras.metrics", "class_name": "Mean", "registered_name": "pkg>Mean"}]})"),
            std::vector<std::string>{"keras.registered_name"});
}

Result<keras::ConfigResult> Convert(const std::string& json) {
  auto v = ParseJson(json, "t");
  EXPECT_TRUE(v.ok());
  return keras::ConvertModelConfig(*v, nullptr, {});
}

TEST(Keras3Envelope, QuantizedLayersAndNonNumericLiteralsAreUnsupported) {
  auto dense = [](const std::string& extra) {
    return R"({"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 2)" + extra + "}}]}}";
  };
  EXPECT_TRUE(Convert(dense("")).ok());
  EXPECT_TRUE(Convert(dense(R"(, "quantization_config": null)")).ok());
  for (const std::string& extra :
       {std::string(R"(, "quantization_config": {"mode": "int8"})"), std::string(R"(, "dtype": "int8_from_float32")"),
        std::string(R"(, "dtype": {"module": "keras", "class_name": "QuantizedDTypePolicy", "config": {"mode": "int8"}})"),
        std::string(R"(, "dtype": {"module": "keras", "class_name": "GPTQDTypePolicy", "config": {}})")}) {
    auto r = Convert(dense(extra));
    ASSERT_FALSE(r.ok()) << extra;
    EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(r.status().message().find("[keras.quantized]"), std::string::npos) << r.status().ToString();
  }
  for (const char* dtype : {"object", "(1000000000,)f4", "", "O", "[('a', 'f4')]"}) {
    auto r = Convert(dense(std::string(R"(, "bias": {"class_name": "__numpy__", "config": {"value": [1], "dtype": ")") +
                           dtype + "\"}}"));
    ASSERT_FALSE(r.ok()) << dtype;
    EXPECT_NE(r.status().message().find("[keras.numpy_dtype]"), std::string::npos);
  }
  EXPECT_TRUE(Convert(dense(R"(, "bias": {"class_name": "__numpy__", "config": {"value": [1], "dtype": "float32"}})")).ok());
}

TEST(Keras3Envelope, AFunctionAsAGraphMemberIsAFunctionReference) {
  auto r = Convert(R"({"module": "keras.src.models.functional", "class_name": "Functional", "config": {"name": "f",
      "layers": [{"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization",
                  "registered_name": null, "name": "g", "inbound_nodes": []}],
      "input_layers": [], "output_layers": []}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->refusals.size(), 1u);
  EXPECT_EQ(r->refusals[0].rule, "keras.function_reference");
  EXPECT_EQ(r->refusals[0].references, std::vector<std::string>{"keras.config.enable_unsafe_deserialization"});
}

}  // namespace
}  // namespace safemodel::loader::keras3
