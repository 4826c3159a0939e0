// safetensors input: every rule of loader/safetensors (each refusal with
// exit code 3 and a message naming the rule), the layouts the format allows
// (padding, empty tensors, scalars, any key order), detection beside the
// pickle guesses, and bit-exact tensors through the sandboxed pipeline.
#include "loader/safetensors/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "safemodel/reader.h"
#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

// 8-byte little-endian length, header, buffer.
std::string Image(const std::string& header, const std::string& buffer, uint64_t length) {
  std::string out(8, '\0');
  for (size_t i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + header + buffer;
}
std::string Image(const std::string& header, const std::string& buffer) {
  return Image(header, buffer, header.size());
}

std::string Bytes(size_t n, uint8_t seed = 1) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 37 + seed) & 0xff);
  return s;
}

InProcessResult Parse(const std::string& header, const std::string& buffer) {
  return ParseInProcess(Image(header, buffer));
}

TEST(Safetensors, DetectsTheLayoutNotTheName) {
  EXPECT_TRUE(loader::LooksLikeSafetensors(AsBytes(Image("{}", ""))));
  EXPECT_FALSE(loader::LooksLikeSafetensors(AsBytes(Image(" {}", ""))));
  // A length of 2^32 or more is not a safetensors length prefix.
  EXPECT_FALSE(loader::LooksLikeSafetensors(AsBytes(Image("{}", "", 1ull << 32))));
  EXPECT_FALSE(loader::LooksLikeSafetensors(AsBytes(std::string("12345678"))));
}

TEST(Safetensors, EveryDtypeIsReadBitExact) {
  const std::pair<const char*, DType> cases[] = {
      {"BOOL", DType::kBool},     {"U8", DType::kU8},
      {"I8", DType::kI8},         {"U16", DType::kU16},
      {"I16", DType::kI16},       {"U32", DType::kU32},
      {"I32", DType::kI32},       {"U64", DType::kU64},
      {"I64", DType::kI64},       {"F16", DType::kF16},
      {"BF16", DType::kBF16},     {"F32", DType::kF32},
      {"F64", DType::kF64},       {"C64", DType::kC64},
      {"F8_E4M3", DType::kF8E4M3FN}, {"F8_E5M2", DType::kF8E5M2},
      {"F8_E4M3FNUZ", DType::kF8E4M3FNUZ}, {"F8_E5M2FNUZ", DType::kF8E5M2FNUZ},
      {"F8_E8M0", DType::kF8E8M0FNU}};
  for (const auto& [name, dtype] : cases) {
    const uint64_t n = 6 * DTypeSize(dtype);
    std::string data = Bytes(n);
    if (dtype == DType::kBool) data = std::string("\x01\x00\x01\x01\x00\x00", 6);
    auto r = Parse(std::string("{\"t\":{\"dtype\":\"") + name +
                       "\",\"shape\":[2,3],\"data_offsets\":[0," + std::to_string(n) + "]}}",
                   data);
    ASSERT_TRUE(r.status.ok()) << name << ": " << r.status.ToString();
    EXPECT_EQ(r.source_format, "safetensors");
    ASSERT_EQ(r.tensors.count("t"), 1u);
    EXPECT_EQ(r.tensors["t"].dtype, dtype) << name;
    EXPECT_EQ(r.tensors["t"].shape, (std::vector<uint64_t>{2, 3}));
    EXPECT_EQ(r.tensors["t"].bytes, data) << name;
  }
}

TEST(Safetensors, AcceptsPaddingEmptyTensorsScalarsAndAnyKeyOrder) {
  // Keys listed out of offset order, a scalar, two empty tensors at one
  // offset, and the header padded with spaces as the reference writer does.
  const std::string header =
      "{\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]},"
      "\"e1\":{\"shape\":[0,4],\"data_offsets\":[8,8],\"dtype\":\"F64\"},"
      "\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\xc3\xa9\"},"
      "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"e0\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}      ";
  const std::string data = Bytes(12);
  auto r = Parse(header, data);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.tensors.size(), 4u);
  EXPECT_EQ(r.tensors["a"].bytes, data.substr(0, 8));
  EXPECT_EQ(r.tensors["b"].bytes, data.substr(8, 4));
  EXPECT_TRUE(r.tensors["b"].shape.empty());
  EXPECT_EQ(r.tensors["e1"].bytes, "");
  EXPECT_EQ(r.tensors["e1"].shape, (std::vector<uint64_t>{0, 4}));
  const Value* meta = r.metadata.Find(std::string(loader::kSafetensorsMetadataKey));
  ASSERT_NE(meta, nullptr);
  ASSERT_NE(meta->Find("note"), nullptr);
  EXPECT_EQ(meta->Find("note")->string_value(), "caf\xc3\xa9");
  EXPECT_EQ(meta->Find("format")->string_value(), "pt");
}

