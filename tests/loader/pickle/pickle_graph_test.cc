// The pickle graph's item storage: the arena of fixed spans (chunk
// boundaries, blocks of their own, no move), and objects whose items are set
// once, grown in place, or bytes (the payload a kind decides).
#include "loader/pickle/pickle_graph.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "loader/parser.h"
#include "loader/pickle/pickle_builder.h"
#include "loader/pickle/pickle_keys.h"
#include "loader/pickle/pickle_interpreter.h"
#include "loader/pickle/pickle_machine.h"
#include "tests/loader/pickle/pickle_bytes.h"

namespace safemodel::loader::pickle {
namespace {

// n distinct items starting at `first`.
std::vector<Ref> Items(size_t n, int64_t first) {
  std::vector<Ref> v;
  for (size_t i = 0; i < n; ++i) v.push_back(Ref::Int(first + static_cast<int64_t>(i)));
  return v;
}

bool SameItems(std::span<const Ref> got, const std::vector<Ref>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].kind != want[i].kind || got[i].i != want[i].i) return false;
  }
  return true;
}

TEST(ItemArena, SpansAcrossChunksNeverMoveAndKeepTheirItems) {
  ItemArena arena;
  EXPECT_EQ(arena.Copy({}), nullptr);
  EXPECT_EQ(arena.blocks(), 0u);
  // Spans of 1..7 items until well past three chunks: every span lies in one
  // chunk (the tail that does not fit starts a new chunk).
  struct Span {
    const Ref* at;
    std::vector<Ref> want;
  };
  std::vector<Span> spans;
  size_t total = 0;
  int64_t next = 0;
  for (size_t i = 0; total < 3 * ItemArena::kChunkItems + 100; ++i) {
    std::vector<Ref> v = Items(1 + i % 7, next);
    next += static_cast<int64_t>(v.size());
    total += v.size();
    const Ref* at = arena.Copy(v);
    ASSERT_NE(at, nullptr);
    spans.push_back({at, std::move(v)});
  }
  // (Sanitizer builds give every span a block of its own.)
  EXPECT_EQ(arena.blocks(), ItemArena::kBlockPerSpan ? spans.size() : 4u);
  for (const Span& s : spans) {
    ASSERT_TRUE(SameItems({s.at, s.want.size()}, s.want)) << s.want[0].i;
  }
}

TEST(ItemArena, AChunkIsFilledExactlyAndLongSpansGetABlockOfTheirOwn) {
  ItemArena arena;
  // Fill the first chunk to its last item with spans of the largest size a
  // chunk takes, then one of exactly what is left.
  const size_t big = ItemArena::kOwnBlockItems;
  const Ref* first = arena.Copy(Items(big, 0));
  const Ref* second = arena.Copy(Items(big, 1000000));
  const Ref* third = arena.Copy(Items(big, 2000000));
  const Ref* last = arena.Copy(Items(ItemArena::kChunkItems - 3 * big, 3000000));
  // Sanitizer builds give every span a block of its own: only the items are
  // checked there.
  const bool layout = !ItemArena::kBlockPerSpan;
  EXPECT_EQ(arena.blocks(), layout ? 1u : 4u);
  if (layout) {
    EXPECT_EQ(second, first + big);
    EXPECT_EQ(third, second + big);
    EXPECT_EQ(last, third + big);
  }
  // One item more starts a second chunk.
  const Ref* one = arena.Copy(Items(1, 7));
  EXPECT_EQ(arena.blocks(), layout ? 2u : 5u);
  // A span one past kOwnBlockItems gets its own block and leaves the
  // current chunk's free space to the next small span.
  const Ref* own = arena.Copy(Items(big + 1, 5000000));
  EXPECT_EQ(arena.blocks(), layout ? 3u : 6u);
  const Ref* two = arena.Copy(Items(2, 9));
  EXPECT_EQ(arena.blocks(), layout ? 3u : 7u);
  if (layout) {
    EXPECT_EQ(two, one + 1);
  }
  EXPECT_TRUE(SameItems({first, big}, Items(big, 0)));
  EXPECT_TRUE(SameItems({last, ItemArena::kChunkItems - 3 * big},
                        Items(ItemArena::kChunkItems - 3 * big, 3000000)));
  EXPECT_TRUE(SameItems({own, big + 1}, Items(big + 1, 5000000)));
  EXPECT_TRUE(SameItems({two, 2}, Items(2, 9)));
  arena.clear();
  EXPECT_EQ(arena.blocks(), 0u);
}

