// The conversion of a torch state_dict (pickle_convert.cc): a pure
// state_dict is registered without its Value tree and the graph's objects
// are freed before the tensors are emitted. These tests pin down that the
// result is the walk's result in every case the shortcut could get wrong:
// objects reached through the memo long after they were made, a storage
// shared by tensors far apart, and dicts that are almost, but not quite, a
// pure state_dict. The inputs are legacy torch.save streams (the same
// conversion as the zip format's data.pkl), built opcode by opcode.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "safemodel/limits.h"

#include "loader/parser.h"
#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/pickle_machine.h"

#include "tests/loader/pickle/pickle_bytes.h"
#include "tests/testing/loader_util.h"

namespace safemodel::testing {
namespace {

constexpr int kEntries = 3000;  // past the memo's one-byte BINPUT keys

const std::string kFalse = B({0x89});
const std::string kHooks = Global("collections", "OrderedDict") + ")R";

// LONG_BINPUT / LONG_BINGET of memo slot `slot`.
std::string Put(uint32_t slot) { return "r" + LE(slot, 4); }
std::string Get(uint32_t slot) { return "j" + LE(slot, 4); }

// The persistent id of float storage `key` (2 elements), memoized in `slot`.
std::string Storage(const std::string& key, uint32_t slot) {
  return "(" + Str("storage") + Global("torch", "FloatStorage") + Str(key) + Str("cpu") + Int1(2) +
         "NtQ" + Put(slot);
}

// The same with the storage type `type` ("FloatStorage", ...).
std::string TypedStorage(const std::string& type, const std::string& key, uint32_t slot) {
  return "(" + Str("storage") + Global("torch", type) + Str(key) + Str("cpu") + Int1(2) + "NtQ" +
         Put(slot);
}

// _rebuild_tensor_v2 over `storage` (an expression leaving the storage on
// the stack): shape (2,), stride (1,), offset 0.
std::string Tensor(const std::string& storage) {
  return Global("torch._utils", "_rebuild_tensor_v2") + "(" + storage + Int1(0) + "(" + Int1(2) +
         "t(" + Int1(1) + "t" + kFalse + kHooks + "tR";
}

// A legacy torch.save stream of the dict whose SETITEMS body is `items`,
// over the storages `keys` (each 2 float32 elements: i, i + 0.5).
// `dict_open` makes the empty dict, `after` follows its SETITEMS.
std::string Legacy(const std::string& items, const std::vector<std::string>& keys,
                   const std::string& dict_open = "}", const std::string& after = "") {
  const std::string magic =
      P2(B({0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}));
  const std::string version = P2("M" + LE(1001, 2));
  const std::string sys_info = P2("}(X" + LE(13, 4) + "little_endian" + B({0x88}) + "u");
  std::string key_list = "](";
  std::string data;
  for (size_t i = 0; i < keys.size(); ++i) {
    key_list += Str(keys[i]);
    const float v[2] = {static_cast<float>(i), static_cast<float>(i) + 0.5f};
    data += LE(2, 8) + std::string(reinterpret_cast<const char*>(v), sizeof v);
  }
  return magic + version + sys_info + P2(dict_open + "(" + items + "u" + after) + P2(key_list + "e") +
         data;
}

std::string Name(int i) { return "layer." + std::to_string(i) + ".weight"; }
std::string Key(int i) { return "s" + std::to_string(i); }

// kEntries tensors, entry i over storage i.
struct StateDict {
  std::string items;
  std::vector<std::string> keys;
};
StateDict Plain(int n) {
  StateDict d;
  for (int i = 0; i < n; ++i) {
    d.items += Str(Name(i)) + Tensor(Storage(Key(i), static_cast<uint32_t>(2 * i)));
    d.keys.push_back(Key(i));
  }
  return d;
}

std::string Floats(float a, float b) {
  const float v[2] = {a, b};
  return std::string(reinterpret_cast<const char*>(v), sizeof v);
}

TEST(PickleConvert, PureStateDictHasEveryTensorAndNoMetadata) {
  StateDict d = Plain(kEntries);
  InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_TRUE(r.metadata.is_null());
  ASSERT_EQ(r.tensors.size(), static_cast<size_t>(kEntries));
  for (int i : {0, 1, kEntries / 2, kEntries - 1}) {
    const ParsedTensor& t = r.tensors.at(Name(i));
    EXPECT_EQ(t.shape, std::vector<uint64_t>{2});
    EXPECT_EQ(t.bytes, Floats(static_cast<float>(i), static_cast<float>(i) + 0.5f)) << i;
  }
}

// The last entry fetches the first entry's tensor from the memo: one tensor
// object under two keys is one tensor, so the dict is not a plain list of
// tensors and its tree is the metadata, the last key naming the first
// tensor.
TEST(PickleConvert, TensorRefetchedFromTheMemoAfterManyEntriesKeepsTheTree) {
  StateDict d;
  d.items = Str(Name(0)) + Tensor(Storage(Key(0), 0)) + Put(1);
  d.keys.push_back(Key(0));
  for (int i = 1; i < kEntries - 1; ++i) {
    d.items += Str(Name(i)) + Tensor(Storage(Key(i), static_cast<uint32_t>(2 * i)));
    d.keys.push_back(Key(i));
  }
  d.items += Str("again") + Get(1);
  InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tensors.size(), static_cast<size_t>(kEntries - 1));
  EXPECT_EQ(r.tensors.count("again"), 0u);
  ASSERT_TRUE(r.metadata.is_map());
  ASSERT_EQ(r.metadata.entries().size(), static_cast<size_t>(kEntries));
  const Value* again = r.metadata.Find("again");
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(again->is_map());
  ASSERT_NE(again->Find("$tensor"), nullptr);
  EXPECT_EQ(again->Find("$tensor")->string_value(), Name(0));
  const Value* last = r.metadata.Find(Name(kEntries - 2));
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->Find("$tensor")->string_value(), Name(kEntries - 2));
}

