// The pieces of the tensor-bundle reader: CRC32C, the strict protobuf wire
// reader, the LevelDB-format table (with a small table writer below, so
// that each defect can be made on its own with valid CRCs), bundles, the
// object graph and the checkpoint state file.
#include <gtest/gtest.h>

#include <cstdio>

#include <string>
#include <vector>

#include "loader/parser.h"
#include "loader/tf_bundle/bundle.h"
#include "loader/tf_bundle/checkpoint.h"
#include "loader/tf_bundle/crc32c.h"
#include "loader/tf_bundle/proto_wire.h"
#include "loader/tf_bundle/table.h"
#include "tests/testing/test_util.h"

namespace safemodel::loader::tf {
namespace {

using testing::Fixture;
using testing::ReadFile;
using namespace std::string_literals;

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

std::string U32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[static_cast<size_t>(i)] = static_cast<char>(v >> (8 * i));
  return out;
}

// A block as TensorFlow's BlockBuilder writes it; `restarts` overrides the
// restart array (for defects).
std::string Block(const std::vector<std::pair<std::string, std::string>>& entries, size_t interval,
                  const std::vector<uint32_t>* restarts = nullptr) {
  std::string out, last;
  std::vector<uint32_t> starts;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& [key, value] = entries[i];
    size_t shared = 0;
    if (i % interval == 0) {
      starts.push_back(static_cast<uint32_t>(out.size()));
    } else {
      while (shared < key.size() && shared < last.size() && key[shared] == last[shared]) ++shared;
    }
    out += Varint(shared) + Varint(key.size() - shared) + Varint(value.size()) + key.substr(shared) + value;
    last = key;
  }
  if (starts.empty()) starts.push_back(0);
  if (restarts != nullptr) starts = *restarts;
  for (uint32_t s : starts) out += U32(s);
  return out + U32(static_cast<uint32_t>(starts.size()));
}

std::string Trailer(const std::string& block, uint8_t type = 0) {
  const uint8_t t[1] = {type};
  return std::string(1, static_cast<char>(type)) +
         U32(MaskCrc(Crc32cExtend(Crc32c(AsBytes(block)), ByteView(t, 1))));
}

struct TableSpec {
  std::vector<std::vector<std::pair<std::string, std::string>>> blocks;
  std::vector<std::string> separators;  // one per block
  std::vector<uint32_t>* restarts = nullptr;  // for the first block
};

std::string Table(const TableSpec& spec) {
  std::string file;
  std::vector<std::pair<std::string, std::string>> index;
  for (size_t b = 0; b < spec.blocks.size(); ++b) {
    const std::string block = Block(spec.blocks[b], 16, b == 0 ? spec.restarts : nullptr);
    index.emplace_back(spec.separators[b], Varint(file.size()) + Varint(block.size()));
    file += block + Trailer(block);
  }
  const std::string meta = Block({}, 16);
  const uint64_t meta_at = file.size();
  file += meta + Trailer(meta);
  const std::string idx = Block(index, 1);
  const uint64_t idx_at = file.size();
  file += idx + Trailer(idx);
  std::string footer = Varint(meta_at) + Varint(meta.size()) + Varint(idx_at) + Varint(idx.size());
  footer.resize(40, '\0');
  footer += U32(static_cast<uint32_t>(kTableMagic)) + U32(static_cast<uint32_t>(kTableMagic >> 32));
  return file + footer;
}

TEST(Crc32c, CheckValueAndMask) {
  EXPECT_EQ(Crc32c(AsBytes("123456789")), 0xE3069283u);
  EXPECT_EQ(Crc32c(AsBytes("")), 0u);
  EXPECT_EQ(Crc32cExtend(Crc32c(AsBytes("1234")), AsBytes("56789")), 0xE3069283u);
  // Long input (the word-at-a-time path) against a byte-at-a-time sum.
  std::string big(1000, 'x');
  uint32_t c = 0;
  for (char ch : big) c = Crc32cExtend(c, AsBytes(std::string_view(&ch, 1)));
  EXPECT_EQ(Crc32c(AsBytes(big)), c);
  for (uint32_t v : {0u, 1u, 0xFFFFFFFFu, 0xE3069283u}) EXPECT_EQ(UnmaskCrc(MaskCrc(v)), v);
}

