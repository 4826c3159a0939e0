#include "loader/containers/sniff.h"

#include <cstring>

namespace safemodel::loader {

namespace {

bool Starts(ByteView input, std::string_view magic) {
  return input.size() >= magic.size() && std::memcmp(input.data(), magic.data(), magic.size()) == 0;
}

}  // namespace

std::string_view CompressorName(ByteView input) {
  using std::string_view_literals::operator""sv;
  if (Starts(input, "\x1f\x8b"sv)) return "gzip";
  // zlib's own header (CMF 0x78, header checksum, no preset dictionary); any
  // other first byte 'x' is a protocol 0 pickle as often as a zlib stream.
  if (input.size() >= 2 && input[0] == 0x78 && ((input[0] << 8) | input[1]) % 31 == 0 &&
      (input[1] & 0x20) == 0) {
    return "zlib";
  }
  if (Starts(input, "BZh"sv)) return "bzip2";
  if (Starts(input, "\xfd" "7zXZ\x00"sv)) return "xz";
  if (Starts(input, "\x28\xb5\x2f\xfd"sv)) return "zstd";
  if (Starts(input, "\x5d\x00\x00"sv)) return "lzma";
  return "";
}

std::string_view PayloadContainerName(ByteView payload) {
  using std::string_view_literals::operator""sv;
  if (Starts(payload, "PK\x03\x04"sv) || Starts(payload, "PK\x05\x06"sv)) return "zip archive";
  if (Starts(payload, "\x93NUMPY"sv)) return ".npy array";
  if (Starts(payload, "\x89HDF\r\n\x1a\n"sv)) return "HDF5 file";
  if (Starts(payload, "7z\xbc\xaf\x27\x1c"sv)) return "7z archive";
  std::string_view c = CompressorName(payload);
  if (c == "gzip") return "gzip data";
  if (c == "bzip2") return "bzip2 data";
  if (c == "xz") return "xz data";
  if (c == "zstd") return "zstd data";
  return "";
}

}  // namespace safemodel::loader
