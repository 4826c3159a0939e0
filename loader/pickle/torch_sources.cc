#include "loader/pickle/torch_sources.h"

namespace safemodel::loader::pickle {

uint32_t TorchSources::AddStorage(StorageData d) {
  Slot slot{d.nbytes, d.member, 0, d.big_endian};
  if (d.members != nullptr && (members_ == nullptr || members_ == d.members)) {
    if (members_ == nullptr) members_ = std::move(d.members);
  } else {
    others_.push_back(std::move(d));
    slot.member = 0;
    slot.other = static_cast<uint32_t>(others_.size());
  }
  slots_.push_back(slot);
  return static_cast<uint32_t>(slots_.size() - 1);
}

Result<Elements> TorchSources::Fetch(uint32_t slot) const {
  const Slot& s = slots_[slot];
  return s.other == 0 ? members_->Fetch(s.member) : others_[s.other - 1].Fetch();
}

std::string TorchSources::StorageOrigin(uint32_t slot) const {
  const Slot& s = slots_[slot];
  return s.other == 0 ? members_->Origin(s.member) : others_[s.other - 1].Origin();
}

Result<Elements> TorchSources::Produce(const SourceArgs& args) const {
  SAFEMODEL_ASSIGN_OR_RETURN(Elements e, Fetch(static_cast<uint32_t>(args.a)));
  if (args.d != 0) e.strides = strides_[args.d - 1];
  e.offset = args.b;
  e.swap_unit = args.c;
  return e;
}

std::string TorchSources::Origin(uint32_t slot, std::string_view tensor_name) const {
  const std::string storage_origin = StorageOrigin(slot);
  std::string origin;  // one allocation, not one per '+'
  origin.reserve(where_.size() + tensor_name.size() + storage_origin.size() + 12);
  origin.append(where_).append(" tensor '").append(tensor_name).append("' (");
  origin.append(storage_origin).append(")");
  return origin;
}

}  // namespace safemodel::loader::pickle
