// Issue 16, HDF5 side: every tensor exactly as h5py (with Keras's reading of
// name lists) returns it, never a byte of the worker's memory. Fixtures:
// tests/fixtures/keras_h5/fidelity/ (make_fixtures.py says what each holds).
#include <gtest/gtest.h>
#include <lzma.h>

#include <map>
#include <string>
#include <vector>

#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"
#include <nlohmann/json.hpp>

#include "safemodel/reader.h"

#include "loader/keras_h5/lzf_filter.h"
#include "proto/digest.h"

namespace safemodel::testing {
namespace {

const std::string kExpectedScript =
    std::string(SAFEMODEL_SOURCE_DIR) + "/tests/loader/keras_h5/expected_tensors.py";

std::string FidelityFixture(const std::string& name) {
  return Fixture("keras_h5/fidelity/" + name);
}

// A committed .xz fixture, unpacked into `dir`.
std::string Unpack(const std::string& name, const TempDir& dir) {
  const std::string packed = ReadFile(FidelityFixture(name + ".xz"));
  std::string plain(4 << 20, '\0');  // the fixtures are ~200-400 KB
  uint64_t memlimit = 256 << 20;     // preset 9 decodes with a 64 MiB dictionary
  size_t in_pos = 0, out_pos = 0;
  lzma_ret r = lzma_stream_buffer_decode(
      &memlimit, 0, nullptr, reinterpret_cast<const uint8_t*>(packed.data()), &in_pos,
      packed.size(), reinterpret_cast<uint8_t*>(plain.data()), &out_pos, plain.size());
  EXPECT_EQ(r, LZMA_OK) << name;
  plain.resize(out_pos);
  const std::string out = dir.File(name);
  WriteFile(out, plain);
  return out;
}

struct Tensors {
  ConvertReport report;
  std::map<std::string, std::pair<std::string, std::string>> by_name;  // dtype, bytes
};

// Converts through the real sandboxed worker and reads every tensor back.
Tensors ConvertAndRead(const std::string& path, const TempDir& dir, const std::string& out_name) {
  Tensors t;
  t.report = Convert(path, dir.File(out_name));
  if (!t.report.status.ok()) return t;
  auto model = Model::Open(dir.File(out_name));
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return t;
  for (const TensorInfo& info : model->tensors()) {
    auto data = model->Data(info);
    t.by_name[info.name] = {std::string(DTypeName(info.dtype)),
                            std::string(reinterpret_cast<const char*>(data.data()), data.size())};
  }
  return t;
}

// What h5py returns (expected_tensors.py); null JSON when h5py is missing.
nlohmann::json H5pyTensors(const std::string& path) {
  if (!PythonHas({"h5py", "numpy"})) return nullptr;
  std::string out;
  EXPECT_EQ(RunPython(kExpectedScript, {path}, &out), 0) << out;
  return nlohmann::json::parse(out, nullptr, false);
}

std::string Sha256Hex(const std::string& bytes) {
  return ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())));
}

void ExpectEqualsH5py(const Tensors& got, const nlohmann::json& expected, const std::string& what) {
  ASSERT_TRUE(expected.is_object()) << what;
  EXPECT_EQ(got.by_name.size(), expected.size()) << what;
  for (const auto& [name, value] : got.by_name) {
    ASSERT_TRUE(expected.contains(name)) << what << ": unexpected tensor " << name;
    EXPECT_EQ(value.first, expected[name]["dtype"].get<std::string>()) << what << " " << name;
    EXPECT_EQ(Sha256Hex(value.second), expected[name]["sha256"].get<std::string>())
        << what << " " << name;
  }
}

bool HasFinding(const std::vector<Finding>& findings, const std::string& rule) {
  for (const Finding& f : findings) {
    if (f.rule == rule) return true;
  }
  return false;
}

// ---- 1. Worker memory never reaches a tensor --------------------------------

