// GatherTile (the blocked transpose kernel) against GatherTileNaive, its
// element-by-element reference, and both against an independent formula:
// every element size and swap unit, shapes of 1 x N, N x 1 and sizes that
// are not multiples of the kernel's blocks, unit and non-unit row strides,
// negative strides, and the tiles of a rank-4 view as StreamTiled cuts them.
#include "loader/transpose.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace safemodel::loader {
namespace {

struct Case {
  uint64_t rows, cols;
  int64_t row_stride, col_stride;
};

// Bytes of distinct values, so that a misplaced element or a wrong swap shows.
std::vector<uint8_t> Data(uint64_t n) {
  std::vector<uint8_t> d(n);
  std::mt19937 rng(7);
  for (auto& b : d) b = static_cast<uint8_t>(rng());
  return d;
}

// The expected output written out from the definition in transpose.h.
std::vector<uint8_t> Expected(const GatherArgs& a, uint64_t elem, uint32_t swap) {
  std::vector<uint8_t> out;
  for (uint64_t r = 0; r < a.rows; ++r) {
    for (uint64_t c = 0; c < a.cols; ++c) {
      const int64_t i = a.start + static_cast<int64_t>(a.first_row + r) * a.row_stride +
                        static_cast<int64_t>(c) * a.col_stride;
      for (uint64_t u = 0; u < elem; u += (swap > 1 ? swap : elem)) {
        const uint64_t unit = swap > 1 ? swap : elem;
        for (uint64_t b = 0; b < unit; ++b) {
          const uint64_t from = swap > 1 ? unit - 1 - b : b;
          out.push_back(a.base[static_cast<uint64_t>(i) * elem + u + from]);
        }
      }
    }
  }
  return out;
}

void CheckOne(const Case& k, uint64_t elem, uint32_t swap, uint64_t first_row) {
  // Element index range the view reaches; `start` puts its lowest at 0.
  const int64_t rows = static_cast<int64_t>(first_row + k.rows);
  const int64_t rs = (rows - 1) * k.row_stride, cs = (static_cast<int64_t>(k.cols) - 1) * k.col_stride;
  const int64_t lo = std::min<int64_t>(0, rs) + std::min<int64_t>(0, cs);
  const int64_t hi = std::max<int64_t>(0, rs) + std::max<int64_t>(0, cs);
  std::vector<uint8_t> data = Data(static_cast<uint64_t>(hi - lo + 1) * elem);
  GatherArgs a;
  a.base = data.data();
  a.start = -lo;
  a.row_stride = k.row_stride;
  a.col_stride = k.col_stride;
  a.first_row = first_row;
  a.rows = k.rows;
  a.cols = k.cols;
  const std::vector<uint8_t> want = Expected(a, elem, swap);
  std::vector<uint8_t> fast(want.size() + 1, 0xAB), naive(want.size(), 0);
  ASSERT_TRUE(GatherTile(a, elem, swap, fast.data()));
  ASSERT_TRUE(GatherTileNaive(a, elem, swap, naive.data()));
  const std::string what = "elem " + std::to_string(elem) + " swap " + std::to_string(swap) +
                           " shape " + std::to_string(k.rows) + "x" + std::to_string(k.cols) +
                           " strides " + std::to_string(k.row_stride) + "," + std::to_string(k.col_stride) +
                           " first_row " + std::to_string(first_row);
  EXPECT_EQ(0, std::memcmp(fast.data(), want.data(), want.size())) << what;
  EXPECT_EQ(fast.back(), 0xAB) << what << ": wrote past the tile";
  EXPECT_EQ(naive, want) << what;
}

TEST(GatherTile, MatchesTheReferenceForEverySizeShapeAndStride) {
  const std::vector<uint64_t> dims = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 64, 65, 100};
  const std::vector<std::pair<uint64_t, std::vector<uint32_t>>> sizes = {
      {1, {0}}, {2, {0, 2}}, {4, {0, 4, 2}}, {8, {0, 8, 4}}, {16, {0, 8, 4}}};
  for (const auto& [elem, swaps] : sizes) {
    for (uint32_t swap : swaps) {
      for (uint64_t r : dims) {
        for (uint64_t c : dims) {
          const int64_t R = static_cast<int64_t>(r), C = static_cast<int64_t>(c);
          CheckOne({r, c, 1, R}, elem, swap, 0);       // Fortran order
          CheckOne({r, c, 3, 3 * R + 1}, elem, swap, 0);  // strided rows
          CheckOne({r, c, -1, -R}, elem, swap, 0);     // reversed
          CheckOne({r, c, C, 1}, elem, swap, 0);       // C order through the kernel
        }
      }
    }
  }
}

TEST(GatherTile, LaterTilesOfAView) {
  // StreamTiled's later tiles: first_row > 0, a partial last tile.
  for (uint64_t elem : {1u, 2u, 4u, 8u, 16u}) {
    for (uint64_t first_row : {1u, 16u, 64u, 70u}) CheckOne({37, 65, 1, 200}, elem, 0, first_row);
  }
}

// The 4-byte Fortran-order path (AVX2 where the CPU has it) as StreamTiled
// uses it on the benchmark's array: 64-row tiles of a column stride that is a
// multiple of 4 KiB, with the view starting at every misalignment (unaligned
// loads and stores), later tiles, and a last column block with nothing
// after it to prefetch.
TEST(GatherTile, FortranFloat32TilesAtEveryAlignment) {
  const uint64_t rows = 1024, cols = 80;  // a column stride of 4 KiB
  const std::vector<uint8_t> data = Data(rows * cols * 4 + 64);
  for (uint64_t misalign : {0u, 1u, 2u, 3u, 4u, 12u, 32u}) {
    for (uint32_t swap : {0u, 4u, 2u}) {
      for (uint64_t first_row : {0u, 64u, 960u}) {
        GatherArgs a;
        a.base = data.data() + misalign;
        a.row_stride = 1;
        a.col_stride = static_cast<int64_t>(rows);
        a.first_row = first_row;
        a.rows = 64;
        a.cols = cols;
        const std::vector<uint8_t> want = Expected(a, 4, swap);
        std::vector<uint8_t> fast(want.size() + 1, 0xAB);
        ASSERT_TRUE(GatherTile(a, 4, swap, fast.data()));
        EXPECT_EQ(0, std::memcmp(fast.data(), want.data(), want.size()))
            << "misalign " << misalign << " swap " << swap << " first_row " << first_row;
        EXPECT_EQ(fast.back(), 0xAB) << "wrote past the tile";
      }
    }
  }
}

TEST(GatherTile, RefusesUnknownSizesAndSwaps) {
  uint8_t data[64] = {};
  uint8_t out[64];
  GatherArgs a;
  a.base = data;
  a.rows = a.cols = 1;
  EXPECT_FALSE(GatherTile(a, 3, 0, out));
  EXPECT_FALSE(GatherTile(a, 4, 8, out));
  EXPECT_FALSE(GatherTile(a, 4, 3, out));
  EXPECT_FALSE(GatherTileNaive(a, 32, 0, out));
}

}  // namespace
}  // namespace safemodel::loader
