// safe-convert: the command-line front end. All the work is in the library
// (safemodel/convert.h, safemodel/reader.h); this program parses options
// (CLI11), prints, and maps statuses to the documented exit codes. Each
// subcommand lives in its own file and registers itself (commands.h).
//
// Every piece of text printed for a person that did not come from this
// program (paths, names, findings, status messages: whoever made the model or
// named the file chose them) is escaped (messages.h); the JSON outputs are
// escaped by the JSON encoder instead.
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "converter/cli/commands.h"
#include "converter/cli/messages.h"
#include "safemodel/convert.h"

namespace safemodel::cli {

int& CommandExitCode() {
  static int code = kExitUsage;
  return code;
}

void AddCommonFlags(CLI::App& sub) {
  sub.set_help_flag("-h,--help", "print this help and exit");
  sub.set_version_flag("--version", std::string(ConverterVersion()), "print the version and exit");
}

namespace {

constexpr char kShortUsage[] =
    "usage: safe-convert [convert] IN OUT [options] | inspect FILE | verify FILE | "
    "export FILE OUT | batch IN_DIR --out-dir DIR; "
    "'safe-convert --help' says more\n";

// The subcommand the arguments name, for the pointer to its --help.
std::string CommandOf(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands()) return sub->get_name();
  return "";
}

int Main(std::vector<std::string> args) {
  CLI::App app("safe-convert: converts untrusted model files into code-free .safemodel files in a "
               "sandbox; inspects and verifies .safemodel files.",
               "safe-convert");
  AddCommonFlags(app);
  app.require_subcommand(1);
  app.footer("Without a subcommand, 'safe-convert IN OUT [options]' converts.\n"
             "'safe-convert COMMAND --help' lists a command's options.");
  AddConvertCommand(app);
  AddInspectCommand(app);
  AddVerifyCommand(app);
  AddExportCommand(app);
  AddBatchCommand(app);
  if (args.empty()) {
    std::cerr << kShortUsage;
    return kExitUsage;
  }
  // `safe-convert IN OUT`: the first argument that is not a subcommand or a
  // top-level flag means convert.
  const std::string& first = args[0];
  if (first == "help") {
    args[0] = "--help";
  } else if (first != "convert" && first != "inspect" && first != "verify" && first != "export" &&
             first != "batch" && first != "-h" &&
             first != "--help" && first != "--version") {
    args.insert(args.begin(), "convert");
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    const std::string cmd = CommandOf(app);
    std::cerr << "safe-convert: " << (cmd.empty() ? "" : cmd + ": ") << E(e.what()) << "\n"
              << "usage: safe-convert "
              << (cmd == "inspect"  ? "inspect FILE [--json] [--tensors] [--architecture] [--sha256]"
                  : cmd == "verify" ? "verify FILE"
                  : cmd == "export" ? "export FILE OUT [--force] [--no-sync]"
                  : cmd == "batch"  ? "batch (IN_DIR | --manifest FILE) --out-dir DIR [options]"
                                    : "[convert] IN OUT [options]")
              << "; 'safe-convert " << (cmd.empty() ? "" : cmd + " ") << "--help' lists the options\n";
    return kExitUsage;
  }
  return CommandExitCode();
}

}  // namespace
}  // namespace safemodel::cli

int main(int argc, char** argv) { return safemodel::cli::Main({argv + 1, argv + argc}); }
