#include "loader/pickle/pickle_formats.h"

#include <zlib.h>

#include <cstring>

#include "loader/pickle/pickle_internal.h"
#include "loader/sniff.h"

namespace safemodel::loader {

using pickle::Graph;
using pickle::Machine;
using pickle::MachineOptions;
using pickle::Ref;

namespace {

std::string Num(uint64_t v) { return std::to_string(v); }

// Bytes a compressed stream may inflate to per input byte before the input
// is considered a bomb (zlib's own maximum is ~1032:1).
constexpr uint64_t kMaxInflateRatio = 1100;

// Inflates a zlib (windowBits 15) or gzip (31) stream whole. The output is
// bounded by the memory limit and by the deflate ratio; trailing bytes after
// the stream are an error.
Result<std::shared_ptr<std::string>> Inflate(ByteView input, bool gzip, uint64_t max_bytes) {
  uint64_t cap = max_bytes;
  uint64_t ratio_cap;
  if (CheckedMul(input.size() + 64, kMaxInflateRatio, &ratio_cap)) cap = std::min(cap, ratio_cap);
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, gzip ? 31 : 15) != Z_OK)
    return Status::LimitExceeded("zlib: cannot initialise");
  auto out = std::make_shared<std::string>();
  const char* what = gzip ? "gzip" : "zlib";
  uint64_t consumed = 0;
  int rc = Z_OK;
  Status status;
  while (rc != Z_STREAM_END) {
    if (out->size() >= cap) {
      status = Status::LimitExceeded(std::string(what) + " stream inflates beyond " + Num(cap) +
                                     " bytes (memory limit or compression ratio)");
      break;
    }
    const uint64_t grow =
        std::min<uint64_t>(std::max<uint64_t>(out->size(), 1 << 16), cap - out->size());
    const size_t old = out->size();
    out->resize(old + grow);
    zs.next_out = reinterpret_cast<Bytef*>(out->data() + old);
    zs.avail_out = static_cast<uInt>(std::min<uint64_t>(grow, UINT32_MAX));
    const uint64_t in_left = input.size() - consumed;
    zs.next_in = const_cast<Bytef*>(input.data() + consumed);
    zs.avail_in = static_cast<uInt>(std::min<uint64_t>(in_left, UINT32_MAX));
    const uInt in_before = zs.avail_in, out_before = zs.avail_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_before - zs.avail_in;
    out->resize(old + (out_before - zs.avail_out));
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK && !(rc == Z_BUF_ERROR && zs.avail_in > 0)) {
      status = Status::Malformed(std::string(what) + " stream is corrupt or truncated (" +
                                 (zs.msg ? zs.msg : "zlib error " + std::to_string(rc)) + ")");
      break;
    }
    if (zs.avail_in == 0 && consumed == input.size() && out_before == zs.avail_out) {
      status = Status::Malformed(std::string(what) + " stream is truncated");
      break;
    }
  }
  inflateEnd(&zs);
  SAFEMODEL_RETURN_IF_ERROR(status);
  if (consumed != input.size()) {
    return Status::Malformed(Num(input.size() - consumed) + " bytes after the end of the " + what +
                             " stream");
  }
  return out;
}

// A stream with joblib wrappers is read by joblib.load with the array bytes
// after each wrapper BUILD, and by pickle.load (and np.load with
// allow_pickle=True, which calls it) as opcodes all the way. The second
// reading must not exist: if those bytes are opcodes that call something, the
// file is refused for it (exit 1); if they make a complete pickle, the file is
// two different objects to two loaders (exit 3). Real joblib files fail that
// reading at once: the alignment byte before each array (0..15) is no opcode.
Status CheckPlainPickleReading(ByteView input, const std::string& where, ParseContext& ctx) {
  ParseContext plain(ctx.options());
  Graph graph;
  MachineOptions opts;
  opts.where = where + " read by pickle.load";
  opts.joblib = false;
  Machine machine(plain, graph, opts);
  uint64_t end = 0;
  Result<Ref> root = machine.Run(input, 0, &end);
  if (plain.refused()) {
    for (const Finding& f : plain.findings()) {
      if (f.severity == Finding::Severity::kRefused) {
        ctx.Refuse(f.rule, f.location, f.message, f.references);
      }
    }
    ctx.Refuse("format.polyglot", where,
               "two readings of the same bytes: joblib.load reads the array data after each "
               "NumpyArrayWrapper, pickle.load and np.load(allow_pickle=True) read those bytes "
               "as opcodes, and that reading calls the names above",
               {"joblib.load", "pickle.load"});
    return ctx.RefusedStatus();
  }
  if (root.ok()) {
    ctx.Note("format.polyglot", where,
             "pickle.load reads this joblib stream as a complete pickle of a different object "
             "(the array bytes after a NumpyArrayWrapper are opcodes to it)");
    return Status::Malformed(where + ": two readings of the same bytes: joblib.load reads "
                             "arrays after its wrappers, pickle.load reads those bytes as a "
                             "complete pickle of a different object (stops at byte " +
                             Num(end - 1) + ")");
  }
  return Status::Ok();
}

