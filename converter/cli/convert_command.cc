// `safe-convert convert IN OUT`: options, path checks, and what is printed.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "converter/cli/commands.h"
#include "converter/cli/messages.h"
#include "converter/cli/progress.h"
#include "converter/cli/units.h"
#include "safemodel/convert.h"

namespace safemodel::cli {

// Temporary output files are anonymous where the kernel allows; elsewhere
// they are named `.sm-XXXXXX` next to OUT, and these handlers remove them
// when the user or a scheduler stops the conversion.
static void OnTerminatingSignal(int sig) {
  RemoveTemporaryOutputs();
  // SA_RESETHAND restored the default action: dying by the same signal tells
  // the caller what happened (128 + N in a shell).
  raise(sig);
}

void InstallSignalHandlers() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    struct sigaction old = {};
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;  // nohup: stays ignored
    struct sigaction sa = {};
    sa.sa_handler = OnTerminatingSignal;
    sa.sa_flags = static_cast<int>(SA_RESETHAND);
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
  }
  // Errors instead of deaths: a closed pipe on standard output is EPIPE
  // (exit 6), and RLIMIT_FSIZE is checked before writing (exit 4) rather
  // than killing the converter with SIGXFSZ.
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
}

namespace {

struct ConvertArgs {
  ConvertOptions opt;
  std::string in;
  std::string out;
  std::string report_path;
  bool json = false;
  bool quiet = false;
  bool verbose = false;
};

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

bool SamePath(const std::string& a, const std::string& b) {
  namespace fs = std::filesystem;
  std::error_code ec1, ec2;
  const fs::path x = fs::weakly_canonical(fs::absolute(a, ec1), ec1);
  const fs::path y = fs::weakly_canonical(fs::absolute(b, ec2), ec2);
  if (ec1 || ec2) return fs::path(a).lexically_normal() == fs::path(b).lexically_normal();
  return x == y;
}

// The report file is opened, and truncated, before the conversion: it must
// be neither the output nor the input (compared by path, and by identity
// when the file exists). "" if fine, else the usage error.
std::string CheckReportPath(const std::string& report, const std::string& in, const std::string& out) {
  const bool to_stdout = out == "-";
  if (!to_stdout && SamePath(report, out)) return "the report path is the output path '" + E(out) + "'";
  struct stat rs, other;
  if (stat(report.c_str(), &rs) != 0) return "";
  if ((to_stdout ? fstat(STDOUT_FILENO, &other) : stat(out.c_str(), &other)) == 0 && SameFile(rs, other)) {
    return "the report file '" + E(report) + "' is the output";
  }
  if (stat(in.c_str(), &other) == 0 && SameFile(rs, other)) {
    return "the report file '" + E(report) + "' is the input";
  }
  return "";
}

// IN, OUT and the report path, before any work: "" if fine, else the usage
// error (escaped). OUT "-" sets output_fd to standard output.
std::string CheckPaths(ConvertArgs& a) {
  if (a.in == "-") return "IN must be a file: the worker maps it, so standard input cannot be read";
  if (a.out == "-") {
    if (a.json) return "--json prints on standard output, which OUT '-' uses; use --report FILE";
    if (isatty(STDOUT_FILENO) && !a.opt.force) {
      return "standard output is a terminal; redirect it (or pass --force to write there anyway)";
    }
    a.opt.output_fd = STDOUT_FILENO;
  }
  return a.report_path.empty() ? "" : CheckReportPath(a.report_path, a.in, a.out);
}

int UsageError(const std::string& file, const std::string& why) {
  std::cerr << FileLine(file, why)
            << "usage: safe-convert [convert] IN OUT [options]; 'safe-convert convert --help' lists "
               "the options\n";
  return kExitUsage;
}

// --verbose: what the parent saw of the worker, on stderr.
void PrintDetails(const ConvertReport& r) {
  std::string what = "input " + Count(r.input_bytes, "byte", "bytes") + ", sha256 " +
                     (r.input_sha256.empty() ? "(not computed)" : r.input_sha256) + ", format " +
                     E(r.source_format);
  std::cerr << FileLine(r.input_path, what);
  char rss[64];
  std::snprintf(rss, sizeof rss, "%.3f s wall, %.3f s worker CPU", r.wall_seconds, r.worker.cpu_seconds);
  what = std::string("worker ") + WorkerOutcomeName(r.worker.kind) + ", " + rss + ", " +
         HumanBytes(r.worker.max_rss_bytes) + " worker peak memory" +
         // wait4's figure (the worker was gone before it could be read in
         // /proc) includes this process's own peak: say so.
         (r.worker.max_rss_source == "rusage" ? " (from wait4: it may include this process's own peak)" : "");
  std::cerr << FileLine(r.input_path, what);
  std::string layers;
  for (const std::string& l : r.worker.isolation) layers += (layers.empty() ? "" : ", ") + E(l);
  if (!layers.empty()) std::cerr << FileLine(r.input_path, "isolation seen: " + layers);
}

int RunConvert(ConvertArgs& a) {
  if (std::string why = CheckPaths(a); !why.empty()) return UsageError(a.in, why);
  const bool to_stdout = a.opt.output_fd == STDOUT_FILENO;
  InstallSignalHandlers();
  // The report is part of what was asked for: a path it cannot be written
  // to is a usage error found before any work, not a warning after it.
  std::ofstream report_file;
  bool report_failed = false;
  if (!a.report_path.empty()) {
    report_file.open(a.report_path, std::ios::trunc);
    if (!report_file) return UsageError(a.in, "cannot write the report to '" + E(a.report_path) + "'");
  }

  // Progress only on a terminal, for inputs large enough to need it. A
  // multi-file input (a directory, a checkpoint prefix) is judged by the
  // output's planned size, its own being known only once it is listed.
  struct stat in_stat;
  const bool one_file = stat(a.in.c_str(), &in_stat) == 0 && S_ISREG(in_stat.st_mode);
  const bool show_progress =
      !a.quiet && isatty(STDERR_FILENO) &&
      (!one_file || static_cast<uint64_t>(in_stat.st_size) >= kMinProgressInputBytes);
  ProgressDisplay progress(a.in, show_progress);
  if (show_progress) {
    a.opt.progress = [&progress, one_file](const ConvertProgress& p) {
      if (one_file || p.bytes_total >= kMinProgressInputBytes) progress.Update(p);
    };
  }
  ConvertReport r = ConvertFile(a.in, a.out, a.opt);
  progress.Finish();
  const std::string report = r.ToJson();
  if (report_file.is_open()) {
    report_file << report << "\n";
    report_file.close();
    if (!report_file) {
      // Rare (disk full after the check above). A refusal or an error keeps
      // its own exit code below (1 must keep meaning "code found"); a
      // converted output stays, and exit 6 says the report is missing.
      std::cerr << FileLine(a.in, "cannot write the report to '" + E(a.report_path) + "'");
      report_failed = true;
    }
  }
  if (a.json) std::cout << report << "\n";
  if (!a.quiet) {
    for (const Finding& f : r.findings) std::cerr << FindingLine(a.in, f);
  }
  if (a.verbose) PrintDetails(r);
  if (!r.status.ok()) {
    std::cerr << StatusLine(a.in, r.status);
    return ExitCodeFor(r.status.code());
  }
  if (!a.json && !a.quiet) {
    // With OUT "-", standard output carries the model and nothing else.
    (to_stdout ? std::cerr : std::cout) << "converted " << E(a.in) << " (" << E(r.source_format)
                                        << ") -> " << E(a.out) << ": "
                                        << Count(r.tensor_count, "tensor", "tensors") << ", "
                                        << HumanBytes(r.output_bytes) << "\n";
  }
  return report_failed ? kExitIoError : kExitConverted;
}

// --timeout/--cpu-limit and the size options: parsed into `*out`, or a
// usage error naming the option.
CLI::Option* AddDuration(CLI::App& sub, const std::string& name, uint64_t* out, uint64_t scale,
                         const std::string& help) {
  return sub
      .add_option_function<std::string>(
          name,
          [name, out, scale](const std::string& v) {
            std::optional<uint64_t> s = ParseDuration(v);
            if (!s) {
              throw CLI::ValidationError(name, "'" + v + "' is not a duration like 90, 90s, 5m or 2h");
            }
            *out = *s * scale;
          },
          help)
      ->type_name("DURATION");
}

CLI::Option* AddSize(CLI::App& sub, const std::string& name, uint64_t* out, const std::string& help) {
  return sub
      .add_option_function<std::string>(
          name,
          [name, out](const std::string& v) {
            std::optional<uint64_t> n = ParseSize(v);
            if (!n || *n == 0) {
              throw CLI::ValidationError(name, "'" + v + "' is not a size like 512M, 4G, 4GB or 4GiB");
            }
            *out = *n;
          },
          help)
      ->type_name("SIZE");
}

}  // namespace

