#include "loader/model.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

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

namespace {

// A view with neither strides nor offset: a = the first byte's address,
// b = the byte count, c = the swap unit.
class ViewProducer final : public ElementProducer {
 public:
  Result<Elements> Produce(const SourceArgs& args) const override {
    Elements e;
    e.view = ByteView(reinterpret_cast<const uint8_t*>(args.a), args.b);
    e.swap_unit = args.c;
    return e;
  }
};

const ViewProducer kViewProducer;

}  // namespace

ElementSource ViewSource(ByteView bytes, uint32_t swap_unit, std::vector<int64_t> strides,
                         uint64_t offset) {
  if (strides.empty() && offset == 0) {
    return ElementSource(&kViewProducer,
                         SourceArgs{reinterpret_cast<uint64_t>(bytes.data()), bytes.size(), swap_unit});
  }
  return [bytes, swap_unit, strides = std::move(strides), offset]() -> Result<Elements> {
    Elements e;
    e.view = bytes;
    e.swap_unit = swap_unit;
    e.strides = strides;
    e.offset = offset;
    return e;
  };
}

const std::string& OptionalName::str() const {
  static const std::string kNone;
  return name_ == nullptr ? kNone : *name_;
}

// A fixed text, owned by the Origin.
struct Origin::Fixed final : OriginTeller {
  explicit Fixed(std::string t) : text(std::move(t)) {}
  std::string Tell(uint64_t, std::string_view) const override { return text; }
  std::string text;
};

Origin::Origin(std::string text) {
  if (text.empty()) return;
  owned_ = std::make_unique<Fixed>(std::move(text));
  teller_ = owned_.get();
}

}  // namespace safemodel::loader
