#include "loader/keras_h5/keras_config.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "loader/keras_h5/keras_call_args.h"
#include "loader/keras_h5/keras_layers.h"
#include "loader/keras_h5/marshal_scan.h"
#include "proto/base/byte_reader.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader::keras {

namespace {

// Layers in one configuration; each costs a few hundred bytes of
// bookkeeping. MobileNetV2 in a Teachable Machine file has 164.
constexpr size_t kMaxLayers = 100'000;
// Refusals listed one by one; beyond this one finding gives the count (the
// report, and the .safemodel format, bound the number of findings).
constexpr size_t kMaxRefusals = 1000;

// A JSON key as it appears in a location (keys are untrusted and unbounded).
std::string Key(const std::string& key) { return Printable(key, 64); }

// A JSON location one step down: "config" under the root, "x.config" below.
std::string Sub(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}

const Value* Field(const Value* map, std::string_view key) {
  return map != nullptr && map->is_map() ? map->Find(key) : nullptr;
}

std::string StringField(const Value* map, std::string_view key) {
  const Value* v = Field(map, key);
  return v != nullptr && v->is_string() ? v->string_value() : std::string();
}

struct Layer {
  const Value* entry = nullptr;   // {"class_name": ..., "config": ..., ...}
  const Value* config = nullptr;  // a map, or a list (Keras 1 Sequential)
  std::string class_name;
  std::string name;
  std::string path;   // layer names joined by '/', for findings
  std::string where;  // JSON location, e.g. config.layers[3].config.layer
  int parent = -1;
  LayerKind kind = LayerKind::kNotAllowed;
  bool functional = false;        // a model wired by inbound_nodes
  bool in_functional = false;     // a member of such a model
  bool sequential_input = false;  // Sequential's InputLayer: not in model.layers
  bool derived = false;           // Bidirectional backward layer built from `layer`
  bool trainable = true;
  std::vector<int> children;  // members, or [layer, backward_layer]
  std::vector<std::string> weights;
};

// A weight slot while mapping a nested model's flat list back to sublayers.
struct Slot {
  int layer;
  size_t index;  // position in the leaf's own saved order
};

class Converter {
 public:
  Result<ConfigResult> Run(const Value& root, const std::vector<WeightGroup>* groups,
                           const std::vector<std::string>& model_weights) {
    // Code is looked for in every layer reached, also when the tree cannot
    // be built or represented: a file that is both broken and carrying code
    // is refused for the code (findings win over breakage).
    Status built = BuildTree(root);
    for (size_t i = 0; i < layers_.size(); ++i) {
      CheckLayer(static_cast<int>(i));
      ScanConfig(static_cast<int>(i));
    }
    if (refusals_.empty()) {
      SAFEMODEL_RETURN_IF_ERROR(built);
      SAFEMODEL_RETURN_IF_ERROR(unsupported_);
    }
    ConfigResult result;
    if (unlisted_refusals_ > 0) {
      refusals_.push_back({Finding::Severity::kRefused,
                           "keras.more_refusals",
                           "model_config",
                           Num(unlisted_refusals_) + " more refusals are not listed",
                           {}});
    }
    if (!refusals_.empty()) {
      result.refusals = std::move(refusals_);
      return result;
    }
    SAFEMODEL_RETURN_IF_ERROR(CheckNames());
    if (groups != nullptr) SAFEMODEL_RETURN_IF_ERROR(AssignWeights(*groups));
    layers_[0].weights.insert(layers_[0].weights.end(), model_weights.begin(), model_weights.end());
    SAFEMODEL_ASSIGN_OR_RETURN(result.model, Emit());
    result.notes = std::move(notes_);
    return result;
  }

 private:
  // ---- Structure ---------------------------------------------------------

  Status AddLayer(const Value& entry, int parent, std::string where, size_t position) {
    if (layers_.size() >= kMaxLayers) {
      return Status::LimitExceeded("model_config has more than " + Num(kMaxLayers) + " layers");
    }
    const Value* class_name = Field(&entry, "class_name");
    if (!entry.is_map() || class_name == nullptr || !class_name->is_string()) {
      return Status::Malformed("model_config " + (where.empty() ? std::string("root") : where) +
                               " is not a layer (no class_name)");
    }
    Layer l;
    l.entry = &entry;
    l.config = Field(&entry, "config");
    l.class_name = class_name->string_value();
    l.kind = ClassifyLayer(l.class_name);
    l.where = std::move(where);
    l.parent = parent;
    l.name = StringField(&entry, "name");
    if (l.name.empty()) l.name = StringField(l.config, "name");
    if (const Value* t = Field(l.config, "trainable");
        t != nullptr && t->kind() == Value::Kind::kBool) {
      l.trainable = t->bool_value();
    }
    const std::string label = l.name.empty() ? "[" + Num(position) + "]" : l.name;
    l.path = parent < 0 ? (l.name.empty() ? std::string("(model)") : l.name)
                        : layers_[static_cast<size_t>(parent)].path + "/" + label;
    if (parent >= 0) {
      layers_[static_cast<size_t>(parent)].children.push_back(static_cast<int>(layers_.size()));
    }
    layers_.push_back(std::move(l));
    return Status::Ok();
  }

