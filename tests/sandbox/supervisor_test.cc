// sandbox::Worker's account of the worker's peak memory (Dismiss, Kill,
// Wait) with sandbox-probe as the worker, through ConvertFile. The forked
// runs (sandbox.forked.*) take the same paths through a fork server.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "safemodel/convert.h"
#include "tests/sandbox/probe_util.h"

namespace safemodel::testing {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// A worker that waits to be dismissed after its result, as the real ones do,
// is measured in /proc while alive: its own peak, what it touched and freed
// included, and nothing of this process's.
TEST(PeakMemory, AWorkerWaitingForItsDismissalIsMeasuredInProc) {
  TempDir out_small, out_large;
  ConvertReport small = ConvertWithProbe("ok-then-wait 0", out_small);
  ASSERT_TRUE(small.status.ok()) << small.status.ToString();
  EXPECT_EQ(small.worker.max_rss_source, "vmhwm");
  ConvertReport large = ConvertWithProbe("ok-then-wait 48", out_large);
  ASSERT_TRUE(large.status.ok()) << large.status.ToString();
  EXPECT_EQ(large.worker.max_rss_source, "vmhwm");
  EXPECT_EQ(large.worker.kind, WorkerOutcome::Kind::kExited);
  EXPECT_EQ(large.worker.exit_code, 0);
  EXPECT_GE(large.worker.max_rss_bytes, 48 * kMiB) << "touched, then freed: still its peak";
#if !defined(SAFEMODEL_SANITIZER_BUILD)  // shadow memory adds tens of MiB
  EXPECT_LT(small.worker.max_rss_bytes, 32 * kMiB);
  EXPECT_LT(large.worker.max_rss_bytes, small.worker.max_rss_bytes + 56 * kMiB);
#endif
}

// A host that forks while a conversion runs (a multiprocessing pool, a
// fork without exec) gives the child a copy of every descriptor, the
// parent's end of the worker's control channel included, for as long as
// the child lives: the dismissal must reach the worker anyway.
TEST(PeakMemory, AProcessTheHostForksDoesNotHoldBackTheDismissal) {
  TempDir out;
  ConvertOptions o;
  o.timeout_ms = 20'000;
  pid_t holder = -1;
  o.progress = [&](const ConvertProgress&) {
    if (holder > 0) return;
    holder = fork();
    if (holder == 0) {
      pause();  // holds every descriptor until killed
      _exit(0);
    }
  };
  ConvertReport r = ConvertWithProbe("ok-then-wait 0", out, o);
  ASSERT_GT(holder, 0) << "the progress hook ran";
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.worker.max_rss_source, "vmhwm");
  EXPECT_LT(r.wall_seconds, 5.0) << "the worker waited for its deadline";
}

// A worker gone before its result was in cannot be read in /proc: the
// report falls back to wait4's figure and says so.
TEST(PeakMemory, AWorkerThatDiedBeforeItsResultFallsBackToRusage) {
  TempDir out;
  ConvertReport r = ConvertWithProbe("segv", out);
  EXPECT_EQ(r.status.code(), StatusCode::kWorkerCrashed) << r.status.ToString();
  EXPECT_EQ(r.worker.max_rss_source, "rusage");
  EXPECT_GT(r.worker.max_rss_bytes, 0u);
}

// A worker that neither waits for its dismissal nor exits after its result
// is ended by the deadline, as any hung worker, and nothing is kept.
TEST(PeakMemory, AWorkerThatHangsAfterItsResultIsStoppedByTheDeadline) {
  TempDir out;
  ConvertOptions o;
  o.timeout_ms = 1000;
  ConvertReport r = ConvertWithProbe("ok-then-park", out, o);
  EXPECT_EQ(r.status.code(), StatusCode::kTimeout) << r.status.ToString();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kTimeout);
  EXPECT_GE(r.wall_seconds, 0.9);
  EXPECT_LT(r.wall_seconds, 1.0 + 4.0) << "limit + grace";
  EXPECT_EQ(r.worker.max_rss_source, "vmhwm") << "read at its dismissal, while it was alive";
  EXPECT_TRUE(Leftovers(out).empty()) << ::testing::PrintToString(out.List());
}

// A worker this process kills (here at the deadline; an output failure or a
// broken stream take the same path) is measured just before the kill.
TEST(PeakMemory, AWorkerKilledAtTheDeadlineIsMeasuredBeforeTheKill) {
  TempDir out;
  ConvertOptions o;
  o.timeout_ms = 500;
  ConvertReport r = ConvertWithProbe("silent", out, o);  // no frame after LOCKED, never exits
  EXPECT_EQ(r.status.code(), StatusCode::kTimeout) << r.status.ToString();
  EXPECT_EQ(r.worker.max_rss_source, "vmhwm");
  EXPECT_GT(r.worker.max_rss_bytes, 0u);
}

}  // namespace
}  // namespace safemodel::testing
