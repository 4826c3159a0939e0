#include "proto/format.h"

#include "proto/tensor_table.h"

#include <cstring>
#include <vector>

#include "proto/base/text.h"
#include "safemodel/dtype.h"
#include "safemodel/limits.h"
#include "safemodel/reader.h"

namespace safemodel::format {

// DigestAlgorithm values are the schema's (safemodel/reader.h), checked
// value for value so that the casts between them are exact.
static_assert(static_cast<int>(DigestAlgorithm::kXxh3_128) == v1::XXH3_128);
static_assert(static_cast<int>(DigestAlgorithm::kSha256) == v1::SHA256);
static_assert(v1::DigestAlgorithm_MAX == v1::SHA256 && v1::DigestAlgorithm_MIN == v1::DIGEST_INVALID,
              "safemodel/reader.h and proto/safemodel.proto list different digest algorithms");

namespace {

void PutU16(uint8_t* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

void EncodePrefix(const Prefix& prefix, uint8_t out[kPrefixBytes]) {
  std::memcpy(out, kMagic, sizeof kMagic);
  PutU16(out + 8, prefix.major);
  PutU16(out + 10, prefix.minor);
  PutU32(out + 12, prefix.flags);
  PutU64(out + 16, prefix.header_off);
  PutU64(out + 24, prefix.header_len);
  PutU64(out + 32, prefix.data_off);
  PutU64(out + 40, prefix.data_len);
  PutU64(out + 48, prefix.trailer_off);
  PutU64(out + 56, prefix.trailer_len);
}

Result<uint64_t> DataOffsetFor(uint64_t header_len) {
  uint64_t end, aligned;
  if (!CheckedAdd(kPrefixBytes, header_len, &end) || !AlignUp(end, kDataAlignment, &aligned)) {
    return Status::Malformed("header length " + Num(header_len) + " overflows");
  }
  return aligned;
}

Result<Prefix> DecodePrefix(ByteView bytes, uint64_t file_size) {
  if (bytes.size() < kPrefixBytes || file_size < kPrefixBytes) {
    return Status::Malformed("file is " + Num(file_size) +
                             " bytes, shorter than the 64-byte .safemodel prefix");
  }
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    if (std::memcmp(bytes.data(), "version ", 8) == 0) {
      return Status::Malformed("not a .safemodel file: this looks like a Git LFS pointer");
    }
    return Status::Malformed("not a .safemodel file (bad magic)");
  }
  ByteReader r(bytes.subspan(0, kPrefixBytes));
  Prefix p;
  SAFEMODEL_RETURN_IF_ERROR(r.Skip(8, "magic"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.major, r.U16LE("major version"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.minor, r.U16LE("minor version"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.flags, r.U32LE("flags"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.header_off, r.U64LE("header_off"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.header_len, r.U64LE("header_len"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.data_off, r.U64LE("data_off"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.data_len, r.U64LE("data_len"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.trailer_off, r.U64LE("trailer_off"));
  SAFEMODEL_ASSIGN_OR_RETURN(p.trailer_len, r.U64LE("trailer_len"));

  if (p.major != kMajorVersion) {
    return Status::Unsupported("format major version " + Num(p.major) +
                               " is not supported (this reader knows version " +
                               Num(kMajorVersion) + ")");
  }
  if (p.flags != 0) {
    return Status::Unsupported("prefix flags 0x" + Num(p.flags) + " are not defined in version 1");
  }
  if (p.header_off != kPrefixBytes) {
    return Status::Malformed("header_off is " + Num(p.header_off) + ", must be 64");
  }
  if (p.header_len > kMaxHeaderBytes) {
    return Status::LimitExceeded("header_len " + Num(p.header_len) + " exceeds the limit of " +
                                 Num(kMaxHeaderBytes) + " bytes");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t want_data_off, DataOffsetFor(p.header_len));
  if (p.data_off != want_data_off) {
    return Status::Malformed("data_off is " + Num(p.data_off) + ", the canonical value is " +
                             Num(want_data_off));
  }
  uint64_t data_end;
  if (p.data_len > kMaxFileBytes || !CheckedAdd(p.data_off, p.data_len, &data_end) ||
      p.trailer_off != data_end) {
    return Status::Malformed("trailer_off " + Num(p.trailer_off) +
                             " does not follow the data region (data_off " + Num(p.data_off) +
                             " + data_len " + Num(p.data_len) + ")");
  }
  if (p.trailer_len > kMaxTrailerBytes) {
    return Status::LimitExceeded("trailer_len " + Num(p.trailer_len) + " exceeds the limit of " +
                                 Num(kMaxTrailerBytes) + " bytes");
  }
  uint64_t end;
  if (!CheckedAdd(p.trailer_off, p.trailer_len, &end) || end != file_size) {
    return Status::Malformed("the trailer ends at " + Num(p.trailer_off) + " + " +
                             Num(p.trailer_len) + " but the file is " + Num(file_size) +
                             " bytes (truncated file or trailing bytes)");
  }
  return p;
}

Result<uint64_t> CheckTensorLayout(
    const google::protobuf::RepeatedPtrField<v1::TensorInfo>& tensors) {
  const auto count = static_cast<uint64_t>(tensors.size());
  SAFEMODEL_RETURN_IF_ERROR(TensorTable::CheckCount(count));  // before allocating
  TensorTable table;
  std::vector<uint64_t> offsets;
  offsets.reserve(static_cast<size_t>(count));
  for (const v1::TensorInfo& t : tensors) {
    table.AddStored(t);
    offsets.push_back(t.offset());
  }
  return table.Layout(offsets);
}

}  // namespace safemodel::format
