// EscapeForDisplay: what a terminal may be shown of model-controlled text.
#include "safemodel/display.h"

#include <random>
#include <string>

#include <gtest/gtest.h>

#include "proto/base/byte_reader.h"

namespace safemodel {
namespace {

TEST(EscapeForDisplay, KeepsPrintableAsciiAndVisibleUtf8) {
  EXPECT_EQ(EscapeForDisplay(""), "");
  EXPECT_EQ(EscapeForDisplay("dense_1/kernel:0"), "dense_1/kernel:0");
  EXPECT_EQ(EscapeForDisplay("r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"),
            "r\xc3\xa9sum\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
  // U+00A0 (no-break space) and U+00FF are visible Latin-1, not C1.
  EXPECT_EQ(EscapeForDisplay("\xc2\xa0\xc3\xbf"), "\xc2\xa0\xc3\xbf");
}

TEST(EscapeForDisplay, TerminalControlSequencesBecomeText) {
  // Retitle the terminal, clear it, and print a fake verdict.
  EXPECT_EQ(EscapeForDisplay("a\x1b]0;pwned\x07\x1b[2Jverify: OK"),
            "a\\x1b]0;pwned\\x07\\x1b[2Jverify: OK");
  EXPECT_EQ(EscapeForDisplay(std::string("nul\0byte", 8)), "nul\\x00byte");
  EXPECT_EQ(EscapeForDisplay("tab\there\nnext\rline"), "tab\\x09here\\x0anext\\x0dline");
  EXPECT_EQ(EscapeForDisplay("del\x7f"), "del\\x7f");
  // C1 CSI, as UTF-8 (U+009B) and as a raw byte (an 8-bit terminal's CSI).
  EXPECT_EQ(EscapeForDisplay("\xc2\x9b" "2J"), "\\u009b2J");
  EXPECT_EQ(EscapeForDisplay("\x9b" "2J"), "\\x9b2J");
  EXPECT_EQ(EscapeForDisplay("\xc2\x80\xc2\x9f"), "\\u0080\\u009f");
}

TEST(EscapeForDisplay, BidiAndInvisibleCharactersAreShown) {
  struct Case {
    const char* utf8;
    const char* escaped;
  };
  const Case kCases[] = {
      {"\xe2\x80\xaa", "\\u202a"},  // LRE
      {"\xe2\x80\xab", "\\u202b"},  // RLE
      {"\xe2\x80\xac", "\\u202c"},  // PDF
      {"\xe2\x80\xad", "\\u202d"},  // LRO
      {"\xe2\x80\xae", "\\u202e"},  // RLO
      {"\xe2\x81\xa6", "\\u2066"},  // LRI
      {"\xe2\x81\xa7", "\\u2067"},  // RLI
      {"\xe2\x81\xa8", "\\u2068"},  // FSI
      {"\xe2\x81\xa9", "\\u2069"},  // PDI
      {"\xe2\x80\x8e", "\\u200e"},  // LRM
      {"\xe2\x80\x8f", "\\u200f"},  // RLM
      {"\xd8\x9c", "\\u061c"},      // ALM
      {"\xe2\x80\x8b", "\\u200b"},  // zero-width space
      {"\xe2\x80\x8d", "\\u200d"},  // zero-width joiner
      {"\xe2\x80\xa8", "\\u2028"},  // line separator
      {"\xe2\x80\xa9", "\\u2029"},  // paragraph separator
      {"\xe2\x81\xa0", "\\u2060"},  // word joiner
      {"\xef\xbb\xbf", "\\ufeff"},  // BOM
      {"\xc2\xad", "\\u00ad"},      // soft hyphen
      {"\xf3\xa0\x81\x81", "\\U000e0041"},  // TAG LATIN CAPITAL LETTER A
  };
  for (const Case& c : kCases) {
    EXPECT_EQ(EscapeForDisplay(std::string("x") + c.utf8 + "y"), std::string("x") + c.escaped + "y")
        << c.escaped;
  }
  // The Trojan Source shape: an override that would show "sure" reversed.
  EXPECT_EQ(EscapeForDisplay("ok\xe2\x80\xae" "erus\xe2\x80\xac"), "ok\\u202eerus\\u202c");
}

TEST(EscapeForDisplay, InvalidUtf8IsEscapedBytewise) {
  EXPECT_EQ(EscapeForDisplay("\xc0\xaf"), "\\xc0\\xaf");                // overlong '/'
  EXPECT_EQ(EscapeForDisplay("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");       // overlong
  EXPECT_EQ(EscapeForDisplay("\xed\xa0\x80"), "\\xed\\xa0\\x80");       // surrogate
  EXPECT_EQ(EscapeForDisplay("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // > U+10FFFF
  EXPECT_EQ(EscapeForDisplay("\xe6\x97"), "\\xe6\\x97");                // truncated
  EXPECT_EQ(EscapeForDisplay("\xff\xfe"), "\\xff\\xfe");
  // A truncated sequence does not swallow the next character.
  EXPECT_EQ(EscapeForDisplay("\xe6\x97" "a"), "\\xe6\\x97a");
}

TEST(EscapeForDisplay, BackslashIsEscapedSoThatEscapesAreUnambiguous) {
  EXPECT_EQ(EscapeForDisplay("C:\\x1b"), "C:\\\\x1b");
  EXPECT_NE(EscapeForDisplay("\\x1b"), EscapeForDisplay("\x1b"));
}

// Whatever the input, the output is valid UTF-8 with no control byte, no C1
// character and none of the reordering characters. Checked over random
// strings biased towards the dangerous ranges.
TEST(EscapeForDisplay, OutputIsAlwaysSafe) {
  std::mt19937 rng(12345);
  const std::string pieces[] = {"\x1b", "\x07", "\x9b", "\xc2\x9b", "\xe2\x80\xae", "\xe2\x81\xa6",
                                "\xc3\xa9", "\xf0\x9f\x98\x80", "\xe2\x80", "\xf3\xa0\x81", "\\",
                                "a", "\n", "\x7f", "\xed\xa0\x80", "\xef\xbb\xbf"};
  for (int round = 0; round < 20000; ++round) {
    std::string in;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      if (rng() % 3 == 0) {
        in.push_back(static_cast<char>(rng() & 0xFF));
      } else {
        in += pieces[rng() % std::size(pieces)];
      }
    }
    const std::string out = EscapeForDisplay(in);
    ASSERT_TRUE(IsValidUtf8(out)) << Printable(in);
    for (size_t i = 0; i < out.size(); ++i) {
      const auto c = static_cast<uint8_t>(out[i]);
      ASSERT_TRUE(c >= 0x20 && c != 0x7F) << Printable(in);
      if (c == 0xC2 && i + 1 < out.size()) {
        ASSERT_FALSE(static_cast<uint8_t>(out[i + 1]) < 0xA0) << "C1 in output: " << Printable(in);
      }
      if (c == 0xE2 && i + 2 < out.size()) {
        const auto b1 = static_cast<uint8_t>(out[i + 1]), b2 = static_cast<uint8_t>(out[i + 2]);
        ASSERT_FALSE(b1 == 0x80 && b2 >= 0xAA && b2 <= 0xAE) << Printable(in);
        ASSERT_FALSE(b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9) << Printable(in);
      }
      ASSERT_FALSE(c == 0xF3 && i + 1 < out.size() && static_cast<uint8_t>(out[i + 1]) == 0xA0)
          << "tag character in output: " << Printable(in);
    }
  }
}

}  // namespace
}  // namespace safemodel
