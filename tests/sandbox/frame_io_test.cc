// The buffered transport of sandbox/frame_io.h: FrameWriter gathers whole
// frames into large writes; FrameReader reads the channel in large pieces
// and still checks every frame header before its caller allocates.
#include "sandbox/frame_io.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace safemodel::sandbox {
namespace {

using Clock = FrameReader::Clock;

class Pipe {
 public:
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_ = fds[0];
    write_ = fds[1];
  }
  ~Pipe() {
    CloseWrite();
    if (read_ >= 0) close(read_);
  }
  void CloseWrite() {
    if (write_ >= 0) close(write_);
    write_ = -1;
  }
  void CloseRead() {
    if (read_ >= 0) close(read_);
    read_ = -1;
  }
  int r() const { return read_; }
  int w() const { return write_; }
  bool Readable() const {
    struct pollfd p = {read_, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }

 private:
  int read_ = -1;
  int write_ = -1;
};

void Caps(FrameCaps* caps, uint64_t cap) {
  for (uint32_t i = 0; i <= kMaxFrameType; ++i) (*caps)[i] = cap;
}

std::string Frame(FrameType type, const std::string& payload) {
  std::string out(kFrameHeaderBytes, '\0');
  EncodeFrameHeader(type, payload.size(), reinterpret_cast<uint8_t*>(out.data()));
  return out + payload;
}

std::string Payload(size_t n, int seed) {
  std::string p(n, '\0');
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<char>((i * 31 + static_cast<size_t>(seed)) & 0xff);
  return p;
}

// Reads one frame; expects kOk, `type` and `payload`.
void ExpectFrame(FrameReader& reader, const FrameCaps& caps, FrameType type, const std::string& payload) {
  FrameHeader h;
  ASSERT_EQ(reader.Next(&h, caps), FrameReader::Result::kOk) << reader.error();
  ASSERT_EQ(h.type, type);
  ASSERT_EQ(h.length, payload.size());
  std::string got(payload.size(), '\0');
  ASSERT_EQ(reader.ReadExact(got.data(), got.size()), FrameReader::Result::kOk) << reader.error();
  ASSERT_EQ(got, payload);
}

TEST(FrameWriterTest, NothingLeavesBeforeFlushThenEverythingInOrder) {
  Pipe p;
  FrameWriter w(p.w());
  std::vector<std::string> payloads;
  for (int i = 0; i < 20; ++i) payloads.push_back(Payload(static_cast<size_t>(i) * 7, i));
  for (const std::string& s : payloads) ASSERT_TRUE(w.Write(FrameType::kTensorData, s.data(), s.size()));
  EXPECT_FALSE(p.Readable()) << "small frames were written before Flush";
  ASSERT_TRUE(w.Flush());
  EXPECT_TRUE(p.Readable());
  p.CloseWrite();
  FrameCaps caps;
  Caps(&caps, 1 << 20);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(10));
  for (const std::string& s : payloads) ExpectFrame(reader, caps, FrameType::kTensorData, s);
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kEof);
}

TEST(FrameWriterTest, FullBufferAndLargeFramesKeepTheirOrder) {
  Pipe p;
  // Writer and reader at once: the frames exceed the pipe's capacity.
  std::vector<std::string> payloads;
  for (int i = 0; i < 3000; ++i) {
    const size_t n = i % 500 == 0 ? FrameWriter::kBufferBytes + 100  // larger than the buffer
                     : i % 97 == 0 ? FrameWriter::kBufferBytes - kFrameHeaderBytes  // exactly fits
                                   : static_cast<size_t>(i % 61);
    payloads.push_back(Payload(n, i));
  }
  std::thread writer([&] {
    FrameWriter w(p.w());
    for (const std::string& s : payloads) {
      if (!w.Write(FrameType::kTensorData, s.data(), s.size())) return;
    }
    w.Flush();
    p.CloseWrite();
  });
  FrameCaps caps;
  Caps(&caps, 1 << 20);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(30));
  for (const std::string& s : payloads) ExpectFrame(reader, caps, FrameType::kTensorData, s);
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kEof);
  writer.join();
}