// Adds an object of `kind` to `g`.
ObjId Add(Graph& g, Kind kind) {
  g.objects.emplace_back().kind = kind;
  return static_cast<ObjId>(g.objects.size() - 1);
}

TEST(GraphItems, FixedItemsThenGrownAreSeenThroughEveryHolder) {
  Graph g;
  const ObjId list = Add(g, Kind::kList);
  const ObjId tuple = Add(g, Kind::kTuple);
  EXPECT_TRUE(g.objects[list].items().empty());
  g.SetItems(list, Items(2, 1));  // LIST: complete when built, in the arena
  const Ref held = Ref::Heap(Kind::kList, list);
  const Ref parts[] = {held, held};
  g.SetItems(tuple, parts);  // a tuple holding the list twice
  // APPENDS after the list was shared: it moves to a vector, keeping its items.
  std::vector<Ref>& grown = g.GrowItems(list);
  EXPECT_TRUE(SameItems(grown, Items(2, 1)));
  grown.push_back(Ref::Int(3));
  EXPECT_EQ(&g.GrowItems(list), &grown);  // once grown, always the same vector
  g.GrowItems(list).push_back(Ref::Int(4));
  for (Ref r : g.items(Ref::Heap(Kind::kTuple, tuple))) {
    EXPECT_EQ(r.id, list);
    EXPECT_TRUE(SameItems(g.items(r), Items(4, 1)));
  }
  // A set of a grown object's items replaces them in its vector.
  g.SetItems(list, Items(1, 9));
  EXPECT_TRUE(SameItems(g.objects[list].items(), Items(1, 9)));
  EXPECT_EQ(g.grown.size(), 1u);
  // Objects added after do not move the others' items.
  for (int i = 0; i < 100000; ++i) g.SetItems(Add(g, Kind::kTuple), Items(3, i));
  EXPECT_TRUE(SameItems(g.objects[list].items(), Items(1, 9)));
  EXPECT_TRUE(SameItems(g.objects[99999 + 2].items(), Items(3, 99999)));
  g.ClearObjects();
  EXPECT_EQ(g.objects.size(), 0u);
  EXPECT_EQ(g.item_arena.blocks(), 0u);
  EXPECT_TRUE(g.grown.empty());
}

TEST(GraphItems, AByteKindKeepsItsBytesAndHasNoItems) {
  Graph g;
  const std::string text = "layer.0.weight";
  const ObjId str = Add(g, Kind::kStr);
  g.objects[str].set_data(AsBytes(text));
  EXPECT_EQ(g.text(Ref::Heap(Kind::kStr, str)), text);
  EXPECT_TRUE(g.objects[str].items().empty());
  // Items given to a byte kind are dropped; its bytes stay.
  g.SetItems(str, Items(2, 0));
  g.GrowItems(str).push_back(Ref::Int(1));
  EXPECT_EQ(g.text(Ref::Heap(Kind::kStr, str)), text);
  EXPECT_TRUE(g.objects[str].items().empty());
  // Bytes given to any other kind are dropped; its items stay.
  const ObjId tuple = Add(g, Kind::kTuple);
  g.SetItems(tuple, Items(2, 5));
  g.objects[tuple].set_data(AsBytes(text));
  EXPECT_TRUE(g.objects[tuple].data().empty());
  EXPECT_TRUE(SameItems(g.objects[tuple].items(), Items(2, 5)));
}

TEST(ObjectStore, ChunksNeverMoveAndObjectsStartDefault) {
  ObjectStore store;
  std::vector<Object*> seen;
  for (size_t i = 0; i < 2 * ObjectStore::kChunk + 3; ++i) {
    Object& o = store.emplace_back();
    EXPECT_EQ(o.kind, Kind::kNone);
    EXPECT_EQ(o.aux, UINT32_MAX);
    EXPECT_TRUE(o.items().empty());
    o.aux = static_cast<uint32_t>(i);
    seen.push_back(&o);
  }
  ASSERT_EQ(store.size(), 2 * ObjectStore::kChunk + 3);
  for (size_t i = 0; i < seen.size(); ++i) {
    ASSERT_EQ(&store[static_cast<ObjId>(i)], seen[i]) << i;  // never moved
    ASSERT_EQ(store[static_cast<ObjId>(i)].aux, i) << i;
  }
  EXPECT_EQ(&store.back(), seen.back());
  store.clear();
  EXPECT_TRUE(store.empty());
  EXPECT_EQ(store.emplace_back().aux, UINT32_MAX);  // usable again
}

