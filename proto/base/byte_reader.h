// Bounds-checked reading of untrusted bytes, and checked arithmetic.
//
// This is the one place that does offset arithmetic on attacker-supplied
// numbers. Every method checks its bounds and returns an error naming what was
// being read, where, how much was needed and how much remained, so callers
// never index a buffer themselves.
//
// Trust: the bytes are untrusted; all offsets and lengths are checked here.
#ifndef SAFEMODEL_PROTO_BASE_BYTE_READER_H_
#define SAFEMODEL_PROTO_BASE_BYTE_READER_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "proto/base/text.h"  // Num(), for the messages of every reader
#include "safemodel/dtype.h"
#include "safemodel/status.h"

namespace safemodel {

using ByteView = std::span<const uint8_t>;

inline std::string_view AsChars(ByteView v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}
inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Whether `p` points into `span`, and whether all of `inner` lies inside
// `outer`: compared as addresses, for memory that is either part of a known
// buffer (a file map, a stream) or unrelated (an owned copy), to tell which.
inline bool AddressInside(const void* p, ByteView span) {
  const auto at = reinterpret_cast<uintptr_t>(p);
  const auto begin = reinterpret_cast<uintptr_t>(span.data());
  return at >= begin && at - begin < span.size();
}
inline bool SpanInside(ByteView inner, ByteView outer) {
  const auto at = reinterpret_cast<uintptr_t>(inner.data());
  const auto begin = reinterpret_cast<uintptr_t>(outer.data());
  return at >= begin && inner.size() <= outer.size() && at - begin <= outer.size() - inner.size();
}

// True if `input` begins with the bytes of `magic`.
inline bool StartsWith(ByteView input, std::string_view magic) {
  return input.size() >= magic.size() && AsChars(input.subspan(0, magic.size())) == magic;
}

// Overflow-checked arithmetic: return false (and leave *out unspecified) on
// overflow.
inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

// The low `n` bytes (n <= 8) of `v` little-endian at `out`, and back: for
// the fixed-size records of the process protocols, whose payload size the
// frame layer has checked before they are decoded.
inline void StoreLE(uint8_t* out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t LoadLE(const uint8_t* in, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return v;
}

// Rounds `v` up to a multiple of `align` (a power of two); false on overflow.
bool AlignUp(uint64_t v, uint64_t align, uint64_t* out);

// Number of elements of `shape` (1 for a scalar). Malformed if a dimension,
// or the product of the non-zero dimensions, exceeds INT64_MAX, even when
// another dimension is 0 (consumers hold sizes as signed 64-bit integers).
Result<uint64_t> ElementCount(std::span<const uint64_t> shape, std::string_view what);

// ElementCount(shape) * DTypeSize(dtype); malformed, as above, when the
// non-zero dimensions times the element size exceed INT64_MAX.
Result<uint64_t> TensorByteSize(std::span<const uint64_t> shape, DType dtype,
                                std::string_view what);

// data[offset, offset + length), or an error if it does not fit.
Result<ByteView> SubView(ByteView data, uint64_t offset, uint64_t length, std::string_view what);

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool IsValidUtf8(std::string_view s);

// Index of the first byte of `v` that is neither 0 nor 1 (a bool element is
// one of those), or v.size() if there is none. The worker, the parent's
// writer and the reader's Verify all apply it.
inline size_t FirstNonBool(ByteView v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] > 1) return i;
  }
  return v.size();
}

// Renders a string for an error message: printable ASCII kept, the rest
// escaped, cut to `max` bytes.
std::string Printable(std::string_view s, size_t max = 80);

// A cursor over untrusted bytes. `base` is the absolute offset of data[0] in
// the input, used only in error messages ("at byte 1234").
class ByteReader {
 public:
  explicit ByteReader(ByteView data, uint64_t base = 0) : data_(data), base_(base) {}

  uint64_t position() const { return pos_; }                 // relative to data
  uint64_t absolute_position() const { return base_ + pos_; }
  uint64_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }
  ByteView data() const { return data_; }
  ByteView rest() const { return data_.subspan(pos_); }

  Result<uint8_t> U8(std::string_view what);
  Result<uint16_t> U16LE(std::string_view what);
  Result<uint32_t> U32LE(std::string_view what);
  Result<uint64_t> U64LE(std::string_view what);
  Result<int32_t> I32LE(std::string_view what);
  Result<int64_t> I64LE(std::string_view what);
  Result<uint64_t> U64BE(std::string_view what);
  // The next n bytes (a view, not a copy).
  Result<ByteView> Bytes(uint64_t n, std::string_view what);
  Result<uint8_t> PeekU8(std::string_view what) const;
  Status Skip(uint64_t n, std::string_view what);
  Status Seek(uint64_t pos, std::string_view what);

 private:
  Status Short(uint64_t need, std::string_view what) const;
  ByteView data_;
  uint64_t base_;
  uint64_t pos_ = 0;
};

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_BASE_BYTE_READER_H_
