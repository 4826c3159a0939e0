// Builds zip images byte by byte for tests, including deliberately broken
// ones (mismatched local headers, gaps, bogus sizes, encryption flags...).
#ifndef SAFEMODEL_TESTS_TESTING_ZIP_BUILDER_H_
#define SAFEMODEL_TESTS_TESTING_ZIP_BUILDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace safemodel::testing {

struct ZipMember {
  std::string name;
  std::string data;            // uncompressed contents
  bool deflate = false;        // method 8 (raw deflate of `data`), else stored
  uint16_t extra_flags = 0;    // OR-ed into the general-purpose flags
  bool descriptor = false;     // flag bit 3 + data descriptor after the data
  bool zip64_extra = false;    // zip64 extended information in both headers
  std::string local_name;      // non-empty: a different name in the local header
  std::optional<uint32_t> crc;                 // override the CRC in both headers
  std::optional<uint64_t> uncompressed_size;   // override the declared size
  std::optional<uint16_t> method;              // override the method number
  uint16_t made_by = 0x031e;   // Unix, version 3.0
  std::string extra;           // extra fields, after any zip64 field, in both headers
  uint16_t local_mod_time = 0;  // the local header's DOS time (the central one is 0)
  uint32_t external_attr = 0100644u << 16;
};

struct ZipLayout {
  std::string prefix;       // bytes before the first local header
  std::string gap;          // bytes between the first and second entry
  std::string comment;      // end-record comment
  bool zip64_end = false;   // write zip64 end record + locator
  uint16_t disk = 0;        // end-record disk number
  std::optional<uint64_t> entry_count;  // override the declared number of entries
  std::vector<size_t> central_order;    // the members' order in the central directory, if not theirs
};

std::string BuildZip(const std::vector<ZipMember>& members, const ZipLayout& layout = {});

// Raw deflate (no zlib header), as zip method 8 stores it.
std::string RawDeflate(const std::string& data);
uint32_t Crc32Of(const std::string& data);
// `image` with the sizes of the stored member named by the one byte `name`
// grown by one in its local and central headers: its data then runs one
// byte into the next member (entries that overlap).
std::string GrowMemberSizes(std::string image, char name);

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_TESTING_ZIP_BUILDER_H_
