#include "loader/keras3/keras_archive.h"

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "loader/keras3/compile_config.h"
#include "loader/keras3/weight_store.h"
#include "loader/keras3/weight_walk.h"
#include "loader/keras_h5/json_value.h"
#include "loader/keras_h5/keras_config.h"
#include "loader/numpy/npy.h"
#include "loader/pickle/pickle_formats.h"
#include "proto/base/text.h"

namespace safemodel::loader {

namespace {

using keras3::Assigned;
using keras3::StoreGroup;
using keras3::WeightStore;
using keras3::Writer;

constexpr char kSchema[] = "safemodel.keras/1";
// Paths listed in one finding; the count is always given.
constexpr size_t kMaxListed = 20;

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

Value StringList(const std::vector<std::string>& items) {
  Value v = Value::List();
  for (const std::string& s : items) v.Append(Value::String(s));
  return v;
}

std::string ListNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < kMaxListed; ++i) {
    out += (i ? ", '" : "'") + Printable(names[i]) + "'";
  }
  if (names.size() > kMaxListed) out += ", ...";
  return out;
}

bool IsOptimizerPath(std::string_view p) { return p == "optimizer" || StartsWith(p, "optimizer/"); }
bool IsMetricsPath(std::string_view p) { return p == "metrics" || StartsWith(p, "metrics/"); }

// The tensors of a store, the groups they came from, and what was left.
struct StoreOutput {
  std::vector<std::string> optimizer_weights;
  Value weight_groups = Value::List();
};

// A group's datasets in numeric key order ("0", "1", ..., "10"), as Keras
// asks for them; HDF5 lists them as strings ("0", "1", "10", "2").
std::vector<const keras3::StoreVar*> NumericOrder(const StoreGroup& g) {
  std::vector<const keras3::StoreVar*> vars;
  for (const keras3::StoreVar& v : g.vars) {
    if (v.is_dataset) vars.push_back(&v);
  }
  std::stable_sort(vars.begin(), vars.end(), [](const auto* x, const auto* y) {
    return x->key.size() != y->key.size() ? x->key.size() < y->key.size() : x->key < y->key;
  });
  return vars;
}

// Produces the tensors of `assigned` (in order), then the optimizer's (kept
// or dropped), and reports metrics and everything no layer took.
Status EmitTensors(const WeightStore& store, const std::vector<Assigned>& assigned,
                   const std::string& where, bool with_layers, ParseContext& ctx,
                   ParsedModel* out, StoreOutput* result) {
  std::set<const StoreGroup*> taken;
  for (const Assigned& a : assigned) {
    taken.insert(a.group);
    std::vector<std::string> names;
    for (const keras3::StoreVar* v : a.vars) {
      SAFEMODEL_ASSIGN_OR_RETURN(Tensor t, v->make(v->tensor_name));
      out->tensors.push_back(std::move(t));
      names.push_back(v->tensor_name);
    }
    Value g = Value::Map();
    if (with_layers) g.Set("layer", Value::String(a.layer));
    g.Set("path", Value::String(a.group->path));
    g.Set("weights", StringList(names));
    result->weight_groups.Append(std::move(g));
  }
  uint64_t optimizer = 0, metrics = 0;
  std::vector<std::string> unreferenced = store.stray;
  for (const StoreGroup& g : store.groups) {
    if (taken.count(&g) || g.vars.empty()) continue;
    if (IsOptimizerPath(g.path) && ctx.options().keep_optimizer) {
      for (const keras3::StoreVar* v : NumericOrder(g)) {
        SAFEMODEL_ASSIGN_OR_RETURN(Tensor t, v->make(v->tensor_name));
        out->tensors.push_back(std::move(t));
        result->optimizer_weights.push_back(v->tensor_name);
      }
    } else if (IsOptimizerPath(g.path)) {
      optimizer += g.vars.size();
    } else if (IsMetricsPath(g.path)) {
      metrics += g.vars.size();
    } else {
      for (const keras3::StoreVar& v : g.vars) unreferenced.push_back(v.tensor_name);
    }
  }
  if (optimizer > 0) {
    ctx.Drop("keras.optimizer", where + " optimizer",
             Num(optimizer) + " optimizer state tensor(s) are not converted (the keep-optimizer "
                              "option keeps them)");
  }
  if (metrics > 0) {
    ctx.Drop("keras.metrics", where + " metrics", Num(metrics) + " metric state tensor(s) are not converted");
  }
  if (!unreferenced.empty()) {
    ctx.Drop("keras.unreferenced_dataset", where,
             Num(unreferenced.size()) + " dataset(s) that no layer of the model loads are not "
                                        "converted (Keras never reads them): " + ListNames(unreferenced));
  }
  if (store.big_endian > 0) {
    ctx.Note("hdf5.byte_order", where, Num(store.big_endian) + " big-endian dataset(s) converted to little-endian");
  }
  if (store.widened_bf16 > 0) {
    ctx.Note("hdf5.bfloat16_layout", where,
             Num(store.widened_bf16) + " dataset(s) of 2-byte floats with bfloat16's layout converted "
                                       "to float32, as h5py returns them");
  }
  return Status::Ok();
}

