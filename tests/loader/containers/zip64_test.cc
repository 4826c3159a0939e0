// The strict zip reader on the zip64 layouts real writers produce, up to
// 8.2 GiB: torch.save (members beyond 4 GiB, members of 4 GiB or more),
// numpy.savez, Python's zipfile (seekable, streamed, force_zip64). Each
// archive is the writer's exact bytes (tests/fixtures/zip/make_fixtures.py),
// rebuilt here in a sparse file and mapped as the worker maps its input, so
// the offsets beyond 4 GiB are real. Each contradiction a crafted archive
// could carry is then made in one of those images, and must be refused.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "loader/containers/zip_archive.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

using loader::OwnedBuffer;
using loader::ZipArchive;

constexpr uint64_t kMax32 = 0xFFFFFFFF;

// What Python's zipfile reads for one member (the fixture's "member" line).
struct Member {
  std::string name;
  uint64_t header_offset = 0;
  uint64_t data_offset = 0;
  uint64_t size = 0;
  uint32_t crc = 0;
};

// A fixture's archive in a sparse temporary file, mapped shared and
// writable, so a test can alter single fields.
class SparseImage {
 public:
  explicit SparseImage(const std::string& fixture) {
    std::ifstream in(Fixture("zip/" + fixture + ".txt"));
    EXPECT_TRUE(in.good()) << fixture;
    path_ = dir_.File(fixture);
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd_, 0);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream s(line);
      std::string kind;
      s >> kind;
      if (kind == "size") {
        s >> size_;
        EXPECT_EQ(ftruncate(fd_, static_cast<off_t>(size_)), 0) << "sparse file of " << size_;
      } else if (kind == "member") {
        Member m;
        s >> m.name >> m.header_offset >> m.data_offset >> m.size >> m.crc;
        members_.push_back(m);
      } else if (kind == "run") {
        uint64_t offset;
        std::string hex;
        s >> offset >> hex;
        std::string bytes;
        for (size_t i = 0; i + 1 < hex.size(); i += 2) {
          bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
        }
        EXPECT_EQ(pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
                  static_cast<ssize_t>(bytes.size()));
      }
    }
    EXPECT_GT(size_, 0u) << fixture;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    EXPECT_NE(p, MAP_FAILED);
    data_ = static_cast<uint8_t*>(p == MAP_FAILED ? nullptr : p);
  }
  ~SparseImage() {
    if (data_ != nullptr) munmap(data_, size_);
    if (fd_ >= 0) close(fd_);
  }
  SparseImage(const SparseImage&) = delete;
  SparseImage& operator=(const SparseImage&) = delete;

  ByteView view() const { return {data_, size_}; }
  const std::vector<Member>& members() const { return members_; }
  const Member& member(const std::string& name) const {
    for (const Member& m : members_) {
      if (m.name == name) return m;
    }
    ADD_FAILURE() << "no member " << name;
    return members_.front();
  }

  // Little-endian fields of 2, 4 or 8 bytes.
  uint64_t Get(uint64_t offset, unsigned bytes) const {
    uint64_t v = 0;
    for (unsigned i = bytes; i-- > 0;) v = (v << 8) | data_[offset + i];
    return v;
  }
  void Put(uint64_t offset, uint64_t v, unsigned bytes) {
    for (unsigned i = 0; i < bytes; ++i) data_[offset + i] = static_cast<uint8_t>(v >> (8 * i));
  }

  // Offset of the body of the extra field `id` in the extra block at
  // [extra, extra + len), or 0 if absent.
  uint64_t FindExtra(uint64_t extra, uint64_t len, uint16_t id, uint64_t* body_len = nullptr) const {
    for (uint64_t p = extra; p + 4 <= extra + len; p += 4 + Get(p + 2, 2)) {
      if (Get(p, 2) == id) {
        if (body_len != nullptr) *body_len = Get(p + 2, 2);
        return p + 4;
      }
    }
    return 0;
  }
  // The local header's extra block of `m`.
  uint64_t LocalExtra(const Member& m, uint64_t* len) const {
    *len = Get(m.header_offset + 28, 2);
    return m.header_offset + 30 + Get(m.header_offset + 26, 2);
  }
  // Body of the local zip64 field of `m` (0 if none).
  uint64_t LocalZip64(const Member& m, uint64_t* body_len = nullptr) const {
    uint64_t len;
    uint64_t extra = LocalExtra(m, &len);
    return FindExtra(extra, len, 0x0001, body_len);
  }
  // Offset of `m`'s central-directory entry (found through the end records).
  uint64_t CentralEntry(const Member& m) const {
    uint64_t eocd = size_ - 22;  // no fixture has a comment
    uint64_t cd = Get(eocd + 16, 4);
    if (Get(eocd - 20, 4) == 0x07064b50) cd = Get(Get(eocd - 12, 8) + 48, 8);
    for (uint64_t p = cd; Get(p, 4) == 0x02014b50;) {
      uint64_t n = Get(p + 28, 2), e = Get(p + 30, 2), c = Get(p + 32, 2);
      if (std::string(reinterpret_cast<const char*>(data_ + p + 46), n) == m.name) return p;
      p += 46 + n + e + c;
    }
    ADD_FAILURE() << "no central entry for " << m.name;
    return 0;
  }
  // Body of the central zip64 field of `m` (0 if none).
  uint64_t CentralZip64(const Member& m) const {
    uint64_t p = CentralEntry(m);
    return FindExtra(p + 46 + Get(p + 28, 2), Get(p + 30, 2), 0x0001);
  }

 private:
  TempDir dir_;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint8_t* data_ = nullptr;
  std::vector<Member> members_;
};

