#include "loader/pickle/pickle_formats.h"

#include <string>

#include "loader/containers/inflate.h"
#include "loader/containers/sniff.h"
#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/pickle_machine.h"
#include "loader/pickle/pickle_run.h"
#include "loader/pickle/torch_formats.h"

namespace safemodel::loader {

using pickle::Graph;
using pickle::Machine;
using pickle::MachineOptions;
using pickle::Ref;

namespace {

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
  Result<Ref> run = machine.Run(input, 0, &end);
  if (run.ok() && !machine.tainted() && pickle::IsLegacyTorchMagic(*graph, *run)) {
    out->source_format = "pytorch_legacy";
    return pickle::ParseLegacyTorch(input, end, graph, ctx, out);
  }
  const std::string after =
      "the STOP at byte " + Num(end - 1) + " (a second pickle or hidden data)";
  Result<Ref> root = pickle::SettleWholePickle(run, end, input, opts.where, after, ctx);
  SAFEMODEL_RETURN_IF_ERROR(root.status());
  if (graph->joblib && !compressed) {
    // (A compressed stream is not a pickle to pickle.load: it starts with
    // the zlib or gzip header.)
    SAFEMODEL_RETURN_IF_ERROR(CheckPlainPickleReading(input, opts.where, ctx));
  }
  out->source_format = graph->joblib ? "joblib" : format;
  pickle::ConvertSettings settings;
  settings.where = opts.where;
  settings.release_objects = true;
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
                                 InflateWhole(input, gzip, ctx.options().memory_limit));
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

}  // namespace safemodel::loader
