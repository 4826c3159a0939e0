#include "loader/keras_h5/keras_h5.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "loader/keras_h5/h5_file.h"
#include "loader/keras_h5/h5_memory_driver.h"
#include "loader/keras_h5/json_value.h"
#include "loader/keras_h5/keras_config.h"
#include "loader/keras_h5/lzf_filter.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader {

Status PrepareHdf5() {
  // The worker's environment is empty; in-process callers (tests) may not
  // be, and libhdf5 reads these to find plugins, files and drivers.
  for (const char* var : {"HDF5_PLUGIN_PATH", "HDF5_PLUGIN_PRELOAD", "HDF5_EXT_PREFIX",
                          "HDF5_VDS_PREFIX", "HDF5_EXTFILE_PREFIX", "HDF5_DRIVER",
                          "HDF5_DRIVER_CONFIG", "HDF5_VOL_CONNECTOR", "HDF5_USE_FILE_LOCKING"}) {
    unsetenv(var);
  }
  if (H5open() < 0) return Status::Internal("libhdf5 failed to initialise");
  // libhdf5 sorts the link table of a dense (HDF5 1.8-format) group with
  // qsort, which PrepareLibraries (registry.h) warms up for every library.
  // Errors are read from the error stack; printing them would write to
  // stderr, which the sandbox forbids.
  if (H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) < 0) {
    return Status::Internal("cannot turn off libhdf5 error printing");
  }
  if (H5PLset_loading_state(0) < 0) return Status::Internal("cannot disable libhdf5 plugins");
  // h5py's LZF (filter 32000) is part of h5py, not a plugin: our decoder.
  SAFEMODEL_RETURN_IF_ERROR(h5::RegisterLzfFilter());
  return h5::RegisterMemoryDriver().status();
}

namespace {

constexpr char kSchema[] = "safemodel.keras/1";
// Paths listed in one "dropped" finding; the count is always given.
constexpr size_t kMaxListedPaths = 20;

Value StringList(const std::vector<std::string>& items) {
  Value out = Value::List();
  for (const std::string& s : items) out.Append(Value::String(s));
  return out;
}

// Tensor names: Keras's weight names, made unique in file order.
class UniqueNames {
 public:
  std::string Take(const std::string& base) {
    if (used_.insert(base).second) return base;
    for (uint64_t k = 2;; ++k) {
      std::string candidate = base + "#" + Num(k);
      if (used_.insert(candidate).second) return candidate;
    }
  }

 private:
  KeyedStringSet used_;
};

// A dataset chosen to become a tensor.
struct Pending {
  const h5::Node* node;
  std::string name;
  std::string where;  // "layer 'dense' weight 'dense/kernel:0'"
};

class KerasH5Reader {
 public:
  KerasH5Reader(const h5::File& file, ParseContext& ctx) : file_(file), ctx_(ctx) {}

