#include "loader/files/model_files.h"

#include <algorithm>
#include <functional>
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

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// Whether a directory of `kind` may hold `name` beside the files it opens.
// Only a SavedModel has such entries: TensorFlow's assets (never read by
// us, reported by name), its fingerprint, and the variables/ directory.
// Anything else is a file this rule does not know the meaning of.
bool MayStandBeside(ModelKind kind, const std::string& name, bool is_directory) {
  if (kind != ModelKind::kSavedModel) return false;
  if (name == "assets" || name == "assets.extra" || StartsWith(name, "assets/") ||
      StartsWith(name, "assets.extra/")) {
    return true;
  }
  return is_directory ? name == "variables" : name == "fingerprint.pb";
}

const char* KnownNames(ModelKind kind) {
  switch (kind) {
    case ModelKind::kSavedModel:
      return "saved_model.pb, keras_metadata.pb, fingerprint.pb, variables/variables.index, "
             "variables/variables.data-NNNNN-of-MMMMM, assets/, assets.extra/";
    case ModelKind::kCheckpoint:
      return "checkpoint, <prefix>.index, <prefix>.data-NNNNN-of-MMMMM";
    case ModelKind::kShardedWeights:
      return "<base>.weights.json, <base>_NNNNN.weights.h5";
  }
  return "";
}

// Every regular file not opened must be one the kind allows beside its
// files (then it is listed), and so must every directory.
Status Finish(FilePlan* plan, const std::set<std::string>& all,
              const std::set<std::string>& directories) {
  if (plan->open.size() > kMaxModelFiles) {
    return Status::LimitExceeded("the model is made of " + std::to_string(plan->open.size()) +
                                 " files, more than " + std::to_string(kMaxModelFiles) +
                                 " [input.too_many_files]");
  }
  std::set<std::string> opened;
  for (const PlannedFile& f : plan->open) opened.insert(f.name);
  auto unknown = [&](const std::string& name, const char* what) {
    return Status::Unsupported("'" + name + "' in the input directory is " + what +
                               " that is not part of a " + std::string(ModelKindName(plan->kind)) +
                               " (known names: " + KnownNames(plan->kind) +
                               "); remove it, or name the model's own file as the input "
                               "[input.unknown_file]");
  };
  for (const std::string& name : directories) {
    if (!MayStandBeside(plan->kind, name, true)) return unknown(name, "a directory");
  }
  for (const std::string& name : all) {
    if (opened.count(name) != 0) continue;
    if (!MayStandBeside(plan->kind, name, false)) return unknown(name, "a file");
    plan->listed.push_back(name);
  }
  return Status::Ok();
}

}  // namespace

std::string_view ModelKindName(ModelKind kind) {
  switch (kind) {
    case ModelKind::kSavedModel: return "SavedModel";
    case ModelKind::kCheckpoint: return "TF checkpoint";
    case ModelKind::kShardedWeights: return "sharded Keras weight store";
  }
  return "model";
}

bool IsValidModelKind(uint32_t raw) { return raw >= 1 && raw <= 3; }

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
                                 std::to_string(kMaxListedEntries) + " entries [input.too_many_files]");
  }
  std::set<std::string> files;        // regular files, by relative name
  std::set<std::string> top_files;    // those directly in the input directory
  std::set<std::string> directories;  // subdirectories, by relative name
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
    if (e.type == ListedEntry::Type::kDirectory) {
      directories.insert(e.name);
      continue;
    }
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
  SAFEMODEL_RETURN_IF_ERROR(Finish(&plan, files, directories));
  return plan;
}

Result<std::optional<FilePlan>> PlanFile(std::string_view name,
                                         const std::vector<ListedEntry>& siblings) {
  if (siblings.size() > kMaxListedEntries) {
    return Status::LimitExceeded("the input's directory has more than " +
                                 std::to_string(kMaxListedEntries) +
                                 " entries [input.too_many_files]");
  }
  std::set<std::string> files;
  for (const ListedEntry& e : siblings) {
    if (e.type == ListedEntry::Type::kRegular && e.name.find('/') == std::string::npos) {
      files.insert(e.name);
    }
  }
  FilePlan plan;
  std::string key(name);
  // Whether a sibling's name makes it a file of the model.
  std::function<bool(std::string_view)> part_of;
  if (EndsWith(name, ".index")) {
    plan.kind = ModelKind::kCheckpoint;
    const std::string stem(name.substr(0, name.size() - 6));
    AddBundle(stem, files, &plan);
    part_of = [stem](std::string_view n) { return IsDataFileOf(n, stem); };
  } else if (EndsWith(name, ".weights.json")) {
    plan.kind = ModelKind::kShardedWeights;
    AddShards(name, files, &plan);
    const std::string base(name.substr(0, name.size() - std::string_view(".weights.json").size()));
    part_of = [base](std::string_view n) { return IsShardOf(n, base); };
  } else if (files.count(key) == 0 && files.count(key + ".index")) {
    plan.kind = ModelKind::kCheckpoint;
    AddBundle(name, files, &plan);
    part_of = [key](std::string_view n) { return n == key + ".index" || IsDataFileOf(n, key); };
  } else {
    return std::optional<FilePlan>();
  }
  // A file of the model that is a link or a special file is refused, not
  // left out (the model would then look short of a shard). Siblings that are
  // not part of the model are not reported: a file input names its model,
  // and the rest of its directory is not the input.
  for (const ListedEntry& e : siblings) {
    if (e.type == ListedEntry::Type::kRegular || !part_of(e.name)) continue;
    if (e.type == ListedEntry::Type::kSymlink) {
      return Status::InvalidArgument("'" + e.name +
                                     "', a file of the model, is a symbolic link; safemodel "
                                     "opens nothing through links [input.symlink]");
    }
    return Status::InvalidArgument("'" + e.name +
                                   "', a file of the model, is not a regular file [input.not_regular]");
  }
  if (plan.open.size() > kMaxModelFiles) {
    return Status::LimitExceeded("the model is made of more than " +
                                 std::to_string(kMaxModelFiles) + " files [input.too_many_files]");
  }
  return std::optional<FilePlan>(std::move(plan));
}

}  // namespace safemodel::loader
