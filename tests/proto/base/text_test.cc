// proto/base/text.h: helpers for names and messages.

#include "proto/base/text.h"

#include <gtest/gtest.h>

#include <string>

namespace safemodel {
namespace {

// Only A-Z change: torch's record lookup and the .h5 name hint fold ASCII
// case, so bytes of UTF-8 names and every other character stay as they are.
TEST(AsciiLower, FoldsOnlyAsciiCapitals) {
  EXPECT_EQ(AsciiLower("Model.H5"), "model.h5");
  EXPECT_EQ(AsciiLower("archive/DATA/0"), "archive/data/0");
  EXPECT_EQ(AsciiLower("@[`{ az09_-"), "@[`{ az09_-");
  const std::string utf8 = "\xC3\x84X";  // "ÄX": the Ä stays, the X folds
  EXPECT_EQ(AsciiLower(utf8), "\xC3\x84x");
  EXPECT_EQ(AsciiLower(std::string("A\0B", 3)), std::string("a\0b", 3));
  EXPECT_EQ(AsciiLower(""), "");
}

}  // namespace
}  // namespace safemodel