TEST(H5Fidelity, Issue16UnallocatedDatasetIsZeros) {
  TempDir dir;
  // Each target is preceded by a freed buffer of its size full of 0xA5.
  Tensors t = ConvertAndRead(Unpack("fill_modes_pattern.h5", dir), dir, "out.safemodel");
  ASSERT_TRUE(t.report.status.ok()) << t.report.status.ToString();
  for (const char* name : {"contiguous_late_never_nofv/w", "contiguous_incr_never_fv/w",
                           "contiguous_late_ifset_nofv/w", "contiguous_late_never_nofv_64k/w"}) {
    ASSERT_TRUE(t.by_name.count(name)) << name;
    const std::string& bytes = t.by_name[name].second;
    EXPECT_EQ(bytes, std::string(bytes.size(), '\0')) << name << ": never allocated, h5py: zeros";
  }
  // Chunked with chunks 0, 2, 3 never written: zeros there, 1..64 in chunk 1.
  const std::string& chunked = t.by_name["chunked_incr_never_nofv/w"].second;
  ASSERT_EQ(chunked.size(), 256u * 4);
  for (size_t i = 0; i < 256; ++i) {
    float v;
    std::memcpy(&v, chunked.data() + 4 * i, 4);
    EXPECT_EQ(v, (i >= 64 && i < 128) ? static_cast<float>(i - 63) : 0.0f) << "element " << i;
  }
}

TEST(H5Fidelity, Issue16FillModesMatchH5pyInAnyWorkerState) {
  TempDir dir;
  const std::string plain = Unpack("fill_modes.h5", dir);
  const std::string pattern = Unpack("fill_modes_pattern.h5", dir);
  Tensors a = ConvertAndRead(plain, dir, "a.safemodel");
  Tensors b = ConvertAndRead(plain, dir, "b.safemodel");
  Tensors c = ConvertAndRead(pattern, dir, "c.safemodel");
  ASSERT_TRUE(a.report.status.ok()) << a.report.status.ToString();
  ASSERT_TRUE(b.report.status.ok()) << b.report.status.ToString();
  ASSERT_TRUE(c.report.status.ok()) << c.report.status.ToString();
  // Every mode is there (4 layouts x 3 x 3 x 2 minus what libhdf5 forbids
  // for compact storage, plus 5 extra dtypes and shapes).
  EXPECT_GE(a.by_name.size(), 50u);
  EXPECT_EQ(ReadFile(dir.File("a.safemodel")), ReadFile(dir.File("b.safemodel")));
  for (const auto& [name, value] : a.by_name) {
    ASSERT_TRUE(c.by_name.count(name)) << name;
    EXPECT_EQ(value, c.by_name[name]) << name << " differs after a pattern-filled heap";
  }
  nlohmann::json expected = H5pyTensors(plain);
  if (expected.is_null())
    GTEST_SKIP() << "no h5py: identical in both states, not checked against h5py";
  ExpectEqualsH5py(a, expected, "fill_modes.h5");
  ExpectEqualsH5py(c, H5pyTensors(pattern), "fill_modes_pattern.h5");
}

// An HDF5 1.8-format group with 100 links is stored densely; libhdf5 sorts
// its link table with glibc's qsort, whose first sort of over 1 KiB asked
// for sysinfo (forbidden in the sandbox: exit 5) until PrepareLibraries warmed it
// up.
TEST(H5Fidelity, Issue16DenseLinkGroupConverts) {
  TempDir dir;
  Tensors t = ConvertAndRead(FidelityFixture("dense_links.h5"), dir, "out.safemodel");
  ASSERT_TRUE(t.report.status.ok()) << t.report.status.ToString();
  EXPECT_EQ(t.by_name.size(), 100u);
  nlohmann::json expected = H5pyTensors(FidelityFixture("dense_links.h5"));
  if (expected.is_null()) GTEST_SKIP() << "no h5py";
  ExpectEqualsH5py(t, expected, "dense_links.h5");
}

// ---- 4. LZF ----------------------------------------------------------------------

TEST(H5Fidelity, Issue16LzfConvertsBitExactWithoutPlugin) {
  TempDir dir;
  Tensors t = ConvertAndRead(FidelityFixture("lzf.h5"), dir, "out.safemodel");
  ASSERT_TRUE(t.report.status.ok()) << t.report.status.ToString();
  EXPECT_FALSE(HasFinding(t.report.findings, "hdf5.filter_plugin"));
  EXPECT_EQ(t.by_name.size(), 7u);
  nlohmann::json expected = H5pyTensors(FidelityFixture("lzf.h5"));
  if (expected.is_null()) GTEST_SKIP() << "no h5py";
  ExpectEqualsH5py(t, expected, "lzf.h5");
}

