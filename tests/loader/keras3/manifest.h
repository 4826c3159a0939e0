// The rows of tests/fixtures/keras3_tf/MANIFEST.tsv and the checks every
// test of issue 11's parsers applies to them: exit code, rule, tensors
// (against expected_tensors.json, computed by an independent reader) and
// the architecture's weight assignment. Shared by the in-process test and
// the end-to-end CLI test.
#ifndef SAFEMODEL_TESTS_LOADER_KERAS3_MANIFEST_H_
#define SAFEMODEL_TESTS_LOADER_KERAS3_MANIFEST_H_

#include <gtest/gtest.h>
#include <lzma.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/digest.h"
#include "safemodel/finding.h"
#include "safemodel/status.h"
#include "safemodel/value.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing::keras3 {

struct Row {
  std::map<std::string, std::string> fields;
  const std::string& operator[](const std::string& k) const { return fields.at(k); }
  bool weights_only() const { return fields.at("options") == "--weights-only"; }
  int exit_code() const { return std::stoi(fields.at("exit")); }
  std::string key() const {
    return fields.at("options") == "-" ? fields.at("file") : fields.at("file") + " " + fields.at("options");
  }
  bool directory() const { return !fields.at("file").empty() && fields.at("file").back() == '/'; }
  bool xz() const {
    const std::string& f = fields.at("file");
    return f.size() > 3 && f.substr(f.size() - 3) == ".xz";
  }
};

inline std::vector<Row> Manifest() {
  std::istringstream in(ReadFile(Fixture("keras3_tf/MANIFEST.tsv")));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> header;
  for (std::istringstream h(line); std::getline(h, line, '\t');) header.push_back(line);
  std::vector<Row> rows;
  while (std::getline(in, line)) {
    Row row;
    std::istringstream cells(line);
    std::string cell;
    for (size_t i = 0; std::getline(cells, cell, '\t'); ++i) {
      if (i < header.size()) row.fields[header[i]] = cell;
    }
    EXPECT_EQ(row.fields.size(), header.size()) << line;
    rows.push_back(std::move(row));
  }
  return rows;
}

inline const nlohmann::json& Expected() {
  static const nlohmann::json expected =
      nlohmann::json::parse(ReadFile(Fixture("keras3_tf/expected_tensors.json")));
  return expected;
}

// The bytes of an .xz fixture (a slim copy of a real .keras).
inline std::string XzDecode(const std::string& path) {
  const std::string packed = ReadFile(path);
  std::string plain(64u << 20, '\0');
  uint64_t memlimit = 1ull << 30;
  size_t in_pos = 0, out_pos = 0;
  lzma_ret r = lzma_stream_buffer_decode(&memlimit, 0, nullptr,
                                         reinterpret_cast<const uint8_t*>(packed.data()), &in_pos,
                                         packed.size(), reinterpret_cast<uint8_t*>(plain.data()),
                                         &out_pos, plain.size());
  if (r != LZMA_OK) return "";
  plain.resize(out_pos);
  return plain;
}

// What an exit-3 status must say to name the rule of its row. Parsers of
// issue 11 write "[rule]" into their messages; the zip reader and libhdf5
// path, which are older, name the defect in words.
inline bool NamesRule(const std::string& message, const std::string& rule) {
  if (message.find("[" + rule + "]") != std::string::npos) return true;
  static const std::map<std::string, std::vector<std::string>> kWords = {
      {"zip.duplicate_name", {"appears twice"}},
      {"zip.member_name", {"absolute name", "'.' or '..' component", "backslash"}},
      {"zip.symlink", {"symbolic link"}},
      {"hdf5.malformed", {"HDF5", "libhdf5"}},
  };
  auto it = kWords.find(rule);
  if (it == kWords.end()) return false;
  for (const std::string& w : it->second) {
    if (message.find(w) != std::string::npos) return true;
  }
  return false;
}

struct Outcome {
  Status status;
  std::vector<Finding> findings;
  // name -> (dtype name, shape, sha256 hex of the little-endian C-order bytes)
  struct T {
    std::string dtype;
    std::vector<uint64_t> shape;
    std::string sha256;
  };
  std::map<std::string, T> tensors;
  Value architecture;
};

