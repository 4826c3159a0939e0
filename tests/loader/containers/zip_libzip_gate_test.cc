// libzip's consistency check parses every local header and its extra fields:
// ZipArchive::Open lets it read only an archive that has passed every check
// of ours but the names' uniqueness (zip_archive.h). This binary counts
// libzip's opens by interposing zip_open_from_source (libzip is a shared
// library; the executable's definition wins and forwards to libzip's), so
// an archive our per-entry or tiling checks refuse is seen never to reach it.
#include <dlfcn.h>
#include <zip.h>

#include <gtest/gtest.h>

#include "loader/containers/zip_archive.h"
#include "tests/testing/zip_builder.h"

namespace {
int g_libzip_opens = 0;
}  // namespace

extern "C" zip_t* zip_open_from_source(zip_source_t* src, int flags, zip_error_t* error) {
  using OpenFn = zip_t* (*)(zip_source_t*, int, zip_error_t*);
  static const auto real = reinterpret_cast<OpenFn>(dlsym(RTLD_NEXT, "zip_open_from_source"));
  ++g_libzip_opens;
  return real(src, flags, error);
}

namespace safemodel::testing {
namespace {

// Opens `image`; returns how many times libzip was opened meanwhile and
// sets *message to the refusal ("" if accepted).
int LibzipOpensFor(const std::string& image, std::string* message) {
  g_libzip_opens = 0;
  auto z = loader::ZipArchive::Open(AsBytes(image));
  *message = z.ok() ? std::string() : std::string(z.status().message());
  return g_libzip_opens;
}

TEST(ZipLibzipGate, LibzipReadsAnArchiveThatPassesOurChecks) {
  std::string message;
  EXPECT_EQ(LibzipOpensFor(BuildZip({{.name = "a", .data = "1"}, {.name = "b", .data = "22"}}),
                           &message),
            1);
  EXPECT_EQ(message, "");
  // Only the names' uniqueness comes after libzip.
  EXPECT_EQ(LibzipOpensFor(BuildZip({{.name = "a", .data = "1"}, {.name = "a", .data = "22"}}),
                           &message),
            1);
  EXPECT_EQ(message, "zip entry 'a' appears twice");
}

TEST(ZipLibzipGate, LibzipNeverReadsAnArchiveWithABadLocalHeaderOrTiling) {
  // Each would be refused by libzip too (entry a's local time differs from
  // its central one), so before the gate libzip read it and refused it.
  const ZipMember a = {.name = "a", .data = "1", .local_mod_time = 1};
  struct Case {
    std::string image;
    std::string message;
  };
  const std::vector<Case> cases = {
      {BuildZip({a, {.name = "b", .data = "22", .local_name = "x"}}),
       "zip entry 'b': local header names it 'x' (central and local names differ)"},
      {GrowMemberSizes(BuildZip({a, {.name = "b", .data = "22"}}), 'a'),
       "zip: overlapping entries at offset 32 (hidden data or a crafted archive)"},
      {BuildZip({a, {.name = "b", .data = "22"}}, {.gap = "hidden"}),
       "zip: unaccounted bytes at offset 32 (hidden data or a crafted archive)"},
      {BuildZip({a, {.name = "b", .data = "22"}}, {.prefix = "JUNK"}),
       "zip: unaccounted bytes at offset 0 (hidden data or a crafted archive)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    std::string message;
    EXPECT_EQ(LibzipOpensFor(c.image, &message), 0);
    EXPECT_EQ(message, c.message);
  }
  // A descriptor that differs from its central entry: CheckLocalEntry's.
  std::string image = BuildZip({a, {.name = "b", .data = "22", .descriptor = true}});
  const size_t descriptor = image.find("PK\x07\x08");
  ASSERT_NE(descriptor, std::string::npos);
  image[descriptor + 4] ^= 1;  // its CRC
  std::string message;
  EXPECT_EQ(LibzipOpensFor(image, &message), 0);
  EXPECT_EQ(message, "zip entry 'b': data descriptor differs from the central entry");
}

}  // namespace
}  // namespace safemodel::testing
