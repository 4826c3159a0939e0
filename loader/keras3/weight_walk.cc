#include "loader/keras3/weight_walk.h"

#include <map>
#include <optional>

#include "loader/keras_h5/keras_layers.h"
#include "proto/base/byte_reader.h"
#include "proto/base/text.h"

namespace safemodel::loader::keras3 {

namespace {

Status Bad(const std::string& message) { return Status::Malformed(message + " [keras.weights]"); }

const Value* Field(const Value& map, std::string_view key) {
  return map.is_map() ? map.Find(key) : nullptr;
}

std::string StringField(const Value& map, std::string_view key) {
  const Value* v = Field(map, key);
  return v != nullptr && v->is_string() ? v->string_value() : std::string();
}

bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }

std::string Join(const std::string& a, std::string_view b) {
  return a.empty() ? std::string(b) : a + "/" + std::string(b);
}

bool IsRnn(std::string_view c) {
  for (std::string_view r : {"SimpleRNN", "LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}) {
    if (c == r) return true;
  }
  return false;
}

// Where a leaf layer keeps its variables, relative to its own path.
std::vector<std::string_view> SubPaths(std::string_view c) {
  if (IsRnn(c)) return {"cell"};
  if (c == "MultiHeadAttention") return {"_query_dense", "_key_dense", "_value_dense", "_output_dense"};
  return {""};
}

// The variable count Keras gives the layer, or nullopt when the config does
// not pin it down (the store's count is then taken as it is).
std::optional<size_t> ExpectedCountImpl(std::string_view c, const Value& config) {
  if (c == "Normalization") {
    // Keras 3 keeps mean/variance given in the config as constants; adapted
    // statistics are variables (Keras 3: 2, tf.keras: 3).
    const Value* mean = Field(config, "mean");
    if (mean != nullptr && !mean->is_null()) return 0;
    return std::nullopt;
  }
  std::optional<std::vector<bool>> spec = keras::LeafWeightSpec(c, config);
  if (!spec.has_value()) return std::nullopt;
  return spec->size();
}

// Does this subtree own variables (tf.keras 2.13's counter depends on it)?
bool HasWeightsImpl(const Value& node) {
  std::vector<const Value*> stack{&node};
  while (!stack.empty()) {
    const Value* n = stack.back();
    stack.pop_back();
    bool container = false;
    for (std::string_view key : {"layers", "layer", "backward_layer"}) {
      const Value* v = Field(*n, key);
      if (v == nullptr) continue;
      container = true;
      if (v->is_list()) {
        for (const Value& m : v->list()) stack.push_back(&m);
      } else if (v->is_map()) {
        stack.push_back(v);
      }
    }
    if (container) continue;
    const Value* config = Field(*n, "config");
    std::optional<size_t> count =
        ExpectedCountImpl(StringField(*n, "class_name"), config ? *config : Value::Map());
    if (count.value_or(0) > 0) return true;
  }
  return false;
}

// "0", "1", ... without leading zeros.
std::optional<size_t> KeyIndex(const std::string& key) {
  if (key.empty() || key.size() > 9 || (key.size() > 1 && key[0] == '0')) return std::nullopt;
  size_t v = 0;
  for (char c : key) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<size_t>(c - '0');
  }
  return v;
}

class Walker {
 public:
  Walker(const WeightStore& store, Writer writer) : store_(store), writer_(writer) {
    for (const StoreGroup& g : store.groups) {
      if (g.path.rfind("_layer_checkpoint_dependencies", 0) == 0) compat_ = true;
    }
  }

