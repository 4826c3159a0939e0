// .npy/.npz: header grammar, dtypes, byte and memory order, refusals, and
// bit-exact fidelity against numpy through the real sandboxed pipeline.
#include "loader/numpy/npy.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"
#include <nlohmann/json.hpp>

#include "safemodel/reader.h"

#include "proto/digest.h"

namespace safemodel::testing {
namespace {

// A v1.0 .npy image with the given header dict text and data.
std::string Npy(const std::string& dict, const std::string& data, uint8_t major = 1) {
  std::string header = dict;
  size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  uint32_t len = static_cast<uint32_t>(header.size());
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (major != 1) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>(len >> 24);
  }
  return out + header + data;
}

Result<loader::NpyHeader> Header(const std::string& dict) {
  std::string image = Npy(dict, "");
  return loader::ParseNpyHeader(AsBytes(image), "test");
}

TEST(NpyHeader, ParsesTheDictNumpyWrites) {
  auto h = Header("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->dtype, DType::kF32);
  EXPECT_EQ(h->shape, (std::vector<uint64_t>{3, 4}));
  EXPECT_FALSE(h->fortran_order);
  EXPECT_EQ(h->data_offset % 64, 0u);
  EXPECT_EQ(h->data_bytes, 48u);
}

TEST(NpyHeader, AcceptsScalarsOneTuplesPython2LongsAndAnyKeyOrder) {
  auto scalar = Header("{'descr': '<f8', 'fortran_order': False, 'shape': (), }");
  ASSERT_TRUE(scalar.ok());
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->data_bytes, 8u);
  auto one = Header("{\"shape\": (5,), \"fortran_order\": True, \"descr\": \"|u1\"}");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->shape, (std::vector<uint64_t>{5}));
  auto py2 = Header("{'descr': '>i8', 'fortran_order': False, 'shape': (2L, 3L), }");
  ASSERT_TRUE(py2.ok()) << py2.status().ToString();
  EXPECT_EQ(py2->shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(py2->swap_unit, 8u);
}

TEST(NpyHeader, MapsEveryNumericDtype) {
  const std::pair<const char*, DType> cases[] = {
      {"|b1", DType::kBool}, {"|i1", DType::kI8},   {"|u1", DType::kU8},  {"<i2", DType::kI16},
      {"<u2", DType::kU16},  {"<i4", DType::kI32},  {"<u4", DType::kU32}, {"<i8", DType::kI64},
      {"<u8", DType::kU64},  {"<f2", DType::kF16},  {"<f4", DType::kF32}, {"<f8", DType::kF64},
      {"<c8", DType::kC64},  {"<c16", DType::kC128}};
  for (const auto& [descr, dtype] : cases) {
    auto h = Header(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (1,), }");
    ASSERT_TRUE(h.ok()) << descr << ": " << h.status().ToString();
    EXPECT_EQ(h->dtype, dtype) << descr;
    EXPECT_EQ(h->swap_unit, 0u) << descr;
  }
  auto big_complex = Header("{'descr': '>c8', 'fortran_order': False, 'shape': (1,), }");
  ASSERT_TRUE(big_complex.ok());
  EXPECT_EQ(big_complex->swap_unit, 4u) << "complex swaps each component";
}

TEST(NpyHeader, RejectsAnythingButTheLiteralGrammar) {
  const char* bad[] = {
      "{'descr': '<f4', 'fortran_order': __import__('os'), 'shape': (3,), }",  // code
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1, }",     // extra key
      "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",  // repeated key
      "{'descr': '<f4', 'fortran_order': False}",                                  // missing key
      "{'descr': <f4, 'fortran_order': False, 'shape': (3,), }",                  // unquoted
      "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (3,), }",            // escapes
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }",                 // not a tuple
      "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }",               // negative
      "{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }",               // leading zero
      "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }",                    // not a bool
      "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } x",              // trailing text
      "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",  // overflow
  };
  for (const char* dict : bad) {
    auto h = Header(dict);
    EXPECT_FALSE(h.ok()) << dict;
  }
}

TEST(NpyHeader, RefusesAmbiguousOrUnsupportedDtypes) {
  for (const char* descr : {"=f4", "f4", "|f4", "<V2", "<M8[D]", "<U5", "|S3", "<f16"}) {
    auto h = Header(std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (1,), }");
    EXPECT_FALSE(h.ok()) << descr;
  }
  auto structured = Header("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }");
  ASSERT_FALSE(structured.ok());
  EXPECT_EQ(structured.status().code(), StatusCode::kUnsupported);
  auto object = Header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }");
  ASSERT_TRUE(object.ok());
  EXPECT_TRUE(object->is_object);
}

