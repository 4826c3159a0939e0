// The records of the zip format (PKWARE APPNOTE 4.3), read field by field:
// shared by the three zip readers here, which differ only in what they do
// with a record once it is read.
//   - zip_archive.h: the strict reader the converter trusts;
//   - zip_scan.h: the lenient listing of an archive the strict reader
//     rejected, only to look for pickles in its members;
//   - zipfile_view.h: the model of Python's zipfile, for second readings.
//
// Every reader here is bounds-checked through ByteReader: a record that does
// not fit is an error naming `where`, never a read past the bytes given.
// Worst case: O(1) per record; FindExactEndRecord is O(64 KiB).
//
// Trust: the bytes are untrusted.
#ifndef SAFEMODEL_LOADER_CONTAINERS_ZIP_RECORDS_H_
#define SAFEMODEL_LOADER_CONTAINERS_ZIP_RECORDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "safemodel/status.h"

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Record signatures (APPNOTE 4.3).
inline constexpr uint32_t kZipLocalSig = 0x04034b50;
inline constexpr uint32_t kZipCentralSig = 0x02014b50;
inline constexpr uint32_t kZipEndSig = 0x06054b50;
inline constexpr uint32_t kZip64EndSig = 0x06064b50;
inline constexpr uint32_t kZip64LocatorSig = 0x07064b50;
inline constexpr uint32_t kZipDescriptorSig = 0x08074b50;

// Fixed sizes: the end record (without its comment), the zip64 end locator,
// and the fixed parts of a central and a local header.
inline constexpr uint64_t kZipEndRecordBytes = 22;
inline constexpr uint64_t kZip64LocatorBytes = 20;
inline constexpr uint64_t kZipCentralHeaderBytes = 46;
inline constexpr uint64_t kZipLocalHeaderBytes = 30;
// Where fields sit in a header's fixed part (APPNOTE 4.3.7, 4.3.12), for
// reads in place. A central header: version made by, then the fields it
// shares with a local header (from version needed; ZipEntryFields), the
// lengths of name, extra and comment, the disk, the external attributes
// and the local header's offset.
inline constexpr uint64_t kZipCentralMadeByAt = 4;
inline constexpr uint64_t kZipCentralFieldsAt = 6;
inline constexpr uint64_t kZipCentralNameLenAt = 28;
inline constexpr uint64_t kZipCentralExtraLenAt = 30;
inline constexpr uint64_t kZipCentralCommentLenAt = 32;
inline constexpr uint64_t kZipCentralDiskStartAt = 34;
inline constexpr uint64_t kZipCentralExternalAttrAt = 38;
inline constexpr uint64_t kZipCentralLocalOffsetAt = 42;
// A local header: the shared fields after the signature, then the lengths
// of name and extra.
inline constexpr uint64_t kZipLocalFieldsAt = 4;
inline constexpr uint64_t kZipLocalNameLenAt = 26;
inline constexpr uint64_t kZipLocalExtraLenAt = 28;
// The end record's comment length is 16 bits.
inline constexpr uint64_t kMaxZipCommentBytes = 0xFFFF;
// A 32-bit size or offset of this value means "in the zip64 extra field".
inline constexpr uint64_t kZipMax32 = 0xFFFFFFFF;
// The id of the zip64 extended-information extra field.
inline constexpr uint16_t kZip64ExtraId = 0x0001;

// The fields central and local headers share, in the same order (from
// "version needed" to the uncompressed size).
struct ZipEntryFields {
  uint16_t flags = 0;
  uint16_t method = 0;
  uint32_t crc32 = 0;
  uint32_t compressed_size = 0;
  uint32_t uncompressed_size = 0;
};

// The start of an error message about one record ("zip central entry #3",
// "zip entry 'w.npy' local"), put together only when an error is reported:
// reading a well-formed record builds no string (a member of an archive of
// 100,000 made about 25 small allocations before, all of them messages).
// Holds views: the text it is made from must outlive it (a call's arguments
// do).
class ZipWhere {
 public:
  ZipWhere(const char* text) : text_(text) {}         // NOLINT: a plain text converts
  ZipWhere(const std::string& text) : text_(text) {}  // NOLINT: a plain text converts
  // `prefix` followed by the number `n`.
  static ZipWhere Numbered(std::string_view prefix, uint64_t n);
  // "zip entry '<name, printable>'" followed by `suffix`.
  static ZipWhere Entry(std::string_view name, std::string_view suffix = {});
  std::string str() const;

 private:
  enum class Kind : uint8_t { kText, kNumbered, kEntry };
  ZipWhere() = default;
  Kind kind_ = Kind::kText;
  std::string_view text_;    // the whole text, the prefix, or the entry's name
  std::string_view suffix_;  // kEntry
  uint64_t number_ = 0;      // kNumbered
};

// A central-directory header as written, before any check of its values.
struct ZipCentralHeader : ZipEntryFields {
  uint16_t made_by = 0;
  uint16_t disk_start = 0;
  uint32_t external_attributes = 0;
  uint32_t local_header_offset = 0;
  ByteView name;
  ByteView extra;
};

// Reads one central header at the reader's position (comment skipped).
// Malformed if the signature is wrong ("<where>: bad signature") or the
// record does not fit (the reader's error, naming `where`).
Result<ZipCentralHeader> ReadZipCentralHeader(ByteReader& r, const ZipWhere& where);

// A local header as written.
struct ZipLocalHeader : ZipEntryFields {
  ByteView name;
  ByteView extra;
};

// Reads one local header at the reader's position; afterwards the reader
// is at the member's data. Malformed if the signature is wrong ("<where>:
// bad local header signature") or the header does not fit.
Result<ZipLocalHeader> ReadZipLocalHeader(ByteReader& r, const ZipWhere& where);

// The end records whose comment reaches exactly the end of `image` (the
// strict reading of the end record; searched over the last 64 KiB + 22
// bytes). `offset` is set when there is exactly one; `ambiguous` when there
// are several.
struct ZipExactEndRecord {
  std::optional<uint64_t> offset;
  bool ambiguous = false;
};
ZipExactEndRecord FindZipExactEndRecord(ByteView image);

// The lenient reading of a zip64 extended-information field in a central
// header's extra block (zipfile's and miniz's): each saturated 32-bit value
// is replaced by the next 8 bytes of the field when they are there; fields
// that do not fit end the walk. `uncompressed_size` only says whether the
// field starts with it.
void ApplyZip64Extra(ByteView extra, uint64_t uncompressed_size, uint64_t* compressed_size,
                     uint64_t* local_header_offset);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_ZIP_RECORDS_H_
