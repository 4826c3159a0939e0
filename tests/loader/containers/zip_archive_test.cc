// The strict zip reader: every structural rule, on archives built byte by
// byte (tests/testing/zip_builder.h).
#include "loader/containers/zip_archive.h"

#include <gtest/gtest.h>

#include "tests/testing/zip_builder.h"

namespace safemodel::testing {
namespace {

using loader::ZipArchive;

Result<std::shared_ptr<ZipArchive>> Open(const std::string& image) {
  return ZipArchive::Open(AsBytes(image));
}

void ExpectRejected(const std::string& image, StatusCode code, const std::string& part) {
  auto z = Open(image);
  ASSERT_FALSE(z.ok()) << "expected rejection containing '" << part << "'";
  EXPECT_EQ(z.status().code(), code) << z.status().ToString();
  EXPECT_NE(z.status().message().find(part), std::string::npos) << z.status().ToString();
}

TEST(ZipArchive, ReadsStoredDeflatedDescriptorAndZip64Entries) {
  const std::string big(100000, 'z');
  std::string image = BuildZip({{.name = "a.bin", .data = "hello"},
                                {.name = "dir/b.bin", .data = big, .deflate = true},
                                {.name = "c.bin", .data = "world", .descriptor = true},
                                {.name = "d.bin", .data = "sixty-four", .zip64_extra = true}},
                               {.zip64_end = true});
  auto z = Open(image);
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  ASSERT_EQ((*z)->entries().size(), 4u);
  auto a = (*z)->StoredData(*(*z)->Find("a.bin"));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(AsChars(*a), "hello");
  auto b = (*z)->ReadAll(*(*z)->Find("dir/b.bin"), 1 << 20);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(AsChars(b->view()), big);
  auto prefix = (*z)->ReadPrefix(*(*z)->Find("dir/b.bin"), 10);
  ASSERT_TRUE(prefix.ok());
  EXPECT_EQ(*prefix, big.substr(0, 10));
  EXPECT_EQ(AsChars(*(*z)->StoredData(*(*z)->Find("c.bin"))), "world");
  EXPECT_EQ(AsChars(*(*z)->StoredData(*(*z)->Find("d.bin"))), "sixty-four");
}

// libzip is released after the cross-check when no entry is deflated
// (zip_archive.cc): every way of reading a stored entry must work without it.
TEST(ZipArchive, AnArchiveOfStoredEntriesReadsEveryWayWithoutLibzip) {
  const std::string image = BuildZip({{.name = "a.bin", .data = "hello"},
                                      {.name = "b.bin", .data = std::string(5000, 'b')}});
  auto z = Open(image);
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  for (const loader::ZipEntry& e : (*z)->entries()) {
    auto all = (*z)->ReadAll(e, 1 << 20);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    EXPECT_EQ(all->size(), e.uncompressed_size);
    loader::OwnedBuffer holder;
    auto contents = (*z)->Contents(e, 1 << 20, &holder);
    ASSERT_TRUE(contents.ok()) << contents.status().ToString();
    EXPECT_EQ(AsChars(*contents), AsChars(all->view()));
    auto prefix = (*z)->ReadPrefix(e, 3);
    ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
    EXPECT_EQ(*prefix, std::string(AsChars(all->view()).substr(0, 3)));
  }
}

TEST(ZipArchive, RejectsDuplicateNames) {
  ExpectRejected(BuildZip({{.name = "a", .data = "1"}, {.name = "a", .data = "2"}}),
                 StatusCode::kMalformed, "appears twice");
}

TEST(ZipArchive, RejectsPathTraversalAndOddNames) {
  for (const char* name : {"../a", "a/../../b", "/etc/passwd", "a\\b", "C:x", "a//b", "./a", "a/./b"}) {
    auto z = Open(BuildZip({{.name = name, .data = "x"}}));
    EXPECT_FALSE(z.ok()) << name;
  }
  // Non-ASCII needs the UTF-8 flag, and then must be valid UTF-8.
  EXPECT_FALSE(Open(BuildZip({{.name = "caf\xc3\xa9", .data = "x"}})).ok());
  EXPECT_TRUE(Open(BuildZip({{.name = "caf\xc3\xa9", .data = "x", .extra_flags = 0x0800}})).ok());
  EXPECT_FALSE(Open(BuildZip({{.name = "caf\xe9", .data = "x", .extra_flags = 0x0800}})).ok());
}

TEST(ZipArchive, RejectsEncryptionUnknownFlagsAndMethods) {
  ExpectRejected(BuildZip({{.name = "a", .data = "x", .extra_flags = 0x0001}}),
                 StatusCode::kUnsupported, "encrypted");
  ExpectRejected(BuildZip({{.name = "a", .data = "x", .extra_flags = 0x0040}}),
                 StatusCode::kUnsupported, "flag bits");
  ExpectRejected(BuildZip({{.name = "a", .data = "x", .method = 12}}), StatusCode::kUnsupported,
                 "compression method 12");
}

TEST(ZipArchive, RejectsLocalHeadersThatDisagreeWithTheCentralDirectory) {
  // The CVE-2025-1944 class: scanners read one name, loaders the other.
  ExpectRejected(BuildZip({{.name = "base/data.pkl", .data = "x", .local_name = "base/datX.pkl"}}),
                 StatusCode::kMalformed, "names differ");
}

TEST(ZipArchive, RejectsPrefixedJunkGapsAndTrailingBytes) {
  ExpectRejected(BuildZip({{.name = "a", .data = "x"}}, {.prefix = "JUNK"}), StatusCode::kMalformed,
                 "unaccounted bytes at offset 0");
  ExpectRejected(BuildZip({{.name = "a", .data = "x"}, {.name = "b", .data = "y"}}, {.gap = "hidden"}),
                 StatusCode::kMalformed, "unaccounted bytes");
  std::string trailing = BuildZip({{.name = "a", .data = "x"}}) + "payload";
  ExpectRejected(trailing, StatusCode::kMalformed, "end-of-central-directory");
}

TEST(ZipArchive, RejectsAmbiguousEndRecords) {
  // A comment that holds a second, equally valid end record.
  std::string fake_end = std::string("PK\x05\x06", 4) + std::string(18, '\0');
  ExpectRejected(BuildZip({{.name = "a", .data = "x"}}, {.comment = fake_end}),
                 StatusCode::kMalformed, "ambiguous");
}

TEST(ZipArchive, RejectsSymlinksAndMultiDiskArchives) {
  ExpectRejected(BuildZip({{.name = "link", .data = "/etc/passwd", .external_attr = 0120777u << 16}}),
                 StatusCode::kMalformed, "symbolic link");
  ExpectRejected(BuildZip({{.name = "a", .data = "x"}}, {.disk = 1}), StatusCode::kUnsupported,
                 "multi-disk");
}

TEST(ZipArchive, RejectsZipBombsBeforeInflating) {
  // Claims 10 GB from a few compressed bytes: impossible for deflate.
  ExpectRejected(BuildZip({{.name = "bomb", .data = "tiny", .deflate = true, .zip64_extra = true,
                            .uncompressed_size = 10'000'000'000ull}}),
                 StatusCode::kMalformed, "zip bomb");
  // Claims more entries than the cap: refused before any allocation.
  ExpectRejected(BuildZip({{.name = "a", .data = "x"}}, {.zip64_end = true, .entry_count = 3'000'000}),
                 StatusCode::kLimitExceeded, "entries exceed");
}

TEST(ZipArchive, ReadingChecksCrcsSizesAndTheMemoryLimit) {
  // Each image must outlive the archive that views it.
  const std::string bad_crc_image = BuildZip({{.name = "a", .data = "hello", .crc = 1234}});
  auto bad_crc = Open(bad_crc_image);
  ASSERT_TRUE(bad_crc.ok());
  auto data = (*bad_crc)->StoredData((*bad_crc)->entries()[0]);
  ASSERT_FALSE(data.ok());
  EXPECT_NE(data.status().message().find("CRC mismatch"), std::string::npos);

  // Inflates to more than it declares: caught while reading, bounded work.
  const std::string zeros(1 << 20, '\0');
  const std::string liar_image =
      BuildZip({{.name = "z", .data = zeros, .deflate = true, .uncompressed_size = 1000}});
  auto liar = Open(liar_image);
  ASSERT_TRUE(liar.ok()) << liar.status().ToString();
  auto all = (*liar)->ReadAll((*liar)->entries()[0], 1 << 30);
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), StatusCode::kMalformed) << all.status().ToString();
  // Larger than the memory the caller allows.
  const std::string big_image = BuildZip({{.name = "z", .data = zeros, .deflate = true}});
  auto big = Open(big_image);
  ASSERT_TRUE(big.ok());
  auto capped = (*big)->ReadAll((*big)->entries()[0], 1000);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), StatusCode::kLimitExceeded);
}

// libzip reads an archive before our tables are built (zip_archive.cc), but
// what it says is reported only when our own checks pass: an archive both
// reject gets our message, one only libzip rejects or sees otherwise gets
// libzip's, naming the entry.

// An Info-ZIP Unicode Path field (0x7075: version 1, the CRC-32 of the
// header's name, then a name): libzip takes `unicode_name` as the entry's
// name; the central directory's name is the header's.
std::string UnicodePathField(const std::string& header_name, const std::string& unicode_name) {
  std::string field;
  auto put = [&field](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) field.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(0x7075, 2);
  put(5 + unicode_name.size(), 2);
  put(1, 1);
  put(Crc32Of(header_name), 4);
  return field + unicode_name;
}

TEST(ZipArchive, AnArchiveOnlyLibzipRejectsGetsLibzipsMessage) {
  // A local header's time that differs from its central entry's: libzip's
  // consistency check refuses it; ours does not compare times.
  ExpectRejected(BuildZip({{.name = "a.bin", .data = "x", .local_mod_time = 1},
                           {.name = "b.bin", .data = "y"}}),
                 StatusCode::kMalformed, "libzip rejects the archive");
}

TEST(ZipArchive, AnArchiveBothRejectGetsOurMessage) {
  // An entry that fails its own checks or the tiling (libzip is not run),
  // the names' uniqueness (libzip is run, and refuses first).
  ExpectRejected(BuildZip({{.name = "a.bin", .data = "x", .local_mod_time = 1},
                           {.name = "b/../c", .data = "y"}}),
                 StatusCode::kMalformed, "'.' or '..' component");
  ExpectRejected(BuildZip({{.name = "a.bin", .data = "x", .local_mod_time = 1},
                           {.name = "a.bin", .data = "y"}}),
                 StatusCode::kMalformed, "appears twice");
  ExpectRejected(BuildZip({{.name = "a.bin", .data = "x", .local_mod_time = 1},
                           {.name = "b.bin", .data = "y"}},
                          {.gap = "hidden"}),
                 StatusCode::kMalformed, "unaccounted bytes");
  const std::string other = UnicodePathField("b.bin", "other.bin");
  ExpectRejected(BuildZip({{.name = "b.bin", .data = "x", .extra = other},
                           {.name = "b.bin", .data = "y"}}),
                 StatusCode::kMalformed, "appears twice");
}

TEST(ZipArchive, AnEntryLibzipSeesOtherwiseIsNamedInItsMessage) {
  const std::string other = UnicodePathField("b.bin", "other.bin");
  for (const bool deflate : {false, true}) {  // libzip let go, or kept
    SCOPED_TRACE(deflate);
    const std::string image = BuildZip({{.name = "a.bin", .data = "x", .deflate = deflate},
                                        {.name = "b.bin", .data = "y", .extra = other},
                                        {.name = "c.bin", .data = "z", .extra = other}});
    auto z = Open(image);
    ASSERT_FALSE(z.ok());
    EXPECT_EQ(z.status().code(), StatusCode::kMalformed);
    EXPECT_EQ(z.status().message(),
              "zip entry 'b.bin': libzip's view differs from the central directory");
  }
  // A field whose CRC is not the header name's: libzip keeps the name.
  const std::string image = BuildZip(
      {{.name = "b.bin", .data = "y", .extra = UnicodePathField("x.bin", "other.bin")}});
  EXPECT_TRUE(Open(image).ok());
}

// Whatever order the central directory lists the entries in, the tiling
// check gives the same verdict and message (entries in the data's order are
// kept as one run: zip_archive.cc, EntrySpans).
TEST(ZipArchive, TheTilingVerdictDoesNotDependOnTheCentralDirectorysOrder) {
  const std::vector<ZipMember> members = {
      {.name = "a", .data = "1"}, {.name = "b", .data = "22"}, {.name = "c", .data = "333"}};
  // Where each member's local header starts (30-byte header, 1-byte name).
  const uint64_t b_at = 30 + 1 + 1, c_at = b_at + 30 + 1 + 2;
  const std::vector<std::vector<size_t>> orders = {{0, 1, 2}, {1, 0, 2}, {2, 1, 0}, {0, 2, 1}, {2, 0, 1}};
  for (const auto& order : orders) {
    SCOPED_TRACE(::testing::PrintToString(order));
    const std::string fine = BuildZip(members, {.central_order = order});
    auto z = Open(fine);
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    ASSERT_EQ((*z)->entries().size(), 3u);
    EXPECT_EQ((*z)->entries()[0].name, members[order[0]].name);
    auto expect = [](const std::string& image, const std::string& message) {
      auto r = Open(image);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().message(), message);
    };
    expect(BuildZip(members, {.prefix = "JUNK", .central_order = order}),
           "zip: unaccounted bytes at offset 0 (hidden data or a crafted archive)");
    expect(BuildZip(members, {.gap = "hidden", .central_order = order}),
           "zip: unaccounted bytes at offset " + std::to_string(b_at) +
               " (hidden data or a crafted archive)");
    expect(GrowMemberSizes(fine, 'a'), "zip: overlapping entries at offset " + std::to_string(b_at) +
                                " (hidden data or a crafted archive)");
    expect(GrowMemberSizes(fine, 'b'), "zip: overlapping entries at offset " + std::to_string(c_at) +
                                " (hidden data or a crafted archive)");
    expect(GrowMemberSizes(fine, 'c'), "zip entry 'c': data runs past the central directory");
  }
}

TEST(ZipArchive, RejectsTruncatedAndEmptyInput) {
  std::string image = BuildZip({{.name = "a", .data = "hello"}});
  for (size_t cut : {size_t{0}, size_t{10}, image.size() / 2, image.size() - 1}) {
    EXPECT_FALSE(Open(image.substr(0, cut)).ok()) << cut;
  }
}

}  // namespace
}  // namespace safemodel::testing
