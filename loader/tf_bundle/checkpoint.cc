#include "loader/tf_bundle/checkpoint.h"

#include <set>

#include "proto/base/keyed_hash.h"
#include "proto/base/text.h"

namespace safemodel::loader::tf {

namespace {

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The state file lists checkpoints kept by a CheckpointManager (a handful;
// TF's default keeps 5). 1 MiB is thousands of entries.
constexpr uint64_t kMaxStateBytes = 1 << 20;

struct StateField {
  std::string name;
  std::string text;  // the string's value, or the number as written
  bool is_string = false;
};

// TensorFlow's text format as CheckpointState is written: `name: "value"`
// or `name: number`, separated by whitespace; strings use C escapes.
Result<std::vector<StateField>> TokenizeState(std::string_view s) {
  auto bad = [](const std::string& m) {
    return Status::Malformed("checkpoint state file: " + m + " [tf.checkpoint_state]");
  };
  std::vector<StateField> out;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size()) {
      if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
        ++i;
      } else if (s[i] == '#') {
        while (i < s.size() && s[i] != '\n') ++i;
      } else {
        break;
      }
    }
  };
  for (skip_space(); i < s.size(); skip_space()) {
    StateField f;
    while (i < s.size() && ((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_')) f.name += s[i++];
    skip_space();
    if (f.name.empty() || i >= s.size() || s[i] != ':') return bad("expected 'name:' at byte " + Num(i));
    ++i;
    skip_space();
    if (i < s.size() && s[i] == '"') {
      f.is_string = true;
      for (++i;; ++i) {
        if (i >= s.size() || s[i] == '\n') return bad("unterminated string");
        char c = s[i];
        if (c == '"') break;
        if (c != '\\') {
          f.text += c;
          continue;
        }
        if (++i >= s.size()) return bad("unterminated escape");
        c = s[i];
        if (c >= '0' && c <= '7') {
          int v = 0, n = 0;
          while (n < 3 && i < s.size() && s[i] >= '0' && s[i] <= '7') v = v * 8 + (s[i++] - '0'), ++n;
          --i;
          f.text += static_cast<char>(v);
        } else if (c == 'n') {
          f.text += '\n';
        } else if (c == 't') {
          f.text += '\t';
        } else if (c == 'r') {
          f.text += '\r';
        } else if (c == '\\' || c == '"' || c == '\'') {
          f.text += c;
        } else {
          return bad("unknown escape \\" + std::string(1, c));
        }
      }
      ++i;
    } else {
      while (i < s.size() && std::string_view("0123456789+-.eE").find(s[i]) != std::string_view::npos) {
        f.text += s[i++];
      }
      if (f.text.empty()) return bad("expected a value after '" + f.name + ":'");
    }
    out.push_back(std::move(f));
  }
  return out;
}

Value StringList(const std::vector<std::string>& items) {
  Value v = Value::List();
  for (const std::string& s : items) v.Append(Value::String(s));
  return v;
}

std::string Stem(std::string_view index_name) {
  return std::string(index_name.substr(0, index_name.size() - std::string_view(".index").size()));
}

class CheckpointParser final : public MultiFileParser {
 public:
  Status Parse(const InputFiles& input, ParseContext& ctx, ParsedModel* out) override {
    const InputFile* state = nullptr;
    std::vector<const InputFile*> indexes;
    for (const InputFile& f : input.files) {
      if (f.role == FileRole::kCheckpointState) {
        if (state != nullptr) return Status::Malformed("two checkpoint state files");
        state = &f;
      } else if (f.role == FileRole::kBundleIndex) {
        indexes.push_back(&f);
      } else if (f.role != FileRole::kBundleData) {
        return Status::Malformed("a checkpoint does not have a " +
                                 std::string(FileRoleName(f.role)) + " file");
      }
    }
    const InputFile* index = nullptr;
    if (state != nullptr) {
      SAFEMODEL_ASSIGN_OR_RETURN(std::string prefix, ReadCheckpointState(state->bytes, ctx));
      if (ctx.refused()) return ctx.RefusedStatus();
      for (const InputFile* f : indexes) {
        if (Stem(f->name) == prefix) index = f;
      }
      if (index == nullptr) {
        return Status::Malformed("the checkpoint state file names '" + Printable(prefix) +
                                 "', which has no .index file in the directory [tf.bundle_shard]");
      }
    } else if (indexes.size() == 1) {
      index = indexes[0];
    } else {
      return Status::Malformed("a checkpoint needs exactly one .index file, or a checkpoint "
                               "state file naming one; got " + Num(indexes.size()));
    }
    const std::string stem = Stem(index->name);
    std::vector<DataFile> data;
    for (const InputFile& f : input.files) {
      if (f.role == FileRole::kBundleData && StartsWith(f.name, stem + ".data-")) {
        data.push_back({f.name, f.bytes});
      }
    }
    SAFEMODEL_ASSIGN_OR_RETURN(Bundle bundle, ReadBundle(index->bytes, index->name, data));
    out->source_format = "tf_checkpoint";
    std::vector<std::string> kept = AddBundleTensors(bundle, index->name, ctx, out);
    if (bundle.object_graph.has_value()) {
      SAFEMODEL_ASSIGN_OR_RETURN(ObjectGraph graph, ParseObjectGraph(*bundle.object_graph));
      ctx.Note("tf.object_graph", std::string(kObjectGraphKey),
               "the checkpoint's object graph (" + Num(graph.nodes.size()) +
                   " objects) was read to group the tensors; it is not part of the output");
      Value arch = Value::Map();
      arch.Set("schema", Value::String("safemodel.keras/1"));
      arch.Set("kind", Value::String("tf_weights"));
      arch.Set("weight_groups", ObjectGraphGroups(graph, kept));
      out->architecture = std::move(arch);
    }
    out->metadata = Value::Map();
    out->metadata.Set("kind", Value::String("tf_checkpoint"));
    out->metadata.Set("prefix", Value::String(stem));
    for (const std::string& name : input.listed) {
      ctx.Drop("tf.unused_file", name, "a file beside the checkpoint that is not part of it; not read");
    }
    return Status::Ok();
  }
};

}  // namespace

KeyRole ClassifyKey(std::string_view key) {
  if (key.find("/.OPTIMIZER_SLOT/") != std::string_view::npos || StartsWith(key, "optimizer/")) {
    return KeyRole::kOptimizer;
  }
  if (StartsWith(key, "keras_api/metrics/")) return KeyRole::kMetric;
  if (StartsWith(key, "save_counter/")) return KeyRole::kBookkeeping;
  return KeyRole::kWeight;
}

std::vector<std::string> AddBundleTensors(const Bundle& bundle, std::string_view where,
                                          ParseContext& ctx, ParsedModel* out) {
  std::vector<std::string> kept;
  uint64_t optimizer = 0, metrics = 0, counters = 0;
  for (const BundleTensor& t : bundle.tensors) {
    const KeyRole role = ClassifyKey(t.key);
    if (role == KeyRole::kOptimizer && !ctx.options().keep_optimizer) {
      ++optimizer;
      continue;
    }
    if (role == KeyRole::kMetric) {
      ++metrics;
      continue;
    }
    if (role == KeyRole::kBookkeeping) {
      ++counters;
      continue;
    }
    out->tensors.push_back(MakeBundleTensor(bundle, t, t.key));
    kept.push_back(t.key);
  }
  const std::string loc(where);
  if (optimizer > 0) {
    ctx.Drop("tf.optimizer", loc,
             Num(optimizer) + " optimizer tensor(s) (slots and optimizer variables) are not "
                              "converted (the keep-optimizer option keeps them)");
  }
  if (metrics > 0) ctx.Drop("tf.metrics", loc, Num(metrics) + " metric state tensor(s) are not converted");
  if (counters > 0) {
    ctx.Drop("tf.save_counter", loc, Num(counters) + " checkpoint counter(s) (save_counter) are not converted");
  }
  if (bundle.big_endian && !kept.empty()) {
    ctx.Note("tf.byte_order", loc, "the bundle is big-endian; its tensors were converted to little-endian");
  }
  return kept;
}

Value ObjectGraphGroups(const ObjectGraph& graph, const std::vector<std::string>& kept) {
  KeyedStringSet kept_set;
  for (const std::string& k : kept) kept_set.insert(k);
  KeyedStringSet claimed;
  KeyWalker walker(graph);
  Value groups = Value::List();
  for (const auto& [child, name] : graph.nodes[0].children) {
    std::vector<std::string> weights;
    for (std::string& key : walker.From(child)) {
      if (kept_set.count(key) && claimed.insert(key).second) weights.push_back(std::move(key));
    }
    if (weights.empty()) continue;
    Value g = Value::Map();
    g.Set("path", Value::String(name));
    g.Set("weights", StringList(weights));
    groups.Append(std::move(g));
  }
  return groups;
}

Result<std::string> ReadCheckpointState(ByteView text, ParseContext& ctx) {
  if (text.size() > kMaxStateBytes) {
    return Status::LimitExceeded("checkpoint state file larger than " + Num(kMaxStateBytes) + " bytes");
  }
  if (!IsValidUtf8(AsChars(text))) {
    return Status::Malformed("checkpoint state file is not UTF-8 text [tf.checkpoint_state]");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<StateField> fields, TokenizeState(AsChars(text)));
  std::optional<std::string> model_path;
  for (const StateField& f : fields) {
    const bool path = f.name == "model_checkpoint_path" || f.name == "all_model_checkpoint_paths";
    const bool number =
        f.name == "all_model_checkpoint_timestamps" || f.name == "last_preserved_timestamp";
    if ((!path && !number) || path != f.is_string) {
      return Status::Malformed("checkpoint state file: unexpected field '" + Printable(f.name) +
                               "' [tf.checkpoint_state]");
    }
    if (!path) continue;
    if (f.name == "model_checkpoint_path") {
      if (model_path.has_value()) {
        return Status::Malformed("checkpoint state file: model_checkpoint_path given twice "
                                 "[tf.checkpoint_state]");
      }
      model_path = f.text;
    }
    // TensorFlow joins a relative path with the directory and takes an
    // absolute one as it is; CheckpointManager also deletes the listed
    // checkpoints it no longer keeps. Either must stay in the directory.
    const std::string& p = f.text;
    const bool leaves = p.empty() || p[0] == '/' || p == ".." || StartsWith(p, "../") ||
                        p.find("/../") != std::string::npos ||
                        (p.size() >= 3 && p.substr(p.size() - 3) == "/..");
    if (leaves) {
      ctx.Refuse("tf.checkpoint_path", "checkpoint (" + f.name + ")",
                 "the checkpoint state file names '" + Printable(p) +
                     "', outside the checkpoint's directory; TensorFlow would open (or delete) "
                     "the checkpoint there",
                 {p});
    } else if (p.find('/') != std::string::npos || p.find('\\') != std::string::npos) {
      return Status::Unsupported("the checkpoint state file names '" + Printable(p) +
                                 "' in a subdirectory; only checkpoints beside it are read "
                                 "[tf.checkpoint_path]");
    }
  }
  if (ctx.refused()) return std::string();
  if (!model_path.has_value()) {
    return Status::Malformed("checkpoint state file without model_checkpoint_path [tf.checkpoint_state]");
  }
  return *model_path;
}

std::unique_ptr<MultiFileParser> NewCheckpointParser() { return std::make_unique<CheckpointParser>(); }

}  // namespace safemodel::loader::tf
