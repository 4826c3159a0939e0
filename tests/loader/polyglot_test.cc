// Second readings (loader/polyglot.h): tarfile's header test, libhdf5's
// superblock search, Python zipfile's archive search, and the registry's
// polyglot rule on the issue-8 fixtures (tests/fixtures/polyglot, written by
// make_fixtures.py with the differential harness's builders).
#include "loader/polyglot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

namespace safemodel::testing {
namespace {

ByteView V(const std::string& s) { return AsBytes(s); }

std::vector<std::string> RefusedRules(const InProcessResult& r) {
  return Rules(r.findings, Finding::Severity::kRefused);
}
bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
bool HasNote(const InProcessResult& r, const std::string& rule) {
  return Has(Rules(r.findings, Finding::Severity::kNote), rule);
}

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

TEST(Polyglot, TarHeaderChecksumAsTarfileReadsIt) {
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

TEST(Polyglot, Hdf5SignatureAtLibhdf5Offsets) {
  const std::string sig = "\x89HDF\r\n\x1a\n";
  for (size_t at : {size_t{0}, size_t{512}, size_t{1024}, size_t{4096}, size_t{65536}}) {
    std::string f(at, 'x');
    f += sig + std::string(100, '\0');
    auto found = loader::FindHdf5Signature(V(f));
    ASSERT_TRUE(found.has_value()) << at;
    EXPECT_EQ(*found, at);
  }
  for (size_t at : {size_t{100}, size_t{511}, size_t{1000}, size_t{1536}}) {
    std::string f(at, 'x');
    f += sig + std::string(100, '\0');
    EXPECT_FALSE(loader::FindHdf5Signature(V(f)).has_value()) << at;
  }
  // The first match wins (an HDF5 file in another's user block).
  std::string two = sig + std::string(1016, '\0') + sig + std::string(8, '\0');
  EXPECT_EQ(*loader::FindHdf5Signature(V(two)), 0u);
  // The signature must lie inside the file.
  EXPECT_FALSE(loader::FindHdf5Signature(V(std::string(512, 'x') + sig.substr(0, 7))));
}

TEST(Polyglot, ZipfileFindsArchivesAfterPrefixesAndInComments) {
  const std::string zip = BuildZip({{"a.npy", "data"}});
  auto plain = loader::FindZipfileArchive(V(zip));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->concat, 0);
  EXPECT_TRUE(plain->has_entries);
  EXPECT_TRUE(loader::CheckZipfileAgrees(V(zip)).ok());
  // A prefix: zipfile shifts every offset by it.
  auto shifted = loader::FindZipfileArchive(V("prefix" + zip));
  ASSERT_TRUE(shifted.has_value());
  EXPECT_EQ(shifted->concat, 6);
  EXPECT_TRUE(shifted->has_entries);
  // An end-record signature inside the comment: zipfile takes the last one.
  ZipLayout layout;
  layout.comment = std::string("PK\x05\x06", 4) + std::string(18, '\0') + "xy";
  const std::string tricky = BuildZip({{"a.npy", "data"}}, layout);
  EXPECT_EQ(*loader::StrictZipEndRecord(V(tricky)), tricky.size() - 22 - layout.comment.size());
  Status s = loader::CheckZipfileAgrees(V(tricky));
  EXPECT_EQ(s.code(), StatusCode::kMalformed);
  EXPECT_NE(s.message().find("zipfile"), std::string::npos) << s.ToString();
  // Nothing that looks like an end record: no archive.
  EXPECT_FALSE(loader::FindZipfileArchive(V(std::string(100, 'x'))).has_value());
}

// ---- Issue 8, found cases 1, 2, 5 and the zip tricks ----------------------------

InProcessResult ParseFixture(const std::string& name) {
  return ParseInProcess(ReadFile(Fixture("polyglot/" + name)));
}

TEST(Regression, Issue8TarPicklePolyglot) {
  // A pickle (one bytes object) that is also a tar whose `storages` member
  // torch.load(path) unpickles: refused for that member's code.
  InProcessResult r = ParseFixture("tar_pickle_code.pkl");
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(RefusedRules(r), "format.polyglot"));
  EXPECT_TRUE(Has(RefusedRules(r), "pickle.global"));  // safemodel_canary.fire in the tar
  // The same trick without code: still two things (exit 3), not converted.
  InProcessResult inert = ParseFixture("tar_pickle_inert.pkl");
  EXPECT_EQ(inert.status.code(), StatusCode::kMalformed) << inert.status.ToString();
  EXPECT_NE(inert.status.message().find("tar archive"), std::string::npos);
  EXPECT_NE(inert.status.message().find("a pickle"), std::string::npos);
  EXPECT_TRUE(HasNote(inert, "format.polyglot"));
}

TEST(Regression, Issue8PickleHdf5UserBlock) {
  // A pickle in a 512-byte user block, a Keras model with a Lambda after it.
  InProcessResult r = ParseFixture("pickle_hdf5_lambda.pkl");
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(RefusedRules(r), "format.polyglot"));
  EXPECT_TRUE(Has(RefusedRules(r), "keras.lambda"));
  InProcessResult clean = ParseFixture("pickle_hdf5_clean.pkl");
  EXPECT_EQ(clean.status.code(), StatusCode::kMalformed) << clean.status.ToString();
  EXPECT_NE(clean.status.message().find("HDF5 file after a user block of 512 bytes"),
            std::string::npos)
      << clean.status.ToString();
}

