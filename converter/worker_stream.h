// The parent's reading of the worker's frame stream (converter/pipeline.cc
// runs the process; this validates what it says).
//
// Trust: everything read here comes from a process that parsed attacker
// bytes. Every frame is capped before it is read, the caps are derived from
// the input's size (stream_limits.h) so that the parent's memory is bounded
// by its input, the proposed header is rebuilt from validated values (unknown
// protobuf fields dropped, strings moved out of the parsed proposal rather
// than copied), and every tensor byte is counted by the writer.
//
// Order on the wire (converter/protocol/conversion_protocol.h): LOCKED (the
// worker is locked down; the parent checks it in /proc before anything else
// is read), then HEADER (TENSOR_DATA | TENSOR_REF)* DONE, or ERROR at any point. An ERROR
// before LOCKED is a setup failure. An ERROR holding a hand-off is accepted
// only where conversion_protocol.h allows it.
#ifndef SAFEMODEL_CONVERTER_WORKER_STREAM_H_
#define SAFEMODEL_CONVERTER_WORKER_STREAM_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "converter/outcome.h"
#include "converter/protocol/stream_limits.h"
#include "proto/writer.h"
#include "safemodel/convert.h"
#include "sandbox/frame_io.h"

namespace safemodel {

// Called on the LOCKED frame with the layers the worker claims; must check
// the worker itself and let it go on (sandbox::Worker::Release) or return an
// error, which ends the stream (StreamEnd::kIsolationRefused).
using LockedHook = std::function<Status(const std::vector<std::string>& claimed)>;

// Called as the output grows (ConvertOptions::progress and ::cancel); may
// be empty. Returning false cancels: the stream ends as an output failure
// (StreamEnd::kOutputIoError), so the worker is killed and nothing is kept.
using ProgressHook = std::function<bool(const ConvertProgress&)>;

// Called once, when the stream's last frame (DONE, ERROR or a hand-off) has
// arrived: the worker has nothing more to send and waits until it is
// dismissed (sandbox::Worker::Dismiss). Called as soon as that frame is in
// the reader's buffer, once the worker was released (a small result comes
// whole, and its worker then exits while the frames ahead of the last are
// handled), else when it is accepted. Nothing is decided on it: the stream
// is still read and checked to its end after it. May be empty.
using LastFrameHook = std::function<void()>;

// Reads frames until EOF, a protocol error, a timeout or an I/O error on the
// output (the first of them recorded in *st), writing a valid result to
// `out_fd` through SafemodelWriter. Findings, source format and the
// worker's claimed isolation go to *report. The DONE frame's counts must be
// what arrived, and the options the worker echoes in its header the ones
// it was given (`options`, sorted). `max_output_bytes` (0: none) caps the output
// file; independently, the output's declared size is reserved on the file
// system `out_fd` is on (ReserveOutputSpace), so a worker that declares
// terabytes is stopped before it writes them. `hand_off_allowed`: the
// worker is the lean one and no hand-off happened yet in this conversion;
// otherwise a hand-off is a protocol error. `input_fd`: the input of a
// single-file conversion, from which TENSOR_REF ranges are read
// (conversion_protocol.h); -1 for several files, where a reference is a
// protocol error. `on_last_frame`: see LastFrameHook.
void ReadWorkerStream(sandbox::FrameReader& reader, int out_fd, uint64_t input_size, int input_fd,
                      const std::vector<std::string>& options, DigestAlgorithm digest,
                      uint64_t max_output_bytes, const LockedHook& on_locked,
                      ConvertReport* report, StreamOutcome* st, bool hand_off_allowed = false,
                      const ProgressHook& on_progress = ProgressHook(),
                      const LastFrameHook& on_last_frame = LastFrameHook());

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_WORKER_STREAM_H_
