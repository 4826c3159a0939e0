#include "loader/pickle/torch_sources.h"

namespace safemodel::loader::pickle {

Result<Elements> TorchSources::Produce(const SourceArgs& args) const {
  SAFEMODEL_ASSIGN_OR_RETURN(Elements e, storages_[args.a].Fetch());
  if (args.d != 0) e.strides = strides_[args.d - 1];
  e.offset = args.b;
  e.swap_unit = args.c;
  return e;
}

std::string TorchSources::Origin(const StorageData& sd, std::string_view tensor_name) const {
  const std::string storage_origin = sd.Origin();
  std::string origin;  // one allocation, not one per '+'
  origin.reserve(where_.size() + tensor_name.size() + storage_origin.size() + 12);
  origin.append(where_).append(" tensor '").append(tensor_name).append("' (");
  origin.append(storage_origin).append(")");
  return origin;
}

}  // namespace safemodel::loader::pickle
