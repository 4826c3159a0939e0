#include "sandbox/frame_io.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proto/base/byte_reader.h"

namespace safemodel::sandbox {

namespace {
bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}
}  // namespace

bool WriteFrame(int fd, FrameType type, const void* payload, size_t length) {
  // A small frame goes out in one write with its header: one system call
  // and one wake-up of the reader instead of two (a model of 100,000 small
  // tensors sends 100,000 such frames).
  constexpr size_t kSmallFrameBytes = 4096;
  if (length <= kSmallFrameBytes - kFrameHeaderBytes) {
    uint8_t frame[kSmallFrameBytes];
    EncodeFrameHeader(type, length, frame);
    if (length > 0) std::memcpy(frame + kFrameHeaderBytes, payload, length);
    return WriteAll(fd, frame, kFrameHeaderBytes + length);
  }
  uint8_t header[kFrameHeaderBytes];
  EncodeFrameHeader(type, length, header);
  return WriteAll(fd, header, sizeof header) &&
         WriteAll(fd, static_cast<const uint8_t*>(payload), length);
}

FrameWriter::FrameWriter(int fd) : fd_(fd), buf_(new uint8_t[kBufferBytes]) {}

bool FrameWriter::Write(FrameType type, const void* payload, size_t length) {
  if (failed_) return false;
  if (length > kBufferBytes - kFrameHeaderBytes) {
    // A large frame (a header, a tile of data) goes out on its own, after
    // what is buffered, so that frames keep their order.
    if (!Flush() || !WriteFrame(fd_, type, payload, length)) failed_ = true;
    return !failed_;
  }
  if (used_ + kFrameHeaderBytes + length > kBufferBytes && !Flush()) return false;
  EncodeFrameHeader(type, length, buf_.get() + used_);
  if (length > 0) std::memcpy(buf_.get() + used_ + kFrameHeaderBytes, payload, length);
  used_ += kFrameHeaderBytes + length;
  return true;
}

bool FrameWriter::Flush() {
  if (failed_) return false;
  if (used_ > 0 && !WriteAll(fd_, buf_.get(), used_)) failed_ = true;
  used_ = 0;
  return !failed_;
}

FrameReader::Result FrameReader::ReadSome(void* buf, size_t n, size_t* got) {
  if (buf_pos_ == buf_end_ && n < kBufferBytes) {
    if (!buf_) buf_.reset(new uint8_t[kBufferBytes]);
    size_t filled = 0;
    Result r = ReadChannel(buf_.get(), kBufferBytes, &filled);
    if (r != Result::kOk) return r;
    buf_pos_ = 0;
    buf_end_ = filled;
  }
  if (buf_pos_ < buf_end_) {
    const size_t k = n < buf_end_ - buf_pos_ ? n : buf_end_ - buf_pos_;
    std::memcpy(buf, buf_.get() + buf_pos_, k);
    buf_pos_ += k;
    *got = k;
    return Result::kOk;
  }
  if (n < kBufferBytes) {  // the channel's end (buffer empty after a read)
    *got = 0;
    return Result::kOk;
  }
  return ReadChannel(buf, n, got);
}

FrameReader::Result FrameReader::ReadChannel(void* buf, size_t n, size_t* got) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    if (left.count() <= 0) return Result::kTimeout;
    struct pollfd pfd[2] = {{fd_, POLLIN, 0}, {exit_fd_, POLLIN, 0}};
    int timeout_ms = left.count() > 60'000 ? 60'000 : static_cast<int>(left.count());
    int r = poll(pfd, exit_fd_ >= 0 ? 2 : 1, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("poll on the worker channel failed: ") + std::strerror(errno);
      return Result::kError;
    }
    if (r == 0) continue;  // re-check the deadline
    if (pfd[0].revents == 0) {
      // Only the exit is signalled. The worker's writes all reached the pipe
      // before it exited; look once more without waiting, in case they
      // arrived between the two checks, then it is over.
      struct pollfd again = {fd_, POLLIN, 0};
      if (poll(&again, 1, 0) == 0) {
        error_ = "the worker has exited but the result channel is still held open by another process";
        return Result::kHeldOpen;
      }
    }
    ssize_t k = read(fd_, buf, n);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      error_ = std::string("reading the worker channel failed: ") + std::strerror(errno);
      return Result::kError;
    }
    *got = static_cast<size_t>(k);
    bytes_read_ += *got;
    return Result::kOk;
  }
}

FrameReader::Result FrameReader::ReadExact(void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    size_t got = 0;
    Result r = ReadSome(p, n, &got);
    if (r != Result::kOk) return r;
    if (got == 0) {
      error_ = "the worker channel ended in the middle of a frame";
      return Result::kError;
    }
    p += got;
    n -= got;
  }
  return Result::kOk;
}

bool FrameReader::FreshFillHolds(FrameType type) const {
  if (!fresh_fill_) return false;
  size_t at = 0;
  while (buf_end_ - at >= kFrameHeaderBytes) {
    const uint8_t* h = buf_.get() + at;
    const uint64_t length = LoadLE(h + 8, 8);
    if (LoadLE(h, 4) != kFrameMagic || length > buf_end_ - at - kFrameHeaderBytes) return false;
    if (LoadLE(h + 4, 4) == static_cast<uint32_t>(type)) return true;
    at += kFrameHeaderBytes + static_cast<size_t>(length);
  }
  return false;
}

FrameReader::Result FrameReader::Next(FrameHeader* out, const FrameCaps& max_length) {
  uint8_t h[kFrameHeaderBytes];
  size_t got = 0;
  const bool empty = buf_pos_ == buf_end_;
  fresh_fill_ = false;
  Result r = ReadSome(h, sizeof h, &got);
  if (r != Result::kOk) return r;
  if (got == 0) return Result::kEof;
  fresh_fill_ = empty && got == sizeof h && buf_pos_ == sizeof h;
  if (got < sizeof h) {
    r = ReadExact(h + got, sizeof h - got);
    if (r != Result::kOk) return r;
  }
  auto header = DecodeFrameHeader(h, max_length);
  if (!header.ok()) {
    error_ = header.status().message();
    return Result::kError;
  }
  *out = *header;
  return Result::kOk;
}

}  // namespace safemodel::sandbox
