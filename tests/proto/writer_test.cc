// SafemodelWriter::HashFile: the SHA-256 of the finished file, computed as
// it is written, must be what an independent hasher (`sha256sum`) prints
// for the file on disk, whenever the input digest becomes known (before the
// first tensor byte, in the middle, never before Finish), whatever the
// digest algorithm (the trailer's length differs), with aliases and empty
// tensors; and a digest at Finish other than the one hashing started with
// is refused. SafemodelWriter::WriteBehind: the same bytes, the same file
// digest, and the windows behind the last two out of the page cache. The
// tensors' digests, written into the trailer's place as they are computed
// (a buffer of them at a time, ahead of the data), make the trailer
// protobuf's serialisation of the v1::Trailer of those digests, however the
// entries fall across the buffers.
#include "proto/writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "proto/digest.h"
#include "proto/format.h"
#include "proto/wire/wire.h"
#include "safemodel/reader.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

struct Spec {
  std::string name;
  v1::DType dtype;
  std::vector<uint64_t> shape;
  std::string alias_of;
};

const std::vector<Spec> kSpecs = {
    {"a.bias", v1::F32, {3}, ""},       {"b.big", v1::U8, {3 << 20}, ""},  {"c.empty", v1::F64, {0, 5}, ""},
    {"d.scalar", v1::I64, {}, ""},      {"e.tied", v1::F32, {3}, "a.bias"}, {"f.half", v1::BF16, {2, 3}, ""},
    {"g.tail", v1::U8, {100'000}, ""},
};

v1::Header MakeHeader(v1::DigestAlgorithm algo) {
  v1::Header h;
  for (const Spec& s : kSpecs) {
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(s.name);
    t->set_dtype(s.dtype);
    for (uint64_t d : s.shape) t->add_shape(d);
    t->set_alias_of(s.alias_of);
  }
  h.mutable_provenance()->set_source_format("npz");
  h.mutable_provenance()->set_input_size(1234);
  h.mutable_provenance()->set_converter_version("safemodel test");
  h.set_digest_algorithm(algo);
  return h;
}

std::string Sha256Sum(const std::string& path) {
  std::string out;
  if (RunCommand("sha256sum '" + path + "'", &out, false) != 0) return "";
  return out.substr(0, 64);
}

const std::string kInputSha(32, '\x5a');

// Writes the file in 64 KiB appends; the input digest becomes known after
// `known_after` appends (-1: never before Finish). Returns the writer's
// file SHA-256 (hex), "" on failure.
// `behind`: SafemodelWriter::WriteBehind's window (0: not written behind).
std::string WriteHashed(const std::string& path, v1::DigestAlgorithm algo, int known_after,
                        const std::string& finish_sha = kInputSha, uint64_t behind = 0) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  EXPECT_GE(fd, 0);
  auto w = SafemodelWriter::Plan(fd, MakeHeader(algo));
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  if (behind != 0) (*w)->WriteBehind(behind);
  int appends = 0, asked = 0;
  (*w)->HashFile([&]() -> std::optional<std::string> {
    ++asked;
    if (known_after >= 0 && appends >= known_after) return kInputSha;
    return std::nullopt;
  });
  EXPECT_TRUE((*w)->WriteHeader().ok());
  char seed = 'a';
  while (!(*w)->complete()) {
    std::string bytes((*w)->current_remaining(), seed++);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(static_cast<size_t>(bytes[i]) + 7 * i);
    for (size_t off = 0; off < bytes.size(); off += 64 << 10, ++appends) {
      EXPECT_TRUE((*w)->Append(AsBytes(std::string_view(bytes).substr(off, 64 << 10))).ok());
    }
  }
  const Status finished = (*w)->Finish(finish_sha);
  close(fd);
  EXPECT_GT(asked, 0);
  if (!finished.ok()) {
    EXPECT_EQ(finished.code(), StatusCode::kInternal) << finished.ToString();
    return "";
  }
  return ToHex((*w)->file_sha256());
}

TEST(WriterFileHash, IsTheSha256OfTheFinishedFileWheneverTheInputDigestArrives) {
  TempDir dir;
  for (v1::DigestAlgorithm algo : {v1::XXH3_128, v1::SHA256}) {
    for (int known_after : {0, 1, 20, 47, -1}) {
      const std::string path = dir.File("m" + std::to_string(known_after) + ".safemodel");
      const std::string got = WriteHashed(path, algo, known_after);
      SCOPED_TRACE("algorithm " + std::to_string(algo) + ", known after " + std::to_string(known_after));
      ASSERT_EQ(got.size(), 64u);
      EXPECT_EQ(got, Sha256Sum(path));
      // The file is the one an unhashed writer gives, and it opens.
      EXPECT_TRUE(Model::Open(path).ok());
    }
  }
}

TEST(WriterFileHash, AnotherInputDigestAtFinishIsRefused) {
  TempDir dir;
  EXPECT_EQ(WriteHashed(dir.File("m.safemodel"), v1::XXH3_128, 0, std::string(32, '\x01')), "");
}

TEST(WriterFileHash, NotAskedNoDigest) {
  TempDir dir;
  const int fd = open(dir.File("m").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  auto w = SafemodelWriter::Begin(fd, MakeHeader(v1::XXH3_128));
  ASSERT_TRUE(w.ok());
  while (!(*w)->complete()) ASSERT_TRUE((*w)->Append(AsBytes(std::string((*w)->current_remaining(), 'x'))).ok());
  ASSERT_TRUE((*w)->Finish(kInputSha).ok());
  close(fd);
  EXPECT_EQ((*w)->file_sha256(), "");
}

// 10,000 tensors (several buffers of trailer entries, of 18 or 34 bytes
// each): aliases (empty entries) and empty tensors among them.
TEST(WriterTrailer, DigestsWrittenAheadAreTheTrailerMessage) {
  TempDir dir;
  for (v1::DigestAlgorithm algo : {v1::XXH3_128, v1::SHA256}) {
    for (int known_after : {0, 5000, -1}) {
      SCOPED_TRACE("algorithm " + std::to_string(algo) + ", known after " + std::to_string(known_after));
      v1::Header h = MakeHeader(algo);
      h.clear_tensors();
      for (int i = 0; i < 10000; ++i) {
        char name[16];
        std::snprintf(name, sizeof name, "t%05d", i);
        v1::TensorInfo* t = h.add_tensors();
        t->set_name(name);
        t->set_dtype(v1::U8);
        if (i % 7 == 6) {  // the same shape as the tensor before it
          *t->mutable_shape() = h.tensors(i - 1).shape();
          t->set_alias_of(h.tensors(i - 1).name());
        } else {
          t->add_shape(i % 11 == 0 ? 0 : static_cast<uint64_t>(i % 13 + 1));
        }
      }
      const std::string path = dir.File("many.safemodel");
      const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ASSERT_GE(fd, 0);
      auto w = SafemodelWriter::Plan(fd, h);
      ASSERT_TRUE(w.ok()) << w.status().ToString();
      int appends = 0;
      (*w)->HashFile([&]() -> std::optional<std::string> {
        if (known_after >= 0 && appends >= known_after) return kInputSha;
        return std::nullopt;
      });
      ASSERT_TRUE((*w)->WriteHeader().ok());
      v1::Trailer want;
      want.set_digest_algorithm(algo);
      for (int i = 0; i < h.tensors_size(); ++i) {
        if (!h.tensors(i).alias_of().empty()) {
          want.add_tensor_digests("");
          continue;
        }
        // An empty tensor is complete as soon as the writer reaches it.
        const bool empty = h.tensors(i).shape(0) == 0;
        const std::string bytes(empty ? 0 : (*w)->current_remaining(), static_cast<char>('a' + i % 26));
        if (!empty) {
          ASSERT_EQ((*w)->current_tensor(), i);
          ASSERT_TRUE((*w)->Append(AsBytes(bytes)).ok());
          ++appends;
        }
        auto hasher = MakeHasher(static_cast<DigestAlgorithm>(algo));
        hasher->Update(AsBytes(bytes));
        want.add_tensor_digests(hasher->Finish());
      }
      ASSERT_TRUE((*w)->complete());
      ASSERT_TRUE((*w)->Finish(kInputSha).ok());
      close(fd);
      const std::string file = ReadFile(path);
      auto prefix = format::DecodePrefix(AsBytes(file).first(format::kPrefixBytes), file.size());
      ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
      v1::Trailer got;
      const std::string trailer = file.substr(prefix->trailer_off);
      ASSERT_TRUE(got.ParseFromString(trailer));
      want.set_header_digest(got.header_digest());  // checked by Verify below
      EXPECT_EQ(trailer, wire::SerializeDeterministic(want));
      EXPECT_EQ(ToHex((*w)->file_sha256()), Sha256Sum(path));
      auto model = Model::Open(path);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      EXPECT_TRUE(model->Verify().ok());
    }
  }
}

TEST(WriterWriteBehind, WritesTheSameFileWithTheSameDigest) {
  TempDir dir;
  for (int known_after : {0, 20, -1}) {
    SCOPED_TRACE("known after " + std::to_string(known_after));
    const std::string plain = dir.File("plain.safemodel"), behind = dir.File("behind.safemodel");
    const std::string want = WriteHashed(plain, v1::XXH3_128, known_after);
    const std::string got = WriteHashed(behind, v1::XXH3_128, known_after, kInputSha, 256 << 10);
    ASSERT_EQ(got.size(), 64u);
    EXPECT_EQ(got, want);
    EXPECT_EQ(got, Sha256Sum(behind));
    EXPECT_EQ(ReadFile(behind), ReadFile(plain));
  }
}

TEST(WriterWriteBehind, LeavesOnlyTheLastWindowsInThePageCache) {
  TempDir dir;
  if (!PageCacheDropWorks(dir.path())) {
    GTEST_SKIP() << "the temporary directory's file system keeps written pages cached (tmpfs, overlayfs)";
  }
  constexpr uint64_t kWindow = 256 << 10;
  const std::string plain = dir.File("plain.safemodel"), behind = dir.File("behind.safemodel");
  // The input digest known at once: the file hash never reads back.
  ASSERT_FALSE(WriteHashed(plain, v1::XXH3_128, 0).empty());
  ASSERT_FALSE(WriteHashed(behind, v1::XXH3_128, 0, kInputSha, kWindow).empty());
  // The data region up to three windows before the end: every page was
  // written behind, waited for and dropped (Finish rewrites only the prefix
  // and the header and reads the header back, which come before it).
  // (Nothing may read the files before: a read brings the pages back.)
  struct stat st{};
  ASSERT_EQ(stat(behind.c_str(), &st), 0);
  const auto size = static_cast<uint64_t>(st.st_size);
  ASSERT_GT(size, 8 * kWindow);
  const uint64_t from = 2 * kWindow, to = size - 3 * kWindow;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  EXPECT_EQ(ResidentPages(behind, from, to), 0);
  // The control: written plainly, most of it is still cached (memory
  // pressure may have taken some).
  EXPECT_GT(ResidentPages(plain, from, to), static_cast<int64_t>((to - from) / page / 2));
}

}  // namespace
}  // namespace safemodel::testing
