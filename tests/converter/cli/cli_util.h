// Running the safe-convert binary from the CLI tests.
#ifndef SAFEMODEL_TESTS_CONVERTER_CLI_CLI_UTIL_H_
#define SAFEMODEL_TESTS_CONVERTER_CLI_CLI_UTIL_H_

#include <string>

#include "tests/testing/test_util.h"

namespace safemodel::testing {

// safe-convert ARGS (a shell fragment); its exit code, its output in *out
// (standard error too unless `stderr_too` is false).
inline int SafeConvert(const std::string& args, std::string* out = nullptr, bool stderr_too = true) {
  return RunCommand(BinDir() + "/safe-convert " + args, out, stderr_too);
}

// The SHA-256 of a file as sha256sum prints it (an independent hasher).
inline std::string Sha256Sum(const std::string& path) {
  std::string out;
  if (RunCommand("sha256sum '" + path + "'", &out, false) != 0) return "";
  return out.substr(0, 64);
}

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_CONVERTER_CLI_CLI_UTIL_H_
