#include "loader/pickle/storage_keys.h"

#include <algorithm>
#include <cstdint>

namespace safemodel::loader::pickle {

static_assert(kMaxZipEntries <= UINT32_MAX, "an entry index fits a record");

void StorageKeys::Seal() {
  // Stable: of equal keys the first added comes first, and unique keeps it.
  std::stable_sort(records_.begin(), records_.end(),
                   [this](uint32_t a, uint32_t b) { return KeyOf(a) < KeyOf(b); });
  records_.erase(std::unique(records_.begin(), records_.end(),
                             [this](uint32_t a, uint32_t b) { return KeyOf(a) == KeyOf(b); }),
                 records_.end());
  records_.shrink_to_fit();
}

size_t StorageKeys::IndexOf(std::string_view key) const {
  auto it = std::lower_bound(records_.begin(), records_.end(), key,
                             [this](uint32_t r, std::string_view k) { return KeyOf(r) < k; });
  if (it == records_.end() || KeyOf(*it) != key) return kNone;
  return static_cast<size_t>(it - records_.begin());
}

uint32_t StorageTable::Find(std::string_view key) const {
  if (layout_ != nullptr) {
    const size_t i = layout_->IndexOf(key);
    if (i != StorageKeys::kNone) return of_layout_[i];
  }
  auto it = others_.find(key);
  return it == others_.end() ? kNoStorage : it->second;
}

void StorageTable::Insert(std::string_view key, uint32_t index) {
  ++count_;
  if (layout_ != nullptr) {
    const size_t i = layout_->IndexOf(key);
    if (i != StorageKeys::kNone) {
      of_layout_[i] = index;
      return;
    }
  }
  others_.emplace(std::string(key), index);
}

}  // namespace safemodel::loader::pickle
