#include "safemodel/inspect.h"

#include <nlohmann/json.hpp>

#include <sstream>

#include "proto/digest.h"
#include "proto/json_util.h"
#include "safemodel/display.h"

namespace safemodel {

namespace {

using Json = nlohmann::ordered_json;

std::string ShapeText(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

ByteView Bytes(const Model& m, const TensorInfo& t) {
  auto s = m.Data(t);
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}


// Trees can be large (a MobileNet is ~100 KB of JSON): the text view shows the
// start; `inspect --json` has the whole tree. JSON escapes C0 controls but
// keeps C1 and bidirectional characters raw, so the text is escaped too.
std::string Shorten(const Value& v) {
  constexpr size_t kMaxChars = 400;
  if (v.is_null()) return "(none)";
  std::string json = ValueToJson(v);
  if (json.size() <= kMaxChars) return EscapeForDisplay(json);
  size_t cut = kMaxChars;
  while (cut > 0 && (static_cast<unsigned char>(json[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
  return EscapeForDisplay(json.substr(0, cut)) + " ... (" + std::to_string(json.size()) +
         " characters; inspect --json shows all)";
}

}  // namespace

// Everything printed here that came from the file (names, findings,
// provenance text, trees) goes through EscapeForDisplay: a .safemodel is
// built from an untrusted model, and its text must not drive the terminal.
std::string InspectText(const Model& m) {
  const auto& E = EscapeForDisplay;
  std::ostringstream o;
  const Provenance& p = m.provenance();
  o << "format:        .safemodel " << m.format_major() << "." << m.format_minor() << " ("
    << m.file_size() << " bytes)\n";
  o << "source:        " << E(p.source_format) << ", " << p.input_size << " bytes, sha256 "
    << p.input_sha256 << "\n";
  o << "converter:     " << E(p.converter_version) << "\n";
  o << "digests:       " << DigestAlgorithmName(m.digest_algorithm()) << "\n";
  if (!p.options.empty()) {
    o << "options:      ";
    for (const auto& opt : p.options) o << " " << E(opt);
    o << "\n";
  }
  for (const Finding& f : p.findings) {
    o << SeverityName(f.severity) << ":       " << E(f.rule) << " at " << E(f.location) << ": "
      << E(f.message);
    for (size_t k = 0; k < f.references.size(); ++k) o << (k ? ", " : " [") << E(f.references[k]);
    o << (f.references.empty() ? "" : "]") << "\n";
  }
  o << "architecture:  " << Shorten(m.architecture()) << "\n";
  if (!m.metadata().is_null()) o << "metadata:      " << Shorten(m.metadata()) << "\n";
  o << "tensors:       " << m.tensors().size() << "\n";
  for (const TensorInfo& t : m.tensors()) {
    o << "  " << E(t.name) << "  " << DTypeName(t.dtype) << " " << ShapeText(t.shape);
    if (t.alias_of.empty()) {
      o << "  " << t.nbytes << " bytes @ " << t.offset;
    } else {
      o << "  alias of " << E(t.alias_of);
    }
    o << "\n";
  }
  return o.str();
}

std::string InspectJson(const Model& m) {
  const Provenance& p = m.provenance();
  Json j;
  j["format_version"] = std::to_string(m.format_major()) + "." + std::to_string(m.format_minor());
  j["file_size"] = m.file_size();
  j["provenance"] = {{"source_format", p.source_format},
                     {"input_sha256", p.input_sha256},
                     {"input_size", p.input_size},
                     {"converter_version", p.converter_version},
                     {"options", p.options},
                     {"findings", FindingsToJson(p.findings)}};
  j["digest_algorithm"] = DigestAlgorithmName(m.digest_algorithm());
  j["architecture"] = Json::parse(ValueToJson(m.architecture()));
  j["metadata"] = Json::parse(ValueToJson(m.metadata()));
  Json tensors = Json::array();
  for (const TensorInfo& t : m.tensors()) {
    Json tj = {{"name", t.name},
               {"dtype", DTypeName(t.dtype)},
               {"shape", t.shape},
               {"offset", t.offset},
               {"nbytes", t.nbytes}};
    if (!t.alias_of.empty()) tj["alias_of"] = t.alias_of;
    tj["sha256"] = ToHex(Sha256(Bytes(m, t)));
    if (t.alias_of.empty()) tj["digest"] = ToHex(t.digest);
    tensors.push_back(std::move(tj));
  }
  j["tensors"] = std::move(tensors);
  return j.dump(2, ' ', false, Json::error_handler_t::replace);
}

}  // namespace safemodel