// The options of a conversion that `convert` and `batch` share.
void AddConversionOptions(CLI::App& sub, ConvertOptions* opt) {
  AddDuration(sub, "--timeout", &opt->timeout_ms, 1000,
              "wall-clock limit: 90, 90s, 5m, 2h (default 120 s + 20 s per GiB of input)");
  AddSize(sub, "--memory-limit", &opt->memory_limit_bytes,
          "worker memory limit, e.g. 512M, 4G, 4GB (default 4G)");
  AddDuration(sub, "--cpu-limit", &opt->cpu_limit_seconds, 1, "worker CPU limit (default: the timeout)");
  AddSize(sub, "--max-input-size", &opt->max_input_bytes, "refuse larger inputs, all files of a model together (default 256G)");
  AddSize(sub, "--max-output-size", &opt->max_output_bytes,
          "refuse outputs larger than this (default: the free space)");
  sub.add_option_function<std::string>(
         "--digest",
         [opt](const std::string& v) {
           if (v != "xxh3" && v != "sha256") throw CLI::ValidationError("--digest", "is xxh3 or sha256");
           opt->digest = v == "sha256" ? DigestAlgorithm::kSha256 : DigestAlgorithm::kXxh3_128;
         },
         "per-tensor digests: xxh3 (default) or sha256")
      ->type_name("ALGO");
  sub.add_flag("--weights-only", opt->weights_only,
                "Keras: tensors only when the architecture cannot be kept");
  sub.add_flag("--keep-optimizer", opt->keep_optimizer, "Keras: keep optimizer state tensors");
  sub.add_flag_callback("--no-sync", [opt] { opt->sync_output = false; },
                         "do not fsync the output");
  sub.add_option("--worker", opt->worker_path, "the safemodel-worker to start first")->type_name("PATH");
  sub.add_option("--hdf5-worker", opt->hdf5_worker_path,
                  "the safemodel-worker-hdf5 for inputs that need libhdf5")
      ->type_name("PATH");
  sub.add_option_function<std::string>(
         "--require-isolation",
         [opt](const std::string& v) {
           for (size_t start = 0; start <= v.size();) {
             const size_t comma = v.find(',', start);
             std::string layer = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
             if (layer.empty()) throw CLI::ValidationError("--require-isolation", "empty layer name in '" + v + "'");
             opt->required_isolation.push_back(layer);
             if (comma == std::string::npos) break;
             start = comma + 1;
           }
         },
         "layers the worker must be seen to have, comma-separated: non_root, userns, netns, mntns, "
         "ipcns, utsns, aslr (exit 70 if one is missing)")
      ->type_name("LIST");
}

