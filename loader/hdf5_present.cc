// The full seam (hdf5_seam.h): libhdf5, the Keras HDF5 parser and Keras 3's
// HDF5 weight stores. Linked into safemodel_loader only.
#include "loader/hdf5_seam.h"
#include "loader/keras3/h5_store.h"
#include "loader/keras_h5/keras_h5.h"

namespace safemodel::loader {

namespace {

bool NeverNeeded() { return false; }

constexpr Hdf5Seam kPresent = {true, PrepareHdf5, NewKerasH5Parser, keras3::OpenH5Store,
                               NeverNeeded};

}  // namespace

const Hdf5Seam& LinkedHdf5Seam() { return kPresent; }

}  // namespace safemodel::loader