TEST(FrameWriterTest, ReportsAParentThatWentAway) {
  signal(SIGPIPE, SIG_IGN);
  Pipe p;
  p.CloseRead();
  FrameWriter w(p.w());
  ASSERT_TRUE(w.Write(FrameType::kTensorData, "abc", 3));  // buffered
  EXPECT_FALSE(w.Flush());
  EXPECT_FALSE(w.Write(FrameType::kTensorData, "abc", 3));
}

TEST(FrameReaderTest, ShortReadsOneByteAtATime) {
  Pipe p;
  std::string stream = Frame(FrameType::kHeader, "hello") + Frame(FrameType::kTensorData, Payload(300, 1)) +
                       Frame(FrameType::kDone, "");
  std::thread writer([&] {
    for (char c : stream) {
      if (write(p.w(), &c, 1) != 1) return;
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    p.CloseWrite();
  });
  FrameCaps caps;
  Caps(&caps, 4096);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(30));
  ExpectFrame(reader, caps, FrameType::kHeader, "hello");
  ExpectFrame(reader, caps, FrameType::kTensorData, Payload(300, 1));
  ExpectFrame(reader, caps, FrameType::kDone, "");
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kEof);
  writer.join();
  EXPECT_EQ(reader.bytes_read(), stream.size());
}

// Frames whose headers and payloads straddle every position of the
// reader's buffer boundary, the stream written in pieces of odd sizes.
TEST(FrameReaderTest, FramesSplitAcrossBufferBoundaries) {
  std::string stream;
  std::vector<std::string> payloads;
  for (int i = 0; stream.size() < 3 * FrameReader::kBufferBytes + 100; ++i) {
    payloads.push_back(Payload(static_cast<size_t>(i % 37) + (i % 11 == 0 ? 70000 : 0), i));
    stream += Frame(FrameType::kTensorData, payloads.back());
  }
  Pipe p;
  std::thread writer([&] {
    size_t at = 0;
    for (size_t piece = 1; at < stream.size(); piece = piece * 3 % 9973 + 1) {
      const size_t n = std::min(piece, stream.size() - at);
      if (write(p.w(), stream.data() + at, n) != static_cast<ssize_t>(n)) return;
      at += n;
    }
    p.CloseWrite();
  });
  FrameCaps caps;
  Caps(&caps, 1 << 20);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(30));
  for (const std::string& s : payloads) ExpectFrame(reader, caps, FrameType::kTensorData, s);
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kEof);
  writer.join();
}

