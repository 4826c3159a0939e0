// safe-convert batch on a zoo made of every fixture format (npy, npz,
// pickles, torch zip and legacy, joblib, Keras .h5/.keras, tar, polyglots),
// malicious and malformed ones included (issue 12's tests).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "safemodel/batch.h"
#include "tests/converter/cli/cli_util.h"

namespace safemodel::testing {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string Cli() { return BinDir() + "/safe-convert"; }

// Copies the fixture model files (no scripts, manifests or compressed
// corpus files) into `root`, keeping their relative paths; returns their
// ids, sorted.
std::vector<std::string> MakeZoo(const std::string& root) {
  static const std::set<std::string> kSkip = {".py", ".md", ".tsv", ".json", ".txt", ".xz"};
  std::vector<std::string> ids;
  for (const char* dir : {"numpy", "pickle", "polyglot", "keras_h5"}) {
    for (const auto& e : fs::recursive_directory_iterator(Fixture(dir))) {
      if (!e.is_regular_file() || e.is_symlink() || kSkip.count(e.path().extension().string()) > 0) continue;
      const std::string id = fs::relative(e.path(), Fixture("")).generic_string();
      fs::create_directories(fs::path(root + "/" + id).parent_path());
      fs::copy_file(e.path(), root + "/" + id);
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// Runs safe-convert with `args`; standard output and error into files.
int Sc(const std::vector<std::string>& args, std::string* out = nullptr, std::string* err = nullptr,
        std::vector<std::string> env = {}) {
  TempDir logs;
  std::vector<std::string> argv = {Cli()};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildOptions o;
  o.stdout_file = logs.File("out");
  o.stderr_file = logs.File("err");
  o.env = std::move(env);
  const int rc = RunChild(argv, o);
  if (out != nullptr) *out = ReadFile(logs.File("out"));
  if (err != nullptr) *err = ReadFile(logs.File("err"));
  return rc;
}

// The results file's lines by id (every id at most once: ADD_FAILURE if not).
std::map<std::string, Json> Results(const std::string& path) {
  std::map<std::string, Json> by_id;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) {
    Json j = Json::parse(line);
    const std::string id = j["id"];
    if (!by_id.emplace(id, j).second) ADD_FAILURE() << "two lines for " << id;
  }
  return by_id;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The batch status of a single-file report's status (README "Results file").
std::string BatchStatusOf(const std::string& single) {
  static const std::map<std::string, std::string> kMap = {
      {"ok", "converted"},          {"refused", "refused"},         {"malformed", "malformed"},
      {"unsupported", "unsupported"}, {"limit_exceeded", "limit"},  {"timeout", "limit"},
      {"sandbox_violation", "sandbox"}, {"worker_crashed", "sandbox"}, {"internal", "sandbox"},
      {"sandbox_setup_failed", "sandbox"}, {"io_error", "io_error"}, {"invalid_argument", "invalid"}};
  auto it = kMap.find(single);
  return it == kMap.end() ? "?" + single : it->second;
}

// Every .safemodel under `dir` (relative path -> bytes) and every other file.
std::map<std::string, std::string> Outputs(const std::string& dir, std::vector<std::string>* others) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_directory()) continue;
    const std::string rel = fs::relative(e.path(), dir).generic_string();
    if (e.path().extension() == ".safemodel") {
      out[rel] = ReadFile(e.path().string());
    } else if (others != nullptr) {
      others->push_back(rel);
    }
  }
  return out;
}

TEST(BatchCli, ZooStatusesEqualSingleFileResultsAndJobsDoNotChangeTheBytes) {
  TempDir dir;
  const std::string zoo = dir.File("zoo");
  const std::vector<std::string> ids = MakeZoo(zoo);
  ASSERT_GE(ids.size(), 300u);
  ASSERT_EQ(symlink("numpy/f32.npy", (zoo + "/link.npy").c_str()), 0);
  ASSERT_EQ(Sc({"batch", zoo, "-o", dir.File("out1"), "-j", "1", "--no-sync", "-q"}), 0);
  ASSERT_EQ(Sc({"batch", zoo, "-o", dir.File("out4"), "-j", "4", "--no-sync", "-q"}), 0);
  const auto r1 = Results(dir.File("out1/results.jsonl"));
  const auto r4 = Results(dir.File("out4/results.jsonl"));
  ASSERT_EQ(r1.size(), ids.size() + 1);
  ASSERT_EQ(r4.size(), ids.size() + 1);
  EXPECT_EQ(r1.at("link.npy")["status"], "symlink");
  EXPECT_FALSE(Exists(dir.File("out1/link.npy.safemodel")));
  std::vector<std::string> others;
  const auto o1 = Outputs(dir.File("out1"), &others);
  EXPECT_EQ(others, std::vector<std::string>{"results.jsonl"});
  EXPECT_EQ(o1, Outputs(dir.File("out4"), nullptr)) << "-j 1 and -j 4 wrote different bytes";
  std::map<std::string, int> statuses;
  // Each result against a single-file conversion of the same input; in a
  // sanitizer build every fourth (an instrumented safe-convert costs ~0.3 s
  // a run there, and both batches above still convert the whole zoo).
#if defined(SAFEMODEL_SANITIZER_BUILD)
  constexpr size_t kEvery = 4;
#else
  constexpr size_t kEvery = 1;
#endif
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string& id = ids[i];
    const Json& line = r1.at(id);
    ++statuses[line["status"]];
    EXPECT_EQ(r4.at(id)["status"], line["status"]) << id;
    // No worker failed for its own reasons (a sanitizer's abort is one).
    EXPECT_NE(line["status"], "sandbox") << id;
    EXPECT_EQ(line["input"]["sha256"], Sha256Sum(zoo + "/" + id)) << id;
    if (line["status"] == "converted") {
      EXPECT_EQ(line["output"]["sha256"], Sha256Sum(dir.File("out1/" + id + ".safemodel"))) << id;
    } else {
      EXPECT_EQ(o1.count(id + ".safemodel"), 0u) << id;
    }
    if (i % kEvery != 0) continue;
    // The single-file conversion of the same input.
    const std::string single_out = dir.File("single.safemodel");
    std::string report;
    const int rc = Sc({zoo + "/" + id, single_out, "--json", "--no-sync", "-q"}, &report);
    const Json single = Json::parse(report);
    EXPECT_EQ(line["status"], BatchStatusOf(single["status"])) << id;
    EXPECT_EQ(line["exit_code"], rc) << id;
    EXPECT_EQ(line["input"]["sha256"], single["input"]["sha256"]) << id;
    EXPECT_EQ(line["input"]["format"], single["input"]["format"]) << id;
    EXPECT_EQ(line["findings"].size(), single["findings"].size()) << id;
    if (line["status"] == "converted") {
      EXPECT_EQ(o1.at(id + ".safemodel"), ReadFile(single_out)) << id;
      EXPECT_EQ(line["output"]["bytes"], fs::file_size(single_out)) << id;
    }
    fs::remove(single_out);
  }
  // The zoo really mixes outcomes.
  EXPECT_GT(statuses["converted"], 50);
  EXPECT_GT(statuses["refused"], 50);
  EXPECT_GT(statuses["malformed"], 5);
  EXPECT_GT(statuses["unsupported"], 0);
}

