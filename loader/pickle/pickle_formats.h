// Pickle-based inputs: plain pickles and joblib files (also zlib/gzip
// compressed), the legacy PyTorch stream (torch < 1.6), PyTorch zip
// checkpoints, and numpy object arrays. All go through one pickle machine
// (pickle_machine.h) that never resolves a name and never calls anything.
// See ../shared/docs/PICKLE.md and OPCODES.md.
//
// Verdicts: a stream that refers to anything outside the table of known data
// constructors is refused (kRefused, one finding per callable with its byte
// offset); a stream the machine cannot read is Malformed; a known construct
// safemodel does not represent is Unsupported. Findings take precedence:
// where a container or a stream is also broken, whatever could be read is
// still scanned, so that the report names the callables.
//
// Worst case: O(n) in the bytes read, with the pickle machine's constant:
// a legacy stream reads its five pickles and storages once; scanning after a
// refusal reads each following byte at most once (at most 64 streams); a zip
// or 7z archive is O(members + inflated bytes), the inflated bytes bounded by
// the memory limit; a joblib stream is read twice (as joblib.load and as
// pickle.load read it). Turning the graph into values visits at most
// kMaxValueNodes nodes.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_

#include <memory>
#include <string_view>

#include "loader/numpy/npy.h"
#include "loader/parser.h"
#include "loader/zip/zip_archive.h"

namespace safemodel::loader {

// True if `input` starts like a pickle stream (any protocol; the legacy
// torch stream is a pickle).
bool LooksLikePickle(ByteView input);

// True if pickle.load would read a pickle from `input` although its first
// opcode is not one a pickler writes first (LooksLikePickle): the machine
// reaches STOP, or meets a name or call before anything pickle.load raises
// at (a file that starts with BINBYTES and then calls os.system; not a PNG,
// whose 0x89 'P' is NEWFALSE and a persistent id pickle.load rejects).
bool ReadsAsPickle(ByteView input);

// True if `input` is a zlib or gzip stream (compressed joblib files).
bool LooksLikeCompressedPickle(ByteView input);

// A plain pickle / joblib stream, or a legacy (pre-1.6) torch stream; also
// a zlib/gzip-compressed one, decompressed within ParseOptions::memory_limit.
std::unique_ptr<Parser> NewPickleParser();

// True if the archive's member names are those of a PyTorch checkpoint or a
// TorchScript archive (which is refused).
bool LooksLikeTorchZip(const ZipArchive& zip);

// A zip archive that is not an .npz: a PyTorch checkpoint (refused when it
// is TorchScript), or any other archive, whose members are scanned for
// pickles and which is refused if they call anything, and otherwise reported
// as not a model container. `image` is the archive's bytes.
Status ParseTorchZipArchive(ByteView image, std::shared_ptr<ZipArchive> zip, ParseContext& ctx,
                            ParsedModel* out);

// Scans every member of a zip archive that ZipArchive rejected (bad flags,
// CRCs, names) for pickles, reporting their callables to `ctx`. Reads member
// data only to look for findings; never produces output.
void ScanDamagedZip(ByteView image, ParseContext& ctx);

// True if `input` is a 7z archive.
bool LooksLikeSevenZip(ByteView input);

// 7z archives are never converted; their members (Copy, LZMA, LZMA2) are
// scanned for pickles: refused if one calls anything, else Unsupported.
Status ParseSevenZip(ByteView input, ParseContext& ctx);

// The object array of a .npy (or .npz member `where`): `pickle` is the data
// after the header. Adds what it finds to *out (tensors named
// "<tensor_name>.<index>...", the rest under metadata[tensor_name]), or
// refuses.
Status ParseNpyObjectArray(const NpyHeader& header, ByteView pickle, std::string_view where,
                           std::string_view tensor_name, ParseContext& ctx, ParsedModel* out);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_
