// The two workers and the hand-off between them (converter/pipeline.cc,
// converter/protocol/conversion_protocol.h). Every conversion (with the
// name hint off) starts the lean worker (no libhdf5); an input that needs libhdf5 is converted again,
// from the start, by safemodel-worker-hdf5. The result must be exactly the
// one the HDF5 worker gives alone (which is what the single worker gave
// before the split), and a hand-off outside the rules breaks the protocol.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sandbox/fork_server.h"

#include "tests/loader/keras3/manifest.h"
#include "tests/sandbox/probe_util.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

// Every test here is of the hand-off, so the lean worker must run first:
// the HDF5 name hint (ConvertOptions::hdf5_name_hint, which would start the
// HDF5 worker alone for a .h5) is off. name_hint_test.cc tests the hint.
ConvertReport Convert(const std::string& in, const std::string& out, ConvertOptions options = {}) {
  options.hdf5_name_hint = false;
  return safemodel::testing::Convert(in, out, options);
}

std::string LeanWorker() { return BinDir() + "/safemodel-worker"; }
std::string Hdf5Worker() { return BinDir() + "/safemodel-worker-hdf5"; }

std::string Describe(const ConvertReport& r) {
  std::string s = r.status.ToString() + " [" + r.worker.program +
                  (r.worker.hand_off ? ", after a hand-off" : "") + "]";
  for (const Finding& f : r.findings) s += "\n  " + f.rule + " @ " + f.location + ": " + f.message;
  return s;
}

// Converts `input` as users do (lean worker first) and with the HDF5 worker
// alone (as the one worker did before), and expects the same outcome:
// status, findings, format and output bytes. Returns the first report.
ConvertReport ExpectSameAsHdf5WorkerAlone(const std::string& input, ConvertOptions options = {}) {
  TempDir dir;
  ConvertReport split = Convert(input, dir.File("split.safemodel"), options);
  ConvertOptions alone_options = options;
  alone_options.worker_path = Hdf5Worker();
  ConvertReport alone = Convert(input, dir.File("alone.safemodel"), alone_options);
  // No worker starts for an input the parent refuses itself (a SavedModel
  // directory holding a link): then neither run starts one.
  EXPECT_EQ(alone.worker.program, split.worker.program.empty() ? "" : "safemodel-worker-hdf5")
      << input;
  EXPECT_FALSE(alone.worker.hand_off);
  EXPECT_EQ(split.status.code(), alone.status.code()) << input << "\n" << Describe(split) << "\n"
                                                      << Describe(alone);
  EXPECT_EQ(split.status.message(), alone.status.message()) << input;
  EXPECT_EQ(split.source_format, alone.source_format) << input;
  EXPECT_EQ(split.findings.size(), alone.findings.size()) << input;
  for (size_t i = 0; i < split.findings.size() && i < alone.findings.size(); ++i) {
    EXPECT_EQ(split.findings[i].rule, alone.findings[i].rule) << input;
    EXPECT_EQ(split.findings[i].location, alone.findings[i].location) << input;
    EXPECT_EQ(split.findings[i].message, alone.findings[i].message) << input;
  }
  EXPECT_EQ(Exists(dir.File("split.safemodel")), Exists(dir.File("alone.safemodel"))) << input;
  if (Exists(dir.File("split.safemodel")) && Exists(dir.File("alone.safemodel"))) {
    EXPECT_TRUE(ReadFile(dir.File("split.safemodel")) == ReadFile(dir.File("alone.safemodel")))
        << input << ": the outputs differ";
  }
  return split;
}

TEST(HandOff, NpyIsConvertedByTheLeanWorkerAlone) {
  ConvertReport r = ExpectSameAsHdf5WorkerAlone(Fixture("numpy/f32.npy"));
  ASSERT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_EQ(r.worker.program, "safemodel-worker");
  EXPECT_FALSE(r.worker.hand_off);
}

TEST(HandOff, KerasH5IsHandedToTheHdf5Worker) {
  ConvertReport r =
      ExpectSameAsHdf5WorkerAlone(SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5");
  ASSERT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  EXPECT_TRUE(r.worker.hand_off);
  EXPECT_EQ(r.source_format, "keras_h5");
  // The report says so, and what it says is the HDF5 worker's run.
  EXPECT_NE(r.ToJson().find("\"hand_off\": true"), std::string::npos) << r.ToJson();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kExited);
  EXPECT_FALSE(r.worker.isolation.empty());
}

