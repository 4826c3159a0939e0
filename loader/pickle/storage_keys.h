// The storage keys of a torch checkpoint, held once: the data/<key> records
// of a zip layout in one sorted vector of entry indices (keys are the ends of
// the members' names), and
// the storage records data.pkl made, one slot per layout key. A checkpoint
// of 100,000 tensors held these keys in two node maps (layout and storage
// table, ~7 MB each) beside the zip's own entry table.
//
// Worst case: Find is O(log n) string comparisons; Seal O(n log n).
//
// Trust: the keys are members' names and persistent-id strings from an
// untrusted file; nothing here reads bytes, it compares and stores views.
#ifndef SAFEMODEL_LOADER_PICKLE_STORAGE_KEYS_H_
#define SAFEMODEL_LOADER_PICKLE_STORAGE_KEYS_H_

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "loader/containers/zip_archive.h"
#include "loader/pickle/pickle_graph.h"

namespace safemodel::loader::pickle {

// The data/<key> records of a zip layout, by key (in std::string order):
// each is the index of its member in the archive's entry table (4 bytes; a
// view of the key and a pointer took 24), and its key the end of the
// member's name.
class StorageKeys {
 public:
  static constexpr size_t kNone = static_cast<size_t>(-1);

  // An empty table, which takes no Add.
  StorageKeys() = default;
  // Records are entries of the table starting at `entries` (an archive's
  // entries(), which must outlive this table and not move), each keyed by
  // its name from byte `key_at` on.
  StorageKeys(const ZipEntry* entries, size_t key_at) : entries_(entries), key_at_(key_at) {}

  // Adds `entry`, one of the table's, whose name is at least `key_at` bytes
  // long. Of equal keys the first added is kept (as a map's emplace would).
  // Seal() after the last Add, before any lookup.
  void Add(const ZipEntry& entry) {
    records_.push_back(static_cast<uint32_t>(&entry - entries_));
  }
  void Seal();

  // The position of `key` in key order, or kNone.
  size_t IndexOf(std::string_view key) const;
  // The record of `key`, or null.
  const ZipEntry* Find(std::string_view key) const {
    const size_t i = IndexOf(key);
    return i == kNone ? nullptr : entry(i);
  }
  size_t size() const { return records_.size(); }
  std::string_view key(size_t i) const { return KeyOf(records_[i]); }
  const ZipEntry* entry(size_t i) const { return entries_ + records_[i]; }

 private:
  std::string_view KeyOf(uint32_t record) const { return entries_[record].name.substr(key_at_); }

  const ZipEntry* entries_ = nullptr;
  size_t key_at_ = 0;
  // Entry indices (an archive has at most kMaxZipEntries), in key order
  // once sealed.
  std::vector<uint32_t> records_;
};

// The storage data.pkl made for each key, as its index in Graph::storages
// (its StorageInfo outlives the record objects, which are released with
// their tensors' arguments): a slot per key of the layout (when there is
// one), a map for any other key (a key with no record, which the conversion
// refuses; every key of a legacy file).
class StorageTable {
 public:
  // `layout` (may be null) must be sealed and outlive the table.
  explicit StorageTable(const StorageKeys* layout = nullptr)
      : layout_(layout), of_layout_(layout ? layout->size() : 0, kNoStorage) {}

  // The storage made for `key` before, or kNoStorage.
  uint32_t Find(std::string_view key) const;
  // Records storage `index` for `key`, which Find did not know.
  void Insert(std::string_view key, uint32_t index);
  // Keys with a storage.
  size_t size() const { return count_; }
  // Whether layout key i has a storage.
  bool Referenced(size_t i) const { return of_layout_[i] != kNoStorage; }

 private:
  const StorageKeys* layout_;
  std::vector<uint32_t> of_layout_;
  std::map<std::string, uint32_t, std::less<>> others_;
  size_t count_ = 0;
};

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_STORAGE_KEYS_H_
