// ConvertShardedCheckpoint: an HF index and its shards, one conversion per
// shard, then the output index checked against the converted shards.
#include "safemodel/sharded_convert.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "proto/digest.h"
#include "proto/strict_json.h"
#include "safemodel/sharded.h"

namespace safemodel {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexSuffix = ".index.json";

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The weight map of an HF index, read strictly (see the header).
Result<std::map<std::string, std::string>> ReadWeightMap(const std::string& path) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxHfIndexBytes, "the checkpoint index"));
  SAFEMODEL_ASSIGN_OR_RETURN(nlohmann::json j, ParseStrictJson(text, "the checkpoint index '" + path + "'"));
  auto bad = [&](const std::string& why) { return Status::Malformed("checkpoint index '" + path + "': " + why); };
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object() || j["weight_map"].empty()) {
    return bad("no \"weight_map\" object");
  }
  std::map<std::string, std::string> out;
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : j["weight_map"].items()) {
    if (!shard.is_string()) return bad("the tensor '" + tensor + "' maps to something other than a file name");
    const std::string name = shard.get<std::string>();
    if (!IsPlainFileName(name)) return bad("the shard name '" + name + "' is not a plain file name beside the index");
    if (name == fs::path(path).filename().string()) return bad("the index names itself as a shard");
    shards.insert(name);
    if (shards.size() > kMaxShards) return bad("more than " + std::to_string(kMaxShards) + " shards");
    out.emplace(tensor, name);
  }
  return out;
}

std::string DirOf(const std::string& path) {
  const std::string d = fs::path(path).parent_path().string();
  return d.empty() ? "." : d;
}

// Folds one shard's report into the unit's.
void Fold(const std::string& shard, const ConvertReport& r, ConvertReport* unit) {
  for (Finding f : r.findings) {
    f.location = "shard " + shard + (f.location.empty() ? "" : ": " + f.location);
    unit->findings.push_back(std::move(f));
  }
  unit->tensor_count += r.tensor_count;
  unit->tensor_bytes += r.tensor_bytes;
  unit->output_bytes += r.output_bytes;
  unit->worker.cpu_seconds += r.worker.cpu_seconds;
  unit->worker.max_rss_bytes = std::max(unit->worker.max_rss_bytes, r.worker.max_rss_bytes);
  unit->worker.kind = r.worker.kind;
  unit->worker.program = r.worker.program;
  if (unit->source_format.empty() && r.source_format != "unknown") {
    unit->source_format = "hf_sharded/" + r.source_format;
  }
}

// The output index (safemodel/sharded.h), written under a temporary name
// and renamed: it appears whole or not at all.
Status WriteOutputIndex(const std::string& out_index, const std::string& hf_index,
                        const std::map<std::string, std::string>& weight_map,
                        const std::vector<std::string>& shards, bool sync) {
  nlohmann::ordered_json j;
  j["format"] = "safemodel.sharded";
  j["version"] = 1;
  Result<std::string> src = Sha256OfFile(hf_index);
  j["source"] = {{"index", fs::path(hf_index).filename().string()}, {"sha256", src.ok() ? *src : ""}};
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  const std::string dir = DirOf(out_index);
  for (const std::string& s : shards) {
    const std::string file = s + ".safemodel";
    SAFEMODEL_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(dir + "/" + file));
    SAFEMODEL_ASSIGN_OR_RETURN(Model m, Model::Open(dir + "/" + file));
    list.push_back({{"file", file}, {"bytes", m.file_size()}, {"sha256", sha}, {"tensors", m.tensors().size()}});
  }
  j["shards"] = std::move(list);
  nlohmann::ordered_json wm = nlohmann::ordered_json::object();
  for (const auto& [tensor, shard] : weight_map) wm[tensor] = shard + ".safemodel";
  j["weight_map"] = std::move(wm);
  const std::string text = j.dump(2) + "\n";
  const std::string tmp = out_index + ".tmp-" + std::to_string(getpid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd < 0) return Status::IoError("cannot create '" + tmp + "'");
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && (!sync || fsync(fd) == 0);
  close(fd);
  if (!ok || rename(tmp.c_str(), out_index.c_str()) != 0) {
    unlink(tmp.c_str());
    return Status::IoError("cannot write the output index '" + out_index + "'");
  }
  return Status::Ok();
}

