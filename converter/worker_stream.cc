#include "converter/worker_stream.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include "converter/input_transform.h"
#include "converter/output_file.h"
#include "converter/protocol/conversion_protocol.h"
#include "converter/protocol/worker.pb.h"
#include "proto/base/text.h"
#include "proto/wire/wire.h"
#include "safemodel/limits.h"

namespace safemodel {

namespace {

using sandbox::FrameType;

// A TENSOR_REF's range is read and written in pieces of this size: small
// enough that the pread's copy is still in the L2 cache when XXH3 and the
// write read it (4 MiB pieces went through L3: tests/bench/PROFILE.md,
// fourth round), large enough that the system calls do not matter (8,192
// preads and writes per GiB).
constexpr uint64_t kRefReadBytes = 256 << 10;

// The worker echoes the conversion options it understood from its
// arguments; they must be exactly the ones it was given, so that a drift
// between the two ends of the argument contract cannot go unnoticed.
Status CheckEchoedOptions(const google::protobuf::RepeatedPtrField<std::string>& echoed,
                          const std::vector<std::string>& given) {
  std::vector<std::string> sorted(echoed.begin(), echoed.end());
  std::sort(sorted.begin(), sorted.end());
  if (sorted == given) return Status::Ok();
  auto list = [](const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& o : v) out += (out.empty() ? "" : ", ") + Printable(o, 40);
    return "[" + out + "]";
  };
  return Status::Malformed("the worker converted with options " + list(sorted) +
                           ", not the requested " + list(given));
}

// Builds the output header, but for its tensor entries, from the worker's
// proposal (`count` entries went to the writer's table: ReadHeaderFrame).
// Nothing unvalidated reaches the file: the table keeps name, dtype, shape,
// alias and source index of each entry (no unknown fields; the writer
// checks them all and lays them out), the trees are checked and
// canonicalised (wire::SanitizeValue), findings are re-encoded field by
// field, and the envelope (source format, options, provenance) is the
// parent's own. Trees are handed over, not copied, so the parent holds one
// copy of the header at a time.
Result<v1::Header> BuildHeader(worker::WorkerHeader&& in, uint64_t count, uint64_t input_size,
                               const StreamLimits& limits, const std::vector<std::string>& options,
                               DigestAlgorithm digest, ConvertReport* report) {
  SAFEMODEL_RETURN_IF_ERROR(CheckIdentifier(in.source_format(), "source format"));
  report->source_format = in.source_format();
  SAFEMODEL_RETURN_IF_ERROR(CheckEchoedOptions(in.options(), options));
  if (count > kMaxTensorCount) {
    return Status::LimitExceeded(Num(count) + " tensors exceed the limit of " + Num(kMaxTensorCount));
  }
  if (count > limits.tensors) {
    return Status::LimitExceeded(Num(count) + " tensors exceed the limit of " + Num(limits.tensors) +
                                 " for an input of " + Num(input_size) + " bytes");
  }
  SAFEMODEL_RETURN_IF_ERROR(wire::CheckFindings(in.findings()));
  SAFEMODEL_RETURN_IF_ERROR(CheckFindingsBudget(in.findings(), limits));
  v1::Header out;
  out.set_digest_algorithm(static_cast<v1::DigestAlgorithm>(digest));
  if (in.has_architecture()) {
    out.set_allocated_architecture(in.release_architecture());
    SAFEMODEL_RETURN_IF_ERROR(wire::SanitizeValue(out.mutable_architecture(), "architecture"));
  }
  if (in.has_metadata()) {
    out.set_allocated_metadata(in.release_metadata());
    SAFEMODEL_RETURN_IF_ERROR(wire::SanitizeValue(out.mutable_metadata(), "metadata"));
  }
  v1::Provenance* p = out.mutable_provenance();
  p->set_source_format(in.source_format());
  p->set_input_size(input_size);
  p->set_converter_version(ConverterVersion());
  for (const v1::Finding& f : in.findings()) {
    if (f.severity() == "refused") {
      return Status::Malformed("the worker reported a refusal in a successful conversion");
    }
    Finding finding = wire::FindingFromProto(f);
    wire::FindingToProto(finding, p->add_findings());
    report->findings.push_back(std::move(finding));
  }
  for (const std::string& o : options) p->add_options(o);
  return out;
}

// Reads a control frame's payload into a transient buffer and parses it with
// an object budget; the raw bytes are freed on return, before the caller
// builds anything from the message.
Status ReadMessage(sandbox::FrameReader& reader, uint64_t length, google::protobuf::MessageLite* msg,
                   const char* what, uint64_t max_objects) {
  std::string buf(length, '\0');
  if (reader.ReadExact(buf.data(), length) != sandbox::FrameReader::Result::kOk) {
    return Status::Malformed(std::string("reading the ") + what + " frame: " + reader.error());
  }
  if (!wire::ParseBounded(AsBytes(buf), msg, max_objects)) {
    return Status::Malformed(std::string("the worker's ") + what + " frame is not valid");
  }
  return Status::Ok();
}

// Adds the entries of a HEADER frame to the writer's table, up to
// `max_tensors`; those past it are counted, not kept: the header is refused
// for their number (BuildHeader).
class TableSink : public wire::EntrySink {
 public:
  TableSink(format::TensorTable* tensors, uint64_t max_tensors)
      : tensors_(tensors), max_(max_tensors) {}
  void Add(const google::protobuf::Message& entry) override {
    if (++count_ <= max_) tensors_->Add(static_cast<const v1::TensorInfo&>(entry));
  }
  uint64_t count() const { return count_; }

