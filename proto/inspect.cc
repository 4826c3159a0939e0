#include "safemodel/inspect.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "proto/base/text.h"
#include "proto/digest.h"
#include "proto/json_util.h"
#include "safemodel/display.h"

namespace safemodel {

namespace {

using Json = nlohmann::ordered_json;

std::string E(std::string_view text) { return EscapeForDisplay(text); }

// Configuration keys worth a place on a layer's line, in this order; the
// rest is in `inspect --json`.
constexpr std::string_view kKeyConfig[] = {
    "batch_input_shape", "units",     "filters",   "kernel_size", "strides",     "padding",
    "pool_size",         "activation", "rate",     "axis",        "input_dim",   "output_dim",
    "num_heads",         "key_dim",   "target_shape", "epsilon",  "return_sequences"};
// A layer line is cut after this many characters of configuration.
constexpr size_t kMaxConfigChars = 160;
// Names are padded to this width at most, so that one long name does not
// push every line right.
constexpr size_t kMaxNameColumn = 48;
// Where a layer line's class column starts.
constexpr size_t kLayerColumn = 28;

std::string ShapeText(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// SHA-256 of a tensor's stored bytes, in hex (the digest library's, as
// `verify` and the report use).
std::string Sha256Hex(std::span<const std::byte> data) {
  return ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size())));
}

std::string Pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

const std::string* StringAt(const Value& node, std::string_view key) {
  const Value* v = node.Find(key);
  return v != nullptr && v->is_string() ? &v->string_value() : nullptr;
}

// The node the layer tree starts at: a map with a class_name, the root or
// its "model" entry (the Keras schema), or null.
const Value* TreeRoot(const Value& arch) {
  if (!arch.is_map()) return nullptr;
  if (StringAt(arch, "class_name") != nullptr) return &arch;
  const Value* model = arch.Find("model");
  if (model != nullptr && model->is_map() && StringAt(*model, "class_name") != nullptr) return model;
  return nullptr;
}

// A layer's key configuration: "units=6 activation=relu".
std::string KeyConfig(const Value& layer) {
  const Value* config = layer.Find("config");
  if (config == nullptr || !config->is_map()) return "";
  std::string out;
  for (std::string_view key : kKeyConfig) {
    const Value* v = config->Find(key);
    if (v == nullptr || v->is_null()) continue;
    out += (out.empty() ? "" : " ") + std::string(key) + "=" +
           (v->is_string() ? v->string_value() : ValueToJson(*v));
  }
  if (out.size() > kMaxConfigChars) {
    size_t cut = kMaxConfigChars;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
    out = out.substr(0, cut) + "...";
  }
  return out;
}

struct LayerVisit {
  const Value* layer;
  size_t depth;
};

// Walks the layer tree depth-first in source order, with an explicit stack
// (the tree comes from an untrusted file: no recursion on it).
template <typename Fn>
void WalkLayers(const Value& root, Fn&& visit) {
  std::vector<LayerVisit> stack = {{&root, 0}};
  while (!stack.empty()) {
    const LayerVisit v = stack.back();
    stack.pop_back();
    visit(*v.layer, v.depth);
    const Value* children = v.layer->Find("layers");
    if (children == nullptr || !children->is_list()) continue;
    const auto& list = children->list();
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      if (it->is_map()) stack.push_back({&*it, v.depth + 1});
    }
  }
}

// The names a layer lists as its weights.
std::vector<std::string> LayerWeights(const Value& layer) {
  std::vector<std::string> out;
  const Value* w = layer.Find("weights");
  if (w == nullptr || !w->is_list()) return out;
  for (const Value& name : w->list()) {
    if (name.is_string()) out.push_back(name.string_value());
  }
  return out;
}

