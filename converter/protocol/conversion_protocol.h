// The conversion's protocol on top of the sandbox's frames
// (sandbox/worker_protocol.h), defined once for the worker
// (converter/worker/) and the parent (converter/worker_stream.cc):
//
//   LOCKED (the sandbox's)  HEADER (WorkerHeader)  (TENSOR_DATA | TENSOR_REF | TENSOR_XFORM)*
//   DONE (WorkerDone)
//   or, at any point, ERROR (WorkerError) and the end of the stream;
//   or LOCKED  ERROR (a hand-off) and the end of the stream.
//
// Hand-off. There are two workers (converter/worker/): the lean one, which
// links no libhdf5, and the HDF5 one, which links every parser. The parent
// starts the lean one; for an input that needs libhdf5 (loader/hdf5_seam.h)
// it answers with a WorkerError whose only field is hand_off =
// HAND_OFF_HDF5_WORKER, and the parent converts the input again, from the
// start, in the HDF5 worker, which does its own detection; it gets the same
// descriptors (for a model of several files, every file and the
// InputManifest, worker.proto). The parent
// accepts a hand-off only from the lean worker, only after LOCKED, before
// any HEADER, with no other field set, and only once per conversion: any
// other hand-off (from the HDF5 worker, a second one, one with a message or
// findings, an unknown HandOff value) breaks the protocol. Nothing reaches
// the output before the last worker's result is complete. A hostile lean
// worker that asks for a hand-off gains nothing: the HDF5 worker runs in
// the same sandbox.
//
// TENSOR_REF (issue 15: one copy of each tensor byte instead of three). For an
// input of one file, a run of the current tensor's bytes that is the input's
// own bytes, unchanged (a stored, contiguous, little-endian tensor), may be
// sent as its range in the input instead of through the pipe. The parent
// checks the range against the input's size (which it measured itself) and
// against what the current tensor still needs, then reads those bytes from
// its own descriptor of the input and writes and digests them exactly as it
// does a TENSOR_DATA payload. A hostile worker gains nothing: it could send
// the same bytes as data; it can name no byte outside the input the user
// gave. The input's SHA-256 and the "input unchanged" check cover both reads.
//
// TENSOR_XFORM: a whole tensor as a checked transform (transpose, byte
// swap) of a range of a single-file input, which the parent reads and
// transforms itself: converter/protocol/tensor_xform.h.
//
// The messages are in worker.proto; the size of what a worker may send for
// an input of a given size is in stream_limits.h; the caps on each frame,
// the conversion options the worker receives (as sandbox flags) and the
// status codes it may report are here.
#ifndef SAFEMODEL_CONVERTER_PROTOCOL_CONVERSION_PROTOCOL_H_
#define SAFEMODEL_CONVERTER_PROTOCOL_CONVERSION_PROTOCOL_H_

#include <cstdint>
#include <string_view>

#include "converter/protocol/stream_limits.h"
#include "converter/protocol/tensor_xform.h"
#include "proto/base/byte_reader.h"  // StoreLE, LoadLE
#include "safemodel/status.h"
#include "sandbox/worker_protocol.h"

namespace safemodel::protocol {

// A data frame carries at most this much; the worker sends frames of up to
// 4 MiB (a gathered tile) and usually 1 MiB. The parent reuses one buffer.
inline constexpr uint64_t kMaxDataFrameBytes = 16ull << 20;
// A WorkerDone is two varints.
inline constexpr uint64_t kMaxDoneFrameBytes = 4096;

// A TENSOR_REF payload: { u64 offset, u64 length }, little-endian.
inline constexpr uint64_t kTensorRefPayloadBytes = 16;
// Below this, a run goes through the pipe as data: the parent's pread of a
// range costs a system call, which a small copy through the pipe does not.
inline constexpr uint64_t kMinTensorRefBytes = 64 << 10;
// The worker merges adjacent runs of one tensor into one reference up to this
// (the parent reads a reference in pieces of a few MiB whatever its size).
inline constexpr uint64_t kMaxTensorRefBytes = 1ull << 30;

struct TensorRef {
  uint64_t offset = 0;
  uint64_t length = 0;
};

inline void EncodeTensorRef(const TensorRef& ref, uint8_t out[kTensorRefPayloadBytes]) {
  StoreLE(out, ref.offset, 8);
  StoreLE(out + 8, ref.length, 8);
}

inline TensorRef DecodeTensorRef(const uint8_t in[kTensorRefPayloadBytes]) {
  return TensorRef{LoadLE(in, 8), LoadLE(in + 8, 8)};
}

// The payload cap of every frame type for an input with `limits`.
inline void FrameCapsFor(const StreamLimits& limits, sandbox::FrameCaps* caps) {
  using sandbox::FrameType;
  (*caps)[0] = 0;
  (*caps)[static_cast<uint32_t>(FrameType::kHeader)] = limits.header_bytes;
  (*caps)[static_cast<uint32_t>(FrameType::kTensorData)] = kMaxDataFrameBytes;
  (*caps)[static_cast<uint32_t>(FrameType::kDone)] = kMaxDoneFrameBytes;
  (*caps)[static_cast<uint32_t>(FrameType::kError)] = kMaxErrorFrameBytes;
  (*caps)[static_cast<uint32_t>(FrameType::kViolation)] = sandbox::kViolationPayloadBytes;
  (*caps)[static_cast<uint32_t>(FrameType::kLocked)] = sandbox::kMaxLockedPayloadBytes;
  (*caps)[static_cast<uint32_t>(FrameType::kTensorRef)] = kTensorRefPayloadBytes;
  (*caps)[static_cast<uint32_t>(FrameType::kTensorXform)] = kTensorXformPayloadBytes;
}

// The two workers, as installed and built (next to each other).
inline constexpr std::string_view kLeanWorkerName = "safemodel-worker";
inline constexpr std::string_view kHdf5WorkerName = "safemodel-worker-hdf5";

// Conversion options that change the output: passed to the worker as
// sandbox flags (`--weights_only`), echoed in WorkerHeader.options (the
// parent checks the echo), and recorded sorted in the output's provenance.
inline constexpr std::string_view kOptionWeightsOnly = "weights_only";
inline constexpr std::string_view kOptionKeepOptimizer = "keep_optimizer";

// The codes a worker may report in an ERROR frame: what a parser or the
// worker's own setup can find. Anything else (a crash, a timeout, an I/O
// error of the output) is the parent's to determine, never the worker's
// word.
inline bool IsReportableWorkerCode(StatusCode code) {
  switch (code) {
    case StatusCode::kRefused:
    case StatusCode::kMalformed:
    case StatusCode::kUnsupported:
    case StatusCode::kLimitExceeded:
    case StatusCode::kInternal:
    case StatusCode::kSandboxSetupFailed:
    case StatusCode::kInvalidArgument:
      return true;
    default:
      return false;
  }
}

}  // namespace safemodel::protocol

#endif  // SAFEMODEL_CONVERTER_PROTOCOL_CONVERSION_PROTOCOL_H_
