// Every row of tests/fixtures/keras3_tf/MANIFEST.tsv through the parsers of
// issue 11, in process (no sandbox): the exit code and rule of the row, and
// for convertible rows every tensor bit-exact against expected_tensors.json
// (an independent reading: h5py, numpy, a separate bundle reader) with its
// layer assignment. Multi-file inputs are put together by the rule of
// loader/files/model_files.h from a listing of the fixture directory, as the
// parent will, and parsed with loader::ParseModelFiles.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "loader/files/model_files.h"
#include "loader/parser.h"
#include "tests/loader/keras3/manifest.h"
#include "tests/testing/loader_util.h"

namespace safemodel::testing::keras3 {
namespace {

namespace fs = std::filesystem;

loader::ListedEntry::Type TypeOf(const fs::directory_entry& e) {
  const fs::file_status s = e.symlink_status();
  if (fs::is_symlink(s)) return loader::ListedEntry::Type::kSymlink;
  if (fs::is_directory(s)) return loader::ListedEntry::Type::kDirectory;
  if (fs::is_regular_file(s)) return loader::ListedEntry::Type::kRegular;
  return loader::ListedEntry::Type::kOther;
}

// The files of a plan, read into `storage` (which must outlive the result).
loader::InputFiles Gather(const loader::FilePlan& plan, const std::string& dir,
                          std::vector<std::string>* storage) {
  loader::InputFiles input;
  input.kind = plan.kind;
  input.listed = plan.listed;
  storage->reserve(plan.open.size());
  for (const loader::PlannedFile& f : plan.open) {
    storage->push_back(ReadFile(dir + "/" + f.name));
    input.files.push_back({f.role, f.name, AsBytes(storage->back())});
  }
  return input;
}

Outcome FromResult(InProcessResult r) {
  Outcome o;
  o.status = r.status;
  o.findings = std::move(r.findings);
  o.architecture = std::move(r.architecture);
  for (auto& [name, t] : r.tensors) {
    o.tensors[name] = {std::string(DTypeName(t.dtype)), t.shape, ToHex(Sha256(AsBytes(t.bytes)))};
  }
  return o;
}

Outcome Parse(const Row& row) {
  loader::ParseOptions options;
  options.weights_only = row.weights_only();
  const std::string path = Fixture("keras3_tf/" + row["file"]);
  if (row.xz()) return FromResult(ParseInProcess(XzDecode(path), options));
  std::vector<std::string> storage;
  if (row.directory()) {
    std::vector<loader::ListedEntry> listing;
    for (const auto& e : fs::recursive_directory_iterator(path)) {
      listing.push_back({e.path().lexically_relative(path).generic_string(), TypeOf(e)});
    }
    Result<loader::FilePlan> plan = loader::PlanDirectory(listing);
    if (!plan.ok()) return Outcome{plan.status(), {}, {}, {}};
    return FromResult(ParseFilesInProcess(Gather(*plan, path, &storage), options));
  }
  const fs::path p(path);
  std::vector<loader::ListedEntry> siblings;
  for (const auto& e : fs::directory_iterator(p.parent_path())) {
    siblings.push_back({e.path().filename().string(), TypeOf(e)});
  }
  Result<std::optional<loader::FilePlan>> plan = loader::PlanFile(p.filename().string(), siblings);
  if (!plan.ok()) return Outcome{plan.status(), {}, {}, {}};
  if (plan->has_value()) {
    return FromResult(ParseFilesInProcess(Gather(**plan, p.parent_path().string(), &storage), options));
  }
  return FromResult(ParseInProcess(ReadFile(path), options));
}

TEST(Keras3Manifest, EveryRowGivesItsExitCodeRuleTensorsAndLayers) {
  std::map<std::string, std::pair<int, int>> per_layout;  // layout -> (passing, total)
  int failures = 0;
  for (const Row& row : Manifest()) {
    SCOPED_TRACE(row.key());
    const std::vector<std::string> problems = Check(row, Parse(row));
    auto& [pass, total] = per_layout[row["layout"]];
    ++total;
    if (problems.empty()) {
      ++pass;
      continue;
    }
    ++failures;
    for (const std::string& p : problems) ADD_FAILURE() << row.key() << ": " << p;
  }
  std::cout << "manifest rows passing per layout (in process):\n";
  for (const auto& [layout, counts] : per_layout) {
    std::cout << "  " << layout << ": " << counts.first << " / " << counts.second << "\n";
  }
  EXPECT_EQ(failures, 0);
}

}  // namespace
}  // namespace safemodel::testing::keras3