// The look ahead for a worker's last frame: answered for the first frame
// of a fill, from the bytes already read, and never past them.
TEST(FrameReaderTest, AFreshFillTellsWhetherItHoldsAFrameAhead) {
  FrameCaps caps;
  Caps(&caps, 1 << 20);
  {
    Pipe p;
    const std::string stream = Frame(FrameType::kHeader, "h") + Frame(FrameType::kTensorData, Payload(100, 1)) +
                               Frame(FrameType::kDone, "d");
    ASSERT_EQ(write(p.w(), stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
    FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(30));
    EXPECT_FALSE(reader.FreshFillHolds(FrameType::kDone)) << "nothing read yet";
    ExpectFrame(reader, caps, FrameType::kHeader, "h");
    EXPECT_TRUE(reader.FreshFillHolds(FrameType::kDone));
    EXPECT_TRUE(reader.FreshFillHolds(FrameType::kHeader)) << "the frame just returned counts";
    EXPECT_FALSE(reader.FreshFillHolds(FrameType::kError));
    ExpectFrame(reader, caps, FrameType::kTensorData, Payload(100, 1));
    EXPECT_FALSE(reader.FreshFillHolds(FrameType::kDone)) << "answered once per fill";
  }
  {
    // The last frame's payload not yet read whole: not there.
    Pipe p;
    const std::string stream = Frame(FrameType::kHeader, "h") + Frame(FrameType::kDone, "done");
    ASSERT_EQ(write(p.w(), stream.data(), stream.size() - 1), static_cast<ssize_t>(stream.size() - 1));
    FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(30));
    ExpectFrame(reader, caps, FrameType::kHeader, "h");
    EXPECT_FALSE(reader.FreshFillHolds(FrameType::kDone));
  }
  {
    // A frame whose length leaves the buffer ends the walk, whatever follows.
    Pipe p;
    std::string stream = Frame(FrameType::kHeader, "h");
    std::string lying(kFrameHeaderBytes, '\0');
    EncodeFrameHeader(FrameType::kTensorData, 1ull << 40, reinterpret_cast<uint8_t*>(lying.data()));
    stream += lying + Frame(FrameType::kDone, "d");
    ASSERT_EQ(write(p.w(), stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
    FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(30));
    ExpectFrame(reader, caps, FrameType::kHeader, "h");
    EXPECT_FALSE(reader.FreshFillHolds(FrameType::kDone));
  }
}

TEST(FrameReaderTest, LengthOverTheCapIsRefusedFromTheHeaderAlone) {
  Pipe p;
  // The header announces 2^40 bytes; none follow. The buffered bytes after
  // it (another frame) must not matter.
  uint8_t header[kFrameHeaderBytes];
  EncodeFrameHeader(FrameType::kTensorData, 1ull << 40, header);
  std::string stream(reinterpret_cast<char*>(header), sizeof header);
  stream += Frame(FrameType::kDone, "x");
  ASSERT_EQ(write(p.w(), stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
  FrameCaps caps;
  Caps(&caps, 1024);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(10));
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kError);
  EXPECT_NE(reader.error().find("1099511627776"), std::string::npos) << reader.error();
}

TEST(FrameReaderTest, LengthOneOverTheCapAfterBufferedFrames) {
  Pipe p;
  std::string stream = Frame(FrameType::kTensorData, Payload(1024, 3)) + Frame(FrameType::kTensorData, Payload(1025, 4));
  ASSERT_EQ(write(p.w(), stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
  p.CloseWrite();
  FrameCaps caps;
  Caps(&caps, 1024);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(10));
  ExpectFrame(reader, caps, FrameType::kTensorData, Payload(1024, 3));
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kError);
}

TEST(FrameReaderTest, EndInsideAHeaderIsAnError) {
  Pipe p;
  std::string stream = Frame(FrameType::kDone, "ab").substr(0, 9);
  ASSERT_EQ(write(p.w(), stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
  p.CloseWrite();
  FrameCaps caps;
  Caps(&caps, 1024);
  FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(10));
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kError);
}

TEST(FrameReaderTest, EndInsideAPayloadIsAnError) {
  for (size_t n : {size_t{100}, size_t{FrameReader::kBufferBytes + 5000}}) {
    Pipe p;
    std::string full = Frame(FrameType::kTensorData, Payload(n, 5));
    std::string stream = full.substr(0, full.size() - 1);
    std::thread writer([&] {
      (void)!write(p.w(), stream.data(), stream.size());
      p.CloseWrite();
    });
    FrameCaps caps;
    Caps(&caps, 1 << 20);
    FrameReader reader(p.r(), Clock::now() + std::chrono::seconds(10));
    FrameHeader h;
    ASSERT_EQ(reader.Next(&h, caps), FrameReader::Result::kOk);
    std::string got(h.length, '\0');
    EXPECT_EQ(reader.ReadExact(got.data(), got.size()), FrameReader::Result::kError) << n;
    EXPECT_NE(reader.error().find("middle of a frame"), std::string::npos) << reader.error();
    writer.join();
  }
}

TEST(FrameReaderTest, SilentWriterTimesOut) {
  Pipe p;
  std::string stream = Frame(FrameType::kTensorData, "abc");
  ASSERT_EQ(write(p.w(), stream.data(), stream.size()), static_cast<ssize_t>(stream.size()));
  FrameCaps caps;
  Caps(&caps, 1024);
  FrameReader reader(p.r(), Clock::now() + std::chrono::milliseconds(200));
  ExpectFrame(reader, caps, FrameType::kTensorData, "abc");
  FrameHeader h;
  EXPECT_EQ(reader.Next(&h, caps), FrameReader::Result::kTimeout);
}

}  // namespace
}  // namespace safemodel::sandbox
