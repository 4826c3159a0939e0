// The .safemodel container (proto/FORMAT.md): the fixed prefix and the
// canonical tensor layout, shared by the reader and by the writer that lays
// out (and so checks) the worker's proposal. The protobuf side of the format
// (messages, Value and Finding conversions, bounded parsing) is
// proto/wire/wire.h.
//
// Trust: every function here treats its input as untrusted.
#ifndef SAFEMODEL_PROTO_FORMAT_H_
#define SAFEMODEL_PROTO_FORMAT_H_

#include <cstdint>
#include <string>

#include "proto/base/byte_reader.h"
#include "proto/safemodel.pb.h"
#include "safemodel/limits.h"
#include "safemodel/status.h"

namespace safemodel::format {

// "\x89SFM\r\n\x1a\n": the high byte catches 7-bit transfers, CR LF catches
// newline translation, 0x1a stops `type` on DOS (the PNG idea).
inline constexpr uint8_t kMagic[8] = {0x89, 'S', 'F', 'M', '\r', '\n', 0x1a, '\n'};
inline constexpr uint16_t kMajorVersion = 1;
inline constexpr uint16_t kMinorVersion = 1;  // 1.1: TensorInfo.source_index
inline constexpr uint64_t kPrefixBytes = 64;
// The data region starts on a page so that it can be mmapped and used in place.
inline constexpr uint64_t kDataAlignment = 4096;
// Every tensor starts on a cache line (AVX-512 loads, accelerator DMA)...
inline constexpr uint64_t kTensorAlignment = 64;
// ...and tensors of 1 MiB or more on a page, so they can be mapped on their own.
inline constexpr uint64_t kLargeTensorAlignment = 4096;
inline constexpr uint64_t kLargeTensorBytes = 1 << 20;

struct Prefix {
  uint16_t major = kMajorVersion;
  uint16_t minor = kMinorVersion;
  uint32_t flags = 0;
  uint64_t header_off = kPrefixBytes;
  uint64_t header_len = 0;
  uint64_t data_off = 0;
  uint64_t data_len = 0;
  uint64_t trailer_off = 0;
  uint64_t trailer_len = 0;
};

void EncodePrefix(const Prefix& prefix, uint8_t out[kPrefixBytes]);

// Decodes and checks the prefix against the size of the whole file: magic,
// known major version, flags zero, regions in order, aligned, and ending
// exactly at the end of the file.
Result<Prefix> DecodePrefix(ByteView prefix_bytes, uint64_t file_size);

// Alignment required for a tensor of `nbytes` bytes.
inline uint64_t TensorAlignmentFor(uint64_t nbytes) {
  return nbytes >= kLargeTensorBytes ? kLargeTensorAlignment : kTensorAlignment;
}

// data_off for a header of `header_len` bytes.
Result<uint64_t> DataOffsetFor(uint64_t header_len);

// Checks a file's tensor entries (FORMAT.md section 4) with TensorTable,
// the one implementation of their rules: the count, each entry (name
// length, NUL-free UTF-8, names sorted and unique, dtype, rank, size, stored
// nbytes = shape x dtype, an alias's offset and nbytes 0), source indices (on
// no tensor or on all, a permutation of 0..n-1), aliases (a real tensor of
// the same dtype and shape), and every stored offset the canonical one.
// Returns data_len. The reader calls it; the writer lays out with the table.
Result<uint64_t> CheckTensorLayout(const google::protobuf::RepeatedPtrField<v1::TensorInfo>& tensors);

}  // namespace safemodel::format

#endif  // SAFEMODEL_PROTO_FORMAT_H_
