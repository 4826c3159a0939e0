#include "loader/keras_h5/lzf_filter.h"

#include <cstring>

namespace safemodel::loader::h5 {

namespace {

thread_local std::string g_last_error;

// libhdf5's filter callback. Reading (H5Z_FLAG_REVERSE) replaces *buf with
// the decoded chunk; the output size is the chunk size from the client
// values (InspectDataset has checked it against the chunk's dimensions).
size_t LzfFilter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                 size_t* buf_size, void** buf) {
  if ((flags & H5Z_FLAG_REVERSE) == 0) {
    g_last_error = "LZF compression is not available (the worker only reads)";
    return 0;
  }
  if (cd_nelmts <= kLzfChunkBytesValue || cd_values[kLzfChunkBytesValue] == 0) {
    g_last_error = "the LZF filter's parameters do not give the chunk size";
    return 0;
  }
  const uint64_t out_size = cd_values[kLzfChunkBytesValue];
  // Fully written below (a decode that produces fewer bytes fails), so the
  // buffer needs no zero fill (the rule in loader/model.h).
  auto* out = static_cast<uint8_t*>(H5allocate_memory(out_size, false));
  if (out == nullptr) {
    g_last_error = "cannot allocate " + Num(out_size) + " bytes for an LZF chunk";
    return 0;
  }
  Status s = LzfDecompress(ByteView(static_cast<const uint8_t*>(*buf), nbytes), out, out_size);
  if (!s.ok()) {
    H5free_memory(out);
    g_last_error = s.message();
    return 0;
  }
  H5free_memory(*buf);
  *buf = out;
  *buf_size = out_size;
  return out_size;
}

}  // namespace

Status LzfDecompress(ByteView in, uint8_t* out, uint64_t out_size) {
  uint64_t ip = 0, op = 0;
  const uint64_t in_size = in.size();
  while (ip < in_size) {
    const uint64_t item = ip;
    const uint32_t ctrl = in[ip++];
    if (ctrl < 32) {
      const uint64_t run = ctrl + 1;
      if (run > in_size - ip) {
        return Status::Malformed("LZF literal run at byte " + Num(item) + " needs " + Num(run) +
                                 " bytes but the chunk has " + Num(in_size - ip) + " left");
      }
      if (run > out_size - op) {
        return Status::Malformed("LZF chunk decodes to more than its " + Num(out_size) +
                                 " bytes (literal run at byte " + Num(item) + ")");
      }
      std::memcpy(out + op, in.data() + ip, run);
      ip += run;
      op += run;
      continue;
    }
    uint64_t len = ctrl >> 5;
    if (len == 7) {
      if (ip >= in_size) {
        return Status::Malformed("LZF back reference at byte " + Num(item) + " is cut short");
      }
      len += in[ip++];
    }
    if (ip >= in_size) {
      return Status::Malformed("LZF back reference at byte " + Num(item) + " is cut short");
    }
    const uint64_t distance = ((static_cast<uint64_t>(ctrl & 0x1f) << 8) | in[ip++]) + 1;
    len += 2;
    if (distance > op) {
      return Status::Malformed("LZF back reference at byte " + Num(item) + " reaches " +
                               Num(distance) + " bytes back, before the start of the chunk");
    }
    if (len > out_size - op) {
      return Status::Malformed("LZF chunk decodes to more than its " + Num(out_size) +
                               " bytes (back reference at byte " + Num(item) + ")");
    }
    // Byte by byte: a distance shorter than the length repeats the output.
    for (uint64_t k = 0; k < len; ++k, ++op) out[op] = out[op - distance];
  }
  if (op != out_size) {
    return Status::Malformed("LZF chunk decodes to " + Num(op) + " bytes, not its " +
                             Num(out_size));
  }
  return Status::Ok();
}

Status RegisterLzfFilter() {
  static const H5Z_class2_t kClass = {
      H5Z_CLASS_T_VERS,
      kLzfFilterId,
      0,  // no encoder
      1,  // decoder
      "lzf (safemodel decoder)",
      nullptr,  // can_apply: only used when writing
      nullptr,  // set_local: only used when writing
      LzfFilter,
  };
  if (H5Zregister(&kClass) < 0) return Status::Internal("cannot register the LZF decoder");
  return Status::Ok();
}

std::string TakeLzfError() {
  std::string e;
  e.swap(g_last_error);
  return e;
}

}  // namespace safemodel::loader::h5
