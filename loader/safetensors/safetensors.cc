#include "loader/safetensors/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "loader/safetensors/header_json.h"
#include "proto/base/safetensors_format.h"

namespace safemodel::loader {

namespace {

// The least a header can be: "{}".
constexpr uint64_t kMinHeaderBytes = 2;

std::string TensorWhere(const SafetensorsEntry& e) {
  return "safetensors tensor '" + Printable(e.name) + "'";
}

// dtype and size rules of one entry; fills *dtype.
Status CheckEntry(const SafetensorsEntry& e, DType* dtype) {
  std::optional<DType> d = DTypeFromSafetensorsName(e.dtype);
  if (!d) {
    if (IsSubByteSafetensorsName(e.dtype)) {
      return Status::Unsupported(TensorWhere(e) + " has dtype " + e.dtype +
                                 ", a sub-byte type the .safemodel format does not hold");
    }
    return Status::Malformed(TensorWhere(e) + " has the unknown dtype '" + Printable(e.dtype) +
                             "'");
  }
  *dtype = *d;
  if (e.end < e.begin) {
    return Status::Malformed(TensorWhere(e) + " has data_offsets [" + Num(e.begin) + ", " +
                             Num(e.end) + "]: the end is before the begin");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t bytes, TensorByteSize(e.shape, *d, TensorWhere(e)));
  if (bytes != e.end - e.begin) {
    return Status::Malformed(TensorWhere(e) + ": shape and dtype " + e.dtype + " make " +
                             Num(bytes) + " bytes, but data_offsets [" + Num(e.begin) + ", " +
                             Num(e.end) + "] hold " + Num(e.end - e.begin));
  }
  return Status::Ok();
}

// Sorted by begin (then end, so that empty tensors at one offset come
// first), the entries must tile [0, buffer_size) exactly.
Status CheckTiling(std::vector<const SafetensorsEntry*>& order, uint64_t buffer_size) {
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t at = 0;
  for (const SafetensorsEntry* e : order) {
    if (e->begin > at) {
      return Status::Malformed("safetensors byte buffer has a gap: bytes [" + Num(at) + ", " +
                               Num(e->begin) + ") belong to no tensor (the next, " +
                               TensorWhere(*e) + ", begins at " + Num(e->begin) + ")");
    }
    if (e->begin < at) {
      return Status::Malformed(TensorWhere(*e) + " begins at byte " + Num(e->begin) +
                               " of the byte buffer, inside the previous tensor (which ends at " +
                               Num(at) + "): tensors overlap");
    }
    at = e->end;
  }
  if (at != buffer_size) {
    if (at > buffer_size) {
      return Status::Malformed("safetensors tensors end at byte " + Num(at) +
                               " of the byte buffer, but the file holds only " +
                               Num(buffer_size) + " bytes after the header (truncated)");
    }
    return Status::Malformed("safetensors file has " + Num(buffer_size - at) +
                             " trailing bytes after the last tensor's data (byte buffer of " +
                             Num(buffer_size) + " bytes, tensors cover " + Num(at) + ")");
  }
  return Status::Ok();
}

// The length prefix and the header's first byte.
Result<std::string_view> HeaderText(ByteView input) {
  ByteReader r(input);
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, r.U64LE("safetensors header length"));
  if (n > kMaxSafetensorsHeaderBytes) {
    return Status::Malformed("safetensors header length " + Num(n) + " is over " +
                             Num(kMaxSafetensorsHeaderBytes) +
                             " bytes, the reference reader's limit (it refuses the file)");
  }
  if (n < kMinHeaderBytes) {
    return Status::Malformed("safetensors header length " + Num(n) +
                             " is too short for a JSON object");
  }
  if (n > r.remaining()) {
    return Status::Malformed("safetensors header length " + Num(n) + " runs past the end of the " +
                             Num(input.size()) + "-byte file (truncated)");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView header, r.Bytes(n, "safetensors header"));
  if (header[0] != '{') {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", header[0]);
    return Status::Malformed(std::string("safetensors header does not start with '{' (byte 8 is ") +
                             hex + ")");
  }
  return AsChars(header);
}

class SafetensorsParser final : public Parser {
 public:
  Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) override {
    out->source_format = "safetensors";
    SAFEMODEL_ASSIGN_OR_RETURN(std::string_view text, HeaderText(input));
    SAFEMODEL_ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(text));
    SAFEMODEL_RETURN_IF_ERROR(
        ctx.Spend(header.tensors.size() * 64, text.size() * kWorkPerByte, "safetensors header"));
    std::vector<DType> dtypes(header.tensors.size());
    std::vector<const SafetensorsEntry*> order;
    order.reserve(header.tensors.size());
    for (size_t i = 0; i < header.tensors.size(); ++i) {
      SAFEMODEL_RETURN_IF_ERROR(CheckEntry(header.tensors[i], &dtypes[i]));
      order.push_back(&header.tensors[i]);
    }
    const uint64_t data_start = kSafetensorsLengthBytes + text.size();
    const ByteView buffer = input.subspan(data_start);
    SAFEMODEL_RETURN_IF_ERROR(CheckTiling(order, buffer.size()));
    for (const SafetensorsEntry* e : order) {
      const size_t i = static_cast<size_t>(e - header.tensors.data());
      Tensor t;
      t.name = e->name;
      t.dtype = dtypes[i];
      t.shape = e->shape;
      t.origin = TensorWhere(*e);
      t.source = ViewSource(buffer.subspan(e->begin, e->end - e->begin));
      out->tensors.push_back(std::move(t));
    }
    if (header.has_metadata) {
      Value meta = Value::Map();
      for (auto& [k, v] : header.metadata) {
        meta.mutable_entries().emplace_back(std::move(k), Value::String(std::move(v)));
      }
      out->metadata = Value::Map();
      out->metadata.mutable_entries().emplace_back(std::string(kSafetensorsMetadataKey),
                                                   std::move(meta));
    }
    return Status::Ok();
  }
};

}  // namespace

bool LooksLikeSafetensors(ByteView input) {
  if (input.size() <= kSafetensorsLengthBytes || input[kSafetensorsLengthBytes] != '{') {
    return false;
  }
  for (size_t i = 4; i < kSafetensorsLengthBytes; ++i) {
    if (input[i] != 0) return false;
  }
  return true;
}

std::unique_ptr<Parser> NewSafetensorsParser() { return std::make_unique<SafetensorsParser>(); }

}  // namespace safemodel::loader