TEST(Safetensors, AnEmptyHeaderIsAModelWithoutTensors) {
  auto r = Parse("{}      ", "");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_TRUE(r.tensors.empty());
}

struct Malformed {
  const char* rule;
  std::string image;
  const char* message_part;
};

void PrintTo(const Malformed& m, std::ostream* os) { *os << m.rule; }

const std::string kT = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

std::vector<Malformed> MalformedCases() {
  const std::string d8 = Bytes(8);
  auto one = [&](const std::string& entry, const std::string& buf) {
    return Image("{" + entry + "}", buf);
  };
  return {
      {"header_over_cap", Image("{}", "", kMaxSafetensorsHeaderBytes + 1),
       "over 100000000 bytes"},
      {"header_past_end", Image("{}", "", 64), "runs past the end"},
      {"header_too_short", Image("{", "", 1), "too short"},
      {"leading_space", Image(" {" + kT + "}", d8), "unrecognised input format"},
      {"leading_brace_elsewhere", Image("[" + kT + "]", d8), "unrecognised input format"},
      {"not_json", Image("{\"t\":}", ""), "not valid JSON"},
      {"invalid_utf8_key", Image("{\"\xff\":{}}", ""), "not valid JSON"},
      {"trailing_garbage", Image("{}x", ""), "not valid JSON"},
      {"nan_literal", one("\"t\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,8]}", d8),
       "not valid JSON"},
      {"duplicate_tensor", one(kT + "," + kT, d8), "appears twice"},
      {"duplicate_metadata_key", one("\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}", ""),
       "appears twice"},
      {"duplicate_metadata", one("\"__metadata__\":{},\"__metadata__\":{}", ""), "appears twice"},
      {"duplicate_field",
       one("\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", d8),
       "field 'dtype' twice"},
      {"unknown_field",
       one("\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}", d8),
       "unknown field 'x'"},
      {"missing_field", one("\"t\":{\"dtype\":\"F32\",\"shape\":[2]}", ""),
       "lacks the field data_offsets"},
      {"metadata_not_string", one("\"__metadata__\":{\"a\":1}", ""), "values must be strings"},
      {"metadata_not_object", one("\"__metadata__\":\"x\"", ""), "must be an object"},
      {"entry_not_object", one("\"t\":[1]", ""), "must be an object"},
      {"dtype_not_string", one("\"t\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}", d8),
       "dtype must be a string"},
      {"nested_shape", one("\"t\":{\"dtype\":\"F32\",\"shape\":[[2]],\"data_offsets\":[0,8]}", d8),
       "shape must be an array"},
      {"negative_dim", one("\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}", d8),
       "negative number"},
      {"float_dim", one("\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}", d8),
       "not an integer"},
      {"three_offsets",
       one("\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}", d8),
       "more than two offsets"},
      {"one_offset", one("\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}", d8),
       "[begin, end]"},
      {"unknown_dtype", one("\"t\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}", d8),
       "unknown dtype 'F128'"},
      {"sub_byte_dtype", one("\"t\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}", "x"),
       "sub-byte"},
      {"lowercase_dtype", one("\"t\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}", d8),
       "unknown dtype"},
      {"size_mismatch", one("\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}", d8),
       "make 12 bytes"},
      {"shape_overflow",
       one("\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}",
           d8),
       "tensor 't'"},
      {"end_before_begin",
       one("\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,0]}", d8),
       "end is before the begin"},
      {"gap_at_start", one("\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}", d8),
       "has a gap"},
      {"gap_between",
       one("\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}",
           d8),
       "has a gap"},
      {"overlap",
       one("\"a\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[0,6]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}",
           d8),
       "tensors overlap"},
      {"aliased_bytes",
       one("\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}",
           d8),
       "tensors overlap"},
      {"trailing_bytes", one(kT, d8 + "junk"), "4 trailing bytes"},
      {"truncated_buffer", one(kT, d8.substr(0, 5)), "truncated"},
      {"buffer_without_tensors", Image("{}", "xx"), "2 trailing bytes"},
  };
}

class SafetensorsMalformed : public ::testing::TestWithParam<Malformed> {};

