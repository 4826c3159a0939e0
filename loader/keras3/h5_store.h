// Keras 3 weight stores in HDF5 (`model.weights.h5`, standalone and
// sharded `*.weights.h5`): the one part of keras3/ that needs libhdf5, in a
// library of its own (safemodel_loader_keras3_h5) so that a program can
// link the rest of keras3/ without libhdf5. Reached only through the seam
// (../hdf5_seam.h), never called by keras3/ directly (weight_store.h,
// H5StoreOpener).
//
// Trust: `image` is untrusted; it goes through the hardened HDF5 path of
// ../keras_h5 (h5_file.h) with its refusals (hdf5.*).
#ifndef SAFEMODEL_LOADER_KERAS3_H5_STORE_H_
#define SAFEMODEL_LOADER_KERAS3_H5_STORE_H_

#include <string_view>

#include "loader/keras3/weight_store.h"

namespace safemodel::loader::keras3 {

// A single HDF5 store in `image` (which must outlive the store). HDF5
// refusals go to ctx (the caller checks ctx.refused()). An H5StoreOpener.
Result<WeightStore> OpenH5Store(ByteView image, std::string_view where, ParseContext& ctx);

}  // namespace safemodel::loader::keras3

#endif  // SAFEMODEL_LOADER_KERAS3_H5_STORE_H_