TEST(H5Fidelity, Issue16LzfBadChunksAreMalformedNotPlugins) {
  struct Case {
    const char* file;
    StatusCode code;
    const char* message;
  };
  for (const Case& c :
       {Case{"lzf_backref.h5", StatusCode::kMalformed, "before the start of the chunk"},
        Case{"lzf_short.h5", StatusCode::kMalformed, "decodes to 40 bytes, not its 41"},
        Case{"lzf_long.h5", StatusCode::kMalformed, "decodes to more than its 39 bytes"},
        Case{"lzf_cd_values.h5", StatusCode::kUnsupported,
             "chunk size parameter 80 is not the chunk's 40 bytes"}}) {
    TempDir dir;
    ConvertReport r = Convert(FidelityFixture(c.file), dir.File("out.safemodel"));
    EXPECT_EQ(r.status.code(), c.code) << c.file << ": " << r.status.ToString();
    EXPECT_EQ(ExitCodeFor(r.status.code()), 3) << c.file;
    EXPECT_NE(r.status.message().find(c.message), std::string::npos)
        << c.file << ": " << r.status.message();
    EXPECT_FALSE(HasFinding(r.findings, "hdf5.filter_plugin")) << c.file;
    EXPECT_EQ(dir.List(), std::vector<std::string>{}) << c.file;
  }
}

