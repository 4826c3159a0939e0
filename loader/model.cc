#include "loader/model.h"

#include <new>

namespace safemodel::loader {

Result<OwnedBuffer> OwnedBuffer::Allocate(uint64_t size, std::string_view what) {
  OwnedBuffer b;
  if (size == 0) return b;
  // new (nothrow) of uint8_t[] default-initialises: no zero fill.
  b.data_.reset(new (std::nothrow) uint8_t[size]);
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