  // Breadth-first over layers: members of models, layers of wrappers.
  // AddLayer grows layers_, so only indexes (never references) are held.
  Status BuildTree(const Value& root) {
    SAFEMODEL_RETURN_IF_ERROR(AddLayer(root, -1, "", 0));
    for (size_t i = 0; i < layers_.size(); ++i) {
      const LayerKind kind = layers_[i].kind;
      const Value* config = layers_[i].config;
      const std::string where = Sub(layers_[i].where, "config");
      const int parent = static_cast<int>(i);
      if (kind == LayerKind::kModel) {
        const Value* members =
            config != nullptr && config->is_list() ? config : Field(config, "layers");
        if (members == nullptr) continue;  // a Model without a graph: refused in CheckLayer
        if (!members->is_list()) {
          return Status::Malformed("model_config " + where + ".layers is not a list");
        }
        const bool functional = layers_[i].class_name != "Sequential";
        const std::string prefix = where + (config->is_list() ? "" : ".layers");
        layers_[i].functional = functional;
        for (size_t k = 0; k < members->list().size(); ++k) {
          SAFEMODEL_RETURN_IF_ERROR(
              AddLayer(members->list()[k], parent, prefix + "[" + Num(k) + "]", k));
          Layer& member = layers_.back();
          member.in_functional = functional;
          member.sequential_input = !functional && member.class_name == "InputLayer";
        }
      } else if (kind == LayerKind::kWrapper) {
        const Value* inner = Field(config, "layer");
        if (inner == nullptr) return Status::Malformed("model_config " + where + " wraps no layer");
        SAFEMODEL_RETURN_IF_ERROR(AddLayer(*inner, parent, where + ".layer", 0));
        if (layers_[i].class_name != "Bidirectional") continue;
        const Value* backward = Field(config, "backward_layer");
        if (backward != nullptr && !backward->is_null()) {
          SAFEMODEL_RETURN_IF_ERROR(AddLayer(*backward, parent, where + ".backward_layer", 1));
          continue;
        }
        // Keras builds the backward layer from the forward one's config.
        Layer derived = layers_.back();
        if (derived.kind != LayerKind::kLeaf) {
          // Not representable, but its subtree is still walked for code.
          if (unsupported_.ok()) {
            unsupported_ = Status::Unsupported(
                "model_config " + where + ": a Bidirectional wrapper around '" +
                Printable(derived.class_name) +
                "' without a backward_layer (only a plain layer's backward copy is derived)");
          }
          continue;
        }
        derived.derived = true;
        derived.name = "backward_" + derived.name;
        derived.path = layers_[i].path + "/" + derived.name;
        derived.children.clear();
        layers_[i].children.push_back(static_cast<int>(layers_.size()));
        layers_.push_back(std::move(derived));
      }
    }
    return Status::Ok();
  }

  // ---- Code and references -----------------------------------------------

  void Refuse(int layer, std::string rule, std::string message,
              std::vector<std::string> references = {}) {
    if (layers_[static_cast<size_t>(layer)].derived) return;  // reported on the forward layer
    if (refusals_.size() >= kMaxRefusals) {
      ++unlisted_refusals_;
      return;
    }
    refusals_.push_back(
        {Finding::Severity::kRefused, std::move(rule),
         "model_config layer '" + Printable(layers_[static_cast<size_t>(layer)].path, 400) + "'",
         std::move(message), std::move(references)});
  }

  // Decodes a Lambda's bytecode and lists what it uses.
  void RefuseCode(int layer, const std::string& what, const Value* code, const std::string& where) {
    std::vector<std::string> references;
    std::string detail;
    if (code != nullptr && code->is_string()) {
      MarshalScan scan;
      DecodeKerasCode(code->string_value(), &scan);
      if (scan.is_code) {
        references = scan.names;
        std::string used;
        for (size_t k = 0; k < references.size() && k < 12; ++k) {
          used += (k ? ", " : "") + Printable(references[k], 40);
        }
        if (references.size() > 12) used += ", ...";
        detail = " (" + scan.python + " bytecode of function '" + Printable(scan.function_name) +
                 "' from '" + Printable(scan.file_name) + "'" +
                 (used.empty() ? std::string("; it names no globals") : "; it uses " + used) + ")";
      } else {
        // The text itself is not quoted: findings are copied into reports
        // and (with weights only) into the output, and code must not be.
        detail = " (not decodable marshal data: " + scan.error + "; " +
                 Num(code->string_value().size()) + " bytes of text)";
      }
    } else {
      detail = " (the code field is missing or not a string)";
    }
    Refuse(layer, "keras.lambda",
           what + " at " + where + " carries Python code" + detail +
               "; loading or calling the model would run it",
           std::move(references));
  }

