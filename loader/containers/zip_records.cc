#include "loader/containers/zip_records.h"

namespace safemodel::loader {

namespace {

// Version needed, flags, method, time, date, CRC and sizes.
Status ReadEntryFields(ByteReader& r, const std::string& where, ZipEntryFields* f) {
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(2, where));  // version needed
  SAFEMODEL_ASSIGN_OR_RETURN(f->flags, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(f->method, r.U16LE(where));
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(4, where));  // time, date
  SAFEMODEL_ASSIGN_OR_RETURN(f->crc32, r.U32LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(f->compressed_size, r.U32LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(f->uncompressed_size, r.U32LE(where));
  return Status::Ok();
}

}  // namespace

Result<ZipCentralHeader> ReadZipCentralHeader(ByteReader& r, const std::string& where) {
  ZipCentralHeader h;
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t sig, r.U32LE(where));
  // The signature first: a record that is not a central header is named as
  // such, whatever follows it.
  if (sig != kZipCentralSig) return Status::Malformed(where + ": bad signature");
  SAFEMODEL_ASSIGN_OR_RETURN(h.made_by, r.U16LE(where));
  SAFEMODEL_RETURN_IF_ERROR(ReadEntryFields(r, where, &h));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t name_len, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t extra_len, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t comment_len, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(h.disk_start, r.U16LE(where));
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(2, where));  // internal attributes
  SAFEMODEL_ASSIGN_OR_RETURN(h.external_attributes, r.U32LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(h.local_header_offset, r.U32LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(h.name, r.Bytes(name_len, where + " name"));
  SAFEMODEL_ASSIGN_OR_RETURN(h.extra, r.Bytes(extra_len, where + " extra"));
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(comment_len, where + " comment"));
  return h;
}

Result<ZipLocalHeader> ReadZipLocalHeader(ByteReader& r, const std::string& where) {
  ZipLocalHeader h;
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t sig, r.U32LE(where + " local header"));
  if (sig != kZipLocalSig) return Status::Malformed(where + ": bad local header signature");
  SAFEMODEL_RETURN_IF_ERROR(ReadEntryFields(r, where, &h));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t name_len, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(uint16_t extra_len, r.U16LE(where));
  SAFEMODEL_ASSIGN_OR_RETURN(h.name, r.Bytes(name_len, where + " local name"));
  SAFEMODEL_ASSIGN_OR_RETURN(h.extra, r.Bytes(extra_len, where + " local extra"));
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
