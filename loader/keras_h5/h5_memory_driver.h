// A read-only HDF5 virtual file driver over bytes already in memory.
//
// libhdf5's own in-memory path (the core driver with a file image) makes
// file-system calls even when it never touches a file: it open()s the fake
// file name to check that no such file exists, and a relative name makes
// H5Fopen call getcwd(). The sandbox forbids both. This driver serves every
// read from the caller's bytes, fails every write, has no file name, lock,
// handle or truncation, and so makes no system call at all.
//
// Trust: the bytes are untrusted; the driver only copies ranges of them, with
// bounds checked here. Everything else about the file is libhdf5's to parse,
// which is why this code runs only in the sandboxed worker.
//
// Worst case: each read is one bounds check and one copy of what libhdf5
// asks for (O(bytes read)).
#ifndef SAFEMODEL_LOADER_KERAS_H5_H5_MEMORY_DRIVER_H_
#define SAFEMODEL_LOADER_KERAS_H5_H5_MEMORY_DRIVER_H_

#include <hdf5.h>

#include <cstdint>

#include "safemodel/status.h"

#include "loader/map_residency.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::h5 {

// The only file name the driver opens. Absolute, so that libhdf5 does not
// ask for the working directory. Any other name (an external link's target,
// a virtual dataset's source file) fails to open, without a system call.
inline constexpr char kMemoryImageName[] = "/safemodel/input.h5";

// Registers the driver with libhdf5 (once; later calls return the same id).
// Must run before lockdown, together with the rest of libhdf5's set-up.
Result<hid_t> RegisterMemoryDriver();

// Sets `fapl` to read `image` through this driver. `image` must outlive
// every file opened with the property list, and so must `residency` if not
// null: every read is noted with it (libhdf5 reads object headers and
// B-tree nodes all over the file; see map_residency.h).
Status SetMemoryDriver(hid_t fapl, ByteView image, MapResidency* residency = nullptr);

// The base address of a file opened through this driver: HDF5 addresses
// (dataset offsets included) are relative to it. An error if `file` was not
// opened through this driver.
Result<uint64_t> MemoryFileBaseAddress(hid_t file);

}  // namespace safemodel::loader::h5

#endif  // SAFEMODEL_LOADER_KERAS_H5_H5_MEMORY_DRIVER_H_
