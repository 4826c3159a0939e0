// Marshal data read as data: the layouts of every Python version Keras files
// come from, the names a Lambda uses, and malformed or hostile input.
#include "loader/keras_h5/marshal_scan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace safemodel::loader {
namespace {

// Python 3.11 (Keras 3.4.1 __lambda__, corpus pongleg/ModelScan_HL):
// lambda x: exec(payload).
constexpr char kPy311[] =
    "4wEAAAAAAAAAAAAAAAMAAAADAAAA8y4AAACXAHQBAAAAAAAAAAAAAHQCAAAAAAAAAAAAAKYBAACr\n"
    "AQAAAAAAAAAAcAF8AFMAqQFOqQLaBGV4ZWPaB3BheWxvYWQpAdoBeHMBAAAAIPo7L1VzZXJzL2Rj\n"
    "YXNzbGUvRG93bmxvYWRzL1BPQy1Nb2RlbHMvZ2VuZXJhdGVfdGVzdF9tb2RlbHMucHn6CDxsYW1i\n"
    "ZGE+cggAAAANAAAAcxEAAACAAJ00pQeZPZw90BstqEGAAPMAAAAA\n";
// Python 3.8-3.10 (tf.keras 2.15, corpus MaximChuikov/kosenko): a function
// 'exploit' running os.system('cp /app/flag.txt ...').
constexpr char kPy38[] =
    "4wEAAAAAAAAAAAAAAAIAAAADAAAAQwAAAHMWAAAAZAFkAGwAfQF8AaABZAKhAQEAfABTACkDTukA\n"
    "AAAA+i1jcCAvYXBwL2ZsYWcudHh0IC9hcHAvYmFja2VuZC9tb2RlbHMvZmxhZy50eHQpAtoCb3Pa\n"
    "BnN5c3RlbSkC2gF4cgMAAACpAHIGAAAA+h48aXB5dGhvbi1pbnB1dC0yLTVlNzI0YTE0MjIyNz7a\n"
    "B2V4cGxvaXQDAAAAcwYAAAAIAQoBBAE=\n";

// Keras 1 stored the marshal bytes as raw_unicode_escape text; this is that
// text as UTF-8 (corpus jeremy-shannon, Python 3.5: lambda x: x/127.5 - 1.0).
std::string Keras1Text() {
  const unsigned char latin1[] = {
      0xe3, 1,    0,    0,    0,   0,    0,    0,   0,   1,   0,   0,    0,    2,   0,
      0,    0,    'C',  0,    0,   0,    's',  12,  0,   0,   0,   '|',  0,    0,   'd',
      1,    0,    0x1b, 'd',  2,   0,    0x18, 'S', ')', 3,   'N', 0xe7, 0,    0,   0,
      0,    0,    0xe0, '_',  '@', 0xe7, 0,    0,   0,   0,   0,   0,    0xf0, '?', 0xa9,
      0,    ')',  1,    0xda, 1,   'x',  'r',  3,   0,   0,   0,   'r',  3,    0,   0,
      0,    0xfa, 8,    'm',  'o', 'd',  'e',  'l', '.', 'p', 'y', 0xda, 8,    '<', 'l',
      'a',  'm',  'b',  'd',  'a', '>',  0x11, 1,   0,   0,   's', 0,    0,    0,   0};
  std::string utf8;
  for (unsigned char c : latin1) {
    if (c < 0x80) {
      utf8 += static_cast<char>(c);
    } else {
      utf8 += static_cast<char>(0xc0 | (c >> 6));
      utf8 += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return utf8;
}

void U32(std::string* s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void Str(std::string* s, char type, const std::string& v) {
  s->push_back(type);
  U32(s, static_cast<uint32_t>(v.size()));
  *s += v;
}

// A Python 2 code object: lambda x: os.system(x), with interned strings
// and a string reference ('R') for the repeated name.
std::string Python2Code() {
  std::string s = "c";
  for (uint32_t v : {1u, 1u, 2u, 0x43u}) U32(&s, v);          // argcount nlocals stacksize flags
  Str(&s, 's', std::string("t\0\0j\1\0|\0\0\x83\1\0S", 13));  // code
  s += "(";
  U32(&s, 1);
  s += "N";  // consts
  s += "(";
  U32(&s, 2);
  Str(&s, 't', "os");
  Str(&s, 't', "system");  // names
  s += "(";
  U32(&s, 2);
  Str(&s, 't', "x");
  s += "R";
  U32(&s, 0);  // varnames: "x" and a reference to interned string 0 ("os")
  s += "(";
  U32(&s, 0);  // freevars
  s += "(";
  U32(&s, 0);  // cellvars
  Str(&s, 's', "model.py");
  Str(&s, 't', "<lambda>");
  U32(&s, 7);        // firstlineno
  Str(&s, 's', "");  // lnotab
  return s;
}

TEST(MarshalScan, ReadsPython311Bytecode) {
  MarshalScan scan;
  DecodeKerasCode(kPy311, &scan);
  ASSERT_TRUE(scan.is_code) << scan.error;
  EXPECT_EQ(scan.python, "Python 3.11+");
  EXPECT_EQ(scan.names, (std::vector<std::string>{"exec", "payload"}));
  EXPECT_EQ(scan.function_name, "<lambda>");
}

TEST(MarshalScan, ReadsPython38Bytecode) {
  MarshalScan scan;
  DecodeKerasCode(kPy38, &scan);
  ASSERT_TRUE(scan.is_code) << scan.error;
  EXPECT_EQ(scan.python, "Python 3.8-3.10");
  EXPECT_EQ(scan.names, (std::vector<std::string>{"os", "system"}));
  EXPECT_EQ(scan.function_name, "exploit");
}

TEST(MarshalScan, ReadsKeras1RawUnicodeEscapeText) {
  MarshalScan scan;
  std::string bytes = DecodeKerasCode(Keras1Text(), &scan);
  ASSERT_TRUE(scan.is_code) << scan.error;
  EXPECT_EQ(scan.python, "Python 3.0-3.7");
  EXPECT_TRUE(scan.names.empty());
  EXPECT_EQ(scan.file_name, "model.py");
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]), 0xe3);
}

TEST(MarshalScan, ReadsPython2InternedStringsAndReferences) {
  std::string code = Python2Code();
  MarshalScan scan = ScanMarshalCode(AsBytes(code));
  ASSERT_TRUE(scan.is_code) << scan.error;
  EXPECT_EQ(scan.python, "Python 2");
  EXPECT_EQ(scan.names, (std::vector<std::string>{"os", "system"}));
  EXPECT_EQ(scan.function_name, "<lambda>");
}

TEST(MarshalScan, RejectsTruncatedAndTrailingData) {
  std::string code = Python2Code();
  for (size_t cut : {size_t{1}, size_t{5}, code.size() / 2}) {
    MarshalScan scan =
        ScanMarshalCode(AsBytes(std::string_view(code).substr(0, code.size() - cut)));
    EXPECT_FALSE(scan.is_code) << cut;
  }
  MarshalScan trailing = ScanMarshalCode(AsBytes(code + "N"));
  EXPECT_FALSE(trailing.is_code);
}

TEST(MarshalScan, RejectsNonCodeDeepNestingAndImpossibleLengths) {
  EXPECT_FALSE(ScanMarshalCode(AsBytes(std::string("N"))).is_code);
  EXPECT_FALSE(ScanMarshalCode(AsBytes(std::string())).is_code);
  // A code object whose consts nest 10,000 tuples deep: stopped by the depth
  // cap, without recursion.
  std::string deep = "c";
  for (int i = 0; i < 5; ++i) U32(&deep, 0);
  Str(&deep, 's', "");
  for (int i = 0; i < 10000; ++i) deep += std::string("(\1\0\0\0", 5);
  MarshalScan scan = ScanMarshalCode(AsBytes(deep));
  EXPECT_FALSE(scan.is_code);
  // A tuple claiming two billion items in a few bytes.
  std::string huge = "c";
  for (int i = 0; i < 5; ++i) U32(&huge, 0);
  Str(&huge, 's', "");
  huge += "(";
  U32(&huge, 0x7fffffff);
  EXPECT_FALSE(ScanMarshalCode(AsBytes(huge)).is_code);
}

TEST(MarshalScan, SourceTextIsNotCode) {
  MarshalScan scan;
  DecodeKerasCode("lambda x: eval('print(\"security test\")')", &scan);
  EXPECT_FALSE(scan.is_code);
  EXPECT_FALSE(scan.error.empty());
}

}  // namespace
}  // namespace safemodel::loader
