// safemodel-worker: the sandboxed half of a conversion. The only file that
// joins the sandbox and the parsers.
//
// Started by the parent (converter/pipeline.cc) with fd 3 = result channel,
// fd 4 = input and fd 5 = control channel; for a model made of several
// files, fd 4 holds their list (worker::InputManifest) and the files are
// fds 6, 7, ... (converter/input_set.h). Order matters: confine the
// process, map the input, prepare libraries, lock down (and wait for the
// parent's go-ahead), and only then parse. Results go out as frames
// (sandbox/frame_io.h); the process ends with _exit, so no atexit handler
// (HDF5's, protobuf's) runs inside the sandbox.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "converter/format.h"
#include "converter/stream_limits.h"
#include "loader/files/model_files.h"
#include "loader/model.h"
#include "loader/parser.h"
#include "loader/registry.h"
#include "loader/stream.h"
#include "proto/worker.pb.h"
#include "safemodel/limits.h"
#include "sandbox/frame_io.h"
#include "sandbox/lockdown.h"
#include "sandbox/privileges.h"

namespace safemodel {
namespace {

struct Args {
  pid_t parent_pid = 0;
  uint64_t input_size = 0;
  uint64_t address_space = 0;
  uint64_t memory_limit = 0;
  uint64_t cpu_seconds = 0;
  bool weights_only = false;
  bool keep_optimizer = false;
  uint64_t input_files = 0;    // > 0: a model made of several files
  uint64_t manifest_size = 0;  // the size of fd 4's InputManifest then
};

// The list of a multi-file model comes from the parent, but its names come
// from the file system: 1,000 files with names of a few hundred bytes.
constexpr uint64_t kMaxManifestBytes = 8 << 20;
// A model of several files releases its input pages after this many output
// bytes rather than after every tensor (a call per file each time): resident
// input stays below the largest tensor plus this.
constexpr uint64_t kReleaseInputBytes = 16 << 20;

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || !CheckedMul(v, 10, &v) || !CheckedAdd(v, static_cast<uint64_t>(c - '0'), &v)) {
      return false;
    }
  }
  *out = v;
  return true;
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    auto value = [&](std::string_view key, uint64_t* out) {
      return arg.substr(0, key.size()) == key && ParseU64(arg.substr(key.size()), out);
    };
    uint64_t pid = 0;
    if (value("--parent-pid=", &pid)) {
      a->parent_pid = static_cast<pid_t>(pid);
    } else if (value("--input-size=", &a->input_size) || value("--address-space=", &a->address_space) ||
               value("--memory-limit=", &a->memory_limit) || value("--cpu-seconds=", &a->cpu_seconds) ||
               value("--input-files=", &a->input_files) || value("--manifest-size=", &a->manifest_size)) {
    } else if (arg == "--weights_only") {
      a->weights_only = true;
    } else if (arg == "--keep_optimizer") {
      a->keep_optimizer = true;
    } else if (arg == sandbox::kReexecutedFlag) {
      // EnsureAddressRandomization's marker; nothing to do.
    } else {
      return false;
    }
  }
  if (a->input_files > loader::kMaxModelFiles) return false;
  if (a->input_files > 0 && (a->manifest_size == 0 || a->manifest_size > kMaxManifestBytes)) return false;
  return a->parent_pid > 0 && a->input_size > 0;
}

// The size of the input, for the stream limits (converter/stream_limits.h);
// 0 until the arguments are parsed (then the base limits apply).
uint64_t g_input_size = 0;

// Error frames are best effort: if the parent is gone there is nobody to tell.
void SendError(const Status& status, std::vector<Finding> findings) {
  worker::WorkerError e;
  e.set_code(static_cast<uint32_t>(status.code()));
  std::string msg = status.message();
  if (msg.size() > format::kMaxFindingTextBytes) msg.resize(format::kMaxFindingTextBytes);
  if (!IsValidUtf8(msg)) msg = Printable(msg, format::kMaxFindingTextBytes / 4);
  e.set_message(msg);
  // Within what the parent accepts for this input: the first findings and a
  // note on how many more there were.
  TrimFindings(&findings, StreamLimitsFor(g_input_size));
  for (const Finding& f : findings) format::FindingToProto(f, e.add_findings());
  std::string bytes = format::SerializeDeterministic(e);
  sandbox::WriteFrame(sandbox::kOutputFd, sandbox::FrameType::kError, bytes.data(), bytes.size());
}

