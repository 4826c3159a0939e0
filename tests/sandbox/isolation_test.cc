// The isolation the parent sees, not the one the worker claims: the parent
// reads /proc/<pid> of the locked-down worker before it reads a single
// result frame (sandbox/observe.h), the worker drops root and every
// capability, re-executes itself with ASLR on, and nothing it leaves behind
// can keep the parent waiting.
#include <sys/personality.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "safemodel/convert.h"
#include "sandbox/observe.h"
#include "tests/sandbox/probe_util.h"

namespace safemodel::testing {
namespace {

bool Contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string Observed(const ConvertReport& r, const std::string& key) {
  for (const auto& [k, v] : r.worker.observed) {
    if (k == key) return v;
  }
  return "<missing>";
}

// The value of "key=" in a space-separated report.
std::string Field(const std::string& report, const std::string& key) {
  size_t at = report.find(key + "=");
  if (at == std::string::npos) return "<missing>";
  at += key.size() + 1;
  return report.substr(at, report.find(' ', at) - at);
}

TEST(Isolation, TheReportShowsWhatTheParentSawInProc) {
  TempDir out;
  ConvertReport r = Convert(Fixture("numpy/f32.npy"), out.File("m.safemodel"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  for (const std::string& layer : sandbox::MandatoryLayers()) {
    EXPECT_TRUE(Contains(r.worker.isolation, layer)) << layer;
  }
  EXPECT_EQ(Observed(r, "seccomp"), "2");
  EXPECT_EQ(Observed(r, "no_new_privs"), "1");
  EXPECT_EQ(Observed(r, "threads"), "1");
  for (const char* set : {"cap_eff", "cap_prm", "cap_inh", "cap_amb"}) {
    EXPECT_EQ(Observed(r, set), "0000000000000000") << set;
  }
  if (geteuid() == 0) {
    // Started by root: nobody, no groups, no capability even in the
    // bounding set.
    EXPECT_TRUE(Contains(r.worker.isolation, "non_root"));
    EXPECT_EQ(Observed(r, "uid"), "65534 65534 65534 65534");
    EXPECT_EQ(Observed(r, "gid"), "65534 65534 65534 65534");
    EXPECT_EQ(Observed(r, "groups"), "");
    EXPECT_EQ(Observed(r, "cap_bnd"), "0000000000000000");
  }
  // The worker's own account is kept apart, and says Landlock, which /proc
  // cannot show.
  EXPECT_TRUE(Contains(r.worker.claimed_isolation, "seccomp"));
  EXPECT_FALSE(Contains(r.worker.isolation, "landlock"));
  auto j = nlohmann::json::parse(r.ToJson());
  EXPECT_EQ(j["worker"]["observed"]["seccomp"], "2");
  EXPECT_TRUE(j["worker"]["claimed_isolation"].is_array());
  EXPECT_EQ(j["worker"]["isolation"].size(), r.worker.isolation.size());

  // Everything observed here can be required, and then it passes.
  ConvertOptions all;
  for (const std::string& layer : r.worker.isolation) all.required_isolation.push_back(layer);
  ConvertReport again = Convert(Fixture("numpy/f32.npy"), out.File("n.safemodel"), all);
  EXPECT_TRUE(again.status.ok()) << again.status.ToString();
}

// A worker that claims every layer and has none (a replaced binary): the
// parent sees the truth in /proc and never reads its result.
TEST(Isolation, ALyingWorkerIsRefusedBeforeItsResultIsRead) {
  TempDir out;
  ConvertReport r = ConvertWithProbe("lie", out);
  EXPECT_EQ(r.status.code(), StatusCode::kSandboxSetupFailed) << r.status.ToString();
  EXPECT_EQ(ExitCodeFor(r.status.code()), 70);
  EXPECT_NE(r.status.message().find("lacks required isolation: seccomp, no_new_privs"),
            std::string::npos)
      << r.status.message();
  EXPECT_TRUE(Contains(r.worker.claimed_isolation, "seccomp"));
  EXPECT_FALSE(Contains(r.worker.isolation, "seccomp"));
  EXPECT_FALSE(Contains(r.worker.isolation, "no_new_privs"));
  EXPECT_EQ(Observed(r, "seccomp"), "0");
  EXPECT_EQ(r.worker.signal, SIGKILL) << "killed while waiting for the go-ahead";
  EXPECT_EQ(r.tensor_count, 0u);
  EXPECT_TRUE(Leftovers(out).empty()) << ::testing::PrintToString(out.List());
}

// Where namespaces and Landlock are unavailable (a container's seccomp
// profile, simulated by a filter that fails unshare and landlock_* with
// EPERM), the conversion still runs on the mandatory layers, the report says
// which are missing, and requiring one of them fails closed.
TEST(Isolation, AMissingRequiredLayerFailsClosed) {
  TempDir out;
  ConvertReport r = ConvertWithProbe("no-namespaces", out);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  for (const char* ns : {"userns", "netns", "mntns", "ipcns", "utsns"}) {
    EXPECT_FALSE(Contains(r.worker.isolation, ns)) << ns;
    EXPECT_FALSE(Contains(r.worker.claimed_isolation, ns)) << ns;
  }
  EXPECT_FALSE(Contains(r.worker.claimed_isolation, "landlock"));
  for (const std::string& layer : sandbox::MandatoryLayers()) {
    EXPECT_TRUE(Contains(r.worker.isolation, layer)) << layer;
  }
  EXPECT_EQ(Observed(r, "seccomp_filters"), "2");  // the simulation's and ours
  std::remove(out.File("out.safemodel").c_str());

  ConvertOptions need_net;
  need_net.required_isolation = {"netns", "non_root"};
  r = ConvertWithProbe("no-namespaces", out, need_net);
  EXPECT_EQ(r.status.code(), StatusCode::kSandboxSetupFailed) << r.status.ToString();
  EXPECT_EQ(ExitCodeFor(r.status.code()), 70);
  EXPECT_NE(r.status.message().find("lacks required isolation: netns"), std::string::npos)
      << r.status.message();
  EXPECT_TRUE(Leftovers(out).empty());
}

TEST(Isolation, LayersThatCannotBeObservedCannotBeRequired) {
  TempDir out;
  for (const char* layer : {"landlock", "bogus", ""}) {
    ConvertOptions o;
    o.required_isolation = {layer};
    ConvertReport r = Convert(Fixture("numpy/f32.npy"), out.File("m.safemodel"), o);
    EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument) << layer << ": " << r.status.ToString();
    EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kNotStarted);
  }
  ConvertOptions o;
  o.required_isolation = {"landlock"};
  ConvertReport r = Convert(Fixture("numpy/f32.npy"), out.File("m.safemodel"), o);
  EXPECT_NE(r.status.message().find("Landlock is not visible in /proc"), std::string::npos)
      << r.status.message();
  EXPECT_TRUE(Leftovers(out).empty());
}

// Under `setarch -R` (or a debugger) a process inherits ADDR_NO_RANDOMIZE.
// The worker clears it and re-executes itself, so its layout is randomised;
// the parent checks /proc/<pid>/personality.
TEST(Aslr, AnInheritedNoRandomizeIsUndoneByAReexec) {
  const int before = personality(0xffffffff);
  ASSERT_GE(before, 0);
  ASSERT_GE(personality(static_cast<unsigned long>(before | ADDR_NO_RANDOMIZE)), 0);
  TempDir out;
  ConvertReport r = ConvertWithProbe("inventory", out);
  ProbeRun control = RunProbe("inventory", {.flags = {"unconfined"}});
  personality(static_cast<unsigned long>(before));

  ASSERT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
  const std::string& report = r.status.message();
  if (ForkServerMode()) {
    // A forked worker takes its personality from the zygote, started (by
    // exec, with its own EnsureAddressRandomization) before this test set
    // the flag: randomisation is on without a re-exec.
    EXPECT_EQ(Field(report, "personality"), "0") << report;
    EXPECT_TRUE(Contains(r.worker.isolation, "aslr"));
    EXPECT_EQ(Observed(r, "personality"), "00000000");
    return;
  }
  EXPECT_EQ(Field(report, "reexecuted"), "1") << report;
  EXPECT_EQ(Field(report, "personality"), "0") << report;
  EXPECT_TRUE(Contains(r.worker.isolation, "aslr"));
  EXPECT_EQ(Observed(r, "personality"), "00000000");
  // Control: the same probe without the worker's start-up keeps the flag,
  // so the test did set it.
  EXPECT_EQ(Field(control.error_message, "personality"), "0x40000") << control.Describe();
  EXPECT_EQ(Field(control.error_message, "reexecuted"), "0");
}

// A worker binary that forks (possible only before lockdown, or for a
// replaced binary) leaves a child holding the result channel. The parent
// notices the worker's exit, kills its process group, reports what happened
// and does not wait for its deadline.
TEST(Descendants, AChildHoldingTheChannelIsKilledWithTheWorkersGroup) {
  TempDir out;
  ConvertOptions o;
  o.timeout_ms = 30'000;
  ConvertReport r = ConvertWithProbe("grandchild", out, o);
  EXPECT_EQ(r.status.code(), StatusCode::kWorkerCrashed) << r.status.ToString();
  EXPECT_EQ(ExitCodeFor(r.status.code()), 5);
  EXPECT_NE(r.status.message().find("a process it started still held the result channel open; "
                                    "it was killed with the worker's process group"),
            std::string::npos)
      << r.status.message();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kExited);
  EXPECT_EQ(r.worker.exit_code, 0) << "the worker itself ended normally";
  EXPECT_LT(r.wall_seconds, 5.0) << "the parent waited for the held channel";
  EXPECT_TRUE(Leftovers(out).empty()) << "a complete result is still refused";
}

// A child that left the process group (setsid) cannot be killed through it;
// the parent still returns at once and says so.
TEST(Descendants, AChildThatLeftTheGroupDoesNotStallTheParent) {
  TempDir out;
  ConvertOptions o;
  o.timeout_ms = 30'000;
  ConvertReport r = ConvertWithProbe("grandchild-escaped", out, o);
  EXPECT_EQ(r.status.code(), StatusCode::kWorkerCrashed) << r.status.ToString();
  EXPECT_NE(r.status.message().find("has left the worker's process group"), std::string::npos)
      << r.status.message();
  EXPECT_LT(r.wall_seconds, 5.0);
  EXPECT_TRUE(Leftovers(out).empty());
}

}  // namespace
}  // namespace safemodel::testing
