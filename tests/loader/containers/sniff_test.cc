// Compressed containers (loader/containers/sniff.h): gzip, zlib, bzip2, xz, lzma and
// zstd around a torch zip or around random bytes are "unsupported" (exit 3)
// naming the compressor, never a pickle that refers to code (exit 1);
// joblib's own gzip and zlib pickles are still read, and code inside one is
// still refused. The inputs are made by the real tools (python3's gzip,
// zlib, bz2 and lzma modules, torch.save, joblib.dump, the zstd CLI).
#include "loader/containers/sniff.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

// Writes DIR/<kind>.<payload> for every compressor, for a torch zip and for
// random bytes; DIR/joblib.<kind> for joblib.dump's compressors; and
// DIR/evil.gz, a gzip-compressed pickle that calls posix.system. Then checks
// that joblib.load, torch.load and pickle.load all fail on the compressed
// torch zip without running anything (a canary file stays absent).
constexpr char kMakeInputs[] = R"PY(
import bz2, gzip, io, lzma, os, pickle, random, sys, zlib
import joblib, numpy, torch
d = sys.argv[1]
buf = io.BytesIO()
torch.save({"w": torch.arange(6, dtype=torch.float32)}, buf)
payloads = {"torchzip": buf.getvalue(),
            "random": bytes(random.Random(7).randrange(256) for _ in range(4096))}
comp = {"gzip": gzip.compress, "zlib": zlib.compress, "bzip2": bz2.compress,
        "xz": lambda b: lzma.compress(b, format=lzma.FORMAT_XZ),
        "lzma": lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE)}
for name, payload in payloads.items():
    for kind, f in comp.items():
        open(os.path.join(d, kind + "." + name), "wb").write(f(payload))
    open(os.path.join(d, "raw." + name), "wb").write(payload)
for kind in ["gzip", "zlib", "bz2", "xz", "lzma"]:
    joblib.dump({"a": numpy.arange(4, dtype=numpy.float32)}, os.path.join(d, "joblib." + kind),
                compress=(kind, 3))
canary = os.path.join(d, "canary")
evil = b"cposix\nsystem\n(S'touch " + canary.encode() + b"'\ntR."
open(os.path.join(d, "evil.gz"), "wb").write(gzip.compress(evil))
path = os.path.join(d, "gzip.torchzip")
for load in (joblib.load, torch.load, lambda p: pickle.load(open(p, "rb"))):
    try:
        load(path)
        sys.exit("a loader read the gzip-compressed torch zip")
    except Exception:
        pass
sys.exit(1 if os.path.exists(canary) else 0)
)PY";

class CompressedContainers : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!PythonHas({"torch", "numpy", "joblib"})) return;
    dir_ = new TempDir;
    WriteFile(dir_->File("make.py"), kMakeInputs);
    std::string out;
    ASSERT_EQ(RunPython(dir_->File("make.py"), {dir_->path()}, &out), 0) << out;
    if (access("/usr/bin/zstd", X_OK) == 0) {
      for (const char* p : {"torchzip", "random"}) {
        ASSERT_EQ(RunCommand("/usr/bin/zstd -q -f -o " + dir_->File(std::string("zstd.") + p) + " " +
                                 dir_->File(std::string("raw.") + p)),
                  0);
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    if (dir_ == nullptr) GTEST_SKIP() << "needs /usr/bin/python3 with torch, numpy and joblib";
  }
  static InProcessResult ParseFile(const std::string& name) {
    return ParseInProcess(ReadFile(dir_->File(name)));
  }
  static TempDir* dir_;
};
TempDir* CompressedContainers::dir_ = nullptr;