  Status Read(ParsedModel* out) {
    const h5::Node& root = file_.root();
    SAFEMODEL_ASSIGN_OR_RETURN(keras_version_, file_.ReadString(root, "keras_version"));
    SAFEMODEL_ASSIGN_OR_RETURN(backend_, file_.ReadString(root, "backend"));
    const h5::Node* model_weights = file_.Child(root, "model_weights");
    const bool has_config = file_.HasAttribute(root, "model_config");
    const bool root_layer_names =
        file_.HasAttribute(root, "layer_names") || file_.HasAttribute(root, "layer_names0");
    if (ctx_.refused()) {
      // The file reaches outside itself (the walk has said where). Add what
      // its configuration would have had refused, then stop.
      if (has_config) (void)ReadArchitecture(false);
      return ctx_.RefusedStatus();
    }
    // A model_config or model_weights makes the file a full model, whatever
    // else is at the root: that is what keras.models.load_model reads, so its
    // configuration must be checked even if a root layer_names (what
    // load_weights would read) is present too. Root layer groups that the
    // model does not use are then reported as unreferenced datasets.
    if (has_config || model_weights != nullptr) {
      kind_ = "full_model";
      if (root_layer_names) {
        ctx_.Drop("keras.root_layer_names", "/ (attribute layer_names)",
                  "the file is a full model (model_config/model_weights), read as load_model "
                  "reads it; the root layer_names, which load_weights would read instead, is not "
                  "used, and the datasets only it names are listed as unreferenced");
      }
      if (model_weights != nullptr) {
        if (model_weights->kind != h5::Node::Kind::kGroup) {
          return Status::Malformed("/model_weights is not a group");
        }
        if (!keras_version_.has_value()) {
          SAFEMODEL_ASSIGN_OR_RETURN(keras_version_,
                                     file_.ReadString(*model_weights, "keras_version"));
        }
        if (!backend_.has_value()) {
          SAFEMODEL_ASSIGN_OR_RETURN(backend_, file_.ReadString(*model_weights, "backend"));
        }
        SAFEMODEL_RETURN_IF_ERROR(ReadLegacyWeights(*model_weights));
      }
      SAFEMODEL_RETURN_IF_ERROR(ReadOptimizer());
      if (file_.HasAttribute(root, "training_config")) {
        ctx_.Drop(
            "keras.training_config", "/ (attribute training_config)",
            "the training configuration (loss, metrics, optimizer settings) is not converted");
      }
      if (has_config) SAFEMODEL_RETURN_IF_ERROR(ReadArchitecture(model_weights != nullptr));
    } else if (root_layer_names) {
      kind_ = "weights_only";
      SAFEMODEL_RETURN_IF_ERROR(ReadLegacyWeights(root));
    } else if (file_.Child(root, "layers") != nullptr || file_.Child(root, "vars") != nullptr ||
               file_.Child(root, "optimizer") != nullptr ||
               file_.Child(root, "_layer_checkpoint_dependencies") != nullptr) {
      kind_ = "keras3_weights";
      ReadKeras3Store();
    } else {
      return Status::Unsupported(
          "an HDF5 file, but not a Keras model: it has no model_config, layer_names, model_weights "
          "or layers/ group");
    }
    // Refusals (HDF5 structure or configuration) end the conversion here,
    // before any tensor is prepared.
    if (ctx_.refused()) return ctx_.RefusedStatus();
    ReportUnreferenced();

    out->source_format = "keras_h5";
    const uint64_t limit = ctx_.options().memory_limit;
    for (Pending& p : pending_) {
      Result<Tensor> t = file_.MakeTensor(*p.node, p.name, limit);
      if (!t.ok()) return t.status().WithContext(p.where);
      out->tensors.push_back(std::move(*t));
      if (p.node->dataset.widen_bf16) {
        ++widened_bf16_;
      } else if (p.node->dataset.swap_unit > 1) {
        ++big_endian_;
      }
    }
    if (big_endian_ > 0) {
      ctx_.Note("hdf5.byte_order", "/",
                Num(big_endian_) + " big-endian dataset(s) converted to little-endian");
    }
    if (widened_bf16_ > 0) {
      ctx_.Note("hdf5.bfloat16_layout", "/",
                Num(widened_bf16_) +
                    " dataset(s) of 2-byte floats with bfloat16's layout converted to float32, "
                    "as h5py returns them");
    }
    out->architecture = BuildArchitecture();
    out->metadata = Value::Map();
    out->metadata.Set("kind", Value::String(kind_));
    if (keras_version_.has_value())
      out->metadata.Set("keras_version", Value::String(*keras_version_));
    if (backend_.has_value()) out->metadata.Set("backend", Value::String(*backend_));
    return Status::Ok();
  }

 private:
  // A dataset named by a layer's weight_names becomes a tensor.
  Status Use(const h5::Node* node, const std::string& tensor_name, const std::string& where) {
    if (!used_.insert(node).second) {
      return Status::Malformed(where + " names dataset '" + Printable(node->path) +
                               "', which another weight already uses");
    }
    pending_.push_back({node, tensor_name, where});
    return Status::Ok();
  }