  Result<std::vector<Assigned>> Run(Value* root) {
    std::vector<Work> stack{{root, "", StringField(*root, "name")}};
    while (!stack.empty()) {
      Work w = std::move(stack.back());
      stack.pop_back();
      Value& node = *w.node;
      const std::string cls = StringField(node, "class_name");
      Value* layers = MutableField(node, "layers");
      Value* inner = MutableField(node, "layer");
      if (layers != nullptr && layers->is_list()) {
        // A model's own variables (usually none) are in its own group.
        SAFEMODEL_RETURN_IF_ERROR(Take(node, w.path, w.layer, {""}, std::nullopt));
        std::vector<Work> members = Members(cls, *layers, w.path, w.layer);
        for (auto it = members.rbegin(); it != members.rend(); ++it) stack.push_back(std::move(*it));
      } else if (inner != nullptr && inner->is_map()) {
        if (cls == "Bidirectional") {
          if (Value* backward = MutableField(node, "backward_layer"); backward != nullptr) {
            stack.push_back({backward, Join(w.path, "backward_layer"),
                             w.layer + "/" + StringField(*backward, "name")});
          }
          stack.push_back({inner, Join(w.path, "forward_layer"),
                           w.layer + "/forward_" + StringField(*inner, "name")});
        } else {
          stack.push_back({inner, Join(w.path, "layer"), w.layer + "/" + StringField(*inner, "name")});
        }
      } else {
        const Value* config = Field(node, "config");
        SAFEMODEL_RETURN_IF_ERROR(Take(node, w.path, w.layer, SubPaths(cls),
                                       ExpectedCountImpl(cls, config ? *config : Value::Map())));
      }
    }
    return std::move(assigned_);
  }

 private:
  struct Work {
    Value* node;
    std::string path;   // in the store
    std::string layer;  // layer names joined by '/'
  };

  static Value* MutableField(Value& map, std::string_view key) {
    if (!map.is_map()) return nullptr;
    for (auto& [k, v] : map.mutable_entries()) {
      if (k == key) return &v;
    }
    return nullptr;
  }

  // A model's members in model.layers order, with their store paths.
  std::vector<Work> Members(const std::string& cls, Value& layers, const std::string& path,
                            const std::string& layer) const {
    std::vector<Work> out;
    const bool keras3_names = writer_ == Writer::kKeras3 || writer_ == Writer::kTfKeras215;
    const std::string container = keras3_names ? "layers" : "_layer_checkpoint_dependencies";
    std::map<std::string, uint64_t> used;
    for (Value& m : layers.mutable_list()) {
      const std::string mcls = StringField(m, "class_name");
      if (cls == "Sequential" && mcls == "InputLayer") continue;  // not in model.layers
      const int visits = writer_ == Writer::kTfKeras213 && HasWeightsImpl(m) ? 2 : 1;
      std::string first;
      for (int v = 0; v < visits; ++v) {
        std::string name = SnakeCase(mcls);
        auto [it, fresh] = used.try_emplace(name, 0);
        if (!fresh) name += "_" + Num(++it->second);
        if (v == 0) first = name;
      }
      out.push_back({&m, Join(path, container + "/" + first), layer + "/" + StringField(m, "name")});
    }
    return out;
  }

  const StoreGroup* Lookup(const std::string& path) const {
    if (const StoreGroup* g = store_.Find(path)) return g;
    if (writer_ != Writer::kKeras3 || !compat_) return nullptr;
    // Keras 3's H5IOStore.get: path.replace("layers", "_layer_checkpoint_dependencies").
    std::string alt;
    for (size_t i = 0; i < path.size();) {
      if (path.compare(i, 6, "layers") == 0) {
        alt += "_layer_checkpoint_dependencies";
        i += 6;
      } else {
        alt += path[i++];
      }
    }
    return store_.Find(alt);
  }

