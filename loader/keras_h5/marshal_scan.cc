#include "loader/keras_h5/marshal_scan.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <optional>

namespace safemodel::loader {

namespace {

// Fields of a code object, in stream order.
enum class Step : uint8_t { kInt, kObject, kNames, kFileName, kName, kEnd };

struct Layout {
  const char* python;
  std::vector<Step> steps;
};

// CPython's marshal layouts of code objects (Python/marshal.c, w_object).
const std::vector<Layout>& Layouts() {
  using S = Step;
  static const std::vector<Layout> kLayouts = {
      // 3.11+: argcount, posonlyargcount, kwonlyargcount, stacksize, flags;
      // code, consts, names, localsplusnames, localspluskinds, filename,
      // name, qualname, firstlineno, linetable, exceptiontable.
      {"Python 3.11+",
       {S::kInt, S::kInt, S::kInt, S::kInt, S::kInt, S::kObject, S::kObject, S::kNames, S::kObject,
        S::kObject, S::kFileName, S::kName, S::kObject, S::kInt, S::kObject, S::kObject, S::kEnd}},
      // 3.8-3.10: argcount, posonlyargcount, kwonlyargcount, nlocals,
      // stacksize, flags; code, consts, names, varnames, freevars, cellvars,
      // filename, name, firstlineno, lnotab.
      {"Python 3.8-3.10",
       {S::kInt, S::kInt, S::kInt, S::kInt, S::kInt, S::kInt, S::kObject, S::kObject, S::kNames,
        S::kObject, S::kObject, S::kObject, S::kFileName, S::kName, S::kInt, S::kObject, S::kEnd}},
      // 3.0-3.7: as 3.8 without posonlyargcount.
      {"Python 3.0-3.7",
       {S::kInt, S::kInt, S::kInt, S::kInt, S::kInt, S::kObject, S::kObject, S::kNames, S::kObject,
        S::kObject, S::kObject, S::kFileName, S::kName, S::kInt, S::kObject, S::kEnd}},
      // 2.x: argcount, nlocals, stacksize, flags; then as 3.0.
      {"Python 2",
       {S::kInt, S::kInt, S::kInt, S::kInt, S::kObject, S::kObject, S::kNames, S::kObject,
        S::kObject, S::kObject, S::kFileName, S::kName, S::kInt, S::kObject, S::kEnd}},
  };
  return kLayouts;
}

class Scanner {
 public:
  Scanner(ByteView data, const Layout& layout) : reader_(data), layout_(layout) {}

  // Fills *out on success; returns an error text otherwise.
  std::optional<std::string> Run(MarshalScan* out) {
    Result<uint8_t> first = reader_.PeekU8("marshal type");
    if (!first.ok() || (*first & 0x7f) != 'c')
      return std::string("the data does not start with a code object");
    stack_.push_back(Frame{Frame::kSeq, 1, 0, Target::kNone, false});
    while (!stack_.empty()) {
      Frame& f = stack_.back();
      Target target = Target::kNone;
      if (f.kind == Frame::kSeq) {
        if (f.remaining == 0) {
          stack_.pop_back();
          continue;
        }
        --f.remaining;
        if (f.names) target = Target::kName;
      } else if (f.kind == Frame::kDict) {
        // Keys and values alternate until a NULL type code.
      } else {
        Step step = layout_.steps[f.step++];
        if (step == Step::kEnd) {
          stack_.pop_back();
          continue;
        }
        if (step == Step::kInt) {
          if (!reader_.U32LE("code field").ok()) return std::string("truncated code object");
          continue;
        }
        if (step == Step::kNames) target = Target::kNames;
        if (step == Step::kFileName && f.outer) target = Target::kFileName;
        if (step == Step::kName && f.outer) target = Target::kFunctionName;
      }
      if (auto err = ReadObject(target)) return err;
    }
    if (!reader_.at_end()) return "trailing bytes after the code object";
    out->is_code = true;
    out->python = layout_.python;
    out->names = std::move(names_);
    out->function_name = std::move(function_name_);
    out->file_name = std::move(file_name_);
    return std::nullopt;
  }

 private:
  // Where the next object goes: a names tuple collects strings.
  enum class Target { kNone, kNames, kName, kFileName, kFunctionName };
  struct Frame {
    enum Kind { kSeq, kDict, kCode } kind;
    uint64_t remaining;  // kSeq
    size_t step;         // kCode
    Target target;
    bool names;          // kSeq: this tuple is a code object's co_names
    bool outer = false;  // kCode: the outermost code object
  };

