// `safe-convert inspect`, `verify` and `export`: reading a .safemodel.
#include <iostream>
#include <memory>
#include <string>

#include "converter/cli/commands.h"
#include "converter/cli/messages.h"
#include "safemodel/export_safetensors.h"
#include "safemodel/inspect.h"
#include "safemodel/reader.h"
#include "safemodel/sharded.h"

namespace safemodel::cli {

namespace {

constexpr std::string_view kSafemodelIndexSuffix = ".safemodel.index.json";

bool IsSafemodelIndex(const std::string& path) {
  return path.size() > kSafemodelIndexSuffix.size() && path.ends_with(kSafemodelIndexSuffix);
}

struct InspectArgs {
  std::string path;
  bool json = false;
  InspectOptions view;
};

int RunInspect(const InspectArgs& a) {
  auto model = Model::Open(a.path);
  if (!model.ok()) {
    std::cerr << StatusLine(a.path, model.status());
    return ExitCodeFor(model.status().code());
  }
  std::cout << (a.json ? InspectJson(*model, a.view) + "\n" : InspectText(*model, a.view));
  return kExitConverted;
}

// A sharded model's index (safemodel/sharded.h): the index against its
// shards, then every tensor digest of every shard.
int RunVerifySharded(const std::string& path, bool quiet) {
  auto model = ShardedModel::Open(path);
  Status s = model.ok() ? model->Verify() : model.status();
  if (!s.ok()) {
    std::cerr << StatusLine(path, s);
    return ExitCodeFor(s.code());
  }
  if (!quiet) {
    std::cout << E(path) << ": OK (" << Count(model->shard_count(), "shard", "shards") << ", "
              << Count(model->tensor_names().size(), "tensor", "tensors") << ", digests verified)\n";
  }
  return kExitConverted;
}

int RunVerify(const std::string& path, bool quiet) {
  if (IsSafemodelIndex(path)) return RunVerifySharded(path, quiet);
  auto model = Model::Open(path);
  Status s = model.ok() ? model->Verify() : model.status();
  if (!s.ok()) {
    std::cerr << StatusLine(path, s);
    return ExitCodeFor(s.code());
  }
  if (!quiet) {
    std::cout << E(path) << ": OK (" << Count(model->tensors().size(), "tensor", "tensors") << ", "
              << DigestAlgorithmName(model->digest_algorithm()) << " digests verified)\n";
  }
  return kExitConverted;
}

struct ExportArgs {
  std::string in, out;
  ExportOptions opt;
  bool quiet = false;
};

int RunExport(const ExportArgs& a) {
  constexpr std::string_view kOutIndexSuffix = ".safetensors.index.json";
  const bool sharded = IsSafemodelIndex(a.in);
  if (sharded && !(a.out.size() > kOutIndexSuffix.size() && a.out.ends_with(kOutIndexSuffix))) {
    std::cerr << "safe-convert: export: a sharded model (" << E(a.in)
              << ") exports to NAME.safetensors.index.json, not " << E(a.out) << "\n"
              << "usage: safe-convert export FILE OUT [options]; 'safe-convert export --help' lists "
                 "the options\n";
    return kExitUsage;
  }
  Result<ExportSummary> done =
      sharded ? ExportShardedSafetensors(a.in, a.out, a.opt) : ExportSafetensorsFile(a.in, a.out, a.opt);
  if (!done.ok()) {
    std::cerr << StatusLine(a.in, done.status());
    return ExitCodeFor(done.status().code());
  }
  if (!a.quiet) {
    std::cout << E(a.out) << ": " << Count(done->tensors, "tensor", "tensors");
    if (done->aliases > 0) std::cout << " (+" << Count(done->aliases, "alias", "aliases") << ")";
    if (sharded) std::cout << " in " << Count(done->shards, "shard", "shards");
    std::cout << ", " << HumanBytes(done->output_bytes) << " (safetensors)\n";
  }
  return kExitConverted;
}

}  // namespace

void AddExportCommand(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* sub = app.add_subcommand(
      "export",
      "write a .safemodel's tensors as a .safetensors file, or a NAME.safemodel.index.json's shards as "
      "safetensors shards plus a NAME.safetensors.index.json (verified first)");
  AddCommonFlags(*sub);
  sub->add_option("FILE", args->in, "the .safemodel (or NAME.safemodel.index.json)")->required()->type_name("");
  sub->add_option("OUT", args->out, "the .safetensors (or NAME.safetensors.index.json) to write")->required()->type_name("");
  sub->add_flag("-f,--force", args->opt.force, "replace an existing OUT (only ever a regular file)");
  sub->add_flag_callback("--no-sync", [a = args.get()] { a->opt.sync = false; },
                         "do not fsync the output");
  sub->add_flag("-q,--quiet", args->quiet, "print nothing on success");
  sub->callback([args] { CommandExitCode() = RunExport(*args); });
}

void AddInspectCommand(CLI::App& app) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* sub = app.add_subcommand("inspect", "describe a .safemodel");
  AddCommonFlags(*sub);
  sub->add_option("FILE", args->path, "the .safemodel")->required()->type_name("");
  sub->add_flag("--json", args->json, "one JSON object (schema_version " +
                                               std::to_string(kInspectSchemaVersion) + ")");
  sub->add_flag("--tensors", args->view.tensors, "only the tensors");
  sub->add_flag("--architecture", args->view.architecture, "only the architecture");
  sub->add_flag("--sha256", args->view.sha256,
                "also the SHA-256 of every tensor's stored bytes (reads them all)");
  sub->callback([args] { CommandExitCode() = RunInspect(*args); });
}

void AddVerifyCommand(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto quiet = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "verify", "check every digest of a .safemodel (or of every shard of a NAME.safemodel.index.json)");
  AddCommonFlags(*sub);
  sub->add_option("FILE", *path, "the .safemodel")->required()->type_name("");
  sub->add_flag("-q,--quiet", *quiet, "print nothing on success");
  sub->callback([path, quiet] { CommandExitCode() = RunVerify(*path, *quiet); });
}

}  // namespace safemodel::cli
