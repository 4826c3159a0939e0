// Helpers shared by the tests: scratch directories, fixture paths, and
// running conversions through the real sandboxed pipeline.
#ifndef SAFEMODEL_TESTS_TESTING_TEST_UTIL_H_
#define SAFEMODEL_TESTS_TESTING_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "safemodel/convert.h"

namespace safemodel::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Names of the entries in the directory (hidden ones included), sorted.
  std::vector<std::string> List() const;

 private:
  std::string path_;
};

// Path of a file under tests/fixtures/.
std::string Fixture(const std::string& relative);
// Path of a file in the shared corpus (../shared/corpus/...), or "" if the
// corpus is not present (tests then GTEST_SKIP()).
std::string CorpusFile(const std::string& relative);
// The build's bin directory (safe-convert, safemodel-worker, helpers).
std::string BinDir();

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& bytes);
bool Exists(const std::string& path);

// Converts with test-friendly defaults (no fsync, 60 s timeout).
ConvertReport Convert(const std::string& in, const std::string& out, ConvertOptions options = {});

// Runs /usr/bin/python3 with a script file and arguments; returns the exit
// code (-1 if python3 is unavailable). Output goes to *output if given.
int RunPython(const std::string& script, const std::vector<std::string>& args,
              std::string* output = nullptr);
// True if /usr/bin/python3 can import all of the given modules.
bool PythonHas(const std::vector<std::string>& modules);

// Runs a command line through /bin/sh; returns its exit code. Its stdout (and
// stderr too, unless `stderr_too` is false) goes to *output.
int RunCommand(const std::string& command, std::string* output = nullptr, bool stderr_too = true);

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_TESTING_TEST_UTIL_H_
