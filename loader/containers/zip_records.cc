#include "loader/containers/zip_records.h"

namespace safemodel::loader {

namespace {

// Version needed, flags, method, time, date, CRC and sizes.
Status ReadEntryFields(ByteReader& r, std::string_view where, ZipEntryFields* f) {
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(2, where));  // version needed
  SAFEMODEL_ASSIGN_OR_RETURN(f->flags, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(f->method, r.U16LE(where));
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(4, where));  // time, date
  SAFEMODEL_ASSIGN_OR_RETURN(f->crc32, r.U32LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(f->compressed_size, r.U32LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(f->uncompressed_size, r.U32LE(where));
  return Status::Ok();
}

uint64_t Le16At(ByteView b, uint64_t at) {
  return static_cast<uint64_t>(b[at]) | (static_cast<uint64_t>(b[at + 1]) << 8);
}
uint32_t Le32At(ByteView b, uint64_t at) {
  return static_cast<uint32_t>(Le16At(b, at) | (Le16At(b, at + 2) << 16));
}
uint16_t U16At(ByteView b, uint64_t at) { return static_cast<uint16_t>(Le16At(b, at)); }

// The shared fields' offsets from version needed (the layout
// ReadEntryFields reads: version 2, flags 2, method 2, time and date 4, CRC
// 4, sizes 4 and 4).
constexpr uint64_t kFlagsAt = 2;
constexpr uint64_t kMethodAt = 4;
constexpr uint64_t kCrcAt = 10;
constexpr uint64_t kCompressedSizeAt = 14;
constexpr uint64_t kUncompressedSizeAt = 18;

// The fields central and local headers share, from `at` (version needed)
// of a record known to fit (the layout ReadEntryFields reads).
void EntryFieldsAt(ByteView record, uint64_t at, ZipEntryFields* f) {
  f->flags = U16At(record, at + kFlagsAt);
  f->method = U16At(record, at + kMethodAt);
  f->crc32 = Le32At(record, at + kCrcAt);
  f->compressed_size = Le32At(record, at + kCompressedSizeAt);
  f->uncompressed_size = Le32At(record, at + kUncompressedSizeAt);
}

// Whether a record whose fixed part is `fixed` bytes, with the 16-bit
// lengths of its variable parts at `lengths_at` (`count` of them), fits in
// what is left of `r`: then no read of it can fail and its reads need no
// message.
bool RecordFits(const ByteReader& r, uint64_t fixed, uint64_t lengths_at, uint64_t count) {
  const ByteView rest = r.rest();
  if (rest.size() < fixed) return false;
  uint64_t variable = 0;
  for (uint64_t i = 0; i < count; ++i) variable += Le16At(rest, lengths_at + 2 * i);
  return rest.size() - fixed >= variable;
}

// The message for one read of a record cut short: `where`, and `suffix`.
class ReadWhat {
 public:
  explicit ReadWhat(const ZipWhere& where) : where_(where.str()) {}
  std::string_view operator()() const { return where_; }
  std::string operator()(const char* suffix) const { return where_ + suffix; }

 private:
  std::string where_;
};

}  // namespace

ZipWhere ZipWhere::Numbered(std::string_view prefix, uint64_t n) {
  ZipWhere w;
  w.kind_ = Kind::kNumbered;
  w.text_ = prefix;
  w.number_ = n;
  return w;
}

ZipWhere ZipWhere::Entry(std::string_view name, std::string_view suffix) {
  ZipWhere w;
  w.kind_ = Kind::kEntry;
  w.text_ = name;
  w.suffix_ = suffix;
  return w;
}

std::string ZipWhere::str() const {
  switch (kind_) {
    case Kind::kText:
      return std::string(text_);
    case Kind::kNumbered:
      return std::string(text_) + Num(number_);
    case Kind::kEntry:
      return "zip entry '" + Printable(text_) + "'" + std::string(suffix_);
  }
  return std::string(text_);
}

Result<ZipCentralHeader> ReadZipCentralHeader(ByteReader& r, const ZipWhere& where) {
  // The lengths of name, extra and comment follow each other.
  static_assert(kZipCentralExtraLenAt == kZipCentralNameLenAt + 2 &&
                kZipCentralCommentLenAt == kZipCentralNameLenAt + 4);
  const bool fits = RecordFits(r, kZipCentralHeaderBytes, kZipCentralNameLenAt, 3);
  ZipCentralHeader h;
  if (fits) {
    // Read in place: no read can fail (the walks of an archive's directory
    // read each record two or three times; field by field through the
    // reader was most of their time).
    const ByteView rec = r.rest();
    if (Le32At(rec, 0) != kZipCentralSig) return Status::Malformed(where.str() + ": bad signature");
    h.made_by = U16At(rec, kZipCentralMadeByAt);
    EntryFieldsAt(rec, kZipCentralFieldsAt, &h);
    const uint64_t name_len = Le16At(rec, kZipCentralNameLenAt);
    const uint64_t extra_len = Le16At(rec, kZipCentralExtraLenAt);
    h.disk_start = U16At(rec, kZipCentralDiskStartAt);
    h.external_attributes = Le32At(rec, kZipCentralExternalAttrAt);
    h.local_header_offset = Le32At(rec, kZipCentralLocalOffsetAt);
    h.name = rec.subspan(kZipCentralHeaderBytes, name_len);
    h.extra = rec.subspan(kZipCentralHeaderBytes + name_len, extra_len);
    (void)r.Skip(kZipCentralHeaderBytes + name_len + extra_len + Le16At(rec, kZipCentralCommentLenAt), {});
    return h;
  }
  // Cut short: read field by field, for the message naming what is missing.
  const ReadWhat what(where);
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t sig, r.U32LE(what()));
  // The signature first: a record that is not a central header is named as
  // such, whatever follows it.
  if (sig != kZipCentralSig) return Status::Malformed(where.str() + ": bad signature");
  SAFEMODEL_ASSIGN_OR_RETURN(h.made_by, r.U16LE(what()));
  SAFEMODEL_RETURN_IF_ERROR(ReadEntryFields(r, what(), &h));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t name_len, r.U16LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t extra_len, r.U16LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t comment_len, r.U16LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(h.disk_start, r.U16LE(what()));
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(2, what()));  // internal attributes
  SAFEMODEL_ASSIGN_OR_RETURN(h.external_attributes, r.U32LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(h.local_header_offset, r.U32LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(h.name, r.Bytes(name_len, what(" name")));
  SAFEMODEL_ASSIGN_OR_RETURN(h.extra, r.Bytes(extra_len, what(" extra")));
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(comment_len, what(" comment")));
  return h;
}

Result<ZipLocalHeader> ReadZipLocalHeader(ByteReader& r, const ZipWhere& where) {
  // The lengths of name and extra follow each other.
  static_assert(kZipLocalExtraLenAt == kZipLocalNameLenAt + 2);
  const bool fits = RecordFits(r, kZipLocalHeaderBytes, kZipLocalNameLenAt, 2);
  ZipLocalHeader h;
  if (fits) {  // read in place, as a central header
    const ByteView rec = r.rest();
    if (Le32At(rec, 0) != kZipLocalSig) {
      return Status::Malformed(where.str() + ": bad local header signature");
    }
    EntryFieldsAt(rec, kZipLocalFieldsAt, &h);
    const uint64_t name_len = Le16At(rec, kZipLocalNameLenAt);
    const uint64_t extra_len = Le16At(rec, kZipLocalExtraLenAt);
    h.name = rec.subspan(kZipLocalHeaderBytes, name_len);
    h.extra = rec.subspan(kZipLocalHeaderBytes + name_len, extra_len);
    (void)r.Skip(kZipLocalHeaderBytes + name_len + extra_len, {});
    return h;
  }
  const ReadWhat what(where);
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t sig, r.U32LE(what(" local header")));
  if (sig != kZipLocalSig) return Status::Malformed(where.str() + ": bad local header signature");
  SAFEMODEL_RETURN_IF_ERROR(ReadEntryFields(r, what(), &h));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t name_len, r.U16LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t extra_len, r.U16LE(what()));
  SAFEMODEL_ASSIGN_OR_RETURN(h.name, r.Bytes(name_len, what(" local name")));
  SAFEMODEL_ASSIGN_OR_RETURN(h.extra, r.Bytes(extra_len, what(" local extra")));
  return h;
}

