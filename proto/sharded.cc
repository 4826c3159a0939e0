// ShardedModel: a .safemodel index and its shards as one model. The index
// comes with the shards, from wherever they came from: parsed strictly and
// checked against the shards themselves before anything is returned.
#include "safemodel/sharded.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "proto/digest.h"
#include "proto/strict_json.h"

namespace safemodel {

struct ShardedModel::Impl {
  std::vector<std::string> files;
  std::vector<Model> shards;
  std::map<std::string, size_t, std::less<>> where;  // tensor -> shard index
};

ShardedModel::ShardedModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ShardedModel::ShardedModel(ShardedModel&&) noexcept = default;
ShardedModel& ShardedModel::operator=(ShardedModel&&) noexcept = default;
ShardedModel::~ShardedModel() = default;

namespace {

Status Bad(const std::string& index, const std::string& why) {
  return Status::Malformed("sharded index '" + index + "': " + why);
}

// SHA-256 of a whole file, read through one reused buffer.
Result<std::string> FileSha256(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Status::IoError("cannot open '" + path + "': " + std::strerror(errno));
  constexpr size_t kBuf = 1 << 20;
  std::vector<uint8_t> buf(kBuf);
  auto hasher = MakeHasher(DigestAlgorithm::kSha256);
  for (;;) {
    const ssize_t n = read(fd, buf.data(), kBuf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return Status::IoError("cannot read '" + path + "'");
    }
    if (n == 0) break;
    hasher->Update(ByteView(buf.data(), static_cast<size_t>(n)));
  }
  close(fd);
  return ToHex(hasher->Finish());
}

struct ShardEntry {
  std::string file;
  uint64_t bytes = 0;
  std::string sha256;
};

// The "shards" array: plain names, each once, with size and digest.
Result<std::vector<ShardEntry>> ReadShardList(const nlohmann::json& j, const std::string& index) {
  if (!j.contains("shards") || !j["shards"].is_array() || j["shards"].empty()) {
    return Bad(index, "no \"shards\" array");
  }
  if (j["shards"].size() > kMaxShards) return Bad(index, "more than " + std::to_string(kMaxShards) + " shards");
  std::vector<ShardEntry> out;
  std::set<std::string> seen;
  for (const nlohmann::json& s : j["shards"]) {
    if (!s.is_object() || !s.contains("file") || !s["file"].is_string() || !s.contains("bytes") ||
        !s["bytes"].is_number_unsigned() || !s.contains("sha256") || !s["sha256"].is_string()) {
      return Bad(index, "a shard is not {\"file\", \"bytes\", \"sha256\"}");
    }
    ShardEntry e{s["file"].get<std::string>(), s["bytes"].get<uint64_t>(), s["sha256"].get<std::string>()};
    if (!IsPlainFileName(e.file)) return Bad(index, "the shard name '" + e.file + "' is not a plain file name");
    if (!seen.insert(e.file).second) return Bad(index, "the shard '" + e.file + "' is listed twice");
    out.push_back(std::move(e));
  }
  return out;
}

// Opens one shard and checks it is the file the index recorded.
Result<Model> OpenShard(const std::string& dir, const ShardEntry& e, const std::string& index) {
  const std::string path = (std::filesystem::path(dir) / e.file).string();
  SAFEMODEL_ASSIGN_OR_RETURN(std::string sha, FileSha256(path));
  if (sha != e.sha256) return Bad(index, "the shard '" + e.file + "' is not the file the index recorded (SHA-256)");
  SAFEMODEL_ASSIGN_OR_RETURN(Model m, Model::Open(path));
  if (m.file_size() != e.bytes) return Bad(index, "the shard '" + e.file + "' has another size than recorded");
  return m;
}

}  // namespace

Result<ShardedModel> ShardedModel::Open(const std::string& index_path) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(index_path, kMaxShardedIndexBytes, "the index"));
  SAFEMODEL_ASSIGN_OR_RETURN(nlohmann::json j, ParseStrictJson(text, "sharded index '" + index_path + "'"));
  if (!j.is_object() || j.value("format", nlohmann::json()) != "safemodel.sharded" ||
      j.value("version", nlohmann::json()) != 1) {
    return Bad(index_path, "not a {\"format\": \"safemodel.sharded\", \"version\": 1} object");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<ShardEntry> entries, ReadShardList(j, index_path));
  if (!j.contains("weight_map") || !j["weight_map"].is_object()) return Bad(index_path, "no \"weight_map\" object");
  auto impl = std::make_unique<Impl>();
  std::map<std::string, size_t> shard_of_file;
  const std::string dir = std::filesystem::path(index_path).parent_path().string();
  for (const ShardEntry& e : entries) {
    SAFEMODEL_ASSIGN_OR_RETURN(Model m, OpenShard(dir.empty() ? "." : dir, e, index_path));
    shard_of_file[e.file] = impl->shards.size();
    impl->files.push_back(e.file);
    impl->shards.push_back(std::move(m));
  }
  // Every tensor of every shard is in the weight map, mapped to its shard,
  // and the weight map names nothing else.
  for (size_t i = 0; i < impl->shards.size(); ++i) {
    for (const TensorInfo& t : impl->shards[i].tensors()) {
      if (!impl->where.emplace(t.name, i).second) {
        return Bad(index_path, "the tensor '" + t.name + "' is in two shards");
      }
      const nlohmann::json& wm = j["weight_map"];
      if (!wm.contains(t.name) || !wm[t.name].is_string() || wm[t.name].get<std::string>() != impl->files[i]) {
        return Bad(index_path, "the weight map does not map the tensor '" + t.name + "' to its shard '" +
                                   impl->files[i] + "'");
      }
    }
  }
  if (j["weight_map"].size() != impl->where.size()) {
    return Bad(index_path, "the weight map names tensors that no shard holds");
  }
  return ShardedModel(std::move(impl));
}

size_t ShardedModel::shard_count() const { return impl_->shards.size(); }
const Model& ShardedModel::shard(size_t i) const { return impl_->shards.at(i); }
const std::string& ShardedModel::shard_file(size_t i) const { return impl_->files.at(i); }

std::vector<std::string> ShardedModel::tensor_names() const {
  std::vector<std::string> out;
  out.reserve(impl_->where.size());
  for (const auto& [name, i] : impl_->where) out.push_back(name);
  return out;
}

const TensorInfo* ShardedModel::Find(std::string_view name, const Model** shard) const {
  auto it = impl_->where.find(name);
  if (it == impl_->where.end()) return nullptr;
  const Model& m = impl_->shards[it->second];
  if (shard != nullptr) *shard = &m;
  return m.Find(name);
}

std::span<const std::byte> ShardedModel::Data(std::string_view name) const {
  const Model* m = nullptr;
  const TensorInfo* t = Find(name, &m);
  return t == nullptr ? std::span<const std::byte>() : m->Data(*t);
}

Status ShardedModel::Verify() const {
  for (size_t i = 0; i < impl_->shards.size(); ++i) {
    Status s = impl_->shards[i].Verify();
    if (!s.ok()) return Status(s.code(), "shard '" + impl_->files[i] + "': " + s.message());
  }
  return Status::Ok();
}

}  // namespace safemodel
