#include "loader/registry.h"

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <vector>

#include "loader/containers/sevenzip.h"
#include "loader/containers/sniff.h"
#include "loader/containers/zip_archive.h"
#include "loader/hdf5_seam.h"
#include "loader/hf_index/hf_index.h"
#include "loader/keras3/keras_archive.h"
#include "loader/numpy/npy.h"
#include "loader/pickle/archive_scan.h"
#include "loader/pickle/npy_object.h"
#include "loader/pickle/pickle_formats.h"
#include "loader/pickle/torch_formats.h"
#include "loader/polyglot.h"
#include "loader/safetensors/safetensors.h"
#include "proto/base/keyed_hash.h"
#include "loader/tf_bundle/checkpoint.h"
#include "loader/tf_savedmodel/saved_model.h"

namespace safemodel::loader {

namespace {

// A zip archive: which container is it? Decided by member names only.
Status ParseZip(ByteView input, ParseContext& ctx, ParsedModel* out) {
  Result<std::shared_ptr<ZipArchive>> opened = ZipArchive::Open(input, ctx.options().droppable_map);
  if (!opened.ok()) {
    // Rejected archives are still scanned for pickles, so that a payload
    // hidden behind a zip trick is named (refused) rather than only called
    // malformed.
    ScanDamagedZip(input, ctx);
    if (ctx.refused()) {
      ctx.Note("zip.also_rejected", "zip archive",
               "besides what it refers to, the archive is rejected: " + opened.status().ToString());
      return ctx.RefusedStatus();
    }
    return opened.status();
  }
  std::shared_ptr<ZipArchive> zip = std::move(*opened);
  // Python's zipfile (np.load, Keras) must see this same archive. If it
  // reads another one, both are scanned: code in either is refused.
  if (Status agree = CheckZipfileAgrees(input); !agree.ok()) {
    ScanDamagedZip(input, ctx);
    if (std::optional<ZipfileView> view = FindZipfileArchive(input)) {
      ScanZipfileReading(input, *view, ctx);
    }
    if (!ctx.refused()) return agree;
    ctx.Refuse("format.polyglot", "zip archive",
               agree.message() + "; a reading carries the code above",
               {"torch.load (miniz)", "Python's zipfile"});
    return ctx.RefusedStatus();
  }
  bool all_npy = !zip->entries().empty();
  for (const ZipEntry& e : zip->entries()) all_npy = all_npy && e.name.ends_with(".npy");
  if (all_npy) return ParseNpzArchive(std::move(zip), pickle::ParseNpyObjectArray, ctx, out);
  if (LooksLikeKerasArchive(*zip)) {
    if (LooksLikeTorchZip(*zip)) {
      return Status::Malformed("the archive has both a Keras archive's members (config.json, "
                               "model.weights.*) and a PyTorch checkpoint's (data.pkl): two "
                               "models in one file");
    }
    return ParseKerasArchive(input, std::move(zip), LinkedHdf5Seam().open_keras3_h5_store, ctx,
                             out);
  }
  // PyTorch checkpoints; any other archive is scanned for pickles and then
  // reported as not a model container.
  return ParseTorchZipArchive(input, std::move(zip), ctx, out);
}

// What the first bytes say the input is (the decision torch.load, np.load
// and joblib.load make first).
enum class Primary {
  kNpy, kZip, kEmptyZip, kHdf5, kSevenZip, kSafetensors, kPickle, kCompressed, kLfsPointer,
  kJson, kUnknown
};

Primary Detect(ByteView input) {
  if (StartsWith(input, "\x93NUMPY")) return Primary::kNpy;
  if (StartsWith(input, "PK\x03\x04")) return Primary::kZip;
  if (StartsWith(input, "PK\x05\x06")) return Primary::kEmptyZip;
  if (StartsWith(input, "\x89HDF\r\n\x1a\n")) return Primary::kHdf5;
  if (LooksLikeSevenZip(input)) return Primary::kSevenZip;
  // safetensors has no magic; its shape (a small length, then '{') is
  // asked before the pickle guesses, and a file that pickle.load reads too
  // gets that second reading (SecondReadings).
  if (LooksLikeSafetensors(input)) return Primary::kSafetensors;
  // gzip and zlib are joblib's compressed pickles (the pickle parser says
  // what they hold); bzip2, xz, zstd and lzma are not read. One that
  // pickle.load would read as a pickle stays a pickle (fail closed: a
  // crafted bzip2 header is BINBYTES of 800 MB, then opcodes).
  if (LooksLikeCompressedPickle(input)) return Primary::kPickle;
  if (!CompressorName(input).empty() && !ReadsAsPickle(input)) return Primary::kCompressed;
  if (LooksLikePickle(input)) return Primary::kPickle;
  if (StartsWith(input, "version https://git-lfs")) return Primary::kLfsPointer;
  // JSON whitespace and '{' are no pickle opcode (pickle.load raises at the
  // first byte) and start no magic above; a safetensors file starts with
  // its 8-byte header length, whose upper bytes are NUL, which no JSON has.
  if (LooksLikeJsonObject(input)) return Primary::kJson;
  // pickle.load has no magic: any opcode may come first.
  if (ReadsAsPickle(input)) return Primary::kPickle;
  return Primary::kUnknown;
}

const char* PrimaryName(Primary p) {
  switch (p) {
    case Primary::kNpy:
      return "a .npy array (np.load)";
    case Primary::kZip:
    case Primary::kEmptyZip:
      return "a zip archive (torch.load, np.load)";
    case Primary::kHdf5:
      return "an HDF5 file (h5py, Keras)";
    case Primary::kSevenZip:
      return "a 7z archive";
    case Primary::kSafetensors:
      return "a safetensors file (safetensors.safe_open, load_file)";
    case Primary::kPickle:
      return "a pickle (pickle.load, joblib.load, torch.load, np.load with allow_pickle)";
    case Primary::kCompressed:
      return "compressed data";
    case Primary::kLfsPointer:
      return "a Git LFS pointer";
    case Primary::kJson:
      return "a JSON object (a Hugging Face checkpoint index)";
    case Primary::kUnknown:
      break;
  }
  return "unrecognised data";
}

// The report's format for an input that fails (an identifier; a parser that
// succeeds replaces it with its own, e.g. "pytorch" for a zip).
std::string FormatId(Primary p, ByteView input) {
  switch (p) {
    case Primary::kNpy: return "npy";
    case Primary::kZip:
    case Primary::kEmptyZip: return "zip";
    case Primary::kHdf5: return "hdf5";
    case Primary::kSevenZip: return "7z";
    case Primary::kSafetensors: return "safetensors";
    case Primary::kPickle:
      return LooksLikeCompressedPickle(input) ? std::string(CompressorName(input)) : "pickle";
    case Primary::kCompressed: return std::string(CompressorName(input));
    case Primary::kLfsPointer: return "git_lfs_pointer";
    case Primary::kJson: return "hf_index";
    case Primary::kUnknown: break;
  }
  return "unknown";
}

Status ParsePrimary(Primary p, ByteView input, ParseContext& ctx, ParsedModel* out) {
  switch (p) {
    case Primary::kNpy:
      return NewNpyParser(pickle::ParseNpyObjectArray)->Parse(input, ctx, out);
    case Primary::kZip:
      return ParseZip(input, ctx, out);
    case Primary::kEmptyZip:
      return Status::Unsupported("empty zip archive");
    case Primary::kHdf5:
      return LinkedHdf5Seam().new_keras_h5_parser()->Parse(input, ctx, out);
    case Primary::kSevenZip:
      return ParseSevenZip(input, ctx);
    case Primary::kSafetensors:
      return NewSafetensorsParser()->Parse(input, ctx, out);
    case Primary::kPickle:
      return NewPickleParser()->Parse(input, ctx, out);
    case Primary::kCompressed:
      return Status::Unsupported(std::string(CompressorName(input)) +
                                 "-compressed data: safemodel reads no compressed container "
                                 "other than joblib's gzip and zlib pickles; decompress it first");
    case Primary::kLfsPointer:
      return Status::Malformed("this is a Git LFS pointer file, not the model: fetch the real file");
    case Primary::kJson:
      return NewHfIndexParser()->Parse(input, ctx, out);
    case Primary::kUnknown:
      break;
  }
  return Status::Unsupported("unrecognised input format (leading bytes " +
                             DescribeLeadingBytes(input) + ")");
}

// One way a loader reads the bytes, and how to look for code in it.
struct Reading {
  std::string name;  // for messages: what the bytes are, to which loaders
  std::function<Status(ParseContext&)> read;
};

bool SafetensorsReadsAsPickle(ByteView input) {
  if (ReadsAsPickle(input)) return true;
  if (!LooksLikeCompressedPickle(input)) return false;
  ParseContext scratch(ParseOptions{});
  ParsedModel ignored;
  Status s = NewPickleParser()->Parse(input, scratch, &ignored);
  return s.ok() || s.code() == StatusCode::kRefused;
}

// The readings other than the first-bytes one (polyglot.h); `droppable_map`
// is ParseOptions::droppable_map, for the HDF5 signature probes.
std::vector<Reading> SecondReadings(ByteView input, Primary primary, ByteView droppable_map) {
  std::vector<Reading> out;
  // safetensors has no magic: its length prefix may also be the first
  // opcodes of a pickle (a GLOBAL whose lines run into the header) that
  // pickle.load and torch.load would run. A prefix that is a gzip or zlib
  // header (a length of 40,056 bytes is "x\x9c") is a second reading only
  // when it also decompresses to one: joblib.load fails on the rest.
  if (primary == Primary::kSafetensors && SafetensorsReadsAsPickle(input)) {
    out.push_back({PrimaryName(Primary::kPickle), [input](ParseContext& c) {
                     ParsedModel scratch;
                     return NewPickleParser()->Parse(input, c, &scratch);
                   }});
  }
  if (primary != Primary::kZip && TorchReadsAsTar(input)) {
    out.push_back({"a tar archive (torch.load's legacy tar format, from a path)",
                   [input](ParseContext& c) {
                     ScanTarReading(input, c);
                     return c.refused() ? c.RefusedStatus() : Status::Ok();
                   }});
  }
  std::optional<uint64_t> hdf5 = FindHdf5Signature(input, droppable_map);
  if (hdf5 && *hdf5 > 0) {
    out.push_back({"an HDF5 file after a user block of " + std::to_string(*hdf5) +
                       " bytes (h5py, Keras)",
                   [input](ParseContext& c) {
                     ParsedModel scratch;
                     return LinkedHdf5Seam().new_keras_h5_parser()->Parse(input, c, &scratch);
                   }});
  }
  if (primary != Primary::kZip && primary != Primary::kEmptyZip) {
    std::optional<ZipfileView> zip = FindZipfileArchive(input);
    if (zip && zip->has_entries) {
      ZipfileView view = *zip;
      out.push_back({"a zip archive at byte " + std::to_string(view.cd_start) +
                         "'s central directory (Python's zipfile: Keras .keras, np.load)",
                     [input, view](ParseContext& c) {
                       ScanZipfileReading(input, view, c);
                       return c.refused() ? c.RefusedStatus() : Status::Ok();
                     }});
    }
  }
  return out;
}

// The same bytes are several things to several loaders. Each reading is
// read on its own (its own findings); the file is refused for code found in
// any of them (exit 1), and otherwise as malformed (exit 3), with a finding
// that names every reading.
Status RefusePolyglot(Primary primary, ByteView input, std::vector<Reading> readings,
                      ParseContext& ctx) {
  if (primary != Primary::kUnknown && primary != Primary::kLfsPointer) {
    readings.insert(readings.begin(), {PrimaryName(primary), [primary, input](ParseContext& c) {
                                         ParsedModel scratch;
                                         return ParsePrimary(primary, input, c, &scratch);
                                       }});
  }
  std::string names;
  std::vector<std::string> refs;
  for (size_t i = 0; i < readings.size(); ++i) {
    names += (i == 0 ? "" : i + 1 == readings.size() ? " and " : ", ") + readings[i].name;
    refs.push_back(readings[i].name);
  }
  bool code = false;
  for (const Reading& r : readings) {
    ParseContext c(ctx.options());
    Status s = r.read(c);
    for (const Finding& f : c.findings()) {
      if (f.severity != Finding::Severity::kRefused) continue;
      code = true;
      ctx.Refuse(f.rule, f.location + " (read as " + r.name + ")", f.message, f.references);
    }
    if (!s.ok() && s.code() != StatusCode::kRefused) {
      ctx.Note("format.polyglot_reading", "file",
               "read as " + r.name + ": " + s.ToString());
    }
  }
  const std::string message = "the same bytes are " + names +
                              "; a file must be one thing to every loader that could be "
                              "pointed at it";
  if (code) {
    ctx.Refuse("format.polyglot", "file", message + ", and a reading carries the code above",
               refs);
    return ctx.RefusedStatus();
  }
  ctx.Note("format.polyglot", "file", message);
  return Status::Malformed("two readings of the same bytes: " + message);
}

}  // namespace

std::string DescribeLeadingBytes(ByteView input) {
  return "'" + Printable(AsChars(input.subspan(0, std::min<size_t>(input.size(), 16))), 64) + "'";
}

Status PrepareLibraries() {
  // The key of every hash table over file contents comes from getrandom(),
  // which the lockdown forbids: draw it now.
  if (!SeedKeyedHash()) return Status::Internal("no randomness for the hash-table key");
  // libzip converts DOS timestamps with mktime(), which loads the time zone
  // from /etc/localtime on first use. A fixed POSIX zone spec needs no file,
  // and tzset() now does the one-time setup while opening is still allowed.
  setenv("TZ", "UTC0", 1);
  tzset();
  // glibc's qsort asks for the physical memory size (sysinfo, which the
  // sandbox forbids) the first time it sorts more than 1 KiB, then keeps the
  // answer. libhdf5 sorts a dense group's link table with it, libcrypto
  // (libzip's) its stacks: sort that much once now, in either worker.
  {
    std::vector<uint64_t> warm(256);
    std::qsort(warm.data(), warm.size(), sizeof(uint64_t), [](const void* a, const void* b) {
      const uint64_t x = *static_cast<const uint64_t*>(a), y = *static_cast<const uint64_t*>(b);
      return (x > y) - (x < y);
    });
  }
  return LinkedHdf5Seam().prepare();
}

namespace {

Status ParseByFormat(ByteView input, ParseContext& ctx, ParsedModel* out) {
  const Primary primary = Detect(input);
  out->source_format = FormatId(primary, input);
  std::vector<Reading> second = SecondReadings(input, primary, ctx.options().droppable_map);
  if (second.empty()) return ParsePrimary(primary, input, ctx, out);
  // An HDF5 file with a user block that is nothing else: h5py reads it, and
  // so does the Keras parser (libhdf5 finds the same superblock).
  std::optional<uint64_t> hdf5 = FindHdf5Signature(input, ctx.options().droppable_map);
  if (primary == Primary::kUnknown && second.size() == 1 && hdf5 && *hdf5 > 0) {
    ctx.Note("hdf5.user_block", "file",
             "the HDF5 superblock is at byte " + std::to_string(*hdf5) +
                 " after a user block, which libhdf5 skips; the user block is not read");
    return LinkedHdf5Seam().new_keras_h5_parser()->Parse(input, ctx, out);
  }
  if (primary == Primary::kUnknown && second.size() == 1) {
    // One reading, by a loader whose format is not converted: a torch
    // legacy tar archive, or a zip archive after other data.
    ParseContext c(ctx.options());
    Status s = second[0].read(c);
    for (const Finding& f : c.findings()) {
      if (f.severity == Finding::Severity::kRefused) {
        ctx.Refuse(f.rule, f.location, f.message, f.references);
      }
    }
    if (ctx.refused()) return ctx.RefusedStatus();
    return Status::Unsupported("the input is " + second[0].name +
                               ", a layout safemodel does not convert");
  }
  return RefusePolyglot(primary, input, std::move(second), ctx);
}

}  // namespace

namespace {

// The shape rule of every format, checked once for all parsers: each
// dimension, and the non-zero dimensions times the element size, fit
// signed 64 bits (TensorByteSize), whatever the element count. The parent
// checks it again; a parser that let such a shape through is then still
// "malformed input" here, not an invalid worker result there.
Status CheckShapes(const ParsedModel& model) {
  for (const Tensor& t : model.tensors) {
    // The message's prefix is built only for a shape that fails (the
    // same check again): 100,000 tensors made 100,000 strings here.
    if (TensorByteSize(t.shape, t.dtype, "").ok()) continue;
    return TensorByteSize(t.shape, t.dtype, t.Where("tensor '" + Printable(t.name) + "'")).status();
  }
  return Status::Ok();
}

}  // namespace

Status ParseModelFiles(const InputFiles& input, ParseContext& ctx, ParsedModel* out) {
  if (input.files.empty() || input.files.size() > kMaxModelFiles) {
    return Status::Malformed("a multi-file model of " + std::to_string(input.files.size()) +
                             " files (1.." + std::to_string(kMaxModelFiles) + ")");
  }
  for (const InputFile& f : input.files) {
    if (!IsPlainRelativeName(f.name)) {
      return Status::Malformed("input file name '" + Printable(f.name) +
                               "' is not a plain relative name");
    }
  }
  // The format is known from the file names (loader/files), so a report
  // names it also when the parse fails.
  std::unique_ptr<MultiFileParser> parser;
  switch (input.kind) {
    case ModelKind::kSavedModel:
      out->source_format = "tf_savedmodel";
      parser = tf::NewSavedModelParser();
      break;
    case ModelKind::kCheckpoint:
      out->source_format = "tf_checkpoint";
      parser = tf::NewCheckpointParser();
      break;
    case ModelKind::kShardedWeights:
      out->source_format = "keras_sharded_weights";
      parser = NewShardedWeightsParser(LinkedHdf5Seam().open_keras3_h5_store);
      break;
  }
  if (parser == nullptr) return Status::Malformed("unknown multi-file model kind");
  SAFEMODEL_RETURN_IF_ERROR(parser->Parse(input, ctx, out));
  return CheckShapes(*out);
}

Status ParseModel(ByteView input, ParseContext& ctx, ParsedModel* out) {
  // Every input in which libhdf5 finds a superblock is read by the Keras
  // HDF5 parser, as its first reading or a second one (ParseByFormat). A
  // program without libhdf5 says so at once (hdf5_seam.h), before it
  // spends time on the other readings, whose result would be void anyway.
  const Hdf5Seam& hdf5 = LinkedHdf5Seam();
  if (!hdf5.available && FindHdf5Signature(input, ctx.options().droppable_map)) {
    return hdf5.new_keras_h5_parser()->Parse(input, ctx, out);
  }
  SAFEMODEL_RETURN_IF_ERROR(ParseByFormat(input, ctx, out));
  return CheckShapes(*out);
}

}  // namespace safemodel::loader