TEST(NpyHeader, RejectsBadMagicVersionsAndOversizedHeaders) {
  std::string good = Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", "abcd");
  std::string bad_magic = good;
  bad_magic[1] = 'M';
  EXPECT_FALSE(loader::ParseNpyHeader(AsBytes(bad_magic), "t").ok());
  std::string v4 = good;
  v4[6] = 4;
  EXPECT_EQ(loader::ParseNpyHeader(AsBytes(v4), "t").status().code(), StatusCode::kUnsupported);
  std::string huge = "\x93NUMPY\x02";
  huge += '\0';
  huge += std::string("\xff\xff\xff\x7f", 4);
  EXPECT_EQ(loader::ParseNpyHeader(AsBytes(huge), "t").status().code(), StatusCode::kUnsupported);
}

TEST(NpyParse, ConvertsBigEndianAndFortranOrderInProcess) {
  // 2x3 Fortran-order big-endian int16: memory order is column by column.
  std::string data;
  const int16_t col_major[6] = {1, 4, 2, 5, 3, 6};  // element (r, c) = 1 + c + 3r
  for (int16_t v : col_major) {
    data += static_cast<char>((v >> 8) & 0xff);
    data += static_cast<char>(v & 0xff);
  }
  auto r = ParseInProcess(Npy("{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }", data));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  const ParsedTensor& t = r.tensors.at("array");
  EXPECT_EQ(t.dtype, DType::kI16);
  std::string want;
  for (int16_t v = 1; v <= 6; ++v) {
    want += static_cast<char>(v & 0xff);
    want += static_cast<char>(v >> 8);
  }
  EXPECT_EQ(t.bytes, want);
  auto notes = Rules(r.findings, Finding::Severity::kNote);
  EXPECT_EQ(notes, (std::vector<std::string>{"numpy.byte_order", "numpy.fortran_order"}));
}

TEST(NpyParse, RejectsShapesLargerThanTheDataAndTrailingBytes) {
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
  auto short_data = ParseInProcess(Npy(dict, std::string(12, 'x')));
  EXPECT_EQ(short_data.status.code(), StatusCode::kMalformed) << short_data.status.ToString();
  auto trailing = ParseInProcess(Npy(dict, std::string(20, 'x')));
  EXPECT_EQ(trailing.status.code(), StatusCode::kMalformed) << trailing.status.ToString();
  // A shape bomb: 2^62 elements declared in a tiny file.
  auto bomb = ParseInProcess(
      Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,), }", "x"));
  EXPECT_FALSE(bomb.status.ok());
  auto overflow = ParseInProcess(Npy(
      "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", ""));
  EXPECT_EQ(overflow.status.code(), StatusCode::kMalformed) << overflow.status.ToString();
}

