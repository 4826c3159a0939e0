// HDF5 datatypes as tensors: which file datatypes become which dtype, and
// libhdf5's error stack as a message. Part of the HDF5 reader (h5_file.h).
#ifndef SAFEMODEL_LOADER_KERAS_H5_H5_TYPES_H_
#define SAFEMODEL_LOADER_KERAS_H5_H5_TYPES_H_

#include <hdf5.h>

#include <string>

#include "loader/keras_h5/h5_file.h"
#include "safemodel/status.h"

namespace safemodel::loader::h5 {

// The deepest (most specific) message on libhdf5's error stack, which is
// then cleared. Errors are never printed (PrepareHdf5 turns that off).
std::string TakeHdf5Error();

// kMalformed: `what`, with libhdf5's message (TakeHdf5Error) appended.
Status Hdf5Malformed(const std::string& what);

// "integer", "float", "string", ...: an HDF5 type class for messages.
const char* TypeClassName(H5T_class_t c);

// Maps a dataset's file datatype to a safemodel dtype (info->dtype,
// swap_unit, widen_bf16), or says why not (kUnsupported, or kMalformed if
// libhdf5 cannot describe it). `bfloat16_attr`: the dataset carries Keras's
// dtype="bfloat16" attribute.
Status ClassifyType(hid_t type, bool bfloat16_attr, const std::string& where, DatasetInfo* info);

}  // namespace safemodel::loader::h5

#endif  // SAFEMODEL_LOADER_KERAS_H5_H5_TYPES_H_
