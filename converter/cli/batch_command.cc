// `safe-convert batch`: a directory tree or a manifest converted into a
// mirrored tree of .safemodel files, with a results file that makes a rerun
// resume (README "Converting a model zoo").
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "converter/cli/batch_inputs.h"
#include "converter/cli/batch_report.h"
#include "converter/cli/commands.h"
#include "converter/cli/messages.h"
#include "safemodel/batch.h"
#include "safemodel/sharded.h"
#include "safemodel/sharded_convert.h"

namespace safemodel::cli {

namespace {

namespace fs = std::filesystem;

struct BatchArgs {
  ConvertOptions opt;
  std::string in_dir;
  std::string manifest;
  std::string out_dir;
  std::string results;
  std::string sarif;
  std::string shard;
  uint64_t shards = 0;  // --shards N: the index from the scheduler's variable
  unsigned jobs = 0;
  bool quiet = false;
  bool dry_run = false;
  bool fork_server = false;
};

int BatchUsage(const std::string& why) {
  std::cerr << "safe-convert: batch: " << why << "\n"
            << "usage: safe-convert batch (IN_DIR | --manifest FILE) --out-dir DIR [options]; "
               "'safe-convert batch --help' lists the options\n";
  return kExitUsage;
}

// The slice this process converts: --shard I/N, or --shards N with I from
// JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID.
// "" if fine, else the usage error.
std::string ResolveShard(const BatchArgs& a, uint64_t* index, uint64_t* count) {
  *index = 0;
  *count = 1;
  if (!a.shard.empty()) {
    if (a.shards != 0) return "--shard and --shards exclude each other";
    if (!ParseShard(a.shard, index, count)) return "--shard is I/N with 0 <= I < N, not '" + E(a.shard) + "'";
    return "";
  }
  if (a.shards == 0) return "";
  const char* env = std::getenv("JOB_COMPLETION_INDEX");
  const char* name = "JOB_COMPLETION_INDEX";
  if (env == nullptr || *env == '\0') {
    env = std::getenv("SLURM_ARRAY_TASK_ID");
    name = "SLURM_ARRAY_TASK_ID";
  }
  if (env == nullptr || *env == '\0') {
    return "--shards needs JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID in the environment (or use --shard I/N)";
  }
  if (!ParseShard(std::string(env) + "/" + std::to_string(a.shards), index, count)) {
    return std::string(name) + "='" + E(env) + "' is not an index below --shards " + std::to_string(a.shards);
  }
  return "";
}

// The last line of each id in an existing results file (a rerun's lines
// come after the first run's). A line that is not JSON (a machine lost
// while writing it) is skipped: its input is redone.
std::map<std::string, nlohmann::json> LoadResults(const std::string& path, bool* ends_with_newline) {
  std::map<std::string, nlohmann::json> out;
  *ends_with_newline = true;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    *ends_with_newline = !in.eof();
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("id") && j["id"].is_string()) {
      const std::string id = j["id"].get<std::string>();
      out[id] = std::move(j);
    }
  }
  return out;
}

std::string OutputPathFor(const BatchArgs& a, const BatchInput& in) {
  if (!in.symlink && IsShardedCheckpointIndex(in.path)) {
    return ShardedOutputIndexName((fs::path(a.out_dir) / in.id).string());
  }
  return (fs::path(a.out_dir) / (in.id + ".safemodel")).string();
}

// The input's SHA-256 as its results line records it (a unit's covers the
// index and every shard).
Result<std::string> InputSha256(const BatchInput& in, const ShardLister& shards_of) {
  if (!IsShardedCheckpointIndex(in.path)) return Sha256OfFile(in.path);
  Result<std::vector<std::string>> shards = shards_of(in.path);
  return ShardedCheckpointSha256(in.path, shards.ok() ? *shards : std::vector<std::string>{});
}