TEST(HandOff, RefusedKerasH5IsRefusedAsBefore) {
  ConvertReport r = ExpectSameAsHdf5WorkerAlone(Fixture("keras_h5/bidi_lambda.h5"));
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
}

// A .npy file with an HDF5 file in its user block (at byte 512, where
// libhdf5 looks): two readings, one of which needs libhdf5.
TEST(HandOff, NpyWithAnHdf5UserBlockIsHandedOff) {
  TempDir dir;
  std::string npy = NpyBytes(64);
  ASSERT_LT(npy.size(), 512u);
  npy.resize(512, '\0');
  for (const char* h5 :
       {"/examples/models/keras_cnn.h5", "/tests/fixtures/keras_h5/bidi_lambda.h5"}) {
    WriteFile(dir.File("poly.npy"), npy + ReadFile(std::string(SAFEMODEL_SOURCE_DIR) + h5));
    ConvertReport r = ExpectSameAsHdf5WorkerAlone(dir.File("poly.npy"));
    EXPECT_FALSE(r.status.ok()) << Describe(r);
    EXPECT_TRUE(r.worker.hand_off) << h5;
    EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  }
}

// Every fixture of the formats that meet libhdf5 (and a sample of the
// others) ends exactly as with the HDF5 worker alone.
TEST(HandOff, FixturesConvertAsWithTheHdf5WorkerAlone) {
  int handed_off = 0, lean_only = 0;
  for (const char* folder : {"keras_h5", "polyglot", "numpy", "zip"}) {
    for (const auto& e : std::filesystem::directory_iterator(Fixture(folder))) {
      const std::string name = e.path().filename().string();
      if (!e.is_regular_file() || name.ends_with(".py") || name.ends_with(".md")) continue;
      ConvertReport r = ExpectSameAsHdf5WorkerAlone(e.path().string());
      (r.worker.hand_off ? handed_off : lean_only) += 1;
      if (std::string_view(folder) == "keras_h5") {
        ConvertOptions weights_only;
        weights_only.weights_only = true;
        ExpectSameAsHdf5WorkerAlone(e.path().string(), weights_only);
      }
    }
  }
  EXPECT_GT(handed_off, 20);
  EXPECT_GT(lean_only, 20);
}

