#include "loader/keras3/weight_store.h"

#include <algorithm>
#include <map>

#include "loader/containers/zip_archive.h"
#include "loader/keras_h5/json_value.h"
#include "loader/numpy/npy.h"
#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/pickle_machine.h"
#include "proto/base/keyed_hash.h"
#include "proto/base/text.h"

namespace safemodel::loader::keras3 {

namespace {

Status Bad(const std::string& message, std::string_view rule = "keras.weights") {
  return Status::Malformed(message + " [" + std::string(rule) + "]");
}

bool PlainName(std::string_view n) {
  return !n.empty() && n != "." && n != ".." && n.find('/') == std::string_view::npos &&
         n.find('\\') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

}  // namespace

Status FinishStore(WeightStore* store, std::string_view where) {
  std::sort(store->groups.begin(), store->groups.end(),
            [](const StoreGroup& a, const StoreGroup& b) { return a.path < b.path; });
  for (size_t i = 1; i < store->groups.size(); ++i) {
    if (store->groups[i].path == store->groups[i - 1].path) {
      return Bad(std::string(where) + ": groups '" + Printable(store->groups[i - 1].stored) +
                 "' and '" + Printable(store->groups[i].stored) +
                 "' are the same object's weights spelled with '/' and '\\' (two answers for "
                 "one layer, depending on the platform that loads the file)");
    }
  }
  return Status::Ok();
}

std::string LogicalPath(std::string_view stored) {
  std::string out;
  std::string part;
  for (size_t i = 0; i <= stored.size(); ++i) {
    if (i == stored.size() || stored[i] == '/' || stored[i] == '\\') {
      if (!part.empty()) out += (out.empty() ? "" : "/") + part;
      part.clear();
    } else {
      part += stored[i];
    }
  }
  return out;
}

const StoreGroup* WeightStore::Find(std::string_view path) const {
  auto it = std::lower_bound(groups.begin(), groups.end(), path,
                             [](const StoreGroup& g, std::string_view p) { return g.path < p; });
  return it != groups.end() && it->path == path ? &*it : nullptr;
}

Result<WeightStore> OpenShardedStore(ByteView json, std::string_view where,
                                     const std::vector<NamedBytes>& shards, H5StoreOpener open_h5,
                                     ParseContext& ctx) {
  const std::string w(where);
  if (json.size() > kMaxShardMapBytes) {
    return Status::LimitExceeded(w + ": larger than " + Num(kMaxShardMapBytes) + " bytes");
  }
  Result<Value> parsed = ParseJson(AsChars(json), w);
  if (!parsed.ok()) return Bad(parsed.status().message(), "keras.shard_map");
  const Value& doc = *parsed;
  const Value* map = doc.is_map() ? doc.Find("weight_map") : nullptr;
  if (map == nullptr || !map->is_map()) return Bad(w + " has no weight_map object", "keras.shard_map");
  for (const auto& [key, value] : doc.entries()) {
    if (key != "weight_map" && key != "metadata") {
      return Bad(w + ": unexpected key '" + Printable(key) + "'", "keras.shard_map");
    }
  }
  // group key ("/layers/dense/vars") -> the shards it may be in, by name.
  std::map<std::string, std::vector<std::string>> listed;
  std::map<std::string, const NamedBytes*> by_name;
  for (const NamedBytes& s : shards) by_name[s.name] = &s;
  for (const auto& [key, value] : map->entries()) {
    if (key.empty() || key[0] != '/' || !(key == "/vars" || (key.size() > 5 && key.substr(key.size() - 5) == "/vars"))) {
      return Bad(w + ": weight_map key '" + Printable(key) + "' is not a '/<path>/vars' group",
                 "keras.shard_map");
    }
    std::vector<const Value*> names;
    if (value.is_string()) names.push_back(&value);
    if (value.is_list()) for (const Value& v : value.list()) names.push_back(&v);
    if (names.empty()) return Bad(w + ": weight_map['" + Printable(key) + "'] names no shard", "keras.shard_map");
    for (const Value* n : names) {
      if (!n->is_string() || !PlainName(n->string_value())) {
        return Bad(w + ": weight_map['" + Printable(key) + "'] names '" +
                       Printable(n->is_string() ? n->string_value() : "?") +
                       "', which is not a plain file name beside the map",
                   "keras.shard_name");
      }
      if (by_name.count(n->string_value()) == 0) {
        return Bad(w + ": weight_map['" + Printable(key) + "'] names '" +
                       Printable(n->string_value()) + "', which is not there",
                   "keras.shard_name");
      }
      listed[LogicalPath(key.substr(0, key.size() - 4))].push_back(n->string_value());
    }
  }
  std::map<std::string, bool> used;
  for (const auto& [path, names] : listed) for (const std::string& n : names) used[n] = true;
  if (used.size() > kMaxShards) return Status::LimitExceeded(w + ": more than " + Num(kMaxShards) + " shards");
  WeightStore store;
  store.format = "sharded";
  std::map<std::string, StoreGroup> merged;
  std::map<std::string, KeyedStringSet> keys;  // per group, the keys seen so far
  for (const auto& [name, _] : used) {
    const std::string swhere = w + " shard '" + Printable(name) + "'";
    SAFEMODEL_ASSIGN_OR_RETURN(WeightStore shard, open_h5(by_name[name]->bytes, swhere, ctx));
    store.keepalive.insert(store.keepalive.end(), shard.keepalive.begin(), shard.keepalive.end());
    if (ctx.refused()) continue;
    store.big_endian += shard.big_endian;
    store.widened_bf16 += shard.widened_bf16;
    store.stray.insert(store.stray.end(), shard.stray.begin(), shard.stray.end());
    for (StoreGroup& g : shard.groups) {
      auto it = listed.find(g.path);
      const bool listed_here = it != listed.end() &&
                               std::find(it->second.begin(), it->second.end(), name) != it->second.end();
      if (!g.vars.empty() && !listed_here) {
        return Bad(swhere + " holds variables of '" + Printable(g.stored) +
                   "', which the weight_map does not list for this shard");
      }
      auto [m, fresh] = merged.try_emplace(g.path, StoreGroup{});
      if (fresh) {
        m->second.path = g.path;
        m->second.stored = g.stored;
      }
      for (StoreVar& v : g.vars) {
        if (!keys[g.path].insert(v.key).second) {
          return Bad(w + ": variable '" + Printable(v.tensor_name) + "' is in two shards");
        }
        m->second.vars.push_back(std::move(v));
      }
    }
  }
  if (ctx.refused()) return store;
  for (const auto& [name, _] : used) store.used_files.push_back(name);
  for (auto& [path, g] : merged) {
    // Keras reads "0", "1", ... of a group: in the order of the keys.
    std::stable_sort(g.vars.begin(), g.vars.end(), [](const StoreVar& a, const StoreVar& b) {
      return a.key.size() != b.key.size() ? a.key.size() < b.key.size() : a.key < b.key;
    });
    store.groups.push_back(std::move(g));
  }
  SAFEMODEL_RETURN_IF_ERROR(FinishStore(&store, where));
  return store;
}

namespace {

// numpy's array reconstruction, the only names an npz store may use.
bool IsNumpyDataGlobal(std::string_view name) {
  for (std::string_view ok :
       {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar"}) {
    if (name == ok) return true;
  }
  return false;
}

Status ReadNpzMember(ByteView member, const std::string& where, const std::string& path,
                     ParseContext& ctx, WeightStore* store) {
  SAFEMODEL_ASSIGN_OR_RETURN(NpyHeader h, ParseNpyHeader(member, where));
  if (!h.is_object || !h.shape.empty() || h.data_offset > member.size()) {
    return Bad(where + " is not a 0-d object array (Keras writes one dict per saved object)");
  }
  ByteView data = member.subspan(h.data_offset);
  auto graph = std::make_shared<pickle::Graph>();
  pickle::MachineOptions opts;
  opts.where = where;
  opts.base = h.data_offset;
  opts.joblib = false;
  pickle::Machine machine(ctx, *graph, opts);
  uint64_t end = 0;
  Result<pickle::Ref> root = machine.Run(data, 0, &end);
  for (pickle::ObjId id = 0; id < graph->objects.size(); ++id) {
    const pickle::Object& o = graph->objects[id];
    const std::string& name = graph->name(id);
    if (o.kind == pickle::Kind::kGlobal && !IsNumpyDataGlobal(name)) {
      ctx.Refuse("pickle.global", where + " byte " + Num(h.data_offset + graph->offset(id)),
                 "the npz store's pickle names '" + Printable(name) +
                     "', which is not one of numpy's array constructors; np.load(allow_pickle="
                     "True) would import and call it",
                 {name});
    }
  }
  if (ctx.refused()) return ctx.RefusedStatus();
  SAFEMODEL_RETURN_IF_ERROR(root.status());
  if (end != data.size()) return Bad(where + ": bytes after the pickle");
  const pickle::Graph& g = *graph;
  const pickle::Object* dict = nullptr;
  if (root->kind == pickle::Kind::kRecord && g.at(*root).record == pickle::RecordKind::kNdArray) {
    const pickle::ArrayInfo& a = g.arrays[g.at(*root).aux];
    if (a.built && a.items.kind == pickle::Kind::kList && g.at(a.items).items().size() == 1 &&
        g.at(a.items).items()[0].kind == pickle::Kind::kDict) {
      dict = &g.at(g.at(a.items).items()[0]);
    }
  }
  if (dict == nullptr) return Bad(where + ": the object array does not hold a dict of variables");
  const pickle::Ref dict_ref = g.at(g.arrays[g.at(*root).aux].items).items()[0];
  ParsedModel scratch;
  pickle::ConvertSettings settings;
  settings.where = where;
  settings.root_name = "value";
  SAFEMODEL_ASSIGN_OR_RETURN(pickle::Converted c,
                             pickle::ConvertGraph(graph, dict_ref, settings, ctx, &scratch));
  // An empty dict (an object without variables) converts to an empty map.
  const bool empty_map = c.metadata.is_map() && c.metadata.entries().empty();
  if (!c.metadata.is_null() && !empty_map) {
    return Bad(where + ": the dict holds values other than numeric arrays");
  }
  store->keepalive.insert(store->keepalive.end(), scratch.keepalive.begin(), scratch.keepalive.end());
  StoreGroup group;
  group.path = path;
  group.stored = path;
  const std::string prefix = path.empty() ? "vars/" : path + "/vars/";
  KeyedStringMap<size_t> by_name;
  for (size_t i = 0; i < scratch.tensors.size(); ++i) by_name.emplace(scratch.tensors[i].name, i);
  for (size_t k = 0; k + 1 < dict->items().size(); k += 2) {
    if (dict->items()[k].kind != pickle::Kind::kStr)
      return Bad(where + ": a variable key is not a string");
    const std::string key(g.text(dict->items()[k]));
    auto t = by_name.find(key);
    if (t == by_name.end() || !scratch.tensors[t->second].alias_of.empty()) {
      return Bad(where + ": variable '" + Printable(key) + "' is not a numeric array of its own");
    }
    auto tensor = std::make_shared<Tensor>(std::move(scratch.tensors[t->second]));
    by_name.erase(t);
    StoreVar v;
    v.key = key;
    v.tensor_name = prefix + key;
    v.make = [tensor](std::string n) -> Result<Tensor> {
      Tensor out = std::move(*tensor);
      out.name = std::move(n);
      return out;
    };
    group.vars.push_back(std::move(v));
  }
  store->groups.push_back(std::move(group));
  return Status::Ok();
}

}  // namespace

Result<WeightStore> OpenNpzStore(ByteView npz, std::string_view where, ParseContext& ctx) {
  const std::string w(where);
  Result<std::shared_ptr<ZipArchive>> zip = ZipArchive::Open(npz);
  if (!zip.ok()) return Bad(w + ": " + zip.status().message());
  WeightStore store;
  store.format = "npz";
  Status first_error;
  for (const ZipEntry& e : (*zip)->entries()) {
    const std::string mwhere = w + " member '" + Printable(e.name) + "'";
    constexpr std::string_view kNpy = ".npy";
    if (e.name.size() <= kNpy.size() || e.name.substr(e.name.size() - kNpy.size()) != kNpy) {
      return Bad(mwhere + " is not a .npy member");
    }
    auto holder = std::make_shared<OwnedBuffer>();
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView bytes,
                               (*zip)->Contents(e, ctx.options().memory_limit, holder.get()));
    store.keepalive.push_back(holder);
    std::string path(e.name.substr(0, e.name.size() - kNpy.size()));
    if (path == "__root__") path.clear();
    // Every member is read before an error is returned, so that code in a
    // later member is still refused (findings win over breakage).
    Status s = ReadNpzMember(bytes, mwhere, path, ctx, &store);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  store.keepalive.push_back(*zip);  // last: the members' bytes are views of it
  if (ctx.refused()) return store;
  SAFEMODEL_RETURN_IF_ERROR(first_error);
  SAFEMODEL_RETURN_IF_ERROR(FinishStore(&store, where));
  return store;
}

}  // namespace safemodel::loader::keras3
