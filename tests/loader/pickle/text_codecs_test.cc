// The pickle text and number codecs (loader/pickle/text_codecs.h), as pure
// functions. Expected values are what CPython produces for the same text:
// codecs.escape_decode for STRING, the raw_unicode_escape codec for UNICODE,
// str.encode('latin-1'), int(text) and float(text).
#include "loader/pickle/text_codecs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace safemodel::loader::pickle {
namespace {

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

std::vector<uint8_t> Le(std::initializer_list<int> bytes) {
  std::vector<uint8_t> v;
  for (int b : bytes) v.push_back(static_cast<uint8_t>(b));
  return v;
}

TEST(TextCodecs, HexValue) {
  EXPECT_EQ(HexValue('0'), 0);
  EXPECT_EQ(HexValue('9'), 9);
  EXPECT_EQ(HexValue('a'), 10);
  EXPECT_EQ(HexValue('F'), 15);
  EXPECT_EQ(HexValue('g'), -1);
  EXPECT_EQ(HexValue('/'), -1);
  EXPECT_EQ(HexValue(0xFF), -1);
}

TEST(TextCodecs, AppendUtf8AtEveryLengthBoundary) {
  std::string s;
  for (uint32_t cp : {0x41u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    AppendUtf8(&s, cp);
  }
  EXPECT_EQ(s, "A\x7F" + Bytes({0xC2, 0x80, 0xDF, 0xBF, 0xE0, 0xA0, 0x80, 0xEF, 0xBF, 0xBF, 0xF0,
                                0x90, 0x80, 0x80, 0xF4, 0x8F, 0xBF, 0xBF}));
}

TEST(TextCodecs, StringLiteralEscapesAsEscapeDecode) {
  // codecs.escape_decode(br"a\\b\'c\"d\a\b\f\n\r\t\v") and friends.
  EXPECT_EQ(*DecodeStringLiteral(R"('a\\b\'c\"d\a\b\f\n\r\t\v')"),
            "a\\b'c\"d\a\b\f\n\r\t\v");
  EXPECT_EQ(*DecodeStringLiteral(R"("\x41\x7a\xff")"), Bytes({'A', 'z', 0xFF}));
  // Up to three octal digits; the value is taken modulo 256 ('\777' is 0xFF).
  EXPECT_EQ(*DecodeStringLiteral(R"('\0\101\1012\777')"), Bytes({0, 'A', 'A', '2', 0xFF}));
  // Backslash-newline is a line continuation; unknown escapes are kept.
  EXPECT_EQ(*DecodeStringLiteral("'a\\\nb'"), "ab");
  EXPECT_EQ(*DecodeStringLiteral(R"('\q\u1234')"), "\\q\\u1234");
  EXPECT_EQ(*DecodeStringLiteral("''"), "");
}

TEST(TextCodecs, StringLiteralErrors) {
  for (const char* bad : {"", "'", "abc", "'abc\"", "\"abc'"}) {
    Result<std::string> r = DecodeStringLiteral(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kMalformed);
    EXPECT_EQ(r.status().message(), "STRING argument must be quoted");
  }
  EXPECT_EQ(DecodeStringLiteral(R"('abc\')").status().message(),
            "STRING ends with a lone backslash");
  for (const char* bad : {R"('\x4')", R"('\x')", R"('\xg0')", R"('\x0g')"}) {
    EXPECT_EQ(DecodeStringLiteral(bad).status().message(), "STRING has an invalid \\x escape")
        << bad;
  }
}

TEST(TextCodecs, RawUnicodeEscapeAsPython) {
  // Bytes are latin-1 code points; only \u and \U are escapes.
  EXPECT_EQ(*DecodeRawUnicodeEscape("abc"), "abc");
  EXPECT_EQ(*DecodeRawUnicodeEscape(Bytes({0xE9})), Bytes({0xC3, 0xA9}));
  EXPECT_EQ(*DecodeRawUnicodeEscape("\\u00e9\\U0001F600"),
            Bytes({0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80}));
  // Other backslashes stay, with the character after them.
  EXPECT_EQ(*DecodeRawUnicodeEscape("a\\n\\\\b"), "a\\n\\\\b");
  EXPECT_EQ(*DecodeRawUnicodeEscape("end\\"), "end\\");
}

TEST(TextCodecs, RawUnicodeEscapeErrors) {
  EXPECT_EQ(DecodeRawUnicodeEscape("\\u12").status().message(),
            "UNICODE has a truncated \\u escape");
  EXPECT_EQ(DecodeRawUnicodeEscape("\\U0001F60").status().message(),
            "UNICODE has a truncated \\u escape");
  EXPECT_EQ(DecodeRawUnicodeEscape("\\u12g4").status().message(),
            "UNICODE has an invalid \\u escape");
  EXPECT_EQ(DecodeRawUnicodeEscape("\\U00110000").status().message(),
            "UNICODE escape beyond U+10FFFF");
  Result<std::string> surrogate = DecodeRawUnicodeEscape("\\ud800");
  EXPECT_EQ(surrogate.status().code(), StatusCode::kUnsupported);
  EXPECT_EQ(surrogate.status().message(), "UNICODE string with a surrogate");
  EXPECT_EQ(DecodeRawUnicodeEscape("\\udfff").status().code(), StatusCode::kUnsupported);
  EXPECT_TRUE(DecodeRawUnicodeEscape("\\ud7ff\\ue000").ok());
}

TEST(TextCodecs, Latin1) {
  EXPECT_EQ(*EncodeLatin1("abc"), "abc");
  EXPECT_EQ(*EncodeLatin1(Bytes({0xC2, 0x80, 0xC3, 0xBF})), Bytes({0x80, 0xFF}));
  EXPECT_EQ(*EncodeLatin1(""), "");
  // U+0100 and beyond, and a truncated sequence, are not latin-1.
  for (const std::string& bad :
       {Bytes({0xC4, 0x80}), Bytes({0xE2, 0x82, 0xAC}), Bytes({0xC3}), Bytes({0x80})}) {
    Result<std::string> r = EncodeLatin1(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().message(), "text has a character beyond latin-1");
  }
}

TEST(TextCodecs, FloatText) {
  EXPECT_EQ(*ParseFloatText("1.5"), 1.5);
  EXPECT_EQ(*ParseFloatText("-2e3"), -2000.0);
  EXPECT_TRUE(std::isinf(*ParseFloatText("inf")));
  EXPECT_TRUE(std::isnan(*ParseFloatText("nan")));
  for (const char* bad : {"", "1.5x", " 1", "1 ", "x"}) {
    EXPECT_FALSE(ParseFloatText(bad).has_value()) << bad;
  }
}

TEST(TextCodecs, TwosComplementTrimAndNegate) {
  const std::vector<uint8_t> one_padded = Le({0x01, 0x00, 0x00});
  EXPECT_EQ(TrimTwosComplement(one_padded).size(), 1u);
  const std::vector<uint8_t> minus_one = Le({0xFF, 0xFF});
  EXPECT_EQ(TrimTwosComplement(minus_one).size(), 1u);
  // 0x80 needs its 0x00 byte to stay positive; -128 does not need 0xFF.
  const std::vector<uint8_t> plus_128 = Le({0x80, 0x00});
  EXPECT_EQ(TrimTwosComplement(plus_128).size(), 2u);
  const std::vector<uint8_t> minus_128 = Le({0x80, 0xFF});
  EXPECT_EQ(TrimTwosComplement(minus_128).size(), 1u);
  EXPECT_TRUE(TrimTwosComplement({}).empty());
  std::vector<uint8_t> v = Le({0x01, 0x00});
  NegateTwosComplement(&v);
  EXPECT_EQ(v, Le({0xFF, 0xFF}));
  NegateTwosComplement(&v);
  EXPECT_EQ(v, Le({0x01, 0x00}));
}

TEST(TextCodecs, DecimalToTwosComplement) {
  EXPECT_EQ(*DecimalToTwosComplement("0"), Le({0x00}));
  EXPECT_EQ(*DecimalToTwosComplement("+255"), Le({0xFF, 0x00}));
  EXPECT_EQ(*DecimalToTwosComplement("-1"), Le({0xFF}));
  EXPECT_EQ(*DecimalToTwosComplement("-129"), Le({0x7F, 0xFF}));
  // The legacy torch magic number, 0x1950a86a20f9469cfc6c.
  EXPECT_EQ(*DecimalToTwosComplement("119547037146038801333356"),
            Le({0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}));
  // kMaxDecimalDigits digits are read, one more is refused.
  EXPECT_TRUE(DecimalToTwosComplement(std::string(kMaxDecimalDigits, '9')).ok());
  EXPECT_EQ(DecimalToTwosComplement(std::string(kMaxDecimalDigits + 1, '9')).status().message(),
            "'" + std::string(40, '9') + "...' is not a decimal integer");
}

TEST(TextCodecs, DecimalErrors) {
  for (const char* bad : {"", "-", "+", "1.0", "0x10", " 1", "1 ", "--1"}) {
    Result<std::vector<uint8_t>> r = DecimalToTwosComplement(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kMalformed);
    EXPECT_EQ(r.status().message(), "'" + Printable(bad, 40) + "' is not a decimal integer");
  }
  EXPECT_EQ(DecimalToTwosComplement("007").status().message(), "'007' has leading zeros");
  EXPECT_EQ(DecimalToTwosComplement("-01").status().message(), "'-01' has leading zeros");
  // All zeros are one zero to Python's int() in pickles' INT.
  EXPECT_EQ(*DecimalToTwosComplement("000"), Le({0x00}));
}

TEST(TextCodecs, DecimalRoundTrip) {
  for (const char* text : {"0", "1", "-1", "127", "128", "-128", "-129", "255", "256",
                           "9223372036854775807", "-9223372036854775808",
                           "18446744073709551616", "-340282366920938463463374607431768211457",
                           "119547037146038801333356"}) {
    Result<std::vector<uint8_t>> le = DecimalToTwosComplement(text);
    ASSERT_TRUE(le.ok()) << text;
    EXPECT_EQ(TwosComplementToDecimal(ByteView(le->data(), le->size())), text);
  }
  EXPECT_EQ(TwosComplementToDecimal({}), "0");
}

}  // namespace
}  // namespace safemodel::loader::pickle