// --fork-server forks each worker from a zygote instead of an exec: the
// same statuses, exit codes, findings and bytes as exec-per-file.
TEST(BatchCli, AForkServerGivesTheSameStatusesAndBytes) {
  TempDir dir;
  const std::string zoo = dir.File("zoo");
  const std::vector<std::string> ids = MakeZoo(zoo);
  ASSERT_GE(ids.size(), 300u);
  ASSERT_EQ(Sc({"batch", zoo, "-o", dir.File("exec"), "-j", "2", "--no-sync", "-q"}), 0);
  ASSERT_EQ(Sc({"batch", zoo, "-o", dir.File("fork"), "-j", "2", "--no-sync", "-q", "--fork-server"}), 0);
  const auto e = Results(dir.File("exec/results.jsonl"));
  const auto f = Results(dir.File("fork/results.jsonl"));
  ASSERT_EQ(e.size(), ids.size());
  ASSERT_EQ(f.size(), ids.size());
  for (const std::string& id : ids) {
    EXPECT_EQ(f.at(id)["status"], e.at(id)["status"]) << id;
    EXPECT_EQ(f.at(id)["exit_code"], e.at(id)["exit_code"]) << id;
    EXPECT_EQ(f.at(id)["message"], e.at(id)["message"]) << id;
    EXPECT_EQ(f.at(id)["findings"], e.at(id)["findings"]) << id;
    EXPECT_EQ(f.at(id)["output"]["sha256"], e.at(id)["output"]["sha256"]) << id;
    // Every worker that ended by itself sent its last frame and waited for
    // its dismissal: its peak is its own, read in /proc, forked or exec'd.
    for (const Json* line : {&e.at(id), &f.at(id)}) {
      if ((*line)["worker"] != "exited") continue;
      EXPECT_EQ((*line)["peak_memory_source"], "vmhwm") << id;
      EXPECT_GT((*line)["peak_memory_bytes"].get<uint64_t>(), 0u) << id;
    }
  }
  EXPECT_EQ(Outputs(dir.File("fork"), nullptr), Outputs(dir.File("exec"), nullptr));
}

