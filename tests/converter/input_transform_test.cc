// The parent's execution of a TENSOR_XFORM (converter/input_transform.h):
// for every layout it takes, the bytes it produces from its descriptor of
// the input are the bytes the worker's own walk (loader::StreamElements)
// produces from a map of the same input, byte for byte: Fortran order of
// rank 2 to 4, every element size and swap unit, non-compact, negative and
// zero strides, several bands with a short last one, and big-endian C order
// in several read pieces. Then the end to end: Fortran-order and big-endian
// .npy files converted through the real worker hold the C-order
// little-endian values.
#include "converter/input_transform.h"

#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "converter/protocol/tensor_xform.h"
#include "loader/model.h"
#include "loader/stream.h"
#include "safemodel/convert.h"
#include "safemodel/reader.h"
#include "tests/converter/protocol/xform_testing.h"
#include "tests/testing/test_util.h"

namespace safemodel {
namespace {

class Collect final : public loader::ChunkSink {
 public:
  Status Write(ByteView chunk) override {
    if (chunk.size() > loader::kChunkBytes) return Status::Internal("a chunk over kChunkBytes");
    bytes.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    return Status::Ok();
  }
  std::string bytes;
};

DType DTypeOfSize(uint32_t size) {
  switch (size) {
    case 1: return DType::kU8;
    case 2: return DType::kF16;
    case 4: return DType::kF32;
    case 8: return DType::kF64;
    default: return DType::kC128;
  }
}

// 40 MiB of pseudo-random bytes, in a memory file and in memory.
class InputTransformTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kInputBytes = 40ull << 20;
  void SetUp() override {
    fd_ = memfd_create("input", MFD_CLOEXEC);
    ASSERT_GE(fd_, 0);
    input_.resize(kInputBytes);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < input_.size(); i += 8) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      std::memcpy(input_.data() + i, &s, 8);
    }
    ASSERT_EQ(pwrite(fd_, input_.data(), input_.size(), 0), static_cast<ssize_t>(input_.size()));
  }
  void TearDown() override { close(fd_); }

  // The parent's bytes and the worker's for `x`, which must be accepted.
  void ExpectSameAsTheWorker(const protocol::TensorXform& x, protocol::XformLayout layout) {
    auto plan = protocol::CheckTensorXform(x, kInputBytes);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    EXPECT_EQ(plan->layout, layout);
    const DType dtype = DTypeOfSize(x.elem_size);
    Collect parent;
    Status s = StreamInputTransform(fd_, x, *plan, dtype, buffers_, parent);
    ASSERT_TRUE(s.ok()) << s.ToString();
    loader::Elements e;
    e.view = ByteView(input_.data() + x.region_offset, x.region_length);
    e.offset = x.first;
    e.swap_unit = x.swap_unit;
    e.strides.assign(x.strides, x.strides + x.rank);
    const std::vector<uint64_t> shape(x.shape, x.shape + x.rank);
    Collect worker;
    s = loader::StreamElements(e, dtype, shape, "t", worker);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(parent.bytes.size(), plan->bytes);
    EXPECT_TRUE(parent.bytes == worker.bytes) << "the parent's transform differs from the worker's";
  }

  int fd_ = -1;
  std::vector<uint8_t> input_;
  XformBuffers buffers_;  // reused from case to case, as the parent does
};

using testing::FortranAt;

TEST_F(InputTransformTest, FortranOrderOfEveryElementSizeIsTheWorkersTranspose) {
  using protocol::XformLayout;
  ExpectSameAsTheWorker(FortranAt(128, 4, 4, {300, 70}), XformLayout::kFirstDimContiguous);
  ExpectSameAsTheWorker(FortranAt(3, 4, 0, {4096, 33}), XformLayout::kFirstDimContiguous);  // unaligned
  ExpectSameAsTheWorker(FortranAt(64, 8, 8, {1024, 3, 5}), XformLayout::kFirstDimContiguous);
  ExpectSameAsTheWorker(FortranAt(64, 8, 4, {512, 12}), XformLayout::kFirstDimContiguous);  // complex64
  ExpectSameAsTheWorker(FortranAt(1, 1, 0, {8192, 7}), XformLayout::kFirstDimContiguous);
  ExpectSameAsTheWorker(FortranAt(64, 2, 2, {4096, 2, 3, 2}), XformLayout::kFirstDimContiguous);
  ExpectSameAsTheWorker(FortranAt(64, 16, 8, {300, 20}), XformLayout::kFirstDimContiguous);  // complex128
  ExpectSameAsTheWorker(FortranAt(64, 4, 4, {33, 4096}), XformLayout::kFirstDimContiguous);  // one read
  ExpectSameAsTheWorker(FortranAt(64, 4, 4, {70000, 1, 3}), XformLayout::kFirstDimContiguous);
}

