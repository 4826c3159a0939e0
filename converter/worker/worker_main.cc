// safemodel-worker and safemodel-worker-hdf5: the sandboxed half of a
// conversion. The only file that joins the sandbox and the parsers; the two
// executables differ only in the loader they link (loader/hdf5_seam.h).
//
// Started by the parent (converter/pipeline.cc) with fd 3 = result channel,
// fd 4 = input and fd 5 = control channel (sandbox/worker_protocol.h); for
// a model made of several files, fd 4 holds their list
// (worker::InputManifest) and the files are fds 6, 7, ...
// (converter/input_set.h). Order matters: confine the process, map the
// input, prepare libraries, lock down (and wait for the parent's go-ahead),
// and only then parse. A worker without libhdf5 whose input needs it sends a
// hand-off instead of a result (conversion_protocol.h); the parent then
// starts the HDF5 worker on the same input. Results go out as frames
// (converter/protocol/conversion_protocol.h); the process ends with _exit,
// so no atexit handler (HDF5's, protobuf's) runs inside the sandbox.
#include <malloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "converter/protocol/conversion_protocol.h"
#include "converter/protocol/stream_limits.h"
#include "converter/protocol/worker.pb.h"
#include "loader/files/model_files.h"
#include "loader/hdf5_seam.h"
#include "loader/map_residency.h"
#include "loader/model.h"
#include "loader/parser.h"
#include "loader/registry.h"
#include "loader/stream.h"
#include "proto/wire/wire.h"
#include "safemodel/limits.h"
#include "sandbox/frame_io.h"
#include "sandbox/lockdown.h"
#include "sandbox/privileges.h"
#include "sandbox/worker_protocol.h"
#include "sandbox/zygote.h"

