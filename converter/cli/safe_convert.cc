// safe-convert: the command-line front end. All the work is in the library
// (safemodel/convert.h, safemodel/reader.h, safemodel/inspect.h); this file
// parses flags, prints, and maps statuses to the documented exit codes.
//
// Every piece of text printed for a person that did not come from this file
// (paths, names, findings, status messages: all of them can be chosen by
// whoever made the model or named the file) goes through E(), which escapes
// terminal control and bidirectional characters. The JSON report is escaped
// by the JSON encoder instead.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "converter/cli/messages.h"
#include "safemodel/convert.h"
#include "safemodel/display.h"
#include "safemodel/inspect.h"
#include "safemodel/reader.h"

namespace {

using safemodel::cli::Count;
using safemodel::cli::E;
using safemodel::cli::FileLine;

const char kUsage[] =
    "usage: safe-convert [convert] IN OUT [options]   convert a model file to .safemodel\n"
    "                                                 (OUT '-': standard output)\n"
    "       safe-convert inspect [--json] FILE        describe a .safemodel\n"
    "       safe-convert verify FILE                  check every digest of a .safemodel\n"
    "\n"
    "convert options:\n"
    "  -f, --force           replace an existing OUT (only ever a regular file)\n"
    "  --report FILE         write the JSON report to FILE\n"
    "  --json                print the JSON report on stdout\n"
    "  --timeout SECONDS     wall-clock limit (default 120 + 20 per GiB of input)\n"
    "  --memory-limit SIZE   worker memory limit, e.g. 4G, 512M (default 4G)\n"
    "  --cpu-limit SECONDS   worker CPU limit (default: the timeout)\n"
    "  --max-input-size SIZE refuse larger inputs (default 256G)\n"
    "  --max-output-size SIZE refuse outputs larger than this (default: the free space)\n"
    "  --digest ALGO         xxh3 (default) or sha256 per-tensor digests\n"
    "  --weights-only        Keras: tensors only when the architecture cannot be kept\n"
    "  --keep-optimizer      Keras: keep optimizer state tensors\n"
    "  --no-sync             do not fsync the output\n"
    "  --worker PATH         safemodel-worker to use\n"
    "  --require-isolation LIST  comma-separated layers the worker must be seen to\n"
    "                        have before it reads the input, besides seccomp,\n"
    "                        no_new_privs, no_capabilities and rlimits: non_root,\n"
    "                        userns, netns, mntns, ipcns, utsns, aslr (exit 70 if one\n"
    "                        is missing)\n"
    "\n"
    "exit codes: 0 converted, 1 refused (code found), 2 usage or unusable\n"
    "IN/OUT, 3 malformed or unsupported input, 4 resource limit, 5 the worker\n"
    "was stopped or crashed, 6 I/O error (output, report, or the input changed),\n"
    "70 internal error or the sandbox could not be set up as required\n";

int Usage(const std::string& msg) {
  if (!msg.empty()) std::cerr << "safe-convert: " << E(msg) << "\n";
  std::cerr << kUsage;
  return safemodel::kExitUsage;
}

bool ParseSize(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t mult = 1;
  char last = s.back();
  if (last == 'K' || last == 'k') mult = 1ull << 10;
  if (last == 'M' || last == 'm') mult = 1ull << 20;
  if (last == 'G' || last == 'g') mult = 1ull << 30;
  if (last == 'T' || last == 't') mult = 1ull << 40;
  if (mult != 1) s.remove_suffix(1);
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v != 0 && mult > UINT64_MAX / v) return false;
  *out = v * mult;
  return true;
}

