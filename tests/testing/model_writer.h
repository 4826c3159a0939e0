// A small .safemodel written by the format's own writer, for tests of what
// reads one (the reader API, the safetensors export): no conversion, no
// worker.
#ifndef SAFEMODEL_TESTS_TESTING_MODEL_WRITER_H_
#define SAFEMODEL_TESTS_TESTING_MODEL_WRITER_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "safemodel/dtype.h"

namespace safemodel::testing {

struct ModelSpec {
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;
  std::string alias_of;
  std::optional<uint64_t> source_index;
};

// The bytes of the tensor at `index` in `specs` (`size` of them); called once
// per stored tensor, in the file's order.
using TensorFill = std::function<std::string(size_t index, uint64_t size)>;

// Writes `specs` (source format `source_format`, XXH3-128 digests, a fixed
// input digest) to `path` and returns the file's bytes; a failure is a test
// failure and returns "".
std::string WriteModelFile(const std::string& path, const std::vector<ModelSpec>& specs,
                           const std::string& source_format, const TensorFill& fill);

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_TESTING_MODEL_WRITER_H_
