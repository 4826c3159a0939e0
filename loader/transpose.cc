#include "loader/transpose.h"

#include <algorithm>
#include <cstring>

namespace safemodel::loader {

namespace {

// Why blocks of one cache line each way: the 1 GiB Fortran benchmark array
// has a column stride of 1 MiB and output rows of 4 KiB, both multiples of
// 4 KiB, so every column it reads and every row it writes falls in the same
// L1 set. The previous kernel (a column of 64 elements written straight into
// 64 output rows) missed L1 on nearly every store (30 % of the conversion's
// CPU, tests/bench/PROFILE.md). Here each input line is read once into a
// small local block and each output line is written once, whole.
constexpr uint64_t kLineBytes = 64;

struct Bytes16 {
  uint8_t b[16];
};

template <size_t N>
struct Unit;
template <>
struct Unit<1> { using T = uint8_t; };
template <>
struct Unit<2> { using T = uint16_t; };
template <>
struct Unit<4> { using T = uint32_t; };
template <>
struct Unit<8> { using T = uint64_t; };
template <>
struct Unit<16> { using T = Bytes16; };

template <typename T>
inline T Swapped(T v) {
  if constexpr (sizeof(T) == 2) {
    return __builtin_bswap16(v);
  } else if constexpr (sizeof(T) == 4) {
    return __builtin_bswap32(v);
  } else if constexpr (sizeof(T) == 8) {
    return __builtin_bswap64(v);
  } else {
    return v;
  }
}

template <typename T>
void SwapEach(uint8_t* p, uint64_t n_bytes) {
  for (uint64_t i = 0; i + sizeof(T) <= n_bytes; i += sizeof(T)) {
    T v;
    std::memcpy(&v, p + i, sizeof(T));
    v = Swapped(v);
    std::memcpy(p + i, &v, sizeof(T));
  }
}

void SwapUnits(uint8_t* p, uint64_t n_bytes, uint32_t unit) {
  switch (unit) {
    case 2: return SwapEach<uint16_t>(p, n_bytes);
    case 4: return SwapEach<uint32_t>(p, n_bytes);
    case 8: return SwapEach<uint64_t>(p, n_bytes);
    default: return;
  }
}

// Element (row r, column c) of the tile, as a byte offset into base.
inline uint64_t At(const GatherArgs& a, uint64_t r, uint64_t c, uint64_t elem) {
  const int64_t i = a.start + static_cast<int64_t>(a.first_row + r) * a.row_stride +
                    static_cast<int64_t>(c) * a.col_stride;
  return static_cast<uint64_t>(i) * elem;
}

// A full L x L block at (r0, c0): each column's L elements into loc (for a
// row stride of 1, one line), then each output row from loc.
template <size_t N, bool kSwap>
void FullBlock(const GatherArgs& a, uint64_t r0, uint64_t c0, uint8_t* out) {
  using T = typename Unit<N>::T;
  constexpr uint64_t L = kLineBytes / N;
  T loc[L][L];
  for (uint64_t c = 0; c < L; ++c) {
    const uint8_t* src = a.base + At(a, r0, c0 + c, N);
    if (a.row_stride == 1) {
      std::memcpy(loc[c], src, L * N);
    } else {
      const int64_t step = a.row_stride * static_cast<int64_t>(N);
      for (uint64_t r = 0; r < L; ++r) std::memcpy(&loc[c][r], src + static_cast<int64_t>(r) * step, N);
    }
  }
  for (uint64_t r = 0; r < L; ++r) {
    T row[L];
    for (uint64_t c = 0; c < L; ++c) row[c] = kSwap ? Swapped(loc[c][r]) : loc[c][r];
    std::memcpy(out + ((r0 + r) * a.cols + c0) * N, row, L * N);
  }
}

// A partial block at the tile's right or bottom edge, element by element.
template <size_t N, bool kSwap>
void EdgeBlock(const GatherArgs& a, uint64_t r0, uint64_t nr, uint64_t c0, uint64_t nc, uint8_t* out) {
  using T = typename Unit<N>::T;
  for (uint64_t c = c0; c < c0 + nc; ++c) {
    for (uint64_t r = r0; r < r0 + nr; ++r) {
      T v;
      std::memcpy(&v, a.base + At(a, r, c, N), N);
      if (kSwap) v = Swapped(v);
      std::memcpy(out + (r * a.cols + c) * N, &v, N);
    }
  }
}

template <size_t N, bool kSwap>
void Gather(const GatherArgs& a, uint8_t* out) {
  constexpr uint64_t L = kLineBytes / N;
  // Down each block of columns first: a column's lines are read one after
  // the other (the prefetcher follows them), not one line per page per pass.
  for (uint64_t c0 = 0; c0 < a.cols; c0 += L) {
    const uint64_t nc = std::min(L, a.cols - c0);
    for (uint64_t r0 = 0; r0 < a.rows; r0 += L) {
      const uint64_t nr = std::min(L, a.rows - r0);
      if (nr == L && nc == L) {
        FullBlock<N, kSwap>(a, r0, c0, out);
      } else {
        EdgeBlock<N, kSwap>(a, r0, nr, c0, nc, out);
      }
    }
  }
}

bool ValidSwap(uint64_t elem, uint32_t swap) {
  return swap <= 1 || ((swap == 2 || swap == 4 || swap == 8) && elem % swap == 0);
}

}  // namespace

bool GatherTile(const GatherArgs& a, uint64_t elem, uint32_t swap, uint8_t* out) {
  if (!ValidSwap(elem, swap)) return false;
  const bool fused = swap > 1 && swap == elem;
  switch (elem) {
    case 1: Gather<1, false>(a, out); break;
    case 2: fused ? Gather<2, true>(a, out) : Gather<2, false>(a, out); break;
    case 4: fused ? Gather<4, true>(a, out) : Gather<4, false>(a, out); break;
    case 8: fused ? Gather<8, true>(a, out) : Gather<8, false>(a, out); break;
    case 16: Gather<16, false>(a, out); break;
    default: return false;
  }
  // Units smaller than the element (complex numbers): swapped in a second
  // pass over the tile, which is still in cache.
  if (swap > 1 && !fused) SwapUnits(out, a.rows * a.cols * elem, swap);
  return true;
}

bool GatherTileNaive(const GatherArgs& a, uint64_t elem, uint32_t swap, uint8_t* out) {
  if (!ValidSwap(elem, swap)) return false;
  if (elem != 1 && elem != 2 && elem != 4 && elem != 8 && elem != 16) return false;
  for (uint64_t r = 0; r < a.rows; ++r) {
    for (uint64_t c = 0; c < a.cols; ++c) {
      uint8_t* dst = out + (r * a.cols + c) * elem;
      std::memcpy(dst, a.base + At(a, r, c, elem), elem);
      for (uint32_t u = 0; swap > 1 && u < elem; u += swap) std::reverse(dst + u, dst + u + swap);
    }
  }
  return true;
}

}  // namespace safemodel::loader