int Inspect(const std::vector<std::string>& args) {
  bool json = false;
  std::string path;
  for (const std::string& a : args) {
    if (a == "--json") {
      json = true;
    } else if (path.empty() && a.rfind("--", 0) != 0) {
      path = a;
    } else {
      return Usage("inspect: unexpected argument '" + a + "'");
    }
  }
  if (path.empty()) return Usage("inspect: missing FILE");
  auto model = safemodel::Model::Open(path);
  if (!model.ok()) {
    std::cerr << safemodel::cli::StatusLine(path, model.status());
    return safemodel::ExitCodeFor(model.status().code());
  }
  std::cout << (json ? safemodel::InspectJson(*model) + "\n" : safemodel::InspectText(*model));
  return safemodel::kExitConverted;
}

int Verify(const std::vector<std::string>& args) {
  if (args.size() != 1) return Usage("verify: expected exactly one FILE");
  auto model = safemodel::Model::Open(args[0]);
  safemodel::Status s = model.ok() ? model->Verify() : model.status();
  if (!s.ok()) {
    std::cerr << safemodel::cli::StatusLine(args[0], s);
    return safemodel::ExitCodeFor(s.code());
  }
  std::cout << E(args[0]) << ": OK (" << Count(model->tensors().size(), "tensor", "tensors") << ", "
            << safemodel::DigestAlgorithmName(model->digest_algorithm()) << " digests verified)\n";
  return safemodel::kExitConverted;
}

// Temporary output files are anonymous where the kernel allows; elsewhere
// they are named `.sm-XXXXXX` next to OUT, and these handlers remove them
// when the user or a scheduler stops the conversion.
void OnTerminatingSignal(int sig) {
  safemodel::RemoveTemporaryOutputs();
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
  if (!to_stdout && SamePath(report, out)) return "the report path is the output path '" + out + "'";
  struct stat rs, other;
  if (stat(report.c_str(), &rs) != 0) return "";
  if ((to_stdout ? fstat(STDOUT_FILENO, &other) : stat(out.c_str(), &other)) == 0 && SameFile(rs, other)) {
    return "the report file '" + report + "' is the output";
  }
  if (stat(in.c_str(), &other) == 0 && SameFile(rs, other)) {
    return "the report file '" + report + "' is the input";
  }
  return "";
}

// IN, OUT and the report path, before any work: "" if fine, else the usage
// error. OUT "-" sets opt->output_fd to standard output.
std::string CheckPaths(const std::vector<std::string>& paths, const std::string& report_path, bool json,
                       safemodel::ConvertOptions* opt) {
  if (paths[0] == "-") return "IN must be a file: the worker maps it, so standard input cannot be read";
  if (paths[1] == "-") {
    if (json) return "--json prints on standard output, which OUT '-' uses; use --report FILE";
    if (isatty(STDOUT_FILENO) && !opt->force) {
      return "standard output is a terminal; redirect it (or pass --force to write there anyway)";
    }
    opt->output_fd = STDOUT_FILENO;
  }
  return report_path.empty() ? "" : CheckReportPath(report_path, paths[0], paths[1]);
}

