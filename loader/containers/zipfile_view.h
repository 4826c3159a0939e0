// Python's zipfile, modelled byte for byte: which archive it finds in a
// file (_EndRecData, _EndRecData64 and the start of _RealGetContents) and
// which bytes it reads as each member. Keras .keras, np.load (for files
// starting with PK) and anything else calling zipfile read archives this
// way; safemodel's strict reader (zip_archive.h) reads them another way,
// and a file is accepted only when both find the same archive
// (CheckZipfileAgrees). The members are listed only to be scanned
// (loader/polyglot.h); nothing read here is converted.
//
// zipfile finds the end record from the last end-record signature in the
// file's final 64 KiB (or one with an empty comment exactly at the end), and
// shifts every offset by the bytes in front of the archive ("concat").
//
// Worst case: O(n) in the input size (the last 64 KiB scanned once; each
// central header visited once, at most kMaxZipEntries).
//
// Trust: the bytes are untrusted; every offset is checked.
#ifndef SAFEMODEL_LOADER_CONTAINERS_ZIPFILE_VIEW_H_
#define SAFEMODEL_LOADER_CONTAINERS_ZIPFILE_VIEW_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "safemodel/status.h"

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// The archive Python's zipfile would read.
struct ZipfileView {
  uint64_t end_record = 0;  // offset of the end record zipfile uses
  bool zip64 = false;
  int64_t concat = 0;     // bytes zipfile adds to every offset (prefix data)
  uint64_t cd_start = 0;  // where it reads the central directory
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

struct ZipfileMember {
  std::string name;  // the central name, as zipfile lists it
  uint16_t method = 0;
  ByteView data;  // where zipfile reads the (compressed) data, clipped to the file
};

// Calls `visit` for each member zipfile reads in the archive `view` (offsets
// shifted by its concat), in directory order; members whose local header
// zipfile would not find are skipped.
void ForEachZipfileMember(ByteView input, const ZipfileView& view,
                          const std::function<void(const ZipfileMember&)>& visit);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_ZIPFILE_VIEW_H_
