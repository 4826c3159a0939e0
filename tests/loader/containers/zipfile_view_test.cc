// Python zipfile's archive search, against the strict reader's end record
// (loader/containers/zipfile_view.h).
#include "loader/containers/zipfile_view.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

namespace safemodel::testing {
namespace {

ByteView V(const std::string& s) { return AsBytes(s); }

TEST(ZipfileView, ZipfileFindsArchivesAfterPrefixesAndInComments) {
  const std::string zip = BuildZip({{"a.npy", "data"}});
  auto plain = loader::FindZipfileArchive(V(zip));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->concat, 0);
  EXPECT_TRUE(plain->has_entries);
  EXPECT_TRUE(loader::CheckZipfileAgrees(V(zip)).ok());
  // A prefix: zipfile shifts every offset by it.
  auto shifted = loader::FindZipfileArchive(V("prefix" + zip));
  ASSERT_TRUE(shifted.has_value());
  EXPECT_EQ(shifted->concat, 6);
  EXPECT_TRUE(shifted->has_entries);
  // An end-record signature inside the comment: zipfile takes the last one.
  ZipLayout layout;
  layout.comment = std::string("PK\x05\x06", 4) + std::string(18, '\0') + "xy";
  const std::string tricky = BuildZip({{"a.npy", "data"}}, layout);
  EXPECT_EQ(*loader::StrictZipEndRecord(V(tricky)), tricky.size() - 22 - layout.comment.size());
  Status s = loader::CheckZipfileAgrees(V(tricky));
  EXPECT_EQ(s.code(), StatusCode::kMalformed);
  EXPECT_NE(s.message().find("zipfile"), std::string::npos) << s.ToString();
  // Nothing that looks like an end record: no archive.
  EXPECT_FALSE(loader::FindZipfileArchive(V(std::string(100, 'x'))).has_value());
}

}  // namespace
}  // namespace safemodel::testing
