#include "loader/containers/zipfile_view.h"

#include <algorithm>

#include "loader/containers/zip_archive.h"
#include "loader/containers/zip_records.h"

namespace safemodel::loader {

namespace {

// Offsets zipfile computes can go negative or past 2^64 on crafted input.
__extension__ using Int128 = __int128;

// zipfile's _EndRecData searches the last 64 KiB plus the end record for its
// signature; the zip64 end record it reads is 56 bytes.
constexpr uint64_t kZipfileCommentSearch = 1 << 16;
constexpr uint64_t kZip64EndBytes = 56;

uint64_t Le(ByteView b, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | b[off + i];
  return v;
}

}  // namespace

std::optional<ZipfileView> FindZipfileArchive(ByteView input) {
  const uint64_t size = input.size();
  if (size < kZipEndRecordBytes) return std::nullopt;
  uint64_t pos = UINT64_MAX;
  const uint64_t tail = size - kZipEndRecordBytes;
  if (StartsWith(input.subspan(tail), "PK\x05\x06") && input[size - 2] == 0 &&
      input[size - 1] == 0) {
    pos = tail;
  } else {
    const uint64_t from = size > kZipfileCommentSearch + kZipEndRecordBytes
                              ? size - kZipfileCommentSearch - kZipEndRecordBytes
                              : 0;
    for (uint64_t off = size - 4 + 1; off-- > from;) {  // rfind
      if (StartsWith(input.subspan(off), "PK\x05\x06")) {
        pos = off;
        break;
      }
    }
    if (pos == UINT64_MAX || pos + kZipEndRecordBytes > size) return std::nullopt;
  }
  ZipfileView v;
  v.end_record = pos;
  uint64_t cd_size = Le(input, pos + 12, 4);
  uint64_t cd_offset = Le(input, pos + 16, 4);
  // _EndRecData64: a locator exactly 20 bytes before, then a 56-byte zip64
  // end record exactly before that (its declared size is not used).
  if (pos >= kZip64LocatorBytes &&
      StartsWith(input.subspan(pos - kZip64LocatorBytes), "PK\x06\x07")) {
    const uint64_t loc = pos - kZip64LocatorBytes;
    const uint64_t disk = Le(input, loc + 4, 4), disks = Le(input, loc + 16, 4);
    if (disk != 0 || disks > 1) return std::nullopt;  // BadZipFile
    if (loc >= kZip64EndBytes && StartsWith(input.subspan(loc - kZip64EndBytes), "PK\x06\x06")) {
      const uint64_t rec = loc - kZip64EndBytes;
      v.zip64 = true;
      cd_size = Le(input, rec + 40, 8);
      cd_offset = Le(input, rec + 48, 8);
    }
  }
  Int128 concat = static_cast<Int128>(pos) - cd_size - cd_offset;
  if (v.zip64) concat -= kZip64EndBytes + kZip64LocatorBytes;
  const Int128 start = static_cast<Int128>(cd_offset) + concat;
  if (start < 0 || start > static_cast<Int128>(size)) return std::nullopt;
  v.concat = static_cast<int64_t>(concat);
  v.cd_start = static_cast<uint64_t>(start);
  v.cd_size = cd_size;
  v.has_entries = cd_size >= kZipCentralHeaderBytes &&
                  v.cd_start + kZipCentralHeaderBytes <= size &&
                  StartsWith(input.subspan(v.cd_start), "PK\x01\x02");
  return v;
}

std::optional<uint64_t> StrictZipEndRecord(ByteView input) {
  return FindZipExactEndRecord(input).offset;
}

Status CheckZipfileAgrees(ByteView input) {
  std::optional<uint64_t> ours = StrictZipEndRecord(input);
  std::optional<ZipfileView> py = FindZipfileArchive(input);
  if (!ours) return Status::Malformed("zip: no single end record");
  if (!py) {
    return Status::Malformed(
        "zip: Python's zipfile finds no archive in these bytes (the end "
        "record at byte " +
        Num(*ours) + " is not one it accepts)");
  }
  if (py->end_record != *ours) {
    return Status::Malformed(
        "zip: two readings of the same bytes: safemodel's end record is at byte " + Num(*ours) +
        ", but Python's zipfile (np.load, Keras) takes the last end-record signature, at byte " +
        Num(py->end_record) + " inside the archive comment, and reads another archive");
  }
  if (py->concat != 0) {
    return Status::Malformed(
        "zip: two readings of the same bytes: Python's zipfile shifts every offset by " +
        std::to_string(py->concat) +
        " bytes (a zip64 end record with extra data, or a central directory that does not end "
        "at the end record), so it reads other entries than torch and safemodel");
  }
  return Status::Ok();
}

void ForEachZipfileMember(ByteView input, const ZipfileView& view,
                          const std::function<void(const ZipfileMember&)>& visit) {
  if (view.cd_start >= input.size()) return;
  ByteReader cr(
      input.subspan(view.cd_start, std::min<uint64_t>(view.cd_size, input.size() - view.cd_start)));
  for (uint64_t i = 0; i < kMaxZipEntries && cr.remaining() >= kZipCentralHeaderBytes; ++i) {
    Result<ZipCentralHeader> h = ReadZipCentralHeader(cr, "central header");
    if (!h.ok()) break;
    uint64_t csize = h->compressed_size, lho = h->local_header_offset;
    ApplyZip64Extra(h->extra, h->uncompressed_size, &csize, &lho);
    // zipfile adds concat to the local header's offset, then skips the
    // local name and extra field.
    const Int128 local = static_cast<Int128>(lho) + view.concat;
    if (local < 0 || local + kZipLocalHeaderBytes > static_cast<Int128>(input.size())) continue;
    ByteReader lr(input.subspan(static_cast<uint64_t>(local)));
    if (!ReadZipLocalHeader(lr, "local header").ok()) continue;
    const uint64_t data = static_cast<uint64_t>(local) + lr.position();
    visit({std::string(AsChars(h->name)), h->method,
           input.subspan(data, std::min<uint64_t>(csize, input.size() - data))});
  }
}

}  // namespace safemodel::loader
