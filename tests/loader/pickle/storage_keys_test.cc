// The storage keys of a torch checkpoint: the layout's sorted records
// (duplicates, misses) and the storage table's slots and other keys.
#include "loader/pickle/storage_keys.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

namespace safemodel::loader::pickle {
namespace {

// Records named "data/<key>" for each of `keys`, keyed from byte 5 on (the
// entries' names are views of `names`, which does not move).
struct Records {
  std::deque<std::string> names;
  std::vector<ZipEntry> entries;
  StorageKeys keys;
  Records(std::initializer_list<const char*> keys_in) {
    for (const char* k : keys_in) {
      entries.emplace_back().name = names.emplace_back(std::string("data/") + k);
    }
    keys = StorageKeys(entries.data(), 5);
    for (const ZipEntry& e : entries) keys.Add(e);
    keys.Seal();
  }
};

TEST(StorageKeys, SortedWithTheFirstOfEqualKeysAndMissesFound) {
  Records r({"9", "10", "2", "10", "1"});
  ASSERT_EQ(r.keys.size(), 4u);  // one "10" dropped
  EXPECT_EQ(r.keys.key(0), "1");
  EXPECT_EQ(r.keys.key(1), "10");
  EXPECT_EQ(r.keys.key(2), "2");
  EXPECT_EQ(r.keys.key(3), "9");
  EXPECT_EQ(r.keys.Find("10"), &r.entries[1]);  // the first "10" added
  EXPECT_EQ(r.keys.Find("9"), &r.entries[0]);
  for (const char* miss : {"", "0", "100", "11", "3", "99", "1 "}) {
    EXPECT_EQ(r.keys.IndexOf(miss), StorageKeys::kNone) << miss;
    EXPECT_EQ(r.keys.Find(miss), nullptr) << miss;
  }
  Records empty({});
  EXPECT_EQ(empty.keys.Find("0"), nullptr);
}

TEST(StorageKeys, AnEntryOfTheTableIsKeyedByTheEndOfItsName) {
  std::vector<ZipEntry> entries(3);
  entries[0].name = "archive/data.pkl";
  entries[1].name = "archive/data/7";
  entries[2].name = "archive/data/12";
  StorageKeys keys(entries.data(), std::string_view("archive/data/").size());
  keys.Add(entries[1]);
  keys.Add(entries[2]);
  keys.Seal();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys.key(0), "12");
  EXPECT_EQ(keys.entry(0), &entries[2]);
  EXPECT_EQ(keys.Find("7"), &entries[1]);
  EXPECT_EQ(keys.Find("archive/data/7"), nullptr);
}

TEST(StorageTable, LayoutKeysHaveSlotsAndOtherKeysAMap) {
  Records r({"0", "1", "2"});
  StorageTable t(&r.keys);
  EXPECT_EQ(t.Find("1"), kNoStorage);
  t.Insert("1", 7);
  t.Insert("x", 8);  // no record: kept apart, still found
  EXPECT_EQ(t.Find("1"), 7u);
  EXPECT_EQ(t.Find("x"), 8u);
  EXPECT_EQ(t.Find("0"), kNoStorage);
  EXPECT_EQ(t.Find("y"), kNoStorage);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_FALSE(t.Referenced(0));
  EXPECT_TRUE(t.Referenced(1));
  EXPECT_FALSE(t.Referenced(2));
  // No layout (a legacy file): every key in the map.
  StorageTable legacy;
  legacy.Insert("140234", 3);
  EXPECT_EQ(legacy.Find("140234"), 3u);
  EXPECT_EQ(legacy.Find("1402"), kNoStorage);
  EXPECT_EQ(legacy.size(), 1u);
}

}  // namespace
}  // namespace safemodel::loader::pickle
