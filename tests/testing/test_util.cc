#include "tests/testing/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace safemodel::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string base = fs::temp_directory_path().string() + "/safemodel-test-XXXXXX";
  std::vector<char> buf(base.begin(), base.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) std::abort();
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::string> TempDir::List() const {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string Fixture(const std::string& relative) {
  return std::string(SAFEMODEL_SOURCE_DIR) + "/tests/fixtures/" + relative;
}

std::string CorpusFile(const std::string& relative) {
  std::string p = std::string(SAFEMODEL_SOURCE_DIR) + "/../shared/corpus/" + relative;
  return fs::exists(p) ? p : "";
}

std::string BinDir() { return SAFEMODEL_BIN_DIR; }

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool Exists(const std::string& path) { return fs::exists(path); }

ConvertReport Convert(const std::string& in, const std::string& out, ConvertOptions options) {
  options.sync_output = false;
  if (options.timeout_ms == 0) options.timeout_ms = 60'000;
  return ConvertFile(in, out, options);
}

int RunCommand(const std::string& command, std::string* output, bool stderr_too) {
  FILE* p = popen((command + (stderr_too ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (p == nullptr) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (output != nullptr) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

namespace {
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}
}  // namespace

int RunPython(const std::string& script, const std::vector<std::string>& args, std::string* output) {
  if (access("/usr/bin/python3", X_OK) != 0) return -1;
  std::string cmd = "/usr/bin/python3 " + Quote(script);
  for (const std::string& a : args) cmd += " " + Quote(a);
  return RunCommand(cmd, output);
}

bool PythonHas(const std::vector<std::string>& modules) {
  if (access("/usr/bin/python3", X_OK) != 0) return false;
  std::string imports;
  for (const std::string& m : modules) imports += "import " + m + ";";
  return RunCommand("/usr/bin/python3 -c " + Quote(imports)) == 0;
}

}  // namespace safemodel::testing