  // The variables of groups path/sub for each sub, in key order; checks
  // them as Keras's load_own_variables does.
  Status Take(Value& node, const std::string& path, const std::string& layer,
              const std::vector<std::string_view>& subs, std::optional<size_t> expected) {
    std::vector<std::string> names;
    size_t total = 0;
    std::vector<std::string> missing;
    for (std::string_view sub : subs) {
      const std::string p = sub.empty() ? path : Join(path, sub);
      const StoreGroup* g = Lookup(p);
      if (g == nullptr) {
        missing.push_back(p);
        continue;
      }
      std::vector<const StoreVar*> ordered(g->vars.size(), nullptr);
      for (const StoreVar& v : g->vars) {
        std::optional<size_t> k = v.is_dataset ? KeyIndex(v.key) : std::nullopt;
        if (!k.has_value() || *k >= ordered.size()) {
          return Bad("layer '" + Printable(layer) + "': group '" + Printable(g->stored) +
                     "/vars' holds '" + Printable(v.key) + "'; Keras reads the variables \"0\" to \"" +
                     Num(g->vars.size() - 1) + "\" of a group of " + Num(g->vars.size()));
        }
        ordered[*k] = &v;
      }
      total += ordered.size();
      for (const StoreVar* v : ordered) names.push_back(v->tensor_name);
      if (!ordered.empty()) assigned_.push_back({layer, g, ordered});
    }
    if (subs.size() > 1 || (subs.size() == 1 && !subs[0].empty())) {
      // The layer's own group must not hold variables of its own.
      if (const StoreGroup* own = Lookup(path); own != nullptr && !own->vars.empty()) {
        return Bad("layer '" + Printable(layer) + "': group '" + Printable(own->stored) +
                   "/vars' holds variables, but the layer keeps them in its sublayers");
      }
    }
    if (expected.has_value() && *expected != total) {
      return Bad("layer '" + Printable(layer) + "' (" + Printable(StringField(node, "class_name")) +
                 ") has " + Num(*expected) + " variables in Keras, but the store holds " +
                 Num(total) +
                 (missing.empty() ? std::string() : " (no group '" + Printable(missing[0]) + "')") +
                 "; Keras's load fails");
    }
    if (!names.empty()) {
      Value list = Value::List();
      for (std::string& n : names) list.Append(Value::String(std::move(n)));
      node.Set("weights", std::move(list));
    }
    return Status::Ok();
  }

  const WeightStore& store_;
  Writer writer_;
  bool compat_ = false;
  std::vector<Assigned> assigned_;
};

}  // namespace

std::string SnakeCase(std::string_view in) {
  // re.sub(r"\W+", "", name): keep word characters (non-ASCII bytes are
  // kept: Python's \w includes letters of every script).
  std::string s;
  for (char c : in) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x80 || c == '_' || IsUpper(c) || IsLower(c) || (c >= '0' && c <= '9')) s += c;
  }
  // re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
  std::string a;
  for (size_t i = 0; i < s.size();) {
    if (i + 2 < s.size() && IsUpper(s[i + 1]) && IsLower(s[i + 2])) {
      size_t end = i + 3;
      while (end < s.size() && IsLower(s[end])) ++end;
      a += s[i];
      a += '_';
      a.append(s, i + 1, end - i - 1);
      i = end;
    } else {
      a += s[i++];
    }
  }
  // re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
  std::string b;
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && IsLower(a[i]) && IsUpper(a[i + 1])) {
      b += a[i];
      b += '_';
      b += a[i + 1];
      i += 2;
    } else {
      b += a[i++];
    }
  }
  for (char& c : b) {
    if (IsUpper(c)) c = static_cast<char>(c - 'A' + 'a');
  }
  return b;
}

Result<Writer> WriterFromVersion(std::string_view v) {
  auto number = [&](size_t& i) {
    uint64_t n = 0;
    bool any = false;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9' && n < 1000000) {
      n = n * 10 + static_cast<uint64_t>(v[i++] - '0');
      any = true;
    }
    return any ? std::optional<uint64_t>(n) : std::nullopt;
  };
  size_t i = 0;
  std::optional<uint64_t> major = number(i);
  std::optional<uint64_t> minor;
  if (major.has_value() && i < v.size() && v[i] == '.') {
    ++i;
    minor = number(i);
  }
  if (major == 3u) return Writer::kKeras3;
  if (major == 2u && minor.has_value()) {
    if (*minor == 13) return Writer::kTfKeras213;
    if (*minor == 14) return Writer::kTfKeras214;
    if (*minor >= 15) return Writer::kTfKeras215;
  }
  return Status::Unsupported("metadata.json names keras_version '" + Printable(v) +
                             "', which did not write the .keras format safemodel reads "
                             "(tf.keras 2.13 and later) [keras.version]");
}

std::optional<size_t> ExpectedWeightCount(std::string_view class_name, const Value& config) {
  return ExpectedCountImpl(class_name, config);
}

bool LayerHasWeights(const Value& node) { return HasWeightsImpl(node); }

Result<std::vector<Assigned>> AssignStoreWeights(Value* model, const WeightStore& store,
                                                 Writer writer) {
  Walker walker(store, writer);
  return walker.Run(model);
}

}  // namespace safemodel::loader::keras3