std::string Lzf(std::initializer_list<int> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

Status Decode(const std::string& in, std::string* out, size_t size) {
  out->assign(size, '\x55');
  return loader::h5::LzfDecompress(ByteView(reinterpret_cast<const uint8_t*>(in.data()), in.size()),
                                   reinterpret_cast<uint8_t*>(out->data()), size);
}

TEST(H5Fidelity, Issue16LzfDecoderIsBounded) {
  std::string out;
  // Literal "ab", then 3 + 2 bytes at distance 2 (overlapping): "ababab".
  EXPECT_TRUE(Decode(Lzf({1, 'a', 'b', (2 << 5) | 0, 1}), &out, 6).ok());
  EXPECT_EQ(out, "ababab");
  // Extended length: 7 + 250 + 2 = 259 copies of the previous byte.
  ASSERT_TRUE(Decode(Lzf({0, 'z', (7 << 5), 250, 0}), &out, 260).ok());
  EXPECT_EQ(out, std::string(260, 'z'));
  EXPECT_TRUE(Decode("", &out, 0).ok());
  // Cut short: literal run, length byte, distance byte.
  EXPECT_FALSE(Decode(Lzf({3, 'a'}), &out, 4).ok());
  EXPECT_FALSE(Decode(Lzf({0, 'a', (7 << 5)}), &out, 100).ok());
  EXPECT_FALSE(Decode(Lzf({0, 'a', (1 << 5)}), &out, 100).ok());
  // Before the output, one past the output, too much, too little.
  EXPECT_FALSE(Decode(Lzf({0, 'a', (1 << 5), 1}), &out, 4).ok());
  EXPECT_FALSE(Decode(Lzf({1, 'a', 'b'}), &out, 1).ok());
  EXPECT_FALSE(Decode(Lzf({0, 'a', (1 << 5), 0}), &out, 3).ok());
  EXPECT_FALSE(Decode(Lzf({0, 'a'}), &out, 2).ok());
  EXPECT_FALSE(Decode("", &out, 1).ok());
}

// ---- 3. and 6. Name lists as Keras iterates them -----------------------------------

TEST(H5Fidelity, Issue16ScalarNameListIsRefused) {
  struct Case {
    std::string path;
    const char* message;
  };
  for (const Case& c :
       {Case{FidelityFixture("scalar_layer_names.h5"),
             "attribute 'layer_names' of '/' is a scalar string, not a list of names: Keras would "
             "iterate it character by character"},
        Case{FidelityFixture("scalar_weight_names.h5"),
             "attribute 'weight_names' of '/d' is a scalar string"},
        Case{FidelityFixture("null_layer_names.h5"),
             "attribute 'layer_names' of '/' is a empty dataspace"},
        Case{Fixture("keras_h5/strings_scalar.h5"), "is a scalar string"}}) {
    TempDir dir;
    ConvertReport r = Convert(c.path, dir.File("out.safemodel"));
    EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << c.path << ": " << r.status.ToString();
    EXPECT_NE(r.status.message().find(c.message), std::string::npos)
        << c.path << ": " << r.status.message();
    EXPECT_EQ(dir.List(), std::vector<std::string>{});
  }
}

TEST(H5Fidelity, Issue16WeightNameWithEmbeddedNulIsRefused) {
  TempDir dir;
  ConvertReport r = Convert(FidelityFixture("weight_name_nul.h5"), dir.File("out.safemodel"));
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
  EXPECT_NE(r.status.message().find("('k\\x00junk') holds a NUL before other bytes"),
            std::string::npos)
      << r.status.message();
  // NULLTERM: h5py's conversion ends the string at the NUL, as libhdf5 does:
  // the name is 'k' for both, and the file converts as h5py reads it.
  Tensors t = ConvertAndRead(FidelityFixture("weight_name_nul_nullterm.h5"), dir, "t.safemodel");
  ASSERT_TRUE(t.report.status.ok()) << t.report.status.ToString();
  EXPECT_EQ(t.by_name.size(), 1u);
  EXPECT_TRUE(t.by_name.count("k"));
  nlohmann::json expected = H5pyTensors(FidelityFixture("weight_name_nul_nullterm.h5"));
  if (expected.is_null()) GTEST_SKIP() << "no h5py";
  ExpectEqualsH5py(t, expected, "weight_name_nul_nullterm.h5");
}

// ---- 6. The dtype h5py returns ------------------------------------------------------

TEST(H5Fidelity, Issue16Bf16LayoutFloatIsFloat32AsH5pyReturnsIt) {
  TempDir dir;
  Tensors t = ConvertAndRead(FidelityFixture("bf16_layout.h5"), dir, "out.safemodel");
  ASSERT_TRUE(t.report.status.ok()) << t.report.status.ToString();
  ASSERT_EQ(t.by_name.size(), 4u);
  for (const auto& [name, value] : t.by_name) EXPECT_EQ(value.first, "f32") << name;
  EXPECT_TRUE(HasFinding(t.report.findings, "hdf5.bfloat16_layout"));
  // 1.0 and -2.0 widen exactly; the quiet NaN 0x7FC1 comes back as libhdf5
  // converts it (0x7FFFFFFF), which is what h5py returns.
  const std::string& le = t.by_name["le_contiguous"].second;
  uint32_t bits[3];
  std::memcpy(bits, le.data(), sizeof bits);
  EXPECT_EQ(bits[0], 0x3F800000u);
  EXPECT_EQ(bits[1], 0xC0000000u);
  EXPECT_EQ(bits[2], 0x7FFFFFFFu);
  EXPECT_EQ(t.by_name["le_contiguous"], t.by_name["be_chunked"]);
  // Keras 3's own bfloat16 (opaque + dtype="bfloat16") stays bfloat16.
  Tensors k3 = ConvertAndRead(Fixture("keras_h5/dtypes.h5"), dir, "k3.safemodel");
  ASSERT_TRUE(k3.report.status.ok()) << k3.report.status.ToString();
  bool saw_bf16 = false;
  for (const auto& [name, value] : k3.by_name) saw_bf16 |= value.first == "bf16";
  EXPECT_TRUE(saw_bf16);
  // The same float layout marked dtype="bfloat16": two readings, refused.
  ConvertReport marked = Convert(FidelityFixture("bf16_layout_marked.h5"), dir.File("m.safemodel"));
  EXPECT_EQ(marked.status.code(), StatusCode::kUnsupported) << marked.status.ToString();
  EXPECT_NE(marked.status.message().find("h5py returns it as float32 and Keras 3 as bfloat16"),
            std::string::npos)
      << marked.status.message();
  nlohmann::json expected = H5pyTensors(FidelityFixture("bf16_layout.h5"));
  if (expected.is_null()) GTEST_SKIP() << "no h5py";
  ExpectEqualsH5py(t, expected, "bf16_layout.h5");
}

}  // namespace
}  // namespace safemodel::testing
