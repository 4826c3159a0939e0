#include "loader/containers/zip_scan.h"

#include <algorithm>

#include "loader/containers/zip_records.h"

namespace safemodel::loader {

namespace {

// The local header at `lho`, as a lenient loader reads it: false if there is
// none (bad signature, or it does not fit); else *m gets where its data is.
bool ReadLocal(ByteView image, uint64_t lho, LenientZipMember* m, uint16_t* flags, uint64_t* csize,
               std::string* name) {
  if (lho >= image.size()) return false;
  ByteReader r(image.subspan(lho));
  Result<ZipLocalHeader> h = ReadZipLocalHeader(r, "zip local header");
  if (!h.ok()) return false;
  *flags = h->flags;
  m->method = h->method;
  *csize = h->compressed_size;
  *name = std::string(AsChars(h->name));
  m->data_offset = lho + r.position();
  return true;
}

// The central directory's place: the first end-record signature from the
// end (no comment check), then the zip64 end record if the 16/32-bit values
// are saturated and a locator is there.
struct Directory {
  uint64_t entries = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
};

std::optional<Directory> FindDirectory(ByteView image) {
  if (image.size() < kZipEndRecordBytes) return std::nullopt;
  const uint64_t last = image.size() - kZipEndRecordBytes;
  const uint64_t lowest = last > kMaxZipCommentBytes ? last - kMaxZipCommentBytes : 0;
  uint64_t eocd = UINT64_MAX;
  for (uint64_t off = last + 1; off-- > lowest;) {
    ByteReader r(image.subspan(off, 4));
    if (*r.U32LE("sig") == kZipEndSig) {
      eocd = off;
      break;
    }
  }
  if (eocd == UINT64_MAX) return std::nullopt;
  ByteReader er(image.subspan(eocd, kZipEndRecordBytes));
  (void)er.Skip(10, "");
  Directory d;
  d.entries = *er.U16LE("");
  d.size = *er.U32LE("");
  d.offset = *er.U32LE("");
  if ((d.entries == 0xFFFF || d.offset == kZipMax32) && eocd >= kZip64LocatorBytes) {
    ByteReader lr(image.subspan(eocd - kZip64LocatorBytes, kZip64LocatorBytes));
    if (*lr.U32LE("") != kZip64LocatorSig) return d;
    (void)lr.Skip(4, "");
    const uint64_t rec = *lr.U64LE("");
    if (rec >= image.size()) return d;
    ByteReader zr(image.subspan(rec));
    if (!zr.Skip(24, "").ok()) return d;
    Result<uint64_t> on_disk = zr.U64LE(""), total = zr.U64LE(""), size = zr.U64LE(""),
                     offset = zr.U64LE("");
    if (on_disk.ok() && total.ok() && size.ok() && offset.ok()) {
      d.entries = *total;
      d.size = *size;
      d.offset = *offset;
    }
  }
  return d;
}

std::vector<LenientZipMember> FromCentralDirectory(ByteView image) {
  std::vector<LenientZipMember> out;
  std::optional<Directory> dir = FindDirectory(image);
  if (!dir || dir->offset >= image.size()) return out;
  ByteReader cr(
      image.subspan(dir->offset, std::min<uint64_t>(dir->size, image.size() - dir->offset)));
  for (uint64_t i = 0; i < dir->entries && i < kMaxListedZipMembers; ++i) {
    Result<ZipCentralHeader> h = ReadZipCentralHeader(cr, "zip central header");
    if (!h.ok()) break;
    LenientZipMember m;
    m.name = std::string(AsChars(h->name));
    uint64_t csize = h->compressed_size, offset = h->local_header_offset;
    ApplyZip64Extra(h->extra, h->uncompressed_size, &csize, &offset);
    uint16_t lflags;
    uint64_t lcsize;
    std::string lname;
    if (!ReadLocal(image, offset, &m, &lflags, &lcsize, &lname)) continue;
    m.method = h->method;  // the central directory's, as the loaders use
    m.compressed_size = std::min<uint64_t>(csize, image.size() - m.data_offset);
    if (lname != m.name) m.name += "' (local header: '" + lname;
    out.push_back(std::move(m));
  }
  return out;
}

// Without a usable central directory: the local headers from the start,
// while their sizes are known.
std::vector<LenientZipMember> FromLocalHeaders(ByteView image) {
  std::vector<LenientZipMember> out;
  uint64_t off = 0;
  while (out.size() < kMaxListedZipMembers) {
    LenientZipMember m;
    uint16_t flags;
    uint64_t csize;
    if (!ReadLocal(image, off, &m, &flags, &csize, &m.name)) break;
    m.compressed_size = std::min<uint64_t>(csize, image.size() - m.data_offset);
    out.push_back(m);
    if ((flags & 0x0008) && csize == 0) break;  // size only in a data descriptor
    off = m.data_offset + m.compressed_size;
  }
  return out;
}

}  // namespace

std::vector<LenientZipMember> ListZipMembersLeniently(ByteView image) {
  std::vector<LenientZipMember> members = FromCentralDirectory(image);
  if (members.empty()) members = FromLocalHeaders(image);
  return members;
}

}  // namespace safemodel::loader
