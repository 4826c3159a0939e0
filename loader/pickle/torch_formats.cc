#include "loader/pickle/torch_formats.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>

#include "loader/pickle/archive_scan.h"
#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/pickle_run.h"
#include "loader/pickle/storage_keys.h"
#include "proto/base/keyed_hash.h"
#include "proto/base/text.h"

namespace safemodel::loader {

using pickle::GlobalKind;
using pickle::Graph;
using pickle::Kind;
using pickle::Machine;
using pickle::MachineOptions;
using pickle::ObjId;
using pickle::RecordKind;
using pickle::Ref;
using pickle::kMaxStorageKeyBytes;
using pickle::StorageInfo;
using pickle::StorageKeys;
using pickle::StorageTable;

namespace {

// torch.serialization.MAGIC_NUMBER and PROTOCOL_VERSION.
constexpr uint8_t kLegacyMagic[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
constexpr int64_t kLegacyProtocolVersion = 1001;
// version and byteorder records are a few ASCII characters.
constexpr uint64_t kMaxSmallRecordBytes = 64;
// Highest zip format version torch writes today is 3 (records "version"
// and ".data/version"); newer ones may change the layout.
constexpr int64_t kMaxTorchZipVersion = 10;
// The directory, under the records' prefix, of the storages' members:
// "<prefix>data/<key>".
constexpr std::string_view kDataDir = "data/";

bool ValidKey(std::string_view key) {
  return !key.empty() && key.size() <= kMaxStorageKeyBytes &&
         std::all_of(key.begin(), key.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '_';
         });
}

// Resolves a persistent id ('storage', type, key, location, numel[, view]).
// Legacy ids have the sixth field (None unless the file is from torch 0.x);
// legacy files may also hold ('module', cls, file, source) ids, which carry
// the source code of a module class.
Result<Ref> LoadStorage(Machine& m, Ref pid, uint64_t offset, bool legacy, StorageTable* table) {
  Graph& g = m.graph();
  // Built only for a message: a checkpoint has one persistent id per storage.
  auto where = [&m, offset] { return "persistent id at " + m.Location(offset); };
  if (pid.kind != Kind::kTuple || g.at(pid).items().empty() ||
      g.at(pid).items()[0].kind != Kind::kStr) {
    return Status::Malformed(where() + " is " + pickle::KindName(g, pid) +
                             ", not a ('storage', ...) tuple");
  }
  // A copy of the (at most six) fields used: the items are read after
  // m.New() below, which may hand out a released object's place.
  const size_t nf = g.at(pid).items().size();
  std::array<Ref, 6> f;
  std::copy_n(g.at(pid).items().begin(), std::min<size_t>(nf, f.size()), f.begin());
  const std::string_view tag = g.text(f[0]);
  if (legacy && tag == "module") {
    std::string cls = nf > 1 && f[1].kind == Kind::kGlobal ? g.name(f[1]) : "a class";
    m.Refuse("torch.module_source", offset,
             "persistent id at byte " + Num(m.options().base + offset) +
                 " carries the source code of " + cls + " (a whole-module legacy save)",
             {cls});
    return m.New(Kind::kOpaque, offset);
  }
  if (tag != "storage" || nf != (legacy ? 6u : 5u)) {
    return Status::Malformed(where() + ": expected ('storage', type, key, location, size" +
                             std::string(legacy ? ", view)" : ")"));
  }
  for (size_t i = 0; i < nf; ++i) {
    if (f[i].kind == Kind::kOpaque) return m.New(Kind::kOpaque, offset);
  }
  if (f[1].kind != Kind::kGlobal || (g.global(f[1]).kind != GlobalKind::kStorageType &&
                                     g.global(f[1]).kind != GlobalKind::kUntypedStorage)) {
    return Status::Malformed(where() + ": storage type is " + pickle::KindName(g, f[1]));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view key, pickle::AsStr(g, f[2], "storage key"));
  // The location ("cpu", "cuda:0") must be a str; it is not kept: the bytes
  // are the same wherever torch would place the storage.
  SAFEMODEL_RETURN_IF_ERROR(pickle::AsStr(g, f[3], "storage location").status());
  SAFEMODEL_ASSIGN_OR_RETURN(int64_t numel, pickle::AsInt(g, f[4], "storage size"));
  if (!ValidKey(key))
    return Status::Malformed(where() + ": storage key '" + Printable(key) + "' is not a key");
  if (numel < 0) return Status::Malformed(where() + ": negative storage size");
  if (legacy && f[5].kind != Kind::kNone) {
    return Status::Unsupported(where() + ": storage views of torch 0.x files are not supported");
  }
  // A copy and a reference into Graph::named (a deque, whose entries never
  // move), read after m.New() below.
  const pickle::GlobalEntry type = g.global(f[1]);
  const std::string& type_name = g.name(f[1]);
  if (type.kind == GlobalKind::kStorageType && type.dtype == DType::kInvalid) {
    return Status::Unsupported(where() + ": storage type " + type_name +
                               " (packed sub-byte elements)");
  }
  const DType dtype = type.kind == GlobalKind::kUntypedStorage ? DType::kInvalid : type.dtype;
  uint32_t index = table->Find(key);
  if (index != pickle::kNoStorage) {
    StorageInfo& s = g.storages[index];
    if (s.dtype != dtype || s.numel != static_cast<uint64_t>(numel)) {
      return Status::Malformed(where() + ": storage '" + std::string(key) + "' was " +
                               std::string(s.type_name()) + " of size " + Num(s.numel) +
                               " before, now " + type_name + " of size " +
                               Num(static_cast<uint64_t>(numel)));
    }
    if (s.object != pickle::kNoObj) {
      // One record per storage while it lives, as torch hands out one
      // storage object per key: this is a second reference to it.
      g.objects[s.object].shared = true;
      return Ref::Heap(Kind::kRecord, s.object);
    }
  } else {
    index = static_cast<uint32_t>(g.storages.size());
    StorageInfo info;
    g.SetStorageKey(&info, key);
    info.dtype = dtype;
    info.quantized = type.quantized;
    info.type = g.InternStorageType(type_name);
    info.numel = static_cast<uint64_t>(numel);
    g.storages.push_back(std::move(info));
    table->Insert(key, index);
  }
  // The storage's first record, or a new one for a storage whose record was
  // released with the arguments of the tensors that used it (no reference
  // to it is left, so the two are never told apart).
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, m.New(Kind::kRecord, offset));
  g.at(r).record = RecordKind::kStorage;
  g.at(r).aux = index;
  g.storages[index].object = r.id;
  return r;
}

Result<uint64_t> StorageBytes(const StorageInfo& s) {
  uint64_t n = s.numel;
  if (s.dtype != DType::kInvalid && !CheckedMul(n, DTypeSize(s.dtype), &n)) {
    return Status::Malformed("storage '" + std::string(s.key()) + "' size overflows");
  }
  return n;
}

// ---- Zip ----------------------------------------------------------------------------

struct TorchLayout {
  std::string prefix;  // "archive/", or "" when the records are at the root
  bool root_layout = false;
  const ZipEntry* data_pkl = nullptr;
  const ZipEntry* version = nullptr;
  const ZipEntry* byteorder = nullptr;
  StorageKeys storages;                             // key -> data/<key>
  std::vector<std::string> torchscript;             // members that are code
  std::vector<std::string> unknown;
  std::string problem;  // why this is not a torch layout (empty if it is)
  bool case_collision = false;  // the problem is two names torch confuses
};

bool IsTorchScriptRecord(std::string_view rel) {
  return rel == "constants.pkl" || rel == "attributes.pkl" || rel == "bytecode.pkl" ||
         rel.substr(0, 5) == "code/" || rel.substr(0, 6) == "extra/" ||
         rel.substr(0, 14) == ".data/ts_code/" || rel.ends_with(".debug_pkl");
}

TorchLayout ReadLayout(const ZipArchive& zip) {
  TorchLayout l;
  const auto& entries = zip.entries();
  if (entries.empty()) {
    l.problem = "the archive is empty";
    return l;
  }
  size_t slash = entries[0].name.find('/');
  if (slash == 0) {
    l.problem = "member '" + Printable(entries[0].name) + "' has an absolute name";
    return l;
  }
  // torch.save puts every record under one directory; some tools write the
  // same records at the archive root. That is the same layout with an empty
  // prefix (torch.load refuses it; the records mean the same thing), so it
  // is read, and the report notes it.
  l.root_layout = slash == std::string::npos;
  if (!l.root_layout) l.prefix = entries[0].name.substr(0, slash + 1);
  l.storages = StorageKeys(entries.data(), l.prefix.size() + kDataDir.size());
  // torch finds records with miniz's case-insensitive lookup (ASCII): two
  // members whose names differ only in case are one record to torch, and
  // which one it reads depends on their number and order.
  KeyedStringMap<const ZipEntry*> folded;
  for (const ZipEntry& e : entries) {
    auto [it, fresh] = folded.emplace(AsciiLower(e.name), &e);
    if (!fresh) {
      l.problem = "members '" + Printable(it->second->name) + "' and '" + Printable(e.name) +
                  "' differ only in case, and torch's record lookup ignores case (it would read "
                  "one of them for both)";
      l.case_collision = true;
      return l;
    }
  }
  for (const ZipEntry& e : entries) {
    if (e.name.compare(0, l.prefix.size(), l.prefix) != 0) {
      l.problem = "member '" + Printable(e.name) + "' is not under '" + Printable(l.prefix) + "'";
      return l;
    }
    std::string_view rel = std::string_view(e.name).substr(l.prefix.size());
    if (rel == "data.pkl") {
      l.data_pkl = &e;
    } else if (rel == "version" || rel == ".data/version") {
      if (l.version == nullptr || rel == "version") l.version = &e;
    } else if (rel == "byteorder") {
      l.byteorder = &e;
    } else if (rel == ".data/serialization_id" || rel == ".format_version" ||
               rel == ".storage_alignment") {
      // Informational records of newer torch versions.
    } else if (rel.starts_with(kDataDir) && ValidKey(rel.substr(kDataDir.size()))) {
      l.storages.Add(e);
    } else if (IsTorchScriptRecord(rel)) {
      l.torchscript.emplace_back(e.name);
    } else {
      l.unknown.emplace_back(e.name);
    }
  }
  l.storages.Seal();
  if (l.data_pkl == nullptr && l.torchscript.empty()) l.problem = "there is no data.pkl";
  return l;
}

// Contents of a small text record (version, byteorder).
Result<std::string> SmallRecord(ZipArchive& zip, const ZipEntry& e) {
  if (e.uncompressed_size > kMaxSmallRecordBytes) {
    return Status::Malformed("record '" + Printable(e.name) + "' is " + Num(e.uncompressed_size) +
                             " bytes");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(OwnedBuffer b, zip.ReadAll(e, kMaxSmallRecordBytes));
  return std::string(AsChars(b.view()));
}

// The version (ASCII decimal, optionally newline-terminated) and byteorder
// records; *big_endian from the latter ("little" without one).
Status ReadTorchRecords(ZipArchive& zip, const TorchLayout& layout, bool* big_endian) {
  if (layout.version == nullptr) {
    return Status::Malformed("PyTorch archive has no 'version' record");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::string version_text, SmallRecord(zip, *layout.version));
  if (!version_text.empty() && version_text.back() == '\n') version_text.pop_back();
  int64_t version = 0;
  bool digits = !version_text.empty() && version_text.size() <= 4 &&
                std::all_of(version_text.begin(), version_text.end(),
                            [](char c) { return c >= '0' && c <= '9'; });
  if (digits) version = std::stoll(version_text);
  if (!digits || version < 1 || version > kMaxTorchZipVersion) {
    return Status::Unsupported("PyTorch archive version '" + Printable(version_text) + "' (1.." +
                               Num(kMaxTorchZipVersion) + " are read)");
  }
  *big_endian = false;
  if (layout.byteorder != nullptr) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string order, SmallRecord(zip, *layout.byteorder));
    if (order == "big") {
      *big_endian = true;
    } else if (order != "little") {
      return Status::Malformed("PyTorch archive byteorder is '" + Printable(order) + "'");
    }
  }
  return Status::Ok();
}

