// Pickle-based inputs: plain pickles and joblib files, the legacy PyTorch
// stream, PyTorch zip checkpoints, and numpy object arrays. All go through
// one pickle machine that never resolves a name and never calls anything.
// See ../shared/docs/PICKLE.md and OPCODES.md.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_

#include <memory>
#include <string_view>

#include "loader/numpy/npy.h"
#include "loader/parser.h"
#include "loader/zip/zip_archive.h"

namespace safemodel::loader {

// True if `input` starts like a pickle stream or a legacy torch file.
bool LooksLikePickle(ByteView input);

// A plain pickle / joblib stream, or a legacy (pre-1.6) torch stream.
std::unique_ptr<Parser> NewPickleParser();

// True if the archive's member names are those of a PyTorch checkpoint or a
// TorchScript archive (which is refused).
bool LooksLikeTorchZip(const ZipArchive& zip);

// A PyTorch zip checkpoint whose structure ZipArchive has already validated.
Status ParseTorchZipArchive(std::shared_ptr<ZipArchive> zip, ParseContext& ctx, ParsedModel* out);

// The object array of a .npy (or .npz member `where`): `pickle` is the data
// after the header. Adds what it finds to *out, or refuses.
Status ParseNpyObjectArray(const NpyHeader& header, ByteView pickle, std::string_view where,
                           std::string_view tensor_name, ParseContext& ctx, ParsedModel* out);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_