void ExpectRefused(const SparseImage& image, const std::string& part) {
  auto z = ZipArchive::Open(image.view());
  ASSERT_FALSE(z.ok()) << "expected a refusal containing '" << part << "'";
  EXPECT_EQ(z.status().code(), StatusCode::kMalformed) << z.status().ToString();
  EXPECT_NE(z.status().message().find(part), std::string::npos) << z.status().ToString();
}

void ExpectAccepted(const SparseImage& image) {
  auto z = ZipArchive::Open(image.view());
  EXPECT_TRUE(z.ok()) << z.status().ToString();
}

// ---------------------------------------------------------------------------
// Every writer's archive reads as zipfile reads it.

class WriterLayouts : public ::testing::TestWithParam<const char*> {};

TEST_P(WriterLayouts, ReadAsZipfileReadsThem) {
  SparseImage image(GetParam());
  auto z = ZipArchive::Open(image.view());
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  const auto& entries = (*z)->entries();
  ASSERT_EQ(entries.size(), image.members().size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const Member& m = image.members()[i];
    SCOPED_TRACE(m.name);
    EXPECT_EQ(e.name, m.name);
    EXPECT_EQ(e.local_header_offset, m.header_offset);
    EXPECT_EQ(e.data_offset, m.data_offset);
    EXPECT_EQ(e.uncompressed_size, m.size);
    EXPECT_EQ(e.crc32, m.crc);
    if (m.size > (16u << 20)) {
      // The big members are zeros (holes); reading their start is enough.
      auto prefix = (*z)->ReadPrefix(e, 64);
      ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
      continue;
    }
    OwnedBuffer holder;
    auto bytes = (*z)->Contents(e, 1 << 20, &holder);  // CRC-checked
    ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
    EXPECT_EQ(bytes->size(), m.size);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, WriterLayouts,
                         ::testing::Values("torch_8g", "torch_small", "numpy_savez_4g",
                                           "numpy_savez_small", "numpy_savez_compressed_small",
                                           "zipfile_seekable_4g", "zipfile_stream_4g",
                                           "zipfile_small", "zipfile_stream_small"));

// The layouts the 8.2 GiB torch checkpoint holds, as the comment in
// zip_archive.cc describes them: the fixture must keep exercising each.
TEST(TorchZip64, FixtureHoldsEveryMinizLayout) {
  SparseImage image("torch_8g");
  uint64_t len = 0;
  const Member& big_near = image.member("archive/data/0");
  const Member& small_far = image.member("archive/data/1");
  const Member& big_far = image.member("archive/data/2");
  const Member& empty_far = image.member("archive/data/4");
  ASSERT_NE(image.LocalZip64(big_near, &len), 0u);
  EXPECT_EQ(len, 16u);
  EXPECT_LT(big_near.header_offset, kMax32);
  EXPECT_GE(big_near.size, kMax32);
  ASSERT_NE(image.LocalZip64(small_far, &len), 0u);
  EXPECT_EQ(len, 8u);
  EXPECT_GE(small_far.header_offset, kMax32);
  ASSERT_NE(image.LocalZip64(big_far, &len), 0u);
  EXPECT_EQ(len, 24u);
  EXPECT_GE(big_far.header_offset, kMax32);
  EXPECT_GE(big_far.size, kMax32);
  // The empty record: no descriptor flag, sizes 0, but still the offset.
  EXPECT_EQ(image.Get(empty_far.header_offset + 6, 2), 0x0800u);
  ASSERT_NE(image.LocalZip64(empty_far, &len), 0u);
  EXPECT_EQ(len, 8u);
  // Every other member: descriptor flag and local CRC and sizes 0.
  EXPECT_EQ(image.Get(small_far.header_offset + 6, 2), 0x0808u);
  EXPECT_EQ(image.Get(small_far.header_offset + 14, 4), 0u);
  EXPECT_EQ(image.Get(small_far.header_offset + 18, 8), 0u);
  ExpectAccepted(image);
}

// ---------------------------------------------------------------------------
// torch's layout: the contradictions a crafted checkpoint could carry.

TEST(TorchZip64, RefusesALocalHeaderOffsetThatIsNotTheHeaders) {
  for (const char* name : {"archive/data/1", "archive/data/2", "archive/data/4"}) {
    SparseImage image("torch_8g");
    const Member& m = image.member(name);
    uint64_t len = 0;
    uint64_t z = image.LocalZip64(m, &len);
    ASSERT_NE(z, 0u);
    const uint64_t at = z + len - 8;  // the offset is the field's last value
    ASSERT_EQ(image.Get(at, 8), m.header_offset);
    image.Put(at, m.header_offset + 64, 8);
    SCOPED_TRACE(name);
    ExpectRefused(image, "local zip64 extra field gives header offset");
  }
}

TEST(TorchZip64, RefusesLocalSizesThatDisagreeWithTheCentralOnes) {
  {
    // The local zip64 uncompressed size must be the central one (or 0).
    SparseImage image("torch_8g");
    uint64_t z = image.LocalZip64(image.member("archive/data/0"));
    image.Put(z, image.Get(z, 8) - 4096, 8);
    ExpectRefused(image, "local zip64 sizes");
  }
  {
    // miniz leaves the compressed size 0; any other value must be the real one.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data/2");
    uint64_t z = image.LocalZip64(m);
    image.Put(z + 8, m.size, 8);
    ExpectAccepted(image);
    image.Put(z + 8, 12345, 8);
    ExpectRefused(image, "local zip64 sizes");
  }
  {
    // A 32-bit local size that is neither a placeholder nor the real size.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data/1");
    image.Put(m.header_offset + 22, 17, 4);
    ExpectRefused(image, "local header CRC or sizes differ");
  }
  {
    // All three 32-bit fields real (a non-streaming writer) is agreement.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data/1");
    image.Put(m.header_offset + 14, m.crc, 4);
    image.Put(m.header_offset + 18, m.size, 4);
    image.Put(m.header_offset + 22, m.size, 4);
    ExpectAccepted(image);
  }
  {
    // Without the descriptor flag the empty member's sizes are real ones.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data/4");
    image.Put(m.header_offset + 22, 1, 4);
    ExpectRefused(image, "local header CRC or sizes differ");
  }
}

TEST(TorchZip64, RefusesADescriptorThatDisagrees) {
  SparseImage image("torch_8g");
  const Member& m = image.member("archive/data/1");
  const uint64_t descriptor = m.data_offset + m.size;
  ASSERT_EQ(image.Get(descriptor, 4), 0x08074b50u);
  // 8-byte sizes, because the local header has a zip64 field.
  EXPECT_EQ(image.Get(descriptor + 8, 8), m.size);
  EXPECT_EQ(image.Get(descriptor + 16, 8), m.size);
  image.Put(descriptor + 16, m.size + 1, 8);
  ExpectRefused(image, "data descriptor differs");
}

TEST(TorchZip64, RefusesLocalZip64FieldsNoWriterProduces) {
  {
    // 8 bytes (an offset) for a header below 4 GiB: data.pkl's padding field
    // ('FB', torch's alignment) rewritten as a zip64 field + shorter padding.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data.pkl");
    uint64_t len;
    uint64_t extra = image.LocalExtra(m, &len);
    ASSERT_GE(len, 16u);
    ASSERT_EQ(image.Get(extra, 2), 0x4246u);
    image.Put(extra, 0x0001, 2);
    image.Put(extra + 2, 8, 2);
    image.Put(extra + 4, 0, 8);
    image.Put(extra + 12, 0x4246, 2);
    image.Put(extra + 14, len - 16, 2);
    ExpectRefused(image, "matches no writer's layout");
  }
  {
    // 24 bytes (sizes and offset) for a header below 4 GiB.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data/0");
    uint64_t len;
    uint64_t extra = image.LocalExtra(m, &len);
    ASSERT_EQ(image.Get(extra, 2), 0x0001u);
    ASSERT_EQ(image.Get(extra + 2, 2), 16u);
    const uint64_t pad = extra + 20;
    ASSERT_EQ(image.Get(pad, 2), 0x4246u);
    const uint64_t pad_len = image.Get(pad + 2, 2);
    ASSERT_GE(pad_len, 8u);
    image.Put(extra + 2, 24, 2);
    image.Put(extra + 20, m.header_offset, 8);
    image.Put(extra + 28, 0x4246, 2);
    image.Put(extra + 30, pad_len - 8, 2);
    ExpectRefused(image, "matches no writer's layout");
  }
  {
    // 8 bytes (only the offset) for a member of 4 GiB or more: its sizes
    // would be missing. The 24-byte field becomes [offset] + padding.
    SparseImage image("torch_8g");
    const Member& m = image.member("archive/data/2");
    uint64_t len;
    uint64_t extra = image.LocalExtra(m, &len);
    ASSERT_EQ(image.Get(extra + 2, 2), 24u);
    image.Put(extra + 2, 8, 2);
    image.Put(extra + 4, m.header_offset, 8);
    image.Put(extra + 12, 0x4246, 2);
    image.Put(extra + 14, 12, 2);
    ExpectRefused(image, "matches no writer's layout");
  }
}

TEST(TorchZip64, RefusesEndRecordsThatDisagree) {
  SparseImage image("torch_8g");
  const uint64_t eocd = image.view().size() - 22;
  ASSERT_EQ(image.Get(eocd + 16, 4), kMax32);  // the central directory is beyond 4 GiB
  const uint64_t rec = image.Get(eocd - 12, 8);
  image.Put(rec + 48, image.Get(rec + 48, 8) + 1, 8);
  ExpectRefused(image, "central directory");
}

TEST(TorchZip64, RefusesACentralOffsetThatPointsElsewhere) {
  // data/3's central zip64 offset moved onto data/1's header.
  SparseImage image("torch_8g");
  uint64_t z = image.CentralZip64(image.member("archive/data/3"));
  ASSERT_NE(z, 0u);
  image.Put(z, image.member("archive/data/1").header_offset, 8);
  ExpectRefused(image, "names differ");
}

// ---------------------------------------------------------------------------
// zipfile's and numpy's layouts.

TEST(ZipfileZip64, RefusesOverlappingMembersAndDataBeyondTheArchive) {
  // A member whose sizes (central and local, in agreement) swallow the next
  // member's header: two readers would disagree on what the bytes are.
  for (uint64_t grow : {uint64_t{64}, uint64_t{1} << 33}) {
    SparseImage image("zipfile_seekable_4g");
    const Member& m = image.member("big.bin");
    uint64_t central = image.CentralZip64(m);
    uint64_t local = image.LocalZip64(m);
    ASSERT_NE(central, 0u);
    ASSERT_NE(local, 0u);
    for (uint64_t at : {central, central + 8, local, local + 8}) {
      ASSERT_EQ(image.Get(at, 8), m.size);
      image.Put(at, m.size + grow, 8);
    }
    ExpectRefused(image, grow == 64 ? "overlapping entries" : "data runs past the central directory");
  }
}

TEST(ZipfileZip64, LocalSizesBeyond4GiBMustAgree) {
  {
    // small.txt beyond 4 GiB: no local zip64 field, real 32-bit sizes.
    SparseImage image("zipfile_seekable_4g");
    const Member& m = image.member("small.txt");
    ASSERT_EQ(image.LocalZip64(m), 0u);
    image.Put(m.header_offset + 22, m.size + 1, 4);
    ExpectRefused(image, "local header CRC or sizes differ");
  }
  {
    // 0xFFFFFFFF ("see the zip64 field") with no zip64 field.
    SparseImage image("zipfile_seekable_4g");
    const Member& m = image.member("small.txt");
    image.Put(m.header_offset + 22, kMax32, 4);
    ExpectRefused(image, "local header CRC or sizes differ");
  }
  {
    // numpy's force_zip64 field beyond 4 GiB: the two sizes, real ones.
    SparseImage image("numpy_savez_4g");
    const Member& m = image.member("b.npy");
    uint64_t len = 0;
    uint64_t z = image.LocalZip64(m, &len);
    ASSERT_EQ(len, 16u);
    ASSERT_GE(m.header_offset, kMax32);
    image.Put(z, m.size + 1, 8);
    ExpectRefused(image, "local zip64 sizes");
  }
  {
    // No descriptor: a zero in the zip64 field is not a placeholder.
    SparseImage image("numpy_savez_4g");
    uint64_t z = image.LocalZip64(image.member("a.npy"));
    image.Put(z + 8, 0, 8);
    ExpectRefused(image, "local zip64 sizes");
  }
}

TEST(ZipfileZip64, StreamedPlaceholdersAreZeroOrReal) {
  const Member* m;
  {
    // zipfile streams [0, 0]; the real values agree too; anything else not.
    SparseImage image("zipfile_stream_4g");
    m = &image.member("big.bin");
    uint64_t z = image.LocalZip64(*m);
    ASSERT_EQ(image.Get(z, 8), 0u);
    ASSERT_EQ(image.Get(z + 8, 8), 0u);
    image.Put(z, m->size, 8);
    image.Put(z + 8, m->size, 8);
    ExpectAccepted(image);
    image.Put(z + 8, 1, 8);
    ExpectRefused(image, "local zip64 sizes");
  }
  {
    // The descriptor after the 4100 MiB member has 8-byte sizes.
    SparseImage image("zipfile_stream_4g");
    m = &image.member("big.bin");
    const uint64_t descriptor = m->data_offset + m->size;
    ASSERT_EQ(image.Get(descriptor, 4), 0x08074b50u);
    image.Put(descriptor + 4, m->crc ^ 1, 4);
    ExpectRefused(image, "data descriptor differs");
  }
  {
    // small.txt (no zip64 field) has a 4-byte-size descriptor; one claiming
    // 8-byte sizes would not tile.
    SparseImage image("zipfile_stream_4g");
    m = &image.member("small.txt");
    const uint64_t descriptor = m->data_offset + m->size;
    EXPECT_EQ(image.Get(descriptor + 8, 4), m->size);
    EXPECT_EQ(image.Get(descriptor + 12, 4), m->size);
    EXPECT_EQ(image.Get(descriptor + 16, 4), 0x04034b50u);  // the next local header
  }
}

}  // namespace
}  // namespace safemodel::testing
