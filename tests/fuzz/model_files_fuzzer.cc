// Fuzz target: the parsers of models made of several files (SavedModel
// directories, TF checkpoints, sharded Keras weight stores), in process,
// through loader::ParseModelFiles. One input packs the files:
//   u8 kind (ModelKind, taken modulo 3 plus 1), then per file:
//   u8 role (FileRole, modulo 7 plus 1), u8 name length, name, u32 LE size,
//   bytes (a short last file takes what is left).
// Seeds: seeds/model_files, packed from tests/fixtures/keras3_tf by
// seeds/make_model_files_seeds.py. Whatever the bytes, parsing and
// streaming must end in a status: no crash, sanitizer report, hang or
// unbounded memory.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "loader/parser.h"
#include "tests/testing/loader_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace safemodel::loader;
  if (size < 1) return 0;
  InputFiles input;
  input.kind = static_cast<ModelKind>(data[0] % 3 + 1);
  size_t pos = 1;
  while (pos + 2 <= size && input.files.size() < 64) {
    const auto role = static_cast<FileRole>(data[pos] % 7 + 1);
    const size_t name_len = data[pos + 1];
    pos += 2;
    if (pos + name_len > size) break;
    std::string name(reinterpret_cast<const char*>(data + pos), name_len);
    pos += name_len;
    size_t len = 0;
    for (size_t i = 0; i < 4 && pos < size; ++i, ++pos) len |= static_cast<size_t>(data[pos]) << (8 * i);
    len = std::min(len, size - pos);
    input.files.push_back({role, std::move(name), safemodel::ByteView(data + pos, len)});
    pos += len;
  }
  ParseOptions options;
  options.memory_limit = 64 << 20;  // keep fuzzing fast; limits are a tested path too
  safemodel::testing::ParseFilesInProcess(input, options);
  return 0;
}
