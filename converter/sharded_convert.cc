// ConvertShardedCheckpoint: an HF index and its shards, one conversion per
// shard, then the output index checked against the converted shards.
#include "safemodel/sharded_convert.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "proto/base/byte_reader.h"
#include "proto/base/text.h"
#include "proto/digest.h"
#include "safemodel/reader.h"
#include "safemodel/sharded.h"

namespace safemodel {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexSuffix = ".index.json";

bool EndsWith(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The most a converted index may be: its header holds the weight map and
// metadata re-encoded (~1x the JSON), within the worker's stream limits.
constexpr uint64_t kMaxConvertedIndexBytes = 2 * kMaxHfIndexBytes + (8ull << 20);
// One weight-map entry per tensor: a .safemodel's metadata holds at most
// kMaxValueNodes values, and each entry is one.
constexpr size_t kMaxHfIndexTensors = kMaxValueNodes;

// The .safemodel the worker wrote into `fd`, read back whole.
Result<std::string> ReadBack(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return Status::IoError("cannot stat the converted index");
  if (static_cast<uint64_t>(st.st_size) > kMaxConvertedIndexBytes) {
    return Status::LimitExceeded("the converted index is " + std::to_string(st.st_size) + " bytes, over the limit of " +
                                 std::to_string(kMaxConvertedIndexBytes));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = pread(fd, bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError("cannot read the converted index back");
    off += static_cast<size_t>(n);
  }
  return bytes;
}

// The weight map from the converted index's metadata: produced by the
// child, so every rule the parent relies on is checked again.
Status TakeWeightMap(const Value& metadata, const std::string& index_name, ShardedCheckpointIndex* out) {
  auto bad = [](const std::string& why) { return Status::Malformed("the worker's reading of the index " + why); };
  const Value* wm = metadata.is_map() ? metadata.Find("weight_map") : nullptr;
  if (wm == nullptr || !wm->is_map() || wm->entries().empty()) return bad("has no \"weight_map\" object");
  if (wm->entries().size() > kMaxHfIndexTensors) {
    return Status::LimitExceeded("the checkpoint index maps more than " + std::to_string(kMaxHfIndexTensors) +
                                 " tensors");
  }
  std::set<std::string> shards;
  for (const Value::Entry& e : wm->entries()) {
    if (!e.second.is_string()) return bad("maps the tensor '" + Printable(e.first) + "' to a non-string");
    const std::string& name = e.second.string_value();
    if (!IsPlainFileName(name)) {
      return bad("names the shard '" + Printable(name) + "', not a plain file name beside the index");
    }
    if (name == index_name) return Status::Malformed("the checkpoint index names itself as a shard");
    if (shards.insert(name).second && shards.size() > kMaxShards) {
      return Status::LimitExceeded("the checkpoint index names more than " + std::to_string(kMaxShards) + " shards");
    }
    if (!out->weight_map.emplace(e.first, name).second) {
      return bad("maps the tensor '" + Printable(e.first) + "' twice");
    }
  }
  out->shards.assign(shards.begin(), shards.end());
  if (const Value* md = metadata.Find("metadata"); md != nullptr) out->metadata = *md;
  return Status::Ok();
}

// The HF index converted by the worker (as any input) into an anonymous
// memory file, then opened with the reader.
Result<ShardedCheckpointIndex> ReadIndex(const std::string& path, const ConvertOptions& options,
                                         const ConvertFunction& convert, ConvertReport* report) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return Status::IoError("cannot stat the checkpoint index '" + path + "'");
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("the checkpoint index '" + path + "' is not a regular file");
  const int fd = memfd_create("safemodel-hf-index", MFD_CLOEXEC);
  if (fd < 0) return Status::IoError("cannot create a memory file for the converted index");
  ConvertOptions o = options;
  o.output_fd = fd;
  o.progress = nullptr;
  o.read_checkpoint_index = true;
  // A large model named like an index is refused before a worker starts,
  // and no output can grow the memory file beyond an index's.
  o.max_input_bytes = std::min(o.max_input_bytes, kMaxHfIndexBytes);
  o.max_output_bytes = kMaxConvertedIndexBytes;
  *report = (convert ? convert : ConvertFunction(ConvertFile))(path, path + " (converted in memory)", o);
  Result<std::string> bytes = report->status.ok() ? ReadBack(fd) : Result<std::string>(report->status);
  close(fd);
  const std::string where = "the checkpoint index '" + path + "': ";
  if (!bytes.ok()) return Status(bytes.status().code(), where + bytes.status().message());
  if (report->source_format != "hf_index") {
    return Status::Malformed(where + "not a checkpoint index: the worker read it as '" + report->source_format + "'");
  }
  Result<Model> m = Model::FromBuffer(std::as_bytes(std::span(bytes->data(), bytes->size())));
  if (!m.ok()) return Status::Malformed(where + "the converted index does not open: " + m.status().message());
  if (!m->tensors().empty() || m->provenance().source_format != "hf_index") {
    return Status::Malformed(where + "the converted index is not an index (tensors, or another format)");
  }
  ShardedCheckpointIndex index;
  Status s = TakeWeightMap(m->metadata(), fs::path(path).filename().string(), &index);
  if (!s.ok()) return Status(s.code(), where + s.message());
  return index;
}

std::string DirOf(const std::string& path) {
  const std::string d = fs::path(path).parent_path().string();
  return d.empty() ? "." : d;
}

// Folds one conversion's report (a shard's, the index's) into the unit's;
// `where` prefixes its findings' locations ("shard NAME", "index NAME").
void Fold(const std::string& where, const ConvertReport& r, ConvertReport* unit) {
  for (Finding f : r.findings) {
    f.location = where + (f.location.empty() ? "" : ": " + f.location);
    unit->findings.push_back(std::move(f));
  }
  unit->tensor_count += r.tensor_count;
  unit->tensor_bytes += r.tensor_bytes;
  unit->output_bytes += r.output_bytes;
  unit->worker.cpu_seconds += r.worker.cpu_seconds;
  if (r.worker.max_rss_bytes >= unit->worker.max_rss_bytes) {
    // The largest conversion's peak, with where that figure comes from.
    unit->worker.max_rss_bytes = r.worker.max_rss_bytes;
    unit->worker.max_rss_source = r.worker.max_rss_source;
  }
  unit->worker.kind = r.worker.kind;
  unit->worker.program = r.worker.program;
  if (unit->source_format.empty() && r.source_format != "unknown" && r.source_format != "hf_index") {
    unit->source_format = "hf_sharded/" + r.source_format;
  }
}

// The output index (safemodel/sharded.h), written under a temporary name
// and renamed: it appears whole or not at all.
// `shard_sha256`: each shard output's SHA-256 as its conversion computed it
// (hex; "" where it did not, and the file is then read). `index_sha256`,
// when given, receives the index file's.
Status WriteOutputIndex(const std::string& out_index, const std::string& hf_index,
                        const std::map<std::string, std::string>& weight_map,
                        const std::vector<std::string>& shards,
                        const std::map<std::string, std::string>& shard_sha256, bool sync,
                        std::string* index_sha256) {
  nlohmann::ordered_json j;
  j["format"] = "safemodel.sharded";
  j["version"] = 1;
  Result<std::string> src = Sha256OfFile(hf_index);
  j["source"] = {{"index", fs::path(hf_index).filename().string()}, {"sha256", src.ok() ? *src : ""}};
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  const std::string dir = DirOf(out_index);
  for (const std::string& s : shards) {
    const std::string file = s + ".safemodel";
    auto known = shard_sha256.find(s);
    std::string sha = known != shard_sha256.end() ? known->second : "";
    if (sha.empty()) {
      SAFEMODEL_ASSIGN_OR_RETURN(sha, Sha256OfFile(dir + "/" + file));
    }
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
  if (index_sha256 != nullptr) *index_sha256 = ToHex(Sha256(AsBytes(text)));
  return Status::Ok();
}

// Every shard converted, then checked as one model; the unit's status.
Status ConvertUnit(const std::string& hf_index, const ShardedCheckpointIndex& index, const std::string& out_index,
                   const ConvertOptions& options, const ConvertFunction& convert, ConvertReport* unit,
                   std::vector<std::string>* written) {
  const std::string in_dir = DirOf(hf_index), out_dir = DirOf(out_index);
  std::map<std::string, std::string> shard_sha256;
  for (const std::string& s : index.shards) {
    const std::string out = out_dir + "/" + s + ".safemodel";
    // Each shard's output hashed as it is written: the output index records
    // it, so no shard is read back for it.
    ConvertOptions shard_options = options;
    shard_options.hash_output = true;
    const ConvertReport r = convert(in_dir + "/" + s, out, shard_options);
    Fold("shard " + s, r, unit);
    if (!r.status.ok()) return Status(r.status.code(), "shard '" + s + "': " + r.status.message());
    written->push_back(out);
    shard_sha256[s] = r.output_sha256;
  }
  SAFEMODEL_RETURN_IF_ERROR(WriteOutputIndex(out_index, hf_index, index.weight_map, index.shards, shard_sha256,
                                             options.sync_output,
                                             options.hash_output ? &unit->output_sha256 : nullptr));
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

Result<ShardedCheckpointIndex> ReadShardedCheckpointIndex(const std::string& path, const ConvertOptions& options,
                                                          const ConvertFunction& convert, ConvertReport* report) {
  ConvertReport scratch;
  return ReadIndex(path, options, convert, report != nullptr ? report : &scratch);
}

std::string ShardedOutputIndexName(const std::string& hf_index_path) {
  std::string p = hf_index_path;
  if (EndsWith(p, kIndexSuffix)) p.resize(p.size() - std::string(kIndexSuffix).size());
  return p + ".safemodel" + kIndexSuffix;
}

Result<std::string> ShardedCheckpointSha256(const std::string& hf_index_path, std::vector<std::string> shards) {
  shards.push_back(fs::path(hf_index_path).filename().string());
  std::sort(shards.begin(), shards.end());
  std::string listing;
  for (const std::string& n : shards) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(DirOf(hf_index_path) + "/" + n));
    listing += sha + "  " + n + "\n";
  }
  return ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(listing.data()), listing.size())));
}