// Where each storage's bytes are: the member data/<key>, which must hold
// exactly the storage's bytes; read (inflated) when its tensor is streamed.
// The resolver refers to `layout` (a copy of its map would cost an
// allocation per storage): it is used by the conversion only, while the
// layout lives.
// The data/<key> members of a torch zip, by their index in the archive's
// entries.
class ZipStorageMembers final : public pickle::StorageMembers {
 public:
  ZipStorageMembers(std::shared_ptr<ZipArchive> zip, uint64_t memory_limit)
      : zip_(std::move(zip)), memory_limit_(memory_limit) {}
  uint64_t IndexOf(const ZipEntry* e) const {
    return static_cast<uint64_t>(e - zip_->entries().data());
  }
  Result<Elements> Fetch(uint64_t member) const override {
    const ZipEntry& e = zip_->entries()[member];
    Elements el;
    if (e.method == 0) {
      SAFEMODEL_ASSIGN_OR_RETURN(el.view, zip_->StoredData(e));
      return el;
    }
    SAFEMODEL_ASSIGN_OR_RETURN(el.owned, zip_->ReadAll(e, memory_limit_));
    el.view = el.owned.view();
    return el;
  }
  std::string Origin(uint64_t member) const override {
    return "zip member '" + Printable(zip_->entries()[member].name) + "'";
  }

