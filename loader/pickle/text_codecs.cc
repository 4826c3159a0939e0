#include "loader/pickle/text_codecs.h"

#include <algorithm>
#include <charconv>

namespace safemodel::loader::pickle {

namespace {

// The character a one-letter escape of codecs.escape_decode stands for, or
// -1 if the letter is not one.
int SimpleEscape(char e) {
  switch (e) {
    case '\\':
      return '\\';
    case '\'':
      return '\'';
    case '"':
      return '"';
    case 'a':
      return '\a';
    case 'b':
      return '\b';
    case 'f':
      return '\f';
    case 'n':
      return '\n';
    case 'r':
      return '\r';
    case 't':
      return '\t';
    case 'v':
      return '\v';
    default:
      return -1;
  }
}

// Decodes the escape whose letter is s[*i] (the backslash before it is
// consumed) into *out; *i ends on the escape's last character.
Status DecodeEscape(std::string_view s, size_t* i, std::string* out) {
  const char e = s[*i];
  if (e == '\n') return Status::Ok();  // a line continuation
  if (const int c = SimpleEscape(e); c >= 0) {
    out->push_back(static_cast<char>(c));
    return Status::Ok();
  }
  if (e == 'x') {
    const int hi = *i + 1 < s.size() ? HexValue(static_cast<uint8_t>(s[*i + 1])) : -1;
    const int lo = *i + 2 < s.size() ? HexValue(static_cast<uint8_t>(s[*i + 2])) : -1;
    if (hi < 0 || lo < 0) return Status::Malformed("STRING has an invalid \\x escape");
    out->push_back(static_cast<char>(hi * 16 + lo));
    *i += 2;
    return Status::Ok();
  }
  if (e >= '0' && e <= '7') {
    int v = e - '0';
    for (int k = 0; k < 2 && *i + 1 < s.size() && s[*i + 1] >= '0' && s[*i + 1] <= '7'; ++k) {
      v = v * 8 + (s[++*i] - '0');
    }
    out->push_back(static_cast<char>(v & 0xFF));
    return Status::Ok();
  }
  out->push_back('\\');  // unknown escapes are kept
  out->push_back(e);
  return Status::Ok();
}

}  // namespace

int HexValue(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

Result<std::string> DecodeStringLiteral(std::string_view quoted) {
  if (quoted.size() < 2 || quoted.front() != quoted.back() ||
      (quoted.front() != '\'' && quoted.front() != '"')) {
    return Status::Malformed("STRING argument must be quoted");
  }
  const std::string_view s = quoted.substr(1, quoted.size() - 2);
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out.push_back(s[i]);
      continue;
    }
    if (++i >= s.size()) return Status::Malformed("STRING ends with a lone backslash");
    SAFEMODEL_RETURN_IF_ERROR(DecodeEscape(s, &i, &out));
  }
  return out;
}

Result<std::string> DecodeRawUnicodeEscape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    auto ch = static_cast<uint8_t>(s[i++]);
    if (ch != '\\' || i >= s.size() || (s[i] != 'u' && s[i] != 'U')) {
      AppendUtf8(&out, ch);
      if (ch == '\\' && i < s.size()) AppendUtf8(&out, static_cast<uint8_t>(s[i++]));
      continue;
    }
    const size_t count = s[i++] == 'u' ? 4 : 8;
    if (i + count > s.size()) return Status::Malformed("UNICODE has a truncated \\u escape");
    uint32_t cp = 0;
    for (size_t k = 0; k < count; ++k) {
      const int h = HexValue(static_cast<uint8_t>(s[i + k]));
      if (h < 0) return Status::Malformed("UNICODE has an invalid \\u escape");
      cp = cp * 16 + static_cast<uint32_t>(h);
    }
    i += count;
    if (cp > 0x10FFFF) return Status::Malformed("UNICODE escape beyond U+10FFFF");
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      return Status::Unsupported("UNICODE string with a surrogate");
    }
    AppendUtf8(&out, cp);
  }
  return out;
}

Result<std::string> EncodeLatin1(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < text.size() && c <= 0xC3) {
      out.push_back(
          static_cast<char>(((c & 0x1F) << 6) | (static_cast<uint8_t>(text[i + 1]) & 0x3F)));
      i += 2;
    } else {
      return Status::Malformed("text has a character beyond latin-1");
    }
  }
  return out;
}

std::optional<double> ParseFloatText(std::string_view text) {
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

void NegateTwosComplement(std::vector<uint8_t>* bytes) {
  unsigned carry = 1;
  for (uint8_t& b : *bytes) {
    unsigned v = static_cast<uint8_t>(~b) + carry;
    b = static_cast<uint8_t>(v & 0xFF);
    carry = v >> 8;
  }
}

ByteView TrimTwosComplement(ByteView b) {
  size_t n = b.size();
  while (n > 1) {
    uint8_t top = b[n - 1];
    bool next_negative = (b[n - 2] & 0x80) != 0;
    if ((top == 0x00 && !next_negative) || (top == 0xFF && next_negative)) {
      --n;
    } else {
      break;
    }
  }
  return b.subspan(0, n);
}

Result<std::vector<uint8_t>> DecimalToTwosComplement(std::string_view s) {
  bool negative = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    negative = s[i] == '-';
    ++i;
  }
  std::string_view digits = s.substr(i);
  if (digits.empty() || digits.size() > kMaxDecimalDigits ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Status::Malformed("'" + Printable(s, 40) + "' is not a decimal integer");
  }
  if (digits.size() > 1 && digits[0] == '0' &&
      digits.find_first_not_of('0') != std::string_view::npos) {
    return Status::Malformed("'" + Printable(s, 40) + "' has leading zeros");
  }
  // Magnitude as little-endian base-256 digits.
  std::vector<uint8_t> mag;
  for (char c : digits) {
    unsigned carry = static_cast<unsigned>(c - '0');
    for (uint8_t& b : mag) {
      unsigned v = b * 10u + carry;
      b = static_cast<uint8_t>(v & 0xFF);
      carry = v >> 8;
    }
    while (carry) {
      mag.push_back(static_cast<uint8_t>(carry & 0xFF));
      carry >>= 8;
    }
  }
  mag.push_back(0);  // room for the sign bit
  if (negative) NegateTwosComplement(&mag);
  mag.resize(TrimTwosComplement(ByteView(mag.data(), mag.size())).size());
  return mag;
}

std::string TwosComplementToDecimal(ByteView le) {
  std::vector<uint8_t> mag(le.begin(), le.end());
  const bool negative = !mag.empty() && (mag.back() & 0x80);
  if (negative) NegateTwosComplement(&mag);
  std::string digits;
  for (;;) {
    bool zero = std::all_of(mag.begin(), mag.end(), [](uint8_t b) { return b == 0; });
    if (zero) break;
    unsigned rem = 0;
    for (size_t i = mag.size(); i-- > 0;) {
      unsigned cur = (rem << 8) | mag[i];
      mag[i] = static_cast<uint8_t>(cur / 10);
      rem = cur % 10;
    }
    digits.push_back(static_cast<char>('0' + rem));
  }
  if (digits.empty()) digits = "0";
  if (negative) digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

}  // namespace safemodel::loader::pickle
