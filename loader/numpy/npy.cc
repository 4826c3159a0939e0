#include "loader/numpy/npy.h"

#include <string>
#include <utility>

#include "loader/containers/zip_archive.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::loader {

namespace {

constexpr std::string_view kNpySuffix = ".npy";

// Notes the layouts converted on the way out (numpy reads them as they are).
void NoteLayout(const NpyHeader& h, const std::string& where, ParseContext& ctx) {
  if (h.swap_unit > 1) {
    ctx.Note("numpy.byte_order", where, "big-endian data converted to little-endian");
  }
  if (h.fortran_order && h.shape.size() > 1) {
    ctx.Note("numpy.fortran_order", where, "Fortran-order data converted to C order");
  }
}

class NpyParser final : public Parser {
 public:
  explicit NpyParser(NpyObjectReader objects) : objects_(std::move(objects)) {}

  Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) override {
    SAFEMODEL_ASSIGN_OR_RETURN(NpyHeader h, ParseNpyHeader(input, "npy"));
    out->source_format = "npy";
    if (h.is_object) {
      return objects_(h, input.subspan(h.data_offset), "npy array", "array", ctx, out);
    }
    uint64_t end;
    if (!CheckedAdd(h.data_offset, h.data_bytes, &end) || end > input.size()) {
      return Status::Malformed("npy: the shape declares " + Num(h.data_bytes) +
                               " bytes of data but only " + Num(input.size() - h.data_offset) +
                               " follow the header");
    }
    if (end != input.size()) {
      return Status::Malformed("npy: " + Num(input.size() - end) +
                               " unexplained bytes after the array data");
    }
    NoteLayout(h, "npy array", ctx);
    Tensor t;
    t.name = "array";
    t.dtype = h.dtype;
    t.shape = h.shape;
    t.origin = "npy array";
    Elements e = NpyElements(h, input.subspan(h.data_offset, h.data_bytes));
    t.source = ViewSource(e.view, e.swap_unit, e.strides, 0);
    out->tensors.push_back(std::move(t));
    return Status::Ok();
  }

 private:
  NpyObjectReader objects_;
};

// Every member must be a .npy by name, and name its own key. A member's
// tensor is named by its key, its name without ".npy". numpy
// (NpzFile.__getitem__) answers a key with the member of exactly that name
// first and only then with key + ".npy": members 'a.npy' and 'a.npy.npy'
// both answer the key 'a.npy', and numpy gives 'a.npy'. Such an archive is
// refused rather than named one way or the other. (Duplicate names, where
// zipfile takes the last, are refused by ZipArchive.)
Status CheckNpzNames(const ZipArchive& zip) {
  // Names come from the file: a keyed hash (one block: no holes left).
  KeyedViewSet names;
  names.Reserve(zip.entries().size());
  for (const ZipEntry& entry : zip.entries()) names.Insert(entry.name);
  for (const ZipEntry& entry : zip.entries()) {
    // Built only for a message: 100,000 members made 100,000 strings.
    auto where = [&] { return "npz member '" + Printable(entry.name) + "'"; };
    if (entry.is_directory() || entry.name.size() <= kNpySuffix.size() ||
        !entry.name.ends_with(kNpySuffix)) {
      return Status::Unsupported(where() + " is not a .npy array");
    }
    const std::string_view key =
        std::string_view(entry.name).substr(0, entry.name.size() - kNpySuffix.size());
    if (names.Contains(key)) {
      return Status::Malformed(where() + " would be the array '" + Printable(key) +
                               "', but np.load answers that key with the member named exactly '" +
                               Printable(key) + "' (two members answer one key)");
    }
  }
  return Status::Ok();
}

// The sources and origins of an archive's numeric members: one object per
// archive, in ParsedModel::keepalive; each tensor holds a pointer to it and
// its member's entry, data offset and swap unit (ElementSource's words), not
// a record or a closure of its own (a record and a heap origin string per
// member were ~100 bytes of 100,000 small tensors, PROFILE.md).
class NpzMembers final : public ElementProducer, public OriginTeller {
 public:
  NpzMembers(ZipArchive* zip, uint64_t memory_limit) : zip_(zip), memory_limit_(memory_limit) {}

  // a = the member's ZipEntry, b = the data offset, c = the swap unit. The
  // data runs to the member's end (AddNpzTensor checked it).
  static SourceArgs Args(const ZipEntry& entry, uint64_t data_offset, uint32_t swap_unit) {
    return SourceArgs{reinterpret_cast<uint64_t>(&entry), data_offset, swap_unit};
  }

  Result<Elements> Produce(const SourceArgs& args) const override {
    const ZipEntry& entry = *reinterpret_cast<const ZipEntry*>(args.a);
    OwnedBuffer holder;
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView member, zip_->Contents(entry, memory_limit_, &holder));
    Elements el = NpyElements(args.c, false, {}, member.subspan(args.b, entry.uncompressed_size - args.b));
    el.owned = std::move(holder);
    return el;
  }

  // arg = the member's ZipEntry.
  std::string Tell(uint64_t arg, std::string_view) const override {
    return MemberWhere(*reinterpret_cast<const ZipEntry*>(arg));
  }

  static std::string MemberWhere(const ZipEntry& entry) {
    return "npz member '" + Printable(entry.name) + "'";
  }

 private:
  ZipArchive* const zip_;  // kept alive by ParsedModel::keepalive
  const uint64_t memory_limit_;
};