// Killed with SIGKILL halfway and rerun: every input ends with exactly one
// line, every converted line's output is there and is the file recorded,
// and nothing else is in the out-dir (no partial or temporary file).
TEST(BatchCli, ASigkilledBatchRerunLeavesNoDuplicateMissingOrPartialOutput) {
  TempDir dir;
  const std::string zoo = dir.File("zoo");
  const std::vector<std::string> ids = MakeZoo(zoo);
  const std::string out = dir.File("out");
  const std::string results = out + "/results.jsonl";
  ChildOptions quiet;
  const pid_t pid = StartChild({Cli(), "batch", zoo, "-o", out, "-j", "2", "-q"}, quiet);
  const bool halfway = WaitFor([&] { return Lines(Exists(results) ? ReadFile(results) : "").size() >= ids.size() / 2; });
  kill(pid, SIGKILL);
  EXPECT_EQ(WaitChild(pid), 128 + SIGKILL);
  ASSERT_TRUE(halfway);
  const size_t first_run = Lines(ReadFile(results)).size();
  EXPECT_LT(first_run, ids.size()) << "the batch finished before it was killed; nothing was tested";
  std::string err;
  ASSERT_EQ(Sc({"batch", zoo, "-o", out, "-j", "2", "--no-sync"}, nullptr, &err), 0) << err;
  EXPECT_NE(err.find("by an earlier run"), std::string::npos) << err;
  const auto lines = Results(results);  // fails on a duplicate
  ASSERT_EQ(lines.size(), ids.size());
  std::vector<std::string> others;
  const auto outputs = Outputs(out, &others);
  EXPECT_EQ(others, std::vector<std::string>{"results.jsonl"});
  size_t converted = 0;
  for (const std::string& id : ids) {
    const Json& line = lines.at(id);
    if (line["status"] != "converted") {
      EXPECT_EQ(outputs.count(id + ".safemodel"), 0u) << id;
      continue;
    }
    ++converted;
    ASSERT_EQ(outputs.count(id + ".safemodel"), 1u) << id;
    EXPECT_EQ(line["output"]["sha256"], Sha256Sum(out + "/" + id + ".safemodel")) << id;
    EXPECT_EQ(Sc({"verify", "-q", out + "/" + id + ".safemodel"}), 0) << id;
  }
  EXPECT_EQ(outputs.size(), converted);
}