// A bool is stored as 0 or 1 (FORMAT.md); numpy keeps whatever byte a file
// holds. Such a byte is refused, also in a strided (Fortran-order) array.
TEST(NpyParse, RejectsBoolBytesOtherThanZeroAndOne) {
  auto ok = ParseInProcess(Npy("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                               std::string("\x01\x00\x01", 3)));
  ASSERT_TRUE(ok.status.ok()) << ok.status.ToString();
  EXPECT_EQ(ok.tensors.at("array").bytes, std::string("\x01\x00\x01", 3));
  auto two = ParseInProcess(Npy("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                std::string("\x01\x00\x02", 3)));
  EXPECT_EQ(two.status.code(), StatusCode::kMalformed) << two.status.ToString();
  EXPECT_NE(two.status.message().find("bool element 2 holds the byte 2"), std::string::npos)
      << two.status.ToString();
  auto fortran = ParseInProcess(Npy("{'descr': '|b1', 'fortran_order': True, 'shape': (2, 2), }",
                                    std::string("\x00\x01\xff\x00", 4)));
  EXPECT_EQ(fortran.status.code(), StatusCode::kMalformed) << fortran.status.ToString();
}

// ---- Issue 16: acceptance no looser than np.load's ---------------------------

// A .npy image whose header text is exactly `chars` characters: `dict`,
// spaces, then '\n' (plus `tail` appended to the dict, e.g. multi-byte text).
std::string NpyOfChars(const std::string& dict, size_t chars, uint8_t major,
                       const std::string& data = "") {
  std::string header = dict;
  size_t have = 0;
  for (char c : header) have += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  header += std::string(chars - have - 1, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  uint32_t len = static_cast<uint32_t>(header.size());
  for (int k = 0; k < (major == 1 ? 2 : 4); ++k) out += static_cast<char>((len >> (8 * k)) & 0xff);
  return out + header + data;
}

// Exit code of np.load on `image` in a throwaway process (-1: no numpy).
int NumpyLoads(const std::string& image, const TempDir& dir) {
  if (!PythonHas({"numpy"})) return -1;
  const std::string path = dir.File("probe.npy");
  WriteFile(path, image);
  return RunCommand("/usr/bin/python3 -c 'import sys, numpy; numpy.load(sys.argv[1])' " + path);
}

TEST(NpyHeader, Issue16ShapeDimensionsMustFitSignedInt64EvenWithAZero) {
  TempDir dir;
  // numpy: "maximum allowed dimension exceeded" / "array is too big".
  for (const char* shape : {"(0, 18446744073709551615)", "(0, 9223372036854775808)",
                            "(0, 2305843009213693952)", "(2305843009213693952, 0, 4)"}) {
    const std::string image =
        Npy(std::string("{'descr': '<f8', 'fortran_order': False, 'shape': ") + shape + ", }", "");
    auto r = ParseInProcess(image);
    EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << shape << ": " << r.status.ToString();
    EXPECT_NE(NumpyLoads(image, dir), 0) << shape << ": numpy loads it";
  }
  // Within int64 (non-zero dimensions times 8 bytes): numpy and we accept.
  const std::string ok =
      Npy("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 1152921504606846975), }", "");
  auto r = ParseInProcess(ok);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tensors.at("array").shape, (std::vector<uint64_t>{0, 1152921504606846975ull}));
  int numpy = NumpyLoads(ok, dir);
  if (numpy >= 0) {
    EXPECT_EQ(numpy, 0);
  }
}

TEST(NpyHeader, Issue16HeaderOverNumpysTenThousandCharactersIsRefused) {
  TempDir dir;
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }";
  for (uint8_t major : {uint8_t{1}, uint8_t{2}, uint8_t{3}}) {
    const std::string at_limit = NpyOfChars(dict, 10000, major, "abcd");
    EXPECT_TRUE(ParseInProcess(at_limit).status.ok()) << "v" << int(major);
    int numpy = NumpyLoads(at_limit, dir);
    if (numpy >= 0) {
      EXPECT_EQ(numpy, 0) << "v" << int(major);
    }
    const std::string over = NpyOfChars(dict, 10001, major, "abcd");
    auto r = ParseInProcess(over);
    EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << "v" << int(major);
    EXPECT_NE(r.status.message().find("numpy's limit of 10000 characters"), std::string::npos)
        << r.status.message();
    EXPECT_NE(NumpyLoads(over, dir), 0) << "v" << int(major) << ": numpy loads it";
  }
  // Version 3.0 counts UTF-8 characters, not bytes: 9,000 three-byte
  // characters (27,000 bytes) are within the limit and reach the grammar.
  std::string wide;
  for (int k = 0; k < 9000; ++k) wide += "\xe2\x82\xac";
  auto grammar = ParseInProcess(
      NpyOfChars("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': '" + wide + "'}",
                 9200, 3, "abcd"));
  EXPECT_EQ(grammar.status.code(), StatusCode::kMalformed) << grammar.status.ToString();
  EXPECT_NE(grammar.status.message().find("unexpected or repeated header key"), std::string::npos)
      << grammar.status.message();
  auto over = ParseInProcess(NpyOfChars(
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': '" + wide + wide + "'}", 18200,
      3, "abcd"));
  EXPECT_EQ(over.status.code(), StatusCode::kUnsupported) << over.status.ToString();
}

TEST(NpyHeader, Issue16Python2LongSuffixOnlyInVersions1And2) {
  TempDir dir;
  const std::string dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (2L, 1L), }";
  for (uint8_t major : {uint8_t{1}, uint8_t{2}, uint8_t{3}}) {
    const std::string image = Npy(dict, "abcd", major);
    auto r = ParseInProcess(image);
    const int numpy = NumpyLoads(image, dir);
    if (major < 3) {
      ASSERT_TRUE(r.status.ok()) << r.status.ToString();
      EXPECT_EQ(r.tensors.at("array").shape, (std::vector<uint64_t>{2, 1}));
      if (numpy >= 0) {
        EXPECT_EQ(numpy, 0) << "v" << int(major);
      }
    } else {
      EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
      EXPECT_NE(r.status.message().find("'L' suffix in a version 3.0 header"), std::string::npos)
          << r.status.message();
      EXPECT_NE(numpy, 0) << "numpy loads a 3.0 header with 2L";
    }
  }
}

// np.load(f)[key] on an archive: the exact member first, then key + ".npy".
std::string NumpyAnswers(const std::string& zip_path, const std::string& key) {
  std::string out;
  RunCommand(
      "/usr/bin/python3 -c 'import sys, numpy; print(numpy.load(sys.argv[1])[sys.argv[2]]"
      ".tolist())' " +
          zip_path + " '" + key + "'",
      &out, false);
  return out;
}

TEST(NpzArchive, Issue16KeyThatTwoMembersAnswerIsMalformed) {
  TempDir dir;
  const std::string one = Npy("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }", "\x01");
  const std::string two =
      Npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", std::string("\x02\x02", 2));
  for (bool shadow_first : {true, false}) {
    std::vector<ZipMember> members = {{"a.npy", one}, {"a.npy.npy", two}};
    if (!shadow_first) std::swap(members[0], members[1]);
    const std::string zip = BuildZip(members);
    auto r = ParseInProcess(zip);
    EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
    EXPECT_NE(r.status.message().find("npz member 'a.npy.npy' would be the array 'a.npy', but "
                                      "np.load answers that key with the member named exactly "
                                      "'a.npy'"),
              std::string::npos)
        << r.status.message();
    if (PythonHas({"numpy"})) {
      WriteFile(dir.File("s.npz"), zip);
      EXPECT_EQ(NumpyAnswers(dir.File("s.npz"), "a.npy"), "[1]\n") << "numpy: exact name wins";
    }
  }
  // Keys that only one member answers are fine: 'a' and 'a.np'.
  auto fine = ParseInProcess(BuildZip({{"a.npy", one}, {"a.np.npy", two}}));
  ASSERT_TRUE(fine.status.ok()) << fine.status.ToString();
  EXPECT_EQ(fine.tensors.size(), 2u);
  EXPECT_EQ(fine.tensors.at("a.np").bytes, std::string("\x02\x02", 2));
}

// Members whose tensors need more than the archive's shared source (a
// Fortran-order array keeps its own shape) beside plain ones: a scalar
// (empty shape), a rank above loader::Shape's inline limit, big-endian and
// deflated members. Each yields its bytes in C order, little-endian.
TEST(NpzArchive, ScalarHighRankFortranAndBigEndianMembersStreamRight) {
  const std::string scalar = Npy("{'descr': '<u2', 'fortran_order': False, 'shape': (), }", "\x01\x02");
  const std::string rank6 = Npy(
      "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2, 1, 3, 1, 2), }", "abcdefghijkl");
  // Fortran order, shape (2, 3): memory holds columns; C order reads rows.
  const std::string fortran = Npy("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }", "adbecf");
  const std::string big = Npy("{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }",
                              std::string("\x01\x02\x03\x04", 4));
  for (bool deflate : {false, true}) {
    SCOPED_TRACE(deflate);
    auto r = ParseInProcess(BuildZip({{"s.npy", scalar, deflate},
                                      {"r6.npy", rank6, deflate},
                                      {"f.npy", fortran, deflate},
                                      {"b.npy", big, deflate}}));
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_TRUE(r.tensors.at("s").shape.empty());
    EXPECT_EQ(r.tensors.at("s").bytes, "\x01\x02");
    EXPECT_EQ(r.tensors.at("r6").shape, (std::vector<uint64_t>{1, 2, 1, 3, 1, 2}));
    EXPECT_EQ(r.tensors.at("r6").bytes, "abcdefghijkl");
    EXPECT_EQ(r.tensors.at("f").shape, (std::vector<uint64_t>{2, 3}));
    EXPECT_EQ(r.tensors.at("f").bytes, "abcdef");
    EXPECT_EQ(r.tensors.at("b").bytes, std::string("\x02\x01\x04\x03", 4));
  }
}

TEST(NpzArchive, Issue16MemberContentNotNameDecides) {
  const std::string arr = Npy("{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }", "\x01");
  // 'w.npy' without the magic: numpy returns its raw bytes.
  auto raw = ParseInProcess(BuildZip({{"a.npy", arr}, {"w.npy", "PK not an array"}}));
  EXPECT_EQ(raw.status.code(), StatusCode::kMalformed) << raw.status.ToString();
  EXPECT_NE(raw.status.message().find("npz member 'w.npy' does not start with the .npy magic: "
                                      "np.load returns its raw bytes"),
            std::string::npos)
      << raw.status.message();
  // 'v.bin' with the magic: numpy returns an array under the key 'v.bin';
  // only archives of *.npy members are read as npz, so this one is refused.
  auto bin = ParseInProcess(BuildZip({{"a.npy", arr}, {"v.bin", arr}}));
  EXPECT_FALSE(bin.status.ok());
  EXPECT_EQ(ExitCodeFor(bin.status.code()), 3) << bin.status.ToString();
}

// ---- Through the sandbox, against numpy -------------------------------------

class NumpyFidelity : public ::testing::TestWithParam<std::string> {};

TEST_P(NumpyFidelity, EveryTensorIsBitExactAgainstNumpy) {
  if (!PythonHas({"numpy"})) GTEST_SKIP() << "needs /usr/bin/python3 with numpy";
  const std::string input = Fixture("numpy/" + GetParam());
  TempDir dir;
  ConvertReport r = Convert(input, dir.File("out.safemodel"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  std::string expected_json;
  ASSERT_EQ(RunPython(std::string(SAFEMODEL_SOURCE_DIR) + "/tests/tools/expected_tensors.py", {input},
                      &expected_json),
            0)
      << expected_json;
  auto expected = nlohmann::json::parse(expected_json);
  auto model = Model::Open(dir.File("out.safemodel"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_EQ(model->tensors().size(), expected.size());
  for (const TensorInfo& t : model->tensors()) {
    ASSERT_TRUE(expected.contains(t.name)) << t.name;
    const auto& e = expected[t.name];
    EXPECT_EQ(DTypeName(t.dtype), e["dtype"].get<std::string>()) << t.name;
    EXPECT_EQ(t.shape, e["shape"].get<std::vector<uint64_t>>()) << t.name;
    auto data = model->Data(t);
    std::string sha = ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size())));
    EXPECT_EQ(sha, e["sha256"].get<std::string>()) << t.name;
  }
  EXPECT_TRUE(model->Verify().ok());
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, NumpyFidelity,
    ::testing::Values("f16.npy", "f32.npy", "f64.npy", "i8.npy", "u8.npy", "i16.npy", "u16.npy",
                      "i32.npy", "u32.npy", "i64.npy", "u64.npy", "bool.npy", "c64.npy", "c128.npy",
                      "big_f32.npy", "big_i64.npy", "big_c64.npy", "fortran_f32.npy",
                      "fortran_big_f64.npy", "scalar.npy", "empty.npy", "v2_header.npy",
                      "v3_header.npy", "stored.npz", "deflated.npz"),
    [](const ::testing::TestParamInfo<std::string>& p) {
      std::string name = p.param;
      for (char& c : name) {
        if (c == '.') c = '_';
      }
      return name;
    });

struct Rejection {
  std::string file;
  int exit_code;
  std::string message_part;
};

void PrintTo(const Rejection& r, std::ostream* os) { *os << r.file; }

class NumpyRejection : public ::testing::TestWithParam<Rejection> {};

TEST_P(NumpyRejection, IsRefusedWithTheRightExitCodeAndNoOutput) {
  TempDir dir;
  ConvertReport r = Convert(Fixture("numpy/" + GetParam().file), dir.File("out.safemodel"));
  EXPECT_EQ(ExitCodeFor(r.status.code()), GetParam().exit_code) << r.status.ToString();
  EXPECT_NE(r.status.message().find(GetParam().message_part), std::string::npos)
      << r.status.ToString();
  EXPECT_TRUE(dir.List().empty()) << "a failed conversion must leave nothing behind";
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, NumpyRejection,
    ::testing::Values(Rejection{"object_malicious.npy", 1, "posix.system"},
                      Rejection{"object_member.npz", 1, "obj.npy"},
                      Rejection{"truncated.npy", 3, "declares"},
                      Rejection{"trailing.npy", 3, "after the array data"},
                      Rejection{"structured.npy", 3, "structured"},
                      Rejection{"datetime.npy", 3, "not supported"},
                      Rejection{"code_in_header.npy", 3, "True or False"},
                      Rejection{"not_npy_member.npz", 3, "notes.txt"},
                      Rejection{"dotdot_member.npz", 3, ".."},
                      Rejection{"duplicate_member.npz", 3, "twice"}),
    [](const ::testing::TestParamInfo<Rejection>& p) {
      std::string name = p.param.file;
      for (char& c : name) {
        if (c == '.') c = '_';
      }
      return name;
    });

}  // namespace
}  // namespace safemodel::testing
