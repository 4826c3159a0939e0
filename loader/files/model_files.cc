#include "loader/files/model_files.h"

#include <algorithm>
#include <set>

namespace safemodel::loader {

namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool Digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// `<stem>.data-NNNNN-of-MMMMM`, the name TensorFlow gives a bundle's data files.
bool IsDataFileOf(std::string_view name, std::string_view stem) {
  constexpr std::string_view kMid = ".data-";
  if (name.size() != stem.size() + kMid.size() + 14 || name.substr(0, stem.size()) != stem ||
      name.substr(stem.size(), kMid.size()) != kMid) {
    return false;
  }
  std::string_view tail = name.substr(stem.size() + kMid.size());
  return Digits(tail.substr(0, 5)) && tail.substr(5, 4) == "-of-" && Digits(tail.substr(9, 5));
}

// `<base>_NNNNN.weights.h5`, the name Keras gives the shards of `<base>.weights.json`.
bool IsShardOf(std::string_view name, std::string_view base) {
  constexpr std::string_view kTail = ".weights.h5";
  if (name.size() <= base.size() + 1 + kTail.size() || name.substr(0, base.size()) != base ||
      name[base.size()] != '_' || !EndsWith(name, kTail)) {
    return false;
  }
  return Digits(name.substr(base.size() + 1, name.size() - base.size() - 1 - kTail.size()));
}

std::string_view Dir(std::string_view name) {
  const size_t slash = name.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : name.substr(0, slash);
}

// The data files of bundle `stem` among `files` (names in one directory).
void AddBundle(std::string_view stem, const std::set<std::string>& files, FilePlan* plan) {
  plan->open.push_back({FileRole::kBundleIndex, std::string(stem) + ".index"});
  for (const std::string& f : files) {
    if (IsDataFileOf(f, stem)) plan->open.push_back({FileRole::kBundleData, f});
  }
}

void AddShards(std::string_view json, const std::set<std::string>& files, FilePlan* plan) {
  plan->open.push_back({FileRole::kWeightsJson, std::string(json)});
  const std::string_view base = json.substr(0, json.size() - std::string_view(".weights.json").size());
  for (const std::string& f : files) {
    if (IsShardOf(f, base)) plan->open.push_back({FileRole::kWeightsShard, f});
  }
}

Status Finish(FilePlan* plan, const std::set<std::string>& all) {
  if (plan->open.size() > kMaxModelFiles) {
    return Status::LimitExceeded("the model is made of " + std::to_string(plan->open.size()) +
                                 " files, more than " + std::to_string(kMaxModelFiles));
  }
  std::set<std::string> opened;
  for (const PlannedFile& f : plan->open) opened.insert(f.name);
  for (const std::string& name : all) {
    if (opened.count(name) == 0) plan->listed.push_back(name);
  }
  return Status::Ok();
}

}  // namespace

std::string_view FileRoleName(FileRole role) {
  switch (role) {
    case FileRole::kSavedModel: return "saved_model";
    case FileRole::kKerasMetadata: return "keras_metadata";
    case FileRole::kBundleIndex: return "bundle_index";
    case FileRole::kBundleData: return "bundle_data";
    case FileRole::kCheckpointState: return "checkpoint_state";
    case FileRole::kWeightsJson: return "weights_json";
    case FileRole::kWeightsShard: return "weights_shard";
  }
  return "unknown";
}

bool IsValidFileRole(uint32_t raw) { return raw >= 1 && raw <= 7; }

