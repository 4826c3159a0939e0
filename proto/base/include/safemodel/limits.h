// File: safemodel/limits.h
//
// Hard ceilings of the .safemodel format (proto/FORMAT.md, "Limits"). A reader
// rejects any file beyond them, and the converter never writes one. Each limit
// says why it has the value it has. Options can lower these, never raise them.
#ifndef SAFEMODEL_LIMITS_H_
#define SAFEMODEL_LIMITS_H_

#include <cstdint>

namespace safemodel {

// Real models have <= ~100k tensors (large MoE checkpoints); 2M leaves room
// and bounds the header index to ~150 MB.
inline constexpr uint64_t kMaxTensorCount = 2'000'000;
// numpy allows 32 (NPY_MAXDIMS in 1.x), torch 25; no real weight has more
// than 8. 32 accepts every numpy array while bounding per-tensor work.
inline constexpr uint32_t kMaxRank = 32;
// Longest weight names seen are ~200 bytes (Keras 3 nested paths); 4 KiB
// leaves room without letting names dominate the header.
inline constexpr uint32_t kMaxNameBytes = 4096;
// Protobuf cannot parse messages of 2 GiB or more; 512 MiB keeps a wide margin
// and is ~3x what 2M tensors need.
inline constexpr uint64_t kMaxHeaderBytes = 512ull << 20;
// A trailer holds <= 34 bytes per tensor (32-byte digest + tag/len), so
// 2M tensors need ~68 MB.
inline constexpr uint64_t kMaxTrailerBytes = 128ull << 20;
// Offsets are u64 but stay below 2^62 so that sums of two never overflow.
inline constexpr uint64_t kMaxFileBytes = 1ull << 62;

}  // namespace safemodel

#endif  // SAFEMODEL_LIMITS_H_