TEST_P(SafetensorsMalformed, IsRefusedAsMalformedNamingTheRule) {
  auto r = ParseInProcess(GetParam().image);
  ASSERT_FALSE(r.status.ok()) << GetParam().rule;
  EXPECT_EQ(ExitCodeFor(r.status.code()), kExitMalformed) << r.status.ToString();
  EXPECT_NE(r.status.message().find(GetParam().message_part), std::string::npos)
      << r.status.ToString();
}

INSTANTIATE_TEST_SUITE_P(Rules, SafetensorsMalformed, ::testing::ValuesIn(MalformedCases()),
                         [](const ::testing::TestParamInfo<Malformed>& p) {
                           return std::string(p.param.rule);
                         });

// The same rules through the sandboxed pipeline: exit 3 and no output.
TEST(SafetensorsPipeline, EveryMalformedRuleExitsThreeWithoutOutput) {
  TempDir dir;
  for (const Malformed& m : MalformedCases()) {
    WriteFile(dir.File("in.safetensors"), m.image);
    ConvertReport r = Convert(dir.File("in.safetensors"), dir.File("out.safemodel"));
    EXPECT_EQ(ExitCodeFor(r.status.code()), kExitMalformed) << m.rule << ": " << r.status.ToString();
    EXPECT_FALSE(Exists(dir.File("out.safemodel"))) << m.rule;
  }
}

TEST(SafetensorsPipeline, ConvertsBitExactWithMetadataAsData) {
  TempDir dir;
  const std::string data = Bytes(8 + 12 + 6);
  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\"},"
      "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"x\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[8,20]},"
      "\"y\":{\"dtype\":\"F8_E5M2\",\"shape\":[6],\"data_offsets\":[20,26]}}  ";
  WriteFile(dir.File("in.safetensors"), Image(header, data));
  ConvertReport r = Convert(dir.File("in.safetensors"), dir.File("out.safemodel"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "safetensors");
  auto model = Model::Open(dir.File("out.safemodel"));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ASSERT_TRUE(model->Verify().ok());
  auto bytes = [&](const char* name) {
    auto d = model->Data(*model->Find(name));
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
  };
  EXPECT_EQ(bytes("w"), data.substr(0, 8));
  EXPECT_EQ(bytes("x"), data.substr(8, 12));
  EXPECT_EQ(bytes("y"), data.substr(20, 6));
  EXPECT_EQ(model->Find("x")->dtype, DType::kBF16);
  const Value* meta = model->metadata().Find(std::string(loader::kSafetensorsMetadataKey));
  ASSERT_NE(meta, nullptr);
  EXPECT_EQ(meta->Find("format")->string_value(), "pt");
}

// A length prefix whose bytes are also pickle opcodes: GLOBAL ('c') reads
// the module line "os" from the prefix and a name line that runs through the
// header; pickle.load would look up os.<name> and call it (REDUCE). The file
// is refused for that reading (exit 1), not converted as safetensors.
TEST(SafetensorsPipeline, APickleHiddenInTheLengthPrefixIsRefused) {
  const std::string header = "{\"__metadata__\":{\"a\":\"b\"}}";
  const std::string image =
      std::string("cos\n\0\0\0\0", 8) + header + "\n(S'echo pwned'\ntR.";
  ASSERT_TRUE(loader::LooksLikeSafetensors(AsBytes(image)));
  TempDir dir;
  WriteFile(dir.File("in.safetensors"), image);
  ConvertReport r = Convert(dir.File("in.safetensors"), dir.File("out.safemodel"));
  EXPECT_EQ(ExitCodeFor(r.status.code()), kExitRefused) << r.status.ToString();
  bool named = false;
  for (const Finding& f : r.findings) {
    named = named || (f.rule == "format.polyglot" &&
                      f.message.find("a safetensors file") != std::string::npos);
  }
  EXPECT_TRUE(named) << "the refusal names both readings";
  EXPECT_FALSE(Exists(dir.File("out.safemodel")));
}

// The parser itself (as the fuzz target calls it) refuses a header that
// does not start with '{'; detection never hands it one.
TEST(Safetensors, TheParserAloneChecksTheLeadingBrace) {
  const std::string image = Image(" {}", "");
  loader::ParseContext ctx(loader::ParseOptions{});
  loader::ParsedModel out;
  Status s = loader::NewSafetensorsParser()->Parse(AsBytes(image), ctx, &out);
  EXPECT_EQ(s.code(), StatusCode::kMalformed);
  EXPECT_NE(s.message().find("does not start with '{' (byte 8 is 0x20)"), std::string::npos)
      << s.ToString();
}

}  // namespace
}  // namespace safemodel::testing