// A plain pickle, a joblib file, or a legacy torch stream.
Status ParsePickleStream(ByteView input, const std::string& format, ParseContext& ctx,
                         ParsedModel* out, bool compressed = false) {
  auto graph = std::make_shared<Graph>();
  MachineOptions opts;
  opts.where = format == "joblib" ? "joblib pickle" : "pickle";
  opts.compressed = compressed;
  Machine machine(ctx, *graph, opts);
  uint64_t end = 0;
  Result<Ref> root = machine.Run(input, 0, &end);
  if (root.ok() && !machine.tainted() && pickle::IsLegacyTorchMagic(*graph, *root)) {
    out->source_format = "pytorch_legacy";
    return pickle::ParseLegacyTorch(input, end, graph, ctx, out);
  }
  if (root.ok() && end != input.size()) {
    // A second pickle (or anything) after STOP: list what it calls, then
    // refuse it as hidden data.
    pickle::ScanForFindings(input, end, opts.where, ctx);
    if (ctx.refused()) return ctx.RefusedStatus();
    return Status::Malformed(opts.where + ": " + Num(input.size() - end) +
                             " bytes after the STOP at byte " + Num(end - 1) +
                             " (a second pickle or hidden data)");
  }
  if (ctx.refused()) return pickle::RefusedStatus(ctx, root.status(), opts.where);
  SAFEMODEL_RETURN_IF_ERROR(root.status());
  if (graph->joblib && !compressed) {
    // (A compressed stream is not a pickle to pickle.load: it starts with
    // the zlib or gzip header.)
    SAFEMODEL_RETURN_IF_ERROR(CheckPlainPickleReading(input, opts.where, ctx));
  }
  out->source_format = graph->joblib ? "joblib" : format;
  pickle::ConvertSettings settings;
  settings.where = opts.where;
  SAFEMODEL_ASSIGN_OR_RETURN(pickle::Converted c,
                             pickle::ConvertGraph(graph, *root, settings, ctx, out));
  pickle::StoreTrees(std::move(c), out);
  return Status::Ok();
}

class PickleParser final : public Parser {
 public:
  Status Parse(ByteView input, ParseContext& ctx, ParsedModel* out) override {
    if (LooksLikeCompressedPickle(input)) {
      const bool gzip = input[0] == 0x1f;
      out->source_format = gzip ? "gzip" : "zlib";
      SAFEMODEL_ASSIGN_OR_RETURN(std::shared_ptr<std::string> data,
                                 Inflate(input, gzip, ctx.options().memory_limit));
      // A compressed zip archive (a gzipped torch checkpoint), .npy or HDF5
      // file: joblib.load fails at its first opcodes without running
      // anything (ReadsAsPickle says whether it would), so this is an
      // unsupported container, not a pickle that refers to code.
      const std::string_view inner = PayloadContainerName(AsBytes(*data));
      if (!inner.empty() && !ReadsAsPickle(AsBytes(*data))) {
        return Status::Unsupported(std::string(gzip ? "gzip" : "zlib") + "-compressed " +
                                   std::string(inner) +
                                   ": safemodel reads no compressed container other than "
                                   "joblib's own compressed pickles; decompress it first");
      }
      if (!LooksLikePickle(AsBytes(*data))) {
        return Status::Unsupported(std::string(gzip ? "gzip" : "zlib") +
                                   " stream that does not hold a pickle (leading bytes '" +
                                   Printable(data->substr(0, 16), 64) + "')");
      }
      out->keepalive.push_back(data);
      Status s = ParsePickleStream(AsBytes(*data), "joblib", ctx, out, /*compressed=*/true);
      if (!s.ok()) return s.WithContext(std::string(gzip ? "gzip" : "zlib") + "-compressed joblib");
      return s;
    }
    const bool text_protocol = input.empty() || input[0] != 0x80;
    Status s = ParsePickleStream(input, "pickle", ctx, out);
    if (!s.ok() && text_protocol && s.code() == StatusCode::kMalformed) {
      // Protocol 0/1 pickles start with a printable opcode, as many text
      // files do: say what the input was taken for.
      return s.WithContext(
          "input read as a protocol 0/1 pickle (leading bytes '" +
          Printable(AsChars(input.subspan(0, std::min<size_t>(input.size(), 16))), 64) + "')");
    }
    return s;
  }
};

}  // namespace

