// Durations and sizes (converter/cli/units.h).
#include "converter/cli/units.h"

#include <gtest/gtest.h>

namespace safemodel::cli {
namespace {

TEST(Units, DurationsTakeSecondsMinutesHours) {
  EXPECT_EQ(ParseDuration("90"), 90u);
  EXPECT_EQ(ParseDuration("90s"), 90u);
  EXPECT_EQ(ParseDuration("5m"), 300u) << "not 5 MiB of seconds";
  EXPECT_EQ(ParseDuration("2h"), 7200u);
  EXPECT_EQ(ParseDuration("2H"), 7200u);
  EXPECT_EQ(ParseDuration("8760h"), 8760u * 3600);
  for (const char* bad : {"", "0", "0s", "s", "5x", "1.5h", "-5", " 5", "5 m", "5mm", "8761h",
                          "99999999999999999999", "5G"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
}

TEST(Units, SizesKnowBinaryAndDecimalUnits) {
  EXPECT_EQ(ParseSize("512"), 512u);
  EXPECT_EQ(ParseSize("512B"), 512u);
  EXPECT_EQ(ParseSize("4K"), 4096u);
  EXPECT_EQ(ParseSize("4k"), 4096u);
  EXPECT_EQ(ParseSize("4G"), 4ull << 30) << "single letters are binary, as before";
  EXPECT_EQ(ParseSize("4GiB"), 4ull << 30);
  EXPECT_EQ(ParseSize("4gib"), 4ull << 30);
  EXPECT_EQ(ParseSize("4GB"), 4'000'000'000u);
  EXPECT_EQ(ParseSize("3MB"), 3'000'000u);
  EXPECT_EQ(ParseSize("3MiB"), 3u << 20);
  EXPECT_EQ(ParseSize("1TB"), 1'000'000'000'000u);
  EXPECT_EQ(ParseSize("2T"), 2ull << 40);
  EXPECT_EQ(ParseSize("16777215T"), 16777215ull << 40);
  for (const char* bad : {"", "G", "4X", "4GX", "4 G", "1.5G", "-1", "16777216T", "4Gi",
                          "99999999999999999999"}) {
    EXPECT_EQ(ParseSize(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace safemodel::cli
