#include "loader/model.h"

#include <cstdlib>

namespace safemodel::loader {

void OwnedBuffer::Free::operator()(uint8_t* p) const { std::free(p); }

Result<OwnedBuffer> OwnedBuffer::Allocate(uint64_t size, std::string_view what) {
  OwnedBuffer b;
  if (size == 0) return b;
  // Zero-filled: see the rule in model.h.
  b.data_.reset(static_cast<uint8_t*>(std::calloc(size, 1)));
  if (b.data_ == nullptr) {
    return Status::LimitExceeded(std::string(what) + ": cannot allocate " + std::to_string(size) +
                                 " bytes (memory limit)");
  }
  b.size_ = size;
  return b;
}

ElementSource ViewSource(ByteView bytes, uint32_t swap_unit, std::vector<int64_t> strides,
                         uint64_t offset) {
  return [bytes, swap_unit, strides = std::move(strides), offset]() -> Result<Elements> {
    Elements e;
    e.view = bytes;
    e.swap_unit = swap_unit;
    e.strides = strides;
    e.offset = offset;
    return e;
  };
}

}  // namespace safemodel::loader
