// An inference engine's side of safemodel: it only reads .safemodel files,
// and links only the format library (libsafemodel.so): no sandbox, no
// seccomp, no conversion pipeline, no protobuf headers.
//
//   reader_only FILE.safemodel
//
// Lists the tensors, verifies every digest, and prints each f32 tensor's
// first element. Build it against an installed safemodel with
// find_package(safemodel) (examples/reader/CMakeLists.txt) or pkg-config:
//   c++ -std=c++20 reader_only.cc $(pkg-config --cflags --libs safemodel)
#include <cstdio>
#include <cstring>
#include <string>

#include "safemodel/display.h"
#include "safemodel/reader.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE.safemodel\n", argv[0]);
    return 2;
  }
  // O(header): the tensors stay on disk, mapped read-only.
  auto model = safemodel::Model::Open(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", safemodel::EscapeForDisplay(model.status().ToString()).c_str());
    return 3;
  }
  // Reads every byte once: what an engine does before trusting a file that
  // crossed a network or a disk.
  if (safemodel::Status s = model->Verify(); !s.ok()) {
    std::fprintf(stderr, "%s\n", safemodel::EscapeForDisplay(s.ToString()).c_str());
    return 3;
  }
  std::printf("format %u.%u, %zu tensors, from %s\n", model->format_major(), model->format_minor(),
              model->tensors().size(),
              safemodel::EscapeForDisplay(model->provenance().source_format).c_str());
  for (const safemodel::TensorInfo& t : model->tensors()) {
    std::printf("%s %s %llu bytes", safemodel::EscapeForDisplay(t.name).c_str(),
                std::string(safemodel::DTypeName(t.dtype)).c_str(),
                static_cast<unsigned long long>(t.nbytes));
    std::span<const std::byte> bytes = model->Data(t);  // zero-copy
    if (t.dtype == safemodel::DType::kF32 && bytes.size() >= sizeof(float)) {
      float first;
      std::memcpy(&first, bytes.data(), sizeof first);
      std::printf(" [0]=%g", static_cast<double>(first));
    }
    std::printf("\n");
  }
  return 0;
}