  // The weights of one group: its weight_names, resolved under it.
  Result<std::vector<std::string>> ReadGroupWeights(const h5::Node& group, const std::string& label,
                                                    const std::string& prefix) {
    SAFEMODEL_ASSIGN_OR_RETURN(auto weight_names, file_.ReadChunkedStrings(group, "weight_names"));
    std::vector<std::string> tensors;
    if (!weight_names.has_value()) return tensors;  // Keras reads a missing list as empty
    for (const std::string& w : *weight_names) {
      const std::string where = label + " weight '" + Printable(w) + "'";
      SAFEMODEL_ASSIGN_OR_RETURN(const h5::Node* node, file_.Resolve(group, w));
      if (node == nullptr || node->kind != h5::Node::Kind::kDataset) {
        return Status::Malformed(where + " is not a dataset under '" + Printable(group.path) + "'");
      }
      std::string name = names_.Take(prefix + w);
      SAFEMODEL_RETURN_IF_ERROR(Use(node, name, where));
      tensors.push_back(std::move(name));
    }
    return tensors;
  }

  // Legacy layout: layer_names, one group per layer with weight_names.
  Status ReadLegacyWeights(const h5::Node& weights_root) {
    SAFEMODEL_ASSIGN_OR_RETURN(auto layer_names,
                               file_.ReadChunkedStrings(weights_root, "layer_names"));
    if (!layer_names.has_value()) {
      return Status::Malformed("'" + Printable(weights_root.path) +
                               "' has no layer_names attribute");
    }
    have_groups_ = true;
    for (const std::string& layer : *layer_names) {
      const std::string label = "layer '" + Printable(layer) + "'";
      SAFEMODEL_ASSIGN_OR_RETURN(const h5::Node* group, file_.Resolve(weights_root, layer));
      if (group == nullptr || group->kind != h5::Node::Kind::kGroup) {
        return Status::Malformed(label + " (in layer_names) has no group under '" +
                                 Printable(weights_root.path) + "'");
      }
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<std::string> tensors,
                                 ReadGroupWeights(*group, label, ""));
      groups_.push_back({layer, std::move(tensors)});
    }
    // Weights owned by the model itself (tf.keras 2.x and Keras 3).
    const h5::Node* top = file_.Child(weights_root, "top_level_model_weights");
    if (top != nullptr && top->kind == h5::Node::Kind::kGroup &&
        std::find(layer_names->begin(), layer_names->end(), "top_level_model_weights") ==
            layer_names->end()) {
      SAFEMODEL_ASSIGN_OR_RETURN(model_weights_, ReadGroupWeights(*top, "model-level", ""));
    }
    return Status::Ok();
  }

  Status ReadOptimizer() {
    const h5::Node* opt = file_.Child(file_.root(), "optimizer_weights");
    if (opt == nullptr) return Status::Ok();
    if (opt->kind != h5::Node::Kind::kGroup)
      return Status::Malformed("/optimizer_weights is not a group");
    optimizer_root_ = opt;
    if (!ctx_.options().keep_optimizer) {
      uint64_t count = 0;
      for (const h5::Node& n : file_.nodes())
        count += n.kind == h5::Node::Kind::kDataset && Under(n, *opt);
      ctx_.Drop("keras.optimizer", "/optimizer_weights",
                Num(count) +
                    " optimizer state tensor(s) are not converted (the keep-optimizer option keeps "
                    "them)");
      return Status::Ok();
    }
    SAFEMODEL_ASSIGN_OR_RETURN(optimizer_weights_,
                               ReadGroupWeights(*opt, "optimizer", "optimizer_weights/"));
    return Status::Ok();
  }