int Convert(const std::vector<std::string>& args) {
  safemodel::ConvertOptions opt;
  std::vector<std::string> paths;
  std::string report_path;
  bool json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto next = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    uint64_t n = 0;
    if (a == "--json") {
      json = true;
    } else if (a == "--weights-only") {
      opt.weights_only = true;
    } else if (a == "--keep-optimizer") {
      opt.keep_optimizer = true;
    } else if (a == "--no-sync") {
      opt.sync_output = false;
    } else if (a == "--force" || a == "-f") {
      opt.force = true;
    } else if (a == "--report") {
      if (!next(&report_path)) return Usage("--report needs a FILE");
    } else if (a == "--worker") {
      if (!next(&opt.worker_path)) return Usage("--worker needs a PATH");
    } else if (a == "--require-isolation") {
      if (!next(&v) || v.empty()) return Usage("--require-isolation needs a LIST like netns,userns");
      for (size_t start = 0; start <= v.size();) {
        size_t comma = v.find(',', start);
        std::string layer = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (layer.empty()) return Usage("--require-isolation: empty layer name in '" + v + "'");
        opt.required_isolation.push_back(layer);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--timeout" || a == "--cpu-limit") {
      if (!next(&v) || !ParseSize(v, &n) || n == 0 || n > 86400ull * 365) {
        return Usage(a + " needs a positive number of seconds");
      }
      (a == "--timeout" ? opt.timeout_ms : opt.cpu_limit_seconds) = a == "--timeout" ? n * 1000 : n;
    } else if (a == "--memory-limit" || a == "--max-input-size" || a == "--max-output-size") {
      if (!next(&v) || !ParseSize(v, &n) || n == 0) return Usage(a + " needs a SIZE like 512M or 4G");
      (a == "--memory-limit"     ? opt.memory_limit_bytes
       : a == "--max-input-size" ? opt.max_input_bytes
                                 : opt.max_output_bytes) = n;
    } else if (a == "--digest") {
      if (!next(&v) || (v != "xxh3" && v != "sha256")) return Usage("--digest is xxh3 or sha256");
      opt.digest = v == "sha256" ? safemodel::DigestAlgorithm::kSha256
                                 : safemodel::DigestAlgorithm::kXxh3_128;
    } else if (a.rfind("--", 0) == 0) {
      return Usage("unknown option '" + a + "'");
    } else {
      paths.push_back(a);
    }
  }
  if (paths.size() != 2) return Usage("expected IN and OUT");
  if (std::string why = CheckPaths(paths, report_path, json, &opt); !why.empty()) return Usage(why);
  const bool to_stdout = opt.output_fd == STDOUT_FILENO;
  InstallSignalHandlers();
  // The report is part of what was asked for: a path it cannot be written
  // to is a usage error found before any work, not a warning after it.
  std::ofstream report_file;
  bool report_failed = false;
  if (!report_path.empty()) {
    report_file.open(report_path, std::ios::trunc);
    if (!report_file) return Usage("cannot write the report to '" + report_path + "'");
  }

  safemodel::ConvertReport r = safemodel::ConvertFile(paths[0], paths[1], opt);
  const std::string report = r.ToJson();
  if (report_file.is_open()) {
    report_file << report << "\n";
    report_file.close();
    if (!report_file) {
      // Rare (disk full after the check above). A refusal or an error keeps
      // its own exit code below (1 must keep meaning "code found"); a
      // converted output stays, and exit 6 says the report is missing.
      std::cerr << FileLine(paths[0], "cannot write the report to '" + E(report_path) + "'");
      report_failed = true;
    }
  }
  if (json) std::cout << report << "\n";
  for (const safemodel::Finding& f : r.findings) std::cerr << safemodel::cli::FindingLine(paths[0], f);
  if (!r.status.ok()) {
    std::cerr << safemodel::cli::StatusLine(paths[0], r.status);
    return safemodel::ExitCodeFor(r.status.code());
  }
  if (!json) {
    // With OUT "-", standard output carries the model and nothing else.
    (to_stdout ? std::cerr : std::cout) << "converted " << E(paths[0]) << " (" << E(r.source_format)
                                        << ") -> " << E(paths[1]) << ": "
                                        << Count(r.tensor_count, "tensor", "tensors") << ", "
                                        << Count(r.output_bytes, "byte", "bytes") << "\n";
  }
  return report_failed ? safemodel::kExitIoError : safemodel::kExitConverted;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? safemodel::kExitUsage : safemodel::kExitConverted;
  }
  if (args[0] == "--version") {
    std::cout << safemodel::ConverterVersion() << "\n";
    return safemodel::kExitConverted;
  }
  const std::string cmd = args[0];
  if (cmd == "inspect") return Inspect({args.begin() + 1, args.end()});
  if (cmd == "verify") return Verify({args.begin() + 1, args.end()});
  if (cmd == "convert") return Convert({args.begin() + 1, args.end()});
  return Convert(args);
}