// Every group with variables, as a weights-only store is read.
std::vector<Assigned> AllGroups(const WeightStore& store) {
  std::vector<Assigned> out;
  for (const StoreGroup& g : store.groups) {
    if (g.vars.empty() || IsOptimizerPath(g.path) || IsMetricsPath(g.path)) continue;
    out.push_back({g.path, &g, NumericOrder(g)});
  }
  return out;
}

Value WeightsOnlyArchitecture(Value groups) {
  Value arch = Value::Map();
  arch.Set("schema", Value::String(kSchema));
  arch.Set("kind", Value::String("keras3_weights"));
  arch.Set("weight_groups", std::move(groups));
  return arch;
}

class ArchiveReader {
 public:
  ArchiveReader(std::shared_ptr<ZipArchive> zip, keras3::H5StoreOpener open_h5, ParseContext& ctx)
      : zip_(std::move(zip)), open_h5_(open_h5), ctx_(ctx) {}

  Status Read(ParsedModel* out) {
    SAFEMODEL_RETURN_IF_ERROR(Classify());
    // Code anywhere is looked for before anything is called broken, so
    // that a file both malformed and carrying code is refused for the code.
    Status config = ReadConfig();
    Status metadata = ReadMetadata();
    Status store = OpenStore();
    Status unknown = ScanUnknownMembers();
    if (ctx_.refused()) return ctx_.RefusedStatus();
    for (const Status* s : {&config, &metadata, &store, &unknown}) SAFEMODEL_RETURN_IF_ERROR(*s);
    return Assemble(out);
  }