namespace safemodel {
namespace {

// The worker's arguments: the sandbox's contract and the conversion options
// it carries as flags.
struct Args {
  sandbox::WorkerArgs worker;
  bool weights_only = false;
  bool keep_optimizer = false;
};

// The list of a multi-file model comes from the parent, but its names come
// from the file system: 1,000 files with names of a few hundred bytes.
constexpr uint64_t kMaxManifestBytes = 8 << 20;
// The worker releases its input pages after this many output bytes rather
// than after every tensor (a call per file, each walking the whole map):
// resident input stays below the largest tensor plus this.
constexpr uint64_t kReleaseInputBytes = 16 << 20;
// ... or after this many tensors: small tensors spread over a large input
// (100,000 arrays of 64 bytes in a 31 MB .npz) touch a page each for little
// output. 25 calls for 100,000 tensors.
constexpr uint64_t kReleaseInputTensors = 4096;
// The frames gathered so far (the header first) are sent whenever a
// finished tensor brings the bytes they stand for to this many: the parent
// copies a tensor's TENSOR_REF while this worker checks the next tensor's
// CRC-32 (and faults its pages in), instead of waiting for the whole
// input's (a 1 GiB stored .npz or torch zip: ~0.2 s of serial work,
// tests/bench/PROFILE.md, branch `datapath`). Small inputs and tensors
// still leave in 64 KiB writes: at most one extra write per kFlushAfterBytes.
constexpr uint64_t kFlushAfterBytes = 4 << 20;

Status ParseArgs(int argc, char** argv, Args* a) {
  SAFEMODEL_ASSIGN_OR_RETURN(a->worker, sandbox::ParseWorkerArgs(argc, argv));
  for (const std::string& flag : a->worker.flags) {
    if (flag == protocol::kOptionWeightsOnly) {
      a->weights_only = true;
    } else if (flag == protocol::kOptionKeepOptimizer) {
      a->keep_optimizer = true;
    } else {
      return Status::InvalidArgument("unknown worker flag '--" + flag + "'");
    }
  }
  // How many files, and how long their list: the sandbox keeps the
  // descriptors open, the bounds are the conversion's.
  if (a->worker.input_files > loader::kMaxModelFiles) {
    return Status::InvalidArgument("more input files than " + std::to_string(loader::kMaxModelFiles));
  }
  if (a->worker.input_files > 0 &&
      (a->worker.manifest_size == 0 || a->worker.manifest_size > kMaxManifestBytes)) {
    return Status::InvalidArgument("the file list's size is not within 1.." +
                                   std::to_string(kMaxManifestBytes));
  }
  return Status::Ok();
}

// The size of the input, for the stream limits (converter/protocol/stream_limits.h);
// 0 until the arguments are parsed (then the base limits apply).
uint64_t g_input_size = 0;
// Whether the stream's last frame (DONE, an ERROR or a hand-off) reached the
// parent: only then does the worker wait for its dismissal before it exits
// (sandbox::AwaitDismissal). Without one the parent reads on until the
// channel ends, so a worker that waited would wait for its deadline.
bool g_last_frame_sent = false;

// Error frames are best effort: if the parent is gone there is nobody to tell.
void SendError(const Status& status, std::vector<Finding> findings,
               const std::string& source_format = "") {
  worker::WorkerError e;
  e.set_source_format(source_format);
  e.set_code(static_cast<uint32_t>(status.code()));
  std::string msg = status.message();
  if (msg.size() > wire::kMaxFindingTextBytes) msg.resize(wire::kMaxFindingTextBytes);
  if (!IsValidUtf8(msg)) msg = Printable(msg, wire::kMaxFindingTextBytes / 4);
  e.set_message(msg);
  // Within what the parent accepts for this input: the first findings and a
  // note on how many more there were.
  TrimFindings(&findings, StreamLimitsFor(g_input_size));
  for (const Finding& f : findings) wire::FindingToProto(f, e.add_findings());
  std::string bytes = wire::SerializeDeterministic(e);
  g_last_frame_sent =
      sandbox::WriteFrame(sandbox::kOutputFd, sandbox::FrameType::kError, bytes.data(), bytes.size());
}

// The lean worker's request to have the input converted by the HDF5 worker:
// an ERROR frame holding nothing but the hand-off (conversion_protocol.h).
void SendHandOff() {
  worker::WorkerError e;
  e.set_hand_off(worker::HAND_OFF_HDF5_WORKER);
  std::string bytes = wire::SerializeDeterministic(e);
  g_last_frame_sent =
      sandbox::WriteFrame(sandbox::kOutputFd, sandbox::FrameType::kError, bytes.data(), bytes.size());
}

// Sends a tensor's bytes to the parent: as TENSOR_DATA, or, for a run of at
// least kMinTensorRefBytes that is the single input's own bytes (a view into
// its map), as a TENSOR_REF naming the range (conversion_protocol.h).
// Adjacent runs merge into one reference; Flush() ends a tensor. Frames go
// through `out`, which gathers small ones into large writes.
class FrameSink final : public loader::ChunkSink {
 public:
  // `input`: the map of a single-file input; empty: every byte goes as data.
  FrameSink(ByteView input, sandbox::FrameWriter* out) : input_(input), out_(out) {}

  Status Write(ByteView chunk) override {
    // Addresses as integers: a chunk of another buffer is no pointer into the map.
    const auto base = reinterpret_cast<uintptr_t>(input_.data());
    const auto at = reinterpret_cast<uintptr_t>(chunk.data());
    const uint64_t start = at - base;
    const bool in_input = !input_.empty() && at >= base && start <= input_.size() &&
                          chunk.size() <= input_.size() - start;
    if (in_input && pending_.length > 0 && pending_.offset + pending_.length == start &&
        pending_.length + chunk.size() <= protocol::kMaxTensorRefBytes) {
      pending_.length += chunk.size();
    } else {
      SAFEMODEL_RETURN_IF_ERROR(Flush());
      if (in_input && chunk.size() >= protocol::kMinTensorRefBytes) {
        pending_ = {start, chunk.size()};
      } else if (!out_->Write(sandbox::FrameType::kTensorData, chunk.data(), chunk.size())) {
        return Closed();
      } else {
        data_bytes_ += chunk.size();
      }
    }
    bytes_ += chunk.size();
    return Status::Ok();
  }