 private:
  std::shared_ptr<ZipArchive> zip_;
  uint64_t memory_limit_;
};

pickle::StorageResolver ZipStorages(std::shared_ptr<ZipArchive> zip, const TorchLayout& layout,
                                    bool big_endian, uint64_t memory_limit) {
  auto members = std::make_shared<const ZipStorageMembers>(std::move(zip), memory_limit);
  return [members, layout_storages = &layout.storages,
          big_endian](const StorageInfo& s) -> Result<pickle::StorageData> {
    const ZipEntry* e = layout_storages->Find(s.key());
    if (e == nullptr) {
      return Status::Malformed("storage '" + std::string(s.key()) + "' (" +
                               std::string(s.type_name()) + ") has no record data/" +
                               std::string(s.key()));
    }
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t bytes, StorageBytes(s));
    if (e->uncompressed_size != bytes) {
      return Status::Malformed("zip member '" + Printable(e->name) + "' holds " +
                               Num(e->uncompressed_size) + " bytes but its storage (" +
                               std::string(s.type_name()) + " of " + Num(s.numel) + ") needs " +
                               Num(bytes));
    }
    pickle::StorageData d;
    d.nbytes = bytes;
    d.big_endian = big_endian;
    d.members = members;
    d.member = members->IndexOf(e);
    return d;
  };
}

