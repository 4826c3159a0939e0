// No library planted beside a model can run in the converter or its worker.
//
// The dynamic loader searches a program's RUNPATH before the system
// directories; an empty or relative entry there is resolved against the
// current directory, typically a folder of downloaded models. Every program
// of the build must carry absolute entries only (readelf -d), the worker
// starts in `/` anyway, and a conversion run from a folder full of planted
// copies of the libraries it needs loads none of them. A control program
// with an empty RUNPATH entry shows that the planted copies do load when a
// program asks for it.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/sandbox/probe_util.h"

namespace safemodel::testing {
namespace {

const std::string kPlantedDir = SAFEMODEL_PLANTED_DIR;

bool IsElf(const std::string& path) {
  std::string head = ReadFile(path).substr(0, 4);
  return head == "\x7f" "ELF";
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// The entries of the DT_RUNPATH and DT_RPATH tags of `path`, as readelf shows
// them ("Library runpath: [a:b]").
std::vector<std::string> SearchPathEntries(const std::string& path) {
  std::string out;
  EXPECT_EQ(RunCommand("readelf -d " + Quote(path), &out), 0) << out;
  std::vector<std::string> entries;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    for (const char* tag : {"Library runpath: [", "Library rpath: ["}) {
      size_t at = line.find(tag);
      if (at == std::string::npos) continue;
      at += std::string(tag).size();
      std::string list = line.substr(at, line.rfind(']') - at);
      size_t start = 0;
      for (;;) {
        size_t colon = list.find(':', start);
        entries.push_back(list.substr(start, colon == std::string::npos ? std::string::npos
                                                                         : colon - start));
        if (colon == std::string::npos) break;
        start = colon + 1;
      }
    }
  }
  return entries;
}

// An entry the loader resolves the same way from any directory: absolute,
// with no "." or ".." component.
bool IsAbsoluteEntry(const std::string& e) {
  if (e.empty() || e[0] != '/') return false;
  std::istringstream parts(e);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part == "." || part == "..") return false;
  }
  return true;
}

TEST(Runpath, EveryBuiltProgramSearchesAbsoluteDirectoriesOnly) {
  if (RunCommand("readelf --version") != 0) GTEST_SKIP() << "no readelf (binutils)";
  std::set<std::string> checked;
  for (const auto& e : std::filesystem::directory_iterator(BinDir())) {
    const std::string path = e.path().string();
    if (!e.is_regular_file() || access(path.c_str(), X_OK) != 0 || !IsElf(path)) continue;
    for (const std::string& entry : SearchPathEntries(path)) {
      EXPECT_TRUE(IsAbsoluteEntry(entry))
          << path << " searches '" << entry << "' for its libraries";
    }
    checked.insert(e.path().filename().string());
  }
  for (const char* must : {"safe-convert", "safemodel-worker", "safemodel-worker-hdf5",
                           "sandbox-probe", "library_usage"}) {
    EXPECT_TRUE(checked.count(must)) << must << " was not checked";
  }
  // Control: the checker does see the bug, in the program built with it.
  std::vector<std::string> bad = SearchPathEntries(kPlantedDir + "/plant-control");
  ASSERT_FALSE(bad.empty());
  EXPECT_FALSE(IsAbsoluteEntry(bad[0]));
}

// The shared libraries `program` needs, directly and indirectly (ldd).
std::set<std::string> NeededLibraries(const std::string& program) {
  std::string out;
  EXPECT_EQ(RunCommand("ldd " + Quote(program), &out, false), 0) << out;
  std::set<std::string> names;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string name;
    words >> name;
    if (name.find(".so") != std::string::npos && name.find('/') == std::string::npos) {
      names.insert(name);
    }
  }
  return names;
}

std::vector<std::string> Markers(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 7 && name.compare(name.size() - 7, 7, ".loaded") == 0) out.push_back(name);
  }
  return out;
}

TEST(Planting, ALibraryBesideTheModelIsNeverLoaded) {
  if (RunCommand("ldd --version") != 0) GTEST_SKIP() << "no ldd";
  const std::string planted = kPlantedDir + "/libsafemodel_planted.so";
  ASSERT_TRUE(Exists(planted)) << planted;
  TempDir folder;  // a folder of downloaded models, and libraries someone put there
  std::set<std::string> names = NeededLibraries(BinDir() + "/safe-convert");
  for (const char* worker : {"/safemodel-worker", "/safemodel-worker-hdf5"}) {
    for (const std::string& n : NeededLibraries(BinDir() + worker)) names.insert(n);
  }
  ASSERT_TRUE(names.count("libseccomp.so.2")) << ::testing::PrintToString(names);
  ASSERT_TRUE(names.count("libhdf5_serial.so.103") || names.count("libhdf5.so.103"))
      << ::testing::PrintToString(names);
  const std::string bytes = ReadFile(planted);
  for (const std::string& n : names) {
    WriteFile(folder.File(n), bytes);
    chmod(folder.File(n).c_str(), 0755);
  }
  WriteFile(folder.File("model.h5"), ReadFile(SAFEMODEL_SOURCE_DIR "/examples/models/keras_cnn.h5"));

  // Control: a program with an empty RUNPATH entry, run from a folder with a
  // copy of the library it needs, loads that copy (its constructor leaves a
  // marker). Only that one library: this program would load a planted libc
  // too, and die of it.
  TempDir control;
  WriteFile(control.File("libsafemodel_planted.so"), bytes);
  std::string out;
  ASSERT_EQ(RunCommand("cd " + Quote(control.path()) + " && " + Quote(kPlantedDir + "/plant-control"),
                       &out),
            0)
      << out;
  ASSERT_EQ(Markers(control.path()), std::vector<std::string>{"libsafemodel_planted.so.loaded"});

  // The converter run from the same folder: converts, and loads none of them
  // (a planted copy, had it been loaded, would have left a marker or failed
  // the start for lack of the real library's symbols).
  ASSERT_EQ(RunCommand("cd " + Quote(folder.path()) + " && " + Quote(BinDir() + "/safe-convert") +
                           " model.h5 out.safemodel --no-sync",
                       &out),
            0)
      << out;
  EXPECT_TRUE(Markers(folder.path()).empty()) << ::testing::PrintToString(Markers(folder.path()));
  TempDir elsewhere;
  ConvertReport reference = Convert(folder.File("model.h5"), elsewhere.File("ref.safemodel"));
  ASSERT_TRUE(reference.status.ok()) << reference.status.ToString();
  EXPECT_EQ(ReadFile(folder.File("out.safemodel")), ReadFile(elsewhere.File("ref.safemodel")));
}

}  // namespace
}  // namespace safemodel::testing