 private:
  format::TensorTable* tensors_;
  uint64_t max_;
  uint64_t count_ = 0;
};

// The payload of the frame being read, for wire::ParseBoundedEntries.
class FrameSource final : public wire::ByteSource {
 public:
  explicit FrameSource(sandbox::FrameReader& reader) : reader_(reader) {}
  bool Read(uint8_t* out, size_t n) override {
    failed_ = reader_.ReadExact(out, n) != sandbox::FrameReader::Result::kOk;
    return !failed_;
  }
  bool failed() const { return failed_; }

 private:
  sandbox::FrameReader& reader_;
  bool failed_ = false;
};

// The HEADER frame, parsed as ReadMessage would, but streamed from the
// reader a window at a time (wire::kParseWindowBytes) rather than read
// into a buffer of its size, and with each tensor entry parsed on its own
// into one reused message and added to `tensors` (the writer's compact
// table) rather than kept as a message. For 100,000 small tensors the
// frame was 2 MB beside the table's 2.4 (tests/bench/PROFILE.md, eleventh
// round). *count: the entries the frame holds.
// A frame both malformed and cut short reports "not valid", not "reading
// the header frame": the parse stops at the first malformed field, before
// the reader reaches the cut (the whole frame used to be read first). The
// precedence is accepted: both fail closed, and draining the rest of the
// frame only to report the read failure first would change nothing else.
Status ReadHeaderFrame(sandbox::FrameReader& reader, uint64_t length, worker::WorkerHeader* msg,
                       format::TensorTable* tensors, uint64_t* count, const StreamLimits& limits) {
  FrameSource source(reader);
  v1::TensorInfo entry;
  TableSink sink(tensors, std::min<uint64_t>(limits.tensors, kMaxTensorCount));
  const bool parsed =
      wire::ParseBoundedEntries(source, length, msg, worker::WorkerHeader::kTensorsFieldNumber,
                                &entry, &sink, limits.header_objects);
  if (source.failed()) return Status::Malformed("reading the header frame: " + reader.error());
  if (!parsed) return Status::Malformed("the worker's header frame is not valid");
  *count = sink.count();
  return Status::Ok();
}

// One stream's state and the handling of each frame kind. Each handler
// returns false to end the stream (the reason is recorded in *st).
class StreamReader {
 public:
  StreamReader(sandbox::FrameReader& reader, int out_fd, uint64_t input_size, int input_fd,
               const std::vector<std::string>& options, DigestAlgorithm digest,
               uint64_t max_output_bytes, const LockedHook& on_locked, ConvertReport* report,
               StreamOutcome* st, bool hand_off_allowed, const ProgressHook& on_progress,
               const LastFrameHook& on_last_frame)
      : reader_(reader), out_fd_(out_fd), input_size_(input_size), input_fd_(input_fd),
        options_(options),
        digest_(digest), max_output_bytes_(max_output_bytes), on_locked_(on_locked),
        report_(report), st_(st), limits_(StreamLimitsFor(input_size)),
        hand_off_allowed_(hand_off_allowed), on_progress_(on_progress),
        on_last_frame_(on_last_frame) {}

