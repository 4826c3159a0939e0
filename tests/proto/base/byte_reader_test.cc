// The address checks of proto/base/byte_reader.h: memory inside a known
// buffer against unrelated memory, at the buffer's edges.
#include "proto/base/byte_reader.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>

namespace safemodel {
namespace {

TEST(AddressInside, TheBufferFromItsFirstToItsLastByte) {
  std::array<uint8_t, 64> buffer{};
  const ByteView span(buffer);
  EXPECT_TRUE(AddressInside(buffer.data(), span));
  EXPECT_TRUE(AddressInside(buffer.data() + 63, span));
  EXPECT_FALSE(AddressInside(buffer.data() + 64, span));  // one past the end
  EXPECT_FALSE(AddressInside(buffer.data(), span.subspan(1)));
  EXPECT_FALSE(AddressInside(buffer.data(), ByteView()));
  std::array<uint8_t, 8> other{};
  EXPECT_FALSE(AddressInside(other.data(), span));
}

TEST(SpanInside, AllOfTheInnerSpanOrNothing) {
  std::array<uint8_t, 64> buffer{};
  const ByteView outer(buffer);
  EXPECT_TRUE(SpanInside(outer, outer));
  EXPECT_TRUE(SpanInside(outer.subspan(10, 54), outer));  // up to the last byte
  EXPECT_TRUE(SpanInside(outer.subspan(64), outer));      // empty, at the end
  EXPECT_FALSE(SpanInside(outer.subspan(10, 54), outer.subspan(0, 63)));  // one byte past
  EXPECT_FALSE(SpanInside(outer, outer.subspan(1)));  // starts before
  std::array<uint8_t, 8> other{};
  EXPECT_FALSE(SpanInside(ByteView(other), outer));
}

}  // namespace
}  // namespace safemodel