// The HDF5 worker is looked for beside a lean worker the caller names; a
// missing one matters only for inputs that need it.
TEST(HandOff, TheHdf5WorkerIsFoundBesideTheNamedLeanWorker) {
  TempDir bin, out;
  std::filesystem::copy_file(LeanWorker(), bin.File("safemodel-worker"));
  chmod(bin.File("safemodel-worker").c_str(), 0755);
  ConvertOptions o;
  o.worker_path = bin.File("safemodel-worker");
  ConvertReport npy = Convert(Fixture("numpy/f32.npy"), out.File("npy.safemodel"), o);
  EXPECT_TRUE(npy.status.ok()) << Describe(npy);
  ConvertReport h5 = Convert(SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5",
                             out.File("h5.safemodel"), o);
  EXPECT_EQ(h5.status.code(), StatusCode::kSandboxSetupFailed) << Describe(h5);
  EXPECT_NE(h5.status.message().find("safemodel-worker-hdf5"), std::string::npos);
  EXPECT_NE(h5.status.message().find(bin.path()), std::string::npos) << h5.status.message();
  EXPECT_TRUE(h5.worker.hand_off);
  EXPECT_FALSE(Exists(out.File("h5.safemodel")));

  std::filesystem::copy_file(Hdf5Worker(), bin.File("safemodel-worker-hdf5"));
  chmod(bin.File("safemodel-worker-hdf5").c_str(), 0755);
  h5 = Convert(SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5", out.File("h5.safemodel"), o);
  EXPECT_TRUE(h5.status.ok()) << Describe(h5);
  // An explicit --hdf5-worker wins.
  o.hdf5_worker_path = out.File("nowhere");
  h5 = Convert(SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5", out.File("h5b.safemodel"), o);
  EXPECT_EQ(h5.status.code(), StatusCode::kSandboxSetupFailed) << Describe(h5);
}


// $SAFEMODEL_HDF5_WORKER names the HDF5 worker when the lean one has none
// beside it; like $SAFEMODEL_WORKER it must be an absolute path.
TEST(HandOff, Hdf5WorkerEnvironmentVariableNamesTheHdf5Worker) {
  TempDir bin, out;
  std::filesystem::copy_file(LeanWorker(), bin.File("safemodel-worker"));
  chmod(bin.File("safemodel-worker").c_str(), 0755);
  ConvertOptions o;
  o.worker_path = bin.File("safemodel-worker");
  const std::string h5 = SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5";
  {
    setenv("SAFEMODEL_HDF5_WORKER", Hdf5Worker().c_str(), 1);
    ConvertReport r = Convert(h5, out.File("a.safemodel"), o);
    unsetenv("SAFEMODEL_HDF5_WORKER");
    EXPECT_TRUE(r.status.ok()) << Describe(r);
    EXPECT_TRUE(r.worker.hand_off);
    EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  }
  {
    setenv("SAFEMODEL_HDF5_WORKER", "safemodel-worker-hdf5", 1);
    ConvertReport r = Convert(h5, out.File("b.safemodel"), o);
    unsetenv("SAFEMODEL_HDF5_WORKER");
    EXPECT_EQ(r.status.code(), StatusCode::kSandboxSetupFailed) << Describe(r);
    EXPECT_NE(r.status.message().find("absolute"), std::string::npos) << Describe(r);
    EXPECT_FALSE(Exists(out.File("b.safemodel")));
  }
  // An explicit hdf5_worker_path wins over the variable.
  {
    setenv("SAFEMODEL_HDF5_WORKER", out.File("nowhere").c_str(), 1);
    o.hdf5_worker_path = Hdf5Worker();
    ConvertReport r = Convert(h5, out.File("c.safemodel"), o);
    unsetenv("SAFEMODEL_HDF5_WORKER");
    EXPECT_TRUE(r.status.ok()) << Describe(r);
  }
}

// ---------------------------------------------------------------------------
// Keras 3 and TensorFlow inputs (tests/fixtures/keras3_tf/). A .keras
// archive whose weights are HDF5 (model.weights.h5, sharded .weights.h5
// members), a standalone *.weights.h5 and a sharded *.weights.json store
// need libhdf5: handed off, a multi-file input with every one of its files
// passed to the HDF5 worker again. A .keras archive with model.weights.npz,
// TF checkpoints and SavedModels never meet libhdf5: the lean worker alone.

std::string Keras3Fixture(const std::string& relative) { return Fixture("keras3_tf/" + relative); }

TEST(HandOff, KerasArchiveWithHdf5WeightsIsHandedOff) {
  ConvertReport r = ExpectSameAsHdf5WorkerAlone(Keras3Fixture("keras3/k3_sequential.keras"));
  ASSERT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
  EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  EXPECT_GT(r.tensor_count, 0u);
}

TEST(HandOff, StandaloneWeightsH5IsHandedOff) {
  ConvertReport r = ExpectSameAsHdf5WorkerAlone(Keras3Fixture("keras3/k3_standalone.weights.h5"));
  ASSERT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
  EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  EXPECT_GT(r.tensor_count, 0u);
}

// Several files (the JSON map and its shards, from fd 6 on, with their list
// on fd 4): the HDF5 worker gets all of them again.
TEST(HandOff, ShardedWeightStoreIsHandedOffWithEveryFile) {
  for (const char* input : {"keras3/k3_sharded/model.weights.json", "keras3/k3_sharded/"}) {
    ConvertReport r = ExpectSameAsHdf5WorkerAlone(Keras3Fixture(input));
    ASSERT_TRUE(r.status.ok()) << input << ": " << Describe(r);
    EXPECT_TRUE(r.worker.hand_off) << input;
    EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5") << input;
    EXPECT_GT(r.tensor_count, 0u) << input;
  }
}

TEST(HandOff, KerasArchiveWithNpzWeightsStaysInTheLeanWorker) {
  ConvertReport r = ExpectSameAsHdf5WorkerAlone(Keras3Fixture("keras3/k3_npz_numpy_only.keras"));
  ASSERT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_FALSE(r.worker.hand_off);
  EXPECT_EQ(r.worker.program, "safemodel-worker");
}

TEST(HandOff, SavedModelAndCheckpointStayInTheLeanWorker) {
  for (const char* input : {"tf/sm_weights_only/", "tf/ckpt_basic/", "tf/ckpt_basic/ckpt-1.index",
                            "tf/ckpt_two_shards/ckpt.index"}) {
    ConvertReport r = ExpectSameAsHdf5WorkerAlone(Keras3Fixture(input));
    ASSERT_TRUE(r.status.ok()) << input << ": " << Describe(r);
    EXPECT_FALSE(r.worker.hand_off) << input;
    EXPECT_EQ(r.worker.program, "safemodel-worker") << input;
    EXPECT_GT(r.tensor_count, 0u) << input;
  }
}

// Every row of the fixtures' manifest (but the slim corpus copies, which
// keras3_convert_test runs) ends exactly as with the HDF5 worker alone,
// with the row's exit code, and is handed off exactly when it needs
// libhdf5.
TEST(HandOff, Keras3AndTfFixturesConvertAsWithTheHdf5WorkerAlone) {
  std::map<std::string, int> handed_off, lean;  // rows, by layout
  for (const keras3::Row& row : keras3::Manifest()) {
    if (row.xz()) continue;
    ConvertOptions o;
    o.weights_only = row.weights_only();
    ConvertReport r = ExpectSameAsHdf5WorkerAlone(Keras3Fixture(row["file"]), o);
    const std::string& layout = row["layout"];
    EXPECT_EQ(ExitCodeFor(r.status.code()), row.exit_code()) << row.key() << ": " << Describe(r);
    (r.worker.hand_off ? handed_off : lean)[layout] += 1;
    if (layout.starts_with("tf-") || layout == "keras-zip/npz") {
      EXPECT_FALSE(r.worker.hand_off) << row.key() << ": " << Describe(r);
    }
    const bool hdf5_weights = layout == "keras-zip/h5" || layout == "keras-weights-h5" ||
                              layout == "keras-sharded-json" || layout == "keras-zip/sharded";
    if (row.exit_code() == 0 && hdf5_weights) {
      EXPECT_TRUE(r.worker.hand_off) << row.key() << ": " << Describe(r);
    }
  }
  EXPECT_GE(handed_off["keras-zip/h5"], 20) << ::testing::PrintToString(handed_off);
  EXPECT_GE(lean["tf-checkpoint"], 20) << ::testing::PrintToString(lean);
  EXPECT_GE(lean["tf-savedmodel"], 10) << ::testing::PrintToString(lean);
}

// ---------------------------------------------------------------------------
// Hostile workers (tests/sandbox/sandbox_probe.cc, mode "hand-off").

// A lean worker that asks for the hand-off gains nothing: the real HDF5
// worker reads the input itself, in the same sandbox.
TEST(HostileHandOff, ALeanWorkerHandingOffGetsTheRealHdf5Worker) {
  TempDir out;
  ConvertReport r = ConvertWithProbe("hand-off", out);
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << Describe(r);  // "probe:..." is no model
  EXPECT_NE(r.status.message().find("unrecognised input format"), std::string::npos) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
  EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  EXPECT_TRUE(Leftovers(out).empty());
}

// The HDF5 worker may not hand off: the second hand-off of a conversion
// breaks the protocol (exit 5), and nothing is written.
TEST(HostileHandOff, AHandOffFromTheHdf5WorkerBreaksTheProtocol) {
  TempDir out;
  ConvertOptions o;
  o.hdf5_worker_path = ProbePath();
  ConvertReport r = ConvertWithProbe("hand-off", out, o);
  EXPECT_EQ(r.status.code(), StatusCode::kWorkerCrashed) << Describe(r);
  EXPECT_EQ(ExitCodeFor(r.status.code()), 5);
  EXPECT_NE(r.status.message().find("hand-off"), std::string::npos) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
  EXPECT_TRUE(Leftovers(out).empty());
}

TEST(HostileHandOff, BrokenHandOffsBreakTheProtocol) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"hand-off twice", "frame after the end of the result"},
      {"hand-off after-header", "a hand-off after the header"},
      {"hand-off with-message", "a hand-off with other fields set"},
      {"hand-off unknown", "unknown hand-off"},
      {"hand-off-unlocked", "a hand-off before the worker reported its lockdown"},
  };
  for (const auto& [mode, message] : cases) {
    TempDir out;
    ConvertReport r = ConvertWithProbe(mode, out);
    EXPECT_EQ(r.status.code(), StatusCode::kWorkerCrashed) << mode << ": " << Describe(r);
    EXPECT_NE(r.status.message().find(message), std::string::npos) << mode << ": " << Describe(r);
    EXPECT_FALSE(r.worker.hand_off) << mode;
    EXPECT_EQ(r.worker.program, "sandbox-probe") << mode;
    EXPECT_TRUE(Leftovers(out).empty()) << mode;
  }
}