  void Run() {
    sandbox::FrameCaps caps;
    protocol::FrameCapsFor(limits_, &caps);
    for (;;) {
      sandbox::FrameHeader fh;
      auto r = reader_.Next(&fh, caps);
      if (r == sandbox::FrameReader::Result::kTimeout) {
        st_->End(StreamEnd::kTimeout);
        return;
      }
      if (r == sandbox::FrameReader::Result::kHeldOpen) {
        st_->End(StreamEnd::kHeldOpen);
        return;
      }
      if (r == sandbox::FrameReader::Result::kEof) {
        st_->End(StreamEnd::kEof);
        return;
      }
      if (r == sandbox::FrameReader::Result::kError) return Protocol(reader_.error());
      // A small result arrives whole: with its last frame already read
      // behind this one, the released worker is dismissed now, and exits
      // while the frames ahead are handled rather than after them (the
      // hook only records its peak memory; every frame is still checked).
      if (st_->locked && (reader_.FreshFillHolds(FrameType::kDone) ||
                          reader_.FreshFillHolds(FrameType::kError))) {
        LastFrame();
      }
      if (!st_->locked && fh.type != FrameType::kLocked && fh.type != FrameType::kError) {
        return Protocol("a frame of type " + Num(static_cast<uint32_t>(fh.type)) +
                        " before the worker reported its lockdown");
      }
      if (fh.type != FrameType::kViolation && st_->report != StreamOutcome::Report::kNone) {
        return Protocol("frame after the end of the result");
      }
      const bool had_last_frame = st_->report != StreamOutcome::Report::kNone;
      bool go_on = false;
      switch (fh.type) {
        case FrameType::kLocked: go_on = OnLocked(fh.length); break;
        case FrameType::kHeader: go_on = OnHeader(fh.length); break;
        case FrameType::kTensorData: go_on = OnData(fh.length); break;
        case FrameType::kTensorRef: go_on = OnRef(fh.length); break;
        case FrameType::kTensorXform: go_on = OnXform(fh.length); break;
        case FrameType::kDone: go_on = OnDone(fh.length); break;
        case FrameType::kError: go_on = OnError(fh.length); break;
        case FrameType::kViolation: go_on = OnViolation(); break;
      }
      if (!go_on) return;
      // The worker's last frame, accepted: it now waits for its dismissal,
      // and the channel's end follows it (or frames it may not send).
      if (!had_last_frame && st_->report != StreamOutcome::Report::kNone) LastFrame();
    }
  }

 private:
  void LastFrame() {
    if (last_frame_called_ || !on_last_frame_) return;
    last_frame_called_ = true;
    on_last_frame_();
  }

  void Protocol(std::string msg) {
    st_->End(StreamEnd::kProtocolError, Status::Malformed(std::move(msg)));
  }
  bool Fail(std::string msg) {
    Protocol(std::move(msg));
    return false;
  }