Status ParseTorchZip(const std::shared_ptr<ZipArchive>& zip, const TorchLayout& layout,
                     ParseContext& ctx, ParsedModel* out) {
  out->source_format = "pytorch";
  bool big_endian = false;
  SAFEMODEL_RETURN_IF_ERROR(ReadTorchRecords(*zip, layout, &big_endian));
  if (!layout.unknown.empty()) {
    return Status::Unsupported("PyTorch archive has a member safemodel does not know: '" +
                               Printable(layout.unknown[0]) + "'");
  }
  const std::string where = "zip member '" + Printable(layout.data_pkl->name) + "'";
  OwnedBuffer holder;
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView pkl,
                             zip->Contents(*layout.data_pkl, ctx.options().memory_limit, &holder));
  auto graph = std::make_shared<Graph>();
  auto table = std::make_shared<StorageTable>(&layout.storages);
  MachineOptions opts;
  opts.where = where;
  opts.persistent_load = [table](Machine& m, Ref pid, uint64_t offset) {
    return LoadStorage(m, pid, offset, /*legacy=*/false, table.get());
  };
  // torch.save's writer makes a tensor's arguments afresh for each tensor:
  // releasing them as they are used keeps a checkpoint of many small
  // tensors from holding them all (tests/bench/PROFILE.md).
  opts.release_consumed = true;
  // data.pkl is read once, front to back; its pages need not stay (a view
  // of the map for a stored member: 10 MB for 100,000 tensors).
  opts.read_behind = [zip](ByteView read) { zip->DropPages(read); };
  Machine machine(ctx, *graph, opts);
  SAFEMODEL_ASSIGN_OR_RETURN(const Ref root,
                             pickle::RunWholePickle(machine, pkl, where, "the pickle's STOP", ctx));
  // Every storage record must be one data.pkl refers to.
  for (size_t i = 0; i < layout.storages.size(); ++i) {
    if (!table->Referenced(i)) {
      return Status::Malformed("PyTorch archive member '" +
                               Printable(layout.storages.entry(i)->name) +
                               "' is not referred to by data.pkl (hidden data)");
    }
  }
  if (holder.size() > 0) out->keepalive.push_back(std::make_shared<OwnedBuffer>(std::move(holder)));
  // What read_behind has not given back yet (its lag, the last run) goes
  // now: the walk reads the names again from the start, counted in the
  // archive's residency (name_read).
  zip->DropPages(pkl);
  pickle::ConvertSettings settings;
  settings.where = where;
  settings.storages = ZipStorages(zip, layout, big_endian, ctx.options().memory_limit);
  settings.release_objects = true;
  settings.after_walk = [zip, pkl] { zip->DropPages(pkl); };
  settings.name_read = [zip](ByteView name) { zip->TouchPages(name); };
  SAFEMODEL_ASSIGN_OR_RETURN(pickle::Converted c,
                             pickle::ConvertGraph(graph, root, settings, ctx, out));
  out->keepalive.push_back(zip);
  pickle::StoreTrees(std::move(c), out);
  return Status::Ok();
}

