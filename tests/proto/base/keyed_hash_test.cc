// SipHash-2-4 against the reference vectors, the process key, and the
// flat set of views.
#include "proto/base/keyed_hash.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace safemodel {
namespace {

TEST(KeyedHash, SipHash24ReferenceVectors) {
  // Key 00 01 .. 0f; message 00 01 .. (n-1): the vectors published with
  // SipHash (n = 0 and n = 1), and the paper's worked example (n = 15).
  uint8_t key[16];
  uint8_t msg[64];
  for (int i = 0; i < 16; ++i) key[i] = static_cast<uint8_t>(i);
  for (int i = 0; i < 64; ++i) msg[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(SipHash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
  EXPECT_EQ(SipHash24(key, msg, 1), 0x74f839c593dc67fdULL);
  EXPECT_EQ(SipHash24(key, msg, 15), 0xa129ca6149be45e5ULL);
}

TEST(KeyedHash, KeyIsDrawnAndDomainsSeparate) {
  ASSERT_TRUE(SeedKeyedHash());
  const std::string s = "weight";
  EXPECT_EQ(KeyedHash(s), KeyedHash(s));
  EXPECT_NE(KeyedHash(s, 1), KeyedHash(s, 2));
  // Not the unkeyed function: the process key is not all zeros.
  uint8_t zero[16] = {};
  EXPECT_NE(KeyedHash(s), SipHash24(zero, s.data(), s.size()));
  EXPECT_EQ(KeyedHashU64(7), KeyedHashU64(7));
  EXPECT_NE(KeyedHashU64(7), KeyedHashU64(8));
}

// The flat set: each view once, by content (not address), past its
// reservation and its growth, and the empty view like any other.
TEST(KeyedViewSet, EachViewOnceByContentAcrossGrowth) {
  KeyedViewSet set;
  set.Reserve(4);
  std::vector<std::string> names;
  for (int i = 0; i < 5000; ++i) names.push_back("model/data/" + std::to_string(i));
  for (const std::string& n : names) EXPECT_TRUE(set.Insert(n));
  EXPECT_EQ(set.size(), names.size());
  for (const std::string& n : names) {
    const std::string copy = n;  // another address, the same bytes
    EXPECT_TRUE(set.Contains(copy));
    EXPECT_FALSE(set.Insert(copy));
  }
  EXPECT_FALSE(set.Contains("model/data/5000"));
  EXPECT_FALSE(set.Contains("model/data/"));
  EXPECT_FALSE(set.Contains(""));
  EXPECT_TRUE(set.Insert(std::string_view()));
  EXPECT_TRUE(set.Contains(""));
  EXPECT_FALSE(set.Insert(""));
  EXPECT_EQ(set.size(), names.size() + 1);
  // Bytes that differ only past a prefix, and a NUL inside.
  const std::string a("ab\0c", 4), b("ab\0d", 4);
  EXPECT_TRUE(set.Insert(a));
  EXPECT_FALSE(set.Contains(b));
  EXPECT_TRUE(set.Insert(b));
  KeyedViewSet empty;
  EXPECT_FALSE(empty.Contains("x"));
}

}  // namespace
}  // namespace safemodel
