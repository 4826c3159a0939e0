// Second readings (loader/polyglot.h): libhdf5's superblock search and the
// registry's polyglot rule on the issue-8 fixtures (tests/fixtures/polyglot, written by
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
