#include "converter/cli/batch_inputs.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "safemodel/sharded_convert.h"

namespace safemodel::cli {

namespace fs = std::filesystem;

namespace {

std::string Real(const std::string& p) {
  std::error_code ec;
  fs::path r = fs::weakly_canonical(fs::absolute(p, ec), ec);
  return ec ? p : r.string();
}

bool IsSavedModelDir(const fs::path& dir) {
  struct stat st;
  return lstat((dir / "saved_model.pb").c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Sorted by id, the files a sharded checkpoint's index names taken out:
// they are converted with it, as one unit. An index that cannot be read
// stays an input of its own (its conversion says why) and claims nothing.
std::vector<BatchInput> GroupUnits(std::vector<BatchInput> all, const ShardLister& shards_of) {
  std::set<std::string> claimed;
  for (const BatchInput& in : all) {
    if (in.symlink || !shards_of || !IsShardedCheckpointIndex(in.path)) continue;
    Result<std::vector<std::string>> shards = shards_of(in.path);
    if (!shards.ok()) continue;
    const std::string dir = fs::path(in.id).parent_path().generic_string();
    for (const std::string& s : *shards) claimed.insert(dir.empty() ? s : dir + "/" + s);
  }
  std::vector<BatchInput> out;
  for (BatchInput& in : all) {
    if (claimed.count(in.id) == 0) out.push_back(std::move(in));
  }
  std::sort(out.begin(), out.end(), [](const BatchInput& a, const BatchInput& b) { return a.id < b.id; });
  return out;
}

}  // namespace

// Iterative (a stack of directories), never following a link: lstat on
// every entry, and directory_iterator does not follow the ones it lists.
Result<std::vector<BatchInput>> ListTree(const std::string& root, const std::vector<std::string>& exclude,
                                         const ShardLister& shards_of) {
  std::set<std::string> excluded;
  for (const std::string& e : exclude) excluded.insert(Real(e));
  struct stat st;
  if (lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("'" + root + "' is not a directory");
  }
  std::vector<BatchInput> out;
  std::vector<std::pair<fs::path, size_t>> stack = {{fs::path(root), 0}};
  while (!stack.empty()) {
    auto [dir, depth] = stack.back();
    stack.pop_back();
    if (depth > kMaxListedDepth) {
      return Status::LimitExceeded("'" + dir.string() + "' nests deeper than " +
                                   std::to_string(kMaxListedDepth) + " directories");
    }
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const fs::path p = it->path();
      if (excluded.count(Real(p.string())) > 0) continue;
      if (lstat(p.c_str(), &st) != 0) return Status::IoError("cannot stat '" + p.string() + "'");
      const std::string id = p.lexically_relative(root).generic_string();
      if (S_ISLNK(st.st_mode)) {
        out.push_back({id, p.string(), true});
      } else if (S_ISDIR(st.st_mode) && !IsSavedModelDir(p)) {
        stack.emplace_back(p, depth + 1);
      } else {
        out.push_back({id, p.string(), false});
      }
    }
    if (ec) return Status::IoError("cannot list '" + dir.string() + "': " + ec.message());
  }
  return GroupUnits(std::move(out), shards_of);
}

struct CheckpointIndexReadings::State {
  ConvertOptions options;
  ConvertFunction convert;
  std::mutex mu;
  struct Entry {
    Result<std::vector<std::string>> shards = Status::Internal("not read");
    std::optional<ShardedCheckpointIndexReading> reading;  // until handed over
  };
  std::map<std::string, Entry> entries;

