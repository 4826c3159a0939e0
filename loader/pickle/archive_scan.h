// Scanning archive members for pickles: the members of archives safemodel
// does not convert (7z, tar, zips that are not checkpoints) or could not
// open (zips the strict reader rejected), and of the other readings of a
// polyglot. Whatever a member's name says, a pickle or an object .npy in it
// is run through the pickle machine for its findings only; nothing read here
// reaches the output. A member that calls something makes the file refused
// (exit 1) instead of merely unreadable or unsupported (exit 3).
//
// Worst case: O(bytes scanned) with the pickle machine's constant; at most
// 64 pickle streams per member (ScanForFindings); deflated members are
// inflated within the caller's memory budget, in total.
//
// Trust: the bytes are untrusted.
#ifndef SAFEMODEL_LOADER_PICKLE_ARCHIVE_SCAN_H_
#define SAFEMODEL_LOADER_PICKLE_ARCHIVE_SCAN_H_

#include <cstdint>
#include <string>

#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Scans one member's bytes if they are a pickle or an object .npy; a zip
// inside a member is not opened ("PK" is the PERSID opcode to a pickle
// reader, which no loader without a persistent_load accepts).
void ScanMemberForPickles(ByteView bytes, const std::string& where, ParseContext& ctx);

// A zip member's data as written with `method`: scanned as is when stored,
// inflated (raw deflate, as far as it inflates, at most *budget bytes, which
// it uses up) when deflated; other methods are not read.
void ScanZipMemberData(uint16_t method, ByteView data, const std::string& where, uint64_t* budget,
                       ParseContext& ctx);

// Scans every member of a zip archive as a lenient loader lists them
// (ListZipMembersLeniently), for an archive the strict reader rejected or
// one that is not a model container. Budget: the memory limit.
void ScanDamagedZip(ByteView image, ParseContext& ctx);

// 7z archives are never converted: their members are scanned, then the
// archive is refused (a member calls something; a note says if the archive
// was also unreadable) or reported Unsupported (or as the error that stopped
// the unpacking).
Status ParseSevenZip(ByteView input, ParseContext& ctx);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PICKLE_ARCHIVE_SCAN_H_
