// The worker's peak memory in the report is the worker's own (issue 15): a
// library user whose process is large must not see its own size reported as
// the worker's. Linux folds the spawning process's peak resident size into
// the child's wait4 ru_maxrss at exec (posix_spawn's child runs on the
// caller's memory until then), so the conversions here run in a child
// process that first makes itself 256 MiB large, then converts a tiny file.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "safemodel/convert.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

constexpr uint64_t kCallerBytes = 256ull << 20;
// A tiny .npy's worker: a few MiB of its own (code, libraries, buffers).
// Far below kCallerBytes, above any worker's real peak for such a file.
constexpr uint64_t kTinyWorkerBound = 64ull << 20;

// In a child process: touches kCallerBytes of its own memory, converts `in`
// (with a fork server if `fork_server`), writes the JSON report to
// `report_path`. Returns the parsed report, or null on failure.
nlohmann::json ConvertFromALargeProcess(const std::string& in, const TempDir& dir, bool fork_server) {
  const std::string report_path = dir.File("report.json");
  pid_t child = fork();
  if (child < 0) return nullptr;
  if (child == 0) {
    void* big = mmap(nullptr, kCallerBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) _exit(2);
    std::memset(big, 0x5a, kCallerBytes);  // resident: this process is now > 256 MiB
    ConvertOptions options;
    if (fork_server) {
      Result<std::shared_ptr<sandbox::ForkServer>> server = StartForkServer(options);
      if (!server.ok()) _exit(3);
      options.fork_server = *server;
    }
    options.sync_output = false;
    options.timeout_ms = 60'000;
    ConvertReport r = ConvertFile(in, dir.File("out.safemodel"), options);
    WriteFile(report_path, r.ToJson());
    _exit(r.status.ok() ? 0 : 1);
  }
  int wstatus = 0;
  if (waitpid(child, &wstatus, 0) != child || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    ADD_FAILURE() << "the converting child failed, wait status " << wstatus << ": "
                  << (Exists(report_path) ? ReadFile(report_path) : "(no report)");
    return nullptr;
  }
  return nlohmann::json::parse(ReadFile(report_path), nullptr, /*allow_exceptions=*/false);
}

void ExpectTheWorkersOwnPeak(bool fork_server) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  GTEST_SKIP() << "shadow memory adds tens of MiB to the worker";
#endif
  TempDir dir;
  WriteFile(dir.File("tiny.npy"), NpyBytes(64));
  const nlohmann::json j = ConvertFromALargeProcess(dir.File("tiny.npy"), dir, fork_server);
  ASSERT_TRUE(j.is_object());
  ASSERT_EQ(j["status"], "ok") << j.dump();
  // The caller really was large (its own figure, folded the same way).
  EXPECT_GT(j["parent_max_rss_bytes"].get<uint64_t>(), kCallerBytes);
  const uint64_t peak = j["worker"]["max_rss_bytes"].get<uint64_t>();
  EXPECT_GT(peak, 0u);
  EXPECT_LT(peak, kTinyWorkerBound) << "the worker's peak includes the caller's " << (kCallerBytes >> 20)
                                    << " MiB: " << j["worker"].dump();
  EXPECT_EQ(j["worker"]["max_rss_source"], "vmhwm") << "read in /proc while the worker waited";
}

TEST(WorkerPeakMemory, AnExecdWorkersPeakIsItsOwnNotTheLargeCallers) { ExpectTheWorkersOwnPeak(false); }

TEST(WorkerPeakMemory, AForkedWorkersPeakIsItsOwnNotTheLargeCallers) { ExpectTheWorkersOwnPeak(true); }

}  // namespace
}  // namespace safemodel::testing