  // A Lambda layer (or a nested Lambda object) in any encoding.
  void RefuseLambda(int layer, const Value& lambda, const std::string& where) {
    const Value* config = Field(&lambda, "config");
    const Value* function = Field(config, "function");
    const std::string type = StringField(config, "function_type");
    const std::string name = StringField(config, "name");
    const std::string what =
        name.empty() ? std::string("Lambda") : "Lambda '" + Printable(name) + "'";
    if (function != nullptr && function->is_list() && !function->list().empty()) {
      RefuseCode(layer, what, &function->list()[0], Sub(where, "config.function[0]"));  // Keras 1/2
    } else if (function != nullptr && function->is_map()) {
      const std::string cls = StringField(function, "class_name");
      if (cls == "__lambda__") {
        RefuseCode(layer, what, Field(Field(function, "config"), "code"),
                   Sub(where, "config.function"));
      } else {
        RefuseReference(layer, *function, Sub(where, "config.function"));
      }
    } else if (function != nullptr && function->is_string() && type == "function") {
      std::string target = StringField(config, "module") + "." + function->string_value();
      Refuse(layer, "keras.lambda",
             what + " at " + where + " calls the Python function '" + Printable(target) +
                 "' by name; loading the model would import and run it",
             {target});
    } else {
      RefuseCode(layer, what, function, Sub(where, "config.function"));
    }
  }

  // {"class_name": "function", "module": ..., "config": "<name>"}.
  void RefuseReference(int layer, const Value& object, const std::string& where) {
    std::string module = StringField(&object, "module");
    std::string name = StringField(&object, "config");
    if (name.empty()) name = StringField(&object, "registered_name");
    std::string target = module.empty() ? name : module + "." + name;
    Refuse(layer, "keras.function_reference",
           "a Python function is named at " + where + " ('" + Printable(target) +
               "'); loading the model would look it up and call it",
           {target});
  }

  // Checks of a layer entry as a whole (its class and class-specific fields).
  void CheckLayer(int index) {
    const Layer& l = layers_[static_cast<size_t>(index)];
    if (l.derived) return;
    const std::string& c = l.class_name;
    const std::string module = StringField(l.entry, "module");
    const Value* registered = Field(l.entry, "registered_name");
    const bool custom_name =
        registered != nullptr && registered->is_string() && registered->string_value() != c;
    if (c == "Lambda") {
      RefuseLambda(index, *l.entry, l.where);
      return;
    }
    if (c == "function") {
      // A function as a member of a Functional model: Keras < 3.9 imported
      // `module` and the graph rebuild called it with the member's
      // inbound_nodes arguments (CVE-2025-1550; -8747 and -9906 with Keras's
      // own get_file and enable_unsafe_deserialization).
      RefuseReference(index, *l.entry, l.where);
      if (!module.empty() && !IsKerasModule(module)) {
        Refuse(index, "keras.module",
               "the function is taken from module '" + Printable(module) +
                   "', which is not part of Keras; loading it imports that module",
               {module});
      }
      return;
    }
    if (c == "TorchModuleWrapper") {
      Refuse(
          index, "keras.torch_module_wrapper",
          "TorchModuleWrapper holds a pickled torch module that loading unpickles (CVE-2025-49655)",
          {"torch.load"});
      return;
    }
    if (c == "TFSMLayer") {
      std::string path = StringField(l.config, "filepath");
      Refuse(
          index, "keras.tfsm_layer",
          "TFSMLayer loads a TensorFlow SavedModel from '" + Printable(path) + "' (CVE-2026-1462)",
          {path});
      return;
    }
    if (c == "JaxLayer" || c == "FlaxLayer") {
      Refuse(index, "keras.jax_layer", c + " wraps Python callables");
      return;
    }
    if (c == "TensorFlowOpLayer") {
      std::string op = StringField(Field(l.config, "node_def"), "op");
      Refuse(index, "keras.tf_op_layer",
             "TensorFlowOpLayer runs the TensorFlow op '" + Printable(op) + "'", {op});
      return;
    }
    if (l.kind == LayerKind::kNotAllowed) {
      // One finding per layer, naming everything that points at user code.
      std::vector<std::string> refs{module.empty() ? c : module + "." + c};
      if (custom_name) refs.push_back(registered->string_value());
      Refuse(index, "keras.class_not_allowed",
             "class '" + Printable(c) + "'" +
                 (module.empty() ? "" : " from module '" + Printable(module) + "'") +
                 (custom_name ? " (registered as '" + Printable(registered->string_value()) + "')"
                              : "") +
                 " is not a Keras built-in layer safemodel converts; loading it needs the "
                 "user's Python code (a custom or subclassed class)",
             refs);
      if (custom_name && registered->string_value().find('>') != std::string::npos) {
        // Keras resolves a "package>Name" through its custom-object
        // registry before it looks at `module`: the user's code again.
        Refuse(index, "keras.registered_name",
               "class '" + Printable(c) + "' is registered as custom object '" +
                   Printable(registered->string_value()) + "'; loading it runs the user's code",
               {registered->string_value()});
      }
      return;
    }
    if (!module.empty() && !IsKerasModule(module)) {
      Refuse(index, "keras.module",
             "class '" + Printable(c) + "' is taken from module '" + Printable(module) +
                 "', which is not part of Keras; loading it imports that module",
             {module + "." + c});
    }
    if (custom_name) {
      Refuse(index, "keras.registered_name",
             "class '" + Printable(c) + "' is registered as custom object '" +
                 Printable(registered->string_value()) + "'; loading it runs the user's code",
             {registered->string_value()});
    }
    if (l.kind == LayerKind::kModel && l.config != nullptr && !l.config->is_list() &&
        Field(l.config, "layers") == nullptr) {
      Refuse(index, "keras.subclassed_model",
             "model class '" + Printable(c) +
                 "' has no layer graph in its config (a subclassed model)",
             {c});
      return;
    }
    if (c == "TFOpLambda" || c == "SlicingOpLambda") {
      std::string f = StringField(l.config, "function");
      if (!IsAllowedTfOp(f)) {
        Refuse(index, "keras.tfoplambda",
               c + " calls 'tf." + Printable(f) +
                   "', which is not one of the pure tensor ops safemodel accepts",
               {"tf." + f});
      }
    }
    if (c == "StringLookup" || c == "IntegerLookup" || c == "TextVectorization") {
      const Value* vocabulary = Field(l.config, "vocabulary");
      if (vocabulary != nullptr && vocabulary->is_string()) {
        Refuse(index, "keras.vocabulary_path",
               c + " reads its vocabulary from '" + Printable(vocabulary->string_value()) +
                   "' (a file or URL; CVE-2025-12058)",
               {vocabulary->string_value()});
      }
    }
    if (c == "TextVectorization") {
      for (auto [key, allowed] :
           {std::pair<std::string_view, std::initializer_list<std::string_view>>{
                "standardize", {"lower_and_strip_punctuation", "lower", "strip_punctuation"}},
            {"split", {"whitespace", "character"}}}) {
        const Value* v = Field(l.config, key);
        if (v != nullptr && v->is_string() &&
            std::find(allowed.begin(), allowed.end(), v->string_value()) == allowed.end()) {
          Refuse(index, "keras.function_reference",
                 "TextVectorization " + std::string(key) + " names the custom function '" +
                     Printable(v->string_value()) + "'",
                 {v->string_value()});
        }
      }
    }
  }

