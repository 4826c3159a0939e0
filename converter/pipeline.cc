// ConvertFile: the parent side of a conversion. Everything the worker sends is
// hostile: each frame is capped before it is read, the proposed header is
// rebuilt from validated values (nothing is copied through), every tensor's
// byte count is enforced by the writer, and the output only appears, by an
// atomic rename, when the worker exited cleanly and every check passed.
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "converter/digest.h"
#include "converter/format.h"
#include "converter/writer.h"
#include "proto/worker.pb.h"
#include "safemodel/convert.h"
#include "safemodel/limits.h"
#include "sandbox/frame_io.h"
#include "sandbox/supervisor.h"

#ifndef SAFEMODEL_VERSION
#define SAFEMODEL_VERSION "0.0.0"
#endif
#ifndef SAFEMODEL_INSTALL_WORKER
#define SAFEMODEL_INSTALL_WORKER ""
#endif

namespace safemodel {

const char* ConverterVersion() { return "safemodel " SAFEMODEL_VERSION; }

namespace {

using Clock = std::chrono::steady_clock;
using sandbox::FrameType;

// A data frame carries at most this much; the worker sends 1 MiB frames.
constexpr uint64_t kMaxDataFrameBytes = 16ull << 20;
// Error frames carry a message and findings (capped in format.h).
constexpr uint64_t kMaxErrorFrameBytes = 64ull << 20;
constexpr uint64_t kMaxDoneFrameBytes = 4096;
// Address space the worker needs besides its input map and its data: shared
// libraries, stacks, HDF5 and protobuf caches.
constexpr uint64_t kAddressSpaceSlack = 1ull << 30;
constexpr uint64_t kMinMemoryLimit = 16ull << 20;
constexpr size_t kMaxIsolationLayers = 16;

std::string Num(uint64_t v) { return std::to_string(v); }

std::string ErrnoText() { return std::strerror(errno); }

// SHA-256 of the input, computed by this (trusted) process on a thread while
// the worker converts. Reads through a small reused buffer: no page faults on
// fresh memory, no growth of resident memory with the input size.
class InputHasher {
 public:
  void Start(int fd, uint64_t size) {
    thread_ = std::thread([this, fd, size] { Run(fd, size); });
  }
  ~InputHasher() { Stop(); }
  void Stop() {
    cancel_ = true;
    if (thread_.joinable()) thread_.join();
  }
  Result<std::string> Join() {
    if (thread_.joinable()) thread_.join();
    if (!status_.ok()) return status_;
    return digest_;
  }

 private:
  void Run(int fd, uint64_t size) {
    constexpr size_t kBuf = 4 << 20;
    std::unique_ptr<uint8_t[]> buf(new uint8_t[kBuf]);
    auto hasher = MakeHasher(DigestAlgorithm::kSha256);
    uint64_t off = 0;
    while (off < size && !cancel_) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kBuf, size - off));
      ssize_t n = pread(fd, buf.get(), want, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        status_ = Status::IoError("reading the input for its SHA-256 failed at byte " + Num(off) +
                                  (n < 0 ? ": " + ErrnoText() : ": unexpected end of file"));
        return;
      }
      hasher->Update(ByteView(buf.get(), static_cast<size_t>(n)));
      off += static_cast<uint64_t>(n);
    }
    if (cancel_) {
      status_ = Status::Internal("hashing cancelled");
      return;
    }
    digest_ = hasher->Finish();
  }
  std::thread thread_;
  std::atomic<bool> cancel_{false};
  Status status_;
  std::string digest_;
};

