#include "loader/transpose.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

#if defined(__x86_64__)
// The 4-byte full block with AVX2, for a row stride of 1 (Fortran order: each
// column's 16 elements are one line). The scalar FullBlock<4, true> was the
// worker's whole cost for a big-endian Fortran float32 array (0.3 s of CPU
// per GiB, tests/bench/PROFILE.md, fourth round): its gathers from `loc` do
// not vectorise. Here each half-line (8 elements of a column) is one load,
// the byte swap one shuffle, and two 8 x 8 transposes by unpack/permute give
// each output row's line as two stores. Same result as FullBlock<4, kSwap>
// (transpose_test compares every path with GatherTileNaive).
__attribute__((target("avx2"))) inline void Transpose8x8(__m256i v[8]) {
  const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]);
  const __m256i t1 = _mm256_unpackhi_epi32(v[0], v[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]);
  const __m256i t3 = _mm256_unpackhi_epi32(v[2], v[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]);
  const __m256i t5 = _mm256_unpackhi_epi32(v[4], v[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]);
  const __m256i t7 = _mm256_unpackhi_epi32(v[6], v[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2);
  const __m256i u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3);
  const __m256i u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6);
  const __m256i u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7);
  const __m256i u7 = _mm256_unpackhi_epi64(t5, t7);
  v[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  v[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  v[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  v[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  v[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  v[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  v[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  v[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

template <bool kSwap>
__attribute__((target("avx2"))) void FullBlock4Avx2(const GatherArgs& a, uint64_t r0, uint64_t c0,
                                                    uint8_t* out) {
  constexpr uint64_t L = kLineBytes / 4;  // 16
  const __m256i bswap = _mm256_setr_epi8(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
                                         3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
  // The lines the next block of columns reads at these rows: the hardware
  // prefetcher cannot follow 1,024 columns a page apart, and waiting for each
  // line from memory was most of this kernel's time. Only columns of the
  // view: every address hinted is an element the caller proved in bounds.
  for (uint64_t c = c0 + L; c < std::min(c0 + 2 * L, a.cols); ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(a.base + At(a, r0, c, 4)), _MM_HINT_T0);
  }
  for (uint64_t rh = 0; rh < L; rh += 8) {
    for (uint64_t ch = 0; ch < L; ch += 8) {
      __m256i v[8];
      for (uint64_t c = 0; c < 8; ++c) {
        const uint8_t* src = a.base + At(a, r0 + rh, c0 + ch + c, 4);
        v[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src));
        if (kSwap) v[c] = _mm256_shuffle_epi8(v[c], bswap);
      }
      Transpose8x8(v);
      for (uint64_t r = 0; r < 8; ++r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + ((r0 + rh + r) * a.cols + c0 + ch) * 4), v[r]);
      }
    }
  }
}

bool HaveAvx2() {
  static const bool have = __builtin_cpu_supports("avx2");
  return have;
}
#endif

template <size_t N, bool kSwap>
void Gather(const GatherArgs& a, uint8_t* out) {
  constexpr uint64_t L = kLineBytes / N;
#if defined(__x86_64__)
  const bool avx2 = N == 4 && a.row_stride == 1 && HaveAvx2();
#else
  constexpr bool avx2 = false;
#endif
  // Down each block of columns first: a column's lines are read one after
  // the other (the prefetcher follows them), not one line per page per pass.
  for (uint64_t c0 = 0; c0 < a.cols; c0 += L) {
    const uint64_t nc = std::min(L, a.cols - c0);
    for (uint64_t r0 = 0; r0 < a.rows; r0 += L) {
      const uint64_t nr = std::min(L, a.rows - r0);
      if (nr == L && nc == L) {
#if defined(__x86_64__)
        if constexpr (N == 4) {
          if (avx2) {
            FullBlock4Avx2<kSwap>(a, r0, c0, out);
            continue;
          }
        }
#endif
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
