// safe-convert's subcommands. Each registers itself on the top-level app
// with its options and a callback that runs it after a successful parse
// and records the exit code (CommandExitCode).
#ifndef SAFEMODEL_CONVERTER_CLI_COMMANDS_H_
#define SAFEMODEL_CONVERTER_CLI_COMMANDS_H_

#include <CLI/CLI.hpp>

#include "safemodel/convert.h"

namespace safemodel::cli {

// convert IN OUT [options]: the conversion (also what `safe-convert IN OUT`
// without a subcommand runs).
void AddConvertCommand(CLI::App& app);
// inspect FILE [--json] [--tensors] [--architecture] [--sha256]
void AddInspectCommand(CLI::App& app);
// verify FILE: every digest of a .safemodel.
void AddVerifyCommand(CLI::App& app);
// export FILE OUT [--force]: a verified .safemodel as a .safetensors file.
void AddExportCommand(CLI::App& app);

// The exit code of the command that ran (kExitUsage if none did).
int& CommandExitCode();

// batch (IN_DIR | --manifest FILE) --out-dir DIR [options]: many inputs.
void AddBatchCommand(CLI::App& app);

// --timeout, --memory-limit, --cpu-limit, --max-input-size,
// --max-output-size, --digest, --weights-only, --keep-optimizer, --no-sync,
// --worker, --hdf5-worker, --require-isolation, into *opt.
void AddConversionOptions(CLI::App& sub, ConvertOptions* opt);

// SIGINT, SIGTERM, SIGHUP, SIGQUIT remove this process's temporary outputs
// and end it by the same signal; SIGPIPE and SIGXFSZ become errors.
void InstallSignalHandlers();

// Every subcommand's common flags: -h/--help and --version.
void AddCommonFlags(CLI::App& sub);

}  // namespace safemodel::cli

#endif  // SAFEMODEL_CONVERTER_CLI_COMMANDS_H_