  // Every value of a layer's entry except its member layers: nested objects
  // must be allowed classes, and no field may carry or name code.
  void ScanConfig(int index) {
    const Layer& l = layers_[static_cast<size_t>(index)];
    if (l.derived || l.class_name == "Lambda") return;  // Lambda: reported once, whole
    struct Item {
      const Value* value;
      std::string where;
    };
    std::vector<Item> work;
    const bool model = l.kind == LayerKind::kModel;
    const bool wrapper = l.kind == LayerKind::kWrapper;
    for (const auto& [key, value] : l.entry->entries()) {
      if (key == "class_name" || key == "module" || key == "registered_name") continue;
      if (key != "config") {
        work.push_back({&value, Sub(l.where, Key(key))});
        continue;
      }
      if (!value.is_map()) continue;  // Keras 1 Sequential list: members only
      for (const auto& [ckey, cvalue] : value.entries()) {
        if (model && (ckey == "layers")) continue;
        if (wrapper && (ckey == "layer" || ckey == "backward_layer")) continue;
        work.push_back({&cvalue, Sub(l.where, "config." + Key(ckey))});
        CheckField(index, value, ckey, cvalue, Sub(l.where, "config"));
      }
    }
    // Depth-first in document order (children pushed in reverse), so that
    // findings come out in the order of the configuration.
    std::reverse(work.begin(), work.end());
    while (!work.empty()) {
      Item item = std::move(work.back());
      work.pop_back();
      const Value& v = *item.value;
      if (v.is_list()) {
        for (size_t k = v.list().size(); k-- > 0;) {
          work.push_back({&v.list()[k], item.where + "[" + Num(k) + "]"});
        }
        continue;
      }
      if (!v.is_map()) continue;
      if (!CheckObject(index, v, item.where)) continue;
      for (const auto& [key, value] : v.entries()) CheckField(index, v, key, value, item.where);
      for (size_t k = v.entries().size(); k-- > 0;) {
        work.push_back({&v.entries()[k].second, item.where + "." + Key(v.entries()[k].first)});
      }
    }
  }

