// Length-prefixed frames between the sandboxed worker and the parent.
//
// A frame is a 16-byte little-endian header { u32 magic "SMF1", u32 type,
// u64 payload length } followed by the payload. Control frames carry a
// serialized protobuf message (proto/worker.proto); TENSOR_DATA frames carry
// raw tensor bytes, so that no tensor byte is ever inside a protobuf message
// and the parent can move them with no extra copy.
//
// The sandbox layer knows frame boundaries, not payload meaning, except for
// VIOLATION, which its SIGSYS handler writes, and LOCKED, which LockDown
// writes (lockdown.h).
//
// Trust: FrameReader reads hostile bytes. It checks the magic, the type and
// the length against a per-type cap before the caller allocates anything.
#ifndef SAFEMODEL_SANDBOX_FRAME_IO_H_
#define SAFEMODEL_SANDBOX_FRAME_IO_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace safemodel::sandbox {

inline constexpr uint32_t kFrameMagic = 0x31464d53;  // "SMF1"
inline constexpr size_t kFrameHeaderBytes = 16;

// The worker's file descriptors: the result channel (worker -> parent), the
// input file, and the control channel (parent -> worker), which carries
// exactly one byte, kGoAhead, once the parent has checked the locked-down
// worker in /proc.
inline constexpr int kOutputFd = 3;
inline constexpr int kInputFd = 4;
inline constexpr int kControlFd = 5;
// A model made of several files: fd 4 holds the list (proto/worker.proto,
// InputManifest) and the files are fds 6, 7, ..., one each, read-only.
inline constexpr int kFirstFileFd = 6;
inline constexpr char kGoAhead = 'G';

enum class FrameType : uint32_t {
  kHeader = 1,      // WorkerHeader
  kTensorData = 2,  // raw bytes of the current tensor
  kDone = 3,        // WorkerDone
  kError = 4,       // WorkerError
  kViolation = 5,   // 16 bytes: u32 syscall nr, u32 audit arch, u64 instruction pointer
  kLocked = 6,      // the worker is locked down; payload: its claimed layers, comma-separated
};
inline constexpr uint32_t kMaxFrameType = 6;
inline constexpr uint64_t kViolationPayloadBytes = 16;
// A dozen layer names of at most 32 characters each.
inline constexpr uint64_t kMaxLockedPayloadBytes = 1024;

struct FrameHeader {
  FrameType type;
  uint64_t length;
};

// Encodes a frame header into out[16].
void EncodeFrameHeader(FrameType type, uint64_t length, uint8_t* out);

// Worker side: writes one complete frame (header, then payload) to `fd`,
// retrying short writes. Returns false if the parent went away.
bool WriteFrame(int fd, FrameType type, const void* payload, size_t length);

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
  Result Next(FrameHeader* out, const uint64_t (&max_length)[kMaxFrameType + 1]);

  // Reads exactly `n` payload bytes into `buf`.
  Result ReadExact(void* buf, size_t n);

  const std::string& error() const { return error_; }
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  // Reads up to n bytes; 0 means EOF.
  Result ReadSome(void* buf, size_t n, size_t* got);
  int fd_;
  int exit_fd_;
  Clock::time_point deadline_;
  std::string error_;
  uint64_t bytes_read_ = 0;
};

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_FRAME_IO_H_
