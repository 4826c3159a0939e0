// The HDF5 name hint (ConvertOptions::hdf5_name_hint, converter/pipeline.cc
// RunWorkers): an input file named *.h5, *.hdf5 or *.he5 starts the HDF5
// worker directly instead of the lean worker and its hand-off. The name is
// a hint only: every input, whatever its bytes, must end exactly as without
// the hint (status, message, format, findings, input digest, output bytes),
// and only the report's worker fields may differ. Run twice by ctest: with
// exec'd workers, and forked from zygotes (SAFEMODEL_TEST_FORK_SERVER=1).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "sandbox/fork_server.h"
#include "sandbox/observe.h"

#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

std::string LeanWorker() { return BinDir() + "/safemodel-worker"; }
std::string Hdf5Worker() { return BinDir() + "/safemodel-worker-hdf5"; }

std::string Describe(const ConvertReport& r) {
  std::string s = r.status.ToString() + " [" + r.worker.program +
                  (r.worker.hand_off ? ", after a hand-off" : "") +
                  (r.worker.name_hint ? ", by name" : "") + "]";
  for (const Finding& f : r.findings) s += "\n  " + f.rule + " @ " + f.location + ": " + f.message;
  return s;
}

// The result of two reports of the same input (not the worker fields).
void ExpectSameResult(const ConvertReport& a, const std::string& out_a, const ConvertReport& b,
                      const std::string& out_b) {
  EXPECT_EQ(a.status.code(), b.status.code()) << Describe(a) << "\n" << Describe(b);
  EXPECT_EQ(a.status.message(), b.status.message());
  EXPECT_EQ(a.source_format, b.source_format);
  EXPECT_EQ(a.input_sha256, b.input_sha256);
  EXPECT_EQ(a.tensor_count, b.tensor_count);
  ASSERT_EQ(a.findings.size(), b.findings.size()) << Describe(a) << "\n" << Describe(b);
  for (size_t i = 0; i < a.findings.size(); ++i) {
    EXPECT_EQ(a.findings[i].rule, b.findings[i].rule);
    EXPECT_EQ(a.findings[i].location, b.findings[i].location);
    EXPECT_EQ(a.findings[i].message, b.findings[i].message);
    EXPECT_EQ(a.findings[i].severity, b.findings[i].severity);
  }
  ASSERT_EQ(Exists(out_a), Exists(out_b));
  if (Exists(out_a)) {
    EXPECT_TRUE(ReadFile(out_a) == ReadFile(out_b)) << "the outputs differ";
  }
}

// Converts `bytes` saved as `name` with the hint and without it, expects
// the same result, and returns the hinted report.
ConvertReport ExpectSameWithAndWithoutHint(const std::string& bytes, const std::string& name,
                                           ConvertOptions options = {}) {
  SCOPED_TRACE(name);
  TempDir in, out;
  WriteFile(in.File(name), bytes);
  options.hdf5_name_hint = true;
  ConvertReport hinted = Convert(in.File(name), out.File("hint.safemodel"), options);
  options.hdf5_name_hint = false;
  ConvertReport plain = Convert(in.File(name), out.File("plain.safemodel"), options);
  ExpectSameResult(hinted, out.File("hint.safemodel"), plain, out.File("plain.safemodel"));
  EXPECT_FALSE(plain.worker.name_hint);
  EXPECT_EQ(plain.worker.program, plain.worker.hand_off ? "safemodel-worker-hdf5" : "safemodel-worker");
  // The hinted run: the HDF5 worker alone, locked down and checked in /proc
  // as every worker.
  EXPECT_TRUE(hinted.worker.name_hint) << Describe(hinted);
  EXPECT_FALSE(hinted.worker.hand_off);
  EXPECT_EQ(hinted.worker.program, "safemodel-worker-hdf5");
  EXPECT_FALSE(hinted.worker.isolation.empty());
  EXPECT_EQ(plain.worker.isolation, hinted.worker.isolation);
  return hinted;
}

std::string Bytes(const std::string& path) { return ReadFile(path); }

const std::string kKerasH5 = SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5";

TEST(NameHint, RealKerasH5) {
  ConvertReport r = ExpectSameWithAndWithoutHint(Bytes(kKerasH5), "x.h5");
  EXPECT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_EQ(r.source_format, "keras_h5");
  EXPECT_NE(r.ToJson().find("\"name_hint\": true"), std::string::npos);
}