// 24 MiB in bands of 16 MiB: two bands, the second shorter.
TEST_F(InputTransformTest, SeveralBandsWithAShortLastOneAreTheWorkersTranspose) {
  const protocol::TensorXform x = FortranAt(4096, 4, 4, {uint64_t{1} << 21, 3});
  auto plan = protocol::CheckTensorXform(x, kInputBytes);
  ASSERT_TRUE(plan.ok());
  ASSERT_LT(plan->band_rows, x.shape[0]);
  ASSERT_NE(x.shape[0] % plan->band_rows, 0u);
  ExpectSameAsTheWorker(x, protocol::XformLayout::kFirstDimContiguous);
}

TEST_F(InputTransformTest, NonCompactNegativeAndZeroStridesAreTheWorkersTranspose) {
  using protocol::XformLayout;
  protocol::TensorXform x = FortranAt(0, 4, 4, {2048, 30});
  x.strides[1] = 4096;  // every other column of a (4096, 60) array: no run is adjacent
  x.region_length = 4096 * 60 * 4;
  ExpectSameAsTheWorker(x, XformLayout::kFirstDimContiguous);
  x.first = 4096 * 59;  // the columns from the last one back
  x.strides[1] = -4096;
  ExpectSameAsTheWorker(x, XformLayout::kFirstDimContiguous);
  x = FortranAt(0, 8, 0, {4096, 5});
  x.strides[1] = 0;  // torch's expand: one column five times
  ExpectSameAsTheWorker(x, XformLayout::kFirstDimContiguous);
  x = FortranAt(0, 4, 0, {1024, 6, 7});
  x.strides[1] = 1024 * 7;  // dimensions 1 and 2 swapped as well
  x.strides[2] = 1024;
  ExpectSameAsTheWorker(x, XformLayout::kFirstDimContiguous);
}

TEST_F(InputTransformTest, BigEndianCOrderInSeveralPiecesIsTheWorkersSwap) {
  using protocol::XformLayout;
  protocol::TensorXform x;
  x.region_offset = 3;
  x.region_length = 4 * 70001;
  x.elem_size = 4;
  x.swap_unit = 4;
  x.rank = 1;
  x.shape[0] = 70001;
  x.strides[0] = 1;
  ExpectSameAsTheWorker(x, XformLayout::kContiguous);
  x.elem_size = 8;  // complex64 of (1000, 300), from element 7 of its region
  x.region_length = 8 * 300007;
  x.first = 7;
  x.rank = 2;
  x.shape[0] = 1000;
  x.shape[1] = 300;
  x.strides[0] = 300;
  x.strides[1] = 1;
  ExpectSameAsTheWorker(x, XformLayout::kContiguous);
}

TEST_F(InputTransformTest, AnInputThatShrankIsAnIoErrorNamingTheByte) {
  const protocol::TensorXform x = FortranAt(1 << 20, 4, 4, {4096, 64});
  auto plan = protocol::CheckTensorXform(x, kInputBytes);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(ftruncate(fd_, (1 << 20) + 4096 * 4 * 10), 0);  // ten columns left
  Collect sink;
  XformBuffers buffers;
  Status s = StreamInputTransform(fd_, x, *plan, DType::kF32, buffers, sink);
  EXPECT_EQ(s.code(), StatusCode::kIoError) << s.ToString();
  EXPECT_NE(s.message().find("shrank"), std::string::npos) << s.ToString();
  EXPECT_TRUE(sink.bytes.empty());
}

// --- End to end, through the real worker ------------------------------------


// A (rows, cols) int32 array with element (r, c) = r * cols + c, stored
// big-endian in Fortran order or in C order: the output is the C-order
// little-endian sequence 0, 1, 2, ...
TEST(InputTransformEndToEnd, FortranAndBigEndianNpyConvertToCOrderLittleEndian) {
  testing::TempDir dir;
  const uint32_t rows = 4099, cols = 33;  // 541 KB: past the pipe's threshold, not multiples of blocks
  for (bool fortran : {true, false}) {
    SCOPED_TRACE(fortran ? "Fortran order" : "C order");
    std::string data(static_cast<size_t>(rows) * cols * 4, '\0');
    for (uint32_t r = 0; r < rows; ++r) {
      for (uint32_t c = 0; c < cols; ++c) {
        const uint32_t v = r * cols + c;
        const size_t at = 4 * (fortran ? static_cast<size_t>(c) * rows + r : static_cast<size_t>(r) * cols + c);
        for (uint32_t b = 0; b < 4; ++b) data[at + b] = static_cast<char>(v >> (8 * (3 - b)));
      }
    }
    testing::WriteFile(dir.File("a.npy"), testing::NpyImage(">i4", fortran, std::to_string(rows) + ", " + std::to_string(cols), data));
    ConvertReport r = testing::Convert(dir.File("a.npy"), dir.File("a.safemodel"));
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    auto m = Model::Open(dir.File("a.safemodel"));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_TRUE(m->Verify().ok());
    ASSERT_EQ(m->tensors().size(), 1u);
    auto bytes = m->Data(m->tensors()[0]);
    ASSERT_EQ(bytes.size(), data.size());
    for (uint32_t i = 0; i < rows * cols; ++i) {
      uint32_t v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      ASSERT_EQ(v, i) << "element " << i;
    }
    std::remove(dir.File("a.safemodel").c_str());
  }
}

}  // namespace
}  // namespace safemodel