void AddConvertCommand(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* sub = app.add_subcommand("convert", "convert a model file to .safemodel (the default command)");
  AddCommonFlags(*sub);
  sub->add_option("IN", args->in,
                  "the model to convert: a file, or a model made of several files (a SavedModel or "
                  "checkpoint directory, a checkpoint's .index or prefix, a sharded Keras "
                  "*.weights.json)")
      ->required()
      ->type_name("");
  sub->add_option("OUT", args->out, "the .safemodel to write ('-': standard output)")
      ->required()
      ->type_name("");
  sub->add_flag("-f,--force", args->opt.force, "replace an existing OUT (only ever a regular file)");
  sub->add_option("--report", args->report_path, "write the JSON report to FILE")->type_name("FILE");
  sub->add_flag("--json", args->json, "print the JSON report on standard output");
  AddConversionOptions(*sub, &args->opt);
  sub->add_flag("-q,--quiet", args->quiet, "print only errors (no findings, no summary)");
  sub->add_flag("-v,--verbose", args->verbose, "also print the digest, the worker's outcome and isolation");
  sub->footer(
      "Sizes: K, M, G, T and KiB, MiB, GiB, TiB are powers of 1024; KB, MB, GB, TB powers of 1000.\n"
      "Exit codes: 0 converted, 1 refused (code found), 2 usage or unusable IN/OUT, 3 malformed or\n"
      "unsupported input, 4 resource limit, 5 the worker was stopped or crashed, 6 I/O error,\n"
      "70 internal error or the sandbox could not be set up as required.");
  sub->callback([sub, args] {
    if (sub->get_option("--quiet")->count() > 0 && sub->get_option("--verbose")->count() > 0) {
      CommandExitCode() = UsageError(args->in, "--quiet and --verbose exclude each other");
      return;
    }
    CommandExitCode() = RunConvert(*args);
  });
}

}  // namespace safemodel::cli