TEST(NameHint, MaliciousLambdaH5) {
  for (const char* f : {"keras_h5/corpus/promptfoo__modelaudit__tests__assets__samples__keras__malicious_lambda.h5",
                        "keras_h5/bidi_lambda.h5"}) {
    ConvertReport r = ExpectSameWithAndWithoutHint(Bytes(Fixture(f)), "x.h5");
    EXPECT_EQ(r.status.code(), StatusCode::kRefused) << f << ": " << Describe(r);
  }
  ConvertOptions weights_only;
  weights_only.weights_only = true;
  ExpectSameWithAndWithoutHint(Bytes(Fixture("keras_h5/bidi_lambda.h5")), "x.hdf5", weights_only);
}

TEST(NameHint, PickleNamedH5) {
  // A legacy (non-zip) torch pickle: converted by the pickle parser the HDF5
  // worker links as the lean one does.
  ConvertReport r = ExpectSameWithAndWithoutHint(Bytes(Fixture("pickle/torch/dtypes_legacy.pt")), "x.h5");
  EXPECT_TRUE(r.status.ok()) << Describe(r);
  // A pickle that calls a function it may not: refused the same way.
  ExpectSameWithAndWithoutHint(Bytes(Fixture("polyglot/tar_pickle_code.pkl")), "x.h5");
}

TEST(NameHint, ZipNamedH5) {
  ConvertReport npz = ExpectSameWithAndWithoutHint(Bytes(Fixture("numpy/stored.npz")), "x.h5");
  EXPECT_TRUE(npz.status.ok()) << Describe(npz);
  ConvertReport pt = ExpectSameWithAndWithoutHint(Bytes(Fixture("pickle/torch/dtypes_zip.pt")), "x.h5");
  EXPECT_TRUE(pt.status.ok()) << Describe(pt);
}

TEST(NameHint, PolyglotsNamedH5) {
  // HDF5 + a zip appended (a zip reader finds its end record at the end).
  ConvertReport r = ExpectSameWithAndWithoutHint(Bytes(kKerasH5) + Bytes(Fixture("numpy/stored.npz")), "x.h5");
  EXPECT_FALSE(r.status.ok()) << Describe(r);
  // A zip with an HDF5 file after it, and pickles and an .npy with HDF5
  // in their user block (refused or converted: the same either way).
  ExpectSameWithAndWithoutHint(Bytes(Fixture("numpy/stored.npz")) + Bytes(kKerasH5), "x.h5");
  for (const char* f : {"polyglot/pickle_hdf5_clean.pkl", "polyglot/pickle_hdf5_lambda.pkl",
                        "polyglot/hdf5_userblock.h5"}) {
    ExpectSameWithAndWithoutHint(Bytes(Fixture(f)), "x.h5");
  }
}

TEST(NameHint, NotHdf5AtAllNamedH5) {
  ExpectSameWithAndWithoutHint("not a model, just text\n", "x.h5");
  ExpectSameWithAndWithoutHint(std::string(4096, '\0'), "x.h5");
}

// --require-isolation applies to the hinted worker as to the lean one:
// every layer the parent can observe, required, gives the same outcome
// (converted where all are there, refused before the worker reads where
// one is missing), and so does an unknown layer.
TEST(NameHint, RequiredIsolationAppliesTheSame) {
  ConvertOptions o;
  o.required_isolation = sandbox::ObservableLayers();
  for (const char* f : {"pickle/torch/dtypes_legacy.pt", "keras_h5/bidi_lambda.h5"}) {
    ExpectSameWithAndWithoutHint(Bytes(Fixture(f)), "x.h5", o);
  }
  ExpectSameWithAndWithoutHint(Bytes(kKerasH5), "x.h5", o);
  o.required_isolation = {"no_such_layer"};
  TempDir in, out;
  WriteFile(in.File("x.h5"), Bytes(kKerasH5));
  ConvertReport r = Convert(in.File("x.h5"), out.File("o.safemodel"), o);
  EXPECT_EQ(r.status.code(), StatusCode::kInvalidArgument) << Describe(r);
  EXPECT_EQ(r.worker.program, "");
}