  bool OnLocked(uint64_t length) {
    if (st_->locked) return Fail("second lockdown frame");
    std::string payload(length, '\0');
    if (reader_.ReadExact(payload.data(), length) != sandbox::FrameReader::Result::kOk) {
      return Fail("reading the lockdown frame: " + reader_.error());
    }
    auto decoded = sandbox::DecodeLockedClaim(payload);
    if (!decoded.ok()) return Fail(decoded.status().message());
    const std::vector<std::string>& claimed = *decoded;
    report_->worker.claimed_isolation = claimed;
    Status accepted = on_locked_ ? on_locked_(claimed) : Status::Ok();
    if (!accepted.ok()) return st_->End(StreamEnd::kIsolationRefused, std::move(accepted));
    st_->locked = true;
    return true;
  }

  bool OnHeader(uint64_t length) {
    if (st_->header_seen) return Fail("second header frame");
    st_->header_seen = true;
    std::optional<v1::Header> header;
    format::TensorTable tensors;
    {
      worker::WorkerHeader wh;
      uint64_t count = 0;
      Status s = ReadHeaderFrame(reader_, length, &wh, &tensors, &count, limits_);
      if (!s.ok()) return Fail(s.message());
      auto built = BuildHeader(std::move(wh), count, input_size_, limits_, options_,
                               digest_, report_);
      if (!built.ok()) return Fail("invalid header from the worker: " + built.status().ToString());
      header.emplace(std::move(*built));
    }  // what is left of the proposal is freed here, before the writer serialises
    auto writer = SafemodelWriter::Plan(out_fd_, std::move(tensors), std::move(*header));
    header.reset();
    if (!writer.ok()) return Fail("invalid header from the worker: " + writer.status().ToString());
    st_->writer = std::move(*writer);
    if (st_->hash_output_with) st_->writer->HashFile(st_->hash_output_with);
    if (st_->write_behind) st_->writer->WriteBehind();
    // The whole output's space is reserved before its first byte, so that a
    // full file system fails here, as a limit (exit 4).
    Status reserved = ReserveOutputSpace(out_fd_, st_->writer->planned_file_size(), max_output_bytes_);
    if (!reserved.ok()) return st_->End(StreamEnd::kOutputLimit, std::move(reserved));
    Status written = st_->writer->WriteHeader();
    if (written.code() == StatusCode::kIoError) {
      return st_->End(StreamEnd::kOutputIoError, std::move(written));
    }
    if (!written.ok()) return Fail("invalid header from the worker: " + written.ToString());
    return Progress(/*force=*/true);
  }

  // Reports the output's growth every kProgressStepBytes; false once the
  // hook asked to cancel (the stream has then ended).
  bool Progress(bool force) {
    if (st_->writer) {
      // The parent's waits for its own disk (SafemodelWriter::WriteBehind)
      // are not the worker's time.
      const auto waited = st_->writer->behind_waited();
      reader_.Extend(waited - credited_);
      credited_ = waited;
    }
    if (!on_progress_ || !st_->writer) return true;
    const uint64_t written = st_->writer->file_size();
    if (!force && written - last_progress_ < kProgressStepBytes) return true;
    last_progress_ = written;
    if (on_progress_({written, st_->writer->planned_file_size()})) return true;
    return st_->End(StreamEnd::kOutputIoError,
                    Status::IoError("the conversion was cancelled by the caller; nothing was written"));
  }

  bool OnData(uint64_t length) {
    if (!st_->writer) return Fail("tensor data before the header");
    if (length == 0) return Fail("empty tensor data frame");
    if (length > st_->writer->current_remaining()) {
      return Fail("tensor data frame of " + Num(length) + " bytes exceeds what the " +
                  "current tensor still needs (" + Num(st_->writer->current_remaining()) + ")");
    }
    if (length > data_buf_size_) {
      data_buf_.reset(new uint8_t[length]);
      data_buf_size_ = length;
    }
    if (reader_.ReadExact(data_buf_.get(), length) != sandbox::FrameReader::Result::kOk) {
      return Fail("reading tensor data: " + reader_.error());
    }
    Status s = st_->writer->Append(ByteView(data_buf_.get(), length));
    if (!s.ok()) {
      if (s.code() == StatusCode::kIoError) return st_->End(StreamEnd::kOutputIoError, std::move(s));
      return Fail(s.message());
    }
    st_->data_bytes += length;
    return Progress(/*force=*/false);
  }

