// Every file of the shared pickle corpus (copied to tests/fixtures/pickle/
// corpus/, outcomes in corpus.tsv) gets its verdict through the real
// sandboxed pipeline: malicious files are refused with exit 1 and the report
// names the dangerous callable; benign model files convert; everything else
// fails cleanly; the worker never crashes and nothing is left behind on
// failure. The same files also go through the parser in-process (where a
// sanitizer build sees every byte the machine touches).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/loader/pickle/mutate.h"
#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

#include "safemodel/reader.h"

namespace safemodel::testing {
namespace {

struct CorpusCase {
  std::string file;     // relative to tests/fixtures/pickle/corpus/
  std::string verdict;  // as the shared manifest labels it
  int exit_code = 0;
  std::vector<std::string> must_name;  // references or rules of the refusal
  std::string note;
};

void PrintTo(const CorpusCase& c, std::ostream* os) { *os << c.file; }

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

std::vector<CorpusCase> LoadCorpus() {
  std::vector<CorpusCase> cases;
  std::ifstream in(Fixture("pickle/corpus.tsv"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = Split(line, '\t');
    if (f.size() < 4) continue;
    CorpusCase c;
    c.file = f[0];
    c.verdict = f[1];
    c.exit_code = std::stoi(f[2]);
    for (const std::string& n : Split(f[3], ',')) {
      if (!n.empty()) c.must_name.push_back(n);
    }
    if (f.size() > 4) c.note = f[4];
    cases.push_back(std::move(c));
  }
  return cases;
}

std::string TestName(const ::testing::TestParamInfo<CorpusCase>& p) {
  std::string name = p.param.file;
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

bool Named(const ConvertReport& r, const std::string& what) {
  for (const Finding& f : r.findings) {
    if (f.severity != Finding::Severity::kRefused) continue;
    if (f.rule == what) return true;
    for (const std::string& ref : f.references) {
      if (ref == what) return true;
    }
  }
  return false;
}

class PickleCorpus : public ::testing::TestWithParam<CorpusCase> {};

TEST_P(PickleCorpus, GetsItsVerdictThroughTheSandbox) {
  const CorpusCase& c = GetParam();
  TempDir dir;
  const std::string out = dir.File("out.safemodel");
  ConvertReport r = Convert(Fixture("pickle/corpus/" + c.file), out);
  const int exit_code = ExitCodeFor(r.status.code());
  EXPECT_NE(r.status.code(), StatusCode::kWorkerCrashed) << r.status.ToString();
  EXPECT_NE(r.status.code(), StatusCode::kSandboxViolation) << r.status.ToString();
  EXPECT_NE(r.status.code(), StatusCode::kInternal) << r.status.ToString();
  ASSERT_EQ(exit_code, c.exit_code) << c.verdict << " " << c.note << ": " << r.status.ToString();
  for (const std::string& name : c.must_name) {
    EXPECT_TRUE(Named(r, name)) << "the refusal does not name " << name << ": "
                                << r.status.ToString();
  }
  if (exit_code == 1) {
    // Every refusal says where: a byte offset (pickle findings) or a member.
    for (const Finding& f : r.findings) {
      if (f.severity == Finding::Severity::kRefused) {
        EXPECT_FALSE(f.location.empty()) << f.rule;
      }
    }
  }
  if (exit_code == 0) {
    auto model = Model::Open(out);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    EXPECT_TRUE(model->Verify().ok());
  } else {
    EXPECT_TRUE(dir.List().empty()) << "a failed conversion must leave nothing behind";
  }
}

TEST_P(PickleCorpus, ParsesInProcessWithTheSameVerdict) {
  const CorpusCase& c = GetParam();
  InProcessResult r = ParseInProcess(ReadFile(Fixture("pickle/corpus/" + c.file)));
  EXPECT_EQ(ExitCodeFor(r.status.code()), c.exit_code) << r.status.ToString();
  EXPECT_NE(r.status.code(), StatusCode::kInternal) << r.status.ToString();
}

// Deterministic mutations of every corpus file (bit flips, truncations,
// length fields set to extremes, duplicated spans): the machine must end in a
// verdict, never in an internal error (and, in sanitizer builds, never touch
// a byte it should not).
TEST_P(PickleCorpus, MutationsNeverBreakTheParser) {
  const std::string original = ReadFile(Fixture("pickle/corpus/" + GetParam().file));
  if (original.size() > (256u << 10)) GTEST_SKIP() << "large file: mutations would be slow";
  if (original.rfind("\x89HDF", 0) == 0) GTEST_SKIP() << "HDF5 is loader/keras_h5's (tested there)";
  ExpectMutationsNeverBreakTheParser(original);
}

INSTANTIATE_TEST_SUITE_P(Corpus, PickleCorpus, ::testing::ValuesIn(LoadCorpus()), TestName);

// The headline numbers of issue 4, from one pass over the corpus: how many
// files of each manifest verdict ended with each exit code.
TEST(PickleCorpusSummary, CountsVerdictsByExitCode) {
  std::vector<CorpusCase> cases = LoadCorpus();
  ASSERT_EQ(cases.size(), 183u);
  std::map<std::string, std::map<int, int>> counts;
  for (const CorpusCase& c : cases) {
    TempDir dir;
    ConvertReport r = Convert(Fixture("pickle/corpus/" + c.file), dir.File("out.safemodel"));
    std::string group = c.verdict;
    if (group.rfind("benign(inert", 0) == 0) group = "benign(inert data)";
    if (group.rfind("malformed", 0) == 0) group = "malformed";
    ++counts[group][ExitCodeFor(r.status.code())];
  }
  std::string summary;
  for (const auto& [group, by_exit] : counts) {
    summary += group + ":";
    for (const auto& [code, n] : by_exit)
      summary += " exit " + std::to_string(code) + " x" + std::to_string(n);
    summary += "; ";
  }
  RecordProperty("summary", summary);
  std::cout << "[ corpus ] " << summary << "\n";
  EXPECT_EQ(counts["malicious"][1], 121) << summary;
  EXPECT_EQ(counts["benign"][0], 41) << summary;  // every benign model file
  EXPECT_EQ(counts["benign"][3], 6) << summary;   // inputs that are not models
  EXPECT_EQ(counts["benign"][1], 1) << summary;   // TorchScript is code
  EXPECT_EQ(counts["benign(inert data)"][0], 6) << summary;
  EXPECT_EQ(counts["benign(tampered)"][3], 4) << summary;
  EXPECT_EQ(counts["benign(corrupted)"][3], 1) << summary;
  EXPECT_EQ(counts["malformed"][3] + counts["malformed"][1], 3) << summary;
  for (const auto& [group, by_exit] : counts) EXPECT_EQ(by_exit.count(5), 0u) << group;
}

}  // namespace
}  // namespace safemodel::testing
