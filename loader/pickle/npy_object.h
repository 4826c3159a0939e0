// NumPy object arrays (descr 'O'): the array's data is a pickle of the
// array, read by the pickle machine (never unpickled). The .npy/.npz parsers
// reach this through their NpyObjectReader hook, so that numpy/ does not
// depend on pickle/; this module depends on numpy/'s header only.
//
// The pickle must fill the data exactly and hold an object ndarray whose
// shape and order match the .npy header. Elements that are numeric arrays
// or torch tensors become tensors named "<tensor_name>.<index>..."; the
// rest is metadata under `tensor_name`; a note says so.
//
// Worst case: the pickle machine's, O(n) in the pickle's bytes.
//
// Trust: the data is untrusted.
#ifndef SAFEMODEL_LOADER_PICKLE_NPY_OBJECT_H_
#define SAFEMODEL_LOADER_PICKLE_NPY_OBJECT_H_

#include <string_view>

#include "loader/numpy/npy_header.h"
#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::pickle {

// An NpyObjectReader (numpy/npy.h): `data` is what follows `header` in the
// .npy (or .npz member `where`). Adds what it finds to *out, or refuses.
Status ParseNpyObjectArray(const NpyHeader& header, ByteView data, std::string_view where,
                           std::string_view tensor_name, ParseContext& ctx, ParsedModel* out);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_NPY_OBJECT_H_