// ---------------------------------------------------------------------------
// With a fork server (ConvertOptions::fork_server): the HDF5 worker of a
// hand-off is forked from its own zygote (ForkServer::Companion), started at
// the first hand-off, and the results are those of exec'd workers.

std::shared_ptr<sandbox::ForkServer> StartServer(const ConvertOptions& options) {
  Result<std::shared_ptr<sandbox::ForkServer>> server = StartForkServer(options);
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? *server : nullptr;
}

// The children of `pid` (its main thread's), from /proc.
std::string ChildrenOf(pid_t pid) {
  const std::string p = "/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children";
  return Exists(p) ? ReadFile(p) : "";
}

TEST(HandOffForkServer, TheHdf5WorkerIsForkedFromItsOwnZygoteStartedAtTheFirstHandOff) {
  ConvertOptions o;
  o.worker_path = LeanWorker();
  std::shared_ptr<sandbox::ForkServer> server = StartServer(o);
  ASSERT_NE(server, nullptr);
  TempDir dir;
  ConvertOptions forked = o;
  forked.fork_server = server;
  // No HDF5 input yet: no second zygote.
  ConvertReport npy = Convert(Fixture("numpy/f32.npy"), dir.File("npy.safemodel"), forked);
  ASSERT_TRUE(npy.status.ok()) << Describe(npy);
  EXPECT_EQ(server->companions(), 0u);
  const std::vector<std::string> inputs = {
      SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5",
      Fixture("keras_h5/corpus/promptfoo__modelaudit__tests__assets__samples__keras__safe_model.h5"),
      Fixture("keras_h5/corpus/promptfoo__modelaudit__tests__assets__samples__keras__malicious_lambda.h5"),
      Fixture("keras_h5/bidi_lambda.h5")};
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(inputs[i]);
    ConvertReport f = Convert(inputs[i], dir.File("fork.safemodel"), forked);
    ConvertReport e = Convert(inputs[i], dir.File("exec.safemodel"), o);
    EXPECT_TRUE(f.worker.hand_off);
    EXPECT_EQ(f.worker.program, "safemodel-worker-hdf5");
    EXPECT_FALSE(f.worker.isolation.empty()) << "checked in /proc before it read";
    EXPECT_EQ(f.status.code(), e.status.code()) << Describe(f) << "\n" << Describe(e);
    EXPECT_EQ(f.status.message(), e.status.message());
    EXPECT_EQ(f.findings.size(), e.findings.size());
    EXPECT_EQ(f.source_format, e.source_format);
    EXPECT_EQ(Exists(dir.File("fork.safemodel")), Exists(dir.File("exec.safemodel")));
    if (Exists(dir.File("fork.safemodel")) && Exists(dir.File("exec.safemodel"))) {
      EXPECT_TRUE(ReadFile(dir.File("fork.safemodel")) == ReadFile(dir.File("exec.safemodel")));
    }
    std::filesystem::remove(dir.File("fork.safemodel"));
    std::filesystem::remove(dir.File("exec.safemodel"));
    // One companion, one zygote, one fork per hand-off.
    ASSERT_EQ(server->companions(), 1u);
    Result<std::shared_ptr<sandbox::ForkServer>> hdf5 = server->Companion(Hdf5Worker());
    ASSERT_TRUE(hdf5.ok());
    EXPECT_EQ((*hdf5)->spawned(), i + 1);
    EXPECT_EQ((*hdf5)->zygotes_started(), 1u);
    EXPECT_EQ((*hdf5)->restarts(), 0u);
  }
  // The lean worker's zygote forked every lean worker (one per input).
  EXPECT_EQ(server->spawned(), 1 + inputs.size());
  EXPECT_EQ(server->companions(), 1u);
}