  // A map inside a configuration. Returns false if its contents are not to
  // be scanned further (already reported as a whole).
  bool CheckObject(int index, const Value& map, const std::string& where) {
    const Value* cls = Field(&map, "class_name");
    if (cls == nullptr || !cls->is_string()) return true;
    const std::string& c = cls->string_value();
    if (c == "Lambda") {
      RefuseLambda(index, map, where);
      return false;
    }
    if (c == "__lambda__") {
      // Keras 3 writes a Lambda layer's function as {"code", "defaults",
      // "closure"} and any other callable as {"value": [code, defaults,
      // closure]} (serialization_lib).
      const Value* config = Field(&map, "config");
      const Value* value = Field(config, "value");
      if (Field(config, "code") == nullptr && value != nullptr && value->is_list() &&
          !value->list().empty()) {
        RefuseCode(index, "a __lambda__ object", &value->list()[0], where + ".config.value[0]");
      } else {
        RefuseCode(index, "a __lambda__ object", Field(config, "code"), where + ".config.code");
      }
      return false;
    }
    if (c == "__numpy__" || c == "__tensor__") {
      CheckLiteralDtype(index, map, c, where);
      return false;
    }
    if (c == "__typespec__") {
      Refuse(index, "keras.class_not_allowed",
             "a __typespec__ object at " + where +
                 " names a TensorFlow type-spec class that loading looks up",
             {StringField(&map, "module") + "." + StringField(Field(&map, "config"), "spec_name")});
      return false;
    }
    if (IsQuantizedPolicy(c)) {
      SetUnsupported(index, "keras.quantized",
                     "the dtype policy '" + Printable(c) + "' at " + where +
                         " makes the layer quantized (integer or float8 kernels with scales), "
                         "which safemodel does not represent");
      return false;
    }
    if (c == "function") {
      const std::string name = StringField(&map, "config");
      const Value* registered = Field(&map, "registered_name");
      bool builtin = IsKerasModule(StringField(&map, "module")) && IsBuiltinActivation(name) &&
                     (registered == nullptr || registered->is_null() ||
                      (registered->is_string() && registered->string_value() == name));
      if (!builtin) RefuseReference(index, map, where);
      return false;
    }
    const std::string module = StringField(&map, "module");
    if (!module.empty() && !IsKerasModule(module)) {
      Refuse(index, "keras.module",
             "object of class '" + Printable(c) + "' at " + where + " is taken from module '" +
                 Printable(module) + "', which is not part of Keras",
             {module + "." + c});
      return false;
    }
    const Value* registered = Field(&map, "registered_name");
    if (registered != nullptr && registered->is_string() && registered->string_value() != c) {
      Refuse(index, "keras.registered_name",
             "object at " + where + " is the registered custom object '" +
                 Printable(registered->string_value()) + "'",
             {registered->string_value()});
      return false;
    }
    if (!IsAllowedAuxiliaryClass(c) && ClassifyLayer(c) == LayerKind::kNotAllowed) {
      Refuse(index, "keras.class_not_allowed",
             "object of class '" + Printable(c) + "' at " + where +
                 " is not a Keras built-in safemodel converts",
             {module.empty() ? c : module + "." + c});
      return false;
    }
    return true;
  }

  // A key/value pair of a configuration map.
  void CheckField(int index, const Value& map, const std::string& key, const Value& value,
                  const std::string& where) {
    if (key == "quantization_config" && !value.is_null()) {
      SetUnsupported(index, "keras.quantized",
                     "a quantization_config at " + where +
                         " makes the layer quantized, which safemodel does not represent");
      return;
    }
    if (!value.is_string()) return;
    if (key == "dtype" && IsQuantizedPolicyName(value.string_value())) {
      SetUnsupported(index, "keras.quantized",
                     "the dtype policy '" + Printable(value.string_value()) + "' at " + where +
                         ".dtype makes the layer quantized, which safemodel does not represent");
      return;
    }
    const std::string& s = value.string_value();
    if (key == "activation" || key == "recurrent_activation" || key == "inner_activation") {
      if (!IsBuiltinActivation(s)) {
        Refuse(index, "keras.activation",
               "activation '" + Printable(s) + "' at " + where + "." + Key(key) +
                   " is not a Keras built-in; it would be looked up among custom Python objects",
               {s});
      }
      return;
    }
    // Keras 1/2 store callables next to a *_type field: "lambda" (bytecode)
    // or "function" (a name); "raw" is plain data.
    for (std::string_view base : {"function", "output_shape", "mode", "mask"}) {
      if (key != std::string(base) + "_type") continue;
      const Value* payload = Field(&map, base);
      if (s == "lambda") {
        const Value* code = payload;
        if (code != nullptr && code->is_list() && !code->list().empty()) code = &code->list()[0];
        RefuseCode(index, "field '" + std::string(base) + "'", code,
                   where + "." + std::string(base));
      } else if (s == "function") {
        std::string module = StringField(&map, std::string(base) + "_module");
        if (module.empty() && base == "function") module = StringField(&map, "module");
        std::string name =
            payload != nullptr && payload->is_string() ? payload->string_value() : "?";
        std::string target = module.empty() ? name : module + "." + name;
        Refuse(index, "keras.function_reference",
               "field '" + std::string(base) + "' at " + where + " names the Python function '" +
                   Printable(target) + "'",
               {target});
      }
    }
  }

  // Structures safemodel refuses to represent without code in them (exit 3):
  // the first one is the conversion's status, naming the layer and rule.
  void SetUnsupported(int layer, std::string_view rule, const std::string& message) {
    if (!unsupported_.ok()) return;
    unsupported_ = Status::Unsupported(
        "model_config layer '" + Printable(layers_[static_cast<size_t>(layer)].path, 400) +
        "': " + message + " [" + std::string(rule) + "]");
  }

  // Keras 3's literal objects: np.array(value, dtype=...) and
  // convert_to_tensor. Only plain numeric dtype names are data: "object"
  // makes Python objects, and a structured or subarray dtype such as
  // "(1000000000,)f4" allocates without bound.
  void CheckLiteralDtype(int index, const Value& map, const std::string& cls,
                         const std::string& where) {
    const Value* dtype = Field(Field(&map, "config"), "dtype");
    const std::string name = dtype != nullptr && dtype->is_string() ? dtype->string_value() : "";
    if (IsNumericDtypeName(name)) return;
    SetUnsupported(index, "keras.numpy_dtype",
                   "a " + cls + " literal at " + where + " has dtype '" + Printable(name) +
                       "', not a plain numeric dtype (object, structured and subarray dtypes "
                       "make Python objects or unbounded allocations when loaded)");
  }