  std::optional<std::string> Push(Frame f) {
    if (stack_.size() >= kMaxMarshalDepth) return std::string("nested too deeply");
    stack_.push_back(f);
    return std::nullopt;
  }

  void Deliver(Target target, const std::string& s) {
    switch (target) {
      case Target::kName:
        if (names_.size() < kMaxMarshalNames && s.size() <= kMaxMarshalNameBytes &&
            std::find(names_.begin(), names_.end(), s) == names_.end()) {
          names_.push_back(s);
        }
        break;
      case Target::kFileName:
        file_name_ = s.substr(0, kMaxMarshalNameBytes);
        break;
      case Target::kFunctionName:
        function_name_ = s.substr(0, kMaxMarshalNameBytes);
        break;
      default:
        break;
    }
  }

  std::optional<std::string> Length(uint64_t* n, uint64_t min_item_bytes) {
    Result<int32_t> v = reader_.I32LE("length");
    if (!v.ok() || *v < 0) return std::string("bad length");
    *n = static_cast<uint64_t>(*v);
    if (min_item_bytes > 0 && *n > reader_.remaining() / min_item_bytes) {
      return std::string("length beyond the data");
    }
    return std::nullopt;
  }

  std::optional<std::string> String(uint64_t n, Target target, std::optional<size_t> ref) {
    Result<ByteView> bytes = reader_.Bytes(n, "string");
    if (!bytes.ok()) return std::string("truncated string");
    std::string s(AsChars(*bytes).substr(0, std::min<uint64_t>(n, kMaxMarshalNameBytes + 1)));
    if (ref.has_value()) refs_[*ref] = s;
    if (interned_pending_) {
      interned_.push_back(s);
      interned_pending_ = false;
    }
    Deliver(target, s);
    return std::nullopt;
  }

  std::optional<std::string> ReadObject(Target target) {
    Result<uint8_t> type_byte = reader_.U8("type");
    if (!type_byte.ok()) return std::string("truncated data");
    const bool flag = (*type_byte & 0x80) != 0;
    const char type = static_cast<char>(*type_byte & 0x7f);
    std::optional<size_t> ref;
    if (flag) {
      // Reference slots are numbered in the order objects start.
      ref = refs_.size();
      refs_.emplace_back();
    }
    const bool names = target == Target::kNames;
    uint64_t n = 0;
    switch (type) {
      case '0':  // NULL: ends a dict
        if (stack_.back().kind != Frame::kDict) return std::string("NULL outside a dict");
        stack_.pop_back();
        return std::nullopt;
      case 'N':
      case 'F':
      case 'T':
      case 'S':
      case '.':
        return std::nullopt;
      case 'i':
        return reader_.Skip(4, "int").ok() ? std::nullopt : std::optional<std::string>("truncated");
      case 'I':
      case 'g':
        return reader_.Skip(8, "int64").ok() ? std::nullopt
                                             : std::optional<std::string>("truncated");
      case 'y':
        return reader_.Skip(16, "complex").ok() ? std::nullopt
                                                : std::optional<std::string>("truncated");
      case 'f': {
        Result<uint8_t> len = reader_.U8("float");
        return len.ok() && reader_.Skip(*len, "float").ok()
                   ? std::nullopt
                   : std::optional<std::string>("truncated");
      }
      case 'x':
        for (int k = 0; k < 2; ++k) {
          Result<uint8_t> len = reader_.U8("complex");
          if (!len.ok() || !reader_.Skip(*len, "complex").ok()) return std::string("truncated");
        }
        return std::nullopt;
      case 'l': {
        Result<int32_t> digits = reader_.I32LE("long");
        if (!digits.ok() || *digits == INT32_MIN) return std::string("bad long");
        uint64_t count =
            static_cast<uint64_t>(*digits < 0 ? -static_cast<int64_t>(*digits) : *digits);
        return reader_.Skip(count * 2, "long").ok() ? std::nullopt
                                                    : std::optional<std::string>("truncated");
      }
      case 't':  // Python 2 interned string: later 'R' codes refer to it
        interned_pending_ = true;
        [[fallthrough]];
      case 's':
      case 'u':
      case 'a':
      case 'A':
        if (auto err = Length(&n, 0)) return err;
        return String(n, names ? Target::kNone : target, ref);
      case 'z':
      case 'Z': {
        Result<uint8_t> len = reader_.U8("short string");
        if (!len.ok()) return std::string("truncated");
        return String(*len, names ? Target::kNone : target, ref);
      }
      case 'R': {  // Python 2 reference to an interned string
        Result<uint32_t> index = reader_.U32LE("string reference");
        if (!index.ok() || *index >= interned_.size()) return std::string("bad string reference");
        Deliver(names ? Target::kNone : target, interned_[*index]);
        return std::nullopt;
      }
      case 'r': {
        Result<uint32_t> index = reader_.U32LE("reference");
        if (!index.ok() || *index >= refs_.size()) return std::string("bad reference");
        if (refs_[*index].has_value()) Deliver(names ? Target::kNone : target, *refs_[*index]);
        return std::nullopt;
      }
      case '(':
      case '[':
      case '<':
      case '>':
        if (auto err = Length(&n, 1)) return err;
        return Push(Frame{Frame::kSeq, n, 0, Target::kNone, names});
      case ')': {
        Result<uint8_t> len = reader_.U8("small tuple");
        if (!len.ok()) return std::string("truncated");
        return Push(Frame{Frame::kSeq, *len, 0, Target::kNone, names});
      }
      case '{':
        return Push(Frame{Frame::kDict, 0, 0, Target::kNone, false});
      case 'c': {
        Frame f{Frame::kCode, 0, 0, Target::kNone, false};
        f.outer = !seen_code_;
        seen_code_ = true;
        return Push(f);
      }
      default:
        return "unknown marshal type code " + std::to_string(static_cast<unsigned>(*type_byte));
    }
  }

