// The parent's reading of TENSOR_REF and TENSOR_XFORM frames
// (converter/worker_stream.cc, converter/protocol/conversion_protocol.h,
// tensor_xform.h): a range of the input, or a transform of one, stands for
// tensor bytes. Every range and every field of a transform is checked
// against the input's size and the current tensor before a byte is read; the
// bytes written are the input's (transposed and swapped as described).
// The stream is written by hand into a memory file, as a hostile worker
// could write it.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "converter/protocol/conversion_protocol.h"
#include "converter/protocol/stream_limits.h"
#include "converter/protocol/worker.pb.h"
#include "converter/worker_stream.h"
#include "proto/wire/wire.h"
#include "sandbox/frame_io.h"
#include "tests/converter/protocol/xform_testing.h"

namespace safemodel {
namespace {

using sandbox::FrameType;

constexpr uint64_t kInputBytes = 1 << 20;
constexpr uint64_t kTensorBytes = 256 << 10;

class Stream {
 public:
  Stream() : fd_(memfd_create("stream", MFD_CLOEXEC)) {}
  ~Stream() { close(fd_); }
  void Frame(FrameType type, const std::string& payload) {
    ASSERT_TRUE(sandbox::WriteFrame(fd_, type, payload.data(), payload.size()));
  }
  void Ref(uint64_t offset, uint64_t length) {
    uint8_t p[protocol::kTensorRefPayloadBytes];
    protocol::EncodeTensorRef({offset, length}, p);
    Frame(FrameType::kTensorRef, std::string(reinterpret_cast<char*>(p), sizeof p));
  }
  void Xform(const protocol::TensorXform& x) {
    uint8_t p[protocol::kTensorXformPayloadBytes];
    protocol::EncodeTensorXform(x, p);
    Frame(FrameType::kTensorXform, std::string(reinterpret_cast<char*>(p), sizeof p));
  }
  // LOCKED and a header of one uint8 tensor of `bytes`.
  void Start(uint64_t bytes = kTensorBytes) { StartWith({{"t", v1::U8, {bytes}}}); }
  struct Entry {
    std::string name;
    v1::DType dtype;
    std::vector<uint64_t> shape;
  };
  // LOCKED and a header of these tensors (sorted by name).
  void StartWith(const std::vector<Entry>& entries) {
    Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    worker::WorkerHeader h;
    h.set_source_format("npy");
    for (const Entry& e : entries) {
      v1::TensorInfo* t = h.add_tensors();
      t->set_name(e.name);
      t->set_dtype(e.dtype);
      for (uint64_t d : e.shape) t->add_shape(d);
    }
    Frame(FrameType::kHeader, wire::SerializeDeterministic(h));
  }
  void Done(uint64_t bytes, uint64_t tensors = 1) {
    worker::WorkerDone d;
    d.set_tensors_sent(tensors);
    d.set_bytes_sent(bytes);
    Frame(FrameType::kDone, wire::SerializeDeterministic(d));
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

class TensorRefTest : public ::testing::Test {
 protected:
  void SetUp() override {
    input_fd_ = memfd_create("input", MFD_CLOEXEC);
    // A file on a real file system: the parent reserves the output's space.
    out_fd_ = open(::testing::TempDir().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(out_fd_, 0);
    input_.resize(kInputBytes);
    uint32_t x = 12345;
    for (uint8_t& b : input_) {
      x = x * 1103515245u + 12345u;
      b = static_cast<uint8_t>(x >> 24);
    }
    ASSERT_EQ(pwrite(input_fd_, input_.data(), input_.size(), 0), static_cast<ssize_t>(kInputBytes));
  }
  void TearDown() override {
    close(input_fd_);
    close(out_fd_);
  }
  // Reads `s` as the parent does; `input_fd` -1: an input of several files.
  StreamOutcome Read(Stream& s, int input_fd) {
    EXPECT_EQ(lseek(s.fd(), 0, SEEK_SET), 0);
    sandbox::FrameReader reader(s.fd(), std::chrono::steady_clock::now() + std::chrono::seconds(30));
    ConvertReport report;
    StreamOutcome st;
    ReadWorkerStream(reader, out_fd_, kInputBytes, input_fd, {}, DigestAlgorithm::kXxh3_128, 0,
                     nullptr, &report, &st);
    return st;
  }
  std::string Output() {
    std::string out(static_cast<size_t>(lseek(out_fd_, 0, SEEK_END)), '\0');
    EXPECT_EQ(pread(out_fd_, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    return out;
  }
  void ExpectRefused(Stream& s, const std::string& why, int input_fd = -2) {
    StreamOutcome st = Read(s, input_fd == -2 ? input_fd_ : input_fd);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError) << st.cause().ToString();
    EXPECT_NE(st.cause().message().find(why), std::string::npos) << st.cause().ToString();
    EXPECT_EQ(st.data_bytes, 0u);
  }
  int input_fd_ = -1;
  int out_fd_ = -1;
  std::vector<uint8_t> input_;
};

TEST_F(TensorRefTest, TheBytesWrittenAreTheInputsAtTheRange) {
  Stream s;
  s.Start();
  const uint64_t at = 100'003;  // unaligned on purpose
  s.Ref(at, kTensorBytes / 2);
  s.Ref(at + kTensorBytes / 2, kTensorBytes / 2);
  s.Done(kTensorBytes);
  StreamOutcome st = Read(s, input_fd_);
  ASSERT_EQ(st.report, StreamOutcome::Report::kDone) << st.cause().ToString();
  ASSERT_TRUE(st.writer && st.writer->complete());
  EXPECT_EQ(st.data_bytes, kTensorBytes);
  const std::string out = Output();
  const std::string want(reinterpret_cast<const char*>(input_.data() + at), kTensorBytes);
  EXPECT_NE(out.find(want), std::string::npos);
}

// A reference longer than the parent's read piece (256 KiB): read, digested
// and written piece by piece, the last one partial, from an unaligned offset.
TEST_F(TensorRefTest, AReferenceOfSeveralReadPiecesIsWrittenWhole) {
  const uint64_t bytes = 600'001;
  const uint64_t at = 77'777;
  Stream s;
  s.Start(bytes);
  s.Ref(at, bytes);
  s.Done(bytes);
  StreamOutcome st = Read(s, input_fd_);
  ASSERT_EQ(st.report, StreamOutcome::Report::kDone) << st.cause().ToString();
  ASSERT_TRUE(st.writer && st.writer->complete());
  EXPECT_EQ(st.data_bytes, bytes);
  const std::string out = Output();
  const std::string want(reinterpret_cast<const char*>(input_.data() + at), bytes);
  EXPECT_NE(out.find(want), std::string::npos);
}

TEST_F(TensorRefTest, ARangeOutsideTheInputIsRefusedBeforeAnyRead) {
  for (auto [offset, length] : std::vector<std::pair<uint64_t, uint64_t>>{
           {kInputBytes - 10, 11},                // runs past the end
           {kInputBytes + 1, 1},                  // starts past the end
           {~0ull - 3, 8},                        // offset + length wraps around
           {8, ~0ull - 3}}) {                     // length wraps around
    Stream s;
    s.Start();
    s.Ref(offset, length);
    SCOPED_TRACE(std::to_string(offset) + " + " + std::to_string(length));
    ExpectRefused(s, "outside the " + std::to_string(kInputBytes) + "-byte input");
  }
}

TEST_F(TensorRefTest, ARangeLongerThanTheTensorIsRefused) {
  Stream s;
  s.Start();
  s.Ref(0, kTensorBytes + 1);
  ExpectRefused(s, "exceeds what the current tensor still needs");
}

TEST_F(TensorRefTest, AnEmptyRangeIsRefused) {
  Stream s;
  s.Start();
  s.Ref(0, 0);
  ExpectRefused(s, "an empty tensor reference");
}

TEST_F(TensorRefTest, ARangeBeforeTheHeaderIsRefused) {
  Stream s;
  s.Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
  s.Ref(0, 16);
  ExpectRefused(s, "a tensor reference before the header");
}

TEST_F(TensorRefTest, APayloadOfAnotherSizeIsRefused) {
  Stream s;
  s.Start();
  s.Frame(FrameType::kTensorRef, std::string(8, '\0'));
  StreamOutcome st = Read(s, input_fd_);
  EXPECT_EQ(st.end(), StreamEnd::kProtocolError);
  EXPECT_EQ(st.data_bytes, 0u);
}

TEST_F(TensorRefTest, AnInputOfSeveralFilesTakesNoReference) {
  Stream s;
  s.Start();
  s.Ref(0, 16);
  ExpectRefused(s, "an input of several files", /*input_fd=*/-1);
}

TEST_F(TensorRefTest, AnInputThatShrankFailsAsTheParentsIoError) {
  Stream s;
  s.Start();
  s.Ref(kInputBytes - kTensorBytes, kTensorBytes);
  s.Done(kTensorBytes);
  ASSERT_EQ(ftruncate(input_fd_, kInputBytes / 2), 0);
  StreamOutcome st = Read(s, input_fd_);
  EXPECT_EQ(st.end(), StreamEnd::kOutputIoError) << st.cause().ToString();
  EXPECT_NE(st.cause().message().find("shrank"), std::string::npos) << st.cause().ToString();
}

// What the parent keeps of a tensor entry is name, dtype, shape and alias:
// the same output whatever else the worker put in the entry.
TEST_F(TensorRefTest, AnEntrysOffsetSizeAndUnknownFieldsDoNotReachTheOutput) {
  std::string outputs[2];
  for (int extra = 0; extra < 2; ++extra) {
    ASSERT_EQ(ftruncate(out_fd_, 0), 0);
    ASSERT_EQ(lseek(out_fd_, 0, SEEK_SET), 0);
    Stream s;
    s.Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    worker::WorkerHeader h;
    h.set_source_format("npy");
    v1::TensorInfo* t = h.add_tensors();
    t->set_name("t");
    t->set_dtype(v1::U8);
    t->add_shape(kTensorBytes);
    if (extra == 1) {  // what the parent must drop
      t->set_offset(4096);
      t->set_nbytes(7);
      t->GetReflection()->MutableUnknownFields(t)->AddVarint(999, 12345);
    }
    s.Frame(FrameType::kHeader, wire::SerializeDeterministic(h));
    s.Frame(FrameType::kTensorData, std::string(reinterpret_cast<const char*>(input_.data()), kTensorBytes));
    s.Done(kTensorBytes);
    StreamOutcome st = Read(s, input_fd_);
    ASSERT_EQ(st.report, StreamOutcome::Report::kDone) << st.cause().ToString();
    ASSERT_TRUE(st.writer->Finish(std::string(32, '\0')).ok());
    outputs[extra] = Output();
  }
  EXPECT_GT(outputs[0].size(), kTensorBytes);
  EXPECT_EQ(outputs[0], outputs[1]);
}

// --- TENSOR_XFORM (converter/protocol/tensor_xform.h) -----------------------

// A (256, 64) float32 array, big-endian, in Fortran order at byte 1000 of
// the input: 64 KiB.
protocol::TensorXform Fortran256x64() { return testing::FortranAt(1000, 4, 4, {256, 64}); }
constexpr uint64_t kXformBytes = 256 * 64 * 4;
const Stream::Entry kF32Entry{"t", v1::F32, {256, 64}};

TEST_F(TensorRefTest, ATransformWritesTheInputTransposedAndSwapped) {
  Stream s;
  s.StartWith({kF32Entry});
  s.Xform(Fortran256x64());
  s.Done(kXformBytes);
  StreamOutcome st = Read(s, input_fd_);
  ASSERT_EQ(st.report, StreamOutcome::Report::kDone) << st.cause().ToString();
  ASSERT_TRUE(st.writer && st.writer->complete());
  EXPECT_EQ(st.data_bytes, kXformBytes);
  std::string want(kXformBytes, '\0');
  for (uint64_t r = 0; r < 256; ++r) {
    for (uint64_t c = 0; c < 64; ++c) {
      const uint8_t* from = input_.data() + 1000 + 4 * (c * 256 + r);
      for (uint64_t b = 0; b < 4; ++b) want[4 * (r * 64 + c) + b] = static_cast<char>(from[3 - b]);
    }
  }
  ASSERT_TRUE(st.writer->Finish(std::string(32, '\0')).ok());  // the writer's buffer reaches the file
  EXPECT_NE(Output().find(want), std::string::npos);
}

// Every field CheckTensorXform checks, broken at the stream: refused with
// its rule before a byte is read or written.
TEST_F(TensorRefTest, EveryBadTransformFieldIsRefusedBeforeAnyRead) {
  const std::vector<std::pair<std::function<void(protocol::TensorXform&)>, std::string>> cases = {
      {[](auto& x) { x.elem_size = 3; }, "element size 3 (not 1, 2, 4, 8 or 16)"},
      {[](auto& x) { x.swap_unit = 8; }, "swap unit 8 for 4-byte elements"},
      {[](auto& x) { x.reserved = 7; }, "reserved word set"},
      {[](auto& x) { x.rank = 9; }, "of rank 9 (1 to 8)"},
      {[](auto& x) { x.shape[3] = 2; }, "dimension 3 set beyond its rank 2"},
      {[](auto& x) { x.region_offset = kInputBytes - 10; }, "outside the 1048576-byte input"},
      {[](auto& x) { x.region_length = ~0ull; }, "outside the 1048576-byte input"},
      {[](auto& x) { x.shape[1] = 0; }, "dimension 1 of size 0"},
      {[](auto& x) { x.strides[1] = 1 << 20; }, "reaches outside its region of 16384 elements"},
      {[](auto& x) { x.first = 1; }, "reach outside its region of 16384 elements"},
      {[](auto& x) { x.strides[0] = 2; x.strides[1] = 1; x.shape[0] = 128; x.shape[1] = 128; },
       "unsupported layout"},
  };
  for (const auto& [breaks, why] : cases) {
    SCOPED_TRACE(why);
    Stream s;
    s.StartWith({kF32Entry});
    protocol::TensorXform x = Fortran256x64();
    breaks(x);
    s.Xform(x);
    ExpectRefused(s, why);
  }
}

TEST_F(TensorRefTest, ATransformThatIsNotTheCurrentTensorIsRefused) {
  {  // another size than the tensor's
    Stream s;
    s.StartWith({{"t", v1::F32, {256, 65}}});
    s.Xform(Fortran256x64());
    ExpectRefused(s, "a tensor transform of 65536 bytes for tensor #0 of 66560");
  }
  {  // elements of another size than the dtype's (the same byte count)
    Stream s;
    s.StartWith({{"t", v1::F64, {256, 32}}});
    s.Xform(Fortran256x64());
    ExpectRefused(s, "a tensor transform of 4-byte elements for a tensor of 8-byte elements");
  }
  {  // a bool tensor: its 0/1 check and message stay in the worker
    Stream s;
    s.StartWith({{"t", v1::BOOL, {kXformBytes}}});
    protocol::TensorXform x = Fortran256x64();
    x.elem_size = 1;
    x.swap_unit = 0;
    x.shape[0] = 1024;
    x.strides[1] = 1024;
    s.Xform(x);
    ExpectRefused(s, "a tensor transform for a bool tensor");
  }
  {  // in the middle of a tensor
    Stream s;
    s.StartWith({{"t", v1::F32, {256, 65}}});
    s.Ref(0, 1024);
    s.Xform(Fortran256x64());
    StreamOutcome st = Read(s, input_fd_);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError);
    EXPECT_NE(st.cause().message().find("a tensor transform in the middle of tensor #0"), std::string::npos)
        << st.cause().ToString();
  }
  {  // after the last tensor
    Stream s;
    s.StartWith({kF32Entry});
    s.Xform(Fortran256x64());
    s.Xform(Fortran256x64());
    StreamOutcome st = Read(s, input_fd_);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError);
    EXPECT_NE(st.cause().message().find("a tensor transform after the last tensor"), std::string::npos)
        << st.cause().ToString();
  }
}

TEST_F(TensorRefTest, ATransformBeforeTheHeaderOrOfAnotherSizeIsRefused) {
  {
    Stream s;
    s.Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    s.Xform(Fortran256x64());
    ExpectRefused(s, "a tensor transform before the header");
  }
  {
    Stream s;
    s.StartWith({kF32Entry});
    s.Frame(FrameType::kTensorXform, std::string(protocol::kTensorXformPayloadBytes - 1, '\0'));
    StreamOutcome st = Read(s, input_fd_);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError);
    EXPECT_EQ(st.data_bytes, 0u);
  }
  {
    Stream s;
    s.StartWith({kF32Entry});
    s.Xform(Fortran256x64());
    ExpectRefused(s, "a tensor transform for an input of several files", /*input_fd=*/-1);
  }
}

TEST_F(TensorRefTest, ATransformOfAnInputThatShrankFailsAsTheParentsIoError) {
  Stream s;
  s.StartWith({kF32Entry});
  s.Xform(Fortran256x64());
  s.Done(kXformBytes);
  ASSERT_EQ(ftruncate(input_fd_, 1000 + 4096), 0);
  StreamOutcome st = Read(s, input_fd_);
  EXPECT_EQ(st.end(), StreamEnd::kOutputIoError) << st.cause().ToString();
  EXPECT_NE(st.cause().message().find("shrank"), std::string::npos) << st.cause().ToString();
}

// The caller's cancel is asked inside a transform of several bands, as
// inside a reference: the stream ends as the caller's, the band being read
// on its thread is waited for, and the tensor is not counted.
TEST_F(TensorRefTest, ATransformIsCancelledBetweenItsBands) {
  constexpr uint64_t kRows = uint64_t{1} << 21;  // (2^21, 3) float32: 24 MiB, two bands
  const int big = memfd_create("big", MFD_CLOEXEC);
  ASSERT_GE(big, 0);
  ASSERT_EQ(ftruncate(big, static_cast<off_t>(kRows * 3 * 4)), 0);
  protocol::TensorXform x;
  x.region_length = kRows * 3 * 4;
  x.elem_size = 4;
  x.rank = 2;
  x.shape[0] = kRows;
  x.shape[1] = 3;
  x.strides[0] = 1;
  x.strides[1] = static_cast<int64_t>(kRows);
  Stream s;
  s.StartWith({{"t", v1::F32, {kRows, 3}}});
  s.Xform(x);
  s.Done(kRows * 3 * 4);
  ASSERT_EQ(lseek(s.fd(), 0, SEEK_SET), 0);
  sandbox::FrameReader reader(s.fd(), std::chrono::steady_clock::now() + std::chrono::seconds(30));
  ConvertReport report;
  StreamOutcome st;
  int calls = 0;
  ReadWorkerStream(reader, out_fd_, kRows * 3 * 4, big, {}, DigestAlgorithm::kXxh3_128, 0, nullptr, &report,
                   &st, false, [&](const ConvertProgress&) { return ++calls < 2; });
  close(big);
  EXPECT_EQ(st.end(), StreamEnd::kOutputIoError) << st.cause().ToString();
  EXPECT_NE(st.cause().message().find("cancelled by the caller"), std::string::npos) << st.cause().ToString();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(st.data_bytes, 0u);
}

// The HEADER's tensor entries are checked one by one as they are parsed
// (format::TensorTable) but reported in the order of before: a frame that
// does not parse first, then the envelope's checks (here the echoed
// options), then the first entry that fails.
TEST_F(TensorRefTest, AHeadersFailuresAreReportedInTheirOrder) {
  auto header = [](bool bad_options) {
    worker::WorkerHeader h;
    h.set_source_format("npy");
    for (const char* name : {"b", "a"}) {  // not sorted
      v1::TensorInfo* t = h.add_tensors();
      t->set_name(name);
      t->set_dtype(v1::U8);
      t->add_shape(1);
    }
    if (bad_options) h.add_options("--not-requested");
    return wire::SerializeDeterministic(h);
  };
  const std::string cases[][2] = {
      {header(false),
       "invalid header from the worker: malformed: tensor #1 'a': names are not sorted "
       "and unique (previous is 'b')"},
      {header(true), "the worker converted with options [--not-requested], not the requested []"},
      // A truncated field at the end: the frame does not parse.
      {header(true) + std::string("\xc8", 1), "the worker's header frame is not valid"},
  };
  for (const auto& [frame, why] : cases) {
    Stream s;
    s.Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    s.Frame(FrameType::kHeader, frame);
    StreamOutcome st = Read(s, input_fd_);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError) << st.cause().ToString();
    EXPECT_NE(st.cause().message().find(why), std::string::npos) << st.cause().ToString();
    EXPECT_EQ(st.writer, nullptr);
  }
}

// The HEADER frame is parsed as it is read. Entries past the tensor limit
// for the input's size are counted, not kept, and the header is refused
// for their number, whatever they hold (the last one here has no name); a
// frame cut short is a read failure, not a parse failure, even when it is
// many windows long.
TEST_F(TensorRefTest, AStreamedHeadersCountAndEndAreChecked) {
  const uint64_t limit = StreamLimitsFor(kInputBytes).tensors;
  worker::WorkerHeader h;
  h.set_source_format("npy");
  for (uint64_t i = 0; i <= limit; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "t%07llu", static_cast<unsigned long long>(i));
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(i == limit ? "" : name);
    t->set_dtype(v1::U8);
    t->add_shape(1);
  }
  const std::string frame = wire::SerializeDeterministic(h);
  ASSERT_GT(frame.size(), 4 * wire::kParseWindowBytes);
  {
    Stream s;
    s.Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    s.Frame(FrameType::kHeader, frame);
    StreamOutcome st = Read(s, input_fd_);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError) << st.cause().ToString();
    EXPECT_NE(st.cause().message().find(std::to_string(limit + 1) + " tensors exceed the limit of " +
                                        std::to_string(limit) + " for an input of " +
                                        std::to_string(kInputBytes) + " bytes"),
              std::string::npos)
        << st.cause().ToString();
  }
  {
    Stream s;
    s.Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    s.Frame(FrameType::kHeader, frame);
    const off_t end = lseek(s.fd(), 0, SEEK_END);
    ASSERT_EQ(ftruncate(s.fd(), end - 1000), 0);
    StreamOutcome st = Read(s, input_fd_);
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError) << st.cause().ToString();
    EXPECT_NE(st.cause().message().find("reading the header frame"), std::string::npos)
        << st.cause().ToString();
    EXPECT_EQ(st.writer, nullptr);
  }
}

}  // namespace
}  // namespace safemodel
