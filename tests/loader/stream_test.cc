// StreamElements against a naive element-by-element reference: every dtype
// size, strided views (transposes, negative and zero strides, rank 2-4,
// shapes that cross the tile edges), byte swapping, and the sink contract.
#include "loader/stream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace safemodel::loader {
namespace {

class Collect final : public ChunkSink {
 public:
  Status Write(ByteView chunk) override {
    EXPECT_FALSE(chunk.empty());
    EXPECT_LE(chunk.size(), kChunkBytes);
    bytes.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    return Status::Ok();
  }
  std::string bytes;
};

// The C-order bytes of the view, one element at a time.
std::string Reference(const std::string& data, uint64_t elem, uint32_t swap,
                      const std::vector<uint64_t>& shape, const std::vector<int64_t>& strides,
                      int64_t offset) {
  std::string out;
  std::vector<uint64_t> idx(shape.size(), 0);
  uint64_t count = 1;
  for (uint64_t d : shape) count *= d;
  for (uint64_t n = 0; n < count; ++n) {
    int64_t at = offset;
    for (size_t d = 0; d < shape.size(); ++d) at += static_cast<int64_t>(idx[d]) * strides[d];
    std::string e = data.substr(static_cast<uint64_t>(at) * elem, elem);
    if (swap > 1) {
      for (uint64_t u = 0; u < elem; u += swap) {
        auto first = e.begin() + static_cast<std::ptrdiff_t>(u);
        std::reverse(first, first + static_cast<std::ptrdiff_t>(swap));
      }
    }
    out += e;
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

DType ForSize(uint64_t elem) {
  switch (elem) {
    case 1: return DType::kU8;
    case 2: return DType::kF16;
    case 4: return DType::kF32;
    case 8: return DType::kF64;
    default: return DType::kC128;
  }
}

struct Case {
  std::vector<uint64_t> shape;
  // Strides given as a permutation of a C-contiguous base layout, with the
  // option to reverse dimensions (negative strides) or broadcast one (0).
  std::vector<size_t> perm;
  int reversed_dim = -1;
  int broadcast_dim = -1;
};

TEST(StreamElements, StridedViewsMatchTheNaiveWalk) {
  const std::vector<Case> cases = {
      {{3, 5}, {1, 0}},                     // small transpose
      {{130, 70}, {1, 0}},                  // crosses 64-row and 64-column tiles
      {{64, 64}, {1, 0}},                   // exactly one tile
      {{1, 300}, {1, 0}},                   // one row
      {{200, 1}, {1, 0}},                   // one column
      {{7, 65, 66}, {2, 1, 0}},             // Fortran order, rank 3
      {{4, 3, 70, 5}, {0, 3, 1, 2}},        // channels-last-like, rank 4
      {{90, 80}, {1, 0}, 0},                // transpose, a negative stride
      {{90, 80}, {1, 0}, 1},
      {{66, 67}, {0, 1}, -1, 0},            // broadcast rows (stride 0), inner stride 1
      {{66, 67}, {1, 0}, -1, 1},            // broadcast the inner dimension (stride 0)
      {{5, 9, 130}, {0, 2, 1}, 2},          // inner dimension strided and reversed
  };
  std::mt19937_64 rng(7);
  for (uint64_t elem : {1u, 2u, 4u, 8u, 16u}) {
    for (const Case& c : cases) {
      const size_t rank = c.shape.size();
      // Base layout: the permuted shape, C-contiguous.
      std::vector<uint64_t> base_shape(rank);
      for (size_t k = 0; k < rank; ++k) base_shape[k] = c.shape[c.perm[k]];
      std::vector<int64_t> base_strides(rank);
      int64_t s = 1;
      for (size_t k = rank; k-- > 0;) {
        base_strides[k] = s;
        s *= static_cast<int64_t>(base_shape[k]);
      }
      std::vector<int64_t> strides(rank);
      for (size_t k = 0; k < rank; ++k) strides[c.perm[k]] = base_strides[k];
      int64_t offset = 3;  // a storage offset
      if (c.reversed_dim >= 0) {
        size_t d = static_cast<size_t>(c.reversed_dim);
        offset += (static_cast<int64_t>(c.shape[d]) - 1) * strides[d];
        strides[d] = -strides[d];
      }
      if (c.broadcast_dim >= 0) strides[static_cast<size_t>(c.broadcast_dim)] = 0;
      std::string data(static_cast<uint64_t>(s + 3) * elem, '\0');
      for (char& ch : data) ch = static_cast<char>(rng());
      for (uint32_t swap : {0u, elem >= 2 && elem <= 8 ? static_cast<uint32_t>(elem) : 0u}) {
        Elements e;
        e.view = ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size());
        e.strides = strides;
        e.offset = static_cast<uint64_t>(offset);
        e.swap_unit = swap;
        Collect sink;
        Status st = StreamElements(e, ForSize(elem), c.shape, "t", sink);
        ASSERT_TRUE(st.ok()) << st.ToString();
        EXPECT_EQ(sink.bytes, Reference(data, elem, swap, c.shape, strides, offset))
            << "elem " << elem << " rank " << rank << " shape[0] " << c.shape[0] << " swap "
            << swap;
      }
    }
  }
}

// The bytes a tensor's elements span inside its view, from the lowest to
// the highest element: what the worker notes as read (a small tensor's view
// may be a storage of gigabytes). Out of bounds is CheckElements' error.
TEST(ElementBytes, SpanFromTheLowestToTheHighestElement) {
  const std::string data(100 * 4, 'x');
  const ByteView view(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  const auto bytes = [&](uint64_t offset, std::vector<int64_t> strides, std::vector<uint64_t> shape) {
    Elements e;
    e.view = view;
    e.offset = offset;
    e.strides = std::move(strides);
    return ElementBytes(e, DType::kF32, shape, "t");
  };
  // Contiguous: elements 10..15 of the view.
  auto r = bytes(10, {}, {2, 3});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->data(), view.data() + 40);
  EXPECT_EQ(r->size(), 24u);
  // Transposed 3x4 from element 7: strides (1, 3) reach 7..7+2+9.
  r = bytes(7, {1, 3}, {3, 4});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data(), view.data() + 28);
  EXPECT_EQ(r->size(), 12u * 4);
  // A negative stride reaches below the offset: 50 - 4*5 .. 50.
  r = bytes(50, {-5}, {5});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data(), view.data() + 30 * 4);
  EXPECT_EQ(r->size(), 21u * 4);
  // No element: nothing; past the view: CheckElements' error.
  r = bytes(99, {}, {0, 4});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(bytes(98, {}, {3}).status().code(), StatusCode::kMalformed);
  EXPECT_EQ(bytes(0, {60}, {3}).status().code(), StatusCode::kMalformed);
}