  // The record that lets the parent read and transform the tensor itself
  // (converter/protocol/tensor_xform.h), or nothing: the tensor goes as
  // data or references. Only for a view into the single input's map, of at
  // least kMinTensorRefBytes, not bool (the bool check and its message stay
  // here), that needs a transform (a contiguous little-endian view is a
  // TENSOR_REF) in a layout the parent executes and that passes
  // loader::CheckElements (a view that does not is streamed, which reports
  // it as before). The cheap tests come first: most tensors are small.
  std::optional<protocol::TensorXform> XformFor(const loader::Elements& e, DType dtype,
                                                std::span<const uint64_t> shape, std::string_view what) const {
    const auto base = reinterpret_cast<uintptr_t>(input_.data());
    const auto at = reinterpret_cast<uintptr_t>(e.view.data());
    if (input_.empty() || dtype == DType::kBool || shape.empty() || shape.size() > protocol::kMaxXformRank ||
        e.view.empty() || at < base || at - base > input_.size() || e.view.size() > input_.size() - (at - base)) {
      return std::nullopt;
    }
    const uint32_t elem = DTypeSize(dtype);
    if (elem == 0) return std::nullopt;
    auto count = ElementCount(shape, "");
    if (!count.ok() || *count < protocol::kMinTensorRefBytes / elem ||
        !loader::CheckElements(e, dtype, shape, what).ok()) {
      return std::nullopt;
    }
    protocol::TensorXform x;
    x.region_offset = at - base;
    x.region_length = e.view.size();
    x.first = e.offset;
    x.elem_size = elem;
    x.swap_unit = e.swap_unit > 1 ? e.swap_unit : 0;
    x.rank = static_cast<uint32_t>(shape.size());
    int64_t c_stride = 1;  // C order when the view has no strides; bounded by the count
    for (size_t d = shape.size(); d-- > 0;) {
      x.shape[d] = shape[d];
      // A dimension of size 1 is never stepped: its stride is 0 here, so
      // that an arbitrary one (torch keeps any) does not make the parent
      // refuse the record (CheckTensorXform bounds every stride).
      x.strides[d] = shape[d] == 1 ? 0 : e.strides.empty() ? c_stride : e.strides[d];
      c_stride *= static_cast<int64_t>(shape[d]);
    }
    auto plan = protocol::CheckTensorXform(x, input_.size());
    if (!plan.ok() || (plan->layout == protocol::XformLayout::kContiguous && x.swap_unit == 0)) {
      return std::nullopt;
    }
    return x;
  }

  // Sends a whole tensor of `bytes` as `x`.
  Status SendXform(const protocol::TensorXform& x, uint64_t bytes) {
    SAFEMODEL_RETURN_IF_ERROR(Flush());
    uint8_t payload[protocol::kTensorXformPayloadBytes];
    protocol::EncodeTensorXform(x, payload);
    if (!out_->Write(sandbox::FrameType::kTensorXform, payload, sizeof payload)) return Closed();
    bytes_ += bytes;
    return Status::Ok();
  }