  // ---- Graph -------------------------------------------------------------

  Status CheckNames() {
    for (const Layer& model : layers_) {
      if (model.kind != LayerKind::kModel) continue;
      KeyedStringSet names;
      for (int c : model.children) {
        const Layer& m = layers_[static_cast<size_t>(c)];
        if (m.name.empty() && model.functional) {
          return Status::Malformed("model_config " + m.where +
                                   " has no name, which a Functional graph needs");
        }
        if (!m.name.empty() && !names.insert(m.name).second) {
          return Status::Malformed("model '" + Printable(model.path) + "' has two layers named '" +
                                   Printable(m.name) + "'");
        }
      }
    }
    return Status::Ok();
  }

  // inbound_nodes in both forms, as [{"inputs": [refs], "kwargs": {...}
  // [, "args": [...]]}, ...].
  Result<Value> ConvertInboundNodes(const Layer& l, const KeyedStringSet& names) {
    Value nodes = Value::List();
    const Value* inbound = Field(l.entry, "inbound_nodes");
    const std::string where = Sub(l.where, "inbound_nodes");
    if (inbound == nullptr || inbound->is_null()) return nodes;
    if (!inbound->is_list()) return Status::Malformed("model_config " + where + " is not a list");
    for (size_t n = 0; n < inbound->list().size(); ++n) {
      const Value& node = inbound->list()[n];
      const std::string nwhere = where + "[" + Num(n) + "]";
      Value out = Value::Map();
      std::vector<Value> inputs;
      std::vector<Value> kwarg_inputs;  // tensors passed by keyword: edges too
      if (node.is_map()) {  // Keras 3: {"args": [...], "kwargs": {...}}
        const Value* args = Field(&node, "args");
        const Value* kwargs = Field(&node, "kwargs");
        Value args_out = Value::List(), kwargs_out = Value::Map();
        if (args != nullptr) {
          SAFEMODEL_ASSIGN_OR_RETURN(
              args_out, ConvertCallValue(*args, names, nwhere + ".args", RefForm::kKeras3, &inputs));
        }
        if (kwargs != nullptr) {
          SAFEMODEL_ASSIGN_OR_RETURN(kwargs_out,
                                     ConvertCallValue(*kwargs, names, nwhere + ".kwargs",
                                                      RefForm::kKeras3, &kwarg_inputs));
        }
        out.Set("inputs", Value::List(std::move(inputs)));
        out.Set("kwarg_inputs", Value::List(std::move(kwarg_inputs)));
        out.Set("args", std::move(args_out));
        out.Set("kwargs", std::move(kwargs_out));
      } else if (node.is_list()) {
        // Keras 2: [[name, node, tensor, kwargs], ...]; TFOpLambda drops a
        // level: [name, node, tensor, kwargs].
        std::vector<const Value*> entries;
        if (!node.list().empty() && node.list()[0].is_string()) {
          entries.push_back(&node);
        } else {
          for (const Value& e : node.list()) entries.push_back(&e);
        }
        Value kwargs = Value::Map();
        for (size_t k = 0; k < entries.size(); ++k) {
          const std::string ewhere = nwhere + "[" + Num(k) + "]";
          const Value& entry = *entries[k];
          if (!entry.is_list() || (entry.list().size() != 3 && entry.list().size() != 4)) {
            return Status::Malformed("model_config " + ewhere +
                                     " is not a [layer, node, tensor(, kwargs)] entry");
          }
          if (entry.list()[0].is_string() &&
              entry.list()[0].string_value() == kKerasConstantValue) {
            // tf.keras >= 2.4: a constant argument, [_CONSTANT_VALUE, -1,
            // value, kwargs]; the value is data, not an edge.
            Value constant = Value::Map();
            constant.Set("constant", entry.list()[2]);
            inputs.push_back(std::move(constant));
          } else {
            SAFEMODEL_ASSIGN_OR_RETURN(Value ref, GraphRef(entry, names, ewhere));
            inputs.push_back(std::move(ref));
          }
          // As tf.keras: the call arguments are the last entry's, and an
          // entry of three items has none.
          kwargs = Value::Map();
          kwarg_inputs.clear();
          if (entry.list().size() == 4) {
            SAFEMODEL_ASSIGN_OR_RETURN(kwargs,
                                       ConvertCallValue(entry.list()[3], names, ewhere + "[3]",
                                                        RefForm::kKeras2, &kwarg_inputs));
          }
        }
        out.Set("inputs", Value::List(std::move(inputs)));
        out.Set("kwarg_inputs", Value::List(std::move(kwarg_inputs)));
        out.Set("kwargs", std::move(kwargs));
      } else {
        return Status::Malformed("model_config " + nwhere + " is not a call node");
      }
      nodes.Append(std::move(out));
    }
    return nodes;
  }