// The one result field that can differ: an input that hangs (or crashes)
// the HDF5 worker before it says what it read. After a hand-off the format
// is "hdf5" (the lean worker found a superblock); with the hint no worker
// said anything, so it is unknown. Status and message are the same.
TEST(NameHint, AHangingH5HasTheSameStatusButNoFormat) {
  TempDir in, out;
  WriteFile(in.File("hang.h5"), Bytes(Fixture("library_hangs/hang_global_heap.h5")));
  ConvertOptions o;
  o.timeout_ms = 2000;
  ConvertReport hinted = Convert(in.File("hang.h5"), out.File("a.safemodel"), o);
  o.hdf5_name_hint = false;
  ConvertReport plain = Convert(in.File("hang.h5"), out.File("b.safemodel"), o);
  EXPECT_EQ(hinted.status.code(), StatusCode::kTimeout) << Describe(hinted);
  EXPECT_EQ(hinted.status.code(), plain.status.code());
  EXPECT_EQ(hinted.status.message(), plain.status.message());
  EXPECT_EQ(hinted.input_sha256, plain.input_sha256);
  EXPECT_TRUE(hinted.worker.name_hint);
  EXPECT_EQ(plain.source_format, "hdf5");
  EXPECT_EQ(hinted.source_format, "unknown");
  EXPECT_FALSE(Exists(out.File("a.safemodel")));
  EXPECT_FALSE(Exists(out.File("b.safemodel")));
}

// Which names are hints; a Keras file named otherwise goes lean -> hand-off.
TEST(NameHint, WhichNamesAreHints) {
  const std::string h5 = Bytes(kKerasH5);
  for (const char* name : {"x.h5", "X.H5", "model.weights.h5", "x.hdf5", "x.HDF5", "x.he5", "x.He5"}) {
    ExpectSameWithAndWithoutHint(h5, name);
  }
  for (const char* name : {"x.bin", "x.keras", "x.hdf", "x.h5.bin", "h5", "x.h55", "xh5"}) {
    SCOPED_TRACE(name);
    TempDir in, out;
    WriteFile(in.File(name), h5);
    ConvertReport r = Convert(in.File(name), out.File("o.safemodel"));
    EXPECT_TRUE(r.status.ok()) << Describe(r);
    EXPECT_FALSE(r.worker.name_hint);
    EXPECT_TRUE(r.worker.hand_off);
    EXPECT_EQ(r.worker.program, "safemodel-worker-hdf5");
  }
  // A directory whose name ends in .h5 names no file: a .npy in it is not
  // hinted (the extension is the file's own).
  TempDir in, out;
  std::filesystem::create_directory(in.File("d.h5"));
  WriteFile(in.File("d.h5") + "/x", Bytes(Fixture("numpy/f32.npy")));
  ConvertReport r = Convert(in.File("d.h5") + "/x", out.File("o.safemodel"));
  EXPECT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_FALSE(r.worker.name_hint);
  EXPECT_EQ(r.worker.program, "safemodel-worker");
}

// In exec mode: a lean worker that leaves a mark when it starts (a script
// that execs the real one) shows that a hinted .h5 never starts it.
TEST(NameHint, AHintedInputNeverStartsTheLeanWorker) {
  if (ForkServerMode()) GTEST_SKIP() << "exec mode only; the fork-server test counts forks";
  TempDir bin, in, out;
  const std::string mark = bin.File("lean-started");
  WriteFile(bin.File("safemodel-worker"),
            "#!/bin/sh\necho x >> '" + mark + "'\nexec '" + LeanWorker() + "' \"$@\"\n");
  chmod(bin.File("safemodel-worker").c_str(), 0755);
  std::filesystem::create_symlink(Hdf5Worker(), bin.File("safemodel-worker-hdf5"));
  ConvertOptions o;
  o.worker_path = bin.File("safemodel-worker");
  WriteFile(in.File("pickle.h5"), Bytes(Fixture("pickle/torch/dtypes_legacy.pt")));
  WriteFile(in.File("keras.h5"), Bytes(kKerasH5));
  for (const char* name : {"keras.h5", "pickle.h5"}) {
    ConvertReport r = Convert(in.File(name), out.File(std::string(name) + ".safemodel"), o);
    EXPECT_TRUE(r.status.ok()) << name << ": " << Describe(r);
    EXPECT_TRUE(r.worker.name_hint);
  }
  EXPECT_FALSE(Exists(mark)) << "a lean worker started for a hinted input";
  // The same lean worker does start for the same bytes named otherwise, and
  // hands the Keras file off.
  WriteFile(in.File("keras.bin"), Bytes(kKerasH5));
  ConvertReport r = Convert(in.File("keras.bin"), out.File("bin.safemodel"), o);
  EXPECT_TRUE(r.status.ok()) << Describe(r);
  EXPECT_TRUE(r.worker.hand_off);
  ASSERT_TRUE(Exists(mark));
  EXPECT_EQ(ReadFile(mark), "x\n");
}

