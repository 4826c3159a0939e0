// tests/fixtures/keras3_tf: MANIFEST.tsv and expected_tensors.json agree with
// the files on disk, every fixture carries what its row claims (checked by
// check_fixtures.py's reference readers), and the generators still rebuild
// the shared corpus's Keras 3 / TF layouts byte for byte (check_corpus.py).
// No safemodel parser reads these files yet; the tests of issue 11's parsers
// compare safe-convert's exit code and rule with each MANIFEST row.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/loader/keras3/manifest.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

using keras3::Manifest;
using keras3::Row;

TEST(Keras3TfFixtures, ManifestRowsAreCompleteAndNameExistingInputs) {
  const std::vector<Row> rows = Manifest();
  ASSERT_GE(rows.size(), 100u);
  const std::set<std::string> kinds = {"benign", "malicious", "malformed", "real-benign",
                                       "real-malicious"};
  const std::set<std::string> exits = {"0", "1", "2", "3"};
  std::set<std::string> seen;
  std::map<std::string, int> per_exit;
  for (const Row& r : rows) {
    const std::string key = r["file"] + " " + r["options"];
    EXPECT_TRUE(seen.insert(key).second) << "duplicate row " << key;
    EXPECT_TRUE(kinds.count(r["kind"])) << key;
    EXPECT_TRUE(exits.count(r["exit"])) << key;
    EXPECT_FALSE(r["rule"].empty()) << key;
    EXPECT_FALSE(r["proves"].empty()) << key;
    EXPECT_TRUE(Exists(Fixture("keras3_tf/" + r["file"]))) << key;
    if (r["exit"] != "0") {
      EXPECT_NE(r["rule"], "-") << key << ": a failure names its rule";
    }
    ++per_exit[r["exit"]];
  }
  // Every kind of verdict is represented.
  EXPECT_GE(per_exit["0"], 30);
  EXPECT_GE(per_exit["1"], 25);
  EXPECT_GE(per_exit["3"], 30);
  EXPECT_GE(per_exit["2"], 1);
}

TEST(Keras3TfFixtures, EveryConvertibleRowHasExpectedTensorsAndNoOtherRowHas) {
  const auto expected =
      nlohmann::json::parse(ReadFile(Fixture("keras3_tf/expected_tensors.json")));
  std::set<std::string> keys;
  for (const Row& r : Manifest()) {
    if (r["exit"] != "0") continue;
    const std::string key = r["options"] == "-" ? r["file"] : r["file"] + " " + r["options"];
    keys.insert(key);
    ASSERT_TRUE(expected.contains(key)) << key;
    const auto& tensors = expected[key]["tensors"];
    EXPECT_FALSE(tensors.empty()) << key;
    for (const auto& [name, t] : tensors.items()) {
      EXPECT_EQ(t["sha256"].get<std::string>().size(), 64u) << key << " " << name;
      EXPECT_TRUE(t["shape"].is_array()) << key << " " << name;
    }
  }
  for (const auto& [key, value] : expected.items()) EXPECT_TRUE(keys.count(key)) << key;
}

TEST(Keras3TfFixtures, EachFileCarriesWhatItsRowClaims) {
  if (!PythonHas({"h5py", "numpy"})) GTEST_SKIP() << "needs /usr/bin/python3 with h5py and numpy";
  std::string output;
  EXPECT_EQ(RunPython(Fixture("keras3_tf/check_fixtures.py"), {}, &output), 0) << output;
}

TEST(Keras3TfFixtures, WritersRebuildTheRealCorpusLayoutsByteForByte) {
  const std::string corpus = CorpusFile("keras");
  if (corpus.empty()) GTEST_SKIP() << "../shared/corpus/keras not available";
  if (!PythonHas({"h5py", "numpy"})) GTEST_SKIP() << "needs /usr/bin/python3 with h5py and numpy";
  std::string output;
  EXPECT_EQ(RunPython(Fixture("keras3_tf/check_corpus.py"), {corpus}, &output), 0) << output;
  EXPECT_NE(output.find("32 of 32 identical"), std::string::npos) << output;
  EXPECT_EQ(RunPython(Fixture("keras3_tf/make_slim.py"), {"--check", corpus}, &output), 0) << output;
}

}  // namespace
}  // namespace safemodel::testing
