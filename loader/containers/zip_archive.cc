#include "loader/containers/zip_archive.h"

#include <libdeflate.h>
#include <malloc.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include "proto/base/keyed_hash.h"

namespace safemodel::loader {

namespace {

constexpr uint16_t kFlagEncrypted = 0x0001;
constexpr uint16_t kFlagDescriptor = 0x0008;
constexpr uint16_t kFlagUtf8 = 0x0800;
// Deflate option bits (1, 2), data descriptor, UTF-8 names: all else is
// encryption or features we do not read.
constexpr uint16_t kAllowedFlags = 0x0002 | 0x0004 | kFlagDescriptor | kFlagUtf8;
constexpr uint8_t kMadeByUnix = 3;

// libdeflate's CRC-32 uses carry-less multiplication (PCLMULQDQ/VPCLMULQDQ):
// ~14 GB/s here against zlib's ~4 GB/s, and every stored member is checked.
uint32_t Crc32(ByteView bytes) { return libdeflate_crc32(0, bytes.data(), bytes.size()); }

Status CheckName(std::string_view name, uint16_t flags) {
  const ZipWhere where = ZipWhere::Entry(name);
  if (name.empty() || name.size() > kMaxZipNameBytes) {
    return Status::Malformed(where.str() + ": name length " + Num(name.size()) + " is outside 1.." +
                             Num(kMaxZipNameBytes));
  }
  bool ascii = std::all_of(name.begin(), name.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (!ascii && (!(flags & kFlagUtf8) || !IsValidUtf8(name))) {
    return Status::Unsupported(where.str() + ": non-ASCII name without valid UTF-8 marking");
  }
  if (name.find('\0') != std::string_view::npos || name.find('\\') != std::string_view::npos) {
    return Status::Malformed(where.str() + ": name contains NUL or a backslash");
  }
  if (name[0] == '/' || (name.size() >= 2 && name[1] == ':')) {
    return Status::Malformed(where.str() + ": absolute name");
  }
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part(name.data() + start, end - start);
    if (part == ".." || part == ".") {
      return Status::Malformed(where.str() + ": '.' or '..' component");
    }
    if (part.empty() && end != name.size()) {
      return Status::Malformed(where.str() + ": empty component");
    }
    start = end + 1;
  }
  return Status::Ok();
}

struct Zip64Values {
  bool present = false;
  ByteView data;
};

// Finds the zip64 extended-information field in an extra block; the TLVs
// must fill the block exactly.
Result<Zip64Values> ParseExtra(ByteView extra, const ZipWhere& where) {
  Zip64Values out;
  ByteReader r(extra);
  while (!r.at_end()) {
    // A field that fits is read without a message; one that does not is
    // read again with the messages, which name what is cut short.
    const ByteView rest = r.rest();
    const bool fits =
        rest.size() >= 4 && rest.size() - 4 >= (rest[2] | (static_cast<uint64_t>(rest[3]) << 8));
    const std::string w = fits ? std::string() : where.str();
    SAFEMODEL_ASSIGN_OR_RETURN(uint16_t id, r.U16LE(fits ? w : w + " extra field id"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint16_t len, r.U16LE(fits ? w : w + " extra field length"));
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView body, r.Bytes(len, fits ? w : w + " extra field"));
    if (id == kZip64ExtraId) {
      if (out.present) return Status::Malformed(where.str() + ": two zip64 extra fields");
      out.present = true;
      out.data = body;
    }
  }
  return out;
}

// Where the central directory is, from the end record (and the zip64 end
// record when its locator is there).
struct Directory {
  uint64_t entries = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

Result<Directory> ParseEndRecords(ByteView image) {
  const uint64_t size = image.size();
  if (size < kZipEndRecordBytes) return Status::Malformed("zip: file too short for an end record");
  // The end record: its comment must reach exactly the end of the file, and
  // exactly one candidate may satisfy that.
  const ZipExactEndRecord end = FindZipExactEndRecord(image);
  if (end.ambiguous) return Status::Malformed("zip: two candidate end records (ambiguous)");
  if (!end.offset) return Status::Malformed("zip: no end-of-central-directory record");
  const uint64_t eocd = *end.offset;

  ByteReader er(image.subspan(eocd, kZipEndRecordBytes), eocd);
  (void)er.Skip(4, "sig");
  uint16_t disk = *er.U16LE("disk");
  uint16_t cd_disk = *er.U16LE("cd disk");
  uint64_t n_disk = *er.U16LE("entries on disk");
  uint64_t n_total = *er.U16LE("entries");
  uint64_t cd_size = *er.U32LE("cd size");
  uint64_t cd_offset = *er.U32LE("cd offset");
  if (disk != 0 || cd_disk != 0 || n_disk != n_total) {
    return Status::Unsupported("zip: multi-disk archives are not supported");
  }
  uint64_t cd_end = eocd;  // where the central directory must end
  bool zip64 =
      eocd >= kZip64LocatorBytes &&
      *ByteReader(image.subspan(eocd - kZip64LocatorBytes, 4)).U32LE("sig") == kZip64LocatorSig;
  if (zip64) {
    ByteReader lr(image.subspan(eocd - kZip64LocatorBytes, kZip64LocatorBytes),
                  eocd - kZip64LocatorBytes);
    (void)lr.Skip(4, "sig");
    uint32_t z_disk = *lr.U32LE("zip64 end disk");
    uint64_t rec = *lr.U64LE("zip64 end offset");
    uint32_t disks = *lr.U32LE("disks");
    if (z_disk != 0 || disks != 1) return Status::Unsupported("zip: multi-disk zip64 archive");
    if (rec >= eocd - kZip64LocatorBytes)
      return Status::Malformed("zip: zip64 end record out of place");
    ByteReader zr(image.subspan(rec, eocd - kZip64LocatorBytes - rec), rec);
    SAFEMODEL_ASSIGN_OR_RETURN(uint32_t sig, zr.U32LE("zip64 end signature"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t rec_size, zr.U64LE("zip64 end size"));
    if (sig != kZip64EndSig || rec_size < 44 || rec_size != zr.remaining()) {
      return Status::Malformed("zip: bad zip64 end record");
    }
    SAFEMODEL_RETURN_IF_ERROR(zr.Skip(4, "versions"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint32_t zd, zr.U32LE("disk"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint32_t zcd, zr.U32LE("cd disk"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t zn_disk, zr.U64LE("entries on disk"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t zn_total, zr.U64LE("entries"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t zcd_size, zr.U64LE("cd size"));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t zcd_offset, zr.U64LE("cd offset"));
    if (zd != 0 || zcd != 0 || zn_disk != zn_total) {
      return Status::Unsupported("zip: multi-disk zip64 archive");
    }
    auto agree = [](uint64_t v32, uint64_t v64, uint64_t marker) {
      return v32 == marker || v32 == v64;
    };
    if (!agree(n_total, zn_total, 0xFFFF) || !agree(cd_size, zcd_size, kZipMax32) ||
        !agree(cd_offset, zcd_offset, kZipMax32)) {
      return Status::Malformed("zip: end record and zip64 end record disagree");
    }
    n_total = zn_total;
    cd_size = zcd_size;
    cd_offset = zcd_offset;
    cd_end = rec;
  } else if (n_total == 0xFFFF || cd_size == kZipMax32 || cd_offset == kZipMax32) {
    return Status::Malformed("zip: zip64 markers without a zip64 end record");
  }
  if (n_total > kMaxZipEntries) {
    return Status::LimitExceeded("zip: " + Num(n_total) + " entries exceed the limit of " +
                                 Num(kMaxZipEntries));
  }
  if (cd_offset > cd_end || cd_size != cd_end - cd_offset) {
    return Status::Malformed("zip: central directory [" + Num(cd_offset) + ", +" + Num(cd_size) +
                             ") does not end at the end records (" + Num(cd_end) + ")");
  }
  return Directory{n_total, cd_offset, cd_size};
}

// One central-directory entry, checked on its own: name, flags, method, zip64
// fields, symbolic links, the deflate ratio. The local header comes later.
// *name_bytes is set to the name in the image (a view that outlives the
// entry's own copy moving).
Result<ZipEntry> ParseCentralEntry(ByteReader& cr, uint64_t index, std::string_view* name_bytes) {
  SAFEMODEL_ASSIGN_OR_RETURN(
      ZipCentralHeader h,
      ReadZipCentralHeader(cr, ZipWhere::Numbered("zip central entry #", index)));
  ZipEntry e;
  e.flags = h.flags;
  e.method = h.method;
  e.crc32 = h.crc32;
  const uint32_t csize32 = h.compressed_size, usize32 = h.uncompressed_size;
  const uint32_t lho32 = h.local_header_offset;
  const uint16_t disk_start = h.disk_start;
  e.name = AsChars(h.name);  // the image's bytes; the archive copies them
  *name_bytes = AsChars(h.name);
  SAFEMODEL_RETURN_IF_ERROR(CheckName(e.name, e.flags));
  // Messages are built only on an error (ZipWhere).
  const ZipWhere ew = ZipWhere::Entry(e.name);
  if (e.flags & kFlagEncrypted) return Status::Unsupported(ew.str() + " is encrypted");
  if (const auto unknown = static_cast<uint16_t>(e.flags & ~kAllowedFlags); unknown != 0) {
    return Status::Unsupported(ew.str() + " uses unsupported flag bits (" + Num(unknown) + ")");
  }
  if (e.method != 0 && e.method != 8) {
    return Status::Unsupported(ew.str() + " uses compression method " + Num(e.method) +
                               " (only stored and deflate are read)");
  }
  if ((h.made_by >> 8) == kMadeByUnix && ((h.external_attributes >> 16) & 0170000) == 0120000) {
    return Status::Malformed(ew.str() + " is a symbolic link");
  }

  // zip64 extended information: present values replace saturated fields,
  // in the order uncompressed, compressed, local header offset, disk.
  SAFEMODEL_ASSIGN_OR_RETURN(Zip64Values z, ParseExtra(h.extra, ew));
  ByteReader zr(z.data);
  // A value that is there is read without a message.
  auto what = [&](uint64_t n, const char* suffix) {
    return zr.remaining() >= n ? std::string() : ew.str() + suffix;
  };
  e.uncompressed_size = usize32;
  e.compressed_size = csize32;
  e.local_header_offset = lho32;
  if (usize32 == kZipMax32) {
    SAFEMODEL_ASSIGN_OR_RETURN(e.uncompressed_size, zr.U64LE(what(8, " zip64 size")));
  }
  if (csize32 == kZipMax32) {
    SAFEMODEL_ASSIGN_OR_RETURN(e.compressed_size, zr.U64LE(what(8, " zip64 compressed size")));
  }
  if (lho32 == kZipMax32) {
    SAFEMODEL_ASSIGN_OR_RETURN(e.local_header_offset, zr.U64LE(what(8, " zip64 offset")));
  }
  if (disk_start == 0xFFFF) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint32_t d, zr.U32LE(what(4, " zip64 disk")));
    if (d != 0) return Status::Unsupported(ew.str() + " starts on another disk");
  } else if (disk_start != 0) {
    return Status::Unsupported(ew.str() + " starts on another disk");
  }
  if (!zr.at_end()) return Status::Malformed(ew.str() + ": zip64 extra field has extra bytes");
  if (e.method == 0 && e.compressed_size != e.uncompressed_size) {
    return Status::Malformed(ew.str() + ": stored entry with different compressed and real sizes");
  }
  if (e.method == 8) {
    uint64_t cap;
    if (!CheckedMul(e.compressed_size + 16, kMaxDeflateRatio, &cap) || e.uncompressed_size > cap) {
      return Status::Malformed(ew.str() + " claims to inflate " + Num(e.compressed_size) +
                               " bytes into " + Num(e.uncompressed_size) +
                               ", beyond what deflate can do (zip bomb)");
    }
  }
  return e;
}

// The local header's zip64 field, as the writers lay it out (the central
// entry is the authority; this only says which values the local field holds,
// so that each can be checked against it).
//
// What each writer puts in a local header (observed in the bytes of archives
// each one wrote, up to 8.2 GiB as sparse files; tests/fixtures/zip/ holds
// their headers):
//   - torch.save (PyTorchStreamWriter over miniz 2.0.8 in torch 1.13; miniz
//     3.0.2's mz_zip_writer_add_mem_ex_v2 in torch 2.x has the same code):
//     every member stored, flags 0x0808 (descriptor, UTF-8), local CRC and
//     sizes 0. A zip64 field is added only when the member is 4 GiB or more
//     (uncompressed size >= 0xFFFFFFFF) or its local header starts at or
//     beyond 0xFFFFFFFF, and holds, in order, [uncompressed size, compressed
//     size = 0] for the first reason and [this header's own offset] for the
//     second: 16, 8 or 24 bytes. The data descriptor (with signature) has
//     8-byte sizes exactly when that field is there. An empty member has no
//     descriptor flag, no descriptor and sizes 0. The central entry carries
//     the same values, real ones, under 0xFFFFFFFF markers; a zip64 end
//     record is always written.
//   - Python's zipfile (3.11), seekable output: no descriptor; the local
//     header is rewritten after the data with the real CRC and sizes. With
//     force_zip64, or a size over 2 GiB - 1 known in advance, a 16-byte zip64
//     field [uncompressed, compressed] with the real sizes; the 32-bit
//     fields hold the real sizes, or 0xFFFFFFFF over 2 GiB - 1. No offset in
//     a local field, whatever the offset.
//   - zipfile to an unseekable stream: descriptor flag (0x0008), local CRC
//     and sizes 0; with zip64 the 16-byte field holds [0, 0]; the
//     descriptor has a signature and 8-byte sizes exactly when that field
//     is there.
//   - numpy.savez/savez_compressed (1.24): zipfile with force_zip64=True for
//     every member, so always the 16-byte field.
// So: 16 bytes are the two sizes (APPNOTE 4.5.3); 8 bytes are miniz's header
// offset, only for a header at or beyond 0xFFFFFFFF of a member under 4 GiB;
// 24 bytes are both, only for a member of 4 GiB or more at or beyond that
// offset. Anything else matches no writer and is refused.
struct LocalZip64 {
  bool present = false;     // the field is there: the descriptor has 8-byte sizes
  bool has_sizes = false;   // [uncompressed, compressed]
  bool has_offset = false;  // [local header offset]
  uint64_t uncompressed_size = 0;
  uint64_t compressed_size = 0;
  uint64_t offset = 0;
};

Result<LocalZip64> ReadLocalZip64(const Zip64Values& field, const ZipEntry& e,
                                  const ZipWhere& where) {
  LocalZip64 z;
  if (!field.present) return z;
  z.present = true;
  const bool big = e.uncompressed_size >= kZipMax32;
  const bool far = e.local_header_offset >= kZipMax32;
  const uint64_t n = field.data.size();
  if (n == 16) {
    z.has_sizes = true;
  } else if (n == 24 && big && far) {
    z.has_sizes = z.has_offset = true;
  } else if (n == 8 && far && !big) {
    z.has_offset = true;
  } else {
    return Status::Malformed(
        where.str() + ": local zip64 extra field of " + Num(n) +
        " bytes matches no writer's layout (16: both sizes; 8: the header offset, for a header at "
        "or beyond 4 GiB; 24: sizes and offset, for a member of 4 GiB or more beyond 4 GiB)");
  }
  ByteReader r(field.data);
  if (z.has_sizes) {
    z.uncompressed_size = *r.U64LE("local zip64 size");
    z.compressed_size = *r.U64LE("local zip64 compressed size");
  }
  if (z.has_offset) z.offset = *r.U64LE("local zip64 offset");
  return z;
}

// The local header's CRC and sizes (32-bit fields and zip64 field) against
// the central entry. With a data descriptor (flag 0x0008) a streaming writer
// leaves 0 for what it does not know yet: the 32-bit CRC and sizes all 0
// together, and each zip64 size 0 or the real value (miniz writes the real
// uncompressed size and a compressed size of 0). Without one, every value
// present must be the central one; 0xFFFFFFFF in a 32-bit size only says the
// zip64 field holds it.
Status CheckLocalValues(const ZipEntry& e, const LocalZip64& z, uint32_t crc, uint32_t csize32,
                        uint32_t usize32, const ZipWhere& where) {
  const bool descriptor = e.flags & kFlagDescriptor;
  if (z.has_offset && z.offset != e.local_header_offset) {
    return Status::Malformed(where.str() + ": local zip64 extra field gives header offset " +
                             Num(z.offset) + " but the header is at " + Num(e.local_header_offset));
  }
  auto agrees = [&](uint64_t local, uint64_t central) {
    return local == central || (descriptor && local == 0);
  };
  if (z.has_sizes && (!agrees(z.uncompressed_size, e.uncompressed_size) ||
                      !agrees(z.compressed_size, e.compressed_size))) {
    return Status::Malformed(where.str() + ": local zip64 sizes (" + Num(z.uncompressed_size) +
                             ", " + Num(z.compressed_size) + ") differ from the central entry's (" +
                             Num(e.uncompressed_size) + ", " + Num(e.compressed_size) + ")");
  }
  if (descriptor && crc == 0 && csize32 == 0 && usize32 == 0) return Status::Ok();
  auto fits = [&](uint32_t v32, uint64_t central) {
    return v32 == kZipMax32 ? z.has_sizes : v32 == central;
  };
  if (crc != e.crc32 || !fits(csize32, e.compressed_size) || !fits(usize32, e.uncompressed_size)) {
    return Status::Malformed(where.str() +
                             ": local header CRC or sizes differ from the central entry");
  }
  return Status::Ok();
}

// The data descriptor at `at`: optional signature, CRC, then 8-byte sizes if
// the local header has a zip64 field, else 4-byte ones. Returns its end.
Result<uint64_t> CheckDescriptor(ByteView image, uint64_t at, uint64_t cd_offset, const ZipEntry& e,
                                 bool zip64, const ZipWhere& where) {
  ByteReader dr(image.subspan(at, cd_offset - at), at);
  // The longest descriptor (signature, CRC, 8-byte sizes) fits: no read can
  // fail and none needs a message.
  const std::string what = dr.remaining() >= 24 ? std::string() : where.str() + " data descriptor";
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t first, dr.U32LE(what));
  uint32_t dcrc = first;
  if (first == kZipDescriptorSig) {
    SAFEMODEL_ASSIGN_OR_RETURN(dcrc, dr.U32LE(what));
  }
  uint64_t dc, du;
  if (zip64) {
    SAFEMODEL_ASSIGN_OR_RETURN(dc, dr.U64LE(what));
    SAFEMODEL_ASSIGN_OR_RETURN(du, dr.U64LE(what));
  } else {
    SAFEMODEL_ASSIGN_OR_RETURN(dc, dr.U32LE(what));
    SAFEMODEL_ASSIGN_OR_RETURN(du, dr.U32LE(what));
  }
  if (dcrc != e.crc32 || dc != e.compressed_size || du != e.uncompressed_size) {
    return Status::Malformed(where.str() + ": data descriptor differs from the central entry");
  }
  return dr.absolute_position();
}

// The local header of `*e` (which must agree with the central entry) and
// its data and descriptor, all before the central directory. Sets
// e->data_offset; returns the end of the entry.
Result<uint64_t> CheckLocalEntry(ByteView image, uint64_t cd_offset, ZipEntry* e) {
  const ZipWhere where = ZipWhere::Entry(e->name);
  const uint64_t lho = e->local_header_offset;
  if (lho >= cd_offset)
    return Status::Malformed(where.str() + ": local header is not before the central directory");
  ByteReader lr(image.subspan(lho, cd_offset - lho), lho);
  SAFEMODEL_ASSIGN_OR_RETURN(ZipLocalHeader l, ReadZipLocalHeader(lr, where));
  if (AsChars(l.name) != e->name) {
    return Status::Malformed(where.str() + ": local header names it '" +
                             Printable(AsChars(l.name)) + "' (central and local names differ)");
  }
  if (l.flags != e->flags || l.method != e->method) {
    return Status::Malformed(where.str() +
                             ": local header flags or method differ from the central entry");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Zip64Values field,
                             ParseExtra(l.extra, ZipWhere::Entry(e->name, " local")));
  SAFEMODEL_ASSIGN_OR_RETURN(LocalZip64 z, ReadLocalZip64(field, *e, where));
  SAFEMODEL_RETURN_IF_ERROR(
      CheckLocalValues(*e, z, l.crc32, l.compressed_size, l.uncompressed_size, where));
  e->data_offset = lr.absolute_position();
  uint64_t end;
  if (!CheckedAdd(e->data_offset, e->compressed_size, &end) || end > cd_offset) {
    return Status::Malformed(where.str() + ": data runs past the central directory");
  }
  if (!(e->flags & kFlagDescriptor)) return end;
  return CheckDescriptor(image, end, cd_offset, *e, z.present, where);
}

// Entries (local header to end of data or descriptor) must tile
// [0, cd_offset) exactly: no prefix, gap or overlap.
Status CheckTiling(std::vector<std::pair<uint64_t, uint64_t>> spans, uint64_t cd_offset) {
  std::sort(spans.begin(), spans.end());
  uint64_t cursor = 0;
  for (const auto& [begin, end] : spans) {
    if (begin != cursor) {
      return Status::Malformed(
          "zip: " + std::string(begin > cursor ? "unaccounted bytes" : "overlapping entries") +
          " at offset " + Num(std::min(begin, cursor)) + " (hidden data or a crafted archive)");
    }
    cursor = end;
  }
  if (cursor != cd_offset) {
    return Status::Malformed("zip: unaccounted bytes at offset " + Num(cursor) +
                             " before the central directory");
  }
  return Status::Ok();
}

// The entries' spans [local header, end of entry), for CheckTiling, without
// a pair per entry while they come in the order every writer writes them:
// from offset 0, each where the last ended. That run is kept as one span
// [0, run_end); the first entry out of it starts a list. CheckTiling's
// verdict and message are the same as over every span: the run's spans tile
// it, so the first span out of place conflicts with it at the same offset
// as with them.
class EntrySpans {
 public:
  void Add(uint64_t begin, uint64_t end) {
    if (others_.empty() && begin == run_end_) {
      run_end_ = end;
    } else {
      others_.emplace_back(begin, end);
    }
  }
  Status Check(uint64_t cd_offset) && {
    if (run_end_ > 0) others_.emplace_back(0, run_end_);
    return CheckTiling(std::move(others_), cd_offset);
  }

 private:
  uint64_t run_end_ = 0;
  std::vector<std::pair<uint64_t, uint64_t>> others_;
};

// The entries' names, to find one twice: open addressing over entry
// indices by keyed hash (names come from the file), 4 bytes a slot and at
// most half full, where a node-based set of views took ~56 bytes an entry.
class NameIndex {
 public:
  explicit NameIndex(uint64_t entries)
      : slots_(std::bit_ceil(std::max<size_t>(2 * static_cast<size_t>(entries), 2)), kFree) {}
  // Adds entries[index]'s name; false if an earlier entry has it. `entries`
  // holds every entry added before (names compared in place).
  bool Insert(const std::vector<ZipEntry>& entries, uint32_t index, std::string_view name) {
    const size_t mask = slots_.size() - 1;
    for (size_t at = static_cast<size_t>(KeyedHash(name)) & mask;; at = (at + 1) & mask) {
      if (slots_[at] == kFree) {
        slots_[at] = index;
        return true;
      }
      if (entries[slots_[at]].name == name) return false;
    }
  }

 private:
  static constexpr uint32_t kFree = ~uint32_t{0};
  static_assert(kMaxZipEntries < kFree, "every entry index fits a slot");
  std::vector<uint32_t> slots_;
};

// libzip's view of the image: a read-only, seekable source over the bytes,
// as zip_source_buffer_create gives, which also notes what libzip reads
// with the archive's MapResidency (its consistency check reads every local
// header).
struct ImageSource {
  MapResidency* residency;
  ByteView image;
  uint64_t offset = 0;
  zip_error_t error;
};

zip_int64_t ImageSourceCallback(void* user, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
  auto* src = static_cast<ImageSource*>(user);
  switch (cmd) {
    case ZIP_SOURCE_OPEN:
      src->offset = 0;
      return 0;
    case ZIP_SOURCE_READ: {
      const uint64_t n = std::min<uint64_t>(len, src->image.size() - src->offset);
      if (n > 0) {
        std::memcpy(data, src->image.data() + src->offset, n);
        src->residency->Touch(src->image.subspan(src->offset, n));
      }
      src->offset += n;
      return static_cast<zip_int64_t>(n);
    }
    case ZIP_SOURCE_CLOSE:
      return 0;
    case ZIP_SOURCE_STAT: {
      if (len < sizeof(zip_stat_t)) {
        zip_error_set(&src->error, ZIP_ER_INVAL, 0);
        return -1;
      }
      auto* st = static_cast<zip_stat_t*>(data);
      zip_stat_init(st);
      st->size = src->image.size();
      st->comp_size = src->image.size();
      st->comp_method = ZIP_CM_STORE;
      st->encryption_method = ZIP_EM_NONE;
      st->valid =
          ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD | ZIP_STAT_ENCRYPTION_METHOD;
      return sizeof(zip_stat_t);
    }
    case ZIP_SOURCE_ERROR:
      return zip_error_to_data(&src->error, data, len);
    case ZIP_SOURCE_FREE:
      zip_error_fini(&src->error);
      delete src;
      return 0;
    case ZIP_SOURCE_SEEK: {
      const zip_int64_t to =
          zip_source_seek_compute_offset(src->offset, src->image.size(), data, len, &src->error);
      if (to < 0) return -1;
      src->offset = static_cast<uint64_t>(to);
      return 0;
    }
    case ZIP_SOURCE_TELL:
      return static_cast<zip_int64_t>(src->offset);
    case ZIP_SOURCE_SUPPORTS:
      return zip_source_make_command_bitmap(
          ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT, ZIP_SOURCE_ERROR,
          ZIP_SOURCE_FREE, ZIP_SOURCE_SEEK, ZIP_SOURCE_TELL, ZIP_SOURCE_SUPPORTS, -1);
    default:
      zip_error_set(&src->error, ZIP_ER_OPNOTSUPP, 0);
      return -1;
  }
}

// Reads every central entry in order, as ParseCentralEntry does, and calls
// visit(index, entry) with each (its name a view of the image): true if
// every entry parsed and was visited and the central directory ends with
// the last, false at the first that fails to parse or for which visit
// returns false, or for bytes after the last. No table is built.
template <typename Visit>
bool ForEachCentralEntry(ByteView image, const Directory& dir, MapResidency* residency,
                         Visit visit) {
  ByteReader cr(image.subspan(dir.offset, dir.size), dir.offset);
  for (uint64_t i = 0; i < dir.entries; ++i) {
    std::string_view name_bytes;
    const uint64_t central_at = cr.position();
    Result<ZipEntry> e = ParseCentralEntry(cr, i, &name_bytes);
    if (!e.ok()) return false;
    residency->Touch(image.subspan(dir.offset + central_at, cr.position() - central_at));
    if (!visit(i, *e)) return false;
  }
  return cr.at_end();
}

// Whether the archive passes every check ParseEntries makes but the names'
// uniqueness: each central entry alone, its local header, data and
// descriptor (CheckLocalEntry), no bytes after the last central entry, and
// the tiling. None needs a table (EntrySpans keeps writer-ordered entries as
// one span). libzip, whose consistency check parses every local header and
// its extra fields, reads an archive only when they pass, so it never sees
// one our checks of an entry or of the tiling refuse; it used to come after
// the whole parse. Only a verdict: ParseEntries runs after it either way
// and gives the message (its order of checks, the duplicate name first
// where it comes first).
bool EntriesPassAllButUniqueness(ByteView image, const Directory& dir, MapResidency* residency) {
  EntrySpans spans;
  const bool each = ForEachCentralEntry(image, dir, residency, [&](uint64_t, ZipEntry& e) {
    Result<uint64_t> end = CheckLocalEntry(image, dir.offset, &e);
    if (!end.ok()) return false;
    residency->Touch(image.subspan(e.local_header_offset, e.data_offset - e.local_header_offset));
    spans.Add(e.local_header_offset, *end);
    return true;
  });
  return each && std::move(spans).Check(dir.offset).ok();
}

// Every entry, checked and copied into `entries` (names end to end in
// `names_arena`, reserved here for the whole central directory so that it
// never moves under the entries' views), then the names' uniqueness and the
// tiling.
Status ParseEntries(ByteView image, const Directory& dir, MapResidency* residency,
                    std::string* names_arena, std::vector<ZipEntry>* entries) {
  ByteReader cr(image.subspan(dir.offset, dir.size), dir.offset);
  entries->reserve(static_cast<size_t>(std::min<uint64_t>(dir.entries, dir.size / 46 + 1)));
  EntrySpans spans;
  NameIndex names(entries->capacity());
  names_arena->reserve(static_cast<size_t>(dir.size));
  for (uint64_t i = 0; i < dir.entries; ++i) {
    std::string_view name_bytes;
    const uint64_t central_at = cr.position();
    SAFEMODEL_ASSIGN_OR_RETURN(ZipEntry e, ParseCentralEntry(cr, i, &name_bytes));
    // The names are inside the central directory: the arena's reserve holds
    // them all and it never reallocates.
    if (names_arena->size() + e.name.size() > names_arena->capacity()) {
      return Status::Internal("zip: entry names exceed the central directory");
    }
    const size_t name_at = names_arena->size();
    names_arena->append(e.name);
    e.name = std::string_view(names_arena->data() + name_at, e.name.size());
    residency->Touch(image.subspan(dir.offset + central_at, cr.position() - central_at));
    // i < kMaxZipEntries (ParseEndRecords): an index fits 32 bits.
    if (!names.Insert(*entries, static_cast<uint32_t>(i), e.name)) {
      return Status::Malformed("zip entry '" + Printable(e.name) + "' appears twice");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t end, CheckLocalEntry(image, dir.offset, &e));
    residency->Touch(image.subspan(e.local_header_offset, e.data_offset - e.local_header_offset));
    spans.Add(e.local_header_offset, end);
    entries->push_back(std::move(e));
  }
  if (!cr.at_end()) {
    return Status::Malformed("zip: " + Num(cr.remaining()) + " bytes after the last central entry");
  }
  return std::move(spans).Check(dir.offset);
}

struct ZipDiscard {
  void operator()(zip_t* za) const { zip_discard(za); }
};
using LibzipPtr = std::unique_ptr<zip_t, ZipDiscard>;

constexpr uint64_t kNoEntry = ~uint64_t{0};

// libzip's reading of an archive, taken before any table of ours exists and
// judged (JudgeLibzipView) only once our parse has accepted the archive: our
// messages, more precise, come first.
struct LibzipView {
  LibzipPtr za;                          // open, unless refused or let go
  Status refusal;                        // why libzip did not read the archive
  zip_int64_t entries = 0;               // how many entries it sees
  uint64_t first_difference = kNoEntry;  // the first entry it sees otherwise
  bool compared_all = false;             // every central entry was compared
  bool any_deflated = false;             // libzip will inflate members
};

// Opens libzip over the image (from memory, never from a path), checking
// each local header against its central entry (ZIP_CHECKCONS).
void OpenWithLibzip(ByteView image, MapResidency* residency, LibzipView* view) {
  zip_error_t err;
  zip_error_init(&err);
  auto* source = new ImageSource{residency, image, 0, {}};
  zip_error_init(&source->error);
  zip_source_t* src = zip_source_function_create(ImageSourceCallback, source, &err);
  if (src == nullptr) {
    zip_error_fini(&source->error);
    delete source;
    zip_error_fini(&err);
    view->refusal = Status::LimitExceeded("libzip could not allocate a source");
    return;
  }
  view->za.reset(zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err));
  if (view->za == nullptr) {
    view->refusal = Status::Malformed(std::string("libzip rejects the archive: ") +
                                      zip_error_strerror(&err));
    zip_source_free(src);
  }
  zip_error_fini(&err);
}

// libzip's stat of every entry (name, sizes, CRC, method) against the
// central directory's record, in order, up to the first that differs.
void CompareWithLibzip(ByteView image, const Directory& dir, MapResidency* residency,
                       LibzipView* view) {
  view->entries = zip_get_num_entries(view->za.get(), 0);
  if (view->entries < 0 || static_cast<uint64_t>(view->entries) != dir.entries) return;
  view->compared_all = ForEachCentralEntry(image, dir, residency, [&](uint64_t i, ZipEntry& e) {
    zip_stat_t sb;
    zip_stat_init(&sb);
    if (zip_stat_index(view->za.get(), i, ZIP_FL_ENC_RAW, &sb) != 0 || sb.name == nullptr ||
        e.name != sb.name || sb.size != e.uncompressed_size || sb.comp_size != e.compressed_size ||
        sb.crc != e.crc32 || sb.comp_method != static_cast<int32_t>(e.method)) {
      view->first_difference = i;
      return false;
    }
    view->any_deflated = view->any_deflated || e.method != 0;
    return true;
  });
}

// What libzip's view says of an archive our parse accepted with `entries`.
Status JudgeLibzipView(const LibzipView& view, const std::vector<ZipEntry>& entries) {
  SAFEMODEL_RETURN_IF_ERROR(view.refusal);
  if (view.entries < 0 || static_cast<uint64_t>(view.entries) != entries.size()) {
    return Status::Malformed("libzip sees " + Num(static_cast<uint64_t>(view.entries)) +
                             " entries where the central directory has " + Num(entries.size()));
  }
  if (view.first_difference < entries.size()) {
    return Status::Malformed("zip entry '" + Printable(entries[view.first_difference].name) +
                             "': libzip's view differs from the central directory");
  }
  if (!view.compared_all) {
    return Status::Internal("zip: libzip's view was not compared with every entry");
  }
  return Status::Ok();
}

}  // namespace

struct ZipArchive::LibzipHandle {
  LibzipPtr za;
};

ZipArchive::~ZipArchive() = default;

// libzip's copy of the directory (~250 bytes an entry, 25 MB for 100,000)
// and our tables (the entries, the names, the spans and the name set, ~13
// MB) were alive together when libzip came after our parse. It now comes
// first, once the archive has passed every check of ours but the names'
// uniqueness (EntriesPassAllButUniqueness: each entry, its local header
// included, and the tiling, none needing a table), and is compared entry
// by entry with the central directory without a table; an archive of
// stored entries (torch.save, np.savez) then lets it go, and the heap is
// trimmed, before our tables are built. libzip thus never parses an archive
// our per-entry or tiling checks refuse. What libzip says is reported only
// if our parse accepts the archive, so an archive both reject gets our
// message.
Result<std::shared_ptr<ZipArchive>> ZipArchive::Open(ByteView image, ByteView droppable_map) {
  std::shared_ptr<ZipArchive> a(new ZipArchive());
  a->image_ = image;
  // Only an image inside the map: compared as addresses, the image is
  // either part of the map or unrelated memory, which is never dropped.
  if (!droppable_map.empty() && !image.empty() && SpanInside(image, droppable_map)) {
    a->residency_ = MapResidency(droppable_map);
  }
  SAFEMODEL_ASSIGN_OR_RETURN(const Directory dir, ParseEndRecords(image));
  LibzipView libzip;
  libzip.refusal = Status::Internal("zip: an entry failed its own checks but the parse passed");
  if (EntriesPassAllButUniqueness(image, dir, &a->residency_)) {
    libzip.refusal = Status::Ok();
    OpenWithLibzip(image, &a->residency_, &libzip);
    if (libzip.za != nullptr) CompareWithLibzip(image, dir, &a->residency_, &libzip);
  }
  // libzip is needed afterwards only to inflate members of an archive that
  // passes.
  const bool keep = libzip.za != nullptr && libzip.compared_all && libzip.any_deflated;
  if (libzip.za != nullptr && !keep) {
    libzip.za.reset();
    // Its small blocks leave the heap resident as free space unless given
    // back; our tables, built next, would otherwise sit on top of them.
    // Not in sanitizer builds: their allocator is not glibc's, whose first
    // use would initialise it (getrandom, outside the worker's policy; as
    // the worker's own trim, worker_main.cc).
#if !defined(SAFEMODEL_SANITIZER_BUILD)
    if (dir.entries >= kZipTrimAfterEntries) malloc_trim(0);
#endif
  }
  SAFEMODEL_RETURN_IF_ERROR(ParseEntries(image, dir, &a->residency_, &a->names_, &a->entries_));
  SAFEMODEL_RETURN_IF_ERROR(JudgeLibzipView(libzip, a->entries_));
  if (keep) {
    a->libzip_ = std::make_unique<LibzipHandle>();
    a->libzip_->za = std::move(libzip.za);
  }
  a->residency_.DropAll();
  a->crc_checked_.assign(a->entries_.size(), false);
  return a;
}

const ZipEntry* ZipArchive::Find(std::string_view name) const {
  for (const ZipEntry& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

size_t ZipArchive::IndexOf(const ZipEntry& entry) const {
  return static_cast<size_t>(&entry - entries_.data());
}

Result<ByteView> ZipArchive::StoredData(const ZipEntry& entry) {
  if (entry.method != 0) return Status::Internal("StoredData on a deflated entry");
  ByteView data = image_.subspan(entry.data_offset, entry.compressed_size);
  size_t idx = IndexOf(entry);
  if (!crc_checked_[idx]) {
    uint32_t crc = 0;
    for (uint64_t at = 0; at < data.size(); at += kZipCrcPieceBytes) {
      const ByteView piece = data.subspan(at, std::min<uint64_t>(kZipCrcPieceBytes, data.size() - at));
      crc = libdeflate_crc32(crc, piece.data(), piece.size());
      residency_.Drop(piece);
    }
    if (crc != entry.crc32) {
      return Status::Malformed("zip entry '" + Printable(entry.name) + "': CRC mismatch (stored " +
                               Num(entry.crc32) + ", computed " + Num(crc) + ")");
    }
    crc_checked_[idx] = true;
  }
  return data;
}

Result<OwnedBuffer> ZipArchive::ReadAll(const ZipEntry& entry, uint64_t max_bytes) {
  const std::string where = "zip entry '" + Printable(entry.name) + "'";
  if (entry.uncompressed_size > max_bytes) {
    return Status::LimitExceeded(where + " is " + Num(entry.uncompressed_size) +
                                 " bytes uncompressed, over the memory limit of " + Num(max_bytes));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(OwnedBuffer buf,
                             OwnedBuffer::Allocate(entry.uncompressed_size, where));
  if (entry.method == 0) {
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView data, StoredData(entry));
    if (!data.empty()) std::memcpy(buf.data(), data.data(), data.size());
    return buf;
  }
  if (!libzip_) return Status::Internal(where + ": deflated, but libzip was released");
  zip_file_t* f = zip_fopen_index(libzip_->za.get(), IndexOf(entry), 0);
  if (f == nullptr) return Status::Malformed(where + ": libzip cannot open it");
  uint64_t got = 0;
  Status status;
  while (got < entry.uncompressed_size) {
    uint64_t want = std::min<uint64_t>(entry.uncompressed_size - got, 16u << 20);
    zip_int64_t n = zip_fread(f, buf.data() + got, want);
    if (n <= 0) {
      status = Status::Malformed(where + ": inflating failed after " + Num(got) + " of " +
                                 Num(entry.uncompressed_size) + " bytes (" +
                                 zip_error_strerror(zip_file_get_error(f)) + ")");
      break;
    }
    got += static_cast<uint64_t>(n);
  }
  if (status.ok()) {
    uint8_t extra;
    if (zip_fread(f, &extra, 1) != 0) {
      status = Status::Malformed(where + ": inflates to more than its declared size");
    }
  }
  zip_fclose(f);
  SAFEMODEL_RETURN_IF_ERROR(status);
  uint32_t crc = Crc32(buf.view());
  if (crc != entry.crc32) {
    return Status::Malformed(where + ": CRC mismatch after inflating");
  }
  return buf;
}

Result<ByteView> ZipArchive::Contents(const ZipEntry& entry, uint64_t max_bytes,
                                      OwnedBuffer* holder) {
  if (entry.method == 0) return StoredData(entry);
  SAFEMODEL_ASSIGN_OR_RETURN(*holder, ReadAll(entry, max_bytes));
  return holder->view();
}

Result<ByteView> ZipArchive::PrefixView(const ZipEntry& entry, uint64_t n, std::string* holder) {
  if (entry.method == 0) {
    const ByteView prefix = image_.subspan(entry.data_offset, std::min(n, entry.uncompressed_size));
    residency_.Touch(prefix);
    return prefix;
  }
  SAFEMODEL_ASSIGN_OR_RETURN(*holder, ReadPrefix(entry, n));
  return AsBytes(*holder);
}

Result<std::string> ZipArchive::ReadPrefix(const ZipEntry& entry, uint64_t n) {
  uint64_t want = std::min(n, entry.uncompressed_size);
  if (entry.method == 0) {
    return std::string(AsChars(image_.subspan(entry.data_offset, want)));
  }
  const std::string where = "zip entry '" + Printable(entry.name) + "'";
  std::string out(want, '\0');
  if (!libzip_) return Status::Internal(where + ": deflated, but libzip was released");
  zip_file_t* f = zip_fopen_index(libzip_->za.get(), IndexOf(entry), 0);
  if (f == nullptr) return Status::Malformed(where + ": libzip cannot open it");
  uint64_t got = 0;
  while (got < want) {
    zip_int64_t k = zip_fread(f, out.data() + got, want - got);
    if (k <= 0) break;
    got += static_cast<uint64_t>(k);
  }
  zip_fclose(f);
  if (got != want) return Status::Malformed(where + ": inflating its first bytes failed");
  return out;
}

}  // namespace safemodel::loader