// ---- Legacy stream ------------------------------------------------------------------

Status CheckSysInfo(const Graph& g, Ref info, bool* little_endian) {
  if (info.kind != Kind::kDict || g.at(info).ordered) {
    return Status::Malformed("legacy torch sys_info is " + pickle::KindName(g, info) +
                             ", not a literal dict");
  }
  bool have_endian = false;
  const std::span<const Ref> items = g.at(info).items();
  for (size_t i = 0; i + 1 < items.size(); i += 2) {
    if (items[i].kind != Kind::kStr)
      return Status::Malformed("legacy torch sys_info has a non-str key");
    std::string_view k = g.text(items[i]);
    Ref v = items[i + 1];
    if (k == "little_endian") {
      if (v.kind != Kind::kBool)
        return Status::Malformed("legacy torch sys_info little_endian is not a bool");
      *little_endian = v.i != 0;
      have_endian = true;
    } else if (k == "protocol_version") {
      if (v.kind != Kind::kInt || v.i != kLegacyProtocolVersion) {
        return Status::Unsupported("legacy torch sys_info protocol_version is not 1001");
      }
    } else if (k == "type_sizes") {
      if (v.kind != Kind::kDict)
        return Status::Malformed("legacy torch sys_info type_sizes is not a dict");
    } else {
      return Status::Malformed("legacy torch sys_info has the unknown key '" + Printable(k) + "'");
    }
  }
  if (!have_endian) return Status::Malformed("legacy torch sys_info lacks little_endian");
  return Status::Ok();
}

// The raw storages after a legacy stream's pickles, by key.
using LegacyData = std::map<std::string, ByteView, std::less<>>;