namespace pickle {

Status RefusedStatus(ParseContext& ctx, const Status& error, const std::string& where) {
  if (!error.ok() && error.code() != StatusCode::kRefused) {
    ctx.Note("pickle.also_unreadable", where,
             "besides what it refers to, the input cannot be read: " + error.ToString());
  }
  return ctx.RefusedStatus();
}

void StoreTrees(Converted converted, ParsedModel* out) {
  if (!converted.architecture.is_null()) out->architecture = std::move(converted.architecture);
  if (!converted.metadata.is_null()) out->metadata = std::move(converted.metadata);
}

PersistentLoad ScanPersistentLoad() {
  return [](Machine& m, Ref, uint64_t offset) -> Result<Ref> {
    SAFEMODEL_ASSIGN_OR_RETURN(Ref r, m.New(pickle::Kind::kOpaque, offset));
    return r;
  };
}

void ScanForFindings(ByteView data, uint64_t start, const std::string& where, ParseContext& ctx) {
  uint64_t pos = start;
  for (uint32_t i = 0; i < kMaxScannedStreams && pos < data.size(); ++i) {
    Graph graph;
    MachineOptions opts;
    opts.where = where;
    opts.persistent_load = ScanPersistentLoad();
    Machine machine(ctx, graph, opts);
    uint64_t end = 0;
    Result<Ref> r = machine.Run(data, pos, &end);
    // A semantic error still read the stream to its STOP.
    if (!r.ok() && end == 0) break;
    if (end <= pos) break;
    pos = end;
  }
}

}  // namespace pickle

bool LooksLikePickle(ByteView input) {
  if (input.size() < 2) return false;
  if (input[0] == 0x80) return input[1] <= 5;
  // The first opcode a protocol 0/1 pickler writes for any object.
  static constexpr std::string_view kFirstOps = "()]}NIJKLMFGSTUVXcP";
  return kFirstOps.find(static_cast<char>(input[0])) != std::string_view::npos;
}

bool ReadsAsPickle(ByteView input) {
  ParseContext scratch(ParseOptions{});
  Graph graph;
  MachineOptions opts;
  Machine machine(scratch, graph, opts);
  uint64_t end = 0;
  Result<Ref> root = machine.Run(input, 0, &end);
  // Findings come in stream order. pickle.load raises at a persistent id,
  // an extension code or an out-of-band buffer (none of its callers supply
  // them for a file's first pickle): nothing after one runs. A name or a call
  // before it would have run; a STOP reached without one is a pickle.
  for (const Finding& f : scratch.findings()) {
    if (f.rule == "pickle.persistent_id" || f.rule == "pickle.extension_code" ||
        f.rule == "pickle.out_of_band_buffer") {
      return false;
    }
    if (f.severity == Finding::Severity::kRefused) return true;
  }
  return end > 0;
}

bool LooksLikeCompressedPickle(ByteView input) {
  if (input.size() < 3) return false;
  if (input[0] == 0x1f && input[1] == 0x8b && input[2] == 8) return true;  // gzip, deflate
  // zlib as zlib writes it (CMF 0x78: deflate, 32K window; RFC 1950 header
  // checksum; no preset dictionary). Other window sizes would make
  // protocol-0 pickles such as "(S'..." look compressed.
  return input[0] == 0x78 && ((input[0] << 8) | input[1]) % 31 == 0 && (input[1] & 0x20) == 0;
}

std::unique_ptr<Parser> NewPickleParser() { return std::make_unique<PickleParser>(); }

Status ParseNpyObjectArray(const NpyHeader& header, ByteView data, std::string_view where_view,
                           std::string_view tensor_name, ParseContext& ctx, ParsedModel* out) {
  const std::string where(where_view);
  auto graph = std::make_shared<Graph>();
  MachineOptions opts;
  opts.where = where;
  opts.base = header.data_offset;
  Machine machine(ctx, *graph, opts);
  uint64_t end = 0;
  Result<Ref> root = machine.Run(data, 0, &end);
  if (root.ok() && end != data.size()) {
    pickle::ScanForFindings(data, end, where, ctx);
    if (ctx.refused()) return ctx.RefusedStatus();
    return Status::Malformed(where + ": " + Num(data.size() - end) +
                             " bytes after the object array's pickle");
  }
  if (ctx.refused()) return pickle::RefusedStatus(ctx, root.status(), where);
  SAFEMODEL_RETURN_IF_ERROR(root.status());
  const Graph& g = *graph;
  if (root->kind != pickle::Kind::kRecord || g.at(*root).record != pickle::RecordKind::kNdArray) {
    return Status::Malformed(where + ": the object array's pickle holds " +
                             pickle::KindName(g, *root) + ", not an array");
  }
  const pickle::ArrayInfo& a = g.arrays[g.at(*root).aux];
  if (!a.built || a.items.kind != pickle::Kind::kList || a.shape != header.shape ||
      (a.fortran && a.shape.size() > 1) != (header.fortran_order && header.shape.size() > 1)) {
    return Status::Malformed(where +
                             ": the pickled array does not match the header's object dtype, shape "
                             "and order");
  }
  pickle::ConvertSettings settings;
  settings.where = where;
  settings.root_name = std::string(tensor_name);
  settings.prefix = std::string(tensor_name);
  SAFEMODEL_ASSIGN_OR_RETURN(pickle::Converted c,
                             pickle::ConvertGraph(graph, *root, settings, ctx, out));
  if (!out->metadata.is_map()) out->metadata = Value::Map();
  out->metadata.Set(std::string(tensor_name),
                    c.metadata.is_null() ? Value::List() : std::move(c.metadata));
  ctx.Note("numpy.object_array", where,
           "object array read by the pickle machine (no code); its elements are in the metadata "
           "under '" +
               Printable(tensor_name) + "'");
  return Status::Ok();
}

}  // namespace safemodel::loader