// Dimensions of size 1 are never stepped, so torch keeps any stride for
// them: torch.as_strided(torch.arange(6.), (3, 1, 1), (2, 1, 2**63 - 1))
// loads. The walk must not add such a stride (signed overflow under UBSan;
// found by the loader fuzzer).
TEST(StreamElements, ASizeOneDimensionsHugeStrideIsNeverAdded) {
  std::string data(6 * 4, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i);
  for (const std::vector<int64_t>& strides :
       {std::vector<int64_t>{2, 1, INT64_MAX}, std::vector<int64_t>{2, INT64_MAX, INT64_MIN},
        std::vector<int64_t>{2, INT64_MIN, 1}}) {
    Elements e;
    e.view = ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    e.strides = strides;
    Collect sink;
    const std::vector<uint64_t> shape = {3, 1, 1};
    Status st = StreamElements(e, DType::kF32, shape, "t", sink);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(sink.bytes, data.substr(0, 4) + data.substr(8, 4) + data.substr(16, 4));
  }
}

TEST(StreamElements, LargeTransposeStreamsInBoundedChunks) {
  // 1100 x 1300 f32, transposed: rows of 4400 bytes, several tiles, and
  // more than one chunk of output.
  const uint64_t rows = 1100, cols = 1300;
  std::string data(rows * cols * 4, '\0');
  for (uint64_t i = 0; i < rows * cols; ++i) {
    uint32_t v = static_cast<uint32_t>(i * 2654435761u);
    std::memcpy(data.data() + i * 4, &v, 4);
  }
  Elements e;
  e.view = ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  e.strides = {1, static_cast<int64_t>(rows)};  // shape (rows, cols), column-major
  Collect sink;
  ASSERT_TRUE(StreamElements(e, DType::kF32, std::vector<uint64_t>{rows, cols}, "t", sink).ok());
  EXPECT_EQ(sink.bytes, Reference(data, 4, 0, {rows, cols}, e.strides, 0));
}

}  // namespace
}  // namespace safemodel::loader
