#include "loader/pickle/storage_keys.h"

#include <algorithm>

namespace safemodel::loader::pickle {

void StorageKeys::Seal() {
  // Stable: of equal keys the first added comes first, and unique keeps it.
  std::stable_sort(entries_.begin(), entries_.end(),
                   [](const Entry& a, const Entry& b) { return a.key < b.key; });
  entries_.erase(std::unique(entries_.begin(), entries_.end(),
                             [](const Entry& a, const Entry& b) { return a.key == b.key; }),
                 entries_.end());
  entries_.shrink_to_fit();
}

size_t StorageKeys::IndexOf(std::string_view key) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, std::string_view k) { return e.key < k; });
  if (it == entries_.end() || it->key != key) return kNone;
  return static_cast<size_t>(it - entries_.begin());
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