  // input_layers / output_layers: a list of references, or a single one.
  Result<Value> ConvertEndpoints(const Layer& model, std::string_view key,
                                 const KeyedStringSet& names) {
    Value out = Value::List();
    const Value* v = Field(model.config, key);
    const std::string where = Sub(model.where, "config." + std::string(key));
    if (v == nullptr || v->is_null()) return out;
    if (!v->is_list()) return Status::Malformed("model_config " + where + " is not a list");
    if (!v->list().empty() && v->list()[0].is_string()) {
      SAFEMODEL_ASSIGN_OR_RETURN(Value ref, GraphRef(*v, names, where));
      out.Append(std::move(ref));
      return out;
    }
    for (size_t k = 0; k < v->list().size(); ++k) {
      SAFEMODEL_ASSIGN_OR_RETURN(Value ref, GraphRef(v->list()[k], names, where + "[" + Num(k) + "]"));
      out.Append(std::move(ref));
    }
    return out;
  }

  // ---- Weights -----------------------------------------------------------

  // The members of a model in model.layers order (Sequential's InputLayer
  // is not one of them).
  std::vector<int> ModelLayers(const Layer& model) const {
    std::vector<int> out;
    for (int c : model.children) {
      if (!layers_[static_cast<size_t>(c)].sequential_input) out.push_back(c);
    }
    return out;
  }

  Status AssignWeights(const std::vector<WeightGroup>& groups) {
    const Layer& root = layers_[0];
    if (root.kind != LayerKind::kModel) {
      return Status::Malformed("model_config describes a '" + Printable(root.class_name) +
                               "', not a model");
    }
    std::vector<int> members = ModelLayers(root);
    if (members.size() != groups.size()) {
      return Status::Malformed("the weights list " + Num(groups.size()) +
                               " layers (layer_names) but model_config has " + Num(members.size()));
    }
    for (size_t i = 0; i < members.size(); ++i) {
      Layer& l = layers_[static_cast<size_t>(members[i])];
      if (l.name != groups[i].layer) {
        return Status::Malformed(
            "layer " + Num(i) + " is '" + Printable(groups[i].layer) +
            "' in the weights (layer_names) but '" + Printable(l.name) +
            "' in model_config; Keras would load the weights into the wrong layers");
      }
      if (groups[i].tensors.empty()) continue;
      if (l.kind == LayerKind::kLeaf) {
        std::optional<std::vector<bool>> spec = LeafWeightSpec(l.class_name, *ConfigOrEmpty(l));
        if (spec.has_value() && spec->empty()) {
          return Status::Malformed("layer '" + Printable(l.path) + "' (" + Printable(l.class_name) +
                                   ") has no weights in Keras, but the file stores " +
                                   Num(groups[i].tensors.size()) + " for it");
        }
        l.weights = groups[i].tensors;
      } else {
        Distribute(members[i], groups[i].tensors);
      }
    }
    return Status::Ok();
  }

  const Value* ConfigOrEmpty(const Layer& l) const {
    static const Value kEmpty = Value::Map();
    return l.config != nullptr ? l.config : &kEmpty;
  }

  // Maps a container's flat weight list (trainable weights of every
  // sublayer, then non-trainable ones, as Keras's legacy writer orders them)
  // back onto its leaves. Falls back to keeping the list on the container.
  void Distribute(int container, const std::vector<std::string>& tensors) {
    // Pre-order with an explicit stack, then children before parents.
    std::vector<int> order, stack{container};
    while (!stack.empty()) {
      int i = stack.back();
      stack.pop_back();
      order.push_back(i);
      const Layer& l = layers_[static_cast<size_t>(i)];
      for (auto it = l.children.rbegin(); it != l.children.rend(); ++it) stack.push_back(*it);
    }
    std::unordered_map<int, std::pair<std::vector<Slot>, std::vector<Slot>>> lists;
    std::string failure;
    for (auto it = order.rbegin(); it != order.rend() && failure.empty(); ++it) {
      const Layer& l = layers_[static_cast<size_t>(*it)];
      auto& [trainable, frozen] = lists[*it];
      if (l.kind == LayerKind::kLeaf) {
        std::optional<std::vector<bool>> spec = LeafWeightSpec(l.class_name, *ConfigOrEmpty(l));
        if (!spec.has_value()) {
          failure = "the weights of '" + l.path + "' (" + l.class_name +
                    ") cannot be derived from its config";
          break;
        }
        for (size_t k = 0; k < spec->size(); ++k) {
          ((l.trainable && (*spec)[k]) ? trainable : frozen).push_back({*it, k});
        }
        continue;
      }
      for (int c : l.children) {
        if (layers_[static_cast<size_t>(c)].sequential_input) continue;
        auto& child = lists[c];
        if (l.trainable) {
          trainable.insert(trainable.end(), child.first.begin(), child.first.end());
          frozen.insert(frozen.end(), child.second.begin(), child.second.end());
        } else {
          frozen.insert(frozen.end(), child.first.begin(), child.first.end());
          frozen.insert(frozen.end(), child.second.begin(), child.second.end());
        }
      }
    }
    std::vector<Slot> slots;
    if (failure.empty()) {
      slots = lists[container].first;
      slots.insert(slots.end(), lists[container].second.begin(), lists[container].second.end());
      if (slots.size() != tensors.size()) {
        failure = "its layers define " + Num(slots.size()) + " weights but the file stores " +
                  Num(tensors.size());
      }
    }
    Layer& c = layers_[static_cast<size_t>(container)];
    if (!failure.empty()) {
      c.weights = tensors;
      notes_.push_back(
          {Finding::Severity::kNote,
           "keras.weight_mapping",
           "model_config layer '" + Printable(c.path, 400) + "'",
           "the " + Num(tensors.size()) + " weights of '" + Printable(c.path) +
               "' are kept on it in saved order, not on its sublayers: " + Printable(failure, 300),
           {}});
      return;
    }
    std::unordered_map<int, std::vector<std::pair<size_t, std::string>>> per_leaf;
    for (size_t k = 0; k < slots.size(); ++k)
      per_leaf[slots[k].layer].emplace_back(slots[k].index, tensors[k]);
    for (auto& [leaf, assigned] : per_leaf) {
      std::sort(assigned.begin(), assigned.end());
      for (auto& a : assigned)
        layers_[static_cast<size_t>(leaf)].weights.push_back(std::move(a.second));
    }
  }

