// The HF checkpoint index parser (loader/hf_index/hf_index.h) through format
// detection, as the worker runs it: one test per rule, the output's shape,
// and detection beside the other formats.
#include "loader/hf_index/hf_index.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

InProcessResult Parse(const std::string& text) { return ParseInProcess(text); }

void ExpectMalformed(const std::string& text, const std::string& words) {
  const InProcessResult r = Parse(text);
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << text << ": " << r.status.ToString();
  EXPECT_NE(r.status.message().find(words), std::string::npos) << r.status.ToString();
}

TEST(HfIndex, AnIndexBecomesItsWeightMapAndMetadata) {
  const InProcessResult r = Parse(
      " \n{\"metadata\": {\"total_size\": 28, \"format\": \"pt\"},\n"
      " \"weight_map\": {\"b.weight\": \"m-00002.bin\", \"a.weight\": \"m-00001.bin\"}}\n");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "hf_index");
  EXPECT_TRUE(r.tensors.empty());
  ASSERT_TRUE(r.metadata.is_map());
  const Value* wm = r.metadata.Find("weight_map");
  ASSERT_NE(wm, nullptr);
  ASSERT_EQ(wm->entries().size(), 2u);
  EXPECT_EQ(wm->entries()[0].first, "b.weight");  // the file's order
  EXPECT_EQ(wm->Find("a.weight")->string_value(), "m-00001.bin");
  const Value* md = r.metadata.Find("metadata");
  ASSERT_NE(md, nullptr);
  EXPECT_EQ(md->Find("total_size")->int_value(), 28);
  EXPECT_TRUE(r.findings.empty());
}

TEST(HfIndex, AnotherTopLevelKeyIsDroppedWithAFinding) {
  const InProcessResult r = Parse(R"({"weight_map": {"x": "a.bin"}, "extra": [1, 2]})");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Rules(r.findings, Finding::Severity::kDropped), std::vector<std::string>{"hf_index.key_dropped"});
  EXPECT_EQ(r.metadata.Find("extra"), nullptr);
  EXPECT_EQ(r.metadata.Find("metadata"), nullptr);
}

TEST(HfIndex, ADuplicateKeyAtAnyLevelIsRefused) {
  ExpectMalformed(R"({"weight_map": {"x": "a.bin", "x": "b.bin"}})", "twice");
  ExpectMalformed(R"({"weight_map": {"x": "a.bin"}, "weight_map": {"y": "a.bin"}})", "twice");
  ExpectMalformed(R"({"weight_map": {"x": "a.bin"}, "metadata": {"a": {"k": 1, "k": 2}}})", "twice");
}

TEST(HfIndex, TheWeightMapMustBeAnObjectOfFileNameStrings) {
  ExpectMalformed(R"({"weight_map": ["a.bin"]})", "not an object");
  ExpectMalformed(R"({"weight_map": {}})", "empty");
  ExpectMalformed(R"({"metadata": {}})", "no \"weight_map\"");
  ExpectMalformed(R"({"weight_map": {"x": 3}})", "string");
  ExpectMalformed(R"({"weight_map": {"x": null}})", "string");
  ExpectMalformed(R"({"weight_map": {"x": NaN}})", "string");
  ExpectMalformed(R"({"weight_map": {"": "a.bin"}})", "empty name");
  ExpectMalformed(R"({"weight_map": {"x": "a.bin"}, "metadata": 3})", "\"metadata\"");
  // Not an object: not recognised as an index at all.
  EXPECT_EQ(Parse(R"([{"weight_map": {"x": "a.bin"}}])").status.code(), StatusCode::kUnsupported);
}

TEST(HfIndex, AShardIsAPlainFileName) {
  for (const char* name : {"sub/a.bin", "/etc/passwd", "..", ".", "../a.bin", "..\\\\a.bin", "",
                           "a\\u0000.bin", "a\\n.bin", "a\\u001f.bin", "a\\u007f.bin"}) {
    ExpectMalformed(std::string(R"({"weight_map": {"x": ")") + name + "\"}}", "plain file name");
  }
  ExpectMalformed(R"({"weight_map": {"x": ")" + std::string(256, 'a') + "\"}}", "plain file name");
  EXPECT_TRUE(Parse(R"({"weight_map": {"x": ")" + std::string(255, 'a') + "\"}}").status.ok());
}