// The raw storages in `rest` (at file offset `base`), in the key list's
// order: an int64 element count (in the stream's byte order), then the
// elements. Every storage the pickle uses is listed once; nothing follows.
Result<LegacyData> ReadLegacyStorages(ByteView rest, uint64_t base, const Graph& g, Ref keys,
                                      const StorageTable& table, bool little_endian) {
  const std::string where = "legacy torch stream";
  LegacyData data;
  ByteReader r(rest, base);
  for (Ref k : g.at(keys).items()) {
    SAFEMODEL_ASSIGN_OR_RETURN(std::string_view key, pickle::AsStr(g, k, "storage key"));
    const uint32_t seen = table.Find(key);
    if (seen == pickle::kNoStorage) {
      return Status::Malformed(where + ": storage '" + Printable(key) +
                               "' in the key list is not used");
    }
    if (data.count(std::string(key))) {
      return Status::Malformed(where + ": storage '" + Printable(key) + "' is listed twice");
    }
    const StorageInfo& st = g.storages[seen];
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count_le, r.U64LE(where + " storage size"));
    uint64_t count = little_endian ? count_le : __builtin_bswap64(count_le);
    if (count != st.numel) {
      return Status::Malformed(where + ": storage '" + Printable(key) + "' holds " + Num(count) +
                               " elements, its persistent id says " + Num(st.numel));
    }
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t bytes, StorageBytes(st));
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView b,
                               r.Bytes(bytes, where + " storage '" + std::string(key) + "'"));
    data.emplace(std::string(key), b);
  }
  if (data.size() != table.size()) {
    return Status::Malformed(where + ": " + Num(table.size() - data.size()) +
                             " storages used by the pickle are not in the key list");
  }
  if (!r.at_end()) {
    return Status::Malformed(where + ": " + Num(r.remaining()) + " bytes after the last storage");
  }
  return data;
}

// Each storage is a view of the stream.
pickle::StorageResolver LegacyStorages(LegacyData data, bool little_endian) {
  return [data = std::move(data),
          little_endian](const StorageInfo& st) -> Result<pickle::StorageData> {
    auto it = data.find(st.key());
    if (it == data.end()) {
      return Status::Malformed("storage '" + std::string(st.key()) + "' has no data");
    }
    pickle::StorageData d;
    d.nbytes = it->second.size();
    d.big_endian = !little_endian;
    d.origin = "storage '" + std::string(st.key()) + "'";
    ByteView view = it->second;
    d.fetch = [view]() -> Result<Elements> {
      Elements e;
      e.view = view;
      return e;
    };
    return d;
  };
}

}  // namespace

namespace pickle {

bool IsLegacyTorchMagic(const Graph& graph, Ref root) {
  if (root.kind != Kind::kBigInt) return false;
  ByteView b = graph.at(root).data();
  return b.size() == sizeof kLegacyMagic && std::equal(b.begin(), b.end(), kLegacyMagic);
}

Status ParseLegacyTorch(ByteView input, uint64_t pos, std::shared_ptr<Graph> graph,
                        ParseContext& ctx, ParsedModel* out) {
  const std::string where = "legacy torch stream";
  auto table = std::make_shared<StorageTable>();
  // The rest of the file after a failure is scanned for findings, so that a
  // payload placed after a broken or refused pickle is still named.
  auto fail = [&](Status s, uint64_t scan_from) -> Status {
    if (scan_from < input.size()) ScanForFindings(input, scan_from, where, ctx);
    if (ctx.refused()) return RefusedStatus(ctx, s, where);
    return s;
  };
  auto run = [&](bool main, Ref* result) -> Status {
    MachineOptions opts;
    opts.where = where;
    if (main) {
      opts.persistent_load = [table](Machine& m, Ref pid, uint64_t offset) {
        return LoadStorage(m, pid, offset, /*legacy=*/true, table.get());
      };
    }
    Machine machine(ctx, *graph, opts);
    uint64_t end = 0;
    Result<Ref> r = machine.Run(input, pos, &end);
    if (!r.ok()) {
      // A semantic error still read its stream up to STOP.
      return fail(r.status(), end > pos ? end : input.size());
    }
    pos = end;
    if (machine.tainted()) return fail(ctx.RefusedStatus(), pos);
    *result = *r;
    return Status::Ok();
  };
  Ref version, sys_info, root, keys;
  SAFEMODEL_RETURN_IF_ERROR(run(false, &version));
  if (version.kind != Kind::kInt || version.i != kLegacyProtocolVersion) {
    return fail(Status::Unsupported(where + ": protocol version is not 1001"), pos);
  }
  SAFEMODEL_RETURN_IF_ERROR(run(false, &sys_info));
  bool little_endian = true;
  Status s = CheckSysInfo(*graph, sys_info, &little_endian);
  if (!s.ok()) return fail(s, pos);
  SAFEMODEL_RETURN_IF_ERROR(run(true, &root));
  SAFEMODEL_RETURN_IF_ERROR(run(false, &keys));
  const Graph& g = *graph;
  if (keys.kind != Kind::kList)
    return Status::Malformed(where + ": the storage key list is " + KindName(g, keys));

  SAFEMODEL_ASSIGN_OR_RETURN(
      LegacyData data, ReadLegacyStorages(input.subspan(pos), pos, g, keys, *table, little_endian));
  ConvertSettings settings;
  settings.where = where;
  settings.storages = LegacyStorages(std::move(data), little_endian);
  settings.release_objects = true;
  SAFEMODEL_ASSIGN_OR_RETURN(Converted c, ConvertGraph(graph, root, settings, ctx, out));
  StoreTrees(std::move(c), out);
  return Status::Ok();
}

}  // namespace pickle