// With a fork server: a hinted .h5 is forked from the HDF5 worker's zygote
// only; the lean zygote forks nothing for it.
TEST(NameHint, ForkServerForksOnlyTheHdf5Worker) {
  ConvertOptions o;
  o.worker_path = LeanWorker();
  Result<std::shared_ptr<sandbox::ForkServer>> started = StartForkServer(o);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  std::shared_ptr<sandbox::ForkServer> server = *started;
  ConvertOptions forked = o;
  forked.fork_server = server;
  TempDir in, out;
  const std::vector<std::string> inputs = {
      Bytes(kKerasH5), Bytes(Fixture("pickle/torch/dtypes_legacy.pt")), Bytes(Fixture("numpy/stored.npz")),
      Bytes(Fixture("keras_h5/bidi_lambda.h5"))};
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = in.File("m" + std::to_string(i) + ".h5");
    WriteFile(name, inputs[i]);
    ConvertReport f = Convert(name, out.File("f.safemodel"), forked);
    ConvertReport e = Convert(name, out.File("e.safemodel"), o);
    ExpectSameResult(f, out.File("f.safemodel"), e, out.File("e.safemodel"));
    EXPECT_TRUE(f.worker.name_hint);
    EXPECT_FALSE(f.worker.isolation.empty());
    std::filesystem::remove(out.File("f.safemodel"));
    std::filesystem::remove(out.File("e.safemodel"));
    EXPECT_EQ(server->spawned(), 0u) << "the lean zygote forked a worker for a hinted input";
    ASSERT_EQ(server->companions(), 1u);
    Result<std::shared_ptr<sandbox::ForkServer>> hdf5 = server->Companion(Hdf5Worker());
    ASSERT_TRUE(hdf5.ok());
    EXPECT_EQ((*hdf5)->spawned(), i + 1);
  }
  // The same Keras bytes named .bin: one lean fork, then a hand-off.
  WriteFile(in.File("k.bin"), inputs[0]);
  ConvertReport r = Convert(in.File("k.bin"), out.File("b.safemodel"), forked);
  EXPECT_TRUE(r.worker.hand_off) << Describe(r);
  EXPECT_EQ(server->spawned(), 1u);
}

// Without an HDF5 worker to start, the hint falls back to the lean worker:
// a pickle named .h5 converts as before; a real .h5 fails at the hand-off
// exactly as before.
TEST(NameHint, WithoutAnHdf5WorkerTheLeanWorkerRunsAsBefore) {
  if (ForkServerMode()) GTEST_SKIP() << "the worker is named explicitly";
  TempDir bin, in, out;
  std::filesystem::copy_file(LeanWorker(), bin.File("safemodel-worker"));
  chmod(bin.File("safemodel-worker").c_str(), 0755);
  ConvertOptions o;
  o.worker_path = bin.File("safemodel-worker");
  WriteFile(in.File("p.h5"), Bytes(Fixture("pickle/torch/dtypes_legacy.pt")));
  ConvertReport p = Convert(in.File("p.h5"), out.File("p.safemodel"), o);
  EXPECT_TRUE(p.status.ok()) << Describe(p);
  EXPECT_EQ(p.worker.program, "safemodel-worker");
  EXPECT_FALSE(p.worker.name_hint);
  WriteFile(in.File("k.h5"), Bytes(kKerasH5));
  ConvertReport k = Convert(in.File("k.h5"), out.File("k.safemodel"), o);
  EXPECT_EQ(k.status.code(), StatusCode::kSandboxSetupFailed) << Describe(k);
  EXPECT_TRUE(k.worker.hand_off);
  o.hdf5_worker_path = out.File("nowhere");
  p = Convert(in.File("p.h5"), out.File("p2.safemodel"), o);
  EXPECT_TRUE(p.status.ok()) << Describe(p);
}

}  // namespace
}  // namespace safemodel::testing
