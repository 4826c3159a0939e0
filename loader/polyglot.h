// Second readings: what the other loaders make of the same bytes.
//
// safemodel detects a format by its first bytes, as torch.load, np.load and
// joblib.load do for their main decision. Three loaders also look elsewhere
// (../shared/docs/LOADERS.md sections 1.1, 5.1, 6, 7.1):
//   - torch.load, given a path or a real file that does not start with
//     PK\x03\x04, first tries Python's tarfile at offset 0 (its oldest,
//     legacy tar format) and reads the members `storages`, `tensors` and
//     `pickle` if the first 512 bytes are a valid tar header;
//   - libhdf5 (h5py, Keras .h5) looks for its signature at offsets 0, 512,
//     1024, 2048, ... below the end of the file and reads the first match,
//     whatever lies before it (a "user block");
//   - Python's zipfile (Keras .keras, np.load for files starting with PK,
//     anything calling zipfile) finds the archive from the last end record in
//     the file's final 64 KiB and shifts every offset by the bytes in front.
// A file is accepted only when it is one thing to all of them. The functions
// here model those decisions byte for byte; loader/registry.cc applies them.
//
// Worst case: O(n) in the input size for each function (the HDF5 search
// reads 8 bytes at log2(n) offsets; the zip search scans the last 64 KiB
// once; the tar walk visits each 512-byte header once).
#ifndef SAFEMODEL_LOADER_POLYGLOT_H_
#define SAFEMODEL_LOADER_POLYGLOT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Python's tarfile.TarInfo.frombuf on a 512-byte block: not all NUL, the
// checksum field (octal text as int(s, 8) reads it, or base-256) equal to
// the unsigned or the signed byte sum with the field counted as spaces, and
// every other numeric field readable. (tarfile checks no "ustar" magic.)
bool IsTarHeader(ByteView block);

// True if torch.load (from a path) would read `input` as a legacy tar
// archive: the first block is a valid tar header and the file does not
// start with PK\x03\x04 (torch's zip test comes first).
bool TorchReadsAsTar(ByteView input);

// Where libhdf5 finds its superblock signature (H5FD_locate_signature: 0,
// then 2^k for k >= 9, the first match whose 8 bytes lie inside the file).
std::optional<uint64_t> FindHdf5Signature(ByteView input);

// The archive Python's zipfile would read (_EndRecData, _EndRecData64 and
// the start of _RealGetContents).
struct ZipfileView {
  uint64_t end_record = 0;  // offset of the end record zipfile uses
  bool zip64 = false;
  int64_t concat = 0;       // bytes zipfile adds to every offset (prefix data)
  uint64_t cd_start = 0;    // where it reads the central directory
  uint64_t cd_size = 0;
  // The central directory holds at least one entry with a valid signature:
  // zipfile lists members.
  bool has_entries = false;
};
std::optional<ZipfileView> FindZipfileArchive(ByteView input);

// The end record safemodel's strict zip reader uses: the one candidate whose
// comment reaches the end of the file (nullopt if none or several).
std::optional<uint64_t> StrictZipEndRecord(ByteView input);

// For an input that safemodel reads as a zip archive: OK if Python's zipfile
// reads the same archive (same end record, no offset shift), else Malformed
// naming both readings (a second end record in the comment, a zip64 end
// record with extra data).
Status CheckZipfileAgrees(ByteView input);

// Scans a tar archive as tarfile lists it (headers until the first invalid
// one after the first) for pickles in member data, and refuses link members
// named `storages`, `tensors` or `pickle` (torch extracts them without a
// filter and opens the link's target outside the archive).
void ScanTarReading(ByteView input, ParseContext& ctx);

// Scans the members of the archive zipfile reads (`view`, offsets shifted by
// its concat) for pickles and object .npy files, whatever their names.
void ScanZipfileReading(ByteView input, const ZipfileView& view, ParseContext& ctx);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_POLYGLOT_H_
