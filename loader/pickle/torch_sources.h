// The element sources and origins of the torch tensors of one conversion
// (pickle_convert.cc): one object per conversion, kept alive by
// ParsedModel::keepalive, so that a tensor holds a pointer and a few words.
#ifndef SAFEMODEL_LOADER_PICKLE_TORCH_SOURCES_H_
#define SAFEMODEL_LOADER_PICKLE_TORCH_SOURCES_H_

#include <cstdint>
#include <deque>
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

  // Stable: a deque's elements do not move.
  uint32_t AddStorage(StorageData d) {
    storages_.push_back(std::move(d));
    return static_cast<uint32_t>(storages_.size() - 1);
  }
  const StorageData& storage(uint32_t slot) const { return storages_[slot]; }
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
    return Origin(storages_[arg], tensor_name);
  }

  // "<where> tensor '<name>' (<storage's origin>)".
  std::string Origin(const StorageData& sd, std::string_view tensor_name) const;

 private:
  const std::string where_;
  std::deque<StorageData> storages_;
  std::deque<std::vector<int64_t>> strides_;
};

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_TORCH_SOURCES_H_