// Two distinct tensor objects, the first and the last, view one storage
// (its persistent id fetched from the memo thousands of entries later): tied
// weights, the bytewise-smaller name keeps the bytes, the other is an alias.
// Still a pure state_dict: no metadata.
TEST(PickleConvert, StorageSharedByTensorsFarApartIsOneTensorAndAnAlias) {
  StateDict d = Plain(kEntries - 1);
  d.items += Str("zz.tied") + Tensor(Get(0));
  InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_TRUE(r.metadata.is_null());
  ASSERT_EQ(r.tensors.size(), static_cast<size_t>(kEntries));
  EXPECT_EQ(r.tensors.at("zz.tied").alias_of, Name(0));
  EXPECT_EQ(r.tensors.at(Name(0)).alias_of, "");
  EXPECT_EQ(r.tensors.at(Name(0)).bytes, Floats(0.0f, 0.5f));
  bool noted = false;
  for (const Finding& f : r.findings) noted = noted || f.rule == "torch.shared_storage";
  EXPECT_TRUE(noted);
}

// The side tables' chunks (4,096 records) are freed as the tensors are
// emitted: a storage of the first chunk used again after two more, by a
// tensor and as a bare storage, is still read right, and the middle
// entries' bytes are their own.
TEST(PickleConvert, AStorageUsedAgainChunksLaterIsStillRead) {
  constexpr int kMany = 9000;
  StateDict d = Plain(kMany);
  d.items += Str("zz.tied") + Tensor(Get(0)) + Str("zz.storage") + Get(0);
  InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.tensors.size(), static_cast<size_t>(kMany + 2));
  EXPECT_EQ(r.tensors.at("zz.tied").alias_of, Name(0));
  const ParsedTensor& bare = r.tensors.at("zz.storage");
  EXPECT_EQ(bare.shape, std::vector<uint64_t>{2});
  const std::string& bare_bytes = bare.alias_of.empty() ? bare.bytes : r.tensors.at(bare.alias_of).bytes;
  EXPECT_EQ(bare_bytes, Floats(0.0f, 0.5f));
  for (int i : {0, 4095, 4096, 8191, 8192, kMany - 1}) {
    EXPECT_EQ(r.tensors.at(Name(i)).bytes, Floats(static_cast<float>(i), static_cast<float>(i) + 0.5f)) << i;
  }
}

// _rebuild_tensor_v2 over `storage` with offset `offset`, shape (2,) and
// stride (`stride`,).
std::string View(const std::string& storage, int offset, int stride) {
  return Global("torch._utils", "_rebuild_tensor_v2") + "(" + storage + Int1(offset) + "(" +
         Int1(2) + "t(" + Int1(stride) + "t" + kFalse + kHooks + "tR";
}

