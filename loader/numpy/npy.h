// NumPy .npy files and .npz archives (a zip of .npy members), as np.load
// reads them: numeric and bool arrays become tensors (views of the input, or
// of a member inflated when the tensor is streamed).
//
// Object arrays (descr 'O': the data is a pickle) are not read here: they
// go to the NpyObjectReader the caller supplies (the registry passes the
// pickle machine's), so that this folder knows nothing of pickles.
//
// An .npz is refused when np.load would answer a key with another member
// than the one safemodel names (members 'a.npy' and 'a.npy.npy'), and when a
// member is not a .npy by name or by content.
//
// Worst case: the header's (npy_header.h) plus O(1) per array; an .npz is
// O(members) on top of the zip reader. An object array is its reader's cost.
//
// Trust: the input is untrusted.
#ifndef SAFEMODEL_LOADER_NUMPY_NPY_H_
#define SAFEMODEL_LOADER_NUMPY_NPY_H_

#include <functional>
#include <memory>
#include <string_view>

#include "loader/numpy/npy_header.h"
#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

class ZipArchive;

// Reads the object array of a .npy (or of the .npz member `where`): `pickle`
// is the data after `header`. Adds what it finds to *out under
// `tensor_name`, or refuses.
using NpyObjectReader =
    std::function<Status(const NpyHeader& header, ByteView pickle, std::string_view where,
                         std::string_view tensor_name, ParseContext& ctx, ParsedModel* out)>;

// A .npy file; its object array (if it is one) goes to `objects`.
std::unique_ptr<Parser> NewNpyParser(NpyObjectReader objects);

// An already opened (and validated) zip archive as an .npz; object members
// go to `objects`.
Status ParseNpzArchive(std::shared_ptr<ZipArchive> zip, const NpyObjectReader& objects,
                       ParseContext& ctx, ParsedModel* out);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_NUMPY_NPY_H_
