// Archives of many members (issue 15: a checkpoint of 100,000 small tensors):
// the strict zip reader and the .npz parser open them completely (every
// central entry, every local header, libzip's cross-check) with a bounded
// number of heap allocations per member. Reading a well-formed record builds
// no message (loader::ZipWhere); before, each member cost about 25 small
// allocations, all of them error-message prefixes.
//
// This binary counts `operator new` (libzip allocates with malloc and is not
// counted: its directory is its own). The counts are exact properties of the
// code, not timings.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "tests/testing/allocation_counter.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

#include "loader/containers/zip_archive.h"
#include "loader/registry.h"

namespace safemodel::testing {
namespace {

using loader::ZipArchive;

// Members named like torch.save's storages ("archive/data/12345", longer
// than a short string's inline buffer), written as torch.save writes them
// (data descriptor) or as numpy does (zip64 extra field in both headers).
std::string ManyMembers(size_t n, bool descriptor, bool zip64_extra, const std::string& suffix,
                        const std::string& data) {
  std::vector<ZipMember> members;
  members.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "archive/data/%zu%s", i, suffix.c_str());
    members.push_back(
        {.name = name, .data = data, .descriptor = descriptor, .zip64_extra = zip64_extra});
  }
  return BuildZip(members, {.zip64_end = true});
}

// A 1-byte .npy (uint8, shape (1,)) holding `value`.
std::string TinyNpy(char value) {
  std::string npy = NpyBytes(1);
  npy.back() = value;
  return npy;
}

TEST(ZipManyMembers, HundredThousandMembersAreCrossCheckedWithFewAllocationsEach) {
  constexpr size_t kMembers = 100'000;
  for (bool descriptor : {true, false}) {
    SCOPED_TRACE(descriptor ? "torch.save layout" : "np.savez layout");
    const std::string image = ManyMembers(kMembers, descriptor, !descriptor, "", "x");
    const uint64_t before = testing::AllocationCount();
    auto z = ZipArchive::Open(AsBytes(image));
    const uint64_t news = testing::AllocationCount() - before;
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    ASSERT_EQ((*z)->entries().size(), kMembers);
    // Each entry's name (1: over the inline buffer), the entry table, the
    // name set's node and buckets, the tiling spans: 2 per member and a few
    // vectors. The message prefixes made it about 25.
    EXPECT_LE(news, 2 * kMembers + 64) << news << " allocations for " << kMembers << " members";
    auto last = (*z)->StoredData((*z)->entries().back());
    ASSERT_TRUE(last.ok()) << last.status().ToString();
    EXPECT_EQ(AsChars(*last), "x");
  }
}

// The process's resident pages of file maps.
uint64_t ResidentFileBytes() { return ProcStatusBytes("RssFile"); }

