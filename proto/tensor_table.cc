#include "proto/tensor_table.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <span>

#include "proto/base/byte_reader.h"
#include "proto/base/text.h"
#include "proto/format.h"
#include "safemodel/dtype.h"
#include "safemodel/limits.h"

namespace safemodel::format {

namespace {

using google::protobuf::io::CodedOutputStream;

// Field tags of v1::TensorInfo and of Header.tensors (safemodel.proto):
// (field number << 3) | wire type (0 varint, 2 length-delimited).
constexpr uint8_t kNameTag = 0x0a, kDTypeTag = 0x10, kShapeTag = 0x1a, kOffsetTag = 0x20,
                  kNbytesTag = 0x28, kAliasTag = 0x32, kSourceIndexTag = 0x38;
constexpr uint8_t kHeaderTensorTag = 0x1a;

uint64_t VarintBytes(uint64_t v) { return CodedOutputStream::VarintSize64(v); }

}  // namespace

uint32_t TensorTable::AllocateText(uint32_t bytes) {
  if (arena_blocks_.empty() || arena_used_ + bytes > kArenaBlockBytes) {
    // The rest of the current block stays unused.
    arena_blocks_.emplace_back(new char[kArenaBlockBytes]);
    arena_used_ = 0;
  }
  const auto at = static_cast<uint32_t>(((arena_blocks_.size() - 1) << kArenaBlockShift) | arena_used_);
  arena_used_ += bytes;
  return at;
}

// Shape x dtype from the packed shape: Add checked the product of the
// non-zero dimensions and the element size (TensorByteSize), so no partial
// product here overflows, and a zero dimension makes the size 0.
uint64_t TensorTable::Nbytes(const Entry& e) const {
  if (e.alias_len != 0) return 0;
  uint64_t n = DTypeSize(static_cast<DType>(e.dtype));
  const std::string_view packed = packed_shape(e);
  uint64_t dim = 0;
  unsigned shift = 0;
  for (const char c : packed) {
    const auto b = static_cast<uint8_t>(c);
    dim |= static_cast<uint64_t>(b & 0x7f) << shift;
    shift += 7;
    if ((b & 0x80) != 0) continue;
    if (dim == 0) return 0;
    n *= dim;
    dim = 0;
    shift = 0;
  }
  return n;
}

// Entry #i on its own and against the previous name. The message prefix is
// put together only when a check fails: building it for every entry was a
// string per tensor.
Status TensorTable::Check(const v1::TensorInfo& t, uint64_t i, bool stored) const {
  const std::string& name = t.name();
  auto where = [&] { return "tensor #" + Num(i) + " '" + Printable(name) + "'"; };
  if (name.empty() || name.size() > kMaxNameBytes) {
    return Status::Malformed(where() + ": name length " + Num(name.size()) + " is outside 1.." +
                             Num(kMaxNameBytes));
  }
  if (name.find('\0') != std::string::npos || !IsValidUtf8(name)) {
    return Status::Malformed(where() + ": name is not NUL-free UTF-8");
  }
  if (i > 0 && !(std::string_view(last_name_) < std::string_view(name))) {
    return Status::Malformed(where() + ": names are not sorted and unique (previous is '" +
                             Printable(last_name_) + "')");
  }
  if (!IsValidDType(static_cast<uint32_t>(t.dtype()))) {
    return Status::Unsupported(where() + ": unknown dtype value " +
                               Num(static_cast<uint32_t>(t.dtype())));
  }
  if (static_cast<uint64_t>(t.shape_size()) > kMaxRank) {
    return Status::LimitExceeded(where() + ": rank " + Num(static_cast<uint64_t>(t.shape_size())) +
                                 " exceeds the limit of " + Num(kMaxRank));
  }
  const std::span<const uint64_t> shape(t.shape().data(), static_cast<size_t>(t.shape_size()));
  Result<uint64_t> size = TensorByteSize(shape, static_cast<DType>(t.dtype()), "");
  if (!size.ok()) size = TensorByteSize(shape, static_cast<DType>(t.dtype()), where());
  if (!size.ok()) return size.status();
  if (*size > kMaxFileBytes) {
    return Status::LimitExceeded(where() + ": " + Num(*size) + " bytes is larger than any file");
  }
  if (stored && t.alias_of().empty() && t.nbytes() != *size) {
    return Status::Malformed(where() + ": nbytes " + Num(t.nbytes()) + " != shape x dtype = " +
                             Num(*size));
  }
  if (stored && !t.alias_of().empty() && (t.nbytes() != 0 || t.offset() != 0)) {
    return Status::Malformed(where() + ": an alias must have offset 0 and nbytes 0");
  }
  return Status::Ok();
}

void TensorTable::Add(const v1::TensorInfo& t) { AddChecked(t, false); }

void TensorTable::AddStored(const v1::TensorInfo& t) { AddChecked(t, true); }

void TensorTable::AddChecked(const v1::TensorInfo& t, bool stored) {
  const uint64_t i = count_++;
  // Past the count limit nothing more is kept: Layout refuses the count
  // first, and a hostile header stops costing memory here (review).
  if (!first_error_.ok() || count_ > kMaxTensorCount) return;
  first_error_ = Check(t, i, stored);
  if (!first_error_.ok()) return;
  // An alias_of longer than any name names no tensor; what Layout says of
  // it shows at most its first 80 bytes (Printable), so no more than
  // kMaxNameBytes + 1 of them are kept.
  const std::string_view alias(t.alias_of().data(),
                               std::min<size_t>(t.alias_of().size(), kMaxNameBytes + 1));
  char shape[kMaxRank * 10];
  size_t shape_len = 0;
  for (uint64_t d : t.shape()) {  // at most kMaxRank dimensions (Check)
    for (; d >= 0x80; d >>= 7) shape[shape_len++] = static_cast<char>((d & 0x7f) | 0x80);
    shape[shape_len++] = static_cast<char>(d);
  }
  // What the name shares with the previous one is not kept again, but for
  // every kRestartEvery-th entry.
  const std::string& name = t.name();
  size_t prefix = 0;
  if (kept_ % kRestartEvery != 0) {
    const size_t most = std::min(name.size(), last_name_.size());
    while (prefix < most && name[prefix] == last_name_[prefix]) ++prefix;
  }
  const std::string_view rest = std::string_view(name).substr(prefix);
  const auto text = static_cast<uint32_t>(rest.size() + alias.size() + shape_len);
  // The arena's positions are 32 bits: every block, the next one included,
  // starts below 4 GiB.
  if (arena_blocks_.size() >= kMaxArenaBlocks) {
    first_error_ =
        Status::LimitExceeded("the tensor names and shapes exceed 4 GiB (tensor #" + Num(i) + ")");
    return;
  }
  Entry e{};
  e.has_source_index = t.has_source_index() ? 1 : 0;
  if (t.has_source_index() && t.source_index() >= kBigSourceIndex) {
    e.source_index = kBigSourceIndex;
    big_source_indices_.emplace_back(i, t.source_index());
  } else {
    e.source_index = static_cast<uint32_t>(t.source_index());
  }
  e.dtype = static_cast<uint16_t>(t.dtype()) & 0x3f;  // checked: a DType value
  e.prefix_len = static_cast<uint16_t>(prefix);
  e.suffix_len = static_cast<uint16_t>(rest.size());
  e.alias_len = static_cast<uint16_t>(alias.size());
  e.shape_len = static_cast<uint16_t>(shape_len) & 0x1ff;
  e.at = AllocateText(text);
  char* to = arena_blocks_.back().get() + (e.at & (kArenaBlockBytes - 1));
  std::memcpy(to, rest.data(), rest.size());
  std::memcpy(to + rest.size(), alias.data(), alias.size());
  std::memcpy(to + rest.size() + alias.size(), shape, shape_len);
  if ((kept_ & (kEntriesPerBlock - 1)) == 0) entry_blocks_.emplace_back(new Entry[kEntriesPerBlock]);
  entry(kept_++) = e;
  last_name_ = name;
}

std::string TensorTable::name(uint64_t i) const {
  std::string out;
  for (uint64_t k = i - i % kRestartEvery; k <= i; ++k) {
    const Entry& e = entry(k);
    out.resize(e.prefix_len);
    out += suffix(e);
  }
  return out;
}

// Among the whole names first (every kRestartEvery-th), then in the block
// of the last one not after `target`.
uint64_t TensorTable::Find(std::string_view target) const {
  if (kept_ == 0) return kept_;
  uint64_t lo = 0, hi = (kept_ - 1) / kRestartEvery + 1;  // blocks; find the last whose first <= target
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (suffix(entry(mid * kRestartEvery)) <= target) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  std::string name;
  for (uint64_t k = lo * kRestartEvery; k < kept_ && k < (lo + 1) * kRestartEvery; ++k) {
    const Entry& e = entry(k);
    name.resize(e.prefix_len);
    name += suffix(e);
    if (name == target) return k;
    if (std::string_view(name) > target) break;
  }
  return kept_;
}

uint64_t TensorTable::SourceIndex(uint64_t i) const {
  if (entry(i).source_index != kBigSourceIndex) return entry(i).source_index;
  for (const auto& [entry, value] : big_source_indices_) {
    if (entry == i) return value;
  }
  return kBigSourceIndex;  // not reached: Add records every one
}

Status TensorTable::CheckSourceOrder() const {
  if (count_ == 0 || entry(0).has_source_index == 0) {
    for (uint64_t i = 0; i < count_; ++i) {
      if (entry(i).has_source_index != 0) {
        return Status::Malformed("tensor '" + Printable(name(i)) +
                                 "' has a source_index but the first tensor has none "
                                 "(all tensors or none record the source order)");
      }
    }
    return Status::Ok();
  }
  // One bit per tensor: at most kMaxTensorCount, checked before.
  std::vector<bool> seen(count_, false);
  for (uint64_t i = 0; i < count_; ++i) {
    const Entry& e = entry(i);
    auto where = [&] { return "tensor '" + Printable(name(i)) + "'"; };
    if (e.has_source_index == 0) {
      return Status::Malformed(where() +
                               " has no source_index but the first tensor has one "
                               "(all tensors or none record the source order)");
    }
    if (e.source_index >= count_) {
      return Status::Malformed(where() + ": source_index " + Num(SourceIndex(i)) +
                               " is not below the tensor count " + Num(count_));
    }
    if (seen[e.source_index]) {
      return Status::Malformed(where() + ": source_index " + Num(e.source_index) +
                               " is used twice (not a permutation of 0.." + Num(count_ - 1) + ")");
    }
    seen[e.source_index] = true;
  }
  return Status::Ok();
}

// After every entry: an alias names a real tensor of the same
// dtype and shape (the packed shapes are equal exactly when the shapes are:
// Add encodes them canonically).
Status TensorTable::CheckAliases() const {
  for (uint64_t i = 0; i < count_; ++i) {
    const Entry& e = entry(i);
    if (e.alias_len == 0) continue;
    const std::string_view target = alias_of(e);
    const uint64_t found = Find(target);
    auto where = [&] { return "tensor '" + Printable(name(i)) + "'"; };
    if (found == kept_) {
      return Status::Malformed(where() + ": alias_of names no tensor ('" + Printable(target) +
                               "')");
    }
    const Entry& t = entry(found);
    if (t.alias_len != 0) {
      return Status::Malformed(where() + ": alias_of names another alias ('" + Printable(target) +
                               "')");
    }
    if (t.dtype != e.dtype || packed_shape(t) != packed_shape(e)) {
      return Status::Malformed(where() + ": alias differs in dtype or shape from '" +
                               Printable(target) + "'");
    }
  }
  return Status::Ok();
}

Status TensorTable::CheckCount(uint64_t count) {
  if (count > kMaxTensorCount) {
    return Status::LimitExceeded(Num(count) + " tensors exceed the limit of " +
                                 Num(kMaxTensorCount));
  }
  return Status::Ok();
}

Result<uint64_t> TensorTable::Layout(std::span<const uint64_t> stored_offsets) {
  if (laid_out_) return Status::Internal("the tensor table was laid out twice");
  laid_out_ = true;
  SAFEMODEL_RETURN_IF_ERROR(CheckCount(count_));
  SAFEMODEL_RETURN_IF_ERROR(first_error_);
  if (!stored_offsets.empty() && stored_offsets.size() != count_) {
    return Status::Internal("stored offsets for " + Num(stored_offsets.size()) + " of " +
                            Num(count_) + " tensors");
  }
  SAFEMODEL_RETURN_IF_ERROR(CheckSourceOrder());
  SAFEMODEL_RETURN_IF_ERROR(CheckAliases());
  // Canonical offsets in table order (checked here, computed again by
  // NextOffset where they are needed), and a file's stored ones against
  // them, tensor by tensor.
  uint64_t cursor = 0;
  for (uint64_t i = 0; i < count_; ++i) {
    const Entry& e = entry(i);
    if (e.alias_len != 0) continue;
    const uint64_t nbytes = Nbytes(e);
    uint64_t offset, end;
    if (!AlignUp(cursor, TensorAlignmentFor(nbytes), &offset) ||
        !CheckedAdd(offset, nbytes, &end) || end > kMaxFileBytes) {
      return Status::LimitExceeded("tensor data exceeds the maximum file size");
    }
    if (!stored_offsets.empty() && stored_offsets[i] != offset) {
      return Status::Malformed("tensor '" + Printable(name(i)) + "': offset " +
                               Num(stored_offsets[i]) + " is not the canonical offset " +
                               Num(offset) + " (overlap, hole or misalignment)");
    }
    cursor = end;
  }
  return cursor;
}

// Fields in number order, each only when protobuf (proto3) would write it:
// a non-empty string or array, a non-zero number, source_index when set.
uint64_t TensorTable::NextOffset(uint64_t end, uint64_t nbytes) {
  uint64_t offset = 0;
  (void)AlignUp(end, TensorAlignmentFor(nbytes), &offset);  // Layout checked it
  return offset;
}

uint64_t TensorTable::BodyBytes(const Entry& e, uint64_t offset, uint64_t nbytes) const {
  uint64_t n = 1 + VarintBytes(NameBytes(e)) + NameBytes(e);  // names are never empty
  if (e.dtype != 0) n += 1 + VarintBytes(e.dtype);
  if (e.shape_len != 0) n += 1 + VarintBytes(e.shape_len) + e.shape_len;
  if (offset != 0) n += 1 + VarintBytes(offset);
  if (nbytes != 0) n += 1 + VarintBytes(nbytes);
  if (e.alias_len != 0) n += 1 + VarintBytes(e.alias_len) + e.alias_len;
  if (e.has_source_index != 0) n += 1 + VarintBytes(e.source_index);  // valid: below 2^32
  return n;
}

uint64_t TensorTable::SerializedBytes() const {
  uint64_t n = 0, end = 0;
  for (uint64_t i = 0; i < kept_; ++i) {
    const Entry& e = entry(i);
    const uint64_t nbytes = Nbytes(e);
    uint64_t offset = 0;
    if (e.alias_len == 0) {
      offset = NextOffset(end, nbytes);
      end = offset + nbytes;
    }
    const uint64_t body = BodyBytes(e, offset, nbytes);
    n += 1 + VarintBytes(body) + body;
  }
  return n;
}

void TensorTable::Serialize(CodedOutputStream* out) const {
  auto bytes = [out](uint8_t tag, std::string_view s) {
    out->WriteTag(tag);
    out->WriteVarint32(static_cast<uint32_t>(s.size()));
    out->WriteRaw(s.data(), static_cast<int>(s.size()));
  };
  auto number = [out](uint8_t tag, uint64_t v) {
    out->WriteTag(tag);
    out->WriteVarint64(v);
  };
  uint64_t end = 0;
  std::string name;  // put together entry by entry
  for (uint64_t i = 0; i < kept_; ++i) {
    const Entry& e = entry(i);
    const uint64_t nbytes = Nbytes(e);
    uint64_t offset = 0;
    if (e.alias_len == 0) {
      offset = NextOffset(end, nbytes);
      end = offset + nbytes;
    }
    name.resize(e.prefix_len);
    name += suffix(e);
    number(kHeaderTensorTag, BodyBytes(e, offset, nbytes));
    bytes(kNameTag, name);
    if (e.dtype != 0) number(kDTypeTag, e.dtype);
    if (e.shape_len != 0) bytes(kShapeTag, packed_shape(e));
    if (offset != 0) number(kOffsetTag, offset);
    if (nbytes != 0) number(kNbytesTag, nbytes);
    if (e.alias_len != 0) bytes(kAliasTag, alias_of(e));
    if (e.has_source_index != 0) number(kSourceIndexTag, e.source_index);
  }
}

}  // namespace safemodel::format