void ArchitectureText(const Model& m, std::ostringstream& o) {
  const Value& arch = m.architecture();
  const Value* root = TreeRoot(arch);
  if (arch.is_null()) {
    o << "architecture:  (none)\n";
    return;
  }
  if (root == nullptr) {
    o << "architecture:  not a layer tree; 'inspect --json' shows it\n";
    return;
  }
  o << "architecture:\n";
  WalkLayers(*root, [&](const Value& layer, size_t depth) {
    const std::string indent(2 + 2 * depth, ' ');
    const std::string* name = StringAt(layer, "name");
    const std::string* cls = StringAt(layer, "class_name");
    // Classes line up in one column for names up to kLayerColumn wide.
    const size_t width = indent.size() < kLayerColumn ? kLayerColumn - indent.size() : 0;
    std::string line = indent + Pad(E(name ? *name : "(unnamed)"), width) + "  " + E(cls ? *cls : "?");
    const std::string config = KeyConfig(layer);
    if (!config.empty()) line += "  " + E(config);
    o << line << "\n";
    for (const std::string& w : LayerWeights(layer)) {
      const TensorInfo* t = m.Find(w);
      o << indent << "    " << E(w);
      if (t != nullptr) {
        o << "  " << DTypeName(t->dtype) << " " << ShapeText(t->shape);
      } else {
        o << "  (not stored)";
      }
      o << "\n";
    }
  });
}

void TensorsText(const Model& m, std::ostringstream& o) {
  const std::vector<const TensorInfo*> order = SourceOrder(m);
  uint64_t total = 0;
  std::map<std::string, uint64_t> dtypes;
  size_t width = 0;
  for (const TensorInfo* t : order) {
    if (t->alias_of.empty()) total += t->nbytes;
    ++dtypes[std::string(DTypeName(t->dtype))];
    width = std::max(width, std::min(E(t->name).size(), kMaxNameColumn));
  }
  std::string counts;
  for (const auto& [dtype, n] : dtypes) counts += (counts.empty() ? "" : ", ") + dtype + " " + std::to_string(n);
  o << "tensors:       " << Count(order.size(), "tensor", "tensors") << ", " << HumanBytes(total)
    << (dtypes.empty() ? "" : " (" + counts + ")") << "\n";
  for (const TensorInfo* t : order) {
    o << "  " << Pad(E(t->name), width) << "  " << Pad(std::string(DTypeName(t->dtype)), 4) << " "
      << Pad(ShapeText(t->shape), 16) << "  ";
    if (t->alias_of.empty()) {
      o << HumanBytes(t->nbytes);
    } else {
      o << "alias of " << E(t->alias_of);
    }
    o << "\n";
  }
}

}  // namespace

bool NaturalLess(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const bool da = a[i] >= '0' && a[i] <= '9';
    const bool db = b[j] >= '0' && b[j] <= '9';
    if (da && db) {
      size_t ie = i, je = j;
      while (ie < a.size() && a[ie] >= '0' && a[ie] <= '9') ++ie;
      while (je < b.size() && b[je] >= '0' && b[je] <= '9') ++je;
      // Compare the numbers without converting them (any length): strip
      // leading zeros, then the longer is larger, then digit by digit.
      size_t is = i, js = j;
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      const int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      i = ie;
      j = je;
      continue;
    }
    if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
    ++i;
    ++j;
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;
}

