// Models made of several files through ConvertFile (converter/input_set.h):
// the parent lists and opens them and passes descriptors to the real
// sandboxed worker. The digest that names the input, and every refusal that
// must come before anything is opened: a link or a special file anywhere, an
// unknown name, too many files, too many bytes, OUT among the files.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "converter/input_set.h"
#include "converter/protocol/worker.pb.h"
#include "proto/digest.h"
#include "safemodel/convert.h"
#include "safemodel/reader.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

namespace fs = std::filesystem;

std::string Hex(const std::string& bytes) { return ToHex(Sha256(AsBytes(bytes))); }

// A copy of a fixture directory of tests/fixtures/keras3_tf/tf under `dir`.
std::string CopyModel(const TempDir& dir, const std::string& fixture, const std::string& name) {
  const std::string to = dir.File(name);
  fs::copy(Fixture("keras3_tf/tf/" + fixture), to, fs::copy_options::recursive);
  return to;
}

void ExpectRefusedBeforeWork(const ConvertReport& r, int exit_code, const std::string& words,
                             const std::string& out) {
  EXPECT_EQ(ExitCodeFor(r.status.code()), exit_code) << r.status.ToString();
  EXPECT_NE(r.status.message().find(words), std::string::npos) << r.status.ToString();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kNotStarted) << r.status.ToString();
  EXPECT_FALSE(Exists(out));
}

TEST(InputSet, ASavedModelDirectoryConvertsAndIsNamedByItsFilesDigests) {
  TempDir dir;
  const std::string model = CopyModel(dir, "sm_keras_metadata", "model");
  ConvertReport r = Convert(model + "/", dir.File("m.safemodel"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "tf_savedmodel");
  // What `cd model && sha256sum <files> | sha256sum` prints.
  const std::vector<std::string> files = {"keras_metadata.pb", "saved_model.pb",
                                          "variables/variables.data-00000-of-00001",
                                          "variables/variables.index"};
  std::string listing;
  uint64_t bytes = 0;
  for (const std::string& f : files) {
    const std::string content = ReadFile(model + "/" + f);
    listing += Hex(content) + "  " + f + "\n";
    bytes += content.size();
  }
  EXPECT_EQ(r.input_sha256, Hex(listing));
  EXPECT_EQ(r.input_bytes, bytes);
  // The report and the output name what was read.
  auto note = std::find_if(r.findings.begin(), r.findings.end(),
                           [](const Finding& f) { return f.rule == "input.files"; });
  ASSERT_NE(note, r.findings.end());
  EXPECT_NE(note->message.find("a SavedModel of 4 files"), std::string::npos) << note->message;
  EXPECT_NE(note->message.find("variables/variables.index ("), std::string::npos) << note->message;
  auto m = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->provenance().input_sha256, r.input_sha256);
  // A file beside the model that is not read does not change the digest.
  WriteFile(model + "/fingerprint.pb", "other");
  ConvertReport again = Convert(model, dir.File("m2.safemodel"));
  ASSERT_TRUE(again.status.ok()) << again.status.ToString();
  EXPECT_EQ(again.input_sha256, r.input_sha256);
  EXPECT_EQ(ReadFile(dir.File("m.safemodel")), ReadFile(dir.File("m2.safemodel")));
}

// The facts of every report (issue 14) hold for a multi-file input that
// fails as well: its files' digest and the format its file names gave.
TEST(InputSet, AFailedMultiFileInputIsStillNamedByItsDigestAndFormat) {
  TempDir dir;
  auto listing_of = [](const std::string& model, const std::vector<std::string>& files) {
    std::string listing;
    for (const std::string& f : files) listing += Hex(ReadFile(model + "/" + f)) + "  " + f + "\n";
    return Hex(listing);
  };
  const std::string ckpt = CopyModel(dir, "ckpt_bad_magic", "ckpt");
  ConvertReport bad = Convert(ckpt, dir.File("c.safemodel"));
  EXPECT_EQ(ExitCodeFor(bad.status.code()), 3) << bad.status.ToString();
  EXPECT_EQ(bad.source_format, "tf_checkpoint");
  EXPECT_EQ(bad.input_sha256, listing_of(ckpt, {"ckpt.data-00000-of-00001", "ckpt.index"}));
  EXPECT_FALSE(Exists(dir.File("c.safemodel")));

  const std::string sm = CopyModel(dir, "sm_lambda_keras_metadata", "sm");
  ConvertReport refused = Convert(sm, dir.File("s.safemodel"));
  EXPECT_EQ(ExitCodeFor(refused.status.code()), 1) << refused.status.ToString();
  EXPECT_EQ(refused.source_format, "tf_savedmodel");
  EXPECT_EQ(refused.input_sha256,
            listing_of(sm, {"keras_metadata.pb", "saved_model.pb",
                            "variables/variables.data-00000-of-00001", "variables/variables.index"}));
  ASSERT_FALSE(refused.findings.empty());
  EXPECT_EQ(refused.findings[0].severity, Finding::Severity::kRefused);  // worst first
}