bool LooksLikeTorchZip(const ZipArchive& zip) {
  for (const ZipEntry& e : zip.entries()) {
    std::string_view n = e.name;
    size_t slash = n.find('/');
    std::string_view rel = slash == std::string_view::npos ? n : n.substr(slash + 1);
    if (rel == "data.pkl" || rel == "constants.pkl" || rel == "version") return true;
  }
  return false;
}

Status ParseTorchZipArchive(ByteView image, std::shared_ptr<ZipArchive> zip, ParseContext& ctx,
                            ParsedModel* out) {
  TorchLayout layout = ReadLayout(*zip);
  if (layout.problem.empty() && !layout.torchscript.empty()) {
    ctx.Refuse("torch.torchscript", "zip member '" + Printable(layout.torchscript[0]) + "'",
               "TorchScript archive: its code/ and constants.pkl records are Python source and a "
               "program that torch.jit.load compiles and runs",
               {layout.torchscript[0]});
    return ctx.RefusedStatus();
  }
  if (layout.problem.empty()) {
    if (layout.root_layout) {
      ctx.Note("torch.root_layout", "zip archive",
               "the records are at the archive root, not under one directory as torch.save "
               "writes them; read as the same layout with an empty prefix");
    }
    Status s = ParseTorchZip(zip, layout, ctx, out);
    if (s.ok() || s.code() == StatusCode::kRefused) return s;
    // A checkpoint we could not read: still name anything it calls.
    ScanDamagedZip(image, ctx);
    if (ctx.refused()) return pickle::RefusedStatus(ctx, s, "zip archive");
    return s;
  }
  // Not a PyTorch checkpoint: any pickle inside (whatever its member name)
  // is scanned, so that code hidden in an arbitrary zip is refused.
  ScanDamagedZip(image, ctx);
  if (ctx.refused()) return ctx.RefusedStatus();
  std::string names;
  for (size_t i = 0; i < zip->entries().size() && i < 5; ++i) {
    names += (i ? ", '" : "'") + Printable(zip->entries()[i].name) + "'";
  }
  if (layout.case_collision || LooksLikeTorchZip(*zip)) {
    return Status::Malformed("not a valid PyTorch archive: " + layout.problem + " (members: " +
                             names + (zip->entries().size() > 5 ? ", ..." : "") + ")");
  }
  return Status::Unsupported("zip archive is not a recognised model container (members: " + names +
                             (zip->entries().size() > 5 ? ", ..." : "") + ")");
}

}  // namespace safemodel::loader
