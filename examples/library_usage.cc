// Using safemodel as a library: convert an untrusted file, then hand the
// tensors to an inference engine zero-copy.
//
//   library_usage IN.npz OUT.safemodel [TENSOR]
//
// Build it against an installed safemodel with find_package(safemodel); see
// examples/consumer/CMakeLists.txt.
#include <cstdio>
#include <string>

#include "safemodel/convert.h"
#include "safemodel/display.h"
#include "safemodel/reader.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s IN OUT.safemodel [TENSOR] [WORKER]\n", argv[0]);
    return 2;
  }
  // 1. Convert. The input is parsed only inside the sandboxed worker.
  safemodel::ConvertOptions options;
  if (argc > 4) options.worker_path = argv[4];
  safemodel::ConvertReport report = safemodel::ConvertFile(argv[1], argv[2], options);
  if (!report.status.ok()) {
    // Text from the model is escaped before it reaches a terminal.
    using safemodel::EscapeForDisplay;
    std::fprintf(stderr, "refused: %s\n", EscapeForDisplay(report.status.ToString()).c_str());
    for (const safemodel::Finding& f : report.findings) {
      std::fprintf(stderr, "  %s %s at %s\n", safemodel::SeverityName(f.severity),
                   EscapeForDisplay(f.rule).c_str(), EscapeForDisplay(f.location).c_str());
    }
    return safemodel::ExitCodeFor(report.status.code());
  }

  // 2. Open the result: O(header), no tensor bytes read yet.
  auto model = safemodel::Model::Open(argv[2]);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", safemodel::EscapeForDisplay(model.status().ToString()).c_str());
    return 3;
  }
  for (const safemodel::TensorInfo& t : model->tensors()) {
    std::printf("%-24s %-5s %8llu bytes\n", safemodel::EscapeForDisplay(t.name).c_str(),
                std::string(safemodel::DTypeName(t.dtype)).c_str(),
                static_cast<unsigned long long>(t.nbytes));
  }

  // 3. Hand one tensor to the engine: a span into the read-only mapping.
  if (argc > 3) {
    const safemodel::TensorInfo* t = model->Find(argv[3]);
    if (t == nullptr) return 3;
    if (!model->VerifyTensor(t->name).ok()) return 3;  // optional, reads only this tensor
    std::span<const std::byte> bytes = model->Data(*t);
    if (t->dtype == safemodel::DType::kF32 && bytes.size() >= sizeof(float)) {
      const auto* values = reinterpret_cast<const float*>(bytes.data());  // 64-byte aligned
      std::printf("%s[0] = %g\n", safemodel::EscapeForDisplay(t->name).c_str(), static_cast<double>(values[0]));
    }
  }
  return 0;
}
