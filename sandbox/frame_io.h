// Length-prefixed frames between the sandboxed worker and the parent.
//
// The frames themselves (header layout, types, the payloads the sandbox
// writes) are defined in worker_protocol.h; this is their transport. Control
// frames carry a serialized protobuf message (converter/protocol);
// TENSOR_DATA frames carry raw tensor bytes, so that no tensor byte is ever
// inside a protobuf message and the parent can move them with no extra copy.
//
// Trust: FrameReader reads hostile bytes. It checks the magic, the type and
// the length against a per-type cap before the caller allocates anything.
#ifndef SAFEMODEL_SANDBOX_FRAME_IO_H_
#define SAFEMODEL_SANDBOX_FRAME_IO_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "sandbox/worker_protocol.h"

namespace safemodel::sandbox {

// Worker side: writes one complete frame (header, then payload) to `fd`,
// retrying short writes. Returns false if the parent went away.
bool WriteFrame(int fd, FrameType type, const void* payload, size_t length);

// Worker side: frames gathered into writes of up to kBufferBytes, so that a
// model of 100,000 small tensors costs a few thousand system calls rather
// than one per frame. Only whole frames are buffered; a frame that does not
// fit is written on its own after what is buffered. Nothing reaches the
// parent before Flush() or a full buffer: the caller flushes before it
// waits, reports or exits. What is buffered when the object is destroyed
// without Flush() is dropped (the stream then ends early, which the parent
// refuses as an incomplete result).
class FrameWriter {
 public:
  // One pipe's default capacity: a full buffer is one write that a waiting
  // parent takes in one read.
  static constexpr size_t kBufferBytes = 64 << 10;

  explicit FrameWriter(int fd);
  FrameWriter(const FrameWriter&) = delete;
  FrameWriter& operator=(const FrameWriter&) = delete;

  // False once a write failed (the parent went away); then nothing more is
  // written.
  bool Write(FrameType type, const void* payload, size_t length);
  bool Flush();

 private:
  int fd_;
  bool failed_ = false;
  size_t used_ = 0;
  std::unique_ptr<uint8_t[]> buf_;
};

// Parent side. Reads frames from `fd` until `deadline`; every read waits with
// poll(), so a silent worker cannot stall the parent past the deadline.
//
// With an `exit_fd` (the worker's pidfd, readable once it has exited) the
// reader also stops when the worker is gone but the channel is not at its
// end: everything the worker wrote is in the pipe before its exit is
// signalled, so once the pipe is drained, a channel that is still open is
// held by some other process (a descendant of a replaced worker binary).
// That is kHeldOpen, not a wait until the deadline.
class FrameReader {
 public:
  enum class Result { kOk, kEof, kTimeout, kError, kHeldOpen };
  using Clock = std::chrono::steady_clock;

  FrameReader(int fd, Clock::time_point deadline, int exit_fd = -1)
      : fd_(fd), exit_fd_(exit_fd), deadline_(deadline) {}

  // Reads the next frame header. kEof only at a frame boundary; an EOF inside
  // a header is kError. `max_length[type]` caps each type's payload; a frame
  // over its cap, with a bad magic or an unknown type is kError.
  Result Next(FrameHeader* out, const FrameCaps& max_length);

  // Reads exactly `n` payload bytes into `buf`.
  Result ReadExact(void* buf, size_t n);

  const std::string& error() const { return error_; }
  Clock::time_point deadline() const { return deadline_; }
  // Moves the deadline later by `d`: time the caller spent on its own work
  // (waiting for its output's disk), which the worker should not be charged.
  void Extend(Clock::duration d) { deadline_ += d; }
  // Bytes taken from the channel (some may still wait in the buffer).
  uint64_t bytes_read() const { return bytes_read_; }

  // A look ahead: whether the frame Next() last returned began a fresh
  // fill of the buffer and, behind it, the bytes already read hold a whole
  // frame of `type`. Nothing is consumed or checked beyond each header's
  // magic and type; false wherever the frames leave the buffer. Answers
  // once per buffer fill (one walk of at most kBufferBytes), so that a
  // caller can act on a worker's last frame as soon as it has arrived,
  // before the frames ahead of it are handled.
  bool FreshFillHolds(FrameType type) const;

  // The channel is read in pieces of up to this many bytes into one buffer,
  // so that many small frames cost one poll and one read together (a model
  // of 100,000 small tensors: 400,000 system calls before). A request of at
  // least this size, with the buffer empty, is read straight into the
  // caller's memory. The buffer holds bytes only: every frame header is
  // still decoded and checked against its cap before the caller allocates.
  static constexpr size_t kBufferBytes = 64 << 10;

 private:
  // Reads up to n bytes; 0 means EOF.
  Result ReadSome(void* buf, size_t n, size_t* got);
  // One poll and read from the channel into `buf` (up to n bytes).
  Result ReadChannel(void* buf, size_t n, size_t* got);
  int fd_;
  int exit_fd_;
  Clock::time_point deadline_;
  std::string error_;
  uint64_t bytes_read_ = 0;
  std::unique_ptr<uint8_t[]> buf_;  // allocated on the first small read
  size_t buf_pos_ = 0;
  size_t buf_end_ = 0;
  bool fresh_fill_ = false;  // the last header Next() returned is at offset 0 of a new fill
};

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_FRAME_IO_H_