class FrameSink final : public loader::ChunkSink {
 public:
  Status Write(ByteView chunk) override {
    if (!sandbox::WriteFrame(sandbox::kOutputFd, sandbox::FrameType::kTensorData, chunk.data(),
                             chunk.size())) {
      return Status::IoError("the parent closed the result channel");
    }
    bytes_ += chunk.size();
    return Status::Ok();
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t bytes_ = 0;
};

// `parse` reads the input, whose maps are `maps`.
using ParseFn = std::function<Status(loader::ParseContext&, loader::ParsedModel*)>;

Status Convert(const ParseFn& parse, const std::vector<ByteView>& maps, const Args& args,
               loader::ParseContext& ctx) {
  loader::ParsedModel model;
  SAFEMODEL_RETURN_IF_ERROR(parse(ctx, &model));
  if (ctx.refused()) return ctx.RefusedStatus();

  // Canonical order: bytewise by name. Names must be unique.
  std::sort(model.tensors.begin(), model.tensors.end(),
            [](const loader::Tensor& a, const loader::Tensor& b) { return a.name < b.name; });
  for (size_t i = 1; i < model.tensors.size(); ++i) {
    if (model.tensors[i].name == model.tensors[i - 1].name) {
      return Status::Malformed("two tensors are named '" + Printable(model.tensors[i].name) + "'");
    }
  }
  const StreamLimits limits = StreamLimitsFor(args.input_size);
  if (model.tensors.size() > kMaxTensorCount || model.tensors.size() > limits.tensors) {
    return Status::LimitExceeded(
        std::to_string(model.tensors.size()) + " tensors exceed the limit of " +
        std::to_string(std::min<uint64_t>(kMaxTensorCount, limits.tensors)) + " for an input of " +
        std::to_string(args.input_size) + " bytes (at least " +
        std::to_string(kMinInputBytesPerTensor) + " input bytes per tensor)");
  }

  worker::WorkerHeader header;
  header.set_source_format(model.source_format);
  for (const loader::Tensor& t : model.tensors) {
    v1::TensorInfo* o = header.add_tensors();
    o->set_name(t.name);
    o->set_dtype(static_cast<v1::DType>(t.dtype));
    for (uint64_t d : t.shape) o->add_shape(d);
    o->set_alias_of(t.alias_of);
  }
  if (!model.architecture.is_null()) {
    SAFEMODEL_RETURN_IF_ERROR(CheckValue(model.architecture, "architecture"));
    format::ValueToProto(model.architecture, header.mutable_architecture());
  }
  if (!model.metadata.is_null()) {
    SAFEMODEL_RETURN_IF_ERROR(CheckValue(model.metadata, "metadata"));
    format::ValueToProto(model.metadata, header.mutable_metadata());
  }
  std::vector<Finding> findings = ctx.findings();
  findings.insert(findings.end(), model.findings.begin(), model.findings.end());
  TrimFindings(&findings, limits);
  for (const Finding& f : findings) format::FindingToProto(f, header.add_findings());
  if (args.weights_only) header.add_options("weights_only");
  if (args.keep_optimizer) header.add_options("keep_optimizer");
  std::string bytes = format::SerializeDeterministic(header);
  // The parent refuses a header beyond these (a compromised worker's); an
  // honest one this large is refused here, with the reason.
  if (bytes.size() > limits.header_bytes) {
    return Status::LimitExceeded("the model's header would be " + std::to_string(bytes.size()) +
                                 " bytes, over the limit of " + std::to_string(limits.header_bytes) +
                                 " for an input of " + std::to_string(args.input_size) + " bytes");
  }
  const uint64_t objects = format::CountParsedObjects(header, AsBytes(bytes));
  if (objects > limits.header_objects) {
    return Status::LimitExceeded("the model's header holds " + std::to_string(objects) +
                                 " objects (tensors, architecture nodes, findings), over the "
                                 "limit of " + std::to_string(limits.header_objects) +
                                 " for an input of " + std::to_string(args.input_size) + " bytes");
  }
  if (!sandbox::WriteFrame(sandbox::kOutputFd, sandbox::FrameType::kHeader, bytes.data(),
                           bytes.size())) {
    return Status::IoError("the parent closed the result channel");
  }
  header.Clear();

  FrameSink sink;
  uint64_t sent = 0;
  uint64_t released = 0;  // sink.bytes() when the input's pages were last released
  for (loader::Tensor& t : model.tensors) {
    if (!t.alias_of.empty()) continue;
    if (!t.source) return Status::Internal("tensor '" + Printable(t.name) + "' has no source");
    // The elements are the input map or a buffer zero-filled before any
    // library wrote into it (loader/model.h): no other worker memory is sent.
    SAFEMODEL_ASSIGN_OR_RETURN(loader::Elements elements, t.source());
    SAFEMODEL_RETURN_IF_ERROR(loader::StreamElements(elements, t.dtype, t.shape,
                                                     t.origin.empty() ? t.name : t.origin, sink));
    t.source = nullptr;  // frees produced buffers and whatever the source held
    // Pages of the input already converted leave our resident set (they stay
    // in the page cache): memory does not grow with the input size. With
    // many files (one call each) that is done every kReleaseInputBytes.
    if (maps.size() == 1 || sink.bytes() - released >= kReleaseInputBytes) {
      for (ByteView map : maps) {
        if (!map.empty()) madvise(const_cast<uint8_t*>(map.data()), map.size(), MADV_DONTNEED);
      }
      released = sink.bytes();
    }
    ++sent;
  }
  worker::WorkerDone done;
  done.set_tensors_sent(sent);
  done.set_bytes_sent(sink.bytes());
  std::string done_bytes = format::SerializeDeterministic(done);
  if (!sandbox::WriteFrame(sandbox::kOutputFd, sandbox::FrameType::kDone, done_bytes.data(),
                           done_bytes.size())) {
    return Status::IoError("the parent closed the result channel");
  }
  return Status::Ok();
}

// Maps fd `fd`, which must be a regular file of `size` bytes; closes it.
Status MapFd(int fd, uint64_t size, const std::string& what, ByteView* out) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != size) {
    return Status(StatusCode::kSandboxSetupFailed, what + " is not the file the parent opened");
  }
  *out = ByteView();
  if (size > 0) {
    void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      return Status::IoError("cannot map " + what + ": " + std::strerror(errno));
    }
    *out = ByteView(static_cast<const uint8_t*>(map), size);
  }
  close(fd);
  return Status::Ok();
}