 private:
  Result<ByteView> Contents(const ZipEntry& e) {
    auto holder = std::make_shared<OwnedBuffer>();
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView bytes, zip_->Contents(e, ctx_.options().memory_limit, holder.get()));
    keep_.push_back(holder);
    return bytes;
  }

  Status Classify() {
    for (const ZipEntry& e : zip_->entries()) {
      if (e.name == "config.json") {
        config_ = &e;
      } else if (e.name == "metadata.json") {
        metadata_ = &e;
      } else if (e.name == "model.weights.h5" || e.name == "model.weights.npz" ||
                 e.name == "model.weights.json") {
        stores_.push_back(&e);
      } else if (StartsWith(e.name, "assets/")) {
        if (!e.is_directory()) assets_.emplace_back(e.name);
      } else {
        others_.push_back(&e);
      }
    }
    if (stores_.size() > 1) {
      std::vector<std::string> names;
      for (const ZipEntry* e : stores_) names.emplace_back(e->name);
      return Status::Malformed("the archive holds " + ListNames(names) +
                               ": two weight stores, two answers to what the weights are "
                               "(Keras reads the first it finds) [keras.weight_store]");
    }
    return Status::Ok();
  }

  Status ReadMetadata() {
    if (metadata_ == nullptr) {
      ctx_.Note("keras.metadata", "archive",
                "no metadata.json (Keras never reads it on load); the weights are located as "
                "Keras 3 locates them");
      return Status::Ok();
    }
    if (metadata_->uncompressed_size > kMaxKerasMetadataBytes) {
      return Status::Malformed("metadata.json is larger than " + Num(kMaxKerasMetadataBytes) +
                               " bytes [keras.metadata]");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView bytes, Contents(*metadata_));
    Result<Value> doc = ParseJson(AsChars(bytes), "metadata.json");
    if (!doc.ok()) return Status::Malformed(doc.status().message() + " [keras.metadata]");
    const Value* version = doc->is_map() ? doc->Find("keras_version") : nullptr;
    if (version == nullptr || !version->is_string()) {
      return Status::Malformed("metadata.json has no keras_version string [keras.metadata]");
    }
    keras_version_ = version->string_value();
    SAFEMODEL_ASSIGN_OR_RETURN(writer_, keras3::WriterFromVersion(*keras_version_));
    return Status::Ok();
  }

  Status ReadConfig() {
    if (config_ == nullptr) {
      return Status::Malformed("the archive has no config.json: no model to convert [keras.config]");
    }
    if (config_->uncompressed_size > kMaxJsonBytes) {
      return Status::LimitExceeded("config.json is larger than " + Num(kMaxJsonBytes) + " bytes");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView bytes, Contents(*config_));
    Result<Value> doc = ParseJson(AsChars(bytes), "config.json");
    if (!doc.ok()) return Status::Malformed(doc.status().message() + " [keras.config]");
    if (!doc->is_map()) return Status::Malformed("config.json is not a JSON object [keras.config]");
    Value root = Value::Map();
    for (const auto& [key, value] : doc->entries()) {
      if (key == "compile_config") {
        if (!value.is_null()) {
          keras::ScanAndDropCompileConfig(value, "config.json compile_config", "keras.compile_config", ctx_);
        }
        continue;
      }
      root.mutable_entries().emplace_back(key, value);
    }
    Result<keras::ConfigResult> converted = keras::ConvertModelConfig(root, nullptr, {});
    if (!converted.ok()) {
      if (converted.status().code() == StatusCode::kUnsupported && ctx_.options().weights_only) {
        ctx_.Drop("keras.architecture", "config.json",
                  "the architecture is left out (weights only): " + converted.status().message());
        return Status::Ok();
      }
      return converted.status();
    }
    for (Finding& f : converted->notes) ctx_.Note(f.rule, Relocate(f.location), f.message);
    if (converted->refusals.empty()) {
      model_ = std::move(converted->model);
      return Status::Ok();
    }
    for (Finding& f : converted->refusals) {
      if (!ctx_.options().weights_only) {
        ctx_.Refuse(f.rule, Relocate(f.location), f.message, f.references);
        continue;
      }
      std::string refs;
      for (const std::string& r : f.references) refs += (refs.empty() ? "" : ", ") + Printable(r);
      ctx_.Drop(f.rule, Relocate(f.location),
                "not converted (weights only): " + f.message +
                    (refs.empty() ? "" : " [references: " + refs + "]"));
    }
    if (ctx_.options().weights_only) {
      ctx_.Drop("keras.architecture", "config.json",
                "the architecture is left out (weights only): it holds " +
                    Num(converted->refusals.size()) +
                    " item(s) safemodel refuses to represent; only tensors are converted");
    }
    return Status::Ok();
  }

  static std::string Relocate(const std::string& location) {
    constexpr std::string_view kFrom = "model_config";
    return StartsWith(location, kFrom) ? "config.json" + location.substr(kFrom.size()) : location;
  }

  Status OpenStore() {
    if (stores_.empty()) {
      return Status::Malformed("the archive has no model.weights.h5 or model.weights.npz (Keras: "
                               "\"Expected a model.weights.h5 or model.weights.npz file\") "
                               "[keras.weight_store]");
    }
    const ZipEntry& e = *stores_[0];
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView bytes, Contents(e));
    const std::string where = "'" + std::string(e.name) + "'";
    if (e.name == "model.weights.h5") {
      SAFEMODEL_ASSIGN_OR_RETURN(store_, open_h5_(bytes, where, ctx_));
    } else if (e.name == "model.weights.npz") {
      SAFEMODEL_ASSIGN_OR_RETURN(store_, keras3::OpenNpzStore(bytes, where, ctx_));
    } else {
      std::vector<keras3::NamedBytes> shards;
      for (const ZipEntry* o : others_) {
        if (o->name.find('/') != std::string::npos) continue;  // not a plain member name
        SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Contents(*o));
        shards.push_back({std::string(o->name), b});
      }
      SAFEMODEL_ASSIGN_OR_RETURN(store_, keras3::OpenShardedStore(bytes, where, shards, open_h5_, ctx_));
      for (const std::string& n : store_.used_files) shard_names_.insert(n);
      ctx_.Note("keras.sharded_in_archive", where,
                "a sharded weight store inside the archive: Keras itself (up to 3.15) never writes "
                "one and cannot load it (load_model needs model.weights.h5 or .npz)");
    }
    return Status::Ok();
  }

  // Members Keras does not read are still extracted by it (more than three
  // members): a pickle among them is code on disk, and anything else is not
  // a file this parser understands.
  Status ScanUnknownMembers() {
    std::vector<std::string> unknown;
    for (const ZipEntry* e : others_) {
      if (shard_names_.count(std::string(e->name))) continue;
      unknown.emplace_back(e->name);
      OwnedBuffer holder;  // released after the scan: nothing of it is output
      Result<ByteView> bytes = zip_->Contents(*e, ctx_.options().memory_limit, &holder);
      if (!bytes.ok()) continue;
      if (LooksLikePickle(*bytes) || ReadsAsPickle(*bytes)) {
        ParseContext scan(ctx_.options());
        ParsedModel scratch;
        (void)NewPickleParser()->Parse(*bytes, scan, &scratch);
        for (const Finding& f : scan.findings()) {
          if (f.severity != Finding::Severity::kRefused) continue;
          ctx_.Refuse(f.rule, "archive member '" + Printable(e->name) + "' " + f.location, f.message,
                      f.references);
        }
      }
    }
    if (unknown.empty()) return Status::Ok();
    return Status::Unsupported("the archive holds member(s) a .keras file does not have: " +
                               ListNames(unknown) + " [keras.member]");
  }

  Status Assemble(ParsedModel* out) {
    out->source_format = "keras_v3";
    StoreOutput result;
    const std::string where = "'" + std::string(stores_[0]->name) + "'";
    Value arch = Value::Map();
    arch.Set("schema", Value::String(kSchema));
    if (!model_.is_null()) {
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Assigned> assigned,
                                 keras3::AssignStoreWeights(&model_, store_, writer_));
      SAFEMODEL_RETURN_IF_ERROR(EmitTensors(store_, assigned, where, true, ctx_, out, &result));
      arch.Set("kind", Value::String("full_model"));
      arch.Set("model", std::move(model_));
      arch.Set("weight_groups", std::move(result.weight_groups));
    } else {
      SAFEMODEL_RETURN_IF_ERROR(EmitTensors(store_, AllGroups(store_), where, false, ctx_, out, &result));
      arch = WeightsOnlyArchitecture(std::move(result.weight_groups));
    }
    if (!result.optimizer_weights.empty()) {
      arch.Set("optimizer_weights", StringList(result.optimizer_weights));
    }
    out->architecture = std::move(arch);
    if (!assets_.empty()) {
      ctx_.Drop("keras.assets", "assets/",
                Num(assets_.size()) + " asset file(s) are not converted and never extracted (a "
                                      "lookup layer's vocabulary is among them, so such a layer "
                                      "is converted without it): " + ListNames(assets_));
    }
    out->metadata = Value::Map();
    out->metadata.Set("kind", Value::String("keras_archive"));
    if (keras_version_) out->metadata.Set("keras_version", Value::String(*keras_version_));
    out->metadata.Set("weights_format", Value::String(store_.format));
    // keepalive is destroyed front to back: the HDF5 files before the
    // buffers and archive that hold their images.
    for (auto& k : store_.keepalive) out->keepalive.push_back(k);
    for (auto& k : keep_) out->keepalive.push_back(k);
    out->keepalive.push_back(zip_);
    return Status::Ok();
  }

  std::shared_ptr<ZipArchive> zip_;
  const keras3::H5StoreOpener open_h5_;
  ParseContext& ctx_;
  const ZipEntry* config_ = nullptr;
  const ZipEntry* metadata_ = nullptr;
  std::vector<const ZipEntry*> stores_;
  std::vector<const ZipEntry*> others_;
  std::vector<std::string> assets_;
  std::set<std::string> shard_names_;
  std::vector<std::shared_ptr<OwnedBuffer>> keep_;
  std::optional<std::string> keras_version_;
  Writer writer_ = Writer::kKeras3;
  Value model_;
  WeightStore store_;
};

