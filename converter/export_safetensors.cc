#include "safemodel/export_safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "converter/output_file.h"
#include "safemodel/reader.h"
#include "safemodel/safetensors.h"
#include "safemodel/sharded.h"

namespace safemodel {

namespace {

Status WriteFully(int fd, std::span<const std::byte> bytes) {
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::IoError(std::string("writing the safetensors output: ") +
                             (n < 0 ? std::strerror(errno) : "no progress"));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status StatPath(const std::string& path, struct stat* st) {
  if (::stat(path.c_str(), st) != 0) {
    return Status::IoError("cannot stat '" + path + "': " + std::strerror(errno));
  }
  return Status::Ok();
}

// Writes the planned export of `model` to `out` (not yet committed); returns
// its size.
Result<uint64_t> WritePlanned(const Model& model, const SafetensorsPlan& plan, OutputFile& out) {
  const uint64_t size = plan.header.size() + plan.buffer_bytes;
  SAFEMODEL_RETURN_IF_ERROR(ReserveOutputSpace(out.fd(), size, 0));
  // ReserveOutputSpace may have extended the file; write from the start.
  if (::lseek(out.fd(), 0, SEEK_SET) != 0) {
    return Status::IoError(std::string("seeking the safetensors output: ") + std::strerror(errno));
  }
  uint64_t written = 0;
  SAFEMODEL_RETURN_IF_ERROR(WriteSafetensors(model, [&](std::span<const std::byte> bytes) {
    written += bytes.size();
    return WriteFully(out.fd(), bytes);
  }));
  if (written != size) {
    return Status::Internal("safetensors export wrote " + std::to_string(written) +
                            " bytes, planned " + std::to_string(size));
  }
  return size;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  return path.substr(0, slash + 1);  // keeps the slash ("/" for a file in the root)
}

// Removes the shards a failed sharded export committed where no file was
// before (a shard that replaced a file under force cannot be put back, and is
// not deleted either).
struct CommittedShards {
  std::vector<std::string> new_paths;
  bool keep = false;
  ~CommittedShards() {
    if (keep) return;
    for (const std::string& p : new_paths) ::unlink(p.c_str());
  }
};

}  // namespace

Result<ExportSummary> ExportSafetensorsFile(const std::string& model_path,
                                            const std::string& out_path,
                                            const ExportOptions& options) {
  SAFEMODEL_ASSIGN_OR_RETURN(Model model, Model::Open(model_path));
  // Planned before the output exists: an inexpressible dtype leaves nothing.
  SAFEMODEL_ASSIGN_OR_RETURN(SafetensorsPlan plan, PlanSafetensors(model));
  struct stat input {};
  SAFEMODEL_RETURN_IF_ERROR(StatPath(model_path, &input));
  SAFEMODEL_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> out,
                             OutputFile::OpenPath(out_path, options.force, input));
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t size, WritePlanned(model, plan, *out));
  SAFEMODEL_RETURN_IF_ERROR(out->Commit(size, options.sync));
  return ExportSummary{plan.order.size(), plan.aliases, size, 0};
}

std::string SafetensorsShardName(const std::string& shard_file) {
  std::string name = shard_file;
  if (name.ends_with(".safemodel")) name.resize(name.size() - std::string_view(".safemodel").size());
  for (std::string_view suffix : {".safetensors", ".bin"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) {
      name.resize(name.size() - suffix.size());
      break;
    }
  }
  return name + ".safetensors";
}

