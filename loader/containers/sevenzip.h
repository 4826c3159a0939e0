// 7z archives (format: 7-Zip's DOC/7zFormat.txt), unpacked only to be
// scanned. They are not a model container safemodel converts, but they are
// a known wrapper for pickle payloads (nullifAI, picklescan's malicious1.7z)
// that loaders which unpack first would run.
//
// The structure is read far enough to unpack the members of folders coded
// with Copy, or one LZMA/LZMA2 coder and at most one BCJ or Delta filter
// (what 7-Zip and py7zr write by default; liblzma's raw decoder, in the
// worker). Encoded headers are followed at most kMaxHeaderLevels deep.
// Folders with other coders are skipped (nothing of theirs is listed); a
// truncated LZMA stream keeps what decoded.
//
// Worst case: O(header + unpacked bytes); counts are capped (100,000 items),
// the unpacked bytes by `memory_limit` in total. Nothing recurses.
//
// Trust: the archive is untrusted; every number is bounds-checked.
#ifndef SAFEMODEL_LOADER_CONTAINERS_SEVENZIP_H_
#define SAFEMODEL_LOADER_CONTAINERS_SEVENZIP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "safemodel/status.h"

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// True if `input` starts with the 7z signature header.
bool LooksLikeSevenZip(ByteView input);

struct SevenZipMember {
  std::string name;  // printable ASCII of the stored name ('?' for the rest), or "#<index>"
  std::string data;  // the unpacked bytes
};

// The members with data, in stream order. Malformed/Unsupported for a
// structure that cannot be followed; LimitExceeded when a folder does not
// fit `memory_limit`.
Result<std::vector<SevenZipMember>> UnpackSevenZip(ByteView image, uint64_t memory_limit);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_SEVENZIP_H_
