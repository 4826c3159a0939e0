// Fuzz target: every parser, through format detection, in process. Whatever
// the bytes, parsing and streaming must end in a status, never a crash, a
// sanitizer report, a hang or unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tests/testing/loader_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  safemodel::loader::ParseOptions options;
  options.memory_limit = 64 << 20;  // keep fuzzing fast; limits are a tested path too
  safemodel::testing::ParseInProcess(std::string(reinterpret_cast<const char*>(data), size),
                                     options);
  return 0;
}
