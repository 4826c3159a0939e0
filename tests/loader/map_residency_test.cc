// MapResidency (loader/map_residency.h): scattered reads of a droppable file
// map keep only the last few 2 MiB blocks mapped, a run of reads in one
// block is dropped every kMapResidencyReads reads, and Drop and DropAll
// unmap what they name and nothing outside the map. Mapped means present in
// this process's page tables (/proc/self/pagemap), what its RSS counts; the
// kernel may map more around a read (fault-around, a large folio), so the
// checks look at the first byte of each block read, and at a control
// without the class, in which every block read stays mapped.
#include "loader/map_residency.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "loader/polyglot.h"
#include "tests/testing/test_util.h"

namespace safemodel::loader {
namespace {

constexpr size_t kBlocks = 24;
constexpr uint64_t kBytes = kBlocks * kMapResidencyBlock;

// A sparse file of kBytes mapped as the worker maps its input (read-only,
// private), in a map aligned to kMapResidencyBlock so that block i is the
// bytes [i, i + 1) * kMapResidencyBlock of the map.
class SparseMap {
 public:
  SparseMap() {
    const std::string path = dir_.File("input");
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    const bool sized = ftruncate(fd, static_cast<off_t>(kBytes)) == 0;
    // Room to align: reserve one block more, then map the file over it.
    void* area = mmap(nullptr, kBytes + kMapResidencyBlock, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (sized && area != MAP_FAILED) {
      const uintptr_t aligned =
          (reinterpret_cast<uintptr_t>(area) + kMapResidencyBlock - 1) & ~(kMapResidencyBlock - 1);
      void* p = mmap(reinterpret_cast<void*>(aligned), kBytes, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
      if (p != MAP_FAILED) data_ = static_cast<const uint8_t*>(p);
    }
    area_ = area;
    close(fd);
  }
  ~SparseMap() {
    if (area_ != MAP_FAILED) munmap(area_, kBytes + kMapResidencyBlock);
  }
  SparseMap(const SparseMap&) = delete;
  SparseMap& operator=(const SparseMap&) = delete;

  // Mapped and observable (/proc/self/pagemap readable).
  bool ok() const { return data_ != nullptr && testing::MappedHere(data_) != -1; }
  ByteView view() const { return ByteView(data_, kBytes); }
  // Reads a byte (as a parser would), `at` bytes into the map.
  ByteView Read(uint64_t at) const {
    volatile uint8_t sink = data_[at];
    (void)sink;
    return ByteView(data_ + at, 1);
  }
  bool Mapped(uint64_t at) const { return testing::MappedHere(data_ + at) == 1; }
  size_t BlocksMapped() const {
    size_t n = 0;
    for (size_t b = 0; b < kBlocks; ++b) if (Mapped(b * kMapResidencyBlock + 100)) ++n;
    return n;
  }

 private:
  testing::TempDir dir_;
  void* area_ = MAP_FAILED;
  const uint8_t* data_ = nullptr;
};

TEST(MapResidency, ScatteredReadsKeepOnlyTheLastBlocksMapped) {
  const SparseMap map;
  if (!map.ok()) GTEST_SKIP() << "no file map or no /proc/self/pagemap";
  // Control: reads alone leave every block read mapped.
  for (size_t b = 0; b < kBlocks; ++b) map.Read(b * kMapResidencyBlock + 100);
  EXPECT_EQ(map.BlocksMapped(), kBlocks);
  madvise(const_cast<uint8_t*>(map.view().data()), kBytes, MADV_DONTNEED);
  ASSERT_EQ(map.BlocksMapped(), 0u);

  MapResidency residency(map.view());
  for (size_t b = 0; b < kBlocks; ++b) {
    residency.Touch(map.Read(b * kMapResidencyBlock + 100));
    EXPECT_TRUE(map.Mapped(b * kMapResidencyBlock + 100)) << b;  // nothing is dropped under a reader
    EXPECT_LE(map.BlocksMapped(), kMapResidencyBlocks) << "after block " << b;
    // Going back to a remembered block drops nothing.
    if (b > 0) {
      residency.Touch(map.Read((b - 1) * kMapResidencyBlock + 200));
      EXPECT_TRUE(map.Mapped(b * kMapResidencyBlock + 100)) << b;
    }
  }
  EXPECT_GE(map.BlocksMapped(), 1u);
  residency.DropAll();
  EXPECT_EQ(map.BlocksMapped(), 0u);
}

TEST(MapResidency, ManyReadsInOneBlockAreDroppedEveryReadLimit) {
  const SparseMap map;
  if (!map.ok()) GTEST_SKIP() << "no file map or no /proc/self/pagemap";
  MapResidency residency(map.view());
  const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  // Reads one page apart inside block 0 (with the file's holes as pages).
  residency.Touch(map.Read(0));
  for (uint64_t i = 1; i + 1 < kMapResidencyReads; ++i) residency.Touch(map.Read((i % 256) * page));
  EXPECT_TRUE(map.Mapped(0));
  residency.Touch(map.Read(300 * page));  // the kMapResidencyReads-th read
  EXPECT_FALSE(map.Mapped(0)) << "a full run of reads in one block was not dropped";
  // The count starts again: the next reads stay until the next full run.
  residency.Touch(map.Read(page));
  EXPECT_TRUE(map.Mapped(page));
}

TEST(MapResidency, ALongReadIsDroppedWithTheBlocksBeforeIt) {
  const SparseMap map;
  if (!map.ok()) GTEST_SKIP() << "no file map or no /proc/self/pagemap";
  MapResidency residency(map.view());
  residency.Touch(map.Read(20 * kMapResidencyBlock));
  // Blocks 2-9 read through (a tensor of 16 MiB), then noted as one read.
  for (uint64_t b = 2; b < 10; ++b) map.Read(b * kMapResidencyBlock + 100);
  residency.Touch(map.view().subspan(2 * kMapResidencyBlock, 8 * kMapResidencyBlock));
  EXPECT_EQ(map.BlocksMapped(), 0u);
  // A read of a few blocks is remembered as usual.
  map.Read(12 * kMapResidencyBlock + 100);
  map.Read(13 * kMapResidencyBlock + 100);
  residency.Touch(map.view().subspan(12 * kMapResidencyBlock, 2 * kMapResidencyBlock));
  EXPECT_TRUE(map.Mapped(12 * kMapResidencyBlock + 100));
  EXPECT_TRUE(map.Mapped(13 * kMapResidencyBlock + 100));
}

TEST(MapResidency, DropTakesTheWholePagesInsideItsBytesOnly) {
  const SparseMap map;
  if (!map.ok()) GTEST_SKIP() << "no file map or no /proc/self/pagemap";
  MapResidency residency(map.view());
  const auto page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  for (uint64_t p = 0; p < 8; ++p) map.Read(p * page);
  // From the middle of page 1 to the middle of page 6: pages 2-5 go.
  residency.Drop(map.view().subspan(page + page / 2, 5 * page));
  for (uint64_t p = 0; p < 8; ++p) EXPECT_EQ(map.Mapped(p * page), p < 2 || p > 5) << "page " << p;
}

// libhdf5's superblock search probes 8 bytes at 0 and every 2^k: a probe in
// a 2 MiB block of its own past the first few, ~13 of them for a 16 GiB
// input (its worker's peak was 8 MiB above a 1 GiB one's for that alone).
TEST(MapResidency, TheHdf5SignatureProbesOfADroppableMapAreDroppedAgain) {
  const SparseMap map;
  if (!map.ok()) GTEST_SKIP() << "no file map or no /proc/self/pagemap";
  for (const bool droppable : {false, true}) {
    SCOPED_TRACE(droppable);
    madvise(const_cast<uint8_t*>(map.view().data()), kBytes, MADV_DONTNEED);
    EXPECT_EQ(FindHdf5Signature(map.view(), droppable ? map.view() : ByteView()), std::nullopt);
    size_t probes = 0, probes_mapped = 0;
    for (uint64_t at = kMapResidencyBlock; at < kBytes; at *= 2, ++probes) {
      probes_mapped += map.Mapped(at) ? 1u : 0u;
    }
    EXPECT_EQ(probes, 5u);  // 2, 4, 8, 16 and 32 MiB
    EXPECT_EQ(probes_mapped, droppable ? 0u : probes);
  }
}

TEST(MapResidency, MemoryOutsideTheMapIsNeverDropped) {
  const SparseMap map;
  if (!map.ok()) GTEST_SKIP() << "no file map or no /proc/self/pagemap";
  // A buffer of our own (its pages are mapped: written to).
  std::string heap(4 * kMapResidencyBlock, 'h');
  MapResidency residency(map.view());
  for (size_t i = 0; i < heap.size(); i += 4096) residency.Touch(AsBytes(heap).subspan(i, 1));
  residency.Drop(AsBytes(heap));
  EXPECT_EQ(heap, std::string(4 * kMapResidencyBlock, 'h'));
  EXPECT_EQ(testing::MappedHere(heap.data() + 4096), 1);
  EXPECT_FALSE(residency.Touch(AsBytes(heap)));  // not in its map
  EXPECT_TRUE(residency.Touch(map.Read(0)));
  // Without a map the class does nothing at all.
  MapResidency none;
  EXPECT_FALSE(none.active());
  EXPECT_FALSE(none.Touch(map.Read(0)));
  none.DropAll();
  EXPECT_TRUE(map.Mapped(0));
}

}  // namespace
}  // namespace safemodel::loader