TEST(ProtoWire, VarintsMustBeShortestAndAtMostTenBytes) {

  for (const auto& [bytes, ok] : std::vector<std::pair<std::string, bool>>{
           {"\x00"s, true}, {"\x7f"s, true}, {"\x80\x01"s, true}, {"\x80\x00"s, false},
           {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"s, true},
           {"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"s, false},
           {std::string(11, '\x80'), false}, {"\x80"s, false}}) {
    ByteReader r(AsBytes(bytes));
    EXPECT_EQ(proto::ReadVarint(r, "v"s).ok(), ok) << bytes.size() << " bytes";
  }
}

TEST(ProtoWire, DecodeMessageIsStrict) {
  constexpr proto::FieldSpec kSpec[] = {{1, proto::WireType::kVarint, false},
                                        {2, proto::WireType::kLen, true}};
  auto decode = [&](const std::string& b) { return proto::DecodeMessage(AsBytes(b), kSpec, "m"s); };
  EXPECT_TRUE(decode("\x08\x05\x12\x01x\x12\x00"s).ok());
  EXPECT_FALSE(decode("\x08\x05\x08\x06"s).ok());          // singular field twice
  EXPECT_FALSE(decode("\x18\x01"s).ok());                  // unknown field 3
  EXPECT_FALSE(decode("\x0a\x00"s).ok());                  // field 1 with the wrong wire type
  EXPECT_FALSE(decode("\x12\x05xy"s).ok());                // length past the end
  EXPECT_FALSE(decode("\x0b"s).ok());                      // a group
  EXPECT_FALSE(decode("\x00"s).ok());                      // field number 0
  EXPECT_FALSE(decode("\x08"s).ok());                      // truncated value
}

TEST(Table, ReadsTensorFlowsLayoutWithSeveralBlocksAndRestarts) {
  auto table = ReadTable(AsBytes(ReadFile(Fixture("keras3_tf/tf/ckpt_tf1_multiblock/model.ckpt.index"))), "t");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_EQ(table->size(), 41u);
  EXPECT_EQ((*table)[0].key, "");
  EXPECT_EQ((*table)[1].key, "dense_00/kernel");
  EXPECT_EQ((*table)[40].key, "dense_39/kernel");
  // Written by the test's own writer: 40 keys over two blocks.
  TableSpec spec;
  spec.blocks.resize(2);
  for (int i = 0; i < 40; ++i) {
    spec.blocks[i < 20 ? 0 : 1].emplace_back("key/" + std::to_string(100 + i), "v");
  }
  spec.separators = {"key/12", "key/2"};
  auto mine = ReadTable(AsBytes(Table(spec)), "t");
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  EXPECT_EQ(mine->size(), 40u);
}

TEST(Table, RefusesEachDefectNamingTfTable) {
  auto expect_bad = [](const std::string& file, const std::string& why) {
    auto t = ReadTable(AsBytes(file), "t");
    ASSERT_FALSE(t.ok()) << why;
    EXPECT_NE(t.status().message().find("tf.table"), std::string::npos) << why << ": " << t.status().ToString();
  };
  TableSpec good;
  good.blocks = {{{"a", "1"}, {"b", "2"}}, {{"c", "3"}}};
  good.separators = {"b", "c"};
  ASSERT_TRUE(ReadTable(AsBytes(Table(good)), "t").ok());

  TableSpec unsorted = good;
  unsorted.blocks[0] = {{"b", "2"}, {"a", "1"}};
  expect_bad(Table(unsorted), "keys out of order");
  TableSpec duplicate = good;
  duplicate.blocks[1] = {{"b", "3"}};
  expect_bad(Table(duplicate), "a key twice, across blocks");
  TableSpec low_separator = good;
  low_separator.separators[0] = "a";
  expect_bad(Table(low_separator), "separator below the block's last key");
  TableSpec high_separator = good;
  high_separator.separators[0] = "c";
  expect_bad(Table(high_separator), "separator not below the next block's first key");
  std::vector<uint32_t> wrong_restart{3};
  TableSpec restart = good;
  restart.restarts = &wrong_restart;
  expect_bad(Table(restart), "a restart offset inside an entry");

  std::string file = Table(good);
  std::string flipped = file;
  flipped[1] ^= 0x01;
  expect_bad(flipped, "block CRC");
  std::string magic = file;
  magic.back() ^= 0x01;
  expect_bad(magic, "magic");
  expect_bad(file.substr(0, file.size() - 1), "truncated footer");
  expect_bad(file + std::string(1, '\0'), "a byte after the footer");
  expect_bad(std::string(7, 'x') + file, "bytes before the first block");
}

TEST(Table, SnappyBlocksAreUnsupported) {
  auto t = ReadTable(AsBytes(ReadFile(Fixture("keras3_tf/tf/ckpt_snappy_block/ckpt.index"))), "t");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnsupported);
}

