#include "loader/map_residency.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

namespace safemodel::loader {

namespace {

uintptr_t PageSize() {
  static const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// Drops [begin, end) (page-aligned, inside the map). Failure changes nothing
// but memory use (the worker's seccomp policy allows MADV_DONTNEED only).
void DropPageRange(uintptr_t begin, uintptr_t end) {
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

}  // namespace

MapResidency::MapResidency(ByteView map) {
  if (map.empty()) return;
  const uintptr_t page = PageSize();
  begin_ = reinterpret_cast<uintptr_t>(map.data());
  // The map's last page is the mapping's, even past the file's last byte.
  end_ = (begin_ + map.size() + page - 1) & ~(page - 1);
}

bool MapResidency::Touch(ByteView bytes) {
  if (!active() || bytes.empty()) return false;
  // `bytes` is inside the map or unrelated memory.
  if (!AddressInside(bytes.data(), Range())) return false;
  const auto first = reinterpret_cast<uintptr_t>(bytes.data());
  if (++reads_ == kMapResidencyReads) DropTouched();
  const uintptr_t last = std::min<uintptr_t>(first + (bytes.size() - 1), end_ - 1);
  // Blocks of the file, not of the address space: the page cache's folios
  // start at file offsets that are multiples of their size, wherever the
  // map starts.
  const uintptr_t first_block = (first - begin_) / kMapResidencyBlock;
  const uintptr_t last_block = (last - begin_) / kMapResidencyBlock;
  if (last_block - first_block >= kMapResidencyBlocks) {
    // A read this long would push every remembered block out on its own:
    // drop them and its whole span now, with one call for the span (a
    // tensor of a gigabyte is 512 blocks).
    DropTouched();
    DropBlocks(first_block, last_block + 1);
    return true;
  }
  for (uintptr_t block = first_block; block <= last_block; ++block) Note(block);
  return true;
}

void MapResidency::Note(uintptr_t block) {
  if (block == last_) return;
  last_ = block;
  for (size_t i = 0; i < count_; ++i) {
    if (blocks_[i] == block) return;
  }
  if (count_ == blocks_.size()) {
    DropTouched();
    last_ = block;
  }
  blocks_[count_++] = block;
}

void MapResidency::DropBlocks(uintptr_t from, uintptr_t to) const {
  DropPageRange(begin_ + from * kMapResidencyBlock, std::min(begin_ + to * kMapResidencyBlock, end_));
}

void MapResidency::DropTouched() {
  for (size_t i = 0; i < count_; ++i) DropBlocks(blocks_[i], blocks_[i] + 1);
  count_ = 0;
  reads_ = 0;
  last_ = UINTPTR_MAX;
}

void MapResidency::DropAll() {
  if (!active()) return;
  DropPageRange(begin_, end_);
  count_ = 0;
  reads_ = 0;
  last_ = UINTPTR_MAX;
}

void MapResidency::Drop(ByteView bytes) {
  if (!active() || bytes.empty()) return;
  if (!AddressInside(bytes.data(), Range())) return;
  const auto first = reinterpret_cast<uintptr_t>(bytes.data());
  // Whole pages inside `bytes` only: the pages at its ends may hold bytes
  // still in use.
  const uintptr_t page = PageSize();
  const uintptr_t begin = (first + page - 1) & ~(page - 1);
  const uintptr_t end = std::min<uintptr_t>(first + bytes.size(), end_) & ~(page - 1);
  DropPageRange(begin, end);
}

}  // namespace safemodel::loader
