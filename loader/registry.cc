#include "loader/registry.h"

#include <cstdlib>
#include <cstring>
#include <ctime>

#include "converter/keyed_hash.h"
#include "loader/keras_h5/keras_h5.h"
#include "loader/numpy/npy.h"
#include "loader/pickle/pickle_formats.h"
#include "loader/zip/zip_archive.h"

namespace safemodel::loader {

namespace {

bool StartsWith(ByteView input, std::string_view magic) {
  return input.size() >= magic.size() && std::memcmp(input.data(), magic.data(), magic.size()) == 0;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// A zip archive: which container is it? Decided by member names only.
Status ParseZip(ByteView input, ParseContext& ctx, ParsedModel* out) {
  Result<std::shared_ptr<ZipArchive>> opened = ZipArchive::Open(input);
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
  bool all_npy = !zip->entries().empty();
  for (const ZipEntry& e : zip->entries()) all_npy = all_npy && EndsWith(e.name, ".npy");
  if (all_npy) return ParseNpzArchive(std::move(zip), ctx, out);
  // PyTorch checkpoints; any other archive is scanned for pickles and then
  // reported as not a model container.
  return ParseTorchZipArchive(input, std::move(zip), ctx, out);
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
  return PrepareHdf5();
}

Status ParseModel(ByteView input, ParseContext& ctx, ParsedModel* out) {
  if (StartsWith(input, "\x93NUMPY")) return NewNpyParser()->Parse(input, ctx, out);
  if (StartsWith(input, "PK\x03\x04")) return ParseZip(input, ctx, out);
  if (StartsWith(input, "PK\x05\x06")) return Status::Unsupported("empty zip archive");
  if (StartsWith(input, "\x89HDF\r\n\x1a\n")) return NewKerasH5Parser()->Parse(input, ctx, out);
  if (LooksLikeSevenZip(input)) return ParseSevenZip(input, ctx);
  if (LooksLikePickle(input) || LooksLikeCompressedPickle(input)) {
    return NewPickleParser()->Parse(input, ctx, out);
  }
  if (StartsWith(input, "version https://git-lfs")) {
    return Status::Malformed("this is a Git LFS pointer file, not the model: fetch the real file");
  }
  return Status::Unsupported("unrecognised input format (leading bytes " +
                             DescribeLeadingBytes(input) + ")");
}

}  // namespace safemodel::loader