TEST(Polyglot, Hdf5WithAZeroUserBlockConvertsLikeWithout) {
  InProcessResult ub = ParseFixture("hdf5_userblock.h5");
  ASSERT_TRUE(ub.status.ok()) << ub.status.ToString();
  EXPECT_TRUE(HasNote(ub, "hdf5.user_block"));
  InProcessResult plain = ParseInProcess(ReadFile(Fixture("keras_h5/keras3_weights.h5")));
  ASSERT_TRUE(plain.status.ok());
  ASSERT_EQ(ub.tensors.size(), plain.tensors.size());
  for (const auto& [name, t] : plain.tensors) {
    ASSERT_TRUE(ub.tensors.count(name)) << name;
    EXPECT_EQ(ub.tensors.at(name).bytes, t.bytes) << name;  // data read at the right offsets
  }
}

TEST(Regression, Issue8TorchRecordNamesDifferInCase) {
  // Records data/a and data/A: one record to torch's case-insensitive lookup.
  InProcessResult r = ParseFixture("torch_keys_case.pt");
  EXPECT_EQ(r.status.code(), StatusCode::kMalformed) << r.status.ToString();
  EXPECT_NE(r.status.message().find("differ only in case"), std::string::npos);
  // Int key 0 and str key '0': one record, two storages to torch.
  InProcessResult k = ParseFixture("torch_int_str_key.pt");
  EXPECT_EQ(k.status.code(), StatusCode::kMalformed) << k.status.ToString();
  EXPECT_NE(k.status.message().find("storage key must be a str"), std::string::npos);
}

TEST(Polyglot, ZipWholeArchiveInCommentIsRefused) {
  // zipfile (np.load, Keras) reads the inner archive, torch the outer.
  // Its data.pkl calls a name: refused (exit 1), naming both readings.
  InProcessResult r = ParseFixture("zip_in_comment.pt");
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(RefusedRules(r), "format.polyglot"));
  EXPECT_TRUE(Has(RefusedRules(r), "pickle.global"));
  // The same without code: malformed.
  ZipLayout layout;
  const std::string inner = BuildZip({{"w.npy", ReadFile(Fixture("numpy/f32.npy"))}});
  layout.comment = inner + "xy";
  InProcessResult clean =
      ParseInProcess(BuildZip({{"v.npy", ReadFile(Fixture("numpy/i8.npy"))}}, layout));
  EXPECT_EQ(clean.status.code(), StatusCode::kMalformed) << clean.status.ToString();
  EXPECT_NE(clean.status.message().find("Python's zipfile"), std::string::npos);
}

TEST(Polyglot, LegacyTarWithALinkIsRefused) {
  InProcessResult r = ParseFixture("legacy_tar_symlink.tar");
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(RefusedRules(r), "tar.link"));
}

TEST(Polyglot, ZipAfterOtherBytesIsNotConverted) {
  // Python's zipfile reads a zip after any prefix; torch and safemodel do not.
  std::string zip = BuildZip({{"w.npy", ReadFile(Fixture("numpy/f32.npy"))}});
  InProcessResult junk = ParseInProcess(std::string(1, '\x01') + "junk" + zip);
  EXPECT_EQ(junk.status.code(), StatusCode::kUnsupported) << junk.status.ToString();
  // After a pickle that swallows it: two readings.
  std::string pkl = "\x80\x02" "B";
  const uint32_t n = static_cast<uint32_t>(zip.size());
  for (int i = 0; i < 4; ++i) pkl.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  InProcessResult both = ParseInProcess(pkl + zip + ".");
  EXPECT_EQ(both.status.code(), StatusCode::kMalformed) << both.status.ToString();
  EXPECT_TRUE(HasNote(both, "format.polyglot"));
}

TEST(Polyglot, PickleReadingWhateverTheFirstOpcode) {
  // pickle.load has no magic: SHORT_BINBYTES first, then a call.
  const std::string odd = std::string("C\x00", 2) + "cos\nsystem\n)R0N.";
  InProcessResult alone = ParseInProcess(odd);
  EXPECT_EQ(alone.status.code(), StatusCode::kRefused) << alone.status.ToString();
  EXPECT_TRUE(Has(RefusedRules(alone), "pickle.global"));
  // In front of an HDF5 file (a user block): two readings, one with code.
  std::string block = odd + std::string(512 - odd.size(), '\0');
  InProcessResult both =
      ParseInProcess(block + ReadFile(Fixture("keras_h5/keras3_weights.h5")));
  EXPECT_EQ(both.status.code(), StatusCode::kRefused) << both.status.ToString();
  EXPECT_TRUE(Has(RefusedRules(both), "format.polyglot"));
  // A PNG starts with NEWFALSE and a persistent id, where pickle.load stops.
  InProcessResult png = ParseInProcess(std::string("\x89PNG\r\n\x1a\n", 8) + "IHDR");
  EXPECT_EQ(png.status.code(), StatusCode::kUnsupported) << png.status.ToString();
}

}  // namespace
}  // namespace safemodel::testing
