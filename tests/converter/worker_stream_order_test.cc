// The parent's check of the source order a worker proposes
// (TensorInfo.source_index, proto/FORMAT.md section 4): on every tensor or on
// none, and a permutation of 0..n-1. The stream is written by hand into a
// memory file, as a hostile worker could write it; a refused proposal leaves
// no tensor bytes written.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "converter/protocol/worker.pb.h"
#include "converter/worker_stream.h"
#include "proto/wire/wire.h"
#include "safemodel/reader.h"
#include "sandbox/frame_io.h"

namespace safemodel {
namespace {

using sandbox::FrameType;

constexpr uint64_t kInputBytes = 4096;
constexpr uint64_t kTensorBytes = 16;

class SourceOrderStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stream_fd_ = memfd_create("stream", MFD_CLOEXEC);
    input_fd_ = memfd_create("input", MFD_CLOEXEC);
    out_fd_ = open(::testing::TempDir().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    ASSERT_GE(out_fd_, 0);
    ASSERT_EQ(ftruncate(input_fd_, kInputBytes), 0);
  }
  void TearDown() override {
    close(stream_fd_);
    close(input_fd_);
    close(out_fd_);
  }
  void Frame(FrameType type, const std::string& payload) {
    ASSERT_TRUE(sandbox::WriteFrame(stream_fd_, type, payload.data(), payload.size()));
  }
  // A whole stream: tensors "a", "b", "c" (sorted, u8[16] each, bytes 'a',
  // 'b', 'c') with the given source indices (nullopt: the field is absent).
  void Write(const std::vector<std::optional<uint64_t>>& indices) {
    ASSERT_EQ(ftruncate(stream_fd_, 0), 0);
    ASSERT_EQ(lseek(stream_fd_, 0, SEEK_SET), 0);
    Frame(FrameType::kLocked, sandbox::EncodeLockedClaim({"seccomp"}));
    worker::WorkerHeader h;
    h.set_source_format("npz");
    const char names[] = {'a', 'b', 'c'};
    for (size_t i = 0; i < indices.size(); ++i) {
      v1::TensorInfo* t = h.add_tensors();
      t->set_name(std::string(1, names[i]));
      t->set_dtype(v1::U8);
      t->add_shape(kTensorBytes);
      if (indices[i].has_value()) t->set_source_index(*indices[i]);
    }
    Frame(FrameType::kHeader, wire::SerializeDeterministic(h));
    for (size_t i = 0; i < indices.size(); ++i) {
      Frame(FrameType::kTensorData, std::string(kTensorBytes, names[i]));
    }
    worker::WorkerDone d;
    d.set_tensors_sent(indices.size());
    d.set_bytes_sent(indices.size() * kTensorBytes);
    Frame(FrameType::kDone, wire::SerializeDeterministic(d));
  }
  StreamOutcome Read() {
    EXPECT_EQ(lseek(stream_fd_, 0, SEEK_SET), 0);
    sandbox::FrameReader reader(stream_fd_,
                                std::chrono::steady_clock::now() + std::chrono::seconds(30));
    ConvertReport report;
    StreamOutcome st;
    ReadWorkerStream(reader, out_fd_, kInputBytes, input_fd_, {}, DigestAlgorithm::kXxh3_128, 0,
                     nullptr, &report, &st);
    return st;
  }
  void ExpectRefused(const std::vector<std::optional<uint64_t>>& indices, const std::string& why) {
    Write(indices);
    StreamOutcome st = Read();
    EXPECT_EQ(st.end(), StreamEnd::kProtocolError) << st.cause().ToString();
    EXPECT_NE(st.cause().message().find(why), std::string::npos) << st.cause().ToString();
    EXPECT_EQ(st.data_bytes, 0u);
  }
  std::string Output() {
    std::string out(static_cast<size_t>(lseek(out_fd_, 0, SEEK_END)), '\0');
    EXPECT_EQ(pread(out_fd_, out.data(), out.size(), 0), static_cast<ssize_t>(out.size()));
    return out;
  }
  // Streams what Write sent, finishes the output and trims the space reserved
  // beyond it, as the output's commit does; the file's bytes, "" on failure.
  std::string StreamedFile() {
    StreamOutcome st = Read();
    EXPECT_EQ(st.report, StreamOutcome::Report::kDone) << st.cause().ToString();
    const bool ok = st.report == StreamOutcome::Report::kDone && st.writer && st.writer->complete() &&
                    st.writer->Finish(std::string(32, '\x5a')).ok() &&
                    ftruncate(out_fd_, static_cast<off_t>(st.writer->file_size())) == 0;
    EXPECT_TRUE(ok) << "the stream did not finish into a file";
    return ok ? Output() : "";
  }

  int stream_fd_ = -1;
  int input_fd_ = -1;
  int out_fd_ = -1;
};

TEST_F(SourceOrderStreamTest, APermutationIsWrittenAndReadBackInSourceOrder) {
  Write({2, 0, 1});
  const std::string out = StreamedFile();
  auto m = Model::FromBuffer(std::as_bytes(std::span(out.data(), out.size())));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format_minor(), 1u);
  ASSERT_TRUE(m->has_source_order());
  std::vector<std::string> order;
  for (const TensorInfo* t : m->tensors_in_source_order()) order.push_back(t->name);
  EXPECT_EQ(order, (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_EQ(m->tensors()[0].source_index, std::optional<uint64_t>(2));
}

TEST_F(SourceOrderStreamTest, NoIndexAtAllIsAFileWithoutARecordedOrder) {
  Write({std::nullopt, std::nullopt, std::nullopt});
  const std::string out = StreamedFile();
  auto m = Model::FromBuffer(std::as_bytes(std::span(out.data(), out.size())));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_source_order());
  ASSERT_EQ(m->tensors_in_source_order().size(), 3u);
  EXPECT_EQ(m->tensors_in_source_order()[2]->name, "c");  // name order
}

TEST_F(SourceOrderStreamTest, ARepeatedIndexIsRefused) {
  ExpectRefused({0, 2, 0}, "source_index 0 is used twice");
}

TEST_F(SourceOrderStreamTest, AnIndexBeyondTheCountIsRefused) {
  ExpectRefused({0, 1, 3}, "source_index 3 is not below the tensor count 3");
}

TEST_F(SourceOrderStreamTest, AnIndexOnSomeTensorsOnlyIsRefused) {
  ExpectRefused({0, std::nullopt, 2}, "has no source_index but the first tensor has one");
  ExpectRefused({std::nullopt, 1, 2}, "has a source_index but the first tensor has none");
}

}  // namespace
}  // namespace safemodel