// Storage keys' text: every copy keeps its bytes where it was put while
// later ones fill chunk after chunk (a copy never straddles two).
TEST(TextArena, CopiesStayWhereTheyArePutAcrossChunks) {
  TextArena arena;
  EXPECT_NE(arena.Copy(""), nullptr);  // the first copy may be empty
  std::vector<std::pair<const char*, std::string>> copies;
  for (int i = 0; i < 30000; ++i) {  // ~0.2 MB: four 64 KiB chunks
    const std::string text = "k" + std::to_string(i) + (i % 7 == 0 ? std::string(40, 'x') : "");
    copies.emplace_back(arena.Copy(text), text);
  }
  const std::string big(TextArena::kChunkBytes + 7, 'b');  // a block of its own
  copies.emplace_back(arena.Copy(big), big);
  copies.emplace_back(arena.Copy("after"), "after");
  for (const auto& [at, text] : copies) ASSERT_EQ(std::string_view(at, text.size()), text);
  EXPECT_NE(arena.Copy(""), nullptr);
}

// Keys are copied up to the longest a storage key may be; the record holds
// a view of the copy.
TEST(StorageInfo, KeepsAViewOfItsKeysCopy) {
  Graph g;
  StorageInfo s;
  std::string key = "12345";
  g.SetStorageKey(&s, key);
  key[0] = 'x';  // the caller's bytes may change: the record has its own
  EXPECT_EQ(s.key(), "12345");
  EXPECT_EQ(s.type_name(), "");
  s.type = g.InternStorageType("torch.FloatStorage");
  EXPECT_EQ(s.type_name(), "torch.FloatStorage");
  EXPECT_EQ(g.InternStorageType("torch.FloatStorage"), s.type);  // one copy a name
}

// A record that owns heap memory, so that a sanitizer build sees the
// table's destruction of every entry.
struct HeapRow {
  std::string key;
  uint64_t numel = 0;
};

TEST(ChunkedTable, RecordsAcrossChunksKeepTheirPlaceAndValue) {
  ChunkedTable<HeapRow, 3> table;  // 8 a chunk
  std::vector<const HeapRow*> seen;
  for (int i = 0; i < 30; ++i) {
    HeapRow s;
    s.key = "storage-key-long-enough-for-the-heap-" + std::to_string(i);
    s.numel = static_cast<uint64_t>(i);
    table.push_back(std::move(s));
    seen.push_back(&table[static_cast<size_t>(i)]);
  }
  ASSERT_EQ(table.size(), 30u);
  for (size_t i = 0; i < seen.size(); ++i) {
    ASSERT_EQ(&table[i], seen[i]) << i;
    EXPECT_EQ(table[i].numel, i);
    EXPECT_EQ(table[i].key, "storage-key-long-enough-for-the-heap-" + std::to_string(i));
  }
}

// A chunk dropped before the table (the conversion is done with it) frees
// its records; the others keep their place and value, and the table's
// destructor frees the rest (a sanitizer build sees both).
TEST(ChunkedTable, ADroppedChunkGoesAndTheOthersStay) {
  ChunkedTable<HeapRow, 3> table;  // 8 a chunk
  for (int i = 0; i < 30; ++i) {
    HeapRow s;
    s.key = "storage-key-long-enough-for-the-heap-" + std::to_string(i);
    table.push_back(std::move(s));
  }
  ASSERT_EQ(table.chunks(), 4u);
  EXPECT_EQ(table.ChunkOf(15), 1u);
  table.DropChunk(1);
  table.DropChunk(1);  // twice: nothing more
  table.DropChunk(3);  // the last, partly filled
  EXPECT_EQ(table.size(), 30u);
  for (size_t i : {0u, 7u, 16u, 23u}) {
    EXPECT_EQ(table[i].key, "storage-key-long-enough-for-the-heap-" + std::to_string(i));
  }
}