std::vector<const TensorInfo*> SourceOrder(const Model& m) {
  // Recorded (format 1.1): a fact, not a guess.
  if (m.has_source_order()) return m.tensors_in_source_order();
  // A 1.0 file: guessed from the architecture, then natural name order.
  std::vector<const TensorInfo*> out;
  std::set<std::string_view> placed;
  if (const Value* root = TreeRoot(m.architecture())) {
    WalkLayers(*root, [&](const Value& layer, size_t) {
      for (const std::string& w : LayerWeights(layer)) {
        const TensorInfo* t = m.Find(w);
        if (t != nullptr && placed.insert(t->name).second) out.push_back(t);
      }
    });
  }
  std::vector<const TensorInfo*> rest;
  for (const TensorInfo& t : m.tensors()) {
    if (placed.count(t.name) == 0) rest.push_back(&t);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [](const TensorInfo* a, const TensorInfo* b) { return NaturalLess(a->name, b->name); });
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

// Everything printed here that came from the file (names, findings,
// provenance text, trees) is escaped: a .safemodel is built from an
// untrusted model, and its text must not drive the terminal.
std::string InspectText(const Model& m, const InspectOptions& view) {
  std::ostringstream o;
  const bool all = !view.tensors && !view.architecture;
  if (all) {
    const Provenance& p = m.provenance();
    o << "format:        .safemodel " << m.format_major() << "." << m.format_minor() << ", "
      << HumanBytes(m.file_size()) << "\n";
    o << "source:        " << E(p.source_format) << ", " << HumanBytes(p.input_size) << ", sha256 "
      << E(p.input_sha256) << "\n";
    o << "converter:     " << E(p.converter_version) << "\n";
    o << "digests:       " << DigestAlgorithmName(m.digest_algorithm()) << "\n";
    if (!p.options.empty()) {
      o << "options:      ";
      for (const auto& opt : p.options) o << " " << E(opt);
      o << "\n";
    }
    for (const Finding& f : p.findings) {
      o << Pad(std::string(SeverityName(f.severity)) + ":", 15) << E(f.message) << " (" << E(f.rule)
        << (f.location.empty() ? "" : " at " + E(f.location)) << ")\n";
    }
    if (!m.metadata().is_null()) {
      std::string meta = ValueToJson(m.metadata());
      if (meta.size() > 400) meta = meta.substr(0, 400) + "... ('inspect --json' shows all)";
      o << "metadata:      " << E(meta) << "\n";
    }
  }
  if (all || view.architecture) ArchitectureText(m, o);
  if (all || view.tensors) TensorsText(m, o);
  return o.str();
}

std::string InspectJson(const Model& m, const InspectOptions& view) {
  const bool all = !view.tensors && !view.architecture;
  Json j;
  j["schema_version"] = kInspectSchemaVersion;
  if (all) {
    const Provenance& p = m.provenance();
    j["format_version"] = std::to_string(m.format_major()) + "." + std::to_string(m.format_minor());
    j["file_size"] = m.file_size();
    j["provenance"] = {{"source_format", p.source_format},
                       {"input_sha256", p.input_sha256},
                       {"input_size", p.input_size},
                       {"converter_version", p.converter_version},
                       {"options", p.options},
                       {"findings", FindingsToJson(p.findings)}};
    j["metadata"] = Json::parse(ValueToJson(m.metadata()));
  }
  if (all || view.architecture) j["architecture"] = Json::parse(ValueToJson(m.architecture()));
  if (all || view.tensors) {
    j["digest_algorithm"] = DigestAlgorithmName(m.digest_algorithm());
    Json tensors = Json::array();
    uint64_t total = 0;
    std::map<std::string, uint64_t> dtypes;
    for (const TensorInfo* t : SourceOrder(m)) {
      Json tj = {{"name", t->name},
                 {"dtype", DTypeName(t->dtype)},
                 {"shape", t->shape},
                 {"offset", t->offset},
                 {"nbytes", t->nbytes}};
      if (t->alias_of.empty()) {
        tj["digest"] = ToHex(t->digest);
        total += t->nbytes;
      } else {
        tj["alias_of"] = t->alias_of;
      }
      if (view.sha256) tj["sha256"] = Sha256Hex(m.Data(*t));
      ++dtypes[std::string(DTypeName(t->dtype))];
      tensors.push_back(std::move(tj));
    }
    j["tensor_count"] = tensors.size();
    j["tensor_bytes"] = total;
    j["dtypes"] = dtypes;
    j["tensors"] = std::move(tensors);
  }
  return j.dump(2, ' ', false, Json::error_handler_t::replace);
}

}  // namespace safemodel
