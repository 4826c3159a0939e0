// Fuzz target: the safetensors parser, alone (so that every byte reaches the
// header rules, even where detection would say "not safetensors") and then
// through detection with every tensor streamed. Whatever the bytes, both end
// in a status, never a crash, a sanitizer report, a hang or unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string>

#include "loader/safetensors/safetensors.h"
#include "tests/testing/loader_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  safemodel::loader::ParseOptions options;
  options.memory_limit = 64 << 20;
  {
    safemodel::loader::ParseContext ctx(options);
    safemodel::loader::ParsedModel out;
    (void)safemodel::loader::NewSafetensorsParser()->Parse(safemodel::ByteView(data, size), ctx,
                                                           &out);
  }
  safemodel::testing::ParseInProcess(std::string(reinterpret_cast<const char*>(data), size),
                                     options);
  return 0;
}
