#include "loader/tf_savedmodel/saved_model.h"

#include <algorithm>
#include <map>

#include "loader/keras3/compile_config.h"
#include "loader/keras3/weight_walk.h"
#include "loader/keras_h5/json_value.h"
#include "loader/keras_h5/keras_config.h"
#include "loader/keras_h5/keras_layers.h"
#include "loader/tf_bundle/bundle.h"
#include "loader/tf_bundle/checkpoint.h"
#include "loader/tf_savedmodel/saved_model_scan.h"
#include "proto/base/keyed_hash.h"
#include "proto/base/text.h"

namespace safemodel::loader::tf {

namespace {

constexpr char kSchema[] = "safemodel.keras/1";
// Ops and files listed in one finding; the count is always given.
constexpr size_t kMaxListed = 20;

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

const Value* Field(const Value& map, std::string_view key) {
  return map.is_map() ? map.Find(key) : nullptr;
}

std::string StringField(const Value& map, std::string_view key) {
  const Value* v = Field(map, key);
  return v != nullptr && v->is_string() ? v->string_value() : std::string();
}

Value* MutableField(Value& map, std::string_view key) {
  if (!map.is_map()) return nullptr;
  for (auto& [k, v] : map.mutable_entries()) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::string List(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxListed; ++i) {
    out += (i ? ", '" : "'") + Printable(names[i]) + "'";
  }
  if (names.size() > kMaxListed) out += ", ...";
  return out;
}

// Identifiers tf.keras gives the objects it revives from their metadata.
bool IsKerasLayerIdentifier(std::string_view id) {
  return StartsWith(id, "_tf_keras_") && id != "_tf_keras_metric";
}

class SavedModelReader {
 public:
  SavedModelReader(const InputFiles& input, ParseContext& ctx) : input_(input), ctx_(ctx) {}

  Status Read(ParsedModel* out) {
    SAFEMODEL_RETURN_IF_ERROR(Classify());
    SAFEMODEL_ASSIGN_OR_RETURN(scan_, ScanSavedModel(pb_->bytes));
    CheckAssets();
    Status metadata = ReadKerasMetadata();
    if (ctx_.refused()) return ctx_.RefusedStatus();
    SAFEMODEL_RETURN_IF_ERROR(metadata);
    ReportGraph();
    if (index_ == nullptr) {
      return Status::Malformed("the SavedModel has no variables/variables.index: nothing to "
                               "convert (the graph never is) [tf.saved_model]");
    }
    std::vector<DataFile> data;
    for (const InputFile* f : data_) data.push_back({f->name, f->bytes});
    SAFEMODEL_ASSIGN_OR_RETURN(Bundle bundle, ReadBundle(index_->bytes, index_->name, data));
    return Assemble(bundle, out);
  }

 private:
  Status Classify() {
    for (const InputFile& f : input_.files) {
      const InputFile** slot = nullptr;
      switch (f.role) {
        case FileRole::kSavedModel: slot = &pb_; break;
        case FileRole::kKerasMetadata: slot = &keras_metadata_; break;
        case FileRole::kBundleIndex: slot = &index_; break;
        case FileRole::kBundleData: data_.push_back(&f); continue;
        default:
          return Status::Malformed("a SavedModel does not have a " + std::string(FileRoleName(f.role)) + " file");
      }
      if (*slot != nullptr) return Status::Malformed("two " + std::string(FileRoleName(f.role)) + " files");
      *slot = &f;
    }
    if (pb_ == nullptr) return Status::Malformed("no saved_model.pb [tf.saved_model]");
    return Status::Ok();
  }

