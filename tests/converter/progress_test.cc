// ConvertOptions::progress: called as the output grows, never backwards,
// ending at or near the output's final size; ConvertOptions::cancel, asked
// at the same points, stops the conversion without output.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "safemodel/convert.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

// A .npy of `n` float32 zeros (format 1.0, header padded to 64 bytes).
std::string ZerosNpy(uint64_t n) {
  return NpyImage("<f4", false, std::to_string(n) + ",", std::string(n * 4, '\0'));
}

TEST(ConvertProgress, GrowsToTheOutputSize) {
  TempDir dir;
  WriteFile(dir.File("m.npy"), ZerosNpy(5u << 20));  // 20 MiB of tensor data
  std::vector<ConvertProgress> calls;
  ConvertOptions opt;
  opt.progress = [&calls](const ConvertProgress& p) { calls.push_back(p); };
  ConvertReport r = Convert(dir.File("m.npy"), dir.File("m.safemodel"), opt);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  // Once when the size is known, then every 4 MiB: at least 5 calls.
  ASSERT_GE(calls.size(), 5u);
  EXPECT_LE(calls.size(), 2 + (20u << 20) / kProgressStepBytes);
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].bytes_total, calls[0].bytes_total);
    EXPECT_LE(calls[i].bytes_written, calls[i].bytes_total);
    if (i > 0) {
      EXPECT_GE(calls[i].bytes_written - calls[i - 1].bytes_written, kProgressStepBytes);
    }
  }
  // The planned size bounds the final one from above (the trailer is
  // planned at its largest).
  EXPECT_GE(calls[0].bytes_total, r.output_bytes);
  EXPECT_LT(calls[0].bytes_total - r.output_bytes, 4096u);
  EXPECT_GT(calls.back().bytes_written, r.output_bytes - kProgressStepBytes);
}

TEST(ConvertProgress, NotCalledWhenNothingIsWritten) {
  TempDir dir;
  WriteFile(dir.File("junk"), std::string(100, '\x01'));
  bool called = false;
  ConvertOptions opt;
  opt.progress = [&called](const ConvertProgress&) { called = true; };
  ConvertReport r = Convert(dir.File("junk"), dir.File("o"), opt);
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported);
  EXPECT_FALSE(called);
}

TEST(ConvertProgress, CancelStopsTheConversionAndLeavesNothing) {
  TempDir dir;
  WriteFile(dir.File("m.npy"), ZerosNpy(5u << 20));
  std::vector<ConvertProgress> calls;
  ConvertOptions opt;
  opt.progress = [&calls](const ConvertProgress& p) { calls.push_back(p); };
  // Cancel once 8 MiB of the output are written.
  opt.cancel = [&calls] { return !calls.empty() && calls.back().bytes_written >= (8u << 20); };
  ConvertReport r = Convert(dir.File("m.npy"), dir.File("m.safemodel"), opt);
  EXPECT_EQ(r.status.code(), StatusCode::kIoError) << r.status.ToString();
  EXPECT_NE(r.status.message().find("cancelled by the caller"), std::string::npos)
      << r.status.ToString();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kKilled);
  ASSERT_FALSE(calls.empty());
  EXPECT_LT(calls.back().bytes_written, 20u << 20) << "stopped before the end";
  EXPECT_EQ(dir.List(), std::vector<std::string>{"m.npy"});
  // Without progress, cancel alone is asked too.
  ConvertOptions only;
  only.cancel = [] { return true; };
  ConvertReport r2 = Convert(dir.File("m.npy"), dir.File("m.safemodel"), only);
  EXPECT_EQ(r2.status.code(), StatusCode::kIoError) << r2.status.ToString();
  EXPECT_EQ(dir.List(), std::vector<std::string>{"m.npy"});
}

}  // namespace
}  // namespace safemodel::testing