  ByteReader reader_;
  const Layout& layout_;
  std::vector<Frame> stack_;
  std::vector<std::optional<std::string>> refs_;
  std::vector<std::string> interned_;
  bool interned_pending_ = false;
  bool seen_code_ = false;
  std::vector<std::string> names_;
  std::string function_name_, file_name_;
};

// Python's base64 decoder in its lenient mode: characters outside the
// alphabet are skipped; returns false on bad padding.
bool DecodeBase64(std::string_view text, std::string* out) {
  out->clear();
  uint32_t acc = 0;
  int bits = 0;
  size_t data_chars = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      break;
    } else {
      continue;
    }
    ++data_chars;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return data_chars % 4 != 1;
}

// Python's str.encode('raw_unicode_escape') of UTF-8 text: code points
// below 256 become that byte, others \uXXXX / \UXXXXXXXX.
std::string RawUnicodeEscape(std::string_view utf8) {
  std::string out;
  for (size_t i = 0; i < utf8.size();) {
    auto b = static_cast<uint8_t>(utf8[i]);
    uint32_t cp = b;
    size_t len = 1;
    if (b >= 0xf0 && i + 3 < utf8.size()) {
      cp = ((b & 0x07u) << 18) | ((static_cast<uint8_t>(utf8[i + 1]) & 0x3fu) << 12) |
           ((static_cast<uint8_t>(utf8[i + 2]) & 0x3fu) << 6) |
           (static_cast<uint8_t>(utf8[i + 3]) & 0x3fu);
      len = 4;
    } else if (b >= 0xe0 && i + 2 < utf8.size()) {
      cp = ((b & 0x0fu) << 12) | ((static_cast<uint8_t>(utf8[i + 1]) & 0x3fu) << 6) |
           (static_cast<uint8_t>(utf8[i + 2]) & 0x3fu);
      len = 3;
    } else if (b >= 0xc0 && i + 1 < utf8.size()) {
      cp = ((b & 0x1fu) << 6) | (static_cast<uint8_t>(utf8[i + 1]) & 0x3fu);
      len = 2;
    }
    i += len;
    if (cp < 256) {
      out.push_back(static_cast<char>(cp));
    } else {
      char buf[16];
      std::snprintf(buf, sizeof(buf), cp <= 0xffff ? "\\u%04x" : "\\U%08x", cp);
      out += buf;
    }
  }
  return out;
}

}  // namespace

MarshalScan ScanMarshalCode(ByteView data) {
  MarshalScan result;
  std::string first_error;
  for (const Layout& layout : Layouts()) {
    Scanner scanner(data, layout);
    std::optional<std::string> error = scanner.Run(&result);
    if (!error.has_value()) return result;
    if (first_error.empty()) first_error = *error;
  }
  result = MarshalScan();
  result.error = first_error;
  return result;
}

std::string DecodeKerasCode(std::string_view text, MarshalScan* scan) {
  bool ascii =
      std::all_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; });
  std::string bytes;
  if (ascii && DecodeBase64(text, &bytes)) {
    *scan = ScanMarshalCode(AsBytes(bytes));
    if (scan->is_code) return bytes;
  }
  bytes = RawUnicodeEscape(text);
  *scan = ScanMarshalCode(AsBytes(bytes));
  return bytes;
}

}  // namespace safemodel::loader
