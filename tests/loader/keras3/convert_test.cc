// Every row of tests/fixtures/keras3_tf/MANIFEST.tsv (.keras archives,
// standalone *.weights.h5, sharded *.weights.json, TF checkpoints given as
// their directory, .index or prefix, SavedModel directories, the real corpus
// files) converted end to end by the `safe-convert` binary: the parent
// listing and opening the files of a multi-file model, sandboxed worker,
// parent re-validation, the .safemodel written and read back. The exit code
// and the report's rule are the row's; convertible rows have every tensor
// bit-exact against expected_tensors.json and the layer assignment checked
// in the written architecture; convertible multi-file rows convert to the
// same bytes twice.
#include <gtest/gtest.h>

#include <iostream>

#include "safemodel/reader.h"
#include "tests/loader/keras3/manifest.h"

namespace safemodel::testing::keras3 {
namespace {

bool MultiFile(const Row& row) {
  const std::string& f = row["file"];
  auto ends = [&](std::string_view s) { return f.size() >= s.size() && f.substr(f.size() - s.size()) == s; };
  return row.directory() || ends(".index") || ends(".json");
}


Outcome ConvertWithCli(const Row& row, const TempDir& dir, const std::string& out_name = "out.safemodel") {
  std::string input = Fixture("keras3_tf/" + row["file"]);
  if (row.xz()) {
    const std::string plain = XzDecode(input);
    input = dir.File("input.keras");
    WriteFile(input, plain);
  }
  const std::string out = dir.File(out_name), report = dir.File("report.json");
  std::string command = BinDir() + "/safe-convert '" + input + "' '" + out + "' --no-sync --report '" +
                        report + "'" + (row.weights_only() ? " --weights-only" : "");
  std::string output;
  const int code = RunCommand(command + " >/dev/null 2>&1", &output);
  Outcome o;
  const auto r = nlohmann::json::parse(ReadFile(report));
  // The report's status name and message; the exit code is the process's.
  const std::string status = r.value("status", "");
  const std::string message = r.value("message", "");
  switch (code) {
    case 0: o.status = Status::Ok(); break;
    case 1: o.status = Status::Refused(message); break;
    case 2: o.status = Status::InvalidArgument(message); break;
    case 3: o.status = status == "unsupported" ? Status::Unsupported(message) : Status::Malformed(message); break;
    default: o.status = Status::Internal("exit " + std::to_string(code) + ": " + message); break;
  }
  for (const auto& f : r.value("findings", nlohmann::json::array())) {
    const std::string sev = f.value("severity", "");
    o.findings.push_back({sev == "refused"   ? Finding::Severity::kRefused
                          : sev == "dropped" ? Finding::Severity::kDropped
                                             : Finding::Severity::kNote,
                          f.value("rule", ""), f.value("location", ""), f.value("message", ""), {}});
  }
  if (code != 0) return o;
  auto model = Model::Open(out);
  if (!model.ok()) {
    o.status = model.status();
    return o;
  }
  if (Status v = model->Verify(); !v.ok()) {
    o.status = v;
    return o;
  }
  for (const TensorInfo& t : model->tensors()) {
    auto data = model->Data(t);
    o.tensors[t.name] = {std::string(DTypeName(t.dtype)), t.shape,
                         ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(data.data()), data.size())))};
  }
  o.architecture = model->architecture();
  return o;
}

TEST(Keras3Convert, EveryRowConvertsEndToEndWithTheCli) {
  std::map<std::string, std::array<int, 3>> per_layout;  // passing, total, multi-file
  int failures = 0;
  int reconverted = 0, convertible_multi_file = 0;
  for (const Row& row : Manifest()) {
    auto& counts = per_layout[row["layout"]];
    SCOPED_TRACE(row.key());
    TempDir dir;
    std::vector<std::string> problems = Check(row, ConvertWithCli(row, dir));
    ++counts[1];
    if (MultiFile(row)) {
      ++counts[2];
      if (row.exit_code() == 0) ++convertible_multi_file;
      if (problems.empty() && row.exit_code() == 0) {
        ConvertWithCli(row, dir, "again.safemodel");
        ++reconverted;
        if (ReadFile(dir.File("out.safemodel")) != ReadFile(dir.File("again.safemodel"))) {
          problems.push_back("a second conversion gave different bytes");
        }
      }
    }
    if (problems.empty()) {
      ++counts[0];
      continue;
    }
    ++failures;
    for (const std::string& p : problems) ADD_FAILURE() << row.key() << ": " << p;
  }
  std::cout << "manifest rows passing per layout (safe-convert):\n";
  for (const auto& [layout, c] : per_layout) {
    std::cout << "  " << layout << ": " << c[0] << " / " << c[1]
              << (c[2] ? " (" + std::to_string(c[2]) + " made of several files)" : std::string()) << "\n";
  }
  std::cout << reconverted << " multi-file rows converted twice to the same bytes\n";
  EXPECT_EQ(failures, 0);
  EXPECT_GT(convertible_multi_file, 10);
  EXPECT_EQ(reconverted, convertible_multi_file);
}

TEST(Keras3Convert, TheSameArchiveConvertsToTheSameBytes) {
  TempDir dir;
  const std::string in = Fixture("keras3_tf/keras3/k3_nested.keras");
  for (const char* name : {"a.safemodel", "b.safemodel"}) {
    ASSERT_EQ(RunCommand(BinDir() + "/safe-convert '" + in + "' '" + dir.File(name) + "' --no-sync >/dev/null 2>&1"), 0);
  }
  EXPECT_EQ(ReadFile(dir.File("a.safemodel")), ReadFile(dir.File("b.safemodel")));
}

}  // namespace
}  // namespace safemodel::testing::keras3
