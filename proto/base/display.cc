#include "safemodel/display.h"

#include <cstdint>

namespace safemodel {

namespace {

// Characters that render as nothing or change how the text around them is
// ordered or broken: Unicode general category Cf (format), Zl and Zp, as far
// as terminals and editors act on them. Trojan Source (CVE-2021-42574) and
// "ASCII smuggling" in tag characters use these.
bool IsInvisibleOrReordering(uint32_t cp) {
  return cp == 0x00AD ||                     // soft hyphen
         cp == 0x034F ||                     // combining grapheme joiner
         cp == 0x061C ||                     // Arabic letter mark (bidi)
         cp == 0x115F || cp == 0x1160 ||     // Hangul fillers (blank)
         cp == 0x17B4 || cp == 0x17B5 ||     // Khmer inherent vowels (invisible)
         cp == 0x180E ||                     // Mongolian vowel separator
         (cp >= 0x200B && cp <= 0x200F) ||   // zero-width space/joiners, LRM, RLM
         (cp >= 0x2028 && cp <= 0x202E) ||   // line/paragraph separator, LRE RLE PDF LRO RLO
         (cp >= 0x2060 && cp <= 0x206F) ||   // word joiner, invisible operators, LRI RLI FSI PDI
         cp == 0x3164 ||                     // Hangul filler
         cp == 0xFEFF ||                     // zero-width no-break space (BOM)
         cp == 0xFFA0 ||                     // halfwidth Hangul filler
         (cp >= 0xFFF9 && cp <= 0xFFFB) ||   // interlinear annotation controls
         (cp >= 0x1D173 && cp <= 0x1D17A) || // musical symbol format controls
         (cp >= 0xE0000 && cp <= 0xE007F);   // tag characters
}

constexpr char kHex[] = "0123456789abcdef";

void AppendHex(std::string* out, uint32_t v, int digits) {
  for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4) out->push_back(kHex[(v >> shift) & 15]);
}

// Decodes one UTF-8 sequence at s[i]. Returns its length (1-4) and sets *cp,
// or 0 if the bytes there are not a valid, shortest-form encoding of a
// Unicode scalar value (no surrogates, nothing above U+10FFFF).
size_t DecodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const uint8_t c = b(0);
  size_t len;
  uint32_t v;
  uint32_t min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xC2 && c <= 0xDF) {
    len = 2, v = c & 0x1Fu, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, v = c & 0x0Fu, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, v = c & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(k) & 0x3Fu);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

}  // namespace

std::string EscapeForDisplay(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(text, i, &cp);
    if (len == 0 || cp < 0x20 || cp == 0x7F) {
      out += "\\x";
      AppendHex(&out, static_cast<uint8_t>(text[i]), 2);
      ++i;
      continue;
    }
    if (cp == '\\') {
      out += "\\\\";
    } else if ((cp >= 0x80 && cp <= 0x9F) || IsInvisibleOrReordering(cp)) {
      if (cp <= 0xFFFF) {
        out += "\\u";
        AppendHex(&out, cp, 4);
      } else {
        out += "\\U";
        AppendHex(&out, cp, 8);
      }
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

}  // namespace safemodel
