// Keras .h5 end to end, through the real sandboxed pipeline: every benign
// corpus file and fixture converts bit-exact against h5py, every hazard and
// malicious file is refused with the rule and the place, and the converted
// architecture reproduces the source's layer graph.
#include <gtest/gtest.h>

#include <lzma.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "tests/testing/test_util.h"
#include <nlohmann/json.hpp>

#include "safemodel/reader.h"

#include "proto/digest.h"

namespace safemodel::testing {
namespace {

const std::string kScripts = std::string(SAFEMODEL_SOURCE_DIR) + "/tests/loader/keras_h5/";

std::string Flat(const std::string& relative) {
  std::string flat = relative;
  for (size_t p = flat.find('/'); p != std::string::npos; p = flat.find('/', p + 2))
    flat.replace(p, 1, "__");
  return flat;
}

// The slim copy of a large corpus file (make_slim_corpus.py: the real file
// with each dataset's raw data replaced by a counter), decompressed once into
// the build tree; "" when there is none.
std::string SlimCorpusH5(const std::string& relative) {
  const std::string xz = Fixture("keras_h5/corpus_slim/" + Flat(relative) + ".xz");
  if (!Exists(xz)) return "";
  const std::string out = std::string(KERAS_SLIM_DIR) + "/" + Flat(relative);
  if (Exists(out)) return out;
  constexpr uint64_t kMaxSlimBytes = 64 << 20;  // the originals are under 4 MB
  const std::string packed = ReadFile(xz);
  std::string plain(kMaxSlimBytes, '\0');
  uint64_t memlimit = 256 << 20;
  size_t in_pos = 0, out_pos = 0;
  lzma_ret r = lzma_stream_buffer_decode(&memlimit, 0, nullptr,
                                         reinterpret_cast<const uint8_t*>(packed.data()), &in_pos,
                                         packed.size(), reinterpret_cast<uint8_t*>(plain.data()),
                                         &out_pos, plain.size());
  if (r != LZMA_OK) {
    ADD_FAILURE() << xz << ": xz decode failed (" << r << ")";
    return "";
  }
  plain.resize(out_pos);
  // Parallel ctest runs may race here: write a private file, then rename.
  std::filesystem::create_directories(KERAS_SLIM_DIR);
  const std::string tmp = out + "." + std::to_string(getpid()) + ".tmp";
  WriteFile(tmp, plain);
  std::filesystem::rename(tmp, out);
  return out;
}

// A corpus HDF5 file: the copy committed under tests/fixtures/keras_h5/corpus
// (files up to ~1 MB), else the shared corpus, else the slim copy of a larger
// file; "" when none exists.
std::string CorpusH5(const std::string& relative) {
  std::string committed = Fixture("keras_h5/corpus/" + Flat(relative));
  if (Exists(committed)) return committed;
  std::string shared = CorpusFile("keras/" + relative);
  if (!shared.empty() && Exists(shared)) return shared;
  return SlimCorpusH5(relative);
}

std::string Label(std::string s) {
  for (char& c : s) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

struct Input {
  // A fixture name, "corpus:<relative path>", "slim:<relative path>" (the
  // slim copy of a large corpus file, whether or not ../shared is present),
  // or "example:<file>" (the README's bundled model under examples/models/).
  std::string name;
  bool weights_only = false;
  bool keep_optimizer = false;

  std::string Path() const {
    if (name.rfind("corpus:", 0) == 0) return CorpusH5(name.substr(7));
    if (name.rfind("slim:", 0) == 0) return SlimCorpusH5(name.substr(5));
    if (name.rfind("example:", 0) == 0) {
      return std::string(SAFEMODEL_SOURCE_DIR) + "/examples/models/" + name.substr(8);
    }
    return Fixture("keras_h5/" + name);
  }
  ConvertOptions Options() const {
    ConvertOptions o;
    o.weights_only = weights_only;
    o.keep_optimizer = keep_optimizer;
    return o;
  }
};

// Test names and ctest labels show the input, not the struct's bytes.
void PrintTo(const Input& in, std::ostream* os) { *os << in.name; }

std::string InputName(const ::testing::TestParamInfo<Input>& p) {
  return Label(p.param.name) + (p.param.weights_only ? "_weights_only" : "") +
         (p.param.keep_optimizer ? "_keep_optimizer" : "");
}

std::vector<std::string> Rules(const std::vector<Finding>& findings, Finding::Severity severity) {
  std::vector<std::string> out;
  for (const Finding& f : findings) {
    if (f.severity == severity) out.push_back(f.rule);
  }
  return out;
}

// ---- Fidelity ---------------------------------------------------------------

class KerasH5Fidelity : public ::testing::TestWithParam<Input> {};

TEST_P(KerasH5Fidelity, ConvertsBitExactAgainstH5py) {
  const Input& in = GetParam();
  const std::string path = in.Path();
  if (path.empty() || !Exists(path)) GTEST_SKIP() << "corpus file not available: " << in.name;
  TempDir dir;
  ConvertReport report = Convert(path, dir.File("out.safemodel"), in.Options());
  ASSERT_TRUE(report.status.ok()) << report.status.ToString();
  EXPECT_EQ(report.source_format, "keras_h5");
  EXPECT_TRUE(Rules(report.findings, Finding::Severity::kRefused).empty());
  auto model = Model::Open(dir.File("out.safemodel"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE(model->Verify().ok());
  if (!PythonHas({"h5py", "numpy"})) GTEST_SKIP() << "no h5py: bit-exact cross-check skipped";
  std::vector<std::string> args{path};
  if (in.keep_optimizer) args.push_back("--keep-optimizer");
  std::string expected_json;
  ASSERT_EQ(RunPython(kScripts + "expected_tensors.py", args, &expected_json), 0) << expected_json;
  auto expected = nlohmann::json::parse(expected_json);
  ASSERT_EQ(model->tensors().size(), expected.size());
  for (const TensorInfo& t : model->tensors()) {
    ASSERT_TRUE(expected.contains(t.name)) << "unexpected tensor " << t.name;
    const auto& e = expected[t.name];
    EXPECT_EQ(DTypeName(t.dtype), e["dtype"].get<std::string>()) << t.name;
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<uint64_t>>()) << t.name;
    auto data = model->Data(t);
    EXPECT_EQ(ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size()))),
              e["sha256"].get<std::string>())
        << t.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, KerasH5Fidelity,
    ::testing::Values(Input{"functional_graph.h5"}, Input{"functional_graph.h5", false, true},
                      Input{"keras3_functional.h5"}, Input{"wrappers.h5"}, Input{"dtypes.h5"},
                      Input{"big_endian.h5"}, Input{"strings_fixed.h5"},
                      Input{"strings_nullterm.h5"}, Input{"strings_spacepad.h5"},
                      Input{"strings_vlen_ascii.h5"}, Input{"strings_vlen_utf8.h5"},
                      Input{"strings_utf8_names.h5"},
                      Input{"chunked_attributes.h5"}, Input{"duplicate_weight_names.h5"},
                      Input{"keras3_weights.h5"}, Input{"keras3_weights.h5", false, true},
                      Input{"custom_class.h5", true}, Input{"big_endian_f16.h5"},
                      Input{"kwargs_edges.h5"}, Input{"bidi_nested_model.h5", true},
                      Input{"config_and_root_layer_names.h5", true},
                      Input{"example:keras_cnn.h5"},
                      Input{"example:keras_cnn.h5", false, true}),
    InputName);

// Every benign HDF5 file of the shared corpus (MANIFEST.tsv, malicious = n).
INSTANTIATE_TEST_SUITE_P(
    Corpus, KerasH5Fidelity,
    ::testing::Values(
        Input{"corpus:0xRajvardhan__StockPredictionLSTM/keras_model.h5"},
        Input{"corpus:2nithing__streamlit_teachable_machine/keras_model.h5"},
        Input{"corpus:404error-010__ANN-Churn-Classification/model.h5"},
        Input{"corpus:404error-010__ANN-Churn-Classification/model.h5", false, true},
        Input{"corpus:98mprice__mario-level-generator/model.keras"},
        Input{"corpus:AdamVenroy__sentiment-classifer/model.keras"},
        Input{"corpus:ShreyanshGupta28__mnist_classification_app/model.h5"},
        Input{"corpus:ShreyanshGupta28__mnist_classification_app/model.weights.h5"},
        Input{"corpus:dventimiglia__CarND-Behavioral-Cloning/model.h5"},
        Input{"corpus:ionut-girla__change_detection/siamese_model.h5"},
        Input{"corpus:jeremy-shannon__CarND-Behavioral-Cloning-Project/model_.h5"},
        Input{"corpus:ncondo__CarND-Behavioral-Cloning/model.h5"},
        Input{"corpus:wolfapple__CarND-Behavioral-Cloning-Project/model.h5"},
        Input{"corpus:promptfoo__modelaudit/tests/assets/samples/keras/safe_model.h5"},
        // Benign, but their architecture holds code (a Lambda) or a
        // custom class: refused by default (see KerasH5Refusal),
        // tensors converted with --weights-only.
        Input{"corpus:jeremy-shannon__CarND-Behavioral-Cloning-Project/model.h5", true},
        Input{"corpus:mehrshadshams__CarND-Behavioral-Cloning-P3/model.h5", true},
        Input{"corpus:Arpx22__Online-Signature-Verification-using-Python/siamese_model.h5", true},
        // Malicious, converted as data only: the weights are safe to keep.
        Input{"corpus:MaximChuikov__kosenko/malicious_model.h5", true}),
    InputName);

// The large corpus files again, as their committed slim copies: the same
// HDF5 structure and model_config, counter bytes as weights. They run whether
// or not ../shared is present, so a clean clone checks all 20 corpus files.
INSTANTIATE_TEST_SUITE_P(
    SlimCorpus, KerasH5Fidelity,
    ::testing::Values(
        Input{"slim:0xRajvardhan__StockPredictionLSTM/keras_model.h5"},
        Input{"slim:2nithing__streamlit_teachable_machine/keras_model.h5"},
        Input{"slim:AdamVenroy__sentiment-classifer/model.keras"},
        Input{"slim:ionut-girla__change_detection/siamese_model.h5"},
        Input{"slim:wolfapple__CarND-Behavioral-Cloning-Project/model.h5"},
        Input{"slim:jeremy-shannon__CarND-Behavioral-Cloning-Project/model.h5", true}),
    InputName);

TEST(KerasH5, SlimCopiesDifferFromTheirOriginalsOnlyInTensorBytes) {
  const std::string corpus = CorpusFile("keras");
  if (corpus.empty()) GTEST_SKIP() << "../shared/corpus/keras not available";
  if (!PythonHas({"h5py"})) GTEST_SKIP() << "no h5py";
  std::string output;
  EXPECT_EQ(RunPython(Fixture("keras_h5/make_slim_corpus.py"), {"--check", corpus}, &output), 0)
      << output;
}

// ---- Refusals ---------------------------------------------------------------

struct Refusal {
  std::string name;  // fixture, or "corpus:<relative path>"
  StatusCode code;
  std::string rule;       // the first finding's rule ("" for non-refusal errors)
  std::string location;   // the first finding's location, or a substring of the message
  std::string reference;  // one of the first finding's references ("" = any)
};

void PrintTo(const Refusal& r, std::ostream* os) { *os << r.name; }

std::string RefusalName(const ::testing::TestParamInfo<Refusal>& p) { return Label(p.param.name); }

class KerasH5Refusal : public ::testing::TestWithParam<Refusal> {};

TEST_P(KerasH5Refusal, IsRefusedWithTheRuleAndThePlace) {
  const Refusal& r = GetParam();
  const std::string path = Input{r.name}.Path();
  if (path.empty() || !Exists(path)) GTEST_SKIP() << "corpus file not available: " << r.name;
  TempDir dir;
  ConvertReport report = Convert(path, dir.File("out.safemodel"));
  EXPECT_EQ(report.status.code(), r.code) << report.status.ToString();
  EXPECT_FALSE(Exists(dir.File("out.safemodel")));
  EXPECT_EQ(dir.List(), std::vector<std::string>{}) << "no partial output";
  if (r.code != StatusCode::kRefused) {
    EXPECT_NE(report.status.message().find(r.location), std::string::npos)
        << report.status.message();
    return;
  }
  EXPECT_EQ(ExitCodeFor(report.status.code()), 1);
  const Finding* first = nullptr;
  for (const Finding& f : report.findings) {
    if (f.severity == Finding::Severity::kRefused && first == nullptr) first = &f;
  }
  ASSERT_NE(first, nullptr) << report.status.ToString();
  EXPECT_EQ(first->rule, r.rule);
  EXPECT_EQ(first->location, r.location);
  if (!r.reference.empty()) {
    EXPECT_NE(std::find(first->references.begin(), first->references.end(), r.reference),
              first->references.end())
        << r.reference;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Hazards, KerasH5Refusal,
    ::testing::Values(
        Refusal{"external_link.h5", StatusCode::kRefused, "hdf5.external_link",
                "/model_weights/dense/dense/kernel:0", "other_weights.h5:/kernel"},
        Refusal{"soft_link.h5", StatusCode::kRefused, "hdf5.soft_link",
                "/model_weights/dense/dense/kernel:0", "/elsewhere"},
        Refusal{"external_storage.h5", StatusCode::kRefused, "hdf5.external_storage",
                "/model_weights/dense/dense/kernel:0", "/etc/passwd"},
        Refusal{"virtual_dataset.h5", StatusCode::kRefused, "hdf5.virtual_dataset",
                "/model_weights/dense/dense/kernel:0", "vds_source.h5"},
        Refusal{"virtual_dataset_unlimited.h5", StatusCode::kRefused, "hdf5.virtual_dataset",
                "/model_weights/dense/dense/kernel:0", "vds_source.h5"},
        Refusal{"filter_plugin.h5", StatusCode::kRefused, "hdf5.filter_plugin",
                "/model_weights/dense/dense/kernel:0", "hdf5 filter 32001"},
        Refusal{"filter_scaleoffset.h5", StatusCode::kUnsupported, "", "filter 6 ('scaleoffset')",
                ""},
        Refusal{"link_cycle.h5", StatusCode::kMalformed, "",
                "'/extra/back' leads to the same object as '/extra'", ""},
        Refusal{"hard_link_alias.h5", StatusCode::kMalformed, "", "(a hard-link cycle or alias)",
                ""},
        Refusal{"shape_bomb.h5", StatusCode::kLimitExceeded, "", "(a shape bomb)", ""},
        // Name lists stored as one string: Keras iterates them (issue 16).
        Refusal{"strings_scalar.h5", StatusCode::kMalformed, "",
                "attribute 'layer_names' of '/' is a scalar string", ""},
        Refusal{"lambda_in_wrapper.h5", StatusCode::kRefused, "keras.lambda",
                "model_config layer 'sequential/td/lambda'", "system"},
        Refusal{"lambda_in_nested_model.h5", StatusCode::kRefused, "keras.lambda",
                "model_config layer 'outer/inner/sneaky'", "check_output"},
        Refusal{"gadgets.h5", StatusCode::kRefused, "keras.function_reference",
                "model_config layer 'gadgets/getter'", "keras.utils.get_file"},
        Refusal{"custom_class.h5", StatusCode::kRefused, "keras.class_not_allowed",
                "model_config layer 'sequential/my_attention'", "my_package>MyAttention"},
        // Keras derives the backward copy from the forward layer: the code in
        // it is found even though the copy is not represented.
        Refusal{"bidi_lambda.h5", StatusCode::kRefused, "keras.lambda",
                "model_config layer 'seq/bidi/fwd'", "system"},
        Refusal{"bidi_nested_model.h5", StatusCode::kUnsupported, "",
                "a Bidirectional wrapper around 'Sequential' without a backward_layer", ""},
        // load_model reads model_config + model_weights even when a root
        // layer_names (what load_weights reads) is there too.
        Refusal{"config_and_root_layer_names.h5", StatusCode::kRefused, "keras.lambda",
                "model_config layer 'sequential/lambda'", "system"},
        Refusal{"lambda_truncated.h5", StatusCode::kRefused, "keras.lambda",
                "model_config layer 'sequential/cut'", ""}),
    RefusalName);

// Every malicious HDF5 file of the shared corpus, and the benign ones whose
// architecture carries code or a custom class.
INSTANTIATE_TEST_SUITE_P(
    Corpus, KerasH5Refusal,
    ::testing::Values(
        Refusal{"corpus:MaximChuikov__kosenko/malicious_model.h5", StatusCode::kRefused,
                "keras.lambda", "model_config layer 'sequential/lambda'", "system"},
        Refusal{"corpus:pongleg__ModelScan_HL/malicious_model.h5", StatusCode::kRefused,
                "keras.lambda", "model_config layer 'functional/lambda'", "exec"},
        Refusal{"corpus:binaryninja__Malicious-Models/malicious_model.h5", StatusCode::kRefused,
                "keras.class_not_allowed", "model_config layer '(model)'", "MaliciousModel"},
        Refusal{"corpus:promptfoo__modelaudit/tests/assets/samples/keras/malicious_lambda.h5",
                StatusCode::kRefused, "keras.lambda", "model_config layer 'malicious_model/[0]'",
                ""},
        Refusal{"corpus:jeremy-shannon__CarND-Behavioral-Cloning-Project/model.h5",
                StatusCode::kRefused, "keras.lambda", "model_config layer '(model)/lambda_1'", ""},
        Refusal{"slim:jeremy-shannon__CarND-Behavioral-Cloning-Project/model.h5",
                StatusCode::kRefused, "keras.lambda", "model_config layer '(model)/lambda_1'", ""},
        Refusal{"corpus:mehrshadshams__CarND-Behavioral-Cloning-P3/model.h5", StatusCode::kRefused,
                "keras.lambda", "model_config layer '(model)/lambda_3'", ""},
        Refusal{"corpus:Arpx22__Online-Signature-Verification-using-Python/siamese_model.h5",
                StatusCode::kRefused, "keras.class_not_allowed",
                "model_config layer 'Siamese_Architecture/L1_Distance_Layer'", "L1Dist"}),
    RefusalName);

TEST(KerasH5, ListsEveryRefusalNotJustTheFirst) {
  TempDir dir;
  ConvertReport report = Convert(Fixture("keras_h5/gadgets.h5"), dir.File("out.safemodel"));
  ASSERT_EQ(report.status.code(), StatusCode::kRefused);
  EXPECT_EQ(Rules(report.findings, Finding::Severity::kRefused),
            (std::vector<std::string>{"keras.function_reference", "keras.module",
                                      "keras.tfoplambda", "keras.vocabulary_path",
                                      "keras.activation", "keras.torch_module_wrapper"}));
}

// ---- Options, naming, findings ---------------------------------------------------

Result<Model> ConvertAndOpen(const TempDir& dir, const std::string& fixture, ConvertOptions options,
                             ConvertReport* report) {
  *report = Convert(Fixture("keras_h5/" + fixture), dir.File("out.safemodel"), options);
  if (!report->status.ok()) return report->status;
  return Model::Open(dir.File("out.safemodel"));
}

TEST(KerasH5, ReportsWhatIsDroppedAndRecordsTheSource) {
  TempDir dir;
  ConvertReport report;
  auto model = ConvertAndOpen(dir, "functional_graph.h5", {}, &report);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(Rules(report.findings, Finding::Severity::kDropped),
            (std::vector<std::string>{"keras.optimizer", "keras.training_config"}));
  EXPECT_EQ(model->Find("optimizer_weights/Adam/iter:0"), nullptr);
  EXPECT_EQ(model->metadata().Find("kind")->string_value(), "full_model");
  EXPECT_EQ(model->metadata().Find("keras_version")->string_value(), "2.8.0");
  const Value& arch = model->architecture();
  EXPECT_EQ(arch.Find("schema")->string_value(), "safemodel.keras/1");
  EXPECT_EQ(arch.Find("model")->Find("class_name")->string_value(), "Functional");
  EXPECT_EQ(arch.Find("weight_groups")->list().size(), 7u);

  TempDir kept_dir;
  ConvertOptions keep;
  keep.keep_optimizer = true;
  auto kept = ConvertAndOpen(kept_dir, "functional_graph.h5", keep, &report);
  ASSERT_TRUE(kept.ok());
  EXPECT_NE(kept->Find("optimizer_weights/Adam/iter:0"), nullptr);
  EXPECT_EQ(kept->architecture().Find("optimizer_weights")->list().size(), 2u);
}

TEST(KerasH5, AFullModelWithARootLayerNamesSaysWhichOneIsRead) {
  TempDir dir;
  ConvertOptions options;
  options.weights_only = true;
  ConvertReport report;
  auto model = ConvertAndOpen(dir, "config_and_root_layer_names.h5", options, &report);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  std::vector<std::string> dropped = Rules(report.findings, Finding::Severity::kDropped);
  EXPECT_NE(std::find(dropped.begin(), dropped.end(), "keras.root_layer_names"), dropped.end());
  EXPECT_NE(std::find(dropped.begin(), dropped.end(), "keras.unreferenced_dataset"),
            dropped.end());
  EXPECT_NE(model->Find("d/kernel:0"), nullptr);
  EXPECT_EQ(model->metadata().Find("kind")->string_value(), "full_model");
}

TEST(KerasH5, RepeatedWeightNamesAreMadeUniqueInFileOrder) {
  TempDir dir;
  ConvertReport report;
  auto model = ConvertAndOpen(dir, "duplicate_weight_names.h5", {}, &report);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_NE(model->Find("shared/kernel:0"), nullptr);
  ASSERT_NE(model->Find("shared/kernel:0#2"), nullptr);
  EXPECT_EQ(model->Find("shared/kernel:0")->shape, (std::vector<uint64_t>{2, 2}));
  EXPECT_EQ(model->Find("shared/kernel:0#2")->shape, (std::vector<uint64_t>{3}));
}

TEST(KerasH5, WeightsOnlyDropsTheArchitectureAndSaysWhy) {
  TempDir dir;
  ConvertOptions options;
  options.weights_only = true;
  ConvertReport report;
  auto model = ConvertAndOpen(dir, "custom_class.h5", options, &report);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  // The class is registered as "package>Name", which Keras resolves through
  // its custom-object registry: named as well (loader/README.md).
  EXPECT_EQ(Rules(report.findings, Finding::Severity::kDropped),
            (std::vector<std::string>{"keras.class_not_allowed", "keras.registered_name",
                                      "keras.architecture"}));
  EXPECT_EQ(model->architecture().Find("model"), nullptr);
  EXPECT_EQ(model->architecture().Find("weight_groups")->list().size(), 2u);
  EXPECT_NE(model->Find("my_attention/w:0"), nullptr);
  const auto& options_used = model->provenance().options;
  EXPECT_NE(std::find(options_used.begin(), options_used.end(), "weights_only"),
            options_used.end());
}

TEST(KerasH5, WeightsOnlyNeverCopiesBytecode) {
  const std::string path = CorpusH5("MaximChuikov__kosenko/malicious_model.h5");
  if (path.empty()) GTEST_SKIP();
  TempDir dir;
  ConvertOptions options;
  options.weights_only = true;
  ConvertReport report = Convert(path, dir.File("out.safemodel"), options);
  ASSERT_TRUE(report.status.ok()) << report.status.ToString();
  std::string out = ReadFile(dir.File("out.safemodel"));
  EXPECT_EQ(out.find("4wEAAAAA"), std::string::npos) << "the Lambda's base64 bytecode";
  EXPECT_EQ(out.find("function_type"), std::string::npos);
  bool lambda_dropped = false;
  for (const Finding& f : report.findings) {
    if (f.rule == "keras.lambda") {
      lambda_dropped = f.severity == Finding::Severity::kDropped &&
                       f.message.find("os, system") != std::string::npos;
    }
  }
  EXPECT_TRUE(lambda_dropped);
}

// Code that cannot be decoded (truncated marshal data, or Python source
// text) is described by its size, never quoted: findings are copied into the
// output with --weights-only.
TEST(KerasH5, WeightsOnlyNeverQuotesUndecodableCode) {
  struct Case {
    std::string path;
    std::string code_fragment;
  };
  std::vector<Case> cases{{Fixture("keras_h5/lambda_truncated.h5"), "YwEAAAAAAAAA"}};
  const std::string source_text =
      CorpusH5("promptfoo__modelaudit/tests/assets/samples/keras/malicious_lambda.h5");
  if (!source_text.empty()) cases.push_back({source_text, "eval("});
  for (const Case& c : cases) {
    TempDir dir;
    ConvertOptions options;
    options.weights_only = true;
    ConvertReport report = Convert(c.path, dir.File("out.safemodel"), options);
    ASSERT_TRUE(report.status.ok()) << c.path << ": " << report.status.ToString();
    EXPECT_EQ(ReadFile(dir.File("out.safemodel")).find(c.code_fragment), std::string::npos)
        << c.path;
    EXPECT_EQ(report.ToJson().find(c.code_fragment), std::string::npos) << c.path;
  }
  // The fragment really is in the source: the check above can fail.
  EXPECT_NE(ReadFile(Fixture("keras_h5/lambda_truncated.h5")).find("YwEAAAAAAAAA"),
            std::string::npos);
}

// tf.keras 2 call nodes, as tf.keras reads them: a constant first argument
// is data (not an edge), and only the last entry's kwargs count.
TEST(KerasH5, Keras2ConstantsAndKwargsAreReadAsTfKerasReadsThem) {
  TempDir dir;
  ConvertReport report;
  auto model = ConvertAndOpen(dir, "keras2_call_forms.h5", {}, &report);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const Value& layers = *model->architecture().Find("model")->Find("layers");
  const Value& mul = *layers.list()[2].Find("inbound_nodes");
  const Value& cat = *layers.list()[3].Find("inbound_nodes");
  EXPECT_EQ(ValueToJson(mul.list()[0]),
            R"({"inputs":[{"constant":2.0}],"kwarg_inputs":[{"layer":"a","node":0,"tensor":0}],)"
            R"("kwargs":{"y":{"layer":"a","node":0,"tensor":0},"name":null}})");
  EXPECT_EQ(ValueToJson(cat.list()[0]),
            R"({"inputs":[{"layer":"tf.math.multiply","node":0,"tensor":0},)"
            R"({"layer":"b","node":0,"tensor":0}],"kwarg_inputs":[],"kwargs":{}})");
}

TEST(KerasH5, ConversionIsDeterministic) {
  TempDir dir;
  ConvertOptions options;
  options.sync_output = false;
  ASSERT_TRUE(Convert(Fixture("keras_h5/functional_graph.h5"), dir.File("a.safemodel"), options)
                  .status.ok());
  ASSERT_TRUE(Convert(Fixture("keras_h5/functional_graph.h5"), dir.File("b.safemodel"), options)
                  .status.ok());
  EXPECT_EQ(ReadFile(dir.File("a.safemodel")), ReadFile(dir.File("b.safemodel")));
}

// ---- The layer graph --------------------------------------------------------

class KerasH5Graph : public ::testing::TestWithParam<Input> {};

TEST_P(KerasH5Graph, ArchitectureReproducesTheSourceGraph) {
  const std::string path = GetParam().Path();
  if (path.empty() || !Exists(path)) GTEST_SKIP() << "corpus file not available";
  if (!PythonHas({"h5py", "numpy"})) GTEST_SKIP() << "no h5py";
  TempDir dir;
  ConvertReport report = Convert(path, dir.File("out.safemodel"));
  ASSERT_TRUE(report.status.ok()) << report.status.ToString();
  auto model = Model::Open(dir.File("out.safemodel"));
  ASSERT_TRUE(model.ok());
  WriteFile(dir.File("architecture.json"), ValueToJson(model->architecture()));
  std::string output;
  EXPECT_EQ(RunPython(kScripts + "check_graph.py", {path, dir.File("architecture.json")}, &output),
            0)
      << output;
}

INSTANTIATE_TEST_SUITE_P(
    All, KerasH5Graph,
    ::testing::Values(Input{"functional_graph.h5"}, Input{"keras3_functional.h5"},
                      Input{"wrappers.h5"}, Input{"kwargs_edges.h5"},
                      Input{"keras2_call_forms.h5"}, Input{"example:keras_cnn.h5"},
                      Input{"corpus:ionut-girla__change_detection/siamese_model.h5"},
                      Input{"corpus:2nithing__streamlit_teachable_machine/keras_model.h5"},
                      Input{"corpus:0xRajvardhan__StockPredictionLSTM/keras_model.h5"},
                      Input{"corpus:404error-010__ANN-Churn-Classification/model.h5"},
                      Input{"slim:ionut-girla__change_detection/siamese_model.h5"},
                      Input{"slim:2nithing__streamlit_teachable_machine/keras_model.h5"},
                      Input{"slim:0xRajvardhan__StockPredictionLSTM/keras_model.h5"}),
    InputName);

}  // namespace
}  // namespace safemodel::testing