class ShardedWeightsParser final : public MultiFileParser {
 public:
  explicit ShardedWeightsParser(keras3::H5StoreOpener open_h5) : open_h5_(open_h5) {}

  Status Parse(const InputFiles& input, ParseContext& ctx, ParsedModel* out) override {
    const InputFile* json = nullptr;
    std::vector<keras3::NamedBytes> shards;
    for (const InputFile& f : input.files) {
      if (f.role == FileRole::kWeightsJson && json == nullptr) {
        json = &f;
      } else if (f.role == FileRole::kWeightsShard) {
        shards.push_back({f.name, f.bytes});
      } else {
        return Status::Malformed("a sharded Keras weight store does not have a '" +
                                 Printable(f.name) + "' (" + std::string(FileRoleName(f.role)) + ")");
      }
    }
    if (json == nullptr) return Status::Malformed("no *.weights.json in the input [keras.shard_map]");
    const std::string where = "'" + json->name + "'";
    SAFEMODEL_ASSIGN_OR_RETURN(WeightStore store, keras3::OpenShardedStore(json->bytes, where, shards, open_h5_, ctx));
    if (ctx.refused()) return ctx.RefusedStatus();
    std::set<std::string> used(store.used_files.begin(), store.used_files.end());
    for (const keras3::NamedBytes& s : shards) {
      if (!used.count(s.name)) ctx.Drop("keras.unused_shard", s.name, "a shard file the weight_map does not name; not read");
    }
    StoreOutput result;
    SAFEMODEL_RETURN_IF_ERROR(EmitTensors(store, AllGroups(store), where, false, ctx, out, &result));
    out->source_format = "keras_sharded_weights";
    out->architecture = WeightsOnlyArchitecture(std::move(result.weight_groups));
    if (!result.optimizer_weights.empty()) {
      out->architecture.Set("optimizer_weights", StringList(result.optimizer_weights));
    }
    out->metadata = Value::Map();
    out->metadata.Set("kind", Value::String("keras3_weights"));
    for (auto& k : store.keepalive) out->keepalive.push_back(k);
    return Status::Ok();
  }

 private:
  const keras3::H5StoreOpener open_h5_;
};

}  // namespace

bool LooksLikeKerasArchive(const ZipArchive& zip) {
  for (const char* name : {"config.json", "metadata.json", "model.weights.h5", "model.weights.npz",
                           "model.weights.json"}) {
    if (zip.Find(name) != nullptr) return true;
  }
  return false;
}

Status ParseKerasArchive(ByteView image, std::shared_ptr<ZipArchive> zip,
                         keras3::H5StoreOpener open_h5, ParseContext& ctx, ParsedModel* out) {
  (void)image;  // the members are read through `zip`, which holds the same bytes
  ArchiveReader reader(std::move(zip), open_h5, ctx);
  return reader.Read(out);
}

std::unique_ptr<MultiFileParser> NewShardedWeightsParser(keras3::H5StoreOpener open_h5) {
  return std::make_unique<ShardedWeightsParser>(open_h5);
}

}  // namespace safemodel::loader