TEST(InputSet, ALinkAnywhereInTheDirectoryStopsEverything) {
  TempDir dir;
  const std::string model = CopyModel(dir, "sm_keras_metadata", "model");
  const std::string index = model + "/variables/variables.index";
  fs::rename(index, dir.File("real.index"));
  ASSERT_EQ(symlink(dir.File("real.index").c_str(), index.c_str()), 0);
  ExpectRefusedBeforeWork(Convert(model, dir.File("o")), 2,
                          "'variables/variables.index' in the input directory is a symbolic link",
                          dir.File("o"));
  // A link to a directory is not followed either, even where a file of no
  // interest would be (assets/).
  fs::remove(index);
  fs::rename(dir.File("real.index"), index);
  ASSERT_EQ(symlink("/etc", (model + "/assets").c_str()), 0);
  ExpectRefusedBeforeWork(Convert(model, dir.File("o")), 2, "[input.symlink]", dir.File("o"));
  // Nor is the input itself a link.
  fs::remove(model + "/assets");
  ASSERT_EQ(symlink(model.c_str(), dir.File("link").c_str()), 0);
  ExpectRefusedBeforeWork(Convert(dir.File("link"), dir.File("o")), 2, "symbolic link", dir.File("o"));
  // Beside a file input, a file of the model that is a link is refused.
  const std::string ckpt = CopyModel(dir, "ckpt_two_shards", "ckpt");
  const std::string shard = ckpt + "/ckpt.data-00001-of-00002";
  fs::rename(shard, dir.File("shard"));
  ASSERT_EQ(symlink(dir.File("shard").c_str(), shard.c_str()), 0);
  ExpectRefusedBeforeWork(Convert(ckpt + "/ckpt.index", dir.File("o")), 2,
                          "'ckpt.data-00001-of-00002', a file of the model, is a symbolic link",
                          dir.File("o"));
}

TEST(InputSet, AFifoInTheDirectoryIsNeverOpened) {
  TempDir dir;
  const std::string model = CopyModel(dir, "sm_keras_metadata", "model");
  // No writer: opening it would block the conversion forever.
  ASSERT_EQ(mkfifo((model + "/variables/variables.data-00001-of-00002").c_str(), 0600), 0);
  ExpectRefusedBeforeWork(Convert(model, dir.File("o")), 2,
                          "'variables/variables.data-00001-of-00002' in the input directory is not a "
                          "regular file or directory [input.not_regular]",
                          dir.File("o"));
}

TEST(InputSet, AnUnknownFileIsRefusedByName) {
  TempDir dir;
  const std::string model = CopyModel(dir, "sm_keras_metadata", "model");
  WriteFile(model + "/variables/loader.py", "import os");
  ExpectRefusedBeforeWork(Convert(model, dir.File("o")), 3,
                          "'variables/loader.py' in the input directory is a file that is not part of "
                          "a SavedModel",
                          dir.File("o"));
  fs::remove(model + "/variables/loader.py");
  const std::string ckpt = CopyModel(dir, "ckpt_basic", "ckpt");
  WriteFile(ckpt + "/events.out.tfevents.1", "x");
  ConvertReport r = Convert(ckpt, dir.File("o"));
  ExpectRefusedBeforeWork(r, 3, "[input.unknown_file]", dir.File("o"));
  EXPECT_NE(r.status.message().find("events.out.tfevents.1"), std::string::npos);
  // Naming the checkpoint's own file converts it whatever lies beside it.
  EXPECT_TRUE(Convert(ckpt + "/ckpt-1.index", dir.File("o")).status.ok());
  // A directory that is no model at all.
  fs::create_directories(dir.File("plain"));
  WriteFile(dir.File("plain/x.bin"), "x");
  r = Convert(dir.File("plain"), dir.File("p"));
  ExpectRefusedBeforeWork(r, 3, "is not a SavedModel", dir.File("p"));
}