TEST(HandOffForkServer, AKilledHdf5ZygoteIsReplacedAndCounted) {
  ConvertOptions o;
  o.worker_path = LeanWorker();
  o.fork_server = StartServer(o);
  ASSERT_NE(o.fork_server, nullptr);
  TempDir dir;
  const std::string h5 = SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5";
  ConvertReport first = Convert(h5, dir.File("a.safemodel"), o);
  ASSERT_TRUE(first.status.ok()) << Describe(first);
  std::shared_ptr<sandbox::ForkServer> hdf5 = *o.fork_server->Companion(Hdf5Worker());
  const pid_t zygote = hdf5->zygote_pid();
  ASSERT_GT(zygote, 0);
  ASSERT_EQ(kill(zygote, SIGKILL), 0);
  usleep(100'000);
  ConvertReport second = Convert(h5, dir.File("b.safemodel"), o);
  ASSERT_TRUE(second.status.ok()) << Describe(second);
  EXPECT_TRUE(second.worker.hand_off);
  EXPECT_EQ(hdf5->restarts(), 1u);
  EXPECT_NE(hdf5->zygote_pid(), zygote);
  EXPECT_EQ(o.fork_server->restarts(), 0u) << "the lean worker's zygote is another";
  EXPECT_TRUE(ReadFile(dir.File("a.safemodel")) == ReadFile(dir.File("b.safemodel")));
}

// The HDF5 worker (a link to the probe, named so) parks; its zygote is killed
// under it: that conversion fails, closed, and the next one, through a new
// zygote, converts.
TEST(HandOffForkServer, AnHdf5ZygoteKilledDuringAConversionFailsOnlyThatOne) {
  TempDir bin, out, out2;
  const std::string hdf5_probe = bin.File("probe-hdf5");
  ASSERT_EQ(symlink(ProbePath().c_str(), hdf5_probe.c_str()), 0);
  ConvertOptions o;
  o.worker_path = ProbePath();
  o.hdf5_worker_path = hdf5_probe;
  o.timeout_ms = 60'000;
  o.fork_server = StartServer(o);
  ASSERT_NE(o.fork_server, nullptr);
  pid_t killed = -1;
  std::thread killer([&] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      if (o.fork_server->companions() == 1) {
        std::shared_ptr<sandbox::ForkServer> hdf5 = *o.fork_server->Companion(hdf5_probe);
        const pid_t z = hdf5->zygote_pid();
        if (z > 0 && !ChildrenOf(z).empty()) {
          usleep(200'000);  // the worker is parked
          killed = z;
          kill(z, SIGKILL);
          return;
        }
      }
      usleep(2'000);
    }
  });
  ConvertReport r = ConvertWithProbe("hand-off-then park", out, o);
  killer.join();
  ASSERT_GT(killed, 0) << "the HDF5 worker was never forked";
  EXPECT_FALSE(r.status.ok()) << Describe(r);
  EXPECT_NE(r.status.message().find("fork server"), std::string::npos) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
  EXPECT_TRUE(Leftovers(out).empty());
  ConvertReport next = ConvertWithProbe("hand-off-then ok", out2, o);
  EXPECT_TRUE(next.status.ok()) << Describe(next);
  EXPECT_TRUE(next.worker.hand_off);
  std::shared_ptr<sandbox::ForkServer> hdf5 = *o.fork_server->Companion(hdf5_probe);
  EXPECT_EQ(hdf5->restarts(), 1u);
  EXPECT_NE(hdf5->zygote_pid(), killed);
}

}  // namespace
}  // namespace safemodel::testing
