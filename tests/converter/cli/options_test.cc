// safe-convert's option parsing (issue 14, item 3): subcommands, --opt=value,
// --, help and version everywhere, short usage errors, units.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "tests/converter/cli/cli_util.h"

namespace safemodel::testing {
namespace {

size_t Lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

TEST(CliOptions, HelpAndVersionOnEverySubcommand) {
  for (const std::string cmd : {"", "convert ", "inspect ", "verify "}) {
    std::string out;
    EXPECT_EQ(SafeConvert(cmd + "--help", &out, false), 0) << cmd;
    EXPECT_NE(out.find("Usage: safe-convert"), std::string::npos) << cmd << out;
    EXPECT_EQ(SafeConvert(cmd + "-h", &out, false), 0) << cmd;
    EXPECT_EQ(SafeConvert(cmd + "--version", &out, false), 0) << cmd;
    EXPECT_EQ(out, "safemodel 0.1.0\n") << cmd;
  }
  std::string out;
  EXPECT_EQ(SafeConvert("help", &out, false), 0);
  EXPECT_NE(out.find("inspect"), std::string::npos) << out;
  // The convert help lists the options and which size units are which.
  EXPECT_EQ(SafeConvert("convert --help", &out, false), 0);
  for (const char* opt : {"--force", "--report", "--json", "--timeout", "--memory-limit", "--cpu-limit",
                          "--max-input-size", "--max-output-size", "--digest", "--weights-only",
                          "--keep-optimizer", "--no-sync", "--worker", "--require-isolation",
                          "--quiet", "--verbose", "powers of 1000", "powers of 1024"}) {
    EXPECT_NE(out.find(opt), std::string::npos) << opt;
  }
}

TEST(CliOptions, UsageErrorsAreShortAndPointToHelp) {
  for (const std::string args : {"a b --bogus-flag", "a b --timeout", "a b --timeout 5x",
                                 "a b --memory-limit lots", "a b --digest md5", "only-one-path",
                                 "inspect", "inspect a --bogus", "verify", "verify a b",
                                 "a b --quiet --verbose"}) {
    std::string err;
    EXPECT_EQ(SafeConvert(args, &err), 2) << args;
    EXPECT_EQ(Lines(err), 2u) << args << "\n" << err;
    EXPECT_EQ(err.rfind("safe-convert: ", 0), 0u) << err;
    EXPECT_NE(err.find("--help' lists the options\n"), std::string::npos) << err;
  }
  std::string err;
  EXPECT_EQ(SafeConvert("", &err), 2);
  EXPECT_NE(err.find("usage"), std::string::npos);
  EXPECT_EQ(Lines(err), 1u) << err;
}

TEST(CliOptions, EqualsFormDoubleDashAndUnits) {
  TempDir dir;
  const std::string in = Fixture("numpy/f32.npy");
  std::string out;
  // --opt=value, the subcommand-less form, units in durations and sizes.
  ASSERT_EQ(SafeConvert(in + " " + dir.File("a") + " --no-sync --timeout=5m --cpu-limit=90s "
                             "--memory-limit=4GiB --max-input-size 1MB --max-output-size=2M --digest=sha256",
                        &out),
            0)
      << out;
  // `--` ends the options: a file named like one.
  WriteFile(dir.File("--weird"), ReadFile(in));
  ASSERT_EQ(SafeConvert("convert --no-sync -- " + dir.File("--weird") + " " + dir.File("b"), &out), 0) << out;
  ASSERT_EQ(SafeConvert("inspect -- " + dir.File("b"), &out), 0) << out;
  // Sizes: 1MB is 10^6 bytes, 1MiB 2^20: the input limit shows which.
  WriteFile(dir.File("big.npy"), ReadFile(in));
  const uint64_t size = ReadFile(in).size();  // a few KB
  EXPECT_EQ(SafeConvert(in + " " + dir.File("c") + " --no-sync --max-input-size " + std::to_string(size - 1)),
            4);
  EXPECT_EQ(SafeConvert(in + " " + dir.File("c") + " --no-sync --max-input-size 4KB"), size > 4000 ? 4 : 0);
  EXPECT_EQ(SafeConvert(in + " " + dir.File("d") + " --no-sync --max-input-size 4KiB"), size > 4096 ? 4 : 0);
}

// A duration's unit reaches the pipeline as seconds (ParseDuration("5m") is
// 300, units_test): --timeout 1s stops a worker that never finishes
// (slow-worker parked after its header) after 1000 ms.
TEST(CliOptions, TimeoutUnitsReachThePipeline) {
  TempDir dir;
  WriteFile(dir.File("parked"), "slow:park 4096\n");
  std::string out;
  EXPECT_EQ(SafeConvert(dir.File("parked") + " " + dir.File("a") + " --json --timeout 1s --worker " +
                            BinDir() + "/slow-worker",
                        &out, false),
            4);
  EXPECT_NE(nlohmann::json::parse(out)["message"].get<std::string>().find("time limit of 1000 ms"),
            std::string::npos)
      << out;
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("b") + " --timeout 8761h"), 2);
}

TEST(CliOptions, QuietAndVerbose) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("a") + " --no-sync -q", &out), 0);
  EXPECT_EQ(out, "");
  ASSERT_EQ(SafeConvert("verify -q " + dir.File("a"), &out), 0);
  EXPECT_EQ(out, "");
  // Quiet keeps the error, drops the findings.
  EXPECT_EQ(SafeConvert(Fixture("numpy/object_malicious.npy") + " " + dir.File("b") + " --quiet", &out), 1);
  EXPECT_EQ(Lines(out), 1u) << out;
  EXPECT_NE(out.find(": refused: "), std::string::npos) << out;
  ASSERT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("c") + " --no-sync -v", &out), 0);
  EXPECT_NE(out.find("sha256 "), std::string::npos) << out;
  EXPECT_NE(out.find("isolation seen: seccomp"), std::string::npos) << out;
  EXPECT_NE(out.find("converted"), std::string::npos) << out;
}

}  // namespace
}  // namespace safemodel::testing