// An output file that exists only after Commit().
class TempOutput {
 public:
  ~TempOutput() { Discard(); }
  Status Create(const std::string& final_path) {
    final_ = final_path;
    std::filesystem::path p(final_path);
    dir_ = p.has_parent_path() ? p.parent_path().string() : ".";
    std::string name = p.filename().string();
    if (name.empty() || name == "." || name == "..") {
      return Status::InvalidArgument("output path '" + final_path + "' names no file");
    }
    std::string tmpl = dir_ + "/." + name + ".tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    fd_ = mkostemp(buf.data(), O_CLOEXEC);
    if (fd_ < 0) {
      return Status::IoError("cannot create a temporary file in '" + dir_ + "': " + ErrnoText());
    }
    tmp_.assign(buf.data());
    fchmod(fd_, 0644);
    return Status::Ok();
  }
  int fd() const { return fd_; }
  Status Commit(bool sync) {
    if (sync && fsync(fd_) != 0) return Status::IoError("fsync of the output failed: " + ErrnoText());
    if (close(fd_) != 0) {
      fd_ = -1;
      return Status::IoError("closing the output failed: " + ErrnoText());
    }
    fd_ = -1;
    if (rename(tmp_.c_str(), final_.c_str()) != 0) {
      return Status::IoError("renaming the output into place failed: " + ErrnoText());
    }
    tmp_.clear();
    if (sync) {
      int dfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
      }
    }
    return Status::Ok();
  }
  void Discard() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    if (!tmp_.empty()) unlink(tmp_.c_str());
    tmp_.clear();
  }

 private:
  std::string final_, dir_, tmp_;
  int fd_ = -1;
};

Status CheckIdentifier(const std::string& s, std::string_view what) {
  bool ok = !s.empty() && s.size() <= 32 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
  if (!ok) return Status::Malformed(std::string(what) + " '" + Printable(s) + "' is not an identifier");
  return Status::Ok();
}

Finding FindingFromProto(const v1::Finding& f) {
  Finding out;
  out.severity = f.severity() == "refused"   ? Finding::Severity::kRefused
                 : f.severity() == "dropped" ? Finding::Severity::kDropped
                                             : Finding::Severity::kNote;
  out.rule = f.rule();
  out.location = f.location();
  out.message = f.message();
  out.references.assign(f.references().begin(), f.references().end());
  return out;
}

void CopyFinding(const v1::Finding& in, v1::Finding* out) {
  out->set_severity(in.severity());
  out->set_rule(in.rule());
  out->set_location(in.location());
  out->set_message(in.message());
  for (const auto& r : in.references()) out->add_references(r);
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
    CopyFinding(f, p->add_findings());
    report->findings.push_back(FindingFromProto(f));
  }
  for (const std::string& o : options) p->add_options(o);
  return out;
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string FindWorker(const ConvertOptions& options) {
  if (!options.worker_path.empty()) return options.worker_path;
  std::vector<std::string> candidates;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&ConvertFile), &info) != 0 && info.dli_fname != nullptr) {
    std::error_code ec;
    auto self = std::filesystem::canonical(info.dli_fname, ec);
    if (!ec) {
      candidates.push_back((self.parent_path() / "safemodel-worker").string());
      candidates.push_back((self.parent_path().parent_path() / "libexec" / "safemodel" /
                            "safemodel-worker").string());
    }
  }
  if (std::string(SAFEMODEL_INSTALL_WORKER).size() > 0) candidates.push_back(SAFEMODEL_INSTALL_WORKER);
  for (const std::string& c : candidates) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return "";
}

// The parent's state while it reads the worker's stream.
struct Stream {
  std::unique_ptr<SafemodelWriter> writer;
  bool header_seen = false;
  bool done = false;
  bool error_frame = false;
  Status worker_error;
  bool violation = false;
  uint32_t violation_nr = 0;
  uint32_t violation_arch = 0;
  bool timed_out = false;
  Status protocol;  // set when the worker broke the protocol
  Status io;        // set when writing the output failed
  uint64_t data_bytes = 0;
};

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