TEST(ZipManyMembers, ADroppableMapKeepsFewPagesResidentWhileTheArchiveIsChecked) {
  // 100,000 members of 300 bytes: 38 MB, and the walk of the directory and
  // of every local header (ours and libzip's) touches every page.
  const std::string image = ManyMembers(100'000, false, true, "", std::string(300, 'p'));
  const MappedFile file(image);
  ASSERT_TRUE(file.ok());
  const ByteView map = file.view();

  // Not droppable: every page stays resident.
  file.Drop();
  uint64_t before = ResidentFileBytes();
  {
    auto z = ZipArchive::Open(map);
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    EXPECT_GE(ResidentFileBytes() - before, image.size() * 9 / 10);
  }
  // Droppable: none of it once Open returns (the walk's own bound is the
  // next test's), and the archive reads the same.
  file.Drop();
  before = ResidentFileBytes();
  auto z = ZipArchive::Open(map, map);
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  const uint64_t grown = ResidentFileBytes() - before;
  EXPECT_LE(grown, uint64_t{12} << 20) << grown << " bytes of the file resident";
  ASSERT_EQ((*z)->entries().size(), 100'000u);
  for (size_t i : {size_t{0}, size_t{77'777}, size_t{99'999}}) {
    auto data = (*z)->StoredData((*z)->entries()[i]);
    ASSERT_TRUE(data.ok()) << data.status().ToString();  // the CRC of the bytes read again
    EXPECT_EQ(AsChars(*data), std::string(300, 'p'));
  }

  // Memory that is not inside the map is never dropped: a copy on the heap,
  // opened with the map as the droppable one, reads the same.
  const std::string copy = image;
  auto heap = ZipArchive::Open(AsBytes(copy), map);
  ASSERT_TRUE(heap.ok()) << heap.status().ToString();
  EXPECT_EQ(copy, image);
}

// While the walk runs, not only after it: 2,000 members of 30 KiB, each
// local header on a page of its own (and the kernel maps the cached pages
// around each read), would map most of the 60 MB file before Open's final
// drop; the walk's MapResidency keeps it to a few blocks (map_residency.h).
// Measured as the growth of this process's peak resident size, reset before.
TEST(ZipManyMembers, TheWalkItselfKeepsFewPagesMapped) {
#if defined(SAFEMODEL_SANITIZER_BUILD)
  // The peak counts all memory, and a sanitizer's shadow and quarantine grow
  // by tens of MiB over one walk (45 MB here under ASan, 3 MB without).
  GTEST_SKIP() << "the peak resident size is the sanitizer's here";
#endif
  std::vector<ZipMember> members;
  for (int i = 0; i < 2000; ++i) members.push_back({.name = "m" + std::to_string(i), .data = std::string(30 << 10, 'w')});
  const std::string image = BuildZip(members);
  members.clear();
  const MappedFile file(image);
  ASSERT_TRUE(file.ok());
  const ByteView map = file.view();
  if (!ResetPeakRss()) GTEST_SKIP() << "no /proc/self/clear_refs";
  for (const bool droppable : {false, true}) {
    SCOPED_TRACE(droppable);
    file.Drop();
    ASSERT_TRUE(ResetPeakRss());
    const uint64_t before = PeakRssBytes();
    auto z = droppable ? ZipArchive::Open(map, map) : ZipArchive::Open(map);
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    const uint64_t grown = PeakRssBytes() - before;
    if (droppable) {
      EXPECT_LE(grown, uint64_t{16} << 20) << grown << " bytes";
    } else {
      EXPECT_GE(grown, image.size() / 2) << grown << " bytes";  // the control
    }
  }
}

// A large stored member's CRC-32 over a droppable map leaves at most a piece
// (kZipCrcPieceBytes) of it resident: a tensor that then leaves by reference
// is not held in the worker whole. A corrupted byte in its last piece is
// still found, and outside a droppable map every page stays.
TEST(ZipManyMembers, AStoredMembersCrcCheckDropsThePagesItRead) {
  constexpr size_t kBytes = size_t{48} << 20;
  std::string big(kBytes, '\0');
  for (size_t i = 0; i < kBytes; i += 4093) big[i] = static_cast<char>(i % 251);
  for (const bool corrupt : {false, true}) {
    SCOPED_TRACE(corrupt);
    std::string image = BuildZip({{.name = "big.bin", .data = big}});
    if (corrupt) image[image.find(big.substr(kBytes - 64)) + 10] ^= 1;
    const MappedFile file(image);
    ASSERT_TRUE(file.ok());
    const ByteView map = file.view();
    for (const bool droppable : {false, true}) {
      SCOPED_TRACE(droppable);
      file.Drop();
      const uint64_t before = ResidentFileBytes();
      auto z = droppable ? ZipArchive::Open(map, map) : ZipArchive::Open(map);
      ASSERT_TRUE(z.ok()) << z.status().ToString();
      auto data = (*z)->StoredData((*z)->entries()[0]);
      const uint64_t grown = ResidentFileBytes() - before;
      if (corrupt) {
        ASSERT_FALSE(data.ok());
        EXPECT_NE(data.status().message().find("CRC mismatch"), std::string::npos);
      } else {
        ASSERT_TRUE(data.ok()) << data.status().ToString();
        EXPECT_EQ(data->size(), kBytes);
      }
      if (droppable) {
        EXPECT_LE(grown, loader::kZipCrcPieceBytes + (uint64_t{2} << 20)) << grown << " bytes resident";
      } else {
        EXPECT_GE(grown, kBytes * 9 / 10) << grown << " bytes resident";
      }
      if (data.ok()) {
        EXPECT_EQ(AsChars(*data), big);  // the dropped pages read back the same
      }
    }
  }
}

// Members far apart (here 3 MiB each, as the tensors of a checkpoint): each
// record read is in a 2 MiB block of its own, and the kernel may map a whole
// large page-cache folio for it (2 MiB: a file read before by cat or by the
// parent's hashing thread), so counting records did not bound what stayed
// resident (256 members of 4 MiB: a worker peak of 508 MiB). Open leaves no
// page of the map mapped, and reading every member's prefix keeps only the
// last few blocks mapped (loader/map_residency.h). Outside a droppable map
// every header read stays mapped (the control).
TEST(ZipManyMembers, MembersFarApartKeepOnlyAFewBlocksMappedAsTheyAreRead) {
  constexpr size_t kMembers = 12;
  std::vector<ZipMember> members;
  for (size_t i = 0; i < kMembers; ++i) {
    members.push_back({.name = "m" + std::to_string(i), .data = std::string(size_t{3} << 20, static_cast<char>('a' + i))});
  }
  const std::string image = BuildZip(members);
  const MappedFile file(image);
  ASSERT_TRUE(file.ok());
  const ByteView map = file.view();
  if (MappedHere(map.data()) == -1) GTEST_SKIP() << "no /proc/self/pagemap";
  for (const bool droppable : {false, true}) {
    SCOPED_TRACE(droppable);
    file.Drop();
    auto z = droppable ? ZipArchive::Open(map, map) : ZipArchive::Open(map);
    ASSERT_TRUE(z.ok()) << z.status().ToString();
    const auto& entries = (*z)->entries();
    ASSERT_EQ(entries.size(), kMembers);
    const auto header_mapped = [&](size_t i) {
      return MappedHere(map.data() + entries[i].local_header_offset) == 1;
    };
    size_t mapped = 0;
    for (size_t i = 0; i < kMembers; ++i) mapped += header_mapped(i) ? 1u : 0u;
    EXPECT_EQ(mapped, droppable ? 0u : kMembers) << "local headers mapped after Open";
    for (size_t i = 0; i < kMembers; ++i) {
      std::string holder;
      auto prefix = (*z)->PrefixView(entries[i], 16, &holder);
      ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
      EXPECT_EQ(AsChars(*prefix), std::string(16, static_cast<char>('a' + i)));
      size_t data_mapped = 0;
      for (size_t j = 0; j <= i; ++j) data_mapped += MappedHere(map.data() + entries[j].data_offset) == 1 ? 1u : 0u;
      if (droppable) {
        EXPECT_LE(data_mapped, loader::kMapResidencyBlocks + 1) << "after member " << i;
      } else {
        EXPECT_EQ(data_mapped, i + 1) << "after member " << i;
      }
    }
  }
}

TEST(ZipManyMembers, ALateBadMemberStillNamesItself) {
  // The messages are built when needed: a duplicate, a truncated extra field
  // and a wrong local name at the end of a long list are named as before.
  std::vector<ZipMember> members;
  for (int i = 0; i < 1000; ++i) members.push_back({.name = "m" + std::to_string(i), .data = "d"});
  auto dup = members;
  dup.push_back({.name = "m7", .data = "d"});
  auto z = ZipArchive::Open(AsBytes(BuildZip(dup)));
  ASSERT_FALSE(z.ok());
  EXPECT_EQ(z.status().message(), "zip entry 'm7' appears twice");

  auto renamed = members;
  renamed.push_back({.name = "last", .data = "d", .local_name = "lost"});
  z = ZipArchive::Open(AsBytes(BuildZip(renamed)));
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.status().message().find(
                "zip entry 'last': local header names it 'lost' (central and local names differ)"),
            std::string::npos)
      << z.status().ToString();
}

TEST(ZipManyMembers, NpzOfManyArraysParsesWithFewAllocationsEach) {
  ASSERT_TRUE(loader::PrepareLibraries().ok());
  constexpr size_t kMembers = 20'000;
  std::vector<ZipMember> members;
  for (size_t i = 0; i < kMembers; ++i) {
    members.push_back({.name = "layer." + std::to_string(i) + ".weight.npy",
                       .data = TinyNpy(static_cast<char>(i)),
                       .zip64_extra = true});
  }
  const std::string image = BuildZip(members, {.zip64_end = true});
  loader::ParseContext ctx({});
  loader::ParsedModel model;
  const uint64_t before = testing::AllocationCount();
  Status s = loader::ParseModel(AsBytes(image), ctx, &model);
  const uint64_t news = testing::AllocationCount() - before;
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(model.tensors.size(), kMembers);
  // Per member (7 now): the zip entry's name and the name set's node, the
  // npz name check's node, the .npy header's shape and the message prefix
  // (both dropped: the tensor's shape is inline, its origin told when a
  // message needs it), the tensor's name. The closure that copied the
  // header and the per-member message strings made it 31; a source record
  // and the kept origin string 8.
  EXPECT_LE(news, 7 * kMembers) << news << " allocations for " << kMembers << " members";
  // Every source still yields its member's byte.
  for (size_t i : {size_t{0}, kMembers / 2, kMembers - 1}) {
    const loader::Tensor& t = model.tensors[i];
    EXPECT_EQ(t.name, "layer." + std::to_string(i) + ".weight");
    EXPECT_EQ(t.origin.Text(t.name), "npz member 'layer." + std::to_string(i) + ".weight.npy'");
    auto el = t.source();
    ASSERT_TRUE(el.ok()) << el.status().ToString();
    ASSERT_EQ(el->view.size(), 1u);
    EXPECT_EQ(el->view[0], static_cast<uint8_t>(static_cast<char>(i)));
  }
}

}  // namespace
}  // namespace safemodel::testing
