// ConvertFd and ConvertBuffer (safemodel/convert.h): the same output as
// ConvertFile, the same refusals, and the descriptor rules.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "safemodel/convert.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

const char kModel[] = "/examples/models/mlp.npz";

TEST(ConvertFd, GivesTheSameFileAsAPathAndKeepsTheCallersDescriptor) {
  TempDir dir;
  const std::string input = std::string(SAFEMODEL_SOURCE_DIR) + kModel;
  ConvertReport by_path = Convert(input, dir.File("path.safemodel"));
  ASSERT_TRUE(by_path.status.ok()) << by_path.status.ToString();
  const int fd = open(input.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ConvertOptions options;
  options.sync_output = false;
  ConvertReport by_fd = ConvertFd(fd, dir.File("fd.safemodel"), options);
  ASSERT_TRUE(by_fd.status.ok()) << by_fd.status.ToString();
  EXPECT_EQ(by_fd.input_path, "descriptor " + std::to_string(fd));
  EXPECT_EQ(by_fd.input_sha256, by_path.input_sha256);
  EXPECT_EQ(ReadFile(dir.File("fd.safemodel")), ReadFile(dir.File("path.safemodel")));
  char c;
  EXPECT_EQ(pread(fd, &c, 1, 0), 1) << "the caller's descriptor stays open";
  close(fd);
}

TEST(ConvertFd, ABufferConvertsThroughASealedMemoryFile) {
  TempDir dir;
  const std::string input = std::string(SAFEMODEL_SOURCE_DIR) + kModel;
  const std::string bytes = ReadFile(input);
  ASSERT_TRUE(Convert(input, dir.File("path.safemodel")).status.ok());
  ConvertOptions options;
  options.sync_output = false;
  ConvertReport r = ConvertBuffer(std::as_bytes(std::span(bytes)), dir.File("buf.safemodel"), options);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.input_path, "buffer of " + std::to_string(bytes.size()) + " bytes");
  EXPECT_EQ(ReadFile(dir.File("buf.safemodel")), ReadFile(dir.File("path.safemodel")));
  // A payload in memory is refused as from a file, and nothing is written.
  const std::string evil = ReadFile(Fixture("numpy/object_malicious.npy"));
  ConvertReport bad = ConvertBuffer(std::as_bytes(std::span(evil)), dir.File("evil.safemodel"), options);
  EXPECT_EQ(ExitCodeFor(bad.status.code()), kExitRefused) << bad.status.ToString();
  EXPECT_FALSE(Exists(dir.File("evil.safemodel")));
  ConvertReport empty = ConvertBuffer({}, dir.File("empty.safemodel"), options);
  EXPECT_EQ(ExitCodeFor(empty.status.code()), kExitMalformed) << empty.status.ToString();
}

TEST(ConvertFd, RefusesDescriptorsThatAreNotReadableRegularFiles) {
  TempDir dir;
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ConvertReport piped = ConvertFd(p[0], dir.File("p.safemodel"));
  EXPECT_EQ(piped.status.code(), StatusCode::kInvalidArgument) << piped.status.ToString();
  EXPECT_NE(piped.status.message().find("not a regular file"), std::string::npos);
  close(p[0]);
  close(p[1]);
  ConvertReport closed = ConvertFd(-1, dir.File("c.safemodel"));
  EXPECT_EQ(closed.status.code(), StatusCode::kInvalidArgument);
  WriteFile(dir.File("w.bin"), "x");
  const int wfd = open(dir.File("w.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(wfd, 0);
  ConvertReport write_only = ConvertFd(wfd, dir.File("w.safemodel"));
  EXPECT_EQ(write_only.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(write_only.status.message().find("not open for reading"), std::string::npos);
  close(wfd);
  EXPECT_EQ(dir.List(), std::vector<std::string>{"w.bin"});
}

}  // namespace
}  // namespace safemodel::testing
