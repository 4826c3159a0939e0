// Fuzz target: the .safemodel reader an inference engine links. Open must
// reject or accept in bounded time; an accepted file must be safe to read
// and verify entirely.
#include <cstddef>
#include <cstdint>
#include <span>

#include "safemodel/reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto model = safemodel::Model::FromBuffer(std::as_bytes(std::span<const uint8_t>(data, size)));
  if (!model.ok()) return 0;
  uint64_t sum = 0;
  for (const safemodel::TensorInfo& t : model->tensors()) {
    auto bytes = model->Data(t);
    if (!bytes.empty()) sum += static_cast<uint8_t>(bytes[bytes.size() - 1]);
    (void)model->VerifyTensor(t.name);
  }
  (void)model->Verify();
  return static_cast<int>(sum & 0);
}