TEST(Table, NoByteFlipCrashesTheReader) {
  const std::string file = ReadFile(Fixture("keras3_tf/tf/ckpt_basic/ckpt-1.index"));
  for (size_t i = 0; i < file.size(); ++i) {
    for (int bit : {0x01, 0x80}) {
      std::string m = file;
      m[i] = static_cast<char>(m[i] ^ bit);
      (void)ReadTable(AsBytes(m), "t");  // a status, never a crash (ASan build)
    }
  }
}

std::vector<DataFile> Data(const std::string& dir, const std::string& stem, int shards,
                           std::vector<std::string>* storage) {
  std::vector<DataFile> out;
  storage->reserve(static_cast<size_t>(shards));
  for (int i = 0; i < shards; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "%s.data-%05d-of-%05d", stem.c_str(), i, shards);
    storage->push_back(ReadFile(dir + "/" + name));
    out.push_back({name, AsBytes(storage->back())});
  }
  return out;
}

TEST(Bundle, ReadsTensorsAndChecksTheirCrcWhenStreamed) {
  const std::string dir = Fixture("keras3_tf/tf/ckpt_basic");
  const std::string index = ReadFile(dir + "/ckpt-1.index");
  std::vector<std::string> storage;
  std::vector<DataFile> data = Data(dir, "ckpt-1", 1, &storage);
  auto bundle = ReadBundle(AsBytes(index), "ckpt-1.index", data);
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  EXPECT_TRUE(bundle->object_graph.has_value());
  ASSERT_EQ(bundle->tensors.size(), 10u);
  for (const BundleTensor& t : bundle->tensors) {
    Tensor tensor = MakeBundleTensor(*bundle, t, t.key);
    EXPECT_TRUE(tensor.source().ok()) << t.key;
  }
  // One flipped bit in the data file: the tensor that holds it fails its CRC.
  storage[0][storage[0].size() - 20] ^= 0x01;
  data = {{data[0].name, AsBytes(storage[0])}};
  bundle = ReadBundle(AsBytes(index), "ckpt-1.index", data);
  ASSERT_TRUE(bundle.ok());
  int failures = 0;
  for (const BundleTensor& t : bundle->tensors) {
    Result<Elements> e = MakeBundleTensor(*bundle, t, t.key).source();
    if (!e.ok()) {
      ++failures;
      EXPECT_NE(e.status().message().find("tf.bundle_crc"), std::string::npos);
    }
  }
  EXPECT_EQ(failures, 1);
}

TEST(Bundle, DataFilesMustBeThisBundlesAndAllPresent) {
  const std::string dir = Fixture("keras3_tf/tf/ckpt_two_shards");
  const std::string index = ReadFile(dir + "/ckpt.index");
  std::vector<std::string> storage;
  std::vector<DataFile> data = Data(dir, "ckpt", 2, &storage);
  EXPECT_TRUE(ReadBundle(AsBytes(index), "ckpt.index", data).ok());
  auto missing = ReadBundle(AsBytes(index), "ckpt.index", {data[0]});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("tf.bundle_shard"), std::string::npos);
  std::vector<DataFile> twice = {data[0], data[1], data[1]};
  EXPECT_FALSE(ReadBundle(AsBytes(index), "ckpt.index", twice).ok());
  std::vector<DataFile> other = {data[0], data[1], {"other.data-00000-of-00001", data[0].bytes}};
  EXPECT_FALSE(ReadBundle(AsBytes(index), "ckpt.index", other).ok());
}