ZipExactEndRecord FindZipExactEndRecord(ByteView image) {
  ZipExactEndRecord found;
  const uint64_t size = image.size();
  if (size < kZipEndRecordBytes) return found;
  const uint64_t last = size - kZipEndRecordBytes;
  const uint64_t lowest = last > kMaxZipCommentBytes ? last - kMaxZipCommentBytes : 0;
  for (uint64_t off = last + 1; off-- > lowest;) {
    ByteReader r(image.subspan(off, kZipEndRecordBytes), off);
    if (*r.U32LE("sig") != kZipEndSig) continue;
    (void)r.Skip(16, "end record");
    const uint16_t comment = *r.U16LE("comment length");
    if (off + kZipEndRecordBytes + comment != size) continue;
    if (found.offset) {
      found.offset.reset();
      found.ambiguous = true;
      return found;
    }
    found.offset = off;
  }
  return found;
}

void ApplyZip64Extra(ByteView extra, uint64_t uncompressed_size, uint64_t* compressed_size,
                     uint64_t* local_header_offset) {
  ByteReader xr(extra);
  while (xr.remaining() >= 4) {
    const uint16_t id = *xr.U16LE("");
    const uint16_t len = *xr.U16LE("");
    Result<ByteView> body = xr.Bytes(len, "");
    if (!body.ok()) break;
    if (id != kZip64ExtraId) continue;
    // The values present follow APPNOTE 4.5.3's order: uncompressed size,
    // compressed size, local header offset.
    ByteReader zr(*body);
    if (uncompressed_size == kZipMax32) (void)zr.U64LE("");
    if (*compressed_size == kZipMax32) {
      Result<uint64_t> v = zr.U64LE("");
      if (v.ok()) *compressed_size = *v;
    }
    if (*local_header_offset == kZipMax32) {
      Result<uint64_t> v = zr.U64LE("");
      if (v.ok()) *local_header_offset = *v;
    }
  }
}

}  // namespace safemodel::loader
