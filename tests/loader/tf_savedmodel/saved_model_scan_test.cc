// The walk of saved_model.pb and keras_metadata.pb on the real TF 2.2
// SavedModel and on generated ones, and its strictness.
#include <gtest/gtest.h>

#include "loader/tf_savedmodel/saved_model_scan.h"
#include "tests/testing/test_util.h"

namespace safemodel::loader::tf {
namespace {

using testing::Fixture;
using testing::ReadFile;

TEST(SavedModelScan, FindsEveryOpOfTheRealTf22SavedModel) {
  const std::string pb = ReadFile(Fixture("keras3_tf/corpus/keras-team__tf-keras__lso_savedmodel_tf2.2/saved_model.pb"));
  auto scan = ScanSavedModel(AsBytes(pb));
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(scan->meta_graphs, 1u);
  EXPECT_EQ(scan->tags, std::vector<std::string>{"serve"});
  EXPECT_EQ(scan->tensorflow_version, "2.2.0-rc2");
  EXPECT_EQ(scan->functions, 17u);
  // Counted the way LAYOUTS.md 7.1 lists them (graph nodes and function
  // nodes together, as savedmodel.py's independent scan counts them).
  EXPECT_EQ(scan->ops.at("SaveV2").count, 2u);
  EXPECT_EQ(scan->ops.at("RestoreV2").count, 2u);
  EXPECT_EQ(scan->ops.at("MergeV2Checkpoints").count, 1u);
  EXPECT_EQ(scan->ops.at("VarHandleOp").count, 12u);
  EXPECT_TRUE(scan->assets.empty());
  ASSERT_FALSE(scan->user_objects.empty());
  EXPECT_EQ(scan->user_objects[0].node, 0u);
  EXPECT_EQ(scan->user_objects[0].identifier, "_tf_keras_sequential");
  bool standard = false;
  EXPECT_TRUE(IsFileOp("SaveV2", &standard));
  EXPECT_TRUE(standard);
  EXPECT_TRUE(IsFileOp("ReadFile", &standard));
  EXPECT_FALSE(standard);
  EXPECT_FALSE(IsFileOp("MatMul", &standard));
}

TEST(SavedModelScan, ReportsWhereAFileOpIs) {
  auto scan = ScanSavedModel(AsBytes(ReadFile(Fixture("keras3_tf/tf/sm_read_write_file/saved_model.pb"))));
  ASSERT_TRUE(scan.ok());
  EXPECT_NE(scan->ops.at("ReadFile").first.find("function '__inference_signature_wrapper_100'"), std::string::npos);
  EXPECT_NE(scan->ops.at("WriteFile").first.find("graph node 'WriteFile'"), std::string::npos);
}

TEST(SavedModelScan, EveryTruncationIsMalformedNeverACrash) {
  const std::string pb = ReadFile(Fixture("keras3_tf/tf/sm_keras_metadata/saved_model.pb"));
  int malformed = 0;
  for (size_t n = 0; n < pb.size(); ++n) {
    auto scan = ScanSavedModel(AsBytes(std::string_view(pb).substr(0, n)));
    if (!scan.ok()) {
      ++malformed;
      EXPECT_NE(scan.status().message().find("tf.saved_model"), std::string::npos);
    }
  }
  EXPECT_GT(malformed, 0);
}

TEST(KerasMetadata, DecodesNodesStrictly) {
  auto nodes = ReadKerasMetadata(AsBytes(ReadFile(Fixture("keras3_tf/tf/sm_keras_metadata/keras_metadata.pb"))));
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  ASSERT_EQ(nodes->size(), 3u);
  EXPECT_EQ((*nodes)[0].path, "root");
  EXPECT_EQ((*nodes)[0].identifier, "_tf_keras_sequential");
  EXPECT_EQ((*nodes)[2].path, "root.layer_with_weights-1");
  // An unknown field in a node (protobuf would skip it) is malformed.
  std::string pb = "\x0a\x04\x3a\x02xy";
  auto bad = ReadKerasMetadata(AsBytes(pb));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tf.keras_metadata"), std::string::npos);
}

}  // namespace
}  // namespace safemodel::loader::tf