std::vector<std::string> DryRun(const std::string& zoo, const std::vector<std::string>& extra,
                                std::vector<std::string> env = {}) {
  std::vector<std::string> args = {"batch", zoo, "-o", zoo + "/../dry", "--dry-run"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::string out;
  EXPECT_EQ(Sc(args, &out, nullptr, std::move(env)), 0);
  return Lines(out);
}

TEST(BatchCli, ShardsCoverEveryInputExactlyOnce) {
  TempDir dir;
  const std::string zoo = dir.File("zoo");
  const std::vector<std::string> ids = MakeZoo(zoo);
  EXPECT_EQ(DryRun(zoo, {}), ids);
  for (int n = 1; n <= 5; ++n) {
    std::multiset<std::string> covered;
    for (int i = 0; i < n; ++i) {
      const std::string shard = std::to_string(i) + "/" + std::to_string(n);
      const std::vector<std::string> slice = DryRun(zoo, {"--shard", shard});
      EXPECT_TRUE(std::is_sorted(slice.begin(), slice.end()));
      if (n > 1) {
        EXPECT_LT(slice.size(), ids.size());
      }
      covered.insert(slice.begin(), slice.end());
      // The schedulers' variables give the same slice.
      const std::vector<std::string> shards = {"--shards", std::to_string(n)};
      EXPECT_EQ(DryRun(zoo, shards, {"JOB_COMPLETION_INDEX=" + std::to_string(i)}), slice);
      EXPECT_EQ(DryRun(zoo, shards, {"SLURM_ARRAY_TASK_ID=" + std::to_string(i)}), slice);
    }
    EXPECT_EQ(covered, std::multiset<std::string>(ids.begin(), ids.end())) << "N = " << n;
  }
  EXPECT_EQ(Sc({"batch", zoo, "-o", dir.File("x"), "--shard", "3/3"}), 2);
  EXPECT_EQ(Sc({"batch", zoo, "-o", dir.File("x"), "--shard", "a/3"}), 2);
  EXPECT_EQ(Sc({"batch", zoo, "-o", dir.File("x"), "--shards", "3"}, nullptr, nullptr,
                {"JOB_COMPLETION_INDEX=3"}),
            2);
  // A real slice converts exactly what its dry run lists, into its own
  // results file.
  TempDir small;
  for (const char* f : {"f32.npy", "i8.npy", "u16.npy", "bool.npy", "c64.npy", "object_malicious.npy"}) {
    fs::copy_file(Fixture(std::string("numpy/") + f), small.File(f));
  }
  const std::vector<std::string> slice = DryRun(small.path(), {"--shard", "1/3"});
  ASSERT_EQ(Sc({"batch", small.path(), "-o", dir.File("s"), "--shard", "1/3", "--no-sync", "-q"}), 0);
  std::vector<std::string> done;
  for (const auto& [id, line] : Results(dir.File("s/results.1-of-3.jsonl"))) done.push_back(id);
  EXPECT_EQ(done, slice);
}

TEST(BatchCli, AHangingWorkerIsTimedOutWithoutStallingTheRest) {
  TempDir in, dir;
  fs::copy_file(Fixture("library_hangs/hang_global_heap.h5"), in.File("a_hang.h5"));
  for (const char* f : {"f32.npy", "i8.npy", "u16.npy", "bool.npy", "c64.npy", "f64.npy", "i64.npy"}) {
    fs::copy_file(Fixture(std::string("numpy/") + f), in.File(f));
  }
  std::string err;
  ASSERT_EQ(Sc({"batch", in.path(), "-o", dir.File("out"), "-j", "2", "--timeout", "4s", "--no-sync"}, nullptr, &err),
            0)
      << err;
  const std::vector<std::string> lines = Lines(ReadFile(dir.File("out/results.jsonl")));
  ASSERT_EQ(lines.size(), 8u);
  const Json last = Json::parse(lines.back());
  EXPECT_EQ(last["id"], "a_hang.h5") << "the hanging input did not finish last";
  EXPECT_EQ(last["status"], "limit");
  EXPECT_EQ(last["worker"], "timeout");
  EXPECT_EQ(last["input"]["sha256"], Sha256Sum(in.File("a_hang.h5")));
  // Named .h5, it ran in the HDF5 worker alone (the name hint): no lean
  // worker's hand-off said "hdf5" before the hang, and the HDF5 worker said
  // nothing, so the format is unknown (batch_test.cc's library test has the
  // hand-off's "hdf5"; README "HDF5 files by name").
  EXPECT_EQ(last["input"]["format"], "unknown");
  for (size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_EQ(Json::parse(lines[i])["status"], "converted");
  // Not a terminal: a plain line per input, naming it.
  EXPECT_NE(err.find(in.File("f32.npy") + ": converted"), std::string::npos) << err;
  EXPECT_NE(err.find(in.File("a_hang.h5") + ": time limit"), std::string::npos) << err;
}

TEST(BatchCli, SarifHasTheRequiredFieldsOfSarif210) {
  TempDir in, dir;
  for (const char* f : {"numpy/object_malicious.npy", "numpy/truncated.npy", "numpy/f32.npy",
                        "keras_h5/lambda_in_wrapper.h5", "polyglot/zip_in_comment.pt"}) {
    fs::copy_file(Fixture(f), in.File(fs::path(f).filename().string()));
  }
  fs::copy_file(Fixture("numpy/f32.npy"), in.File("name with space%.npy"));
  const std::string sarif = dir.File("out.sarif");
  ASSERT_EQ(Sc({"batch", in.path(), "-o", dir.File("out"), "--sarif", sarif, "--no-sync", "-q"}), 0);
  const Json log = Json::parse(ReadFile(sarif));
  EXPECT_EQ(log["version"], "2.1.0");
  EXPECT_TRUE(log["$schema"].is_string());
  ASSERT_TRUE(log["runs"].is_array());
  ASSERT_EQ(log["runs"].size(), 1u);
  const Json& run = log["runs"][0];
  EXPECT_EQ(run["tool"]["driver"]["name"], "safe-convert");
  std::set<std::string> rule_ids;
  for (const Json& rule : run["tool"]["driver"]["rules"]) rule_ids.insert(rule["id"].get<std::string>());
  std::set<std::string> files_with_errors;
  ASSERT_TRUE(run["results"].is_array());
  for (const Json& r : run["results"]) {
    ASSERT_TRUE(r["message"]["text"].is_string());
    EXPECT_EQ(rule_ids.count(r["ruleId"].get<std::string>()), 1u) << r["ruleId"];
    const std::string level = r["level"];
    EXPECT_TRUE(level == "error" || level == "warning" || level == "note" || level == "none") << level;
    const std::string uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"];
    EXPECT_EQ(uri.find(' '), std::string::npos) << uri;
    if (level == "error") files_with_errors.insert(fs::path(uri).filename().string());
  }
  EXPECT_EQ(files_with_errors, (std::set<std::string>{"object_malicious.npy", "truncated.npy",
                                                        "lambda_in_wrapper.h5", "zip_in_comment.pt"}));
  EXPECT_EQ(rule_ids.count("keras.lambda"), 1u);
}

// An I/O error is worth a retry: exit 75, and the rerun redoes that input
// (and only it).
TEST(BatchCli, IoErrorsExitWithTheRetryCodeAndARerunRedoesThem) {
  TempDir in, dir;
  fs::create_directories(in.File("sub"));
  fs::copy_file(Fixture("numpy/f32.npy"), in.File("sub/x.npy"));
  fs::copy_file(Fixture("numpy/i8.npy"), in.File("y.npy"));
  fs::create_directories(dir.File("out"));
  WriteFile(dir.File("out/sub"), "a file where the out-dir needs a directory");
  EXPECT_EQ(Sc({"batch", in.path(), "-o", dir.File("out"), "--no-sync", "-q"}), kExitBatchRetry);
  auto lines = Results(dir.File("out/results.jsonl"));
  EXPECT_EQ(lines.at("sub/x.npy")["status"], "io_error");
  EXPECT_EQ(lines.at("y.npy")["status"], "converted");
  fs::remove(dir.File("out/sub"));
  std::string err;
  EXPECT_EQ(Sc({"batch", in.path(), "-o", dir.File("out"), "--no-sync"}, nullptr, &err), 0) << err;
  const std::vector<std::string> all = Lines(ReadFile(dir.File("out/results.jsonl")));
  ASSERT_EQ(all.size(), 3u);  // y.npy was not redone
  EXPECT_EQ(Json::parse(all[2])["id"], "sub/x.npy");
  EXPECT_EQ(Json::parse(all[2])["status"], "converted");
}

// A rerun redoes an input whose bytes, output or options changed.
TEST(BatchCli, ARerunRedoesOnlyWhatNoLongerHolds) {
  TempDir in, dir;
  for (const char* f : {"f32.npy", "i8.npy", "u16.npy", "object_malicious.npy"}) {
    fs::copy_file(Fixture(std::string("numpy/") + f), in.File(f));
  }
  const std::string out = dir.File("out");
  const std::string results = out + "/results.jsonl";
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  EXPECT_EQ(Lines(ReadFile(results)).size(), 4u);
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  EXPECT_EQ(Lines(ReadFile(results)).size(), 4u);
  fs::copy_file(Fixture("numpy/i64.npy"), in.File("f32.npy"), fs::copy_options::overwrite_existing);
  std::string bytes = ReadFile(out + "/i8.npy.safemodel");
  bytes[bytes.size() / 2] ^= 1;
  WriteFile(out + "/i8.npy.safemodel", bytes);
  // A torn last line (a machine lost while writing it) is ignored.
  { std::ofstream(results, std::ios::app) << "{\"schema_version\":1,\"id\":\"u16"; }
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  std::vector<std::string> lines = Lines(ReadFile(results));
  ASSERT_EQ(lines.size(), 4u + 1 + 2);
  std::set<std::string> redone = {Json::parse(lines[5])["id"], Json::parse(lines[6])["id"]};
  EXPECT_EQ(redone, (std::set<std::string>{"f32.npy", "i8.npy"}));
  EXPECT_EQ(Sc({"verify", "-q", out + "/i8.npy.safemodel"}), 0);
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q", "--digest", "sha256"}), 0);
  EXPECT_EQ(Lines(ReadFile(results)).size(), 7u + 4);
}

TEST(BatchCli, AManifestNamesIdsAndPaths) {
  TempDir in, dir;
  fs::copy_file(Fixture("numpy/f32.npy"), in.File("a.npy"));
  fs::copy_file(Fixture("numpy/object_malicious.npy"), in.File("b.npy"));
  WriteFile(in.File("m.jsonl"), "{\"id\": \"models/first\", \"path\": \"a.npy\"}\n\n"
                                "{\"id\": \"second\", \"path\": \"" + in.File("b.npy") + "\"}\n");
  std::string err;
  ASSERT_EQ(Sc({"batch", "--manifest", in.File("m.jsonl"), "-o", dir.File("out"), "--no-sync"}, nullptr, &err), 0)
      << err;
  const auto lines = Results(dir.File("out/results.jsonl"));
  EXPECT_EQ(lines.at("models/first")["status"], "converted");
  EXPECT_EQ(lines.at("second")["status"], "refused");
  EXPECT_TRUE(Exists(dir.File("out/models/first.safemodel")));
  // A finding's line names its file.
  EXPECT_NE(err.find("safe-convert: " + in.File("b.npy") + ": refused: "), std::string::npos) << err;
  for (const std::string bad : {"{\"id\": \"../x\", \"path\": \"a.npy\"}", "{\"id\": \"/x\", \"path\": \"a.npy\"}",
                                "{\"id\": \"a//b\", \"path\": \"a.npy\"}", "{\"id\": 1, \"path\": \"a.npy\"}",
                                "{\"id\": \"x\", \"path\": \"a.npy\"}\n{\"id\": \"x\", \"path\": \"b.npy\"}",
                                "not json"}) {
    WriteFile(in.File("bad.jsonl"), bad + "\n");
    EXPECT_EQ(Sc({"batch", "--manifest", in.File("bad.jsonl"), "-o", dir.File("o2")}), 2) << bad;
  }
  EXPECT_EQ(Sc({"batch", in.path(), "--manifest", in.File("m.jsonl"), "-o", dir.File("o3")}), 2);
  EXPECT_EQ(Sc({"batch", "-o", dir.File("o3")}), 2);
}

TEST(BatchCli, QuietPrintsNothingAndLinksAreNotFollowed) {
  TempDir in, outside, dir;
  fs::copy_file(Fixture("numpy/f32.npy"), outside.File("secret.npy"));
  fs::copy_file(Fixture("numpy/i8.npy"), in.File("real.npy"));
  fs::create_directory_symlink(outside.path(), in.File("dirlink"));
  fs::create_symlink(outside.File("secret.npy"), in.File("filelink.npy"));
  std::string out, err;
  ASSERT_EQ(Sc({"batch", in.path(), "-o", dir.File("out"), "-q", "--no-sync"}, &out, &err), 0);
  EXPECT_EQ(out + err, "");
  const auto lines = Results(dir.File("out/results.jsonl"));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines.at("dirlink")["status"], "symlink");
  EXPECT_EQ(lines.at("filelink.npy")["status"], "symlink");
  EXPECT_EQ(lines.at("real.npy")["status"], "converted");
  EXPECT_FALSE(Exists(dir.File("out/dirlink")));
}

// A sharded checkpoint in the tree is one input: its shards are not listed
// on their own, and its output is an index with a .safemodel per shard.
// A unit's results line records the SHA-256 of its output index, and the
// index each shard's (both computed as written, never read back): each is
// what sha256sum prints for the file.
void ExpectDigestsAreTheFiles(const Json& unit, const std::string& index) {
  EXPECT_EQ(unit["output"]["sha256"], Sha256Sum(index));
  const Json j = Json::parse(ReadFile(index));
  ASSERT_EQ(j["shards"].size(), 3u);
  for (const Json& shard : j["shards"]) {
    const std::string file = fs::path(index).parent_path().string() + "/" + shard["file"].get<std::string>();
    EXPECT_EQ(shard["sha256"], Sha256Sum(file)) << file;
  }
}

TEST(BatchCli, AShardedCheckpointIsOneUnit) {
  if (!PythonHas({"torch"})) GTEST_SKIP() << "no torch in /usr/bin/python3";
  TempDir in, dir;
  std::string log;
  ASSERT_EQ(RunPython(std::string(SAFEMODEL_SOURCE_DIR) + "/tests/converter/make_hf_sharded.py", {in.File("hf")}, &log),
            0)
      << log;
  fs::remove(in.File("hf/expected.json"));
  fs::copy_file(Fixture("numpy/f32.npy"), in.File("loose.npy"));
  const std::string out = dir.File("out");
  EXPECT_EQ(Sc({"batch", in.path(), "-o", out, "--dry-run"}, &log), 0);
  EXPECT_EQ(log, "hf/pytorch_model.bin.index.json\nloose.npy\n");
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  const auto lines = Results(out + "/results.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  const Json& unit = lines.at("hf/pytorch_model.bin.index.json");
  EXPECT_EQ(unit["status"], "converted") << unit.dump();
  EXPECT_EQ(unit["input"]["format"], "hf_sharded/pytorch");
  EXPECT_EQ(unit["output"]["path"], out + "/hf/pytorch_model.bin.safemodel.index.json");
  EXPECT_EQ(unit["output"]["tensors"], 7);
  for (int i = 1; i <= 3; ++i) {
    const std::string shard = out + "/hf/pytorch_model-0000" + std::to_string(i) + "-of-00003.bin.safemodel";
    EXPECT_EQ(Sc({"verify", "-q", shard}), 0) << shard;
  }
  const std::string index = out + "/hf/pytorch_model.bin.safemodel.index.json";
  EXPECT_EQ(Sc({"verify", index}, &log), 0) << log;
  EXPECT_EQ(log, index + ": OK (3 shards, 7 tensors, digests verified)\n");
  ExpectDigestsAreTheFiles(unit, index);
  // A rerun skips the unit; a missing shard makes it redo it.
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  EXPECT_EQ(Lines(ReadFile(out + "/results.jsonl")).size(), 2u);
  fs::remove(out + "/hf/pytorch_model-00002-of-00003.bin.safemodel");
  EXPECT_NE(Sc({"verify", "-q", index}), 0);
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  const std::vector<std::string> all = Lines(ReadFile(out + "/results.jsonl"));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(Json::parse(all[2])["id"], "hf/pytorch_model.bin.index.json");
  EXPECT_TRUE(Exists(out + "/hf/pytorch_model-00002-of-00003.bin.safemodel"));
}

// A model.safetensors.index.json with its safetensors shards is one unit
// as well; its output exports back to safetensors shards and an index.
TEST(BatchCli, ASafetensorsShardedCheckpointIsOneUnit) {
  if (!PythonHas({"numpy"})) GTEST_SKIP() << "no numpy in /usr/bin/python3";
  TempDir in, dir;
  std::string log;
  ASSERT_EQ(RunPython(std::string(SAFEMODEL_SOURCE_DIR) + "/tests/converter/make_hf_sharded.py",
                      {in.File("hf"), "safetensors"}, &log),
            0)
      << log;
  fs::remove(in.File("hf/expected.json"));
  const std::string out = dir.File("out");
  EXPECT_EQ(Sc({"batch", in.path(), "-o", out, "--dry-run"}, &log), 0);
  EXPECT_EQ(log, "hf/model.safetensors.index.json\n");
  ASSERT_EQ(Sc({"batch", in.path(), "-o", out, "--no-sync", "-q"}), 0);
  const auto lines = Results(out + "/results.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  const Json& unit = lines.at("hf/model.safetensors.index.json");
  EXPECT_EQ(unit["status"], "converted") << unit.dump();
  EXPECT_EQ(unit["input"]["format"], "hf_sharded/safetensors");
  EXPECT_EQ(unit["output"]["tensors"], 8);
  const std::string index = out + "/hf/model.safetensors.safemodel.index.json";
  EXPECT_EQ(Sc({"verify", index}, &log), 0) << log;
  EXPECT_EQ(log, index + ": OK (3 shards, 8 tensors, digests verified)\n");
  ExpectDigestsAreTheFiles(unit, index);
  const std::string back = dir.File("back/model.safetensors.index.json");
  fs::create_directory(dir.File("back"));
  ASSERT_EQ(Sc({"export", "--no-sync", "-q", index, back}, &log), 0) << log;
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(Exists(dir.File("back/model-0000" + std::to_string(i) + "-of-00003.safetensors")));
  }
}

}  // namespace
}  // namespace safemodel::testing