TEST(InputSet, TooManyFilesOrBytesAreLimitsFoundBeforeAnyWork) {
  TempDir dir;
  const std::string ckpt = CopyModel(dir, "ckpt_basic", "ckpt");
  ConvertOptions small;
  small.max_input_bytes = 1000;  // each file is below it, the model is not
  ConvertReport r = Convert(ckpt, dir.File("o"), small);
  EXPECT_EQ(ExitCodeFor(r.status.code()), 4) << r.status.ToString();
  EXPECT_EQ(r.worker.kind, WorkerOutcome::Kind::kNotStarted);
  // 1,001 data files for one index: more than kMaxModelFiles.
  for (int i = 0; i <= 1000; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "/ckpt-1.data-%05d-of-01001", i);
    WriteFile(ckpt + name, "x");
  }
  fs::remove(ckpt + "/ckpt-1.data-00000-of-00001");
  for (const std::string& in : {ckpt, ckpt + "/ckpt-1.index"}) {
    ExpectRefusedBeforeWork(Convert(in, dir.File("o")), 4, "[input.too_many_files]", dir.File("o"));
  }
}

TEST(InputSet, OutputMayNotBeOneOfTheModelsFiles) {
  TempDir dir;
  const std::string model = CopyModel(dir, "sm_keras_metadata", "model");
  const std::string index = model + "/variables/variables.index";
  const std::string before = ReadFile(index);
  ConvertOptions force;
  force.force = true;
  ConvertReport r = Convert(model, index, force);
  EXPECT_EQ(ExitCodeFor(r.status.code()), 2) << r.status.ToString();
  EXPECT_NE(r.status.message().find("one of the input's files"), std::string::npos) << r.status.ToString();
  EXPECT_EQ(ReadFile(index), before);
}

TEST(InputSet, TheWorkersListMatchesTheOpenedFilesAndAChangeIsSeen) {
  TempDir dir;
  const std::string ckpt = CopyModel(dir, "ckpt_two_shards", "ckpt");
  for (const std::string& in : {ckpt + "/ckpt.index", ckpt + "/ckpt", ckpt}) {
    SCOPED_TRACE(in);
    Result<InputSet> set = InputSet::Open(in);
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    ASSERT_TRUE(set->multi_file());
    worker::InputManifest m;
    ASSERT_TRUE(m.ParseFromString(set->Manifest()));
    EXPECT_EQ(m.kind(), static_cast<uint32_t>(loader::ModelKind::kCheckpoint));
    ASSERT_EQ(m.files_size(), 3);
    ASSERT_EQ(set->Parts().size(), 3u);
    uint64_t total = 0;
    for (int i = 0; i < m.files_size(); ++i) {
      const std::string bytes = ReadFile(ckpt + "/" + m.files(i).name());
      EXPECT_EQ(m.files(i).size(), bytes.size());
      EXPECT_EQ(set->Parts()[static_cast<size_t>(i)].second, bytes.size());
      total += bytes.size();
    }
    EXPECT_EQ(m.files(0).name(), "ckpt.index");
    EXPECT_EQ(m.files(0).role(), static_cast<uint32_t>(loader::FileRole::kBundleIndex));
    EXPECT_EQ(set->total_size(), total);
    EXPECT_TRUE(set->CheckUnchanged().ok());
  }
  Result<InputSet> set = InputSet::Open(ckpt);
  ASSERT_TRUE(set.ok());
  WriteFile(ckpt + "/ckpt.data-00001-of-00002", "changed");
  const Status changed = set->CheckUnchanged();
  EXPECT_EQ(changed.code(), StatusCode::kIoError) << changed.ToString();
  EXPECT_NE(changed.message().find("ckpt.data-00001-of-00002"), std::string::npos) << changed.ToString();
  // A single file stays a single input.
  Result<InputSet> single = InputSet::Open(ckpt + "/ckpt.data-00000-of-00002");
  ASSERT_TRUE(single.ok());
  EXPECT_FALSE(single->multi_file());
}

}  // namespace
}  // namespace safemodel::testing