  Status Flush() {
    if (pending_.length == 0) return Status::Ok();
    uint8_t payload[protocol::kTensorRefPayloadBytes];
    protocol::EncodeTensorRef(pending_, payload);
    pending_ = {};
    if (!out_->Write(sandbox::FrameType::kTensorRef, payload, sizeof payload)) {
      return Closed();
    }
    return Status::Ok();
  }
  // Bytes sent so far, as data or by reference.
  uint64_t bytes() const { return bytes_; }
  // Of them, the bytes sent as data (TENSOR_DATA).
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  static Status Closed() { return Status::IoError("the parent closed the result channel"); }
  const ByteView input_;
  sandbox::FrameWriter* const out_;
  protocol::TensorRef pending_;
  uint64_t bytes_ = 0;
  uint64_t data_bytes_ = 0;
};

// Drops the input's pages from the resident set (they stay in the page
// cache; a later read faults them back in).
void ReleaseMaps(const std::vector<ByteView>& maps) {
  for (ByteView map : maps) {
    if (!map.empty()) madvise(const_cast<uint8_t*>(map.data()), map.size(), MADV_DONTNEED);
  }
}

// WorkerHeader.tensors (field 2, length-delimited): its tag byte.
constexpr uint8_t kHeaderTensorsTag = (worker::WorkerHeader::kTensorsFieldNumber << 3) | 2;
static_assert(worker::WorkerHeader::kSourceFormatFieldNumber < worker::WorkerHeader::kTensorsFieldNumber &&
              worker::WorkerHeader::kTensorsFieldNumber < worker::WorkerHeader::kArchitectureFieldNumber);

// Sends the HEADER frame. Its own function so that the message and its bytes
// (for 100,000 tensors, about as large as the parsed model itself) are freed
// before the tensors stream.
Status SendHeader(const loader::ParsedModel& model, const loader::ParseContext& ctx,
                  const Args& args, const StreamLimits& limits, sandbox::FrameWriter* out) {
  // The message is serialised in field order (source_format = 1, tensors =
  // 2, then the rest), so it is written in three parts, the tensor entries
  // one at a time: the list as messages would be a second copy of the parsed
  // model's tensors (about 200 bytes each). The bytes are the same as the
  // whole message's serialisation.
  std::string bytes;
  {
    worker::WorkerHeader head;
    head.set_source_format(model.source_format);
    bytes = wire::SerializeDeterministic(head);
  }
  {
    v1::TensorInfo o;
    std::string entry;
    for (const loader::Tensor& t : model.tensors) {
      o.Clear();
      o.set_name(t.name);
      o.set_dtype(static_cast<v1::DType>(t.dtype));
      for (uint64_t d : t.shape) o.add_shape(d);
      o.set_alias_of(t.alias_of.str());
      o.set_source_index(t.source_index);
      entry.clear();
      if (!o.SerializeToString(&entry)) return Status::Internal("cannot encode a tensor entry");
      bytes.push_back(static_cast<char>(kHeaderTensorsTag));
      for (uint64_t n = entry.size(); ; n >>= 7) {  // the entry's length, a varint
        bytes.push_back(static_cast<char>((n & 0x7f) | (n >= 0x80 ? 0x80 : 0)));
        if (n < 0x80) break;
      }
      bytes += entry;
    }
  }
  worker::WorkerHeader header;  // everything after the tensors
  if (!model.architecture.is_null()) {
    SAFEMODEL_RETURN_IF_ERROR(CheckValue(model.architecture, "architecture"));
    wire::ValueToProto(model.architecture, header.mutable_architecture());
  }
  if (!model.metadata.is_null()) {
    SAFEMODEL_RETURN_IF_ERROR(CheckValue(model.metadata, "metadata"));
    wire::ValueToProto(model.metadata, header.mutable_metadata());
  }
  std::vector<Finding> findings = ctx.findings();
  findings.insert(findings.end(), model.findings.begin(), model.findings.end());
  TrimFindings(&findings, limits);
  for (const Finding& f : findings) wire::FindingToProto(f, header.add_findings());
  if (args.weights_only) header.add_options(std::string(protocol::kOptionWeightsOnly));
  if (args.keep_optimizer) header.add_options(std::string(protocol::kOptionKeepOptimizer));
  bytes += wire::SerializeDeterministic(header);
  // The parent refuses a header beyond these (a compromised worker's); an
  // honest one this large is refused here, with the reason.
  if (bytes.size() > limits.header_bytes) {
    return Status::LimitExceeded("the model's header would be " + std::to_string(bytes.size()) +
                                 " bytes, over the limit of " + std::to_string(limits.header_bytes) +
                                 " for an input of " + std::to_string(args.worker.input_size) + " bytes");
  }
  const uint64_t objects = wire::CountParsedObjects(header, AsBytes(bytes));
  if (objects > limits.header_objects) {
    return Status::LimitExceeded("the model's header holds " + std::to_string(objects) +
                                 " objects (tensors, architecture nodes, findings), over the "
                                 "limit of " + std::to_string(limits.header_objects) +
                                 " for an input of " + std::to_string(args.worker.input_size) + " bytes");
  }
  if (!out->Write(sandbox::FrameType::kHeader, bytes.data(), bytes.size())) {
    return Status::IoError("the parent closed the result channel");
  }
  return Status::Ok();
}

// `parse` reads the input, whose maps are `maps`.
using ParseFn = std::function<Status(loader::ParseContext&, loader::ParsedModel*)>;

// `detected` receives the format the parser detected, also when it fails.
Status Convert(const ParseFn& parse, const std::vector<ByteView>& maps, const Args& args,
               loader::ParseContext& ctx, std::string* detected) {
  loader::ParsedModel model;
  Status parsed = parse(ctx, &model);
  *detected = model.source_format;
  // A parse that asked for libhdf5 in a worker without it is void, whatever
  // it produced: nothing is sent (WorkerMain hands the input off).
  if (loader::LinkedHdf5Seam().needed()) return parsed;
  SAFEMODEL_RETURN_IF_ERROR(parsed);
  if (ctx.refused()) return ctx.RefusedStatus();
  // The parse touched every directory entry and array header (31 MB of a
  // .npz of 100,000 small arrays): those pages leave the resident set before
  // the header is built, not when 16 MiB of output have gone.
  ReleaseMaps(maps);
  // The parser's scratch (a pickle graph: a million small objects for
  // 100,000 tensors) is freed but its pages stay resident between the
  // model's allocations; hand the free pages back before streaming, where a
  // large tensor adds its own (mixed.pt: worker peak 430 -> 393 MiB).
  // Not in sanitizer builds: their allocator is not glibc's, whose first
  // use would initialise it (getrandom, outside the policy).
#if !defined(SAFEMODEL_SANITIZER_BUILD)
  malloc_trim(0);
#endif

  // The parser listed the tensors in the source's order: record it, then
  // sort into the canonical order, bytewise by name. Names must be unique.
  for (size_t i = 0; i < model.tensors.size(); ++i) model.tensors[i].source_index = i;
  std::sort(model.tensors.begin(), model.tensors.end(),
            [](const loader::Tensor& a, const loader::Tensor& b) { return a.name < b.name; });
  for (size_t i = 1; i < model.tensors.size(); ++i) {
    if (model.tensors[i].name == model.tensors[i - 1].name) {
      return Status::Malformed("two tensors are named '" + Printable(model.tensors[i].name) + "'");
    }
  }
  const StreamLimits limits = StreamLimitsFor(args.worker.input_size);
  if (model.tensors.size() > kMaxTensorCount || model.tensors.size() > limits.tensors) {
    return Status::LimitExceeded(
        std::to_string(model.tensors.size()) + " tensors exceed the limit of " +
        std::to_string(std::min<uint64_t>(kMaxTensorCount, limits.tensors)) + " for an input of " +
        std::to_string(args.worker.input_size) + " bytes (at least " +
        std::to_string(kMinInputBytesPerTensor) + " input bytes per tensor)");
  }

  // Every frame of the result goes through `out`; on an error return what it
  // still holds is dropped and the ERROR frame follows what was sent.
  sandbox::FrameWriter out(sandbox::kOutputFd);
  SAFEMODEL_RETURN_IF_ERROR(SendHeader(model, ctx, args, limits, &out));

  // References only into the one file of a single-file input: the parent
  // reads them from its one input descriptor.
  const ByteView single_map = maps.size() == 1 && args.worker.input_files == 0 ? maps[0] : ByteView();
  FrameSink sink(single_map, &out);
  // The input pages that tensors sent as data were read from: a few small
  // tensors between large ones (a norm's weights between two matrices) each
  // map a 2 MiB folio of a file read before (loader/map_residency.h), which
  // ReleaseMaps' counts of bytes sent and tensors did not bound (200 such
  // pairs: a worker peak of 367-403 MiB). Every map, a multi-file model's
  // too: all are read-only private file maps (MapFd), as ReleaseMaps knows.
  std::vector<loader::MapResidency> streamed;
  streamed.reserve(maps.size());
  for (ByteView map : maps) streamed.emplace_back(map);
  uint64_t sent = 0;
  uint64_t released = 0;  // sink.bytes() when the input's pages were last released
  uint64_t flushed = 0;   // sink.bytes() when `out` was last flushed
  for (loader::Tensor& t : model.tensors) {
    if (!t.alias_of.empty()) continue;
    if (!t.source) return Status::Internal("tensor '" + Printable(t.name) + "' has no source");
    // The elements are the input map or a buffer zero-filled before any
    // library wrote into it (loader/model.h): no other worker memory is sent.
    SAFEMODEL_ASSIGN_OR_RETURN(loader::Elements elements, t.source());
    const std::string what = t.Where(t.name);  // built here: the transform and the walk both name it
    // A transposed or big-endian view of the input: the parent reads and
    // transforms it itself; this worker never touches those bytes.
    const std::optional<protocol::TensorXform> xform = sink.XformFor(elements, t.dtype, t.shape, what);
    if (xform) {
      SAFEMODEL_RETURN_IF_ERROR(sink.SendXform(*xform, *ElementCount(t.shape, what) * DTypeSize(t.dtype)));
    } else {
      const uint64_t data_before = sink.data_bytes();
      SAFEMODEL_RETURN_IF_ERROR(loader::StreamElements(elements, t.dtype, t.shape, what, sink));
      if (sink.data_bytes() != data_before) {
        // Only the bytes the elements span: a small tensor's view may be a
        // storage of gigabytes, whose pages it never read.
        const Result<ByteView> read = loader::ElementBytes(elements, t.dtype, t.shape, what);
        for (loader::MapResidency& residency : streamed) {
          if (!read.ok() || residency.Touch(*read)) break;  // the one map it is in
        }
      }
    }
    SAFEMODEL_RETURN_IF_ERROR(sink.Flush());
    if (sink.bytes() - flushed >= kFlushAfterBytes) {
      if (!out.Flush()) return Status::IoError("the parent closed the result channel");
      flushed = sink.bytes();
    }
    t.source = nullptr;  // frees produced buffers and whatever the source held
    // Pages of the input already converted leave our resident set (they stay
    // in the page cache): memory does not grow with the input size. Done
    // every kReleaseInputBytes of output or kReleaseInputTensors tensors,
    // not after every tensor: each call
    // walks the whole map and the next tensor faults its pages back in, which
    // made 100,000 small tensors cost 15 us each (tests/bench/PROFILE.md).
    ++sent;
    if (sink.bytes() - released >= kReleaseInputBytes || sent % kReleaseInputTensors == 0) {
      ReleaseMaps(maps);
      released = sink.bytes();
    }
  }
  worker::WorkerDone done;
  done.set_tensors_sent(sent);
  done.set_bytes_sent(sink.bytes());
  std::string done_bytes = wire::SerializeDeterministic(done);
  if (!out.Write(sandbox::FrameType::kDone, done_bytes.data(), done_bytes.size()) || !out.Flush()) {
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
  return MapFd(sandbox::kInputFd, args.worker.input_size, "the input", &maps->back());
}

// A model made of several files: the parent's list on fd 4, then one
// descriptor per file. The list is checked against the descriptors here;
// names and roles are checked again by the parsers (loader::ParseModelFiles).
Status MapFiles(const Args& args, loader::InputFiles* files, std::vector<ByteView>* maps) {
  ByteView manifest_bytes;
  SAFEMODEL_RETURN_IF_ERROR(MapFd(sandbox::kInputFd, args.worker.manifest_size, "the file list", &manifest_bytes));
  worker::InputManifest manifest;
  const bool parsed = manifest.ParseFromArray(manifest_bytes.data(), static_cast<int>(manifest_bytes.size()));
  munmap(const_cast<uint8_t*>(manifest_bytes.data()), manifest_bytes.size());
  if (!parsed || !loader::IsValidModelKind(manifest.kind()) ||
      static_cast<uint64_t>(manifest.files_size()) != args.worker.input_files) {
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
  if (total != args.worker.input_size) {
    return Status(StatusCode::kSandboxSetupFailed, "the parent's file list does not add up to the input size");
  }
  return Status::Ok();
}

}  // namespace

// The C++ runtime initialises its unwinder on the first throw; do that while
// every system call is still allowed.
static void WarmUpExceptions() {
  try {
    throw std::bad_alloc();
  } catch (const std::bad_alloc&) {
  }
}

static int Work(int argc, char** argv) {
  Args args;
  std::vector<std::string> layers;
  // Before anything else: a worker started with ASLR off re-executes itself.
  if (Status aslr = sandbox::EnsureAddressRandomization(argc, argv); !aslr.ok()) {
    SendError(aslr, {});
    return 1;
  }
  if (Status parsed = ParseArgs(argc, argv, &args); !parsed.ok()) {
    SendError(parsed.WithContext("bad worker arguments"), {});
    return 1;
  }
  g_input_size = args.worker.input_size;
  if (Status prepared = sandbox::PrepareWorkerProcess(
          args.worker.parent_pid, static_cast<uint32_t>(args.worker.input_files));
      !prepared.ok()) {
    SendError(prepared, {});
    return 1;
  }
  std::vector<ByteView> maps;
  loader::InputFiles files;
  if (Status mapped = args.worker.input_files > 0 ? MapFiles(args, &files, &maps) : MapInput(args, &maps);
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
  lock.address_space_bytes = args.worker.address_space;
#endif
  lock.cpu_seconds = args.worker.cpu_seconds;
  lock.parent_pid = args.worker.parent_pid;
  if (Status locked = sandbox::LockDown(lock, &layers); !locked.ok()) {
    SendError(locked.WithContext("lockdown failed"), {});
    return 1;
  }

  // From here on: untrusted bytes, and only the sandbox's system calls.
  loader::ParseOptions options;
  options.memory_limit = args.worker.memory_limit;
  options.weights_only = args.weights_only;
  options.keep_optimizer = args.keep_optimizer;
  // A single-file input is a PROT_READ, MAP_PRIVATE map of a regular file
  // (MapFd): its pages may be dropped, as ReleaseMaps does.
  if (args.worker.input_files == 0 && maps.size() == 1) options.droppable_map = maps[0];
  loader::ParseContext ctx(options);
  Status status;
  std::string detected;
  try {
    const ParseFn parse = [&](loader::ParseContext& c, loader::ParsedModel* model) {
      return args.worker.input_files > 0 ? loader::ParseModelFiles(files, c, model)
                                  : loader::ParseModel(maps[0], c, model);
    };
    status = Convert(parse, maps, args, ctx, &detected);
  } catch (const std::bad_alloc&) {
    status = Status::LimitExceeded("the worker ran out of memory (limit " +
                                   std::to_string(args.worker.memory_limit) + " bytes)");
  } catch (const std::exception& e) {
    status = Status::Internal(std::string("unexpected exception in the worker: ") + e.what());
  }
  if (loader::LinkedHdf5Seam().needed()) {
    SendHandOff();
    return 1;
  }
  if (status.ok()) {
    g_last_frame_sent = true;  // Convert wrote and flushed DONE
    return 0;
  }
  try {
    SendError(status, ctx.findings(), detected);
  } catch (...) {
    return 4;  // out of memory even for the error report
  }
  return 1;
}

// The worker, exec'd or forked (the zygote runs this in each child): its
// stream, then, once the last frame is out, the wait that lets the parent
// read its peak memory in /proc while it is alive (sandbox/lockdown.h).
static int WorkerMain(int argc, char** argv) {
  const int code = Work(argc, argv);
  if (g_last_frame_sent) sandbox::AwaitDismissal();
  return code;
}

}  // namespace safemodel

// The zygote's initialisation (sandbox/zygote.h): what is the same in every
// worker and secret in none. The shared libraries are loaded and relocated
// by the exec itself. Not PrepareLibraries(): it draws the process's
// hash-table key (proto/base/keyed_hash.h), which must differ per worker,
// so every forked worker draws its own in WorkerMain.
// libhdf5's initialisation (H5open, its error and plugin settings, our
// filter and driver: loader::Hdf5Seam::prepare) is the same in every HDF5
// worker, reads nothing and holds no secret: done once here, it is
// inherited by each forked worker, whose PrepareLibraries finds it done
// (each step is idempotent). The lean worker's seam does nothing. A failure
// is not fatal here: each worker's own PrepareLibraries reports it.
static void InitZygote() {
  safemodel::WarmUpExceptions();
  (void)safemodel::loader::LinkedHdf5Seam().prepare();
}

int main(int argc, char** argv) {
  if (safemodel::sandbox::IsZygoteInvocation(argc, argv)) {
    // A zygote started with ASLR off re-executes itself first, as a worker does.
    if (!safemodel::sandbox::EnsureAddressRandomization(argc, argv).ok()) _exit(1);
    _exit(safemodel::sandbox::RunZygote(argc, argv, InitZygote, safemodel::WorkerMain));
  }
  _exit(safemodel::WorkerMain(argc, argv));
}
