// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and
// final XOR 0xFFFFFFFF) and TensorFlow's / LevelDB's masking of stored CRCs.
//
// The SSE4.2 crc32 instruction is used when the CPU has it (checked once
// with cpuid, no system call), else an 8-way table ("slicing by 8").
//
// Worst case: O(n), about 8 bytes per cycle with the instruction.
//
// Trust: pure computation over the given bytes; no input is interpreted.
#ifndef SAFEMODEL_LOADER_TF_BUNDLE_CRC32C_H_
#define SAFEMODEL_LOADER_TF_BUNDLE_CRC32C_H_

#include <cstdint>

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Continues a CRC: Crc32cExtend(Crc32cExtend(0, a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, ByteView bytes);
inline uint32_t Crc32c(ByteView bytes) { return Crc32cExtend(0, bytes); }

// TensorFlow and LevelDB store CRCs masked (a CRC of data that itself holds
// CRCs is then not trivially related to them).
inline constexpr uint32_t kCrcMaskDelta = 0xa282ead8u;
inline uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kCrcMaskDelta; }
inline uint32_t UnmaskCrc(uint32_t masked) {
  const uint32_t rot = masked - kCrcMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_TF_BUNDLE_CRC32C_H_