  // The entry of `path`, read now if it was not (under mu).
  Entry& Read(const std::string& path) {
    auto it = entries.find(path);
    if (it != entries.end()) return it->second;
    ShardedCheckpointIndexReading r;
    r.index = ReadShardedCheckpointIndex(path, options, convert, &r.report);
    Entry e;
    e.shards = r.index.ok() ? Result<std::vector<std::string>>(r.index->shards)
                            : Result<std::vector<std::string>>(r.index.status());
    e.reading = std::move(r);
    return entries.emplace(path, std::move(e)).first->second;
  }
};

CheckpointIndexReadings::CheckpointIndexReadings(ConvertOptions options, ConvertFunction convert)
    : state_(std::make_shared<State>()) {
  options.progress = nullptr;
  state_->options = std::move(options);
  state_->convert = convert ? std::move(convert) : ConvertFunction(ConvertFile);
}

ShardLister CheckpointIndexReadings::Lister() const {
  return [state = state_](const std::string& path) -> Result<std::vector<std::string>> {
    std::lock_guard<std::mutex> lock(state->mu);
    return state->Read(path).shards;
  };
}

CheckpointIndexReader CheckpointIndexReadings::Reader() const {
  return [state = state_](const std::string& path) {
    std::unique_lock<std::mutex> lock(state->mu);
    auto it = state->entries.find(path);
    if (it != state->entries.end() && it->second.reading.has_value()) {
      ShardedCheckpointIndexReading r = std::move(*it->second.reading);
      it->second.reading.reset();
      return r;
    }
    lock.unlock();  // a new reading runs a worker: other units go on meanwhile
    ShardedCheckpointIndexReading r;
    r.index = ReadShardedCheckpointIndex(path, state->options, state->convert, &r.report);
    return r;
  };
}

void CheckpointIndexReadings::Forget(const std::string& index_path) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->entries.find(index_path);
  if (it != state_->entries.end()) it->second.reading.reset();
}

bool IsCleanId(const std::string& id) {
  if (id.empty() || id[0] == '/' || id.find('\0') != std::string::npos) return false;
  size_t start = 0;
  for (;;) {
    const size_t slash = id.find('/', start);
    const std::string part = id.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string::npos) return true;
    start = slash + 1;
  }
}

Result<std::vector<BatchInput>> ReadManifest(const std::string& manifest_path) {
  struct stat st;
  if (stat(manifest_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("the manifest '" + manifest_path + "' is not a readable file");
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxManifestBytes) {
    return Status::LimitExceeded("the manifest is larger than " + std::to_string(kMaxManifestBytes) + " bytes");
  }
  std::ifstream in(manifest_path);
  if (!in) return Status::IoError("cannot read the manifest '" + manifest_path + "'");
  const fs::path base = fs::path(manifest_path).parent_path();
  std::vector<BatchInput> out;
  std::set<std::string> ids;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    const std::string where = "manifest line " + std::to_string(n);
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line.size() > kMaxManifestLineBytes) return Status::InvalidArgument(where + " is too long");
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("id") || !j.contains("path") || !j["id"].is_string() ||
        !j["path"].is_string()) {
      return Status::InvalidArgument(where + " is not an object {\"id\": string, \"path\": string}");
    }
    BatchInput item;
    item.id = j["id"].get<std::string>();
    const std::string path = j["path"].get<std::string>();
    if (!IsCleanId(item.id)) {
      return Status::InvalidArgument(where + ": the id '" + item.id +
                                     "' is not a clean relative path (it names the output)");
    }
    if (!ids.insert(item.id).second) return Status::InvalidArgument(where + ": the id '" + item.id + "' repeats");
    if (path.empty()) return Status::InvalidArgument(where + ": empty path");
    item.path = path[0] == '/' || base.empty() ? path : (base / path).string();
    out.push_back(std::move(item));
  }
  if (in.bad()) return Status::IoError("reading the manifest '" + manifest_path + "' failed");
  std::sort(out.begin(), out.end(), [](const BatchInput& a, const BatchInput& b) { return a.id < b.id; });
  return out;
}

uint64_t ShardOf(const std::string& id, uint64_t count) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a offset basis (0xcbf29ce484222325)
  for (char c : id) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;  // FNV prime
  }
  return count == 0 ? 0 : h % count;
}

bool ParseShard(const std::string& text, uint64_t* index, uint64_t* count) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= text.size()) return false;
  auto num = [](const std::string& s, uint64_t* v) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *v = std::stoull(s);
    return true;
  };
  return num(text.substr(0, slash), index) && num(text.substr(slash + 1), count) && *count > 0 &&
         *index < *count;
}

}  // namespace safemodel::cli
