// The lenient listing of a zip archive: where each member's data is,
// whatever state the archive is in.
//
// The strict reader (zip_archive.h) rejects archives with encryption flags,
// CRC mismatches, disagreeing local and central names, '..' paths. Loaders
// that are less strict (torch's miniz, zipfile) still read them, and the
// trick is to hide a payload from scanners that use a strict reader. This
// listing finds the members such a loader could read, so that they can be
// scanned for code; nothing it lists is ever converted.
//
// Members come from the central directory (the first end-record signature
// from the end, zip64 end record and extra fields honoured when present),
// or, without a usable one, from the local headers walked from the start
// while their sizes are known. A member's data is clipped to the file.
//
// Worst case: O(m + 64 KiB) for m listed members, m <= kMaxListedZipMembers.
//
// Trust: the image is untrusted; every offset is checked against it.
#ifndef SAFEMODEL_LOADER_CONTAINERS_ZIP_SCAN_H_
#define SAFEMODEL_LOADER_CONTAINERS_ZIP_SCAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Members listed in one archive; a real checkpoint has a few thousand.
inline constexpr uint64_t kMaxListedZipMembers = 100'000;

struct LenientZipMember {
  // The central name; when the local header names the member otherwise,
  // "<central>' (local header: '<local>", for messages that quote it.
  std::string name;
  uint64_t data_offset = 0;      // first byte of the (compressed) data
  uint64_t compressed_size = 0;  // clipped to the end of the image
  uint16_t method = 0;           // as written: 0 stored, 8 deflated, ...
};

// The members of `image` as a lenient loader finds them (see above), in
// directory (or file) order. Empty when nothing looks like a member.
std::vector<LenientZipMember> ListZipMembersLeniently(ByteView image);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_ZIP_SCAN_H_
