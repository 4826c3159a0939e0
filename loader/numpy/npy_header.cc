#include "loader/numpy/npy_header.h"

#include <algorithm>
#include <string_view>

#include "safemodel/limits.h"

namespace safemodel::loader {

namespace {

// A tokenizer/parser for the header dict: the subset of Python literal syntax
// numpy writes. Anything else is an error; nothing is evaluated.
class LiteralParser {
 public:
  // `python2_longs`: accept an `L` after a shape integer (versions 1.0 and
  // 2.0, where numpy's _filter_header drops it).
  LiteralParser(std::string_view text, std::string_view where, bool python2_longs)
      : s_(text), where_(where), python2_longs_(python2_longs) {}

  Status Parse(NpyHeader* h) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    SAFEMODEL_RETURN_IF_ERROR(Expect('{'));
    for (;;) {
      SkipSpace();
      if (Peek() == '}') break;
      std::string key;
      SAFEMODEL_RETURN_IF_ERROR(String(&key));
      SAFEMODEL_RETURN_IF_ERROR(Expect(':'));
      SkipSpace();
      if (key == "descr" && !seen_descr) {
        seen_descr = true;
        if (Peek() == '[')
          return Status::Unsupported(std::string(where_) + ": structured dtypes are not supported");
        SAFEMODEL_RETURN_IF_ERROR(String(&h->descr));
      } else if (key == "fortran_order" && !seen_fortran) {
        seen_fortran = true;
        SAFEMODEL_RETURN_IF_ERROR(Bool(&h->fortran_order));
      } else if (key == "shape" && !seen_shape) {
        seen_shape = true;
        SAFEMODEL_RETURN_IF_ERROR(Shape(&h->shape));
      } else {
        return Status::Malformed(std::string(where_) + ": unexpected or repeated header key '" +
                                 Printable(key) + "'");
      }
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        continue;
      }
      if (Peek() != '}') return Error("',' or '}'");
    }
    ++pos_;  // '}'
    if (!seen_descr || !seen_fortran || !seen_shape) {
      return Status::Malformed(std::string(where_) +
                               ": header lacks one of 'descr', 'fortran_order', 'shape'");
    }
    // Only padding may follow: spaces, then the terminating newline.
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
    if (pos_ + 1 != s_.size() || s_[pos_] != '\n') {
      return Status::Malformed(std::string(where_) +
                               ": header is not padded with spaces and ended by a newline");
    }
    return Status::Ok();
  }

 private:
  char Peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
  }
  Status Error(const char* want) const {
    return Status::Malformed(std::string(where_) + ": header dict: expected " + want +
                             " at character " + Num(pos_));
  }
  Status Expect(char c) {
    SkipSpace();
    if (Peek() != c) return Error(std::string(1, c).c_str());
    ++pos_;
    return Status::Ok();
  }
  Status String(std::string* out) {
    SkipSpace();
    char q = Peek();
    if (q != '\'' && q != '"') return Error("a quoted string");
    ++pos_;
    size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != q) {
      if (s_[pos_] == '\\' || s_[pos_] == '\n') {
        return Status::Unsupported(std::string(where_) +
                                   ": escapes in header strings are not supported");
      }
      ++pos_;
    }
    if (pos_ >= s_.size()) return Error("a closing quote");
    out->assign(s_.substr(start, pos_ - start));
    ++pos_;
    return Status::Ok();
  }
  Status Bool(bool* out) {
    if (s_.substr(pos_, 4) == "True") {
      *out = true;
      pos_ += 4;
    } else if (s_.substr(pos_, 5) == "False") {
      *out = false;
      pos_ += 5;
    } else {
      return Error("True or False");
    }
    return Status::Ok();
  }
  Status Int(uint64_t* out) {
    SkipSpace();
    size_t start = pos_;
    uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      if (!CheckedMul(v, 10, &v) || !CheckedAdd(v, static_cast<uint64_t>(s_[pos_] - '0'), &v)) {
        return Status::Malformed(std::string(where_) + ": shape dimension overflows 64 bits");
      }
      ++pos_;
    }
    if (pos_ == start) return Error("a non-negative integer");
    if (pos_ - start > 1 && s_[start] == '0') return Error("an integer without leading zeros");
    if (Peek() == 'L') {
      // Python 2's long suffix, written by old numpy; numpy 1.24 filters it
      // out of 1.0/2.0 headers only and literal_eval rejects it in 3.0.
      if (!python2_longs_) {
        return Status::Malformed(std::string(where_) +
                                 ": a Python 2 'L' suffix in a version 3.0 header");
      }
      ++pos_;
    }
    *out = v;
    return Status::Ok();
  }
  Status Shape(std::vector<uint64_t>* shape) {
    if (Peek() != '(') return Error("a shape tuple");
    ++pos_;
    SkipSpace();
    if (Peek() == ')') {
      ++pos_;
      return Status::Ok();
    }
    for (;;) {
      uint64_t d = 0;
      SAFEMODEL_RETURN_IF_ERROR(Int(&d));
      if (shape->size() >= kMaxRank) {
        return Status::LimitExceeded(std::string(where_) + ": rank exceeds the limit of " +
                                     Num(kMaxRank));
      }
      shape->push_back(d);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        SkipSpace();
        if (Peek() == ')') break;
        continue;
      }
      if (Peek() == ')') {
        if (shape->size() == 1) return Error("',' after the single element of a tuple");
        break;
      }
      return Error("',' or ')'");
    }
    ++pos_;
    return Status::Ok();
  }

  std::string_view s_;
  std::string_view where_;  // messages only: built on an error
  bool python2_longs_;
  size_t pos_ = 0;
};

