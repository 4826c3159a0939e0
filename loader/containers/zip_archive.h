// A strict zip reader over an in-memory image (the worker's input map).
//
// The archive structure is parsed and checked here, byte by byte, before
// anything is read: the end records, every central-directory entry and the
// local header it points at. The central directory is the authority for
// every size and offset; each local value present is checked against it
// (a streaming writer's zero placeholders excepted). Rejected (the zip parser differentials
// scanners and loaders have been fooled by):
//   - data before the first local header, gaps or overlaps between entries,
//     anything after the end record's comment (hidden bytes, polyglots);
//   - a local header that disagrees with its central entry (name, method,
//     flags, sizes, CRC, the zip64 field's sizes and header offset, the data
//     descriptor);
//   - a local zip64 field laid out as no known writer lays it out (the
//     layouts of torch/miniz, zipfile and numpy are listed in
//     zip_archive.cc, where they are checked);
//   - encryption, multi-disk archives, compression other than stored and
//     deflate, unknown flag bits;
//   - duplicate names, absolute names, "..", backslashes, NUL, non-UTF-8;
//   - symbolic-link entries; sizes over the caps; deflate ratios no deflate
//     stream can reach.
// libzip (from memory, never from a path) inflates deflated entries (it is
// kept open only for an archive that has any); its view of the archive must
// match ours entry for entry. It reads the archive before our tables are
// built, and only one that has passed every check of ours but the names'
// uniqueness: every entry's (central entry, local header, data and
// descriptor) and the tiling. libzip never parses an archive those refuse;
// only a duplicate name can reach it. What it says is reported only when
// all of ours pass: an archive both reject gets our message. CRCs are
// verified on every read.
//
// Worst case: O(e log e + t) for e entries (the spans of entries out of
// their writer's order are sorted to find gaps and overlaps; names go
// through a keyed hash index) and a tail of t <= 64 KiB searched for the end
// record; reading a member is O(its bytes) and checks its CRC once.
//
// Trust: the image is untrusted; all offsets are checked here.
#ifndef SAFEMODEL_LOADER_CONTAINERS_ZIP_ARCHIVE_H_
#define SAFEMODEL_LOADER_CONTAINERS_ZIP_ARCHIVE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "safemodel/status.h"

#include "loader/containers/inflate.h"
#include "loader/containers/zip_records.h"
#include "loader/map_residency.h"
#include "loader/model.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// More entries than the format's tensor cap plus room for metadata members.
inline constexpr uint64_t kMaxZipEntries = 2'100'000;
inline constexpr uint64_t kMaxZipNameBytes = 4096;
// A stored member's CRC-32 over a droppable map is computed in pieces of this
// size, each piece's pages dropped after it: checking a 256 MiB tensor that
// then leaves by reference (TENSOR_REF) would otherwise keep all of it
// resident in the worker. L2-sized would cost a madvise per 256 KiB for
// nothing: a few MiB resident is the constant the memory target allows.
inline constexpr uint64_t kZipCrcPieceBytes = 8 << 20;
// Entries from which the heap is trimmed (malloc_trim) once libzip's copy of
// the directory is freed: ~250 bytes an entry, 25 MB for 100,000 (a
// millisecond's walk of the heap, far below the cost of reading as many
// entries); a small archive's few blocks are not worth the call.
inline constexpr uint64_t kZipTrimAfterEntries = 4096;

struct ZipEntry {
  // The name's bytes, in the archive's name arena (ZipArchive: one block for
  // every name, valid as long as the archive). A string per entry scattered a
  // heap block per name past 15 bytes (torch.save's "<stem>/data/<key>")
  // among libzip's, whose freed pages they then kept resident.
  std::string_view name;
  uint16_t method = 0;  // 0 stored, 8 deflated
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // first byte of the (compressed) data
  bool is_directory() const { return !name.empty() && name.back() == '/'; }
};

class ZipArchive {
 public:
  // Parses and validates the whole structure of `image` (which must outlive
  // the archive). Reads no member data. When `image` lies inside
  // `droppable_map` (ParseOptions::droppable_map: a read-only private file
  // map), the records read here, by libzip's cross-check and by PrefixView
  // keep at most a few blocks of the map resident (map_residency.h), and
  // none once Open returns: the walk of an archive touches every member's
  // local header (33 MB of pages for 100,000 float32[16] arrays, 2 MiB a
  // member for a file read before into large page-cache folios).
  static Result<std::shared_ptr<ZipArchive>> Open(ByteView image, ByteView droppable_map = {});
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  // In central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* Find(std::string_view name) const;
  // The bytes of a stored entry, in place, after checking its CRC (inside a
  // droppable map, the pages the check touched are dropped again).
  Result<ByteView> StoredData(const ZipEntry& entry);
  // The whole decompressed member (stored: a copy) in a new buffer of at most
  // `max_bytes`, CRC checked.
  Result<OwnedBuffer> ReadAll(const ZipEntry& entry, uint64_t max_bytes);
  // The member's bytes: in place when stored, else inflated into *holder.
  Result<ByteView> Contents(const ZipEntry& entry, uint64_t max_bytes, OwnedBuffer* holder);
  // The first min(n, size) decompressed bytes, for reading a member's header
  // without inflating all of it.
  Result<std::string> ReadPrefix(const ZipEntry& entry, uint64_t n);
  // The same bytes: in place when stored (no copy), else in *holder. Reads
  // of many members' prefixes keep only a few blocks resident (see Open).
  Result<ByteView> PrefixView(const ZipEntry& entry, uint64_t n, std::string* holder);
  // The caller is done, for now, with `bytes` of a stored member's view
  // (Contents, StoredData): inside a droppable map (see Open) their whole
  // pages leave the resident set; views stay valid, and pages read again
  // fault back from the file. Nothing happens to other bytes.
  void DropPages(ByteView bytes) { residency_.Drop(bytes); }
  // `bytes` of a stored member's view are being read (scattered small reads,
  // such as the names of a walk over data.pkl): inside a droppable map,
  // counted as the archive's own reads are, so that the pages they map back
  // in stay a few blocks (map_residency.h). Nothing happens to other bytes.
  void TouchPages(ByteView bytes) { residency_.Touch(bytes); }

 private:
  struct LibzipHandle;
  ZipArchive() = default;
  size_t IndexOf(const ZipEntry& entry) const;
  ByteView image_;
  MapResidency residency_;  // over the map holding image_, or inactive
  // Every entry's name, end to end, reserved once for the whole central
  // directory (which holds them all), so that it never moves under the
  // entries' views.
  std::string names_;
  std::vector<ZipEntry> entries_;
  std::vector<bool> crc_checked_;
  std::unique_ptr<LibzipHandle> libzip_;
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_ZIP_ARCHIVE_H_