  // TensorFlow joins each asset file name with assets/ and reads it.
  void CheckAssets() {
    std::vector<std::string> names = scan_.assets;
    for (const std::string& a : scan_.assets) {
      const bool leaves = a.empty() || a[0] == '/' || a[0] == '\\' || a == ".." ||
                          StartsWith(a, "../") || a.find("/../") != std::string::npos ||
                          a.find('\\') != std::string::npos || a.find(':') != std::string::npos ||
                          (a.size() >= 3 && a.substr(a.size() - 3) == "/..");
      if (leaves) {
        ctx_.Refuse("tf.asset_path", "saved_model.pb asset_file_def",
                    "the asset file name '" + Printable(a) +
                        "' leaves the SavedModel's assets/ directory; loading reads that file",
                    {a});
      }
    }
    for (const std::string& l : input_.listed) {
      if (StartsWith(l, "assets/") || StartsWith(l, "assets.extra/")) names.push_back(l);
    }
    if (!names.empty()) {
      ctx_.Drop("tf.assets", "assets/",
                Num(names.size()) + " asset(s) are not converted and never opened: " + List(names));
    }
    for (const std::string& l : input_.listed) {
      if (StartsWith(l, "assets/") || StartsWith(l, "assets.extra/")) continue;
      ctx_.Drop(l == "fingerprint.pb" ? "tf.fingerprint" : "tf.unused_file", l,
                "a file of the SavedModel directory that holds no model content; not read");
    }
  }

  void ReportGraph() {
    std::vector<std::string> standard;
    for (const auto& [op, use] : scan_.ops) {
      bool is_standard = false;
      if (!IsFileOp(op, &is_standard)) continue;
      if (is_standard) {
        standard.push_back(op);
        continue;
      }
      ctx_.Drop("tf.file_op", "saved_model.pb " + use.first,
                "op '" + Printable(op) + "' (" + Num(use.count) +
                    " use(s)) reads or writes files or calls back into Python when TensorFlow "
                    "runs the graph; the graph is not converted and never run");
    }
    ctx_.Drop("tf.graph", "saved_model.pb",
              "the graph (" + Num(scan_.meta_graphs) + " meta graph(s), " + Num(scan_.nodes) +
                  " nodes, " + Num(scan_.functions) + " functions, " + Num(scan_.ops.size()) +
                  " distinct ops) is not converted" +
                  (standard.empty() ? std::string()
                                    : "; it has the checkpoint ops every SavedModel's own "
                                      "save and restore functions use: " + List(standard)));
  }

  // One object's Keras JSON: the root's becomes the architecture, every
  // other layer's is checked for code.
  Status CheckKerasObject(const UserObject& u, const std::string& where, bool root) {
    Result<Value> doc = ParseJson(u.metadata, where);
    if (!doc.ok()) return Status::Malformed(doc.status().message() + " [tf.keras_metadata]");
    if (u.identifier == "_tf_keras_metric") {
      const std::string cls = StringField(*doc, "class_name");
      if (!keras::IsBuiltinCompileClass(cls)) {
        ctx_.Refuse("keras.class_not_allowed", where,
                    "metric class '" + Printable(cls) + "' is not a Keras built-in; reviving it "
                    "needs the user's code", {cls});
      }
      if (const Value* config = Field(*doc, "config")) (void)keras::ScanCompileConfig(*config, where, ctx_);
      return Status::Ok();
    }
    Value entry = Value::Map();
    entry.Set("class_name", doc->is_map() && doc->Find("class_name") ? *doc->Find("class_name") : Value());
    entry.Set("config", doc->is_map() && doc->Find("config") ? *doc->Find("config") : Value());
    Result<keras::ConfigResult> converted = keras::ConvertModelConfig(entry, nullptr, {});
    if (converted.ok()) {
      for (Finding& f : converted->refusals) {
        const std::string loc = StartsWith(f.location, "model_config") ? where + f.location.substr(12) : f.location;
        ctx_.Refuse(f.rule, loc, f.message, f.references);
      }
    }
    if (!root) return Status::Ok();
    if (const Value* tc = Field(*doc, "training_config"); tc != nullptr && !tc->is_null()) {
      keras::ScanAndDropCompileConfig(*tc, where + " training_config", "keras.training_config", ctx_);
    }
    if (const Value* mc = Field(*doc, "model_config"); mc != nullptr && !mc->is_null()) {
      const Value* mcls = Field(*mc, "class_name");
      const Value* mconf = Field(*mc, "config");
      if (mcls == nullptr || mconf == nullptr || !(*mcls == *entry.Find("class_name")) ||
          !(*mconf == *entry.Find("config"))) {
        return Status::Malformed(where + ": model_config and the object's class_name/config "
                                 "describe different models (load_model revives the latter) "
                                 "[tf.keras_metadata]");
      }
    }
    SAFEMODEL_RETURN_IF_ERROR(converted.status());
    if (converted->refusals.empty()) model_ = std::move(converted->model);
    return Status::Ok();
  }