ConvertReport ConvertShardedCheckpoint(const std::string& hf_index_path, const std::string& out_index_path,
                                       const ConvertOptions& options, const ConvertFunction& convert_or_null,
                                       const CheckpointIndexReader& read_index) {
  const auto t0 = std::chrono::steady_clock::now();
  const ConvertFunction convert = convert_or_null ? convert_or_null : ConvertFunction(ConvertFile);
  ConvertReport unit;
  unit.input_path = hf_index_path;
  unit.output_path = out_index_path;
  ShardedCheckpointIndexReading reading;
  if (read_index) {
    reading = read_index(hf_index_path);
    // Read earlier: it holds only for the same bytes, a refusal as well
    // (its results line pairs it with the index's SHA-256 as it is now).
    Result<std::string> now = Sha256OfFile(hf_index_path);
    const bool same = now.ok() && *now == reading.report.input_sha256;
    if (!same && (reading.index.ok() || !reading.report.input_sha256.empty())) {
      reading.index = Status::IoError("the checkpoint index '" + hf_index_path +
                                      "' changed after it was read (or cannot be read again)");
    }
  } else {
    reading.index = ReadIndex(hf_index_path, options, convert, &reading.report);
  }
  const ConvertReport& index_report = reading.report;
  Result<ShardedCheckpointIndex>& index = reading.index;
  Fold("index " + fs::path(hf_index_path).filename().string(), index_report, &unit);
  unit.output_bytes = 0;  // the in-memory index is no output
  unit.tensor_count = 0;
  std::vector<std::string> shards = index.ok() ? index->shards : std::vector<std::string>{};
  struct stat st;
  for (const std::string& s : shards) {
    if (stat((DirOf(hf_index_path) + "/" + s).c_str(), &st) == 0) unit.input_bytes += static_cast<uint64_t>(st.st_size);
  }
  if (stat(hf_index_path.c_str(), &st) == 0) unit.input_bytes += static_cast<uint64_t>(st.st_size);
  std::vector<std::string> written;
  unit.status = index.ok() ? ConvertUnit(hf_index_path, *index, out_index_path, options, convert, &unit, &written)
                           : index.status();
  if (!unit.status.ok()) {
    for (const std::string& w : written) unlink(w.c_str());  // never half a unit
    unit.output_bytes = 0;
    unit.tensor_count = 0;
  }
  // An unreadable index's hash covers the index alone.
  Result<std::string> sha = ShardedCheckpointSha256(hf_index_path, shards);
  if (sha.ok()) unit.input_sha256 = *sha;
  if (unit.source_format.empty()) unit.source_format = "hf_sharded";
  unit.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return unit;
}

}  // namespace safemodel
