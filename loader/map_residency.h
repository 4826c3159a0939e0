// Bounds how much of the worker's input map a parser's scattered reads keep
// resident (ParseOptions::droppable_map).
//
// The kernel maps a file's page-cache folio whole when one byte of it is
// read through a map, and a file read before with read(2) (by cat, by
// sha256sum, or by the parent's own hashing thread running ahead of the
// worker) sits in the page cache in large folios of up to 2 MiB, mapped by
// one page-table entry. One 30-byte zip local header then makes 2 MiB of the
// input resident in the worker: 256 members of 4 MiB made the worker's peak
// 508 MiB (tests/bench/PROFILE.md, "Warm inputs"). Counting records read
// does not bound that; counting the distinct 2 MiB blocks they fall in does.
//
// Contract: call Touch(bytes) when `bytes` have been read or are about to be
// (pages dropped under a reader only fault back in). The blocks touched
// are remembered; a read in a block beyond the last kMapResidencyBlocks, or
// the kMapResidencyReads-th read since the last drop, drops those blocks'
// pages from the resident set (MADV_DONTNEED); a read spanning more blocks
// than that drops them and its own blocks at once. Scattered reads then keep at
// most (kMapResidencyBlocks + 1) * kMapResidencyBlock bytes of the map
// resident, dense ones (a walk of 100,000 adjacent small members) the pages
// of kMapResidencyReads records. Dropped pages fault back from the file
// unchanged when read again (views into them stay valid). Bytes outside the
// map are never dropped; with no map every call does nothing. Not
// thread-safe.
#ifndef SAFEMODEL_LOADER_MAP_RESIDENCY_H_
#define SAFEMODEL_LOADER_MAP_RESIDENCY_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// The largest unit the kernel maps at once for a file-backed read: a PMD's
// span with 4 KiB pages (x86-64, arm64), the largest page-cache folio. Blocks
// are counted from the map's start, which is the file's (folios are aligned
// to their size in the file).
inline constexpr uint64_t kMapResidencyBlock = uint64_t{2} << 20;
// Blocks remembered between two drops: a zip walk alternates between the
// central directory and a local header, libzip's check reads a third place;
// four leave room for both and bound the resident part to 10 MiB.
inline constexpr size_t kMapResidencyBlocks = 4;
// Reads between two drops: a walk of adjacent small records (an .npz of
// 100,000 arrays) stays in one or two blocks, whose pages it would otherwise
// fill; 1,024 records of a few hundred bytes keep well under a megabyte.
inline constexpr uint64_t kMapResidencyReads = 1024;

class MapResidency {
 public:
  MapResidency() = default;
  // `map`: a read-only private file map that may be dropped, or empty.
  explicit MapResidency(ByteView map);

  bool active() const { return begin_ != end_; }
  // Notes a read of `bytes` (see the contract above); false, doing nothing,
  // if they do not start inside the map.
  bool Touch(ByteView bytes);
  // Drops the whole pages inside `bytes` now (a range read once, e.g. a
  // member whose CRC was just checked).
  void Drop(ByteView bytes);
  // Drops every remembered block now.
  void DropTouched();
  // Drops every page of the map now (a walk is over: what it and any reader
  // before it touched).
  void DropAll();

 private:
  // Block numbers count kMapResidencyBlock bytes from the map's start.
  void Note(uintptr_t block);
  void DropBlocks(uintptr_t from, uintptr_t to) const;  // [from, to)

  uintptr_t begin_ = 0;  // the map, its end rounded up to a page
  uintptr_t end_ = 0;
  ByteView Range() const { return {reinterpret_cast<const uint8_t*>(begin_), end_ - begin_}; }
  std::array<uintptr_t, kMapResidencyBlocks> blocks_{};
  size_t count_ = 0;
  uint64_t reads_ = 0;  // Touch calls since the last drop
  uintptr_t last_ = UINTPTR_MAX;  // the block noted last (most reads are in it)
};

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_MAP_RESIDENCY_H_