Status MapInput(const Args& args, std::vector<ByteView>* maps) {
  maps->emplace_back();
  return MapFd(sandbox::kInputFd, args.input_size, "the input", &maps->back());
}

// A model made of several files: the parent's list on fd 4, then one
// descriptor per file. The list is checked against the descriptors here;
// names and roles are checked again by the parsers (loader::ParseModelFiles).
Status MapFiles(const Args& args, loader::InputFiles* files, std::vector<ByteView>* maps) {
  ByteView manifest_bytes;
  SAFEMODEL_RETURN_IF_ERROR(MapFd(sandbox::kInputFd, args.manifest_size, "the file list", &manifest_bytes));
  worker::InputManifest manifest;
  const bool parsed = manifest.ParseFromArray(manifest_bytes.data(), static_cast<int>(manifest_bytes.size()));
  munmap(const_cast<uint8_t*>(manifest_bytes.data()), manifest_bytes.size());
  if (!parsed || !loader::IsValidModelKind(manifest.kind()) ||
      static_cast<uint64_t>(manifest.files_size()) != args.input_files) {
    return Status(StatusCode::kSandboxSetupFailed, "the parent's file list is not valid");
  }
  files->kind = static_cast<loader::ModelKind>(manifest.kind());
  for (const std::string& l : manifest.listed()) files->listed.push_back(l);
  uint64_t total = 0;
  for (int i = 0; i < manifest.files_size(); ++i) {
    const worker::InputManifestFile& f = manifest.files(i);
    if (!loader::IsValidFileRole(f.role()) || !CheckedAdd(total, f.size(), &total)) {
      return Status(StatusCode::kSandboxSetupFailed, "the parent's file list is not valid");
    }
    maps->emplace_back();
    SAFEMODEL_RETURN_IF_ERROR(MapFd(sandbox::kFirstFileFd + i, f.size(), "input file " + std::to_string(i),
                                    &maps->back()));
    files->files.push_back({static_cast<loader::FileRole>(f.role()), f.name(), maps->back()});
  }
  if (total != args.input_size) {
    return Status(StatusCode::kSandboxSetupFailed, "the parent's file list does not add up to the input size");
  }
  return Status::Ok();
}

