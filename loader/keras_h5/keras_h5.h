// Keras HDF5 models (.h5): legacy full models, weights-only files and the
// Keras 3 legacy writer. See ../shared/docs/KERAS.md for the layouts.
#ifndef SAFEMODEL_LOADER_KERAS_H5_KERAS_H5_H_
#define SAFEMODEL_LOADER_KERAS_H5_KERAS_H5_H_

#include <memory>

#include "loader/parser.h"

namespace safemodel::loader {

// Puts libhdf5 into its safe state (no plugins, no error printing) and
// initialises it; called before lockdown.
Status PrepareHdf5();

std::unique_ptr<Parser> NewKerasH5Parser();

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_KERAS_H5_KERAS_H5_H_