Result<ExportSummary> ExportShardedSafetensors(const std::string& index_path,
                                               const std::string& out_index_path,
                                               const ExportOptions& options) {
  constexpr std::string_view kOutSuffix = ".safetensors.index.json";
  const std::string out_name = out_index_path.substr(DirectoryOf(out_index_path).size());
  if (out_name.size() <= kOutSuffix.size() || !out_name.ends_with(kOutSuffix)) {
    return Status::InvalidArgument("a sharded export's OUT must be NAME" + std::string(kOutSuffix) +
                                   ": '" + out_index_path + "'");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(ShardedModel model, ShardedModel::Open(index_path));
  // Every shard planned and named before any output exists.
  std::vector<SafetensorsPlan> plans;
  std::vector<std::string> names;
  std::set<std::string> taken;
  for (size_t i = 0; i < model.shard_count(); ++i) {
    SAFEMODEL_ASSIGN_OR_RETURN(SafetensorsPlan plan, PlanSafetensors(model.shard(i)));
    plans.push_back(std::move(plan));
    names.push_back(SafetensorsShardName(model.shard_file(i)));
    if (!taken.insert(names.back()).second) {
      return Status::InvalidArgument("two shards would both be exported as '" + names.back() + "'");
    }
  }
  struct stat index_stat {};
  SAFEMODEL_RETURN_IF_ERROR(StatPath(index_path, &index_stat));
  // OUT's rules are checked before the first shard is written.
  SAFEMODEL_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> index_out,
                             OutputFile::OpenPath(out_index_path, options.force, index_stat));
  const std::string in_dir = DirectoryOf(index_path), out_dir = DirectoryOf(out_index_path);
  ExportSummary summary;
  nlohmann::json weight_map = nlohmann::json::object();  // std::map: sorted keys
  uint64_t total_size = 0;
  // Every shard is written to its temporary before any is committed: a shard
  // that fails (its rules, a tensor, the disk) leaves OUT's directory as it
  // was, including the files --force would have replaced.
  std::vector<std::unique_ptr<OutputFile>> outs;
  std::vector<uint64_t> sizes;
  std::vector<bool> existed;
  for (size_t i = 0; i < plans.size(); ++i) {
    struct stat input {};
    SAFEMODEL_RETURN_IF_ERROR(StatPath(in_dir + model.shard_file(i), &input));
    const std::string path = out_dir + names[i];
    struct stat old {};
    existed.push_back(::lstat(path.c_str(), &old) == 0);
    Result<std::unique_ptr<OutputFile>> opened = OutputFile::OpenPath(path, options.force, input);
    if (opened.status().code() == StatusCode::kLimitExceeded) {
      return Status::LimitExceeded(opened.status().message() + " (the export holds all " +
                                   std::to_string(plans.size()) +
                                   " shards' temporaries, two descriptors each, until every shard "
                                   "is written: raise RLIMIT_NOFILE with `ulimit -n`)");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(std::unique_ptr<OutputFile> out, std::move(opened));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t size, WritePlanned(model.shard(i), plans[i], *out));
    outs.push_back(std::move(out));
    sizes.push_back(size);
    for (const TensorInfo* t : plans[i].order) {
      weight_map[t->name] = names[i];
      total_size += t->nbytes;
    }
    summary.tensors += plans[i].order.size();
    summary.aliases += plans[i].aliases;
    summary.output_bytes += size;
  }
  nlohmann::json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  std::string text;
  try {  // nlohmann throws on a name that is not UTF-8; no exception leaves this module
    text = index.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    return Status::Malformed(std::string("a tensor name cannot be written to the index: ") + e.what());
  }
  SAFEMODEL_RETURN_IF_ERROR(
      WriteFully(index_out->fd(), std::as_bytes(std::span(text.data(), text.size()))));
  // Commits last: only a failing rename or fsync can leave some shards
  // committed, and then those that are new are removed.
  CommittedShards committed;
  for (size_t i = 0; i < outs.size(); ++i) {
    SAFEMODEL_RETURN_IF_ERROR(outs[i]->Commit(sizes[i], options.sync));
    if (!existed[i]) committed.new_paths.push_back(out_dir + names[i]);
  }
  SAFEMODEL_RETURN_IF_ERROR(index_out->Commit(text.size(), options.sync));
  committed.keep = true;
  summary.output_bytes += text.size();
  summary.shards = plans.size();
  return summary;
}

}  // namespace safemodel
