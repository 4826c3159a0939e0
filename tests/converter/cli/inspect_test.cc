// safe-convert inspect (issue 14, item 3 of the complaints): a layer tree,
// tensors in source order with human sizes, totals and dtype counts,
// --tensors / --architecture, and --json with schema_version, the stored
// digest, and SHA-256 only on request.
#include "safemodel/inspect.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "proto/digest.h"
#include "tests/converter/cli/cli_util.h"

namespace safemodel::testing {
namespace {

// functional_graph.h5: a Functional model with a nested Sequential.
class CliInspect : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(SafeConvert(Fixture("keras_h5/functional_graph.h5") + " " + model_ + " --no-sync -q"), 0);
  }
  std::string Inspect(const std::string& flags) {
    std::string out;
    EXPECT_EQ(SafeConvert("inspect " + flags + " " + model_, &out, false), 0) << flags;
    return out;
  }
  TempDir dir_;
  std::string model_ = dir_.File("m.safemodel");
};

TEST_F(CliInspect, ArchitectureIsATreeWithWeights) {
  const std::string out = Inspect("");
  EXPECT_NE(out.find("\n  two_tower                   Functional\n"), std::string::npos) << out;
  EXPECT_NE(out.find("\n    tower_a                   Dense  units=6 activation=relu\n"
                     "        tower_a/kernel:0  f32 [4, 6]\n"
                     "        tower_a/bias:0  f32 [6]\n"),
            std::string::npos)
      << out;
  // Nested layers are indented under their model.
  EXPECT_NE(out.find("\n    head                      Sequential\n"
                     "      head_input              InputLayer  batch_input_shape=[null,12]\n"),
            std::string::npos)
      << out;
  // No architecture line is the old JSON cut at 400 characters.
  EXPECT_EQ(out.find("\"class_name\""), std::string::npos) << out;
}

TEST_F(CliInspect, TensorsInSourceOrderWithSizesAndTotals) {
  const std::string out = Inspect("--tensors");
  EXPECT_EQ(out.find("architecture"), std::string::npos) << out;
  EXPECT_EQ(out.find("source:"), std::string::npos) << out;
  EXPECT_EQ(out.rfind("tensors:       11 tensors, 892 bytes (f32 11)\n", 0), 0u) << out;
  // The recorded order: layer_names, then each layer's weight_names, as
  // Keras loads them (head's list ends with head_bn), not bytewise (head_bn
  // first) nor the architecture walk's guess (head_bn before head_out).
  std::vector<size_t> at;
  for (const char* name : {"tower_a/kernel:0 ", "tower_a/bias:0 ", "tower_b/kernel:0 ", "head_dense/kernel:0 ",
                           "head_out/bias:0 ", "head_bn/gamma:0 "}) {
    at.push_back(out.find(name));
    ASSERT_NE(at.back(), std::string::npos) << name << "\n" << out;
  }
  EXPECT_TRUE(std::is_sorted(at.begin(), at.end())) << out;
  EXPECT_NE(out.find("f32  [12, 8]           384 bytes\n"), std::string::npos) << out;
  const std::string arch = Inspect("--architecture");
  EXPECT_EQ(arch.rfind("architecture:\n", 0), 0u) << arch;
  EXPECT_EQ(arch.find("tensors:"), std::string::npos) << arch;
}

TEST_F(CliInspect, JsonHasSchemaVersionStoredDigestAndSha256OnRequest) {
  auto model = Model::Open(model_);
  ASSERT_TRUE(model.ok());
  nlohmann::json j = nlohmann::json::parse(Inspect("--json"));
  EXPECT_EQ(j["schema_version"], 1);
  EXPECT_EQ(j["digest_algorithm"], "xxh3-128");
  EXPECT_EQ(j["tensor_count"], 11);
  EXPECT_EQ(j["tensor_bytes"], 892);
  EXPECT_EQ(j["dtypes"]["f32"], 11);
  EXPECT_EQ(j["architecture"]["model"]["class_name"], "Functional");
  EXPECT_EQ(j["tensors"][0]["name"], "tower_a/kernel:0");
  for (const auto& t : j["tensors"]) {
    const TensorInfo* info = model->Find(t["name"].get<std::string>());
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(t["digest"], ToHex(info->digest));
    EXPECT_FALSE(t.contains("sha256")) << "hashing every tensor is asked for with --sha256";
  }
  j = nlohmann::json::parse(Inspect("--json --sha256 --tensors"));
  EXPECT_FALSE(j.contains("architecture"));
  EXPECT_FALSE(j.contains("provenance"));
  for (const auto& t : j["tensors"]) {
    const TensorInfo* info = model->Find(t["name"].get<std::string>());
    auto data = model->Data(*info);
    EXPECT_EQ(t["sha256"], ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size()))));
  }
}

// Names without an architecture: the order the file records, np.load's
// (layers.0 .. layers.11, then bias: neither bytewise nor natural order).
TEST(CliInspectOrder, NamesInTheRecordedSourceOrder) {
  if (!PythonHas({"numpy"})) GTEST_SKIP() << "needs /usr/bin/python3 with numpy";
  TempDir dir;
  WriteFile(dir.File("make.py"),
            "import numpy, sys\n"
            "numpy.savez(sys.argv[1], **{'layers.%d.w' % i: numpy.zeros(i + 1, numpy.float32) "
            "for i in range(12)}, **{'bias': numpy.zeros(2, numpy.int64)})\n");
  ASSERT_EQ(RunPython(dir.File("make.py"), {dir.File("m.npz")}), 0);
  ASSERT_EQ(SafeConvert(dir.File("m.npz") + " " + dir.File("m.safemodel") + " --no-sync -q"), 0);
  std::string out;
  ASSERT_EQ(SafeConvert("inspect --tensors " + dir.File("m.safemodel"), &out, false), 0);
  EXPECT_EQ(out.rfind("tensors:       13 tensors, 328 bytes (f32 12, i64 1)\n", 0), 0u) << out;
  size_t last = 0;
  for (int i = 0; i < 12; ++i) {
    const size_t at = out.find("layers." + std::to_string(i) + ".w ");
    ASSERT_NE(at, std::string::npos) << i << "\n" << out;
    EXPECT_GT(at, last) << i << "\n" << out;
    last = at;
  }
  EXPECT_GT(out.find("bias "), last) << out;
}

TEST(CliInspectOrder, NaturalLess) {
  using safemodel::NaturalLess;
  EXPECT_TRUE(NaturalLess("layers.2", "layers.10"));
  EXPECT_FALSE(NaturalLess("layers.10", "layers.2"));
  EXPECT_TRUE(NaturalLess("a", "a.0"));
  EXPECT_TRUE(NaturalLess("a9", "b1"));
  EXPECT_TRUE(NaturalLess("x01", "x1")) << "equal numbers: bytewise";
  EXPECT_FALSE(NaturalLess("x1", "x01"));
  EXPECT_TRUE(NaturalLess("n99999999999999999999999", "n100000000000000000000000"));
  EXPECT_FALSE(NaturalLess("same", "same"));
}

}  // namespace
}  // namespace safemodel::testing
