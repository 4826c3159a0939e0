// The C++ reader API of issue 13 (safemodel/reader.h): typed views with
// their dtype, alignment and bool checks, element counts, DLPack tensors
// (fields, lifetime beyond the Model), and the C interface
// (safemodel/c_api.h) run by a program compiled as C, plus torch and NumPy
// taking a tensor through DLPack without a copy.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "proto/writer.h"
#include "safemodel/c_api.h"
#include "safemodel/reader.h"
#include "tests/testing/model_writer.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

using Spec = ModelSpec;

// A .safemodel whose tensor i holds bytes (j * 3 + i) & 0xff, or j % 2 for
// bool; the source listed the tensors in reverse (c_api_test checks it).
void WriteModel(const std::string& path, std::vector<Spec> specs) {
  for (size_t i = 0; i < specs.size(); ++i) specs[i].source_index = specs.size() - 1 - i;
  WriteModelFile(path, specs, "npz", [&](size_t i, uint64_t size) {
    std::string bytes(size, '\0');
    for (size_t j = 0; j < bytes.size(); ++j) {
      bytes[j] = static_cast<char>(specs[i].dtype == DType::kBool ? j % 2 : (j * 3 + i) & 0xff);
    }
    return bytes;
  });
}

const std::vector<Spec> kSpecs = {{"a_f32", DType::kF32, {2, 3}, "", {}},
                                  {"b_bf16", DType::kBF16, {4}, "", {}},
                                  {"c_bool", DType::kBool, {5}, "", {}},
                                  {"d_i64", DType::kI64, {}, "", {}},
                                  {"e_empty", DType::kF64, {0, 7}, "", {}}};

TEST(ReaderApi, TypedViewsCheckTheDtypeAndCountElements) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), kSpecs);
  auto m = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const TensorInfo& a = *m->Find("a_f32");
  EXPECT_EQ(a.element_count(), 6u);
  EXPECT_EQ(m->Find("d_i64")->element_count(), 1u) << "a scalar has one element";
  EXPECT_EQ(m->Find("e_empty")->element_count(), 0u);
  auto floats = m->As<float>(a);
  ASSERT_TRUE(floats.ok()) << floats.status().ToString();
  ASSERT_EQ(floats->size(), 6u);
  EXPECT_EQ(static_cast<const void*>(floats->data()), static_cast<const void*>(m->Data(a).data()))
      << "zero copy";
  float first;
  std::memcpy(&first, m->Data(a).data(), 4);
  EXPECT_EQ((*floats)[0], first);
  auto wrong = m->As<double>(a);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.status().message().find("is f32, not f64"), std::string::npos);
  EXPECT_FALSE(m->As<int32_t>(a).ok()) << "same size, other dtype: no reinterpretation";
  auto bits = m->AsBits<uint16_t>(*m->Find("b_bf16"));
  ASSERT_TRUE(bits.ok()) << bits.status().ToString();
  EXPECT_EQ(bits->size(), 4u);
  EXPECT_FALSE(m->AsBits<uint32_t>(*m->Find("b_bf16")).ok()) << "the element size must match";
  auto bools = m->As<bool>(*m->Find("c_bool"));
  ASSERT_TRUE(bools.ok()) << bools.status().ToString();
  EXPECT_EQ((*bools)[1], true);
  auto empty = m->As<double>(*m->Find("e_empty"));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ReaderApi, TypedViewsRefuseMisalignedBuffersAndNonBoolBytes) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), kSpecs);
  const std::string file = ReadFile(dir.File("m.safemodel"));
  // The image one byte past an aligned address: every tensor is misaligned.
  std::vector<std::max_align_t> storage(file.size() / sizeof(std::max_align_t) + 2);
  auto* base = reinterpret_cast<char*>(storage.data()) + 1;
  std::memcpy(base, file.data(), file.size());
  auto m = Model::FromBuffer(std::as_bytes(std::span<const char>(base, file.size())));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto f = m->As<float>(*m->Find("a_f32"));
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("not aligned to 4 bytes"), std::string::npos);
  EXPECT_TRUE(m->As<uint8_t>(*m->Find("c_bool")).ok() == false) << "bool is not u8";
  // A bool byte of 2 (the digest would catch it too): not a C++ bool.
  auto ok = Model::FromBuffer(std::as_bytes(std::span<const char>(base, file.size())));
  const TensorInfo& c = *ok->Find("c_bool");
  base[c.offset + 3] = 2;
  auto bad = Model::FromBuffer(std::as_bytes(std::span<const char>(base, file.size())));
  ASSERT_TRUE(bad.ok());
  auto bools = bad->As<bool>(*bad->Find("c_bool"));
  ASSERT_FALSE(bools.ok());
  EXPECT_EQ(bools.status().code(), StatusCode::kMalformed);
}

