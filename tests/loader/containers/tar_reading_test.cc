// Python's tarfile header test and torch's tar decision
// (loader/containers/tar_reading.h).
#include "loader/containers/tar_reading.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

ByteView V(const std::string& s) { return AsBytes(s); }

// A ustar-like header for member "storages" whose checksum field is
// `field` (8 bytes); the sum is over the other 504 bytes plus 8 spaces.
std::string TarBlock(const std::string& field) {
  std::string b(512, '\0');
  std::memcpy(&b[0], "storages", 8);
  std::memcpy(&b[100], "0000644", 7);
  std::memcpy(&b[108], "0000000", 7);
  std::memcpy(&b[116], "0000000", 7);
  std::memcpy(&b[124], "00000000000", 11);
  std::memcpy(&b[136], "00000000000", 11);
  b[156] = '0';
  std::memcpy(&b[257], "ustar  ", 8);
  b.replace(148, 8, field.substr(0, 8) + std::string(8 - std::min<size_t>(8, field.size()), '\0'));
  return b;
}
unsigned TarSum(const std::string& block) {
  unsigned sum = 256;
  for (size_t i = 0; i < 512; ++i) {
    if (i < 148 || i >= 156) sum += static_cast<uint8_t>(block[i]);
  }
  return sum;
}
std::string Octal(unsigned v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%o", v);
  return buf;
}

TEST(TarReading, TarHeaderChecksumAsTarfileReadsIt) {
  const unsigned sum = TarSum(TarBlock(""));
  const std::string o = Octal(sum);
  // Accepted by Python 3.11's tarfile.TarInfo.frombuf (checked with it).
  for (const std::string& field :
       {"00" + o + std::string("\0 ", 2), "  " + o + "  ", "0o" + o, "0o_" + o,
        o.substr(0, 2) + "_" + o.substr(2), "+" + o, "\t" + o + "\x0b", "\x1c" + o}) {
    EXPECT_TRUE(loader::IsTarHeader(V(TarBlock(field)))) << Printable(field);
  }
  std::string base256 = "\x80";
  for (int i = 6; i >= 0; --i) {
    base256.push_back(static_cast<char>((uint64_t{sum} >> (8 * i)) & 0xFF));
  }
  EXPECT_TRUE(loader::IsTarHeader(V(TarBlock(base256))));
  // Rejected by it.
  for (const std::string& field :
       {"00" + Octal(sum + 1), o.substr(0, 2) + "__" + o.substr(2), o + "9", o + "_",
        o + "\xe9"}) {
    EXPECT_FALSE(loader::IsTarHeader(V(TarBlock(field)))) << Printable(field);
  }
  EXPECT_FALSE(loader::IsTarHeader(V(std::string(512, '\0'))));  // an empty archive
  EXPECT_FALSE(loader::IsTarHeader(V(TarBlock(o).substr(0, 511))));
  // A PK\x03\x04 file is a zip to torch, never a tar.
  std::string zip_like = TarBlock("");
  zip_like.replace(0, 4, "PK\x03\x04");
  zip_like.replace(148, 8, "00" + Octal(TarSum(zip_like)) + std::string("\0 ", 2));
  EXPECT_TRUE(loader::IsTarHeader(V(zip_like)));
  EXPECT_FALSE(loader::TorchReadsAsTar(V(zip_like)));
}

}  // namespace
}  // namespace safemodel::testing
