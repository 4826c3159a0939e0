// The element sources and origins of the torch tensors of one conversion
// (pickle_convert.cc): one object per conversion, kept alive by
// ParsedModel::keepalive, so that a tensor holds a pointer and a few words.
#ifndef SAFEMODEL_LOADER_PICKLE_TORCH_SOURCES_H_
#define SAFEMODEL_LOADER_PICKLE_TORCH_SOURCES_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "loader/model.h"
#include "loader/pickle/pickle_convert.h"

namespace safemodel::loader::pickle {

// The sources and origins of a conversion's torch tensors: the storages'
// data (fetch and origin, resolved once each) and the strides of the views
// that are not C-contiguous. One object per conversion, in
// ParsedModel::keepalive; a tensor holds its storage's slot, its offset, swap
// unit and strides slot (ElementSource's words), not a heap closure with a
// copy of the storage's fetch and of its strides, and not its origin text.
class TorchSources final : public ElementProducer, public OriginTeller {
 public:
  explicit TorchSources(std::string where) : where_(std::move(where)) {}

  // The storage's slot. A storage whose bytes are a member of the archive
  // that every storage so far came from (StorageData::members, one object
  // per conversion) is 24 bytes here; any other keeps its StorageData (104
  // bytes: a legacy file's fetch, its origin text). 100,000 storages of a
  // torch.save checkpoint were 10.4 MB at the conversion's peak.
  uint32_t AddStorage(StorageData d);
  uint64_t nbytes(uint32_t slot) const { return slots_[slot].nbytes; }
  bool big_endian(uint32_t slot) const { return slots_[slot].big_endian; }
  // 0 for C-contiguous strides (the tensor's shape implies them), else a slot + 1.
  uint32_t AddStrides(std::vector<int64_t> strides) {
    strides_.push_back(std::move(strides));
    return static_cast<uint32_t>(strides_.size());
  }

  // a = the storage's slot, b = the element offset, c = the swap unit,
  // d = the strides' slot + 1 or 0 (C-contiguous: Elements' empty strides).
  Result<Elements> Produce(const SourceArgs& args) const override;

  // arg = the storage's slot. The name is the tensor's: a converted torch
  // tensor keeps the name it was given (no caller of ConvertGraph with
  // storages renames its tensors).
  std::string Tell(uint64_t arg, std::string_view tensor_name) const override {
    return Origin(static_cast<uint32_t>(arg), tensor_name);
  }

  // "<where> tensor '<name>' (<storage's origin>)".
  std::string Origin(uint32_t slot, std::string_view tensor_name) const;

 private:
  struct Slot {
    uint64_t nbytes;
    uint64_t member;  // in members_, when other == 0
    uint32_t other;   // 0, or the StorageData's place in others_ + 1
    bool big_endian;
  };
  Result<Elements> Fetch(uint32_t slot) const;
  std::string StorageOrigin(uint32_t slot) const;

  const std::string where_;
  std::deque<Slot> slots_;
  std::shared_ptr<const StorageMembers> members_;  // the first storage's
  std::deque<StorageData> others_;
  std::deque<std::vector<int64_t>> strides_;
};

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_TORCH_SOURCES_H_
