// The batch's input lists (converter/cli/batch_inputs.h): ids, slices,
// manifests, trees.
#include "converter/cli/batch_inputs.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tests/testing/test_util.h"

namespace safemodel::cli {
namespace {

using testing::TempDir;
using testing::WriteFile;

TEST(BatchInputs, CleanIds) {
  for (const char* ok : {"a", "a/b.pt", "x/y/z", ".hidden", "a..b", "名前.npy"}) EXPECT_TRUE(IsCleanId(ok)) << ok;
  for (const char* bad : {"", "/a", "a/", "a//b", "./a", "a/./b", "..", "a/../b", "a/.."}) {
    EXPECT_FALSE(IsCleanId(bad)) << bad;
  }
  EXPECT_FALSE(IsCleanId(std::string("a\0b", 3)));
}

// The slice of an id must never change between versions: a cluster resumes
// a slice from its own results file.
TEST(BatchInputs, ShardOfIsPinned) {
  EXPECT_EQ(ShardOf("", 1000), 14695981039346656037ull % 1000);  // the FNV-1a offset basis
  EXPECT_EQ(ShardOf("a", 1ull << 32), 0x8601ec8cull);            // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c
  for (uint64_t n = 1; n <= 7; ++n) EXPECT_LT(ShardOf("models/x.pt", n), n);
}

TEST(BatchInputs, ParseShard) {
  uint64_t i = 9, n = 9;
  EXPECT_TRUE(ParseShard("0/1", &i, &n));
  EXPECT_EQ(i, 0u);
  EXPECT_EQ(n, 1u);
  EXPECT_TRUE(ParseShard("15/16", &i, &n));
  for (const char* bad : {"", "1", "1/", "/1", "1/1", "2/1", "0/0", "-1/3", "a/3", "1/3/4", "1 /3", "1234567890/9999999999"}) {
    EXPECT_FALSE(ParseShard(bad, &i, &n)) << bad;
  }
}

TEST(BatchInputs, ATreeIsListedSortedWithoutFollowingLinks) {
  TempDir d;
  std::filesystem::create_directories(d.File("b/c"));
  std::filesystem::create_directories(d.File("saved/variables"));
  WriteFile(d.File("b/c/z.npy"), "x");
  WriteFile(d.File("a.npy"), "x");
  WriteFile(d.File("saved/saved_model.pb"), "x");
  WriteFile(d.File("saved/variables/variables.index"), "x");
  std::filesystem::create_directory_symlink("/", d.File("root"));
  std::filesystem::create_directories(d.File("out"));
  WriteFile(d.File("out/old.safemodel"), "x");
  auto listed = ListTree(d.path(), {d.File("out")});
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> ids;
  for (const BatchInput& in : *listed) ids.push_back(in.id + (in.symlink ? " (link)" : ""));
  EXPECT_EQ(ids, (std::vector<std::string>{"a.npy", "b/c/z.npy", "root (link)", "saved"}));
  EXPECT_FALSE(ListTree(d.File("a.npy"), {}).ok());
}

TEST(BatchInputs, TooDeepATreeIsALimit) {
  TempDir d;
  std::string p = d.path();
  for (size_t i = 0; i <= kMaxListedDepth + 1; ++i) p += "/d";
  std::filesystem::create_directories(p);
  EXPECT_EQ(ListTree(d.path(), {}).status().code(), StatusCode::kLimitExceeded);
}

}  // namespace
}  // namespace safemodel::cli