TEST(ReaderApi, DLPackTensorsDescribeTheMappingAndOutliveTheModel) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), kSpecs);
  SmDLManagedTensor* t = nullptr;
  SmDLManagedTensorVersioned* v = nullptr;
  std::string expected;
  {
    auto m = Model::Open(dir.File("m.safemodel"));
    ASSERT_TRUE(m.ok());
    const TensorInfo& a = *m->Find("a_f32");
    auto r = m->ToDLPack(a);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    t = *r;
    EXPECT_EQ(t->dl_tensor.data, static_cast<const void*>(m->Data(a).data())) << "zero copy";
    auto rv = m->ToDLPackVersioned(*m->Find("b_bf16"));
    ASSERT_TRUE(rv.ok());
    v = *rv;
    auto d = m->Data(a);
    expected.assign(reinterpret_cast<const char*>(d.data()), d.size());
    TensorInfo stranger = a;
    EXPECT_FALSE(m->ToDLPack(stranger).ok()) << "only this model's TensorInfo";
  }
  // The Model is gone; the mapping lives on until the deleters run.
  EXPECT_EQ(t->dl_tensor.device.device_type, SM_DL_CPU);
  EXPECT_EQ(t->dl_tensor.device.device_id, 0);
  EXPECT_EQ(t->dl_tensor.ndim, 2);
  EXPECT_EQ(t->dl_tensor.shape[0], 2);
  EXPECT_EQ(t->dl_tensor.shape[1], 3);
  EXPECT_EQ(t->dl_tensor.strides, nullptr);
  EXPECT_EQ(t->dl_tensor.byte_offset, 0u);
  EXPECT_EQ(t->dl_tensor.dtype.code, SM_DL_FLOAT);
  EXPECT_EQ(t->dl_tensor.dtype.bits, 32);
  EXPECT_EQ(t->dl_tensor.dtype.lanes, 1);
  EXPECT_EQ(std::string(static_cast<const char*>(t->dl_tensor.data), 24), expected);
  EXPECT_EQ(v->version.major, 1u);
  EXPECT_EQ(v->flags & SM_DL_FLAG_READ_ONLY, SM_DL_FLAG_READ_ONLY);
  EXPECT_EQ(v->dl_tensor.dtype.code, SM_DL_BFLOAT);
  EXPECT_EQ(v->dl_tensor.dtype.bits, 16);
  t->deleter(t);
  v->deleter(v);
}

TEST(ReaderApi, TheCInterfaceWorksFromC) {
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), kSpecs);
  std::string out;
  EXPECT_EQ(RunCommand(BinDir() + "/c_api_test " + dir.File("m.safemodel"), &out), 0) << out;
  EXPECT_NE(out.find("c_api_test: ok"), std::string::npos) << out;
}

TEST(ReaderApi, TorchAndNumpyTakeATensorThroughDLPack) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "an AddressSanitizer libsafemodel.so cannot be loaded into an uninstrumented python3";
#endif
  if (!PythonHas({"torch", "numpy"})) GTEST_SKIP() << "needs /usr/bin/python3 with torch, numpy";
  TempDir dir;
  WriteModel(dir.File("m.safemodel"), kSpecs);
  std::string out;
  EXPECT_EQ(RunPython(std::string(SAFEMODEL_SOURCE_DIR) + "/tests/proto/dlpack_from_python.py",
                      {SAFEMODEL_SHARED_LIBRARY, dir.File("m.safemodel")}, &out),
            0)
      << out;
  EXPECT_NE(out.find("dlpack: ok"), std::string::npos) << out;
}

}  // namespace
}  // namespace safemodel::testing
