#include "loader/containers/inflate.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

namespace safemodel::loader {

// zlib's windowBits: 15 for a zlib stream, 31 (15 + 16) for gzip. Ratio cap
// on input + 64 bytes: headers and trailers inflate to nothing.
Result<std::shared_ptr<std::string>> InflateWhole(ByteView input, bool gzip, uint64_t max_bytes) {
  uint64_t cap = max_bytes;
  uint64_t ratio_cap;
  if (CheckedMul(input.size() + 64, kMaxDeflateRatio, &ratio_cap)) cap = std::min(cap, ratio_cap);
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, gzip ? 31 : 15) != Z_OK)
    return Status::LimitExceeded("zlib: cannot initialise");
  auto out = std::make_shared<std::string>();
  const char* what = gzip ? "gzip" : "zlib";
  uint64_t consumed = 0;
  int rc = Z_OK;
  Status status;
  while (rc != Z_STREAM_END) {
    if (out->size() >= cap) {
      status = Status::LimitExceeded(std::string(what) + " stream inflates beyond " + Num(cap) +
                                     " bytes (memory limit or compression ratio)");
      break;
    }
    const uint64_t grow =
        std::min<uint64_t>(std::max<uint64_t>(out->size(), 1 << 16), cap - out->size());
    const size_t old = out->size();
    out->resize(old + grow);
    zs.next_out = reinterpret_cast<Bytef*>(out->data() + old);
    zs.avail_out = static_cast<uInt>(std::min<uint64_t>(grow, UINT32_MAX));
    const uint64_t in_left = input.size() - consumed;
    zs.next_in = const_cast<Bytef*>(input.data() + consumed);
    zs.avail_in = static_cast<uInt>(std::min<uint64_t>(in_left, UINT32_MAX));
    const uInt in_before = zs.avail_in, out_before = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_before - zs.avail_in;
    out->resize(old + (out_before - zs.avail_out));
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs.avail_in > 0)) {
      status = Status::Malformed(std::string(what) + " stream is corrupt or truncated (" +
                                 (zs.msg ? zs.msg : "zlib error " + std::to_string(rc)) + ")");
      break;
    }
    if (zs.avail_in == 0 && consumed == input.size() && out_before == zs.avail_out) {
      status = Status::Malformed(std::string(what) + " stream is truncated");
      break;
    }
  }
  inflateEnd(&zs);
  SAFEMODEL_RETURN_IF_ERROR(status);
  if (consumed != input.size()) {
    return Status::Malformed(Num(input.size() - consumed) + " bytes after the end of the " + what +
                             " stream");
  }
  return out;
}

// windowBits -15: raw deflate, no header. Stops at the first error (not
// only at the end), keeping what inflated before it.
std::string InflateRaw(ByteView in, uint64_t cap) {
  std::string out;
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, -15) != Z_OK) return out;
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(std::min<uint64_t>(in.size(), UINT32_MAX));
  for (;;) {
    if (out.size() >= cap) break;
    size_t old = out.size();
    uint64_t grow = std::min<uint64_t>(std::max<uint64_t>(old, 1 << 16), cap - old);
    out.resize(old + grow);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = static_cast<uInt>(std::min<uint64_t>(grow, UINT32_MAX));
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + (grow - zs.avail_out));
    if (rc != Z_OK) break;
  }
  inflateEnd(&zs);
  return out;
}

}  // namespace safemodel::loader