  Status ReadKerasMetadata() {
    std::vector<std::pair<UserObject, std::string>> objects;  // (object, where)
    if (keras_metadata_ != nullptr) {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<UserObject> nodes, tf::ReadKerasMetadata(keras_metadata_->bytes));
      for (UserObject& u : nodes) {
        const std::string where = "keras_metadata.pb node '" + Printable(u.path) + "'";
        objects.emplace_back(std::move(u), where);
      }
    }
    for (const UserObject& u : scan_.user_objects) {
      objects.emplace_back(u, "saved_model.pb object " + Num(u.node) + " metadata");
    }
    bool have_root = false;
    for (const auto& [u, where] : objects) {
      if (u.metadata.empty() || !StartsWith(u.identifier, "_tf_keras_")) continue;
      const bool root = !have_root && (u.path == "root" || (u.path.empty() && u.node == 0)) &&
                        IsKerasLayerIdentifier(u.identifier);
      have_root = have_root || root;
      SAFEMODEL_RETURN_IF_ERROR(CheckKerasObject(u, where, root));
    }
    return Status::Ok();
  }

  // Assigns the kept variables to the layers of model_ through the object
  // graph; returns the assigned keys per layer path.
  Status AssignWeights(const ObjectGraph& graph, const KeyedStringSet& kept, Value* groups,
                       KeyedStringSet* assigned) {
    struct Work {
      Value* node;
      uint32_t object;
      std::string layer;
    };
    std::vector<Work> stack{{&model_, 0, StringField(model_, "name")}};
    while (!stack.empty()) {
      Work w = std::move(stack.back());
      stack.pop_back();
      Value* layers = MutableField(*w.node, "layers");
      if (layers == nullptr || !layers->is_list()) {
        SAFEMODEL_RETURN_IF_ERROR(Attach(w.object, w.node, w.layer, kept, groups, assigned));
        continue;
      }
      std::map<std::string, uint32_t> children;
      for (const auto& [id, name] : graph.nodes[w.object].children) children.emplace(name, id);
      const bool by_index = children.count("layer-0") > 0;
      const bool sequential = StringField(*w.node, "class_name") == "Sequential";
      uint64_t i = 0, k = 0;
      std::vector<Work> members;
      for (Value& m : layers->mutable_list()) {
        if (sequential && StringField(m, "class_name") == "InputLayer") continue;
        const std::string key = by_index ? "layer-" + Num(i++)
                                         : (keras3::LayerHasWeights(m) ? "layer_with_weights-" + Num(k++) : "");
        auto it = key.empty() ? children.end() : children.find(key);
        if (it == children.end()) continue;
        members.push_back({&m, it->second, w.layer + "/" + StringField(m, "name")});
      }
      for (auto it = members.rbegin(); it != members.rend(); ++it) stack.push_back(std::move(*it));
    }
    return Status::Ok();
  }