// A numeric member: a tensor whose bytes are read (inflated) when streamed.
// The header's shape becomes the tensor's own.
Status AddNpzTensor(ZipArchive* zip, const ZipEntry& entry, NpyHeader&& h, const std::string& where,
                    ParseContext& ctx, const NpzMembers* members, ParsedModel* out) {
  uint64_t end;
  if (!CheckedAdd(h.data_offset, h.data_bytes, &end)) {
    return Status::Malformed(where + ": the declared shape overflows 64 bits");
  }
  if (end != entry.uncompressed_size) {
    return Status::Malformed(where + ": header and shape account for " + Num(end) +
                             " bytes but the member holds " + Num(entry.uncompressed_size));
  }
  NoteLayout(h, where, ctx);
  Tensor t;
  t.name = entry.name.substr(0, entry.name.size() - kNpySuffix.size());
  t.dtype = h.dtype;
  t.origin = Origin(members, reinterpret_cast<uint64_t>(&entry));
  if (h.fortran_order && h.shape.size() > 1) {
    // Rare: the source needs the shape as well, and holds its own.
    const uint64_t memory_limit = ctx.options().memory_limit;
    t.source = [zip, e = &entry, memory_limit, data_offset = h.data_offset,
                data_bytes = h.data_bytes, swap_unit = h.swap_unit,
                shape = h.shape]() -> Result<Elements> {
      OwnedBuffer holder;
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView member, zip->Contents(*e, memory_limit, &holder));
      Elements el = NpyElements(swap_unit, true, shape, member.subspan(data_offset, data_bytes));
      el.owned = std::move(holder);
      return el;
    };
  } else {
    t.source = ElementSource(members, NpzMembers::Args(entry, h.data_offset, h.swap_unit));
  }
  t.shape = h.shape;
  out->tensors.push_back(std::move(t));
  return Status::Ok();
}

// An object member: the whole member goes to `objects` (the pickle needs
// it all; it is bounded by the memory limit). A refusal does not stop the
// archive, so that every member's findings are listed.
Status AddNpzObjectArray(ZipArchive& zip, const ZipEntry& entry, const NpyHeader& h,
                         const std::string& where, const NpyObjectReader& objects,
                         ParseContext& ctx, ParsedModel* out) {
  OwnedBuffer holder;
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView member,
                             zip.Contents(entry, ctx.options().memory_limit, &holder));
  Status s = objects(h, member.subspan(h.data_offset), where,
                     entry.name.substr(0, entry.name.size() - kNpySuffix.size()), ctx, out);
  if (!s.ok() && s.code() != StatusCode::kRefused) return s;
  if (holder.size() > 0) {
    out->keepalive.push_back(std::make_shared<OwnedBuffer>(std::move(holder)));
  }
  return Status::Ok();
}

}  // namespace

std::unique_ptr<Parser> NewNpyParser(NpyObjectReader objects) {
  return std::make_unique<NpyParser>(std::move(objects));
}

Status ParseNpzArchive(std::shared_ptr<ZipArchive> zip, const NpyObjectReader& objects,
                       ParseContext& ctx, ParsedModel* out) {
  out->source_format = "npz";
  out->keepalive.push_back(zip);
  SAFEMODEL_RETURN_IF_ERROR(CheckNpzNames(*zip));
  auto members = std::make_shared<NpzMembers>(zip.get(), ctx.options().memory_limit);
  out->keepalive.push_back(members);
  // One tensor per member: grown by doubling, the vector's last copy held
  // the old and the new array at once (31 MB for 100,000 members).
  out->tensors.reserve(zip->entries().size());
  for (const ZipEntry& entry : zip->entries()) {
    // PrefixView keeps few of the members' pages resident (ZipArchive::Open).
    const std::string where = NpzMembers::MemberWhere(entry);
    std::string holder;
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView prefix_bytes,
                               zip->PrefixView(entry, kMaxNpyHeaderBytes + 12, &holder));
    const std::string_view prefix = AsChars(prefix_bytes);
    if (!prefix.starts_with(kNpyMagic)) {
      // numpy decides by content, not name: it returns these bytes as raw
      // bytes, not an array.
      return Status::Malformed(where +
                               " does not start with the .npy magic: np.load returns "
                               "its raw bytes, not an array");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(NpyHeader h, ParseNpyHeader(AsBytes(prefix), where));
    if (h.is_object) {
      SAFEMODEL_RETURN_IF_ERROR(AddNpzObjectArray(*zip, entry, h, where, objects, ctx, out));
    } else {
      SAFEMODEL_RETURN_IF_ERROR(
          AddNpzTensor(zip.get(), entry, std::move(h), where, ctx, members.get(), out));
    }
  }
  if (ctx.refused()) return ctx.RefusedStatus();
  return Status::Ok();
}

}  // namespace safemodel::loader