bool IsPlainRelativeName(std::string_view name) {
  if (name.empty() || name.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

Result<FilePlan> PlanDirectory(const std::vector<ListedEntry>& listing) {
  if (listing.size() > kMaxListedEntries) {
    return Status::LimitExceeded("the input directory has more than " +
                                 std::to_string(kMaxListedEntries) + " entries");
  }
  std::set<std::string> files;      // regular files, by relative name
  std::set<std::string> top_files;  // those directly in the input directory
  for (const ListedEntry& e : listing) {
    if (!IsPlainRelativeName(e.name)) {
      return Status::InvalidArgument("directory entry '" + e.name +
                                     "' is not a plain relative name [input.name]");
    }
    if (e.type == ListedEntry::Type::kSymlink) {
      return Status::InvalidArgument("'" + e.name +
                                     "' in the input directory is a symbolic link; safemodel "
                                     "opens nothing through links [input.symlink]");
    }
    if (e.type == ListedEntry::Type::kOther) {
      return Status::InvalidArgument("'" + e.name +
                                     "' in the input directory is not a regular file or "
                                     "directory [input.not_regular]");
    }
    if (e.type != ListedEntry::Type::kRegular) continue;
    files.insert(e.name);
    if (Dir(e.name).empty()) top_files.insert(e.name);
  }
  FilePlan plan;
  if (files.count("saved_model.pb")) {
    plan.kind = ModelKind::kSavedModel;
    plan.open.push_back({FileRole::kSavedModel, "saved_model.pb"});
    if (files.count("keras_metadata.pb")) {
      plan.open.push_back({FileRole::kKerasMetadata, "keras_metadata.pb"});
    }
    if (files.count("variables/variables.index")) AddBundle("variables/variables", files, &plan);
  } else if (files.count("saved_model.pbtxt") || files.count("saved_model.cpb")) {
    return Status::Unsupported(
        "a SavedModel in text (saved_model.pbtxt) or chunked (saved_model.cpb) form; only "
        "saved_model.pb is read [tf.saved_model]");
  } else if (top_files.count("checkpoint")) {
    plan.kind = ModelKind::kCheckpoint;
    plan.open.push_back({FileRole::kCheckpointState, "checkpoint"});
    for (const std::string& f : top_files) {
      if (EndsWith(f, ".index")) AddBundle(std::string_view(f).substr(0, f.size() - 6), top_files, &plan);
    }
  } else {
    std::vector<std::string> indexes, jsons;
    for (const std::string& f : top_files) {
      if (EndsWith(f, ".index")) indexes.push_back(f);
      if (EndsWith(f, ".weights.json")) jsons.push_back(f);
    }
    if (indexes.size() == 1 && jsons.empty()) {
      plan.kind = ModelKind::kCheckpoint;
      AddBundle(std::string_view(indexes[0]).substr(0, indexes[0].size() - 6), top_files, &plan);
    } else if (jsons.size() == 1 && indexes.empty()) {
      plan.kind = ModelKind::kShardedWeights;
      AddShards(jsons[0], top_files, &plan);
    } else {
      return Status::Unsupported(
          "the directory is not a SavedModel (saved_model.pb), a checkpoint (a `checkpoint` "
          "file or exactly one *.index) or a sharded Keras weight store (exactly one "
          "*.weights.json)");
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(Finish(&plan, files));
  return plan;
}

Result<std::optional<FilePlan>> PlanFile(std::string_view name,
                                         const std::vector<ListedEntry>& siblings) {
  std::set<std::string> files;
  for (const ListedEntry& e : siblings) {
    if (e.type == ListedEntry::Type::kRegular && e.name.find('/') == std::string::npos) {
      files.insert(e.name);
    }
  }
  FilePlan plan;
  std::string key(name);
  if (EndsWith(name, ".index")) {
    plan.kind = ModelKind::kCheckpoint;
    AddBundle(name.substr(0, name.size() - 6), files, &plan);
  } else if (EndsWith(name, ".weights.json")) {
    plan.kind = ModelKind::kShardedWeights;
    AddShards(name, files, &plan);
  } else if (files.count(key) == 0 && files.count(key + ".index")) {
    plan.kind = ModelKind::kCheckpoint;
    AddBundle(name, files, &plan);
  } else {
    return std::optional<FilePlan>();
  }
  // Siblings that are not part of the model are not reported: a file input
  // names its model, and the rest of its directory is not the input.
  if (plan.open.size() > kMaxModelFiles) {
    return Status::LimitExceeded("the model is made of more than " +
                                 std::to_string(kMaxModelFiles) + " files");
  }
  return std::optional<FilePlan>(std::move(plan));
}

}  // namespace safemodel::loader
