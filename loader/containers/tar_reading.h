// Tar archives as Python's tarfile lists them, for torch.load's legacy tar
// format: torch.load, given a path or a real file that does not start with
// PK\x03\x04, first tries tarfile at offset 0 and reads the members
// `storages`, `tensors` and `pickle` if the first 512 bytes are a valid tar
// header. safemodel never converts that format; it lists the members only
// so that they can be scanned (loader/polyglot.h).
//
// A header is valid as tarfile.TarInfo.frombuf decides: not all NUL, the
// checksum field (octal text as int(s, 8) reads it, or base-256) equal to
// the unsigned or the signed byte sum with the field counted as spaces, and
// every other numeric field readable (tarfile checks no "ustar" magic). The
// listing ends at the first invalid header; GNU long names (L) and pax path
// records (x, X, g) name the members after them, as tarfile applies them.
//
// Worst case: O(n): each 512-byte header is visited once, at most
// kMaxTarMembers of them; name records are read up to kMaxTarNameRecord.
//
// Trust: the bytes are untrusted; every field is bounds-checked.
#ifndef SAFEMODEL_LOADER_CONTAINERS_TAR_READING_H_
#define SAFEMODEL_LOADER_CONTAINERS_TAR_READING_H_

#include <cstdint>
#include <functional>
#include <string>

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

inline constexpr uint64_t kTarBlock = 512;
// Tar members listed: tarfile has no limit; 1 M headers is 512 MiB of them.
inline constexpr uint64_t kMaxTarMembers = 1 << 20;
// A tar pax or GNU long-name record read for a member's name.
inline constexpr uint64_t kMaxTarNameRecord = 1 << 16;

// Python's tarfile.TarInfo.frombuf on a 512-byte block (see above).
bool IsTarHeader(ByteView block);

// True if torch.load (from a path) would read `input` as a legacy tar
// archive: the first block is a valid tar header and the file does not
// start with PK\x03\x04 (torch's zip test comes first).
bool TorchReadsAsTar(ByteView input);

struct TarMember {
  std::string name;  // after long-name and pax records
  char type = 0;     // the typeflag byte: '0' file, '1' hard link, '2' symlink, ...
  // The member's data, clipped to the file; empty for links, devices,
  // directories and FIFOs (has_data false), which carry none.
  ByteView data;
  bool has_data = true;
};

// Calls `visit` for each member tarfile lists in `input`, in order (name
// records are applied, not listed).
void ForEachTarMember(ByteView input, const std::function<void(const TarMember&)>& visit);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_TAR_READING_H_