// The output of a line is still the one written: a unit's index opens with
// every shard it records (their SHA-256 checked), a file has its size.
bool OutputHolds(const nlohmann::json& out, const BatchInput& in, const std::string& out_path) {
  struct stat st;
  if (out.value("path", "") != out_path || lstat(out_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (IsShardedCheckpointIndex(in.path)) {
    if (!ShardedModel::Open(out_path).ok()) return false;
  } else if (static_cast<uint64_t>(st.st_size) != out.value("bytes", uint64_t{0})) {
    return false;
  }
  Result<std::string> out_sha = Sha256OfFile(out_path);
  return out_sha.ok() && *out_sha == out.value("sha256", "");
}

// Whether an earlier run's line for this input still holds: same converter,
// options and input bytes, a final status (an I/O error, an unusable input
// or output path, or a sandbox that could not be set up is redone: each is
// cheap to try again and may have been fixed), and for a converted input the output is
// still the file that run wrote (size and SHA-256, re-read now).
bool RecordHoldsUnchecked(const nlohmann::json& rec, const BatchInput& in, const std::string& out_path,
                          const std::vector<std::string>& fingerprint, const ShardLister& shards_of) {
  if (!rec.contains("input") || !rec["input"].is_object() || !rec["input"]["bytes"].is_number_unsigned() ||
      !rec["input"]["path"].is_string()) {
    return false;
  }
  const std::string status = rec.value("status", "");
  if (rec.value("converter", "") != ConverterVersion() || rec.value("options", nlohmann::json()) != fingerprint ||
      status.empty() || status == "io_error" || status == "invalid" || rec.value("exit_code", 0) == kExitInternal) {
    return false;
  }
  if (in.symlink || status == "symlink") return in.symlink && status == "symlink";
  Result<std::string> sha = InputSha256(in, shards_of);
  if (!sha.ok() || rec["input"].value("sha256", "") != *sha) return false;
  if (status != "converted") return true;
  return OutputHolds(rec.value("output", nlohmann::json::object()), in, out_path);
}

// A line edited by hand (a field of another type) does not hold.
bool RecordHolds(const nlohmann::json& rec, const BatchInput& in, const std::string& out_path,
                 const std::vector<std::string>& fingerprint, const ShardLister& shards_of) {
  try {
    return RecordHoldsUnchecked(rec, in, out_path, fingerprint, shards_of);
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// The results file, appended one fsynced line at a time.
class ResultsFile {
 public:
  ~ResultsFile() {
    if (fd_ >= 0) close(fd_);
  }
  bool Open(const std::string& path, bool needs_newline) {
    fd_ = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    return fd_ >= 0 && (!needs_newline || Append(""));
  }
  // `line` plus a newline in one write, then fsync: a line is durable once
  // this returns true.
  bool Append(const std::string& line) {
    const std::string bytes = line + "\n";
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = write(fd_, bytes.data() + off, bytes.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return fsync(fd_) == 0;
  }

 private:
  int fd_ = -1;
};

// Prints what a person sees of one finished input.
class Display {
 public:
  Display(bool quiet, bool live, BatchTally* tally) : quiet_(quiet), live_(live), tally_(tally) {}
  void Result(const BatchItem& item, const ConvertReport& r, const std::string& status) {
    if (quiet_) return;
    std::string text;
    if (status == "converted") {
      if (!live_) {
        text = FileLine(item.input_path, "converted (" + E(r.source_format) + ") -> " + E(item.output_path) +
                                             ": " + Count(r.tensor_count, "tensor", "tensors") + ", " +
                                             HumanBytes(r.output_bytes));
      }
    } else {
      for (const Finding& f : r.findings) text += FindingLine(item.input_path, f);
      text += StatusLine(item.input_path, r.status);
    }
    Print(text);
  }
  void Skipped(const BatchInput& in, const std::string& status) {
    if (!quiet_ && !live_) Print(FileLine(in.path, "already done by an earlier run (" + status + ")"));
  }
  void Print(const std::string& text) {
    if (live_) std::cerr << "\r\x1b[K";
    std::cerr << text;
    if (live_) std::cerr << tally_->LiveLine();
    std::cerr << std::flush;
  }
  void Finish() {
    if (live_ && !quiet_) std::cerr << "\r\x1b[K" << std::flush;
  }

 private:
  bool quiet_;
  bool live_;
  BatchTally* tally_;
};

struct Plan {
  std::vector<BatchInput> inputs;  // this shard's
  std::vector<BatchItem> to_convert;
  std::vector<nlohmann::json> done;  // lines of an earlier run that still hold
  std::vector<BatchInput> links;     // symbolic links without a line
  uint64_t total_bytes = 0;
};

int Execute(const BatchArgs& a, Plan& plan, const std::string& results_path, bool needs_newline,
            const CheckpointIndexReader& read_index);

int RunBatch(BatchArgs& a) {
  if (a.in_dir.empty() == a.manifest.empty()) return BatchUsage("give either IN_DIR or --manifest FILE");
  uint64_t shard = 0, shards = 1;
  if (std::string why = ResolveShard(a, &shard, &shards); !why.empty()) return BatchUsage(why);
  std::error_code ec;
  fs::create_directories(a.out_dir, ec);
  if (ec || !fs::is_directory(a.out_dir)) return BatchUsage("cannot create the out-dir '" + E(a.out_dir) + "'");
  std::string results_path = a.results;
  if (results_path.empty()) {
    results_path = (fs::path(a.out_dir) / (shards == 1 ? std::string("results.jsonl")
                                                        : "results." + std::to_string(shard) + "-of-" +
                                                              std::to_string(shards) + ".jsonl"))
                       .string();
  }
  std::vector<std::string> exclude = {a.out_dir, results_path};
  if (!a.sarif.empty()) exclude.push_back(a.sarif);
  // Each HF index is read through the worker once: for the listing, the
  // rerun check and its unit's conversion.
  const CheckpointIndexReadings index_readings(a.opt, ConvertFile);
  const ShardLister shards_of = index_readings.Lister();
  Result<std::vector<BatchInput>> listed =
      a.in_dir.empty() ? ReadManifest(a.manifest) : ListTree(a.in_dir, exclude, shards_of);
  if (!listed.ok()) return BatchUsage(E(listed.status().message()));

  Plan plan;
  for (BatchInput& in : *listed) {
    if (ShardOf(in.id, shards) == shard) plan.inputs.push_back(std::move(in));
  }
  if (a.dry_run) {
    for (const BatchInput& in : plan.inputs) std::cout << in.id << "\n";
    return kExitConverted;
  }
  bool needs_newline = false;
  bool ends_with_newline = true;
  const auto earlier = LoadResults(results_path, &ends_with_newline);
  needs_newline = !ends_with_newline;
  const std::vector<std::string> fingerprint = BatchOptionsFingerprint(a.opt);
  for (const BatchInput& in : plan.inputs) {
    const std::string out = OutputPathFor(a, in);
    struct stat st;
    if (!in.symlink && lstat(in.path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      plan.total_bytes += static_cast<uint64_t>(st.st_size);
    }
    auto it = earlier.find(in.id);
    if (it != earlier.end() && RecordHolds(it->second, in, out, fingerprint, shards_of)) {
      plan.done.push_back(it->second);
      index_readings.Forget(in.path);
    } else if (in.symlink) {
      plan.links.push_back(in);
    } else {
      plan.to_convert.push_back({in.id, in.path, out});
    }
  }
  return Execute(a, plan, results_path, needs_newline, index_readings.Reader());
}

int Execute(const BatchArgs& a, Plan& plan, const std::string& results_path, bool needs_newline,
            const CheckpointIndexReader& read_index) {
  ResultsFile results;
  if (!results.Open(results_path, needs_newline)) {
    return BatchUsage("cannot write the results file '" + E(results_path) + "'");
  }
  InstallSignalHandlers();
  const std::vector<std::string> fingerprint = BatchOptionsFingerprint(a.opt);
  BatchTally tally(plan.inputs.size(), plan.total_bytes);
  Display display(a.quiet, isatty(STDERR_FILENO) != 0, &tally);
  std::vector<nlohmann::json> lines;  // for the SARIF log, if one is asked for
  bool write_failed = false;
  for (const nlohmann::json& rec : plan.done) {
    tally.Add(rec.value("status", ""), rec["input"].value("bytes", uint64_t{0}), true);
    display.Skipped({rec.value("id", ""), rec["input"].value("path", ""), false}, rec.value("status", ""));
    if (!a.sarif.empty()) lines.push_back(rec);
  }
  for (const BatchInput& in : plan.links) {
    const std::string line = BatchSkipJson({in.id, in.path, ""}, "symlink", kExitUsage,
                                           "a symbolic link: not followed, not converted", fingerprint);
    write_failed |= !results.Append(line);
    tally.Add("symlink", 0, false);
    display.Print(a.quiet ? "" : FileLine(in.path, "a symbolic link: not followed, not converted"));
    if (!a.sarif.empty()) lines.push_back(nlohmann::json::parse(line));
  }
  for (const BatchItem& item : plan.to_convert) {
    // A directory that cannot be made fails that input's conversion
    // (io_error), not the batch.
    std::error_code ec;
    fs::create_directories(fs::path(item.output_path).parent_path(), ec);
  }
  BatchOptions bopt;
  bopt.convert = a.opt;
  bopt.convert.force = true;  // the out-dir is the batch's: an output without a line that holds is redone
  bopt.jobs = a.jobs;
  bopt.read_checkpoint_index = read_index;
  if (a.fork_server && !plan.to_convert.empty()) {
    // Fails the batch before any conversion: no silent fallback to exec.
    Result<std::shared_ptr<sandbox::ForkServer>> server = StartForkServer(bopt.convert);
    if (!server.ok()) {
      std::cerr << "safe-convert: batch: --fork-server: " << server.status().message() << "\n";
      return ExitCodeFor(server.status().code());
    }
    bopt.convert.fork_server = *server;
  }
  Batch batch(bopt);
  batch.Run(plan.to_convert, [&](const BatchResult& r) {
    const std::string status = BatchStatusName(r.report.status.code());
    if (!r.report.status.ok()) {
      // The out-dir mirrors the results: an output left by an earlier run
      // with other options does not outlive this result.
      struct stat st;
      if (lstat(r.item.output_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) unlink(r.item.output_path.c_str());
    }
    const std::string line = BatchResultJson(r, fingerprint);
    if (!results.Append(line)) {
      write_failed = true;
      batch.Cancel();
    }
    tally.Add(status, r.report.input_bytes, false);
    display.Result(r.item, r.report, status);
    if (!a.sarif.empty()) lines.push_back(nlohmann::json::parse(line));
  });
  display.Finish();
  if (!a.sarif.empty()) {
    std::ofstream sarif(a.sarif, std::ios::trunc);
    sarif << SarifLog(lines, ConverterVersion());
    sarif.close();
    if (!sarif) write_failed = true;
  }
  if (!a.quiet) std::cerr << tally.Summary();
  if (write_failed) {
    std::cerr << FileLine(results_path, "writing the results (or the SARIF log) failed");
    return kExitIoError;
  }
  return tally.Count("io_error") > 0 ? kExitBatchRetry : kExitConverted;
}

}  // namespace

void AddBatchCommand(CLI::App& app) {
  auto args = std::make_shared<BatchArgs>();
  CLI::App* sub = app.add_subcommand("batch", "convert a directory tree or a manifest of models, in parallel");
  AddCommonFlags(*sub);
  sub->add_option("IN_DIR", args->in_dir, "the directory tree to convert (recursive; links are not followed)")
      ->type_name("");
  sub->add_option("--manifest", args->manifest, "JSON lines {\"id\": ..., \"path\": ...} instead of IN_DIR")
      ->type_name("FILE");
  sub->add_option("-o,--out-dir", args->out_dir, "where the .safemodel tree goes (ID.safemodel each)")
      ->required()
      ->type_name("DIR");
  sub->add_option("--results", args->results,
                  "the results file, JSON lines, appended (default OUT_DIR/results.jsonl, or "
                  "results.I-of-N.jsonl for a shard)")
      ->type_name("FILE");
  sub->add_option("--sarif", args->sarif, "also write the findings as SARIF 2.1.0")->type_name("FILE");
  sub->add_option("-j,--jobs", args->jobs, "conversions at a time (default: the number of cores)")
      ->type_name("N")
      ->check(CLI::Range(1u, 1024u));
  sub->add_option("--shard", args->shard, "convert only slice I of N (I from 0)")->type_name("I/N");
  sub->add_option("--shards", args->shards,
                  "N slices, this one's index from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID")
      ->type_name("N")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1000000}));
  sub->add_flag("--dry-run", args->dry_run, "print the ids this slice would cover, sorted, and exit");
  sub->add_flag("--fork-server", args->fork_server,
                "fork each worker from an initialised zygote instead of an exec (~2 ms less per file; "
                "workers of up to 64 files share one address-space layout: README \"Batch conversion\")");
  AddConversionOptions(*sub, &args->opt);
  sub->add_flag("-q,--quiet", args->quiet, "print nothing on standard error but usage errors");
  sub->footer(
      "Exit codes: 0 every input reached a final status (refusals are results), 75 some inputs hit\n"
      "I/O errors worth a retry (rerun the same command), 2 usage, 6 the results file could not be\n"
      "written. A rerun skips inputs whose results line still holds.");
  sub->callback([args] { CommandExitCode() = RunBatch(*args); });
}

}  // namespace safemodel::cli