// A tensor's source holds its strides only when they are not C-contiguous
// (loader/pickle: TorchSources): an expanded view (stride 0) beside a plain
// one over the same storage, each with its own bytes; a view that reaches
// outside its storage is named by its origin, told only for the message.
TEST(PickleConvert, StridedViewsKeepTheirStridesAndABadViewItsOrigin) {
  InProcessResult r = ParseInProcess(
      Legacy(Str("plain") + View(Storage("s0", 0), 0, 1) + Str("expanded") + View(Get(0), 1, 0),
             {"s0"}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tensors.at("plain").bytes, Floats(0.0f, 0.5f));
  EXPECT_EQ(r.tensors.at("expanded").bytes, Floats(0.5f, 0.5f));
  EXPECT_EQ(r.tensors.at("expanded").alias_of, "");

  InProcessResult bad = ParseInProcess(Legacy(Str("w") + View(Storage("s0", 0), 1, 1), {"s0"}));
  EXPECT_EQ(bad.status.code(), StatusCode::kMalformed);
  EXPECT_NE(bad.status.message().find(" tensor 'w' (storage 's0'): "), std::string::npos)
      << bad.status.message();
}

// Dicts that are a state_dict but for one thing keep their whole tree.
TEST(PickleConvert, AlmostPureStateDictsKeepTheirTree) {
  struct Case {
    const char* what;
    std::string last;   // the last key and value
    std::string after;  // after the dict's SETITEMS
    const char* probe;  // a metadata key that must be there
  };
  const std::string ordered = Global("collections", "OrderedDict") + ")R";
  const std::string metadata = "}(" + Str("_metadata") + "}(" + Str("") + "}uub";
  const Case cases[] = {
      {"an int value", Str("step") + Int1(7), "", "step"},
      {"a list value", Str("list") + "]" + Int1(1) + "a", "", "list"},
      {"a key with a NUL", Str(std::string("nul\0key", 7)) + Tensor(Storage("extra", 99999)), "",
       nullptr},
      {"an empty key (its tensor is named 'tensor')", Str("") + Tensor(Storage("extra", 99999)),
       "", ""},
      {"OrderedDict attributes", Str("last") + Tensor(Storage("extra", 99999)), metadata,
       "$attrs"},
  };
  for (const Case& c : cases) {
    StateDict d = Plain(kEntries - 1);
    d.items += c.last;
    if (c.last.find("extra") != std::string::npos) d.keys.push_back("extra");
    const bool attrs = !c.after.empty();
    InProcessResult r = ParseInProcess(Legacy(d.items, d.keys, attrs ? ordered : "}", c.after));
    ASSERT_TRUE(r.status.ok()) << c.what << ": " << r.status.ToString();
    ASSERT_TRUE(r.metadata.is_map()) << c.what;
    EXPECT_EQ(r.metadata.entries().size(), static_cast<size_t>(kEntries + (attrs ? 1 : 0)))
        << c.what;
    if (c.probe != nullptr) {
      EXPECT_NE(r.metadata.Find(c.probe), nullptr) << c.what;
    }
    const Value* first = r.metadata.Find(Name(0));
    ASSERT_NE(first, nullptr) << c.what;
    EXPECT_EQ(first->Find("$tensor")->string_value(), Name(0)) << c.what;
  }
  // A non-str key is left to the walk, which renders it as its repr and
  // finds the dict a plain list of tensors all the same.
  {
    StateDict d = Plain(kEntries - 1);
    d.items += Int1(5) + Tensor(Storage("extra", 99999));
    d.keys.push_back("extra");
    InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_TRUE(r.metadata.is_null());
    EXPECT_EQ(r.tensors.count("5"), 1u);
  }
  // An OrderedDict without attributes is a pure state_dict.
  StateDict d = Plain(kEntries);
  InProcessResult plain = ParseInProcess(Legacy(d.items, d.keys, ordered));
  ASSERT_TRUE(plain.status.ok()) << plain.status.ToString();
  EXPECT_TRUE(plain.metadata.is_null());
  EXPECT_EQ(plain.tensors.size(), static_cast<size_t>(kEntries));
}

// A too-long name in a pure state_dict fails exactly as the walk does.
TEST(PickleConvert, OverlongNameInAPureStateDictIsRefusedAsBefore) {
  StateDict d = Plain(10);
  d.items += Str(std::string(kMaxNameBytes + 1, 'n')) + Tensor(Storage("extra", 99));
  d.keys.push_back("extra");
  InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
  EXPECT_EQ(r.status.code(), StatusCode::kLimitExceeded) << r.status.ToString();
  EXPECT_NE(r.status.message().find("tensor name of " + std::to_string(kMaxNameBytes + 1) + " bytes exceeds"), std::string::npos)
      << r.status.message();
}

// ConvertGraph frees the graph's objects before emitting the tensors when
// the caller says it will not read them (the torch and pickle parsers), and
// leaves them otherwise (the Keras 3 weight store reads the dict after).
TEST(PickleConvert, ReleaseObjectsFreesTheGraphOnlyWhenAsked) {
  // {'a': b'xy', 'n': 1}: not a state_dict (the walk), bytes the machine
  // decoded stay alive for the model.
  const std::string p = B({0x80, 2}) + "}(" + Short("a") + "U" + LE(2, 1) + "xy" + Short("n") +
                        Int1(1) + "u.";
  for (bool release : {false, true}) {
    loader::ParseContext ctx(loader::ParseOptions{});
    auto graph = std::make_shared<loader::pickle::Graph>();
    loader::pickle::Machine machine(ctx, *graph, loader::pickle::MachineOptions{});
    uint64_t end = 0;
    Result<loader::pickle::Ref> root = machine.Run(AsBytes(p), 0, &end);
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    const size_t objects = graph->objects.size();
    ASSERT_GT(objects, 0u);
    loader::pickle::ConvertSettings settings;
    settings.release_objects = release;
    loader::ParsedModel out;
    Result<loader::pickle::Converted> c =
        loader::pickle::ConvertGraph(graph, *root, settings, ctx, &out);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(graph->objects.size(), release ? 0u : objects);
    ASSERT_TRUE(c->metadata.is_map());
    EXPECT_EQ(c->metadata.Find("a")->string_value(), "xy");
    EXPECT_EQ(c->metadata.Find("n")->int_value(), 1);
  }
}

// The walk tells ConvertSettings::name_read of every str it reads, as the
// view it reads (so that a caller can count reads of its map): here the
// keys and the str value of a dict that is not a state_dict.
TEST(PickleConvert, TheWalkTellsEveryNameItReads) {
  const std::string p = B({0x80, 2}) + "}(" + Short("alpha") + Short("text") + Short("n") +
                        Int1(1) + "u.";
  loader::ParseContext ctx(loader::ParseOptions{});
  auto graph = std::make_shared<loader::pickle::Graph>();
  loader::pickle::Machine machine(ctx, *graph, loader::pickle::MachineOptions{});
  uint64_t end = 0;
  const ByteView stream = AsBytes(p);
  Result<loader::pickle::Ref> root = machine.Run(stream, 0, &end);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  std::vector<std::string> told;
  loader::pickle::ConvertSettings settings;
  settings.name_read = [&](ByteView name) {
    EXPECT_TRUE(name.data() >= stream.data() && name.data() + name.size() <= stream.data() + stream.size());
    told.emplace_back(AsChars(name));
  };
  loader::ParsedModel out;
  Result<loader::pickle::Converted> c = loader::pickle::ConvertGraph(graph, *root, settings, ctx, &out);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  for (const char* name : {"alpha", "text", "n"}) {
    EXPECT_NE(std::find(told.begin(), told.end(), name), told.end()) << name;
  }
  ASSERT_TRUE(c->metadata.is_map());
  EXPECT_EQ(c->metadata.Find("alpha")->string_value(), "text");
}

// Storages keep their type's name as one shared string per type: the
// message about a storage read again as another type still names both.
TEST(PickleConvert, AStorageReadAgainAsAnotherTypeNamesBothTypes) {
  StateDict d = Plain(3);
  d.items += Str("again") + Tensor(TypedStorage("DoubleStorage", Key(1), 100));
  InProcessResult r = ParseInProcess(Legacy(d.items, d.keys));
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
  EXPECT_NE(r.status.message().find("storage 's1' was torch.FloatStorage of size 2 before, now "
                                    "torch.DoubleStorage of size 2"),
            std::string::npos)
      << r.status.ToString();
}

// The tensor list of a model that many pickles convert into (an .npz of
// object arrays: one conversion per member) grows geometrically, while one
// conversion into an empty list reserves exactly what it needs.
TEST(PickleConvert, ReservingForManyConversionsStaysGeometric) {
  std::vector<int> one;
  loader::pickle::ReserveForMore(one, 100'000);
  EXPECT_EQ(one.capacity(), 100'000u);
  std::vector<int> many;
  size_t moves = 0;
  for (int member = 0; member < 100'000; ++member) {
    const size_t before = many.capacity();
    loader::pickle::ReserveForMore(many, 2);
    many.push_back(member);
    many.push_back(member);
    moves += many.capacity() != before ? 1u : 0u;
  }
  EXPECT_EQ(many.size(), 200'000u);
  EXPECT_LE(moves, 20u);  // log2(200,000) ~ 18: an exact reserve per member moved 100,000 times
}

}  // namespace
}  // namespace safemodel::testing