// The C++ runtime initialises its unwinder on the first throw; do that while
// every system call is still allowed.
void WarmUpExceptions() {
  try {
    throw std::bad_alloc();
  } catch (const std::bad_alloc&) {
  }
}

int WorkerMain(int argc, char** argv) {
  Args args;
  std::vector<std::string> layers;
  std::string error;
  // Before anything else: a worker started with ASLR off re-executes itself.
  if (!sandbox::EnsureAddressRandomization(argc, argv, &error)) {
    SendError(Status(StatusCode::kSandboxSetupFailed, error), {});
    return 1;
  }
  if (!ParseArgs(argc, argv, &args)) {
    SendError(Status::InvalidArgument("bad worker arguments"), {});
    return 1;
  }
  g_input_size = args.input_size;
  if (!sandbox::PrepareWorkerProcess(args.parent_pid, &error, static_cast<uint32_t>(args.input_files))) {
    SendError(Status(StatusCode::kSandboxSetupFailed, error), {});
    return 1;
  }
  std::vector<ByteView> maps;
  loader::InputFiles files;
  if (Status mapped = args.input_files > 0 ? MapFiles(args, &files, &maps) : MapInput(args, &maps);
      !mapped.ok()) {
    SendError(mapped, {});
    return 1;
  }

  WarmUpExceptions();
  Status prep = loader::PrepareLibraries();
  if (!prep.ok()) {
    SendError(Status(StatusCode::kSandboxSetupFailed, prep.message()), {});
    return 1;
  }
  sandbox::LockdownOptions lock;
#if !defined(SAFEMODEL_SANITIZER_BUILD)
  lock.address_space_bytes = args.address_space;
#endif
  lock.cpu_seconds = args.cpu_seconds;
  lock.parent_pid = args.parent_pid;
  if (!sandbox::LockDown(lock, &layers, &error)) {
    SendError(Status(StatusCode::kSandboxSetupFailed, "lockdown failed: " + error), {});
    return 1;
  }

  // From here on: untrusted bytes, and only the sandbox's system calls.
  loader::ParseOptions options;
  options.memory_limit = args.memory_limit;
  options.weights_only = args.weights_only;
  options.keep_optimizer = args.keep_optimizer;
  loader::ParseContext ctx(options);
  Status status;
  try {
    const ParseFn parse = [&](loader::ParseContext& c, loader::ParsedModel* model) {
      return args.input_files > 0 ? loader::ParseModelFiles(files, c, model)
                                  : loader::ParseModel(maps[0], c, model);
    };
    status = Convert(parse, maps, args, ctx);
  } catch (const std::bad_alloc&) {
    status = Status::LimitExceeded("the worker ran out of memory (limit " +
                                   std::to_string(args.memory_limit) + " bytes)");
  } catch (const std::exception& e) {
    status = Status::Internal(std::string("unexpected exception in the worker: ") + e.what());
  }
  if (status.ok()) return 0;
  try {
    SendError(status, ctx.findings());
  } catch (...) {
    return 4;  // out of memory even for the error report
  }
  return 1;
}

}  // namespace
}  // namespace safemodel

int main(int argc, char** argv) { _exit(safemodel::WorkerMain(argc, argv)); }