  Status ReadArchitecture(bool file_has_weights) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::optional<std::string> text,
                               file_.ReadString(file_.root(), "model_config"));
    SAFEMODEL_ASSIGN_OR_RETURN(Value config, ParseJson(*text, "model_config"));
    Result<keras::ConfigResult> converted =
        keras::ConvertModelConfig(config, file_has_weights ? &groups_ : nullptr, model_weights_);
    if (!converted.ok() && converted.status().code() == StatusCode::kUnsupported &&
        ctx_.options().weights_only) {
      // A structure safemodel cannot represent, with no code in it (code
      // would have been refused above): weights only, as documented.
      ctx_.Drop("keras.architecture", "model_config",
                "the architecture is left out (weights only): " + converted.status().message());
      return Status::Ok();
    }
    SAFEMODEL_RETURN_IF_ERROR(converted.status());
    keras::ConfigResult result = std::move(*converted);
    for (Finding& f : result.notes) ctx_.Note(f.rule, f.location, f.message);
    if (result.refusals.empty()) {
      model_ = std::move(result.model);
      return Status::Ok();
    }
    if (!ctx_.options().weights_only) {
      for (Finding& f : result.refusals) {
        ctx_.Refuse(std::move(f.rule), std::move(f.location), std::move(f.message),
                    std::move(f.references));
      }
      return Status::Ok();
    }
    // A documented choice, not a fallback: the tensors are converted and
    // what the architecture held is reported, item by item. No part of the
    // refused configuration (code in particular) reaches the output.
    for (Finding& f : result.refusals) {
      std::string refs;
      for (const std::string& r : f.references) refs += (refs.empty() ? "" : ", ") + Printable(r);
      ctx_.Drop(f.rule, f.location,
                "not converted (weights only): " + f.message +
                    (refs.empty() ? "" : " [references: " + refs + "]"));
    }
    ctx_.Drop("keras.architecture", "model_config",
              "the architecture is left out (weights only): it holds " +
                  Num(result.refusals.size()) +
                  " item(s) safemodel refuses to represent; only tensors are converted");
    return Status::Ok();
  }

  // Keras 3 store: <path>/vars/<i> datasets, optimizer under /optimizer.
  void ReadKeras3Store() {
    const h5::Node* opt = file_.Child(file_.root(), "optimizer");
    if (opt != nullptr && !ctx_.options().keep_optimizer) optimizer_root_ = opt;
    uint64_t dropped = 0;
    struct Group {
      std::string path;
      std::optional<std::string> name;
      std::vector<std::pair<std::string, const h5::Node*>> items;  // (link name, dataset)
    };
    std::vector<Group> groups;
    for (const h5::Node& group : file_.nodes()) {
      if (group.kind != h5::Node::Kind::kGroup) continue;
      Group g;
      for (const auto& [link, index] : group.children) {
        const h5::Node& child = file_.nodes()[index];
        if (child.kind != h5::Node::Kind::kDataset) continue;
        if (opt != nullptr && Under(child, *opt) && !ctx_.options().keep_optimizer) {
          ++dropped;
          continue;
        }
        g.items.emplace_back(link, &child);
      }
      if (g.items.empty()) continue;
      // Variables are numbered 0, 1, ..., 10: order them as numbers.
      std::stable_sort(g.items.begin(), g.items.end(), [](const auto& a, const auto& b) {
        bool da = !a.first.empty() && a.first.find_first_not_of("0123456789") == std::string::npos;
        bool db = !b.first.empty() && b.first.find_first_not_of("0123456789") == std::string::npos;
        if (da != db) return da;
        if (da && a.first.size() != b.first.size()) return a.first.size() < b.first.size();
        return a.first < b.first;
      });
      const std::string rel = group.path == "/" ? std::string() : group.path.substr(1);
      const size_t slash = rel.rfind('/');
      const std::string leaf = slash == std::string::npos ? rel : rel.substr(slash + 1);
      g.path = leaf == "vars" ? (slash == std::string::npos ? std::string() : rel.substr(0, slash))
                              : rel;
      Result<std::optional<std::string>> name = file_.ReadString(group, "name");
      if (name.ok()) g.name = *name;
      groups.push_back(std::move(g));
    }
    for (Group& g : groups) {
      Value entry = Value::Map();
      entry.Set("path", Value::String(g.path));
      entry.Set("name", g.name.has_value() ? Value::String(*g.name) : Value::Null());
      std::vector<std::string> tensors;
      for (auto& [link, node] : g.items) {
        std::string name = node->path.substr(1);
        used_.insert(node);
        pending_.push_back({node, name, "dataset '" + Printable(node->path) + "'"});
        tensors.push_back(std::move(name));
      }
      entry.Set("weights", StringList(tensors));
      keras3_groups_.Append(std::move(entry));
    }
    if (dropped > 0) {
      ctx_.Drop("keras.optimizer", "/optimizer",
                Num(dropped) +
                    " optimizer state tensor(s) are not converted (the keep-optimizer option keeps "
                    "them)");
    }
  }

  static bool Under(const h5::Node& node, const h5::Node& group) {
    return node.path.size() > group.path.size() &&
           node.path.compare(0, group.path.size(), group.path) == 0 &&
           node.path[group.path.size()] == '/';
  }

  void ReportUnreferenced() {
    std::vector<std::string> paths;
    for (const h5::Node& n : file_.nodes()) {
      if (n.kind != h5::Node::Kind::kDataset || used_.count(&n) > 0) continue;
      if (optimizer_root_ != nullptr && Under(n, *optimizer_root_))
        continue;  // reported as optimizer
      paths.push_back(n.path);
    }
    if (paths.empty()) return;
    std::string list;
    for (size_t i = 0; i < paths.size() && i < kMaxListedPaths; ++i) {
      list += (i ? ", '" : "'") + Printable(paths[i]) + "'";
    }
    if (paths.size() > kMaxListedPaths) list += ", ...";
    ctx_.Drop("keras.unreferenced_dataset", "/",
              Num(paths.size()) +
                  " dataset(s) that no layer's weight_names refers to are not converted: " + list);
  }

  Value BuildArchitecture() {
    Value arch = Value::Map();
    arch.Set("schema", Value::String(kSchema));
    arch.Set("kind", Value::String(kind_));
    if (!model_.is_null()) arch.Set("model", std::move(model_));
    if (kind_ == "keras3_weights") {
      arch.Set("weight_groups", std::move(keras3_groups_));
    } else if (have_groups_) {
      Value groups = Value::List();
      for (const keras::WeightGroup& g : groups_) {
        Value entry = Value::Map();
        entry.Set("layer", Value::String(g.layer));
        entry.Set("weights", StringList(g.tensors));
        groups.Append(std::move(entry));
      }
      arch.Set("weight_groups", std::move(groups));
    }
    if (!model_weights_.empty()) arch.Set("model_weights", StringList(model_weights_));
    if (!optimizer_weights_.empty()) arch.Set("optimizer_weights", StringList(optimizer_weights_));
    return arch;
  }

  const h5::File& file_;
  ParseContext& ctx_;
  std::string kind_;
  std::optional<std::string> keras_version_, backend_;
  bool have_groups_ = false;
  std::vector<keras::WeightGroup> groups_;
  std::vector<std::string> model_weights_, optimizer_weights_;
  const h5::Node* optimizer_root_ = nullptr;
  Value model_;
  Value keras3_groups_ = Value::List();
  UniqueNames names_;
  std::unordered_set<const h5::Node*> used_;
  std::vector<Pending> pending_;
  uint64_t big_endian_ = 0;
  uint64_t widened_bf16_ = 0;
};

class KerasH5Parser final : public Parser {
 public:
  Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) override {
    SAFEMODEL_ASSIGN_OR_RETURN(std::shared_ptr<h5::File> file, h5::File::Open(input, ctx));
    KerasH5Reader reader(*file, ctx);
    SAFEMODEL_RETURN_IF_ERROR(reader.Read(out));
    out->keepalive.push_back(std::move(file));
    return Status::Ok();
  }
};

}  // namespace

std::unique_ptr<Parser> NewKerasH5Parser() { return std::make_unique<KerasH5Parser>(); }

}  // namespace safemodel::loader