// Characters of a header as numpy decodes it: bytes for latin1, code points
// (bytes other than continuation bytes) for valid UTF-8.
uint64_t HeaderChars(std::string_view s, bool utf8) {
  if (!utf8) return s.size();
  return static_cast<uint64_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

Status ParseDescr(const std::string& descr, NpyHeader* h, std::string_view where) {
  if (descr.size() < 2)
    return Status::Unsupported(std::string(where) + ": dtype '" + Printable(descr) +
                               "' is not supported");
  char order = descr[0];
  std::string_view code = std::string_view(descr).substr(1);
  if (order != '<' && order != '>' && order != '|') {
    return Status::Unsupported(std::string(where) + ": dtype '" + Printable(descr) +
                               "' has no explicit byte order ('<', '>' or '|')");
  }
  if (code == "O" || code == "O8") {
    h->is_object = true;
    return Status::Ok();
  }
  struct Code {
    std::string_view code;
    DType dtype;
  };
  static constexpr Code kCodes[] = {
      {"b1", DType::kBool}, {"i1", DType::kI8},    {"u1", DType::kU8},  {"i2", DType::kI16},
      {"u2", DType::kU16},  {"i4", DType::kI32},   {"u4", DType::kU32}, {"i8", DType::kI64},
      {"u8", DType::kU64},  {"f2", DType::kF16},   {"f4", DType::kF32}, {"f8", DType::kF64},
      {"c8", DType::kC64},  {"c16", DType::kC128},
  };
  for (const Code& c : kCodes) {
    if (c.code != code) continue;
    h->dtype = c.dtype;
    uint32_t size = DTypeSize(c.dtype);
    if (size > 1 && order == '|') {
      return Status::Malformed(std::string(where) + ": dtype '" + descr + "' needs a byte order");
    }
    h->swap_unit = (order == '>' && size > 1) ? DTypeSwapUnit(c.dtype) : 0;
    return Status::Ok();
  }
  return Status::Unsupported(std::string(where) + ": dtype '" + Printable(descr) +
                             "' is not supported (numeric and bool dtypes only)");
}

}  // namespace

Result<NpyHeader> ParseNpyHeader(ByteView bytes, std::string_view where) {
  ByteReader r(bytes);
  // Messages are built only on an error: a .npz of 100,000 members parsed
  // 100,000 headers, each with eight message strings.
  auto what = [&](uint64_t n, const char* suffix) {
    return r.remaining() >= n ? std::string() : std::string(where) + suffix;
  };
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView magic,
                             r.Bytes(kNpyMagic.size(), what(kNpyMagic.size(), " magic")));
  if (AsChars(magic) != kNpyMagic) {
    return Status::Malformed(std::string(where) + ": not a .npy array (bad magic)");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint8_t major, r.U8(what(1, " version")));
  SAFEMODEL_ASSIGN_OR_RETURN(uint8_t minor, r.U8(what(1, " version")));
  if (major < 1 || major > 3 || minor != 0) {
    return Status::Unsupported(std::string(where) + ": .npy format version " + Num(major) + "." +
                               Num(minor) + " is not supported (1.0, 2.0, 3.0 are)");
  }
  uint64_t header_len;
  if (major == 1) {
    SAFEMODEL_ASSIGN_OR_RETURN(header_len, r.U16LE(what(2, " header length")));
  } else {
    SAFEMODEL_ASSIGN_OR_RETURN(header_len, r.U32LE(what(4, " header length")));
  }
  auto too_long = [&] {
    return Status::Unsupported(std::string(where) + ": header longer than numpy's limit of " +
                               Num(kMaxNpyHeaderChars) +
                               " characters (np.load refuses it without allow_pickle)");
  };
  if (header_len > kMaxNpyHeaderBytes) return too_long();
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView text, r.Bytes(header_len, what(header_len, " header")));
  std::string_view s = AsChars(text);
  bool ok_text = major == 3 ? IsValidUtf8(s) : std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x80;
  });
  if (!ok_text)
    return Status::Malformed(std::string(where) + ": header text is not " +
                             (major == 3 ? "UTF-8" : "ASCII"));
  if (HeaderChars(s, major == 3) > kMaxNpyHeaderChars) return too_long();
  NpyHeader h;
  SAFEMODEL_RETURN_IF_ERROR(LiteralParser(s, where, major < 3).Parse(&h));
  SAFEMODEL_RETURN_IF_ERROR(ParseDescr(h.descr, &h, where));
  h.data_offset = r.position();
  if (h.is_object) {
    // numpy computes the int64 element count first, for object arrays too.
    SAFEMODEL_RETURN_IF_ERROR(ElementCount(h.shape, where).status());
  } else {
    SAFEMODEL_ASSIGN_OR_RETURN(h.data_bytes, TensorByteSize(h.shape, h.dtype, where));
  }
  return h;
}

Elements NpyElements(const NpyHeader& h, ByteView data) {
  return NpyElements(h.swap_unit, h.fortran_order, h.shape, data);
}

Elements NpyElements(uint32_t swap_unit, bool fortran_order, std::span<const uint64_t> shape,
                     ByteView data) {
  Elements e;
  e.view = data;
  e.swap_unit = swap_unit;
  if (fortran_order && shape.size() > 1) {
    // Fortran order: the first index varies fastest.
    e.strides.resize(shape.size());
    int64_t stride = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
      e.strides[d] = stride;
      stride *= static_cast<int64_t>(shape[d] == 0 ? 1 : shape[d]);
    }
  }
  return e;
}

}  // namespace safemodel::loader