// The index of a large dict's keys: every position added under a hash is
// offered to the match (also positions of other hashes with the same low
// 32 bits, the slot's tag), the first accepted is returned, and the
// positions survive the table's doubling.
TEST(KeyIndex, OffersEveryPositionOfAHashUntilOneMatches) {
  KeyIndex index;
  constexpr uint32_t kKeys = 5000;
  for (uint32_t i = 0; i < kKeys; ++i) index.Add(uint64_t{i} * 0x9E3779B97F4A7C15ULL, i);
  // Three more under one tag: two with that hash, one differing above bit 32.
  const uint64_t h = 0xABCDEF0112345678ULL;
  index.Add(h, kKeys);
  index.Add(h ^ (uint64_t{1} << 40), kKeys + 1);
  index.Add(h, kKeys + 2);
  EXPECT_EQ(index.size(), kKeys + 3u);
  for (uint32_t i = 0; i < kKeys; i += 7) {
    const auto found = index.Find(uint64_t{i} * 0x9E3779B97F4A7C15ULL, [&](uint32_t pos) { return pos == i; });
    ASSERT_TRUE(found.has_value()) << i;
    EXPECT_EQ(*found, i);
  }
  std::vector<uint32_t> offered;
  const auto none = index.Find(h, [&](uint32_t pos) {
    offered.push_back(pos);
    return false;
  });
  EXPECT_FALSE(none.has_value());
  std::sort(offered.begin(), offered.end());
  EXPECT_EQ(offered, (std::vector<uint32_t>{kKeys, kKeys + 1, kKeys + 2}));
  EXPECT_EQ(index.Find(h, [&](uint32_t pos) { return pos == kKeys + 2; }), kKeys + 2);
  EXPECT_FALSE(index.Find(0x1111111122222222ULL, [](uint32_t) { return true; }).has_value());
  EXPECT_FALSE(KeyIndex().Find(h, [](uint32_t) { return true; }).has_value());
}

// A tensor record stays small: 100,000 of them for a checkpoint of 100,000
// tensors (its sizes are inline_dims_test.cc's; its strides are kept apart
// only when they are not the C-contiguous ones).
TEST(TensorInfo, StaysSmall) {
  static_assert(sizeof(TensorInfo) <= 64, "TensorInfo grew");
  static_assert(sizeof(StorageInfo) <= 40, "StorageInfo grew");  // one per storage too
  static_assert(sizeof(Object) <= 32, "Object grew");
}

// A byte object's size is 40 bits of the object: sizes past 32 bits and
// the largest one come back whole. (The pointer is never read.)
TEST(Object, AByteObjectsSizeComesBackWhole) {
  const auto* p = reinterpret_cast<const uint8_t*>(uintptr_t{4096});
  for (uint64_t size : {uint64_t{0}, uint64_t{5}, (uint64_t{1} << 32) + 5, uint64_t{1} << 33,
                        Object::kMaxDataBytes}) {
    Object o;
    o.kind = Kind::kBytes;
    o.set_data(ByteView(p, size));
    EXPECT_EQ(o.data().size(), size);
    EXPECT_EQ(o.data().data(), p);
    EXPECT_TRUE(o.items().empty());
  }
}

// Builder::NewData refuses a byte object past kMaxDataBytes and makes no
// object; at the limit it makes one. (The bytes are never read.)
TEST(Object, NewDataRefusesABytesObjectPastTheLimit) {
  ParseContext ctx(ParseOptions{});
  Graph g;
  Machine m(ctx, g, MachineOptions{});
  Builder b(m, 0);
  const auto* p = reinterpret_cast<const uint8_t*>(uintptr_t{4096});
  Result<Ref> over = b.NewData(Kind::kBytes, ByteView(p, Object::kMaxDataBytes + 1));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kLimitExceeded);
  EXPECT_EQ(g.objects.size(), 0u);
  Result<Ref> at = b.NewData(Kind::kBytes, ByteView(p, Object::kMaxDataBytes));
  ASSERT_TRUE(at.ok()) << at.status().ToString();
  EXPECT_EQ(g.at(*at).data().size(), Object::kMaxDataBytes);
}

