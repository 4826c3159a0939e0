// Second readings: what the other loaders make of the same bytes.
//
// safemodel detects a format by its first bytes, as torch.load, np.load and
// joblib.load do for their main decision. Three loaders also look elsewhere:
//   - torch.load, given a path or a real file that does not start with
//     PK\x03\x04, first tries Python's tarfile at offset 0 (its oldest,
//     legacy tar format; containers/tar_reading.h);
//   - libhdf5 (h5py, Keras .h5) looks for its signature at offsets 0, 512,
//     1024, 2048, ... below the end of the file and reads the first match,
//     whatever lies before it (a "user block");
//   - Python's zipfile (Keras .keras, np.load for files starting with PK,
//     anything calling zipfile) finds the archive from the last end record in
//     the file's final 64 KiB and shifts every offset by the bytes in front
//     (containers/zipfile_view.h).
// A file is accepted only when it is one thing to all of them. The functions
// here, with the container models they build on, make those decisions byte
// for byte and scan what the other readings would load; loader/registry.cc
// applies them.
//
// Worst case: O(n) in the input size for each function (the HDF5 search
// reads 8 bytes at log2(n) offsets; the zip search scans the last 64 KiB
// once; the tar walk visits each 512-byte header once), plus the pickle
// machine's cost for what is scanned.
//
// Trust: the input is untrusted.
#ifndef SAFEMODEL_LOADER_POLYGLOT_H_
#define SAFEMODEL_LOADER_POLYGLOT_H_

#include <cstdint>
#include <optional>

#include "loader/containers/tar_reading.h"
#include "loader/containers/zipfile_view.h"
#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Where libhdf5 finds its superblock signature (H5FD_locate_signature: 0,
// then 2^k for k >= 9, the first match whose 8 bytes lie inside the file).
// The probes lie in a 2 MiB block each past the first few (a whole folio
// may be mapped for each: map_residency.h); inside `droppable_map`
// (ParseOptions::droppable_map) they are dropped again.
std::optional<uint64_t> FindHdf5Signature(ByteView input, ByteView droppable_map = {});

// Scans a tar archive as tarfile lists it for pickles in member data (a zip
// in a member is scanned as a damaged zip, one level), and refuses link
// members named `storages`, `tensors` or `pickle` (torch extracts them
// without a filter and opens the link's target outside the archive).
void ScanTarReading(ByteView input, ParseContext& ctx);

// Scans the members of the archive zipfile reads (`view`, offsets shifted by
// its concat) for pickles and object .npy files, whatever their names.
void ScanZipfileReading(ByteView input, const ZipfileView& view, ParseContext& ctx);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_POLYGLOT_H_
