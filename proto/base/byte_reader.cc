#include "proto/base/byte_reader.h"

#include <cstdint>
#include <cstring>

namespace safemodel {

bool AlignUp(uint64_t v, uint64_t align, uint64_t* out) {
  uint64_t sum;
  if (!CheckedAdd(v, align - 1, &sum)) return false;
  *out = sum & ~(align - 1);
  return true;
}

namespace {

// Consumers hold dimensions and sizes as signed 64-bit integers (numpy's
// npy_intp, torch's int64_t sizes, the .safemodel readers). A dimension over
// INT64_MAX, or a product of the non-zero dimensions (times the element
// size) over it, is malformed even when another dimension is 0: numpy
// refuses such a shape ("maximum allowed dimension exceeded", "array is too
// big"), and a consumer would read the dimensions as negative numbers.
constexpr uint64_t kMaxSigned = static_cast<uint64_t>(INT64_MAX);

// The product of the non-zero dimensions and `unit`, checked against
// kMaxSigned; *empty is set when a dimension is 0.
Result<uint64_t> NonZeroProduct(std::span<const uint64_t> shape, uint64_t unit,
                                std::string_view what, bool* empty) {
  uint64_t product = unit;
  *empty = false;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] > kMaxSigned) {
      return Status::Malformed(std::string(what) + ": dimension " + std::to_string(d) + " (" +
                               std::to_string(shape[d]) + ") does not fit a signed 64-bit size");
    }
    if (shape[d] == 0) {
      *empty = true;
      continue;
    }
    if (!CheckedMul(product, shape[d], &product) || product > kMaxSigned) {
      return Status::Malformed(std::string(what) + (unit == 1 ? ": element count" : ": byte size") +
                               " overflows signed 64 bits (zero dimensions aside)");
    }
  }
  return product;
}

}  // namespace

Result<uint64_t> ElementCount(std::span<const uint64_t> shape, std::string_view what) {
  bool empty = false;
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, NonZeroProduct(shape, 1, what, &empty));
  return empty ? 0 : count;
}

Result<uint64_t> TensorByteSize(std::span<const uint64_t> shape, DType dtype,
                                std::string_view what) {
  uint32_t size = DTypeSize(dtype);
  if (size == 0) return Status::Malformed(std::string(what) + ": invalid dtype");
  bool empty = false;
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t bytes, NonZeroProduct(shape, size, what, &empty));
  return empty ? 0 : bytes;
}

Result<ByteView> SubView(ByteView data, uint64_t offset, uint64_t length, std::string_view what) {
  if (offset > data.size() || length > data.size() - offset) {
    return Status::Malformed(std::string(what) + ": range [" + std::to_string(offset) + ", +" +
                             std::to_string(length) + ") exceeds the " +
                             std::to_string(data.size()) + " bytes available");
  }
  return data.subspan(offset, length);
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string Printable(std::string_view s, size_t max) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

Status ByteReader::Short(uint64_t need, std::string_view what) const {
  return Status::Malformed(std::string(what) + " at byte " + std::to_string(absolute_position()) +
                           " needs " + std::to_string(need) + " bytes but only " +
                           std::to_string(remaining()) + " remain");
}

Result<ByteView> ByteReader::Bytes(uint64_t n, std::string_view what) {
  if (n > remaining()) return Short(n, what);
  ByteView out = data_.subspan(pos_, n);
  pos_ += n;
  return out;
}

Result<uint8_t> ByteReader::U8(std::string_view what) {
  if (remaining() < 1) return Short(1, what);
  return data_[pos_++];
}

Result<uint8_t> ByteReader::PeekU8(std::string_view what) const {
  if (remaining() < 1) return Short(1, what);
  return data_[pos_];
}

namespace {
template <typename T>
T LoadLE(const uint8_t* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
  return v;
}
}  // namespace

Result<uint16_t> ByteReader::U16LE(std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Bytes(2, what));
  return LoadLE<uint16_t>(b.data());
}
Result<uint32_t> ByteReader::U32LE(std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Bytes(4, what));
  return LoadLE<uint32_t>(b.data());
}
Result<uint64_t> ByteReader::U64LE(std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Bytes(8, what));
  return LoadLE<uint64_t>(b.data());
}
Result<int32_t> ByteReader::I32LE(std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t v, U32LE(what));
  return static_cast<int32_t>(v);
}
Result<int64_t> ByteReader::I64LE(std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t v, U64LE(what));
  return static_cast<int64_t>(v);
}
Result<uint64_t> ByteReader::U64BE(std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, Bytes(8, what));
  uint64_t v = 0;
  for (uint8_t c : b) v = (v << 8) | c;
  return v;
}

Status ByteReader::Skip(uint64_t n, std::string_view what) {
  if (n > remaining()) return Short(n, what);
  pos_ += n;
  return Status::Ok();
}

Status ByteReader::Seek(uint64_t pos, std::string_view what) {
  if (pos > data_.size()) {
    return Status::Malformed(std::string(what) + ": offset " + std::to_string(base_ + pos) +
                             " is past the end (" + std::to_string(base_ + data_.size()) + ")");
  }
  pos_ = pos;
  return Status::Ok();
}

}  // namespace safemodel