// Runs pickle `p` into `g` with no handlers' options; *end is where it stopped.
Result<Ref> RunPickle(const std::string& p, Graph* g, uint64_t* end) {
  ParseContext ctx(ParseOptions{});
  Machine m(ctx, *g, MachineOptions{});
  return m.Run(AsBytes(p), 0, end);
}

// A dict's or frozenset's key index shares its field with a name's index:
// a large one is no name (empty name, no table entry, offset 0), SetName
// leaves it alone, and the dict stays in use (not releasable).
TEST(Object, ALargeContainersKeyIndexIsNoName) {
  using testing::B;
  using testing::Int1;
  using testing::P2;
  using testing::Str;
  std::string dict_items, set_items;
  for (int i = 0; i < 2 * static_cast<int>(kIndexThreshold); ++i) {
    dict_items += Str("k" + std::to_string(i)) + Int1(i);
    set_items += Str("f" + std::to_string(i));
  }
  // PROTO 2, ({k0: 0, ...}, frozenset({f0, ...})): EMPTY_DICT MARK ...
  // SETITEMS, MARK ... FROZENSET, TUPLE2.
  const std::string p = P2("}(" + dict_items + "u(" + set_items + B({0x91, 0x86}));
  Graph g;
  uint64_t end = 0;
  Result<Ref> root = RunPickle(p, &g, &end);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  const std::span<const Ref> top = g.items(*root);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].kind, Kind::kDict);
  EXPECT_EQ(top[1].kind, Kind::kFrozenSet);
  for (Ref c : {top[0], top[1]}) {
    ASSERT_NE(g.at(c).side, UINT32_MAX) << "no key index was built";
    EXPECT_EQ(g.name(c), "");
    EXPECT_EQ(g.global(c).kind, GlobalEntry{}.kind);
    EXPECT_EQ(g.offset(c.id), 0u);
    const uint32_t side = g.at(c).side;
    g.SetName(c.id, "not a name");
    EXPECT_EQ(g.at(c).side, side);
    EXPECT_FALSE(g.Releasable(c.id));
  }
}

// Python's () is one object: every EMPTY_TUPLE of a run is one graph
// object; a TUPLE of no items and other tuples are objects of their own.
TEST(GraphItems, EveryEmptyTupleOfARunIsOneObject) {
  // PROTO 2, MARK, EMPTY_TUPLE x3, MARK TUPLE (empty), TUPLE, STOP.
  const std::string p = std::string("\x80\x02(") + ")))" + "(t" + "t.";
  Graph g;
  uint64_t end = 0;
  Result<Ref> root = RunPickle(p, &g, &end);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(end, p.size());
  ASSERT_EQ(root->kind, Kind::kTuple);
  const std::span<const Ref> items = g.items(*root);
  ASSERT_EQ(items.size(), 4u);
  EXPECT_EQ(items[0].id, items[1].id);
  EXPECT_EQ(items[1].id, items[2].id);
  EXPECT_NE(items[3].id, items[0].id);  // made by TUPLE
  EXPECT_EQ(g.objects.size(), 3u);      // (), the TUPLE's (), the root
}