TEST(ObjectGraph, GroupsTheRealTf22CheckpointByLayerInCreationOrder) {
  const std::string dir = Fixture("keras3_tf/corpus/keras-team__tf-keras__lso_ckpt_tf2.2");
  std::vector<std::string> storage;
  auto bundle = ReadBundle(AsBytes(ReadFile(dir + "/ckpt.index")), "ckpt.index", Data(dir, "ckpt", 2, &storage));
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  auto graph = ParseObjectGraph(*bundle->object_graph);
  ASSERT_TRUE(graph.ok()) << graph.status().ToString();
  EXPECT_EQ(graph->nodes.size(), 15u);
  std::vector<std::string> kept = {"layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE",
                                   "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"};
  Value groups = ObjectGraphGroups(*graph, kept);
  ASSERT_EQ(groups.list().size(), 1u);
  EXPECT_EQ(groups.list()[0].Find("path")->string_value(), "layer_with_weights-0");
  const auto& w = groups.list()[0].Find("weights")->list();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].string_value(), kept[1]);  // kernel first: the layer created it first
  EXPECT_EQ(w[1].string_value(), kept[0]);
}

TEST(CheckpointState, NamesAPrefixBesideItOrIsRefused) {
  auto read = [](const std::string& text, ParseContext* ctx) { return ReadCheckpointState(AsBytes(text), *ctx); };
  {
    ParseContext ctx({});
    auto p = read("model_checkpoint_path: \"ckpt-2\"\nall_model_checkpoint_paths: \"ckpt-1\"\n"
                  "all_model_checkpoint_paths: \"ckpt-2\"\nall_model_checkpoint_timestamps: 1.7e9\n"
                  "last_preserved_timestamp: 1699999999.5\n", &ctx);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(*p, "ckpt-2");
    EXPECT_FALSE(ctx.refused());
  }
  for (const char* bad : {"model_checkpoint_path: \"../x\"", "model_checkpoint_path: \"/abs/ckpt\"",
                          "model_checkpoint_path: \"ok\"\nall_model_checkpoint_paths: \"a/../../x\"",
                          "model_checkpoint_path: \"\\056\\056/x\""}) {
    ParseContext ctx({});
    (void)read(bad, &ctx);
    EXPECT_TRUE(ctx.refused()) << bad;
  }
  for (const char* malformed : {"model_checkpoint_path: ckpt", "unknown_field: \"x\"", "model_checkpoint_path: \"a",
                                "model_checkpoint_path: \"a\"\nmodel_checkpoint_path: \"b\"", ""}) {
    ParseContext ctx({});
    auto p = read(malformed, &ctx);
    EXPECT_FALSE(p.ok()) << malformed;
    EXPECT_FALSE(ctx.refused()) << malformed;
  }
  ParseContext ctx({});
  auto sub = read("model_checkpoint_path: \"sub/ckpt\"", &ctx);
  ASSERT_FALSE(sub.ok());
  EXPECT_EQ(sub.status().code(), StatusCode::kUnsupported);
}

TEST(KeyRoles, FollowTensorFlowsAndKerassConventions) {
  EXPECT_EQ(ClassifyKey("layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"), KeyRole::kWeight);
  EXPECT_EQ(ClassifyKey("layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"),
            KeyRole::kOptimizer);
  EXPECT_EQ(ClassifyKey("optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"), KeyRole::kOptimizer);
  EXPECT_EQ(ClassifyKey("keras_api/metrics/0/total/.ATTRIBUTES/VARIABLE_VALUE"), KeyRole::kMetric);
  EXPECT_EQ(ClassifyKey("save_counter/.ATTRIBUTES/VARIABLE_VALUE"), KeyRole::kBookkeeping);
  EXPECT_EQ(ClassifyKey("dense/kernel"), KeyRole::kWeight);
}

}  // namespace
}  // namespace safemodel::loader::tf