  // ---- Output ------------------------------------------------------------

  Value CopyConfig(const Layer& l) const {
    Value out = Value::Map();
    if (l.config == nullptr || !l.config->is_map()) return out;
    for (const auto& [key, value] : l.config->entries()) {
      if (l.kind == LayerKind::kModel &&
          (key == "layers" || key == "input_layers" || key == "output_layers"))
        continue;
      if (l.kind == LayerKind::kWrapper && (key == "layer" || key == "backward_layer")) continue;
      if (l.derived && key == "go_backwards" && value.kind() == Value::Kind::kBool) {
        out.mutable_entries().emplace_back(key, Value::Bool(!value.bool_value()));
        continue;
      }
      out.mutable_entries().emplace_back(key, value);
    }
    if (l.derived && out.Find("go_backwards") == nullptr)
      out.Set("go_backwards", Value::Bool(true));
    if (l.derived) out.Set("name", Value::String(l.name));
    return out;
  }

  Result<Value> Emit() {
    std::vector<Value> built(layers_.size());
    for (size_t i = layers_.size(); i-- > 0;) {
      const Layer& l = layers_[i];
      Value node = Value::Map();
      node.Set("class_name", Value::String(l.class_name));
      node.Set("name", l.name.empty() ? Value::Null() : Value::String(l.name));
      if (l.derived) node.Set("derived", Value::Bool(true));
      node.Set("config", CopyConfig(l));
      if (l.in_functional) {
        const Layer& model = layers_[static_cast<size_t>(l.parent)];
        SAFEMODEL_ASSIGN_OR_RETURN(Value inbound, ConvertInboundNodes(l, MemberNames(model)));
        node.Set("inbound_nodes", std::move(inbound));
      }
      if (!l.weights.empty()) {
        Value weights = Value::List();
        for (const std::string& w : l.weights) weights.Append(Value::String(w));
        node.Set("weights", std::move(weights));
      }
      if (l.kind == LayerKind::kModel) {
        Value members = Value::List();
        for (int c : l.children) members.Append(std::move(built[static_cast<size_t>(c)]));
        node.Set("layers", std::move(members));
        if (l.functional) {
          const KeyedStringSet& names = MemberNames(l);
          SAFEMODEL_ASSIGN_OR_RETURN(Value inputs, ConvertEndpoints(l, "input_layers", names));
          SAFEMODEL_ASSIGN_OR_RETURN(Value outputs, ConvertEndpoints(l, "output_layers", names));
          node.Set("inputs", std::move(inputs));
          node.Set("outputs", std::move(outputs));
        }
      } else if (l.kind == LayerKind::kWrapper && !l.children.empty()) {
        node.Set("layer", std::move(built[static_cast<size_t>(l.children[0])]));
        if (l.children.size() > 1)
          node.Set("backward_layer", std::move(built[static_cast<size_t>(l.children[1])]));
      }
      built[i] = std::move(node);
    }
    return std::move(built[0]);
  }

  // Names of a model's members (cached: every member's edges need them).
  const KeyedStringSet& MemberNames(const Layer& model) {
    auto [it, fresh] = member_names_.try_emplace(&model);
    if (fresh) {
      for (int c : model.children) it->second.insert(layers_[static_cast<size_t>(c)].name);
    }
    return it->second;
  }

  std::vector<Layer> layers_;
  Status unsupported_;  // the first structure safemodel cannot represent
  std::vector<Finding> refusals_;
  uint64_t unlisted_refusals_ = 0;
  std::vector<Finding> notes_;
  std::unordered_map<const Layer*, KeyedStringSet> member_names_;
};

}  // namespace

Result<ConfigResult> ConvertModelConfig(const Value& model_config,
                                        const std::vector<WeightGroup>* groups,
                                        const std::vector<std::string>& model_weights) {
  Converter converter;
  return converter.Run(model_config, groups, model_weights);
}

}  // namespace safemodel::loader::keras