  // A range of the input standing for the current tensor's next bytes
  // (conversion_protocol.h): checked against the input's size and the
  // tensor's remaining bytes, then read from our own descriptor of the input
  // and appended like data, in pieces of kRefReadBytes.
  // The fixed-size payload of a record that names bytes of the one input
  // (a tensor reference or transform, `what`): only after the header, only
  // for a single-file input, exactly `size` bytes.
  bool ReadInputRecord(uint64_t length, uint8_t* payload, size_t size, const char* what) {
    if (!st_->writer) return Fail(std::string(what) + " before the header");
    if (input_fd_ < 0) return Fail(std::string(what) + " for an input of several files");
    if (length != size) return Fail(std::string(what) + " of the wrong size");
    if (reader_.ReadExact(payload, size) != sandbox::FrameReader::Result::kOk) {
      return Fail("reading " + std::string(what) + ": " + reader_.error());
    }
    return true;
  }

  bool OnRef(uint64_t length) {
    uint8_t payload[protocol::kTensorRefPayloadBytes];
    if (!ReadInputRecord(length, payload, sizeof payload, "a tensor reference")) return false;
    const protocol::TensorRef ref = protocol::DecodeTensorRef(payload);
    if (ref.length == 0) return Fail("an empty tensor reference");
    if (ref.offset > input_size_ || ref.length > input_size_ - ref.offset) {
      return Fail("a tensor reference to bytes " + Num(ref.offset) + " + " + Num(ref.length) +
                  " outside the " + Num(input_size_) + "-byte input");
    }
    if (ref.length > st_->writer->current_remaining()) {
      return Fail("a tensor reference of " + Num(ref.length) + " bytes exceeds what the " +
                  "current tensor still needs (" + Num(st_->writer->current_remaining()) + ")");
    }
    const uint64_t piece = std::min<uint64_t>(ref.length, kRefReadBytes);
    if (piece > data_buf_size_) {
      data_buf_.reset(new uint8_t[piece]);
      data_buf_size_ = piece;
    }
    for (uint64_t done = 0; done < ref.length;) {
      const auto want = static_cast<size_t>(std::min<uint64_t>(piece, ref.length - done));
      const ssize_t n = pread(input_fd_, data_buf_.get(), want, static_cast<off_t>(ref.offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // The input shrank or failed under us: not the worker's doing.
        return st_->End(StreamEnd::kOutputIoError,
                        Status::IoError("reading the input at byte " + Num(ref.offset + done) +
                                        " failed" +
                                        (n < 0 ? std::string(": ") + std::strerror(errno)
                                               : std::string(" (it shrank during the conversion)")) +
                                        "; nothing was written"));
      }
      Status s = st_->writer->Append(ByteView(data_buf_.get(), static_cast<size_t>(n)));
      if (!s.ok()) {
        if (s.code() == StatusCode::kIoError) return st_->End(StreamEnd::kOutputIoError, std::move(s));
        return Fail(s.message());
      }
      done += static_cast<uint64_t>(n);
      // A reference may stand for a whole tensor: progress and the caller's
      // cancel are asked inside it, as for data frames.
      if (!Progress(/*force=*/false)) return false;
    }
    st_->data_bytes += ref.length;
    return true;
  }

  // A whole tensor as a transform of a range of the input
  // (converter/protocol/tensor_xform.h): every field checked, the tensor
  // not started, its size and element size the record's; then read, turned
  // into C-order little-endian bytes and appended like data.
  bool OnXform(uint64_t length) {
    uint8_t payload[protocol::kTensorXformPayloadBytes];
    if (!ReadInputRecord(length, payload, sizeof payload, "a tensor transform")) return false;
    const protocol::TensorXform x = protocol::DecodeTensorXform(payload);
    auto plan = protocol::CheckTensorXform(x, input_size_);
    if (!plan.ok()) return Fail(plan.status().message());
    SafemodelWriter& w = *st_->writer;
    if (w.complete()) return Fail("a tensor transform after the last tensor");
    if (w.current_remaining() != w.current_size()) {
      return Fail("a tensor transform in the middle of tensor #" + Num(static_cast<uint64_t>(w.current_tensor())));
    }
    if (plan->bytes != w.current_size()) {
      return Fail("a tensor transform of " + Num(plan->bytes) + " bytes for tensor #" +
                  Num(static_cast<uint64_t>(w.current_tensor())) + " of " + Num(w.current_size()));
    }
    const auto dtype = static_cast<DType>(w.current_dtype());
    if (dtype == DType::kBool) return Fail("a tensor transform for a bool tensor");
    if (DTypeSize(dtype) != x.elem_size) {
      return Fail("a tensor transform of " + Num(x.elem_size) + "-byte elements for a tensor of " +
                  Num(DTypeSize(dtype)) + "-byte elements");
    }
    XformSink sink(this);
    Status s = StreamInputTransform(input_fd_, x, *plan, dtype, xform_buffers_, sink);
    if (sink.ended) return false;  // cancelled, or the output failed: already recorded
    if (!s.ok()) {
      // The input shrank or failed under us, or the parent's own buffers
      // could not be had: not the worker's doing.
      if (s.code() == StatusCode::kIoError) return st_->End(StreamEnd::kOutputIoError, std::move(s));
      if (s.code() == StatusCode::kLimitExceeded) return st_->End(StreamEnd::kOutputLimit, std::move(s));
      return Fail(s.message());
    }
    st_->data_bytes += plan->bytes;
    return true;
  }

  // Appends a transform's bytes as data, asking for progress as it goes.
  struct XformSink final : loader::ChunkSink {
    explicit XformSink(StreamReader* r) : reader(r) {}
    Status Write(ByteView chunk) override {
      Status s = reader->st_->writer->Append(chunk);
      if (!s.ok()) {
        if (s.code() == StatusCode::kIoError) {
          ended = true;
          reader->st_->End(StreamEnd::kOutputIoError, s);
        }
        return s;
      }
      if (!reader->Progress(/*force=*/false)) {
        ended = true;
        return Status::IoError("cancelled");
      }
      return Status::Ok();
    }
    StreamReader* reader;
    bool ended = false;
  };

  bool OnDone(uint64_t length) {
    if (!st_->writer) return Fail("done before the header");
    if (!st_->writer->complete()) {
      return Fail("done while tensor #" + Num(static_cast<uint64_t>(st_->writer->current_tensor())) +
                  " misses " + Num(st_->writer->current_remaining()) + " bytes");
    }
    worker::WorkerDone done;
    Status s = ReadMessage(reader_, length, &done, "done", 16);
    if (!s.ok()) return Fail(s.message());
    // The worker's account must be what arrived.
    const uint64_t tensors = st_->writer->data_tensor_count();
    if (done.tensors_sent() != tensors || done.bytes_sent() != st_->data_bytes) {
      return Fail("the done frame counts " + Num(done.tensors_sent()) + " tensors and " +
                  Num(done.bytes_sent()) + " bytes, but " + Num(tensors) + " tensors and " +
                  Num(st_->data_bytes) + " bytes arrived");
    }
    st_->report = StreamOutcome::Report::kDone;
    return true;
  }

  bool OnError(uint64_t length) {
    worker::WorkerError we;
    Status s = ReadMessage(reader_, length, &we, "error", limits_.header_objects);
    if (!s.ok()) return Fail(s.message());
    if (we.hand_off() != worker::HAND_OFF_NONE) return OnHandOff(we);
    auto code = static_cast<StatusCode>(we.code());
    if (!protocol::IsReportableWorkerCode(code)) {
      return Fail("the worker reported status code " + Num(we.code()));
    }
    s = wire::CheckFindings(we.findings());
    if (s.ok()) s = CheckFindingsBudget(we.findings(), limits_);
    if (!s.ok()) return Fail(s.message());
    if (we.message().size() > wire::kMaxFindingTextBytes || !IsValidUtf8(we.message())) {
      return Fail("the worker's error message is too long or not UTF-8");
    }
    if (!we.source_format().empty()) {
      s = CheckIdentifier(we.source_format(), "source format");
      if (!s.ok()) return Fail(s.message());
      report_->source_format = we.source_format();
    }
    for (const auto& f : we.findings()) report_->findings.push_back(wire::FindingFromProto(f));
    st_->worker_error = Status(code, std::move(*we.mutable_message()));
    st_->report = StreamOutcome::Report::kError;
    return true;
  }

  // A hand-off request: conversion_protocol.h lists when it is valid.
  bool OnHandOff(const worker::WorkerError& we) {
    if (we.hand_off() != worker::HAND_OFF_HDF5_WORKER) {
      return Fail("the worker asked for an unknown hand-off (" +
                  Num(static_cast<uint64_t>(we.hand_off())) + ")");
    }
    if (!hand_off_allowed_) {
      return Fail("a hand-off to the HDF5 worker from a worker that may not ask for one "
                  "(the HDF5 worker, or a second hand-off)");
    }
    if (!st_->locked) return Fail("a hand-off before the worker reported its lockdown");
    if (st_->header_seen) return Fail("a hand-off after the header");
    if (we.code() != 0 || !we.message().empty() || we.findings_size() != 0 ||
        we.isolation_size() != 0) {
      return Fail("a hand-off with other fields set");
    }
    st_->report = StreamOutcome::Report::kHandOff;
    return true;
  }

  bool OnViolation() {
    uint8_t v[sandbox::kViolationPayloadBytes];
    if (reader_.ReadExact(v, sizeof v) != sandbox::FrameReader::Result::kOk) {
      return Fail("reading a violation frame: " + reader_.error());
    }
    // The first report is the one the sandbox wrote before the worker died.
    if (!st_->violation) st_->violation = sandbox::DecodeViolation(v);
    return true;
  }

  sandbox::FrameReader& reader_;
  const int out_fd_;
  const uint64_t input_size_;
  const int input_fd_;
  const std::vector<std::string>& options_;
  const DigestAlgorithm digest_;
  const uint64_t max_output_bytes_;
  const LockedHook& on_locked_;
  ConvertReport* const report_;
  StreamOutcome* const st_;
  const StreamLimits limits_;
  const bool hand_off_allowed_;
  std::unique_ptr<uint8_t[]> data_buf_;
  uint64_t data_buf_size_ = 0;
  XformBuffers xform_buffers_;
  const ProgressHook& on_progress_;
  const LastFrameHook& on_last_frame_;
  bool last_frame_called_ = false;
  uint64_t last_progress_ = 0;
  std::chrono::nanoseconds credited_{0};  // of the writer's write-behind waits, added to the deadline
};

}  // namespace

void ReadWorkerStream(sandbox::FrameReader& reader, int out_fd, uint64_t input_size, int input_fd,
                      const std::vector<std::string>& options, DigestAlgorithm digest,
                      uint64_t max_output_bytes, const LockedHook& on_locked,
                      ConvertReport* report, StreamOutcome* st, bool hand_off_allowed,
                      const ProgressHook& on_progress, const LastFrameHook& on_last_frame) {
  StreamReader(reader, out_fd, input_size, input_fd, options, digest, max_output_bytes, on_locked, report, st,
               hand_off_allowed, on_progress, on_last_frame)
      .Run();
}

}  // namespace safemodel