  Status Attach(uint32_t object, Value* node, const std::string& layer,
                const KeyedStringSet& kept, Value* groups, KeyedStringSet* assigned) {
    std::vector<std::string> keys;
    for (std::string& key : walker_->From(object)) {
      if (kept.count(key) && !assigned->count(key)) {
        assigned->insert(key);
        keys.push_back(std::move(key));
      }
    }
    const Value* config = Field(*node, "config");
    std::optional<size_t> expected = Field(*node, "layer") != nullptr
        ? std::nullopt
        : keras3::ExpectedWeightCount(StringField(*node, "class_name"), config ? *config : Value::Map());
    if (expected.has_value() && *expected != keys.size()) {
      return Status::Malformed("layer '" + Printable(layer) + "' has " + Num(*expected) +
                               " variables in Keras, but the object graph gives it " +
                               Num(keys.size()) + " [keras.weights]");
    }
    if (keys.empty()) return Status::Ok();
    Value list = Value::List();
    for (const std::string& k : keys) list.Append(Value::String(k));
    node->Set("weights", list);
    Value g = Value::Map();
    g.Set("layer", Value::String(layer));
    g.Set("weights", std::move(list));
    groups->Append(std::move(g));
    return Status::Ok();
  }

  Status Assemble(const Bundle& bundle, ParsedModel* out) {
    out->source_format = "tf_savedmodel";
    std::vector<std::string> kept = AddBundleTensors(bundle, index_->name, ctx_, out);
    Value arch = Value::Map();
    arch.Set("schema", Value::String(kSchema));
    if (bundle.object_graph.has_value()) {
      SAFEMODEL_ASSIGN_OR_RETURN(ObjectGraph graph, ParseObjectGraph(*bundle.object_graph));
      if (!model_.is_null()) {
        KeyedStringSet kept_set, assigned;
        for (const std::string& k : kept) kept_set.insert(k);
        Value groups = Value::List();
        KeyWalker walker(graph);
        walker_ = &walker;
        SAFEMODEL_RETURN_IF_ERROR(AssignWeights(graph, kept_set, &groups, &assigned));
        walker_ = nullptr;
        std::vector<std::string> unreferenced;
        for (const std::string& k : kept) {
          if (!assigned.count(k)) unreferenced.push_back(k);
        }
        if (!unreferenced.empty()) {
          auto gone = [&](const Tensor& t) { return !assigned.count(t.name); };
          out->tensors.erase(std::remove_if(out->tensors.begin(), out->tensors.end(), gone), out->tensors.end());
          ctx_.Drop("tf.unreferenced", index_->name,
                    Num(unreferenced.size()) + " variable(s) that no layer of the model reaches "
                    "are not converted: " + List(unreferenced));
        }
        arch.Set("kind", Value::String("full_model"));
        arch.Set("model", std::move(model_));
        arch.Set("weight_groups", std::move(groups));
      } else {
        arch.Set("kind", Value::String("tf_weights"));
        arch.Set("weight_groups", ObjectGraphGroups(graph, kept));
      }
      out->architecture = std::move(arch);
    } else if (!model_.is_null()) {
      return Status::Unsupported("the variables have no object graph, so their layers cannot be "
                                 "told [tf.saved_model]");
    }
    out->metadata = Value::Map();
    out->metadata.Set("kind", Value::String("tf_savedmodel"));
    Value tags = Value::List();
    for (const std::string& t : scan_.tags) tags.Append(Value::String(t));
    out->metadata.Set("tags", std::move(tags));
    out->metadata.Set("tensorflow_version", Value::String(scan_.tensorflow_version));
    return Status::Ok();
  }

  const InputFiles& input_;
  ParseContext& ctx_;
  const InputFile* pb_ = nullptr;
  const InputFile* keras_metadata_ = nullptr;
  const InputFile* index_ = nullptr;
  std::vector<const InputFile*> data_;
  SavedModelScan scan_;
  Value model_;
  KeyWalker* walker_ = nullptr;  // during AssignWeights
};

class SavedModelParser final : public MultiFileParser {
 public:
  Status Parse(const InputFiles& input, ParseContext& ctx, ParsedModel* out) override {
    SavedModelReader reader(input, ctx);
    return reader.Read(out);
  }
};

}  // namespace

std::unique_ptr<MultiFileParser> NewSavedModelParser() { return std::make_unique<SavedModelParser>(); }

}  // namespace safemodel::loader::tf