TEST_F(CompressedContainers, AroundATorchZipOrRandomBytesAreUnsupported) {
  std::vector<std::string> kinds = {"gzip", "zlib", "bzip2", "xz", "lzma"};
  if (Exists(dir_->File("zstd.torchzip"))) kinds.push_back("zstd");
  for (const std::string& kind : kinds) {
    for (const std::string payload : {"torchzip", "random"}) {
      SCOPED_TRACE(kind + "." + payload);
      InProcessResult r = ParseFile(kind + "." + payload);
      EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
      EXPECT_EQ(r.status.message().rfind(kind, 0), 0u) << r.status.ToString();
      EXPECT_EQ(r.source_format, kind);
      EXPECT_TRUE(Rules(r.findings, Finding::Severity::kRefused).empty());
      if (payload == "torchzip" && (kind == "gzip" || kind == "zlib")) {
        EXPECT_NE(r.status.message().find("compressed zip archive"), std::string::npos)
            << r.status.ToString();
      }
    }
  }
}

TEST_F(CompressedContainers, JoblibsOwnGzipAndZlibPicklesAreStillRead) {
  for (const std::string kind : {"gzip", "zlib"}) {
    SCOPED_TRACE(kind);
    InProcessResult r = ParseFile("joblib." + kind);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.source_format, "joblib");
    EXPECT_EQ(r.tensors.size(), 1u);
  }
  // joblib.load also decompresses these; safemodel does not read them, and
  // says which compressor it saw.
  for (const auto& [file, kind] : std::vector<std::pair<std::string, std::string>>{
           {"joblib.bz2", "bzip2"}, {"joblib.xz", "xz"}, {"joblib.lzma", "lzma"}}) {
    SCOPED_TRACE(file);
    InProcessResult r = ParseFile(file);
    EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
    EXPECT_EQ(r.source_format, kind);
  }
}

TEST_F(CompressedContainers, CodeInACompressedJoblibIsStillRefused) {
  InProcessResult r = ParseFile("evil.gz");
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_EQ(Rules(r.findings, Finding::Severity::kRefused),
            std::vector<std::string>{"pickle.global"});
}

TEST(Sniff, MagicNumbers) {
  auto name = [](const std::string& s) { return std::string(loader::CompressorName(AsBytes(s))); };
  EXPECT_EQ(name("\x1f\x8b\x08"), "gzip");
  EXPECT_EQ(name("\x78\x9c"), "zlib");
  EXPECT_EQ(name("x?"), "") << "only zlib's own header check passes";
  EXPECT_EQ(name("BZh9"), "bzip2");
  EXPECT_EQ(name(std::string("\xfd" "7zXZ\0", 6)), "xz");
  EXPECT_EQ(name("\x28\xb5\x2f\xfd"), "zstd");
  EXPECT_EQ(name(std::string("\x5d\0\0", 3)), "lzma");
  EXPECT_EQ(name("(lp0\n"), "");
  auto inner = [](const std::string& s) { return std::string(loader::PayloadContainerName(AsBytes(s))); };
  EXPECT_EQ(inner("PK\x03\x04"), "zip archive");
  EXPECT_EQ(inner("\x93NUMPY"), ".npy array");
  EXPECT_EQ(inner("\x80\x04"), "");
}

// zstd's magic starts with '(' (MARK) and lzma's with ']' (EMPTY_LIST):
// before this, they were taken for protocol 0 pickles.
TEST(Sniff, ZstdAndLzmaAreNotTakenForPickles) {
  InProcessResult z = ParseInProcess(std::string("\x28\xb5\x2f\xfd\x24\x04\x21\x00\x00", 9));
  EXPECT_EQ(z.status.code(), StatusCode::kUnsupported) << z.status.ToString();
  EXPECT_EQ(z.source_format, "zstd");
  InProcessResult l = ParseInProcess(std::string("\x5d\x00\x00\x80\x00\xff\xff\xff\xff", 9));
  EXPECT_EQ(l.status.code(), StatusCode::kUnsupported) << l.status.ToString();
  EXPECT_EQ(l.source_format, "lzma");
}

}  // namespace
}  // namespace safemodel::testing
