// The facts every report carries (issue 14, item 1): the input's SHA-256,
// size and detected format whatever the outcome; findings worst first with
// the headline naming the worst; one stderr form naming the input; counts
// and numbers written for a person.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <string>
#include <vector>

#include "tests/converter/cli/cli_util.h"

namespace safemodel::testing {
namespace {

nlohmann::json JsonReport(const std::string& in, const std::string& out, const std::string& extra,
                          int expected_exit) {
  std::string text;
  EXPECT_EQ(SafeConvert("'" + in + "' '" + out + "' --no-sync --json " + extra, &text, false),
            expected_exit)
      << text;
  return nlohmann::json::parse(text);
}

void ExpectFacts(const nlohmann::json& j, const std::string& in, const std::string& format) {
  EXPECT_EQ(j["schema_version"], 1);
  EXPECT_EQ(j["input"]["sha256"], Sha256Sum(in)) << j.dump();
  EXPECT_EQ(j["input"]["bytes"], ReadFile(in).size());
  EXPECT_EQ(j["input"]["format"], format) << j.dump();
}

TEST(CliReport, FactsWhateverTheOutcome) {
  TempDir dir;
  const std::string out = dir.File("o.safemodel");
  // Converted, refused, malformed.
  ExpectFacts(JsonReport(Fixture("numpy/f32.npy"), out, "", 0), Fixture("numpy/f32.npy"), "npy");
  ExpectFacts(JsonReport(Fixture("numpy/object_malicious.npy"), dir.File("a"), "", 1),
              Fixture("numpy/object_malicious.npy"), "npy");
  ExpectFacts(JsonReport(Fixture("numpy/truncated.npy"), dir.File("b"), "", 3),
              Fixture("numpy/truncated.npy"), "npy");
  // A limit checked before any worker ran: hashed by the parent, format unknown.
  ExpectFacts(JsonReport(Fixture("numpy/f32.npy"), dir.File("c"), "--max-input-size 10", 4),
              Fixture("numpy/f32.npy"), "unknown");
  // An unrecognised input and an empty one.
  WriteFile(dir.File("junk"), std::string(64, '\x01'));
  ExpectFacts(JsonReport(dir.File("junk"), dir.File("d"), "", 3), dir.File("junk"), "unknown");
  WriteFile(dir.File("empty"), "");
  ExpectFacts(JsonReport(dir.File("empty"), dir.File("e"), "", 3), dir.File("empty"), "unknown");
  // The worker crashed: nobody detected anything, the digest is still there.
  WriteFile(dir.File("crash"), "probe:segv\n");
  ExpectFacts(JsonReport(dir.File("crash"), dir.File("f"), "--worker " + BinDir() + "/sandbox-probe", 5),
              dir.File("crash"), "unknown");
  EXPECT_TRUE(dir.List() == (std::vector<std::string>{"crash", "empty", "junk", "o.safemodel"}));
}

// GLOBAL torch.FloatTensor first, then posix.system called on "echo": the
// call into os is the worst, whatever its offset.
const char kTorchNameThenSystem[] =
    "\x80\x02" "ctorch\nFloatTensor\nq\x00" "cposix\nsystem\nq\x01" "X\x04\x00\x00\x00" "echo"
    "q\x02\x85q\x03Rq\x04\x86q\x05.";

TEST(CliReport, FindingsWorstFirstAndTheHeadlineNamesTheWorst) {
  TempDir dir;
  WriteFile(dir.File("m.pkl"), std::string(kTorchNameThenSystem, sizeof kTorchNameThenSystem - 1));
  nlohmann::json j = JsonReport(dir.File("m.pkl"), dir.File("o"), "", 1);
  ASSERT_EQ(j["findings"].size(), 2u) << j.dump();
  EXPECT_EQ(j["findings"][0]["references"], nlohmann::json::array({"posix.system"}));
  EXPECT_EQ(j["findings"][1]["references"], nlohmann::json::array({"torch.FloatTensor"}));
  const std::string message = j["message"];
  EXPECT_EQ(message.rfind("posix.system at byte 23: ", 0), 0u) << message;
  EXPECT_NE(message.find("[pickle.global at pickle byte 23] and 1 more refusal"), std::string::npos)
      << message;
  // The same order on stderr, then the headline.
  std::string text;
  EXPECT_EQ(SafeConvert(dir.File("m.pkl") + " " + dir.File("o"), &text), 1);
  const size_t system_line = text.find("refers to posix.system)");
  const size_t torch_line = text.find("refers to torch.FloatTensor)");
  ASSERT_NE(system_line, std::string::npos) << text;
  ASSERT_NE(torch_line, std::string::npos) << text;
  EXPECT_LT(system_line, torch_line) << text;
}

// Severity first (refused, dropped, note), stable within one: a note the
// limits add before the worker runs comes after the refusal.
TEST(CliReport, RefusalsComeBeforeNotes) {
  TempDir dir;
  nlohmann::json j = JsonReport(Fixture("numpy/object_malicious.npy"), dir.File("o"), "", 1);
  int last = -1;
  for (const auto& f : j["findings"]) {
    const std::string s = f["severity"];
    const int rank = s == "refused" ? 0 : s == "dropped" ? 1 : 2;
    EXPECT_LE(last, rank) << j["findings"].dump();
    last = rank;
  }
  EXPECT_EQ(j["findings"][0]["severity"], "refused");
}

TEST(CliReport, EveryStderrLineNamesTheInputInOneForm) {
  TempDir dir;
  const std::string in = Fixture("numpy/object_malicious.npy");
  std::vector<std::pair<std::string, int>> runs = {
      {"'" + in + "' " + dir.File("o"), 1},
      {"'" + Fixture("numpy/truncated.npy") + "' " + dir.File("o"), 3},
      {"'" + Fixture("numpy/f32.npy") + "' " + dir.File("o") + " --max-input-size 10", 4},
      {"'" + Fixture("numpy/f32.npy") + "' " + dir.File("o") + " --require-isolation landlock", 2},
      {"verify '" + Fixture("numpy/f32.npy") + "'", 3},
      {"inspect '" + Fixture("numpy/f32.npy") + "'", 3},
  };
  const std::regex form("safe-convert: [^:]+: [^\\n]+");
  for (const auto& [args, code] : runs) {
    std::string text;
    EXPECT_EQ(SafeConvert(args, &text), code) << args << "\n" << text;
    std::string::size_type start = 0;
    while (start < text.size()) {
      const std::string line = text.substr(start, text.find('\n', start) - start);
      start += line.size() + 1;
      EXPECT_TRUE(std::regex_match(line, form)) << line;
      EXPECT_NE(line.find(".npy: "), std::string::npos) << line;
      for (const char* internal : {"invalid_argument", "sandbox_setup_failed", "limit_exceeded",
                                   "io_error", "malformed:", "unsupported:"}) {
        EXPECT_EQ(line.find(internal), std::string::npos) << line;
      }
    }
  }
}

TEST(CliReport, CountsAreSingularOrPlural) {
  TempDir dir;
  std::string text;
  ASSERT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("o") + " --no-sync", &text), 0) << text;
  EXPECT_NE(text.find(": 1 tensor, "), std::string::npos) << text;
  ASSERT_EQ(SafeConvert("verify " + dir.File("o"), &text), 0) << text;
  EXPECT_NE(text.find("OK (1 tensor, "), std::string::npos) << text;
  ASSERT_EQ(SafeConvert(Fixture("numpy/stored.npz") + " " + dir.File("p") + " --no-sync", &text), 0);
  EXPECT_NE(text.find(" tensors, "), std::string::npos) << text;
}

