// How one run of the worker ended, as the parent saw it, and the verdict on
// it. ReadWorkerStream (worker_stream.h) fills a StreamOutcome; the parent
// adds how the process ended and whether the input changed (RunOutcome);
// Classify turns that into the conversion's status and the report's worker
// outcome. Classify is a pure function: no process, no file, no clock, so
// every combination is unit-tested (tests/converter/classify_test.cc).
#ifndef SAFEMODEL_CONVERTER_OUTCOME_H_
#define SAFEMODEL_CONVERTER_OUTCOME_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "converter/worker_limits.h"
#include "proto/writer.h"
#include "safemodel/convert.h"
#include "safemodel/status.h"
#include "sandbox/supervisor.h"
#include "sandbox/worker_protocol.h"

namespace safemodel {

// Why the parent stopped reading the worker's stream.
enum class StreamEnd {
  kEof,               // the channel ended at a frame boundary: the worker's own end
  kTimeout,           // the deadline passed while reading
  kHeldOpen,          // the worker exited; another process still holds the channel
  kProtocolError,     // the worker broke the protocol (cause says how)
  kIsolationRefused,  // the locked-down worker lacked a required layer (cause)
  kOutputIoError,     // the parent's own I/O failed: writing the output, or reading a
                      // TENSOR_REF range of the input (cause)
  kOutputLimit,       // the output would exceed its cap or the free space (cause)
};

// What the parent learned from the stream. The first cause that ends the
// stream is the one recorded (End); the worker's own account (its DONE or
// ERROR frame) and a VIOLATION frame are facts gathered before it.
struct StreamOutcome {
  // kHandOff: the lean worker asked for the HDF5 worker, where the stream
  // reader allowed it (conversion_protocol.h).
  enum class Report { kNone, kDone, kError, kHandOff };

  // Records why the stream ended unless it already did (the first cause
  // wins). Returns false, so that a frame handler can `return End(...)`.
  bool End(StreamEnd why, Status cause = Status::Ok());
  StreamEnd end() const { return end_; }
  const Status& cause() const { return cause_; }

  bool locked = false;       // a LOCKED frame came and the parent let the worker go on
  bool header_seen = false;
  Report report = Report::kNone;
  Status worker_error;       // Report::kError: what the worker reported
  // The first VIOLATION frame: the system call the sandbox trapped.
  std::optional<sandbox::Violation> violation;
  uint64_t data_bytes = 0;   // tensor bytes received
  std::unique_ptr<SafemodelWriter> writer;
  // Set by the caller: the writer computes the output's SHA-256 as it
  // writes (SafemodelWriter::HashFile), asking this for the input's.
  SafemodelWriter::InputSha256Source hash_output_with;
  // Set by the caller: the output will be fsynced, so the writer writes it
  // behind (SafemodelWriter::WriteBehind).
  bool write_behind = false;

 private:
  bool ended_ = false;
  StreamEnd end_ = StreamEnd::kEof;
  Status cause_;
};

// Everything Classify weighs.
struct RunOutcome {
  const StreamOutcome* stream = nullptr;
  sandbox::Worker::Exit exit;
  Status input_unchanged;        // InputFile::CheckUnchanged after the worker ended
  std::string held_open_detail;  // kHeldOpen: what became of the process holding the channel
  uint64_t timeout_ms = 0;       // the wall-clock limit the run had
  WorkerLimits limits;           // the worker's CPU and memory limits
};

struct Verdict {
  Status status;  // OK: the result may be committed
  // The run ended in a valid hand-off: the conversion goes on in the HDF5
  // worker (status is then kUnsupported, for a caller that does not).
  bool hand_off = false;
  WorkerOutcome::Kind kind = WorkerOutcome::Kind::kUnknown;
  int syscall_nr = -1;       // kSeccomp with a reported number
  std::string syscall_name;  // its name on this architecture, or ""
};

// The verdict on a run, most specific cause first (README "Sandbox"):
// input changed > timeout > seccomp violation > a channel held open after
// the worker's exit > output I/O error or limit > a signal the worker did
// not get from us > missing isolation > invalid result > crash > the
// worker's own error report or hand-off > non-zero exit > incomplete
// result. An input
// that changed underneath explains whatever the worker did (a SIGBUS in its
// map, odd bytes, a refusal of bytes that are no longer there); a signal
// from outside explains a stream cut short or a worker gone before its
// release. OK only for a complete result from a worker that exited 0.
Verdict Classify(const RunOutcome& run);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_OUTCOME_H_