// Every layer of an architecture tree with weights: layer path -> weights.
// A Bidirectional's forward layer is named "forward_<name>", as Keras names
// the copy it makes.
inline std::map<std::string, std::vector<std::string>> LayerWeights(const Value& model) {
  std::map<std::string, std::vector<std::string>> out;
  struct Item {
    const Value* node;
    std::string path;
  };
  auto name = [](const Value& n) {
    const Value* v = n.is_map() ? n.Find("name") : nullptr;
    return v != nullptr && v->is_string() ? v->string_value() : std::string();
  };
  std::vector<Item> stack{{&model, name(model)}};
  while (!stack.empty()) {
    Item it = stack.back();
    stack.pop_back();
    const Value& n = *it.node;
    if (const Value* w = n.Find("weights"); w != nullptr && w->is_list()) {
      for (const Value& s : w->list()) out[it.path].push_back(s.string_value());
    }
    if (const Value* layers = n.Find("layers"); layers != nullptr && layers->is_list()) {
      for (const Value& m : layers->list()) stack.push_back({&m, it.path + "/" + name(m)});
    }
    const Value* cls = n.Find("class_name");
    const bool bidi = cls != nullptr && cls->is_string() && cls->string_value() == "Bidirectional";
    if (const Value* l = n.Find("layer"); l != nullptr && l->is_map()) {
      stack.push_back({l, it.path + "/" + (bidi ? "forward_" : "") + name(*l)});
    }
    if (const Value* b = n.Find("backward_layer"); b != nullptr && b->is_map()) {
      stack.push_back({b, it.path + "/" + name(*b)});
    }
  }
  return out;
}

// The problems of one outcome against its row; empty when the row holds.
inline std::vector<std::string> Check(const Row& row, const Outcome& o) {
  std::vector<std::string> problems;
  const int want = row.exit_code();
  const int got = ExitCodeFor(o.status.code());
  const std::string& rule = row["rule"];
  if (got != want) {
    problems.push_back("exit " + std::to_string(got) + ", expected " + std::to_string(want) + ": " +
                       o.status.ToString());
    return problems;
  }
  auto has_finding = [&](bool refused_only) {
    for (const Finding& f : o.findings) {
      if (f.rule == rule && (!refused_only || f.severity == Finding::Severity::kRefused)) return true;
    }
    return false;
  };
  if (want == 1 && !has_finding(true)) problems.push_back("no refusal with rule " + rule);
  if (want == 0 && rule != "-" && !has_finding(false)) problems.push_back("no finding with rule " + rule);
  if ((want == 2 || want == 3) && !NamesRule(o.status.message(), rule)) {
    problems.push_back("the status does not name " + rule + ": " + o.status.ToString());
  }
  if (want != 0) return problems;
  const nlohmann::json& e = Expected()[row.key()];
  std::set<std::string> kept;
  for (const auto& [name, t] : e["tensors"].items()) {
    if (t["role"] != "weight") continue;
    kept.insert(name);
    auto it = o.tensors.find(name);
    if (it == o.tensors.end()) {
      problems.push_back("missing tensor " + name);
      continue;
    }
    if (it->second.dtype != t["dtype"].get<std::string>()) problems.push_back(name + ": dtype " + it->second.dtype);
    if (it->second.shape != t["shape"].get<std::vector<uint64_t>>()) problems.push_back(name + ": shape");
    if (it->second.sha256 != t["sha256"].get<std::string>()) problems.push_back(name + ": bytes differ");
  }
  for (const auto& [name, t] : o.tensors) {
    if (!kept.count(name)) problems.push_back("unexpected tensor " + name);
  }
  if (!e.contains("layers")) return problems;
  // The assignment of tensors to layers: by layer path when the output has
  // the model, else as groups (weights-only outputs name groups by store path).
  std::map<std::string, std::vector<std::string>> want_layers;
  for (const auto& [layer, names] : e["layers"].items()) {
    want_layers[layer] = names.get<std::vector<std::string>>();
  }
  const Value* model = o.architecture.is_map() ? o.architecture.Find("model") : nullptr;
  if (model != nullptr && !row.weights_only()) {
    if (LayerWeights(*model) != want_layers) problems.push_back("layer weights differ from the expected assignment");
    return problems;
  }
  std::multiset<std::vector<std::string>> want_groups, got_groups;
  for (const auto& [layer, names] : want_layers) want_groups.insert(names);
  const Value* groups = o.architecture.is_map() ? o.architecture.Find("weight_groups") : nullptr;
  if (groups != nullptr && groups->is_list()) {
    for (const Value& g : groups->list()) {
      std::vector<std::string> names;
      for (const Value& w : g.Find("weights")->list()) names.push_back(w.string_value());
      got_groups.insert(names);
    }
  }
  if (want_groups != got_groups) problems.push_back("weight groups differ from the expected layers");
  return problems;
}

}  // namespace safemodel::testing::keras3

#endif  // SAFEMODEL_TESTS_LOADER_KERAS3_MANIFEST_H_
