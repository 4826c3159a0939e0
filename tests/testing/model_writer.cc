#include "tests/testing/model_writer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "proto/safemodel.pb.h"
#include "proto/base/byte_reader.h"
#include "proto/writer.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {

std::string WriteModelFile(const std::string& path, const std::vector<ModelSpec>& specs,
                           const std::string& source_format, const TensorFill& fill) {
  v1::Header h;
  for (const ModelSpec& s : specs) {
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(s.name);
    t->set_dtype(static_cast<v1::DType>(s.dtype));
    for (uint64_t d : s.shape) t->add_shape(d);
    t->set_alias_of(s.alias_of);
    if (s.source_index.has_value()) t->set_source_index(*s.source_index);
  }
  h.mutable_provenance()->set_source_format(source_format);
  h.mutable_provenance()->set_input_size(1);
  h.mutable_provenance()->set_converter_version("safemodel test");
  h.set_digest_algorithm(v1::XXH3_128);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return "";
  auto w = SafemodelWriter::Begin(fd, h);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  bool ok = w.ok();
  while (ok && !(*w)->complete()) {
    const auto i = static_cast<size_t>((*w)->current_tensor());
    const std::string bytes = fill(i, (*w)->current_remaining());
    ok = (*w)->Append(AsBytes(bytes)).ok();
    EXPECT_TRUE(ok) << specs[i].name;
  }
  if (ok) {
    ok = (*w)->Finish(std::string(32, '\x5a')).ok();
    EXPECT_TRUE(ok);
  }
  close(fd);
  return ok ? ReadFile(path) : "";
}

}  // namespace safemodel::testing
