#include "converter/worker_stream.h"

#include <algorithm>

#include "converter/format.h"
#include "converter/output_file.h"
#include "proto/worker.pb.h"
#include "safemodel/limits.h"

namespace safemodel {

namespace {

using sandbox::FrameType;

Status CheckIdentifier(const std::string& s, std::string_view what) {
  bool ok = !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (!ok) return Status::Malformed(std::string(what) + " '" + Printable(s) + "' is not an identifier");
  return Status::Ok();
}

Status CopyValue(const v1::Value& in, v1::Value* out, std::string_view what) {
  SAFEMODEL_ASSIGN_OR_RETURN(Value v, format::ValueFromProto(in, what));
  format::ValueToProto(v, out);
  return Status::Ok();
}

Status CheckIsolation(const google::protobuf::RepeatedPtrField<std::string>& layers,
                      std::vector<std::string>* out) {
  if (static_cast<size_t>(layers.size()) > kMaxIsolationLayers) {
    return Status::Malformed("too many isolation layers reported");
  }
  for (const std::string& l : layers) {
    SAFEMODEL_RETURN_IF_ERROR(CheckIdentifier(l, "isolation layer"));
    out->push_back(l);
  }
  return Status::Ok();
}

// Rebuilds the output header from the worker's proposal, field by field, so
// that nothing unvalidated (unknown fields included) reaches the file.
Result<v1::Header> BuildHeader(const worker::WorkerHeader& in, uint64_t input_size,
                               const std::vector<std::string>& options, DigestAlgorithm digest,
                               ConvertReport* report) {
  SAFEMODEL_RETURN_IF_ERROR(CheckIdentifier(in.source_format(), "source format"));
  report->source_format = in.source_format();
  if (static_cast<uint64_t>(in.tensors_size()) > kMaxTensorCount) {
    return Status::LimitExceeded(Num(static_cast<uint64_t>(in.tensors_size())) + " tensors exceed the limit of " +
                                 Num(kMaxTensorCount));
  }
  SAFEMODEL_RETURN_IF_ERROR(format::CheckFindings(in.findings()));
  v1::Header out;
  out.set_digest_algorithm(static_cast<v1::DigestAlgorithm>(digest));
  out.mutable_tensors()->Reserve(in.tensors_size());
  for (const v1::TensorInfo& t : in.tensors()) {
    v1::TensorInfo* o = out.add_tensors();
    o->set_name(t.name());
    o->set_dtype(t.dtype());
    *o->mutable_shape() = t.shape();
    o->set_alias_of(t.alias_of());
  }
  if (in.has_architecture()) {
    SAFEMODEL_RETURN_IF_ERROR(CopyValue(in.architecture(), out.mutable_architecture(), "architecture"));
  }
  if (in.has_metadata()) {
    SAFEMODEL_RETURN_IF_ERROR(CopyValue(in.metadata(), out.mutable_metadata(), "metadata"));
  }
  v1::Provenance* p = out.mutable_provenance();
  p->set_source_format(in.source_format());
  p->set_input_size(input_size);
  p->set_converter_version(ConverterVersion());
  for (const v1::Finding& f : in.findings()) {
    if (f.severity() == "refused") {
      return Status::Malformed("the worker reported a refusal in a successful conversion");
    }
    Finding finding = format::FindingFromProto(f);
    format::FindingToProto(finding, p->add_findings());
    report->findings.push_back(std::move(finding));
  }
  for (const std::string& o : options) p->add_options(o);
  return out;
}



Status ReadMessage(sandbox::FrameReader& reader, uint64_t length,
                   google::protobuf::MessageLite* msg, const char* what) {
  std::string buf(length, '\0');
  if (reader.ReadExact(buf.data(), length) != sandbox::FrameReader::Result::kOk) {
    return Status::Malformed(std::string("reading the ") + what + " frame: " + reader.error());
  }
  if (!format::ParseBounded(AsBytes(buf), msg)) {
    return Status::Malformed(std::string("the worker's ") + what + " frame is not valid");
  }
  return Status::Ok();
}

}  // namespace

void ReadWorkerStream(sandbox::FrameReader& reader, int out_fd, uint64_t input_size,
                      const std::vector<std::string>& options, DigestAlgorithm digest,
                      uint64_t max_output_bytes, ConvertReport* report, WorkerStream* st) {
  const uint64_t caps[sandbox::kMaxFrameType + 1] = {
      0, kMaxHeaderBytes, kMaxDataFrameBytes, kMaxDoneFrameBytes, kMaxErrorFrameBytes,
      sandbox::kViolationPayloadBytes};
  std::unique_ptr<uint8_t[]> data_buf;
  uint64_t data_buf_size = 0;
  auto protocol = [&](std::string msg) { st->protocol = Status::Malformed(std::move(msg)); };
  for (;;) {
    sandbox::FrameHeader fh;
    auto r = reader.Next(&fh, caps);
    if (r == sandbox::FrameReader::Result::kTimeout) {
      st->timed_out = true;
      return;
    }
    if (r == sandbox::FrameReader::Result::kEof) return;
    if (r == sandbox::FrameReader::Result::kError) return protocol(reader.error());
    if (fh.type != FrameType::kViolation && (st->done || st->error_frame)) {
      return protocol("frame after the end of the result");
    }
    switch (fh.type) {
      case FrameType::kHeader: {
        if (st->header_seen) return protocol("second header frame");
        st->header_seen = true;
        worker::WorkerHeader wh;
        Status s = ReadMessage(reader, fh.length, &wh, "header");
        if (!s.ok()) return protocol(s.message());
        s = CheckIsolation(wh.isolation(), &report->worker.isolation);
        if (!s.ok()) return protocol(s.message());
        auto header = BuildHeader(wh, input_size, options, digest, report);
        if (!header.ok()) return protocol("invalid header from the worker: " + header.status().ToString());
        // The whole output's space is reserved before its first byte, so
        // that a full file system fails here, as a limit (exit 4).
        auto writer = SafemodelWriter::Plan(out_fd, std::move(*header));
        if (!writer.ok()) return protocol("invalid header from the worker: " + writer.status().ToString());
        st->writer = std::move(*writer);
        st->limit = ReserveOutputSpace(out_fd, st->writer->planned_file_size(), max_output_bytes);
        if (!st->limit.ok()) return;
        st->io = st->writer->WriteHeader();
        if (!st->io.ok()) return;
        break;
      }
      case FrameType::kTensorData: {
        if (!st->writer) return protocol("tensor data before the header");
        if (fh.length == 0) return protocol("empty tensor data frame");
        if (fh.length > st->writer->current_remaining()) {
          return protocol("tensor data frame of " + Num(fh.length) + " bytes exceeds what the " +
                          "current tensor still needs (" + Num(st->writer->current_remaining()) + ")");
        }
        if (fh.length > data_buf_size) {
          data_buf.reset(new uint8_t[fh.length]);
          data_buf_size = fh.length;
        }
        if (reader.ReadExact(data_buf.get(), fh.length) != sandbox::FrameReader::Result::kOk) {
          return protocol("reading tensor data: " + reader.error());
        }
        Status s = st->writer->Append(ByteView(data_buf.get(), fh.length));
        if (!s.ok()) {
          if (s.code() == StatusCode::kIoError) {
            st->io = s;
            return;
          }
          return protocol(s.message());
        }
        st->data_bytes += fh.length;
        break;
      }
      case FrameType::kDone: {
        if (!st->writer) return protocol("done before the header");
        if (!st->writer->complete()) {
          return protocol("done while tensor #" + Num(static_cast<uint64_t>(st->writer->current_tensor())) + " misses " +
                          Num(st->writer->current_remaining()) + " bytes");
        }
        worker::WorkerDone done;
        Status s = ReadMessage(reader, fh.length, &done, "done");
        if (!s.ok()) return protocol(s.message());
        st->done = true;
        break;
      }
      case FrameType::kError: {
        worker::WorkerError we;
        Status s = ReadMessage(reader, fh.length, &we, "error");
        if (!s.ok()) return protocol(s.message());
        auto code = static_cast<StatusCode>(we.code());
        bool reportable = code == StatusCode::kRefused || code == StatusCode::kMalformed ||
                          code == StatusCode::kUnsupported || code == StatusCode::kLimitExceeded ||
                          code == StatusCode::kInternal || code == StatusCode::kSandboxSetupFailed ||
                          code == StatusCode::kInvalidArgument;
        if (!reportable) return protocol("the worker reported status code " + Num(we.code()));
        s = format::CheckFindings(we.findings());
        if (!s.ok()) return protocol(s.message());
        if (we.message().size() > format::kMaxFindingTextBytes || !IsValidUtf8(we.message())) {
          return protocol("the worker's error message is too long or not UTF-8");
        }
        for (const auto& f : we.findings()) report->findings.push_back(format::FindingFromProto(f));
        if (report->worker.isolation.empty()) {
          s = CheckIsolation(we.isolation(), &report->worker.isolation);
          if (!s.ok()) return protocol(s.message());
        }
        st->worker_error = Status(code, we.message());
        st->error_frame = true;
        break;
      }
      case FrameType::kViolation: {
        uint8_t v[sandbox::kViolationPayloadBytes];
        if (reader.ReadExact(v, sizeof v) != sandbox::FrameReader::Result::kOk) {
          return protocol("reading a violation frame: " + reader.error());
        }
        st->violation = true;
        st->violation_nr = static_cast<uint32_t>(v[0] | v[1] << 8 | v[2] << 16 | v[3] << 24);
        st->violation_arch = static_cast<uint32_t>(v[4] | v[5] << 8 | v[6] << 16 | v[7] << 24);
        break;
      }
    }
  }
}


}  // namespace safemodel