// Sniffing through the whole pipeline: a gzip-compressed torch checkpoint is
// an unsupported container (exit 3) named as such, not "code found".
TEST(CliReport, GzipCompressedTorchZipIsUnsupported) {
  if (!PythonHas({"torch"})) GTEST_SKIP() << "needs /usr/bin/python3 with torch";
  TempDir dir;
  WriteFile(dir.File("make.py"),
            "import gzip, io, sys, torch\n"
            "b = io.BytesIO(); torch.save({'w': torch.ones(3)}, b)\n"
            "open(sys.argv[1], 'wb').write(gzip.compress(b.getvalue()))\n");
  ASSERT_EQ(RunPython(dir.File("make.py"), {dir.File("m.pt.gz")}), 0);
  nlohmann::json j = JsonReport(dir.File("m.pt.gz"), dir.File("o"), "", 3);
  ExpectFacts(j, dir.File("m.pt.gz"), "gzip");
  EXPECT_EQ(j["status"], "unsupported");
  EXPECT_NE(std::string(j["message"]).find("gzip-compressed zip archive"), std::string::npos) << j.dump();
  std::string text;
  EXPECT_EQ(SafeConvert(dir.File("m.pt.gz") + " " + dir.File("o"), &text), 3);
  EXPECT_NE(text.find("m.pt.gz: unsupported input: gzip-compressed zip archive"), std::string::npos) << text;
}

}  // namespace
}  // namespace safemodel::testing
