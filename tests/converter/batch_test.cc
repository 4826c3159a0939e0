// safemodel/batch.h: many conversions N at a time through one function,
// results through a callback, Cancel(); and the facts every report carries
// whatever the outcome (the input's SHA-256 and format, issue 12).
#include "safemodel/batch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/testing/test_util.h"

namespace safemodel {
namespace {

using testing::Fixture;
using testing::TempDir;

std::vector<BatchItem> Items(const TempDir& out, const std::vector<std::string>& fixtures) {
  std::vector<BatchItem> items;
  for (size_t i = 0; i < fixtures.size(); ++i) {
    items.push_back({"item" + std::to_string(i), Fixture(fixtures[i]), out.File("o" + std::to_string(i))});
  }
  return items;
}

BatchOptions FastOptions(unsigned jobs) {
  BatchOptions o;
  o.jobs = jobs;
  o.convert.sync_output = false;
  o.convert.timeout_ms = 60'000;
  return o;
}

TEST(Batch, EveryItemIsConvertedOnceAndReportedAsItFinishes) {
  TempDir out;
  const auto items = Items(out, {"numpy/f32.npy", "numpy/object_malicious.npy", "numpy/truncated.npy",
                                 "numpy/i64.npy", "keras_h5/dtypes.h5", "pickle/torch/dtypes_zip.pt"});
  Batch batch(FastOptions(2));
  std::vector<BatchResult> results;
  const BatchSummary s = batch.Run(items, [&](const BatchResult& r) { results.push_back(r); });
  EXPECT_EQ(s.finished, items.size());
  EXPECT_EQ(s.not_started, 0u);
  ASSERT_EQ(results.size(), items.size());
  std::set<size_t> seen;
  for (const BatchResult& r : results) {
    EXPECT_TRUE(seen.insert(r.index).second);
    EXPECT_EQ(r.item.id, items[r.index].id);
    // The same outcome as a conversion on its own.
    const ConvertReport single = testing::Convert(r.item.input_path, out.File("single" + r.item.id));
    EXPECT_EQ(r.report.status.code(), single.status.code()) << r.item.input_path;
    EXPECT_EQ(r.report.input_sha256, single.input_sha256);
    if (r.report.status.ok()) {
      EXPECT_EQ(r.output_sha256, *Sha256OfFile(r.item.output_path));
      EXPECT_EQ(testing::ReadFile(r.item.output_path), testing::ReadFile(out.File("single" + r.item.id)));
    } else {
      EXPECT_EQ(r.output_sha256, "");
      EXPECT_FALSE(testing::Exists(r.item.output_path));
    }
  }
  EXPECT_EQ(std::string(BatchStatusName(results[0].report.status.code())).empty(), false);
}

// The one function is the only call site: a host's own converter (a
// pre-forked pool, a remote service) sees every item, at most `jobs` at once.
TEST(Batch, TheConvertFunctionIsTheOnlyCallSiteAndJobsBoundsConcurrency) {
  TempDir out;
  std::vector<BatchItem> items;
  for (int i = 0; i < 12; ++i) items.push_back({"i" + std::to_string(i), "in" + std::to_string(i), "out"});
  std::atomic<int> running{0}, peak{0}, calls{0};
  BatchOptions o = FastOptions(3);
  o.hash_outputs = false;
  o.convert_function = [&](const std::string& in, const std::string& outp, const ConvertOptions&) {
    const int now = ++running;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    --running;
    ConvertReport r;
    r.input_path = in;
    r.output_path = outp;
    r.status = Status::Refused("stand-in");
    return r;
  };
  Batch batch(o);
  size_t delivered = 0;
  batch.Run(items, [&](const BatchResult& r) {
    ++delivered;
    EXPECT_EQ(r.report.input_path, items[r.index].input_path);
  });
  EXPECT_EQ(calls.load(), 12);
  EXPECT_EQ(delivered, 12u);
  EXPECT_LE(peak.load(), 3);
  EXPECT_GE(peak.load(), 2);  // 12 items of 20 ms on 3 threads do overlap
}

TEST(Batch, CancelStopsStartingNewItemsAndLetsRunningOnesFinish) {
  std::vector<BatchItem> items;
  for (int i = 0; i < 50; ++i) items.push_back({"i" + std::to_string(i), "in", "out"});
  BatchOptions o = FastOptions(2);
  o.hash_outputs = false;
  o.convert_function = [](const std::string&, const std::string&, const ConvertOptions&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return ConvertReport();
  };
  Batch batch(o);
  size_t delivered = 0;
  const BatchSummary s = batch.Run(items, [&](const BatchResult&) {
    if (++delivered == 3) batch.Cancel();
  });
  EXPECT_TRUE(batch.cancelled());
  EXPECT_EQ(s.finished, delivered);
  EXPECT_GE(delivered, 3u);
  EXPECT_LE(delivered, 4u);  // the other thread's item in flight ends and is delivered
  EXPECT_EQ(s.finished + s.not_started, items.size());
}

// A worker stuck in libhdf5 (tests/fixtures/library_hangs) holds its own
// slot until its time limit; the other slot converts everything else
// meanwhile. Its report still has the input's SHA-256 and its format.
TEST(Batch, AHangingWorkerIsTimedOutWithoutStallingTheRest) {
  TempDir out;
  std::vector<std::string> fixtures = {"library_hangs/hang_global_heap.h5"};
  for (const char* f : {"numpy/f32.npy", "numpy/i8.npy", "numpy/u16.npy", "numpy/f64.npy", "numpy/bool.npy",
                        "numpy/c64.npy", "numpy/object_malicious.npy", "numpy/stored.npz"}) {
    fixtures.push_back(f);
  }
  const auto items = Items(out, fixtures);
  BatchOptions o = FastOptions(2);
  o.convert.timeout_ms = 4000;
  // The lean worker first, whose hand-off says "hdf5" (with the name hint,
  // the HDF5 worker alone says nothing before it hangs: name_hint_test).
  o.convert.hdf5_name_hint = false;
  Batch batch(o);
  std::vector<size_t> order;
  std::vector<BatchResult> results(items.size());
  const auto t0 = std::chrono::steady_clock::now();
  batch.Run(items, [&](const BatchResult& r) {
    order.push_back(r.index);
    results[r.index] = r;
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(order.size(), items.size());
  EXPECT_EQ(order.back(), 0u) << "the hanging input finished before the others";
  const ConvertReport& hang = results[0].report;
  EXPECT_EQ(hang.status.code(), StatusCode::kTimeout) << hang.status.ToString();
  EXPECT_STREQ(BatchStatusName(hang.status.code()), "limit");
  EXPECT_EQ(hang.worker.kind, WorkerOutcome::Kind::kTimeout);
  EXPECT_EQ(hang.input_sha256, *Sha256OfFile(items[0].input_path));
  EXPECT_EQ(hang.source_format, "hdf5");  // said by the hand-off, before the hang
  for (size_t i = 1; i < items.size(); ++i) {
    EXPECT_NE(results[i].report.status.code(), StatusCode::kTimeout) << fixtures[i];
  }
  EXPECT_LT(seconds, 4.0 + 20.0);  // the limit, plus generous slack for a loaded machine
}

// Issue 12's report gap: a refused, malformed or unsupported input's report
// has the parent's SHA-256 of it, and its format as far as a worker said.
TEST(Batch, EveryReportHasTheInputsSha256AndFormat) {
  TempDir out;
  const auto items = Items(out, {"numpy/object_malicious.npy", "numpy/truncated.npy", "keras_h5/lambda_in_wrapper.h5",
                                 "polyglot/tar_pickle_code.pkl", "numpy/f32.npy"});
  Batch batch(FastOptions(2));
  batch.Run(items, [&](const BatchResult& r) {
    EXPECT_EQ(r.report.input_sha256, *Sha256OfFile(r.item.input_path)) << r.item.input_path;
    EXPECT_NE(r.report.source_format, "") << r.item.input_path;
    EXPECT_NE(r.report.source_format, "unknown") << r.item.input_path;
    const auto j = nlohmann::json::parse(BatchResultJson(r, BatchOptionsFingerprint({})));
    EXPECT_EQ(j["input"]["sha256"], r.report.input_sha256);
    EXPECT_EQ(j["schema_version"], kBatchResultsSchemaVersion);
    EXPECT_EQ(j["status"], BatchStatusName(r.report.status.code()));
  });
}

TEST(Batch, StatusNamesCoverEveryCode) {
  EXPECT_STREQ(BatchStatusName(StatusCode::kOk), "converted");
  EXPECT_STREQ(BatchStatusName(StatusCode::kRefused), "refused");
  EXPECT_STREQ(BatchStatusName(StatusCode::kMalformed), "malformed");
  EXPECT_STREQ(BatchStatusName(StatusCode::kUnsupported), "unsupported");
  EXPECT_STREQ(BatchStatusName(StatusCode::kLimitExceeded), "limit");
  EXPECT_STREQ(BatchStatusName(StatusCode::kTimeout), "limit");
  EXPECT_STREQ(BatchStatusName(StatusCode::kSandboxViolation), "sandbox");
  EXPECT_STREQ(BatchStatusName(StatusCode::kWorkerCrashed), "sandbox");
  EXPECT_STREQ(BatchStatusName(StatusCode::kIoError), "io_error");
  EXPECT_STREQ(BatchStatusName(StatusCode::kInvalidArgument), "invalid");
  EXPECT_GE(DefaultBatchJobs(), 1u);
}

TEST(Batch, TheFingerprintChangesWithWhatChangesTheResult) {
  ConvertOptions a;
  ConvertOptions b;
  EXPECT_EQ(BatchOptionsFingerprint(a), BatchOptionsFingerprint(b));
  b.digest = DigestAlgorithm::kSha256;
  EXPECT_NE(BatchOptionsFingerprint(a), BatchOptionsFingerprint(b));
  b = a;
  b.memory_limit_bytes = 1ull << 30;
  EXPECT_NE(BatchOptionsFingerprint(a), BatchOptionsFingerprint(b));
  b = a;
  b.sync_output = false;  // how durable, not what: the same result
  EXPECT_EQ(BatchOptionsFingerprint(a), BatchOptionsFingerprint(b));
}

}  // namespace
}  // namespace safemodel
