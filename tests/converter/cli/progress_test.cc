// safe-convert's progress line: on a terminal for a large input (bytes,
// percentage, rate, time left), then erased; never when stderr is not a
// terminal or with --quiet.
#include "converter/cli/progress.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "tests/converter/cli/cli_util.h"

namespace safemodel::testing {
namespace {

TEST(CliProgress, Line) {
  using cli::ProgressLine;
  EXPECT_EQ(ProgressLine("m.pt", 0, 4ull << 30, 0), "safe-convert: m.pt: 0 bytes of 4.0 GiB (0%)");
  EXPECT_EQ(ProgressLine("m.pt", 1ull << 30, 4ull << 30, 2),
            "safe-convert: m.pt: 1.0 GiB of 4.0 GiB (25%), 512.0 MiB/s, 6 s left");
  EXPECT_EQ(ProgressLine("m.pt", 1ull << 30, 100ull << 30, 1),
            "safe-convert: m.pt: 1.0 GiB of 100.0 GiB (1%), 1.0 GiB/s, 99 s left");
  EXPECT_EQ(ProgressLine("m.pt", 1ull << 30, 200ull << 30, 1),
            "safe-convert: m.pt: 1.0 GiB of 200.0 GiB (0%), 1.0 GiB/s, 3 min left");
  EXPECT_EQ(ProgressLine("m.pt", 1ull << 30, 20000ull << 30, 1),
            "safe-convert: m.pt: 1.0 GiB of 19.5 TiB (0%), 1.0 GiB/s, 5.6 h left");
  EXPECT_EQ(ProgressLine("m.pt", 4ull << 30, 4ull << 30, 4), "safe-convert: m.pt: 4.0 GiB of 4.0 GiB (100%), 1.0 GiB/s");
  EXPECT_EQ(ProgressLine("a\x1b[2J", 1, 2, 0), "safe-convert: a\\x1b[2J: 1 byte of 2 bytes (50%)");
}

// A .npy of `n` float32 zeros, as the library test writes it.
std::string ZerosNpy(uint64_t n) {
  return NpyImage("<f4", false, std::to_string(n) + ",", std::string(n * 4, '\0'));
}

TEST(CliProgress, OnATerminalOnlyForLargeInputs) {
  if (access("/usr/bin/script", X_OK) != 0) GTEST_SKIP() << "needs script(1) for a terminal";
  TempDir dir;
  WriteFile(dir.File("big.npy"), ZerosNpy(cli::kMinProgressInputBytes / 4 + 1024));
  const std::string cmd = BinDir() + "/safe-convert " + dir.File("big.npy") + " ";
  std::string out;
  // stdout and stderr are the terminal script(1) gives the program.
  ASSERT_EQ(RunCommand("/usr/bin/script -qec '" + cmd + dir.File("a") + " --no-sync' /dev/null", &out), 0) << out;
  EXPECT_NE(out.find("\rsafe-convert: " + dir.File("big.npy") + ": 4.0 KiB of 64.0 MiB (0%)\x1b[K"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\r\x1b[Kconverted "), std::string::npos) << "the line is erased: " << out;
  // Not a terminal: nothing.
  ASSERT_EQ(SafeConvert(dir.File("big.npy") + " " + dir.File("b") + " --no-sync", &out), 0);
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find("%)"), std::string::npos) << out;
  // --quiet, or a small input: nothing on the terminal either.
  ASSERT_EQ(RunCommand("/usr/bin/script -qec '" + cmd + dir.File("c") + " --no-sync -q' /dev/null", &out), 0);
  EXPECT_EQ(out, "");
  ASSERT_EQ(RunCommand("/usr/bin/script -qec '" + BinDir() + "/safe-convert " + Fixture("numpy/f32.npy") + " " +
                           dir.File("d") + " --no-sync' /dev/null",
                       &out),
            0);
  EXPECT_EQ(out.find("%)"), std::string::npos) << out;
}

}  // namespace
}  // namespace safemodel::testing
