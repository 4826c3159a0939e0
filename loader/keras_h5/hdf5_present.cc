// The full seam (../hdf5_seam.h): libhdf5 and the Keras HDF5 parser. Linked
// into safemodel_loader only.
#include "loader/hdf5_seam.h"
#include "loader/keras_h5/keras_h5.h"

namespace safemodel::loader {

namespace {

bool NeverNeeded() { return false; }

constexpr Hdf5Seam kPresent = {true, PrepareHdf5, NewKerasH5Parser, NeverNeeded};

}  // namespace

const Hdf5Seam& LinkedHdf5Seam() { return kPresent; }

}  // namespace safemodel::loader