// The memo's 8-byte slots give back exactly the Ref stored: a heap object's
// kind and id (the largest id too), an inline value's every bit.
TEST(Memo, SlotsGiveBackEveryKindOfValue) {
  Memo memo;
  const double neg_zero = -0.0;
  const std::vector<Ref> values = {
      Ref::Heap(Kind::kStr, 0),
      // The largest id a graph holds (kMaxObjects), with the last kind.
      Ref::Heap(Kind::kOpaque, static_cast<loader::pickle::ObjId>(loader::pickle::kMaxObjects - 1)),
      Ref::Heap(Kind::kRecord, 123456),
      Ref::Heap(Kind::kBigInt, 7),
      Ref::None(),
      Ref::Bool(true),
      Ref::Int(INT64_MIN),
      Ref::Int(-1),
      Ref::Float(neg_zero),
      Ref::Float(1e308),
  };
  for (size_t k = 0; k < values.size(); ++k) ASSERT_TRUE(memo.Put(k, values[k]));
  EXPECT_EQ(memo.size(), values.size());
  EXPECT_EQ(memo.inline_values(), 6u);
  for (size_t k = 0; k < values.size(); ++k) {
    const std::optional<Ref> got = memo.Find(k);
    ASSERT_TRUE(got.has_value()) << k;
    EXPECT_EQ(got->kind, values[k].kind) << k;
    if (values[k].is_heap()) {
      EXPECT_EQ(got->id, values[k].id) << k;
    } else {
      EXPECT_EQ(got->i, values[k].i) << k;  // the float's bits too
    }
  }
  EXPECT_FALSE(memo.Find(values.size()).has_value());
  EXPECT_FALSE(memo.Find(uint64_t{1} << 40).has_value());
  // Replacing: heap -> inline -> heap -> inline, many times, in one slot:
  // the slot's inline value is reused, nothing accumulates.
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(memo.Put(0, Ref::Int(i)));
    ASSERT_TRUE(memo.Put(0, Ref::Heap(Kind::kTuple, static_cast<ObjId>(i))));
    ASSERT_TRUE(memo.Put(4, Ref::Float(i)));
  }
  EXPECT_EQ(memo.size(), values.size());
  EXPECT_EQ(memo.inline_values(), 7u);
  EXPECT_EQ(memo.Find(0)->kind, Kind::kTuple);
  EXPECT_EQ(memo.Find(0)->id, 999u);
  EXPECT_EQ(memo.Find(4)->f, 999.0);
}

// A key is voided only while it holds the object being released; a voided
// key is not found, says so, and takes a new value like any other.
// A key joins the vector while it is below twice the entries plus the
// slack, or inside what the vector has grown to (as a doubling vector
// would): never merely because its slot's chunk exists. Only a key of the
// vector may be voided by a release.
TEST(Memo, AKeyJoinsTheVectorByTheRuleNotTheChunk) {
  Memo memo;
  ASSERT_TRUE(memo.Put(0, Ref::Heap(Kind::kTuple, 1)));
  ASSERT_TRUE(memo.Put(1027, Ref::Heap(Kind::kTuple, 2)));  // below 2 * 2 + 1024: joins
  // In the chunk that key 1027 made (1,024 slots a chunk), past the rule.
  ASSERT_TRUE(memo.Put(2000, Ref::Heap(Kind::kTuple, 3)));
  ASSERT_TRUE(memo.Put(5000, Ref::Heap(Kind::kTuple, 4)));
  EXPECT_TRUE(memo.Dense(0));
  EXPECT_TRUE(memo.Dense(1027));
  EXPECT_FALSE(memo.Dense(2000));
  EXPECT_FALSE(memo.Dense(5000));
  memo.Release(2000, 3);
  EXPECT_FALSE(memo.Released(2000));
  EXPECT_EQ(memo.Find(2000)->id, 3u);
  memo.Release(1027, 2);
  EXPECT_TRUE(memo.Released(1027));
}

TEST(Memo, ReleaseVoidsOnlyTheKeyThatHoldsTheObject) {
  Memo memo;
  ASSERT_TRUE(memo.Put(0, Ref::Heap(Kind::kTuple, 5)));
  ASSERT_TRUE(memo.Put(1, Ref::Heap(Kind::kDict, 6)));
  ASSERT_TRUE(memo.Put(2, Ref::Int(7)));
  memo.Release(0, 4);  // another object: nothing happens
  memo.Release(2, 7);  // an inline value: nothing happens
  memo.Release(9, 5);  // no such key
  EXPECT_FALSE(memo.Released(0));
  EXPECT_FALSE(memo.Released(2));
  EXPECT_EQ(memo.Find(0)->id, 5u);
  memo.Release(0, 5);
  memo.Release(1, 6);
  EXPECT_TRUE(memo.Released(0));
  EXPECT_TRUE(memo.Released(1));
  EXPECT_FALSE(memo.Find(0).has_value());  // never the id, which a new object may take
  EXPECT_FALSE(memo.Find(1).has_value());
  EXPECT_FALSE(memo.Released(2));
  EXPECT_EQ(memo.size(), 3u);
  ASSERT_TRUE(memo.Put(0, Ref::Int(1)));
  EXPECT_FALSE(memo.Released(0));
  EXPECT_EQ(memo.Find(0)->i, 1);
  EXPECT_EQ(memo.size(), 3u);
}

}  // namespace
}  // namespace safemodel::loader::pickle
