// The contract between the parent and the sandboxed worker process, written
// once for both ends (as leveldb's log_format.h is for its writer and
// reader): the worker's file descriptors, its arguments, the frames on the
// result channel, the LOCKED claim and the go-ahead, and the VIOLATION
// report. Every encoding here has its decoding beside it, and the tests
// (tests/sandbox/worker_protocol_test.cc) check each pair.
//
// The sandbox knows frame boundaries and these few payloads, nothing about
// models: what HEADER, DONE and ERROR carry is the conversion's business
// (converter/protocol/conversion_protocol.h).
//
// Trust: the parent decodes what a process that parsed attacker bytes
// wrote; every decoder here checks sizes and values before use.
#ifndef SAFEMODEL_SANDBOX_WORKER_PROTOCOL_H_
#define SAFEMODEL_SANDBOX_WORKER_PROTOCOL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "safemodel/status.h"

namespace safemodel::sandbox {

// --- File descriptors -------------------------------------------------------
// The worker starts with exactly these open: the result channel (worker ->
// parent, frames), the input file (read-only) and the control channel
// (parent -> worker), which carries two bytes: kGoAhead, once the parent has
// checked the locked-down worker in /proc, and kDismiss, once the parent
// has read the worker's last frame and its peak memory (a worker waits for
// it before it exits: AwaitDismissal, lockdown.h). A byte rather than the
// channel's close: a process the host forks while a conversion runs holds a
// copy of the parent's end, and the close would not reach the worker.
inline constexpr int kOutputFd = 3;
inline constexpr int kInputFd = 4;
inline constexpr int kControlFd = 5;
// A model made of several files: kInputFd holds their list (the caller's
// message) and the files are fds 6, 7, ..., one each, read-only.
inline constexpr int kFirstFileFd = 6;
inline constexpr char kGoAhead = 'G';
inline constexpr char kDismiss = 'D';

// --- Arguments --------------------------------------------------------------
// argv[1..] of the worker: `--parent-pid=N --input-size=N --address-space=N
// --memory-limit=N --cpu-seconds=N --input-files=N --manifest-size=N`
// (decimal, no sign), then one `--<flag>`
// per entry of `flags` (lower-case letters, digits, '_' and '-'), and
// kReexecutedFlag when EnsureAddressRandomization re-executed the worker.
struct WorkerArgs {
  pid_t parent_pid = 0;        // the process that started the worker
  uint64_t input_size = 0;     // bytes of the input on kInputFd
  uint64_t address_space = 0;  // RLIMIT_AS the worker sets at lockdown (0: none)
  uint64_t memory_limit = 0;   // the parsers' allocation budget
  uint64_t cpu_seconds = 0;    // RLIMIT_CPU soft limit (0: none)
  // A model made of several files: how many follow from kFirstFileFd, and
  // the size of their list on kInputFd (0, 0: one file, on kInputFd).
  // Their bounds are the caller's (the sandbox keeps the descriptors open).
  uint64_t input_files = 0;
  uint64_t manifest_size = 0;
  // Names without the leading "--": conversion options ("weights_only") or
  // a stand-in worker's own switches; their meaning is the caller's.
  std::vector<std::string> flags;
  bool reexecuted = false;     // kReexecutedFlag was present
};

// The argument a worker re-executed by EnsureAddressRandomization() carries,
// so that it cannot loop.
inline constexpr const char* kReexecutedFlag = "--reexecuted";

// argv[1..] for `args` (without kReexecutedFlag, which only the re-exec adds).
std::vector<std::string> EncodeWorkerArgs(const WorkerArgs& args);

// Parses argv[1..argc-1]. Every number is checked for overflow (a pid must
// fit pid_t), every key may appear once, anything else is refused; the
// parent pid and the input size are required and non-zero. Errors are
// kInvalidArgument naming the argument.
Result<WorkerArgs> ParseWorkerArgs(int argc, const char* const* argv);

// --- Frames -----------------------------------------------------------------
// A frame is a 16-byte little-endian header { u32 magic "SMF1", u32 type,
// u64 payload length } followed by the payload.
inline constexpr uint32_t kFrameMagic = 0x31464d53;  // "SMF1"
inline constexpr size_t kFrameHeaderBytes = 16;

enum class FrameType : uint32_t {
  kHeader = 1,      // the conversion's proposal (converter/protocol)
  kTensorData = 2,  // raw bytes of the current tensor
  kDone = 3,        // the conversion's end (converter/protocol)
  kError = 4,       // an error report (converter/protocol)
  kViolation = 5,   // the SIGSYS reporter's Violation (below)
  kLocked = 6,      // the worker is locked down; payload: its claim (below)
  kTensorRef = 7,   // the current tensor's next bytes, as a range of the input (converter/protocol)
  kTensorXform = 8, // the current tensor, as a transform of a range of the input (converter/protocol)
};
inline constexpr uint32_t kMaxFrameType = 8;

struct FrameHeader {
  FrameType type;
  uint64_t length;
};

// Payload caps per type, indexed by the type's number (index 0 unused).
using FrameCaps = uint64_t[kMaxFrameType + 1];

// Encodes a frame header into out[kFrameHeaderBytes]. Async-signal-safe.
void EncodeFrameHeader(FrameType type, uint64_t length, uint8_t* out);

// Decodes and checks a frame header: the magic, a known type, and a length
// within `caps[type]`. Errors are kMalformed, naming what is wrong.
Result<FrameHeader> DecodeFrameHeader(const uint8_t* in, const FrameCaps& caps);

// --- LOCKED: the worker's claim ----------------------------------------------
// The layers the worker believes are in force ("userns", "seccomp", ...),
// comma-separated: its claim, which the parent reports beside what it
// observes in /proc.
inline constexpr uint64_t kMaxLockedPayloadBytes = 1024;  // a dozen names of <= 32 characters
inline constexpr size_t kMaxIsolationLayers = 16;

// The payload for `layers`, cut to kMaxLockedPayloadBytes.
std::string EncodeLockedClaim(const std::vector<std::string>& layers);

// The layer names of a payload: each an identifier (CheckIdentifier), at
// most kMaxIsolationLayers of them. Errors are kMalformed.
Result<std::vector<std::string>> DecodeLockedClaim(std::string_view payload);

// --- VIOLATION: a trapped system call ------------------------------------------
// Written by the worker's SIGSYS handler before it dies: u32 syscall number,
// u32 audit architecture, u64 instruction pointer, little-endian.
inline constexpr uint64_t kViolationPayloadBytes = 16;

struct Violation {
  uint32_t syscall_nr = 0;
  uint32_t arch = 0;
  uint64_t instruction_pointer = 0;
};

// Async-signal-safe (no allocation, no library call).
void EncodeViolation(const Violation& violation, uint8_t* out);
Violation DecodeViolation(const uint8_t* in);

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_WORKER_PROTOCOL_H_