TEST(HfIndex, NotJsonOrNotUtf8IsRefused) {
  ExpectMalformed(R"({"weight_map": {"x": "a.bin")", "not valid JSON");
  ExpectMalformed(R"({"weight_map": {"x": "a.bin"}} {})", "not valid JSON");
  ExpectMalformed("{\"weight_map\": {\"x\": \"a\xff.bin\"}}", "not valid JSON");
  ExpectMalformed("{\"weight_map\": {\"x\xc3\": \"a.bin\"}}", "not valid JSON");
}

TEST(HfIndex, NestingAndSizeAreCapped) {
  std::string deep = R"({"weight_map": {"x": "a.bin"}, "metadata": )";
  for (uint32_t i = 0; i < loader::kMaxHfIndexDepth; ++i) deep += "[";
  deep += std::string(loader::kMaxHfIndexDepth, ']') + "}";
  EXPECT_EQ(Parse(deep).status.code(), StatusCode::kLimitExceeded) << Parse(deep).status.ToString();
  // A million brackets cost a scan, not a stack.
  const std::string brackets = "{\"a\": " + std::string(1'000'000, '[');
  EXPECT_EQ(Parse(brackets).status.code(), StatusCode::kLimitExceeded);
  std::string big = R"({"weight_map": {"x": "a.bin"}, "metadata": {"pad": ")";
  big += std::string(loader::kMaxHfIndexBytes - big.size(), 'a') + "\"}}";
  const InProcessResult r = Parse(big);
  EXPECT_EQ(r.status.code(), StatusCode::kLimitExceeded) << r.status.ToString();
  EXPECT_NE(r.status.message().find("over the limit"), std::string::npos);
}

TEST(HfIndex, DetectionLeavesOtherFormatsAlone) {
  EXPECT_TRUE(loader::LooksLikeJsonObject(AsBytes(" \t\r\n{")));
  EXPECT_FALSE(loader::LooksLikeJsonObject(AsBytes("[{}]")));
  EXPECT_FALSE(loader::LooksLikeJsonObject(AsBytes("\xef\xbb\xbf{}")));  // a BOM: json.loads raises
  // A safetensors length of 0x7b200a bytes starts "\n {", then NULs.
  EXPECT_FALSE(loader::LooksLikeJsonObject(AsBytes(std::string("\n {\0\0\0\0\0{}", 10))));
  // A safetensors file: an 8-byte header length, then its JSON header.
  std::string st = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  std::string len(8, '\0');
  len[0] = static_cast<char>(st.size());
  const InProcessResult r = Parse(len + st + std::string(4, '\0'));
  EXPECT_EQ(r.source_format, "safetensors");
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  // Its header length may start with '{' (0x7b): still no index.
  len[0] = '{';
  const InProcessResult r2 = Parse(len + st + std::string(123 - st.size() + 4, ' '));
  EXPECT_NE(r2.source_format, "hf_index");
  // A pickle stays a pickle.
  EXPECT_EQ(Parse(std::string("\x80\x02}q\x00.", 6)).source_format, "pickle");
}

// An index that is also a tar archive to torch.load (a v7 header whose
// fields lie in a JSON string; /usr/bin/python3's tarfile.open and
// json.loads both accept these bytes) is two things to two loaders: refused.
TEST(HfIndex, AnIndexThatIsAlsoATarIsRefused) {
  std::string t = R"({"weight_map": {"x": "a.bin"}, "p": ")";
  t.resize(100, 'a');
  t += std::string(48, ' ');  // mode, uid, gid, size (0), mtime: blank octal
  t += std::string(8, ' ');   // the checksum, counted as spaces
  t += '0';                   // a regular file
  t.resize(500, ' ');         // link name, magic, owner, device numbers: blank
  t.resize(512, 'a');
  unsigned sum = 0;
  for (char c : t) sum += static_cast<unsigned char>(c);
  char field[9];
  std::snprintf(field, sizeof field, "%07o ", sum);
  t.replace(148, 8, field);
  t += std::string(1024, ' ') + "\"}";  // Python's tarfile lists one member; json.loads a dict
  const InProcessResult r = Parse(t);
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
  EXPECT_NE(r.status.message().find("two readings"), std::string::npos) << r.status.ToString();
}

}  // namespace
}  // namespace safemodel::testing
