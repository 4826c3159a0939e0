// In-process parsing for loader unit tests: runs a parser on bytes in this
// process (no sandbox) and collects each tensor's streamed bytes.
#ifndef SAFEMODEL_TESTS_TESTING_LOADER_UTIL_H_
#define SAFEMODEL_TESTS_TESTING_LOADER_UTIL_H_

#include <map>
#include <string>
#include <vector>

#include "loader/model.h"
#include "loader/parser.h"

namespace safemodel::testing {

struct ParsedTensor {
  DType dtype;
  std::vector<uint64_t> shape;
  std::string alias_of;
  std::string bytes;  // little-endian C-order stored bytes (empty for aliases)
};

struct InProcessResult {
  Status status;
  std::string source_format;
  std::map<std::string, ParsedTensor> tensors;
  Value architecture;
  Value metadata;
  std::vector<Finding> findings;  // from the context and the model
};

// loader::ParseModel on `input`, then streams every tensor.
InProcessResult ParseInProcess(const std::string& input, loader::ParseOptions options = {});

// loader::ParseModelFiles on a multi-file input, then streams every tensor.
InProcessResult ParseFilesInProcess(const loader::InputFiles& input,
                                    loader::ParseOptions options = {});

// The rules of all findings of a given severity, in order.
std::vector<std::string> Rules(const std::vector<Finding>& findings, Finding::Severity severity);

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_TESTING_LOADER_UTIL_H_