// Every shard converted, then checked as one model; the unit's status.
Status ConvertUnit(const std::string& hf_index, const std::string& out_index, const ConvertOptions& options,
                   const ConvertFunction& convert, ConvertReport* unit, std::vector<std::string>* written) {
  SAFEMODEL_ASSIGN_OR_RETURN(auto weight_map, ReadWeightMap(hf_index));
  std::set<std::string> shard_set;
  for (const auto& [tensor, shard] : weight_map) shard_set.insert(shard);
  const std::vector<std::string> shards(shard_set.begin(), shard_set.end());
  const std::string in_dir = DirOf(hf_index), out_dir = DirOf(out_index);
  for (const std::string& s : shards) {
    const std::string out = out_dir + "/" + s + ".safemodel";
    const ConvertReport r = convert(in_dir + "/" + s, out, options);
    Fold(s, r, unit);
    if (!r.status.ok()) return Status(r.status.code(), "shard '" + s + "': " + r.status.message());
    written->push_back(out);
  }
  SAFEMODEL_RETURN_IF_ERROR(WriteOutputIndex(out_index, hf_index, weight_map, shards, options.sync_output));
  written->push_back(out_index);
  // The converted shards hold exactly the tensors the weight map gives them.
  Result<ShardedModel> opened = ShardedModel::Open(out_index);
  if (!opened.ok()) {
    return Status::Malformed("the converted shards do not match the checkpoint index: " + opened.status().message());
  }
  return Status::Ok();
}

}  // namespace

bool IsShardedCheckpointIndex(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return EndsWith(name, ".bin.index.json") || EndsWith(name, ".safetensors.index.json");
}

Result<std::vector<std::string>> ReadShardedCheckpointIndex(const std::string& path) {
  SAFEMODEL_ASSIGN_OR_RETURN(auto weight_map, ReadWeightMap(path));
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map) shards.insert(shard);
  return std::vector<std::string>(shards.begin(), shards.end());
}

std::string ShardedOutputIndexName(const std::string& hf_index_path) {
  std::string p = hf_index_path;
  if (EndsWith(p, kIndexSuffix)) p.resize(p.size() - std::string(kIndexSuffix).size());
  return p + ".safemodel" + kIndexSuffix;
}

Result<std::string> ShardedCheckpointSha256(const std::string& hf_index_path) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<std::string> names, ReadShardedCheckpointIndex(hf_index_path));
  names.push_back(fs::path(hf_index_path).filename().string());
  std::sort(names.begin(), names.end());
  std::string listing;
  for (const std::string& n : names) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(DirOf(hf_index_path) + "/" + n));
    listing += sha + "  " + n + "\n";
  }
  return ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(listing.data()), listing.size())));
}

ConvertReport ConvertShardedCheckpoint(const std::string& hf_index_path, const std::string& out_index_path,
                                       const ConvertOptions& options, const ConvertFunction& convert) {
  const auto t0 = std::chrono::steady_clock::now();
  ConvertReport unit;
  unit.input_path = hf_index_path;
  unit.output_path = out_index_path;
  Result<std::vector<std::string>> shards = ReadShardedCheckpointIndex(hf_index_path);
  if (shards.ok()) {
    struct stat st;
    for (const std::string& s : *shards) {
      if (stat((DirOf(hf_index_path) + "/" + s).c_str(), &st) == 0) unit.input_bytes += static_cast<uint64_t>(st.st_size);
    }
  }
  struct stat ist;
  if (stat(hf_index_path.c_str(), &ist) == 0) unit.input_bytes += static_cast<uint64_t>(ist.st_size);
  std::vector<std::string> written;
  unit.status = ConvertUnit(hf_index_path, out_index_path, options, convert ? convert : ConvertFunction(ConvertFile),
                            &unit, &written);
  if (!unit.status.ok()) {
    for (const std::string& w : written) unlink(w.c_str());  // never half a unit
    unit.output_bytes = 0;
    unit.tensor_count = 0;
  }
  Result<std::string> sha = ShardedCheckpointSha256(hf_index_path);
  if (sha.ok()) unit.input_sha256 = *sha;
  if (unit.source_format.empty()) unit.source_format = "hf_sharded";
  unit.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return unit;
}

}  // namespace safemodel