void ReadStream(sandbox::FrameReader& reader, int out_fd, uint64_t input_size,
                const std::vector<std::string>& options, const ConvertOptions& copts,
                ConvertReport* report, Stream* st) {
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
        auto header = BuildHeader(wh, input_size, options, copts.digest, report);
        if (!header.ok()) return protocol("invalid header from the worker: " + header.status().ToString());
        auto writer = SafemodelWriter::Begin(out_fd, std::move(*header));
        if (!writer.ok()) {
          if (writer.status().code() == StatusCode::kIoError) {
            st->io = writer.status();
            return;
          }
          return protocol("invalid header from the worker: " + writer.status().ToString());
        }
        st->writer = std::move(*writer);
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
        for (const auto& f : we.findings()) report->findings.push_back(FindingFromProto(f));
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

Status Convert(const std::string& in_path, const std::string& out_path, const ConvertOptions& opt,
               ConvertReport* report) {
  if (opt.timeout_ms == 0) return Status::InvalidArgument("the timeout must be positive");
  if (opt.memory_limit_bytes < kMinMemoryLimit) {
    return Status::InvalidArgument("the memory limit must be at least " + Num(kMinMemoryLimit) +
                                   " bytes");
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(opt.timeout_ms);

  int in_fd = open(in_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (in_fd < 0) {
    if (errno == ELOOP) {
      return Status::InvalidArgument("input '" + in_path +
                                     "' is a symbolic link; pass the path of the file itself");
    }
    if (errno == ENOENT) return Status::InvalidArgument("input '" + in_path + "' does not exist");
    return Status::IoError("cannot open input '" + in_path + "': " + ErrnoText());
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } in_closer{in_fd};
  struct stat st_before;
  if (fstat(in_fd, &st_before) != 0) return Status::IoError("fstat of the input: " + ErrnoText());
  if (!S_ISREG(st_before.st_mode)) {
    return Status::InvalidArgument("input '" + in_path + "' is not a regular file");
  }
  fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) & ~O_NONBLOCK);
  const auto input_size = static_cast<uint64_t>(st_before.st_size);
  report->input_bytes = input_size;
  if (input_size == 0) return Status::Malformed("input '" + in_path + "' is empty");
  if (input_size > opt.max_input_bytes) {
    return Status::LimitExceeded("input is " + Num(input_size) + " bytes, over the limit of " +
                                 Num(opt.max_input_bytes));
  }
  struct stat st_out;
  if (stat(out_path.c_str(), &st_out) == 0 && st_out.st_dev == st_before.st_dev &&
      st_out.st_ino == st_before.st_ino) {
    return Status::InvalidArgument("the output path is the input file");
  }

  std::vector<std::string> options;
  if (opt.weights_only) options.push_back("weights_only");
  if (opt.keep_optimizer) options.push_back("keep_optimizer");
  std::sort(options.begin(), options.end());
  report->options = options;

  std::string worker_path = FindWorker(opt);
  if (worker_path.empty()) {
    return Status(StatusCode::kSandboxSetupFailed,
                  "cannot find the safemodel-worker executable next to the library or in " +
                      std::string(SAFEMODEL_INSTALL_WORKER));
  }

  TempOutput out;
  SAFEMODEL_RETURN_IF_ERROR(out.Create(out_path));

  InputHasher hasher;
  hasher.Start(in_fd, input_size);

  uint64_t cpu_seconds = opt.cpu_limit_seconds;
  if (cpu_seconds == 0) cpu_seconds = opt.timeout_ms / 1000 + 1;
  uint64_t address_space = 0;
  if (!CheckedAdd(input_size, opt.memory_limit_bytes, &address_space) ||
      !CheckedAdd(address_space, kAddressSpaceSlack, &address_space)) {
    return Status::InvalidArgument("memory limit overflows");
  }
  sandbox::SpawnOptions spawn;
  spawn.worker_path = worker_path;
  spawn.input_fd = in_fd;
  spawn.args = {"--parent-pid=" + Num(static_cast<uint64_t>(getpid())),
                "--input-size=" + Num(input_size),
                "--address-space=" + Num(address_space),
                "--memory-limit=" + Num(opt.memory_limit_bytes),
                "--cpu-seconds=" + Num(cpu_seconds)};
  for (const std::string& o : options) spawn.args.push_back("--" + o);
  sandbox::Worker worker;
  std::string spawn_error;
  if (!sandbox::Spawn(spawn, &worker, &spawn_error)) {
    return Status(StatusCode::kSandboxSetupFailed, spawn_error);
  }

  sandbox::FrameReader reader(worker.channel_fd(), deadline);
  Stream stream;
  ReadStream(reader, out.fd(), input_size, options, opt, report, &stream);
  if (stream.timed_out || !stream.protocol.ok() || !stream.io.ok()) worker.Kill();
  sandbox::Worker::Exit exit = worker.Wait(deadline);
  report->worker.max_rss_bytes = exit.max_rss_bytes;
  report->worker.cpu_seconds = exit.cpu_seconds;
  report->worker.exit_code = exit.exit_code;
  report->worker.signal = exit.signal;

  // Verdict, most specific cause first.
  if (stream.timed_out || exit.kind == sandbox::Worker::Exit::Kind::kTimeout) {
    report->worker.kind = "timeout";
    return Status(StatusCode::kTimeout, "the conversion exceeded its time limit of " +
                                            Num(opt.timeout_ms) + " ms; the worker was killed");
  }
  if (exit.kind == sandbox::Worker::Exit::Kind::kWaitFailed) {
    report->worker.kind = "unknown";
    return Status::Internal(exit.error);
  }
  if (stream.violation || (exit.kind == sandbox::Worker::Exit::Kind::kSignaled &&
                           exit.signal == SIGSYS && !exit.killed_by_us)) {
    report->worker.kind = "seccomp";
    if (stream.violation) {
      report->worker.syscall_nr = static_cast<int>(stream.violation_nr);
      report->worker.syscall_name = sandbox::SyscallName(static_cast<int>(stream.violation_nr));
      return Status(StatusCode::kSandboxViolation,
                    "the sandbox stopped the worker: it attempted the forbidden system call " +
                        Num(stream.violation_nr) + " (" +
                        (report->worker.syscall_name.empty() ? "unknown"
                                                             : report->worker.syscall_name) +
                        ")");
    }
    return Status(StatusCode::kSandboxViolation,
                  "the sandbox killed the worker (SIGSYS: a system call of a foreign "
                  "architecture or ABI)");
  }
  if (!stream.io.ok()) {
    report->worker.kind = "killed";
    return stream.io;
  }
  if (!stream.protocol.ok()) {
    report->worker.kind = exit.kind == sandbox::Worker::Exit::Kind::kSignaled ? "signaled" : "exited";
    return Status(StatusCode::kWorkerCrashed,
                  "the worker sent an invalid result (" + stream.protocol.message() +
                      "); nothing was written");
  }
  if (exit.kind == sandbox::Worker::Exit::Kind::kSignaled) {
    report->worker.kind = "signaled";
    if (exit.signal == SIGXCPU ||
        (exit.signal == SIGKILL && exit.cpu_seconds >= static_cast<double>(cpu_seconds))) {
      return Status::LimitExceeded("the worker exceeded its CPU time limit of " + Num(cpu_seconds) +
                                   " s");
    }
    return Status(StatusCode::kWorkerCrashed,
                  "the worker crashed with " + SignalName(exit.signal) +
                      (exit.signal == SIGKILL ? " (possibly the kernel's out-of-memory killer)" : ""));
  }
  report->worker.kind = "exited";
  if (stream.error_frame) return stream.worker_error;
  if (exit.exit_code != 0) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker exited with code " + Num(static_cast<uint64_t>(exit.exit_code)) +
                      " without reporting a result");
  }
  if (!stream.done) {
    return Status(StatusCode::kWorkerCrashed, "the worker ended without completing its result");
  }

  SAFEMODEL_ASSIGN_OR_RETURN(std::string sha, hasher.Join());
  struct stat st_after;
  if (fstat(in_fd, &st_after) != 0 || st_after.st_size != st_before.st_size ||
      st_after.st_mtim.tv_sec != st_before.st_mtim.tv_sec ||
      st_after.st_mtim.tv_nsec != st_before.st_mtim.tv_nsec ||
      st_after.st_ctim.tv_sec != st_before.st_ctim.tv_sec ||
      st_after.st_ctim.tv_nsec != st_before.st_ctim.tv_nsec) {
    return Status::IoError("the input file changed during the conversion");
  }
  report->input_sha256 = ToHex(sha);
  SAFEMODEL_RETURN_IF_ERROR(stream.writer->Finish(sha));
  const v1::Header& h = stream.writer->header();
  report->tensor_count = static_cast<uint64_t>(h.tensors_size());
  report->tensor_bytes = stream.data_bytes;
  report->output_bytes = stream.writer->file_size();
  SAFEMODEL_RETURN_IF_ERROR(out.Commit(opt.sync_output));
  return Status::Ok();
}

}  // namespace

ConvertReport ConvertFile(const std::string& input_path, const std::string& output_path,
                          const ConvertOptions& options) {
  ConvertReport report;
  report.input_path = input_path;
  report.output_path = output_path;
  auto t0 = Clock::now();
  report.status = Convert(input_path, output_path, options, &report);
  report.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  struct rusage self;
  if (getrusage(RUSAGE_SELF, &self) == 0) {
    report.parent_max_rss_bytes = static_cast<uint64_t>(self.ru_maxrss) * 1024;
  }
  return report;
}

}  // namespace safemodel
