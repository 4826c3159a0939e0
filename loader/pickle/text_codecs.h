// The text and number codecs of the pickle protocols, as pure functions:
// protocol 0's quoted STRING literals (codecs.escape_decode) and UNICODE
// lines (raw-unicode-escape), latin-1 (what Python 2 protocols encode bytes
// as), decimal INT/LONG/FLOAT text, and little-endian two's complement
// integers (LONG1/LONG4). They know nothing of streams, stacks or objects;
// errors carry no location (the machine adds "<where>: ... at <where> byte
// N").
//
// Worst case: O(n) in the text, except the decimal conversions, which are
// O(d^2) in the number of digits d <= kMaxDecimalDigits (a few thousand
// steps at most).
//
// Trust: every input is untrusted; nothing is read out of bounds.
#ifndef SAFEMODEL_LOADER_PICKLE_TEXT_CODECS_H_
#define SAFEMODEL_LOADER_PICKLE_TEXT_CODECS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/status.h"

namespace safemodel::loader::pickle {

// Decimal digits of a protocol-0 INT/LONG: enough for the widest integer the
// machine accepts (64 bytes, 155 digits).
inline constexpr size_t kMaxDecimalDigits = 160;

// The value of an ASCII hex digit, or -1.
int HexValue(uint8_t c);

// Appends code point `cp` (not a surrogate, <= 0x10FFFF) as UTF-8.
void AppendUtf8(std::string* out, uint32_t cp);

// STRING's argument: a quoted Python 2 str literal (the quotes included),
// escape-decoded as codecs.escape_decode does: \\ \' \" \a \b \f \n \r \t \v,
// \xHH, up to three octal digits, backslash-newline dropped, and any other
// escape kept as written. Malformed: unquoted, a lone trailing backslash, a
// bad \x escape.
Result<std::string> DecodeStringLiteral(std::string_view quoted);

// UNICODE's argument, raw-unicode-escape decoded to UTF-8: bytes are latin-1
// except \uXXXX and \UXXXXXXXX. Malformed for a truncated or invalid escape
// or one beyond U+10FFFF; Unsupported for a surrogate (UTF-8 cannot hold it).
Result<std::string> DecodeRawUnicodeEscape(std::string_view line);

// UTF-8 text whose characters are all below U+0100, as latin-1 bytes
// (codecs.encode(text, 'latin-1')). Malformed beyond latin-1.
Result<std::string> EncodeLatin1(std::string_view utf8);

// FLOAT's argument: the whole text must be one number in std::from_chars'
// general format (digits, '.', exponent, "inf", "nan"); nullopt otherwise.
std::optional<double> ParseFloatText(std::string_view text);

// Negates a little-endian two's complement integer in place (invert, add 1).
void NegateTwosComplement(std::vector<uint8_t>* bytes);

// Drops redundant sign-extension bytes of a little-endian two's complement
// integer, so that equal values have equal bytes (a non-empty integer keeps
// at least one byte).
ByteView TrimTwosComplement(ByteView le);

// INT/LONG text (an optional sign, 1..kMaxDecimalDigits digits, no leading
// zeros) as a trimmed little-endian two's complement integer. Malformed
// otherwise ("'<text>' is not a decimal integer", "... has leading zeros").
Result<std::vector<uint8_t>> DecimalToTwosComplement(std::string_view text);

// Decimal text of a little-endian two's complement integer ("0" if empty).
std::string TwosComplementToDecimal(ByteView le);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_TEXT_CODECS_H_
