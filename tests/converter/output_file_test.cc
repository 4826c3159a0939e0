// OutputFile and ReserveOutputSpace on their own: OUT's rules at open and at
// commit, every way of naming the temporary file (the kernel's O_TMPFILE with
// AT_EMPTY_PATH or /proc, and the named fallback a system without /proc
// gets), modes under umasks, the signal-safe removal of named temporaries,
// the spool for a descriptor, and the space reservation.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <grp.h>

#include <cstdlib>
#include <cstring>
#include <regex>
#include <thread>

#include "converter/output_file.h"
#include "safemodel/convert.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

// Sets SAFEMODEL_TEST_PRETEND_MISSING for the scope (tests only: makes
// OutputFile behave as if the kernel lacked what it lists).
class PretendMissing {
 public:
  explicit PretendMissing(const std::string& what) {
    if (what.empty()) {
      unsetenv("SAFEMODEL_TEST_PRETEND_MISSING");
    } else {
      setenv("SAFEMODEL_TEST_PRETEND_MISSING", what.c_str(), 1);
    }
  }
  ~PretendMissing() { unsetenv("SAFEMODEL_TEST_PRETEND_MISSING"); }
};

// Sets the umask for the scope.
class Umask {
 public:
  explicit Umask(mode_t m) : old_(umask(m)) {}
  ~Umask() { umask(old_); }

 private:
  mode_t old_;
};

struct stat StatOf(const std::string& path) {
  struct stat st = {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st;
}

// A stat that matches no file, for "OUT is not the input".
struct stat NoInput() {
  struct stat st = {};
  st.st_ino = ~static_cast<ino_t>(0);
  return st;
}

void WriteAll(int fd, const std::string& bytes) {
  ASSERT_EQ(pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
}

std::unique_ptr<OutputFile> MustOpen(const std::string& path, bool force) {
  auto out = OutputFile::OpenPath(path, force, NoInput());
  EXPECT_TRUE(out.ok()) << out.status().ToString();
  return out.ok() ? std::move(*out) : nullptr;
}

bool IsTempName(const std::string& name) {
  return std::regex_match(name, std::regex(R"(\.sm-[A-Za-z0-9]{6})"));
}

// Every way the temporary file can be named, as the test's environment
// allows: what the kernel offers, a system without /proc (AT_EMPTY_PATH
// where the kernel grants it, else a named file), and no O_TMPFILE at all.
struct Strategy {
  const char* pretend;
  const char* label;
};
const Strategy kStrategies[] = {
    {"", "kernel_default"},
    {"empty_path", "proc_only"},
    {"proc", "no_proc"},
    {"proc,empty_path", "named_no_proc"},
    {"o_tmpfile", "named_no_tmpfile"},
};

class OutputStrategy : public ::testing::TestWithParam<Strategy> {};

TEST_P(OutputStrategy, CommitsANewFileAndLeavesNothingElse) {
  PretendMissing pretend(GetParam().pretend);
  TempDir dir;
  auto out = MustOpen(dir.File("m.safemodel"), false);
  ASSERT_NE(out, nullptr);
  if (out->kind() == TempKind::kNamed) {
    EXPECT_TRUE(IsTempName(out->temp_name())) << out->temp_name();
    EXPECT_EQ(dir.List(), std::vector<std::string>{out->temp_name()});
  } else {
    EXPECT_EQ(dir.List(), std::vector<std::string>{}) << "anonymous until committed";
  }
  if (std::string(GetParam().pretend).find("o_tmpfile") != std::string::npos ||
      std::string(GetParam().pretend) == "proc,empty_path") {
    EXPECT_EQ(out->kind(), TempKind::kNamed);
  }
  WriteAll(out->fd(), "new contents and a tail");
  ASSERT_TRUE(out->Commit(12, false).ok());
  EXPECT_EQ(dir.List(), std::vector<std::string>{"m.safemodel"});
  EXPECT_EQ(ReadFile(dir.File("m.safemodel")), "new contents");
}

TEST_P(OutputStrategy, DiscardingLeavesNothing) {
  PretendMissing pretend(GetParam().pretend);
  TempDir dir;
  WriteFile(dir.File("old"), "old");
  {
    auto out = MustOpen(dir.File("new"), false);
    ASSERT_NE(out, nullptr);
    WriteAll(out->fd(), "partial");
    auto replace = MustOpen(dir.File("old"), true);
    ASSERT_NE(replace, nullptr);
    WriteAll(replace->fd(), "partial");
  }
  EXPECT_EQ(dir.List(), std::vector<std::string>{"old"});
  EXPECT_EQ(ReadFile(dir.File("old")), "old");
}

TEST_P(OutputStrategy, ReplacesAnExistingFileKeepingItsMode) {
  PretendMissing pretend(GetParam().pretend);
  Umask mask(022);
  TempDir dir;
  const std::string path = dir.File("m.safemodel");
  WriteFile(path, "old");
  ASSERT_EQ(chmod(path.c_str(), 0640), 0);
  const ino_t old_ino = StatOf(path).st_ino;
  auto out = MustOpen(path, true);
  ASSERT_NE(out, nullptr);
  struct stat temp;
  ASSERT_EQ(fstat(out->fd(), &temp), 0);
  EXPECT_EQ(temp.st_mode & 0777, 0600u) << "private until the old mode is copied";
  WriteAll(out->fd(), "new");
  ASSERT_TRUE(out->Commit(3, false).ok());
  EXPECT_EQ(ReadFile(path), "new");
  EXPECT_NE(StatOf(path).st_ino, old_ino) << "replaced by rename, not rewritten";
  EXPECT_EQ(StatOf(path).st_mode & 07777, 0640u);
  EXPECT_EQ(dir.List(), std::vector<std::string>{"m.safemodel"});
}

TEST_P(OutputStrategy, ANewFilesModeFollowsTheUmask) {
  PretendMissing pretend(GetParam().pretend);
  for (mode_t m : {mode_t{0000}, mode_t{0022}, mode_t{0027}, mode_t{0077}}) {
    Umask mask(m);
    TempDir dir;
    auto out = MustOpen(dir.File("m"), false);
    ASSERT_NE(out, nullptr);
    ASSERT_TRUE(out->Commit(0, false).ok());
    EXPECT_EQ(StatOf(dir.File("m")).st_mode & 07777, 0666u & ~m) << "umask " << m;
  }
}

TEST_P(OutputStrategy, EveryLegalNameWorks) {
  PretendMissing pretend(GetParam().pretend);
  TempDir dir;
  const std::string longest(255, 'n');
  for (bool existing : {false, true}) {
    if (existing) WriteFile(dir.File(longest), "old");
    auto out = MustOpen(dir.File(longest), existing);
    ASSERT_NE(out, nullptr);
    WriteAll(out->fd(), "data");
    Status s = out->Commit(4, false);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(ReadFile(dir.File(longest)), "data");
    EXPECT_EQ(dir.List(), std::vector<std::string>{longest});
  }
  auto too_long = OutputFile::OpenPath(dir.File(std::string(256, 'n')), false, NoInput());
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("256 bytes long"), std::string::npos);
}

// OUT is looked at again at commit: what appeared there meanwhile is never
// replaced silently, and a special file never.
TEST_P(OutputStrategy, WhatAppearsAtOutDuringTheConversionIsHandled) {
  PretendMissing pretend(GetParam().pretend);
  TempDir dir;
  const std::string path = dir.File("m");
  {
    auto out = MustOpen(path, false);
    ASSERT_NE(out, nullptr);
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
    Status s = out->Commit(0, false);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("a FIFO"), std::string::npos) << s.ToString();
  }
  EXPECT_TRUE(S_ISFIFO(StatOf(path).st_mode));
  ASSERT_EQ(unlink(path.c_str()), 0);
  {
    auto out = MustOpen(path, false);
    ASSERT_NE(out, nullptr);
    WriteFile(path, "someone else's");
    Status s = out->Commit(0, false);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("created during the conversion"), std::string::npos) << s.ToString();
  }
  EXPECT_EQ(ReadFile(path), "someone else's");
  {
    auto out = MustOpen(dir.File("forced"), true);
    ASSERT_NE(out, nullptr);
    WriteFile(dir.File("forced"), "appeared");
    WriteAll(out->fd(), "ours");
    ASSERT_TRUE(out->Commit(4, false).ok());
  }
  EXPECT_EQ(ReadFile(dir.File("forced")), "ours") << "--force replaces a regular file that appeared";
  {
    auto out = MustOpen(dir.File("gone"), true);
    ASSERT_NE(out, nullptr);
    ASSERT_EQ(symlink("m", dir.File("gone").c_str()), 0);
    EXPECT_EQ(out->Commit(0, false).code(), StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(S_ISLNK(StatOf(dir.File("gone")).st_mode));
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"forced", "gone", "m"}));
}

std::string StrategyName(const ::testing::TestParamInfo<Strategy>& param) { return param.param.label; }

INSTANTIATE_TEST_SUITE_P(All, OutputStrategy, ::testing::ValuesIn(kStrategies), StrategyName);

TEST(OutputFile, TheKernelDefaultIsAnonymous) {
  TempDir dir;
  auto out = MustOpen(dir.File("m"), false);
  ASSERT_NE(out, nullptr);
  if (out->kind() == TempKind::kNamed) GTEST_SKIP() << "no O_TMPFILE here";
  EXPECT_TRUE(out->kind() == TempKind::kLinkEmptyPath || out->kind() == TempKind::kLinkProc);
  PretendMissing no_empty_path("empty_path");
  auto via_proc = MustOpen(dir.File("p"), false);
  ASSERT_NE(via_proc, nullptr);
  if (access("/proc/self/fd", X_OK) == 0) {
    EXPECT_EQ(via_proc->kind(), TempKind::kLinkProc);
  }
}

// Only a regular file is ever replaced: a symbolic link (to a file or
// dangling), a FIFO, a socket, a directory or a device at OUT is refused
// with or without force, naming the type, and is left as it was.
TEST(OutputFile, RefusesEverythingButARegularFile) {
  TempDir dir;
  WriteFile(dir.File("target"), "target");
  ASSERT_EQ(symlink("target", dir.File("link").c_str()), 0);
  ASSERT_EQ(symlink("nowhere", dir.File("dangling").c_str()), 0);
  ASSERT_EQ(mkfifo(dir.File("fifo").c_str(), 0600), 0);
  ASSERT_EQ(mkdir(dir.File("dir").c_str(), 0700), 0);
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(sock, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const std::string sock_path = dir.File("sock");
  ASSERT_LT(sock_path.size(), sizeof addr.sun_path);
  std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
  ASSERT_EQ(bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {dir.File("link"), "a symbolic link"}, {dir.File("dangling"), "a symbolic link"},
      {dir.File("fifo"), "a FIFO"},          {dir.File("dir"), "a directory"},
      {sock_path, "a socket"},               {"/dev/null", "a character device"},
  };
  for (const auto& [path, type] : cases) {
    const struct stat before = StatOf(path);
    for (bool force : {false, true}) {
      auto out = OutputFile::OpenPath(path, force, NoInput());
      ASSERT_FALSE(out.ok()) << path;
      EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << path;
      EXPECT_NE(out.status().message().find(type), std::string::npos) << out.status().ToString();
      EXPECT_NE(out.status().message().find("only a regular file"), std::string::npos);
    }
    const struct stat after = StatOf(path);
    EXPECT_EQ(after.st_ino, before.st_ino) << path;
    EXPECT_EQ(after.st_mode, before.st_mode) << path;
  }
  close(sock);
  EXPECT_EQ(ReadFile(dir.File("target")), "target");
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"dangling", "dir", "fifo", "link", "sock", "target"}));
}

TEST(OutputFile, AnExistingFileNeedsForceAndTheInputNever) {
  TempDir dir;
  WriteFile(dir.File("old"), "old");
  auto out = OutputFile::OpenPath(dir.File("old"), false, NoInput());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("--force"), std::string::npos) << out.status().ToString();
  auto same = OutputFile::OpenPath(dir.File("old"), true, StatOf(dir.File("old")));
  ASSERT_FALSE(same.ok());
  EXPECT_NE(same.status().message().find("is the input"), std::string::npos);
  for (const char* bad : {"", "/", "a/", "."}) {
    EXPECT_EQ(OutputFile::OpenPath(bad, true, NoInput()).status().code(), StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(OutputFile::OpenPath(dir.File("no/such/dir/m"), false, NoInput()).status().code(),
            StatusCode::kIoError);
  EXPECT_EQ(ReadFile(dir.File("old")), "old");
}

// As root, the replaced file's owner and group carry over; a group that
// cannot be kept never widens access.
TEST(OutputFile, AReplacementKeepsOwnerAndGroupWherePermitted) {
  if (geteuid() != 0) GTEST_SKIP() << "chown to another user needs root";
  TempDir dir;
  const std::string path = dir.File("m");
  WriteFile(path, "old");
  ASSERT_EQ(chown(path.c_str(), 1234, 5678), 0);
  ASSERT_EQ(chmod(path.c_str(), 0604), 0);
  auto out = MustOpen(path, true);
  ASSERT_NE(out, nullptr);
  ASSERT_TRUE(out->Commit(0, false).ok());
  const struct stat st = StatOf(path);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_mode & 07777, 0604u);
}

// A user who may not set the old group (not a member) gets a file in its own
// group, whose bits are then no wider than both the old group's and
// everyone's: 0640 becomes 0600, 0644 stays 0644.
TEST(OutputFile, TheGroupBitsNarrowWhenTheGroupCannotBeKept) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a file in a group the user is not in: set up as root";
  TempDir dir;
  constexpr uid_t kUser = 65534;
  constexpr gid_t kForeignGroup = 5678;
  ASSERT_EQ(chown(dir.path().c_str(), kUser, kUser), 0);
  for (const auto& [mode, expected] : {std::pair<mode_t, mode_t>{0640, 0600}, {0664, 0644}, {0604, 0604}}) {
    const std::string path = dir.File("m");
    WriteFile(path, "old");
    ASSERT_EQ(chown(path.c_str(), kUser, kForeignGroup), 0);
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (setgroups(0, nullptr) != 0 || setgid(kUser) != 0 || setuid(kUser) != 0) _exit(10);
      auto out = OutputFile::OpenPath(path, true, NoInput());
      if (!out.ok()) _exit(11);
      _exit((*out)->Commit(0, false).ok() ? 0 : 12);
    }
    ASSERT_EQ(WaitChild(pid), 0);
    const struct stat st = StatOf(path);
    EXPECT_EQ(st.st_uid, kUser);
    EXPECT_EQ(st.st_gid, kUser) << "the foreign group could not be kept";
    EXPECT_EQ(st.st_mode & 07777, expected) << std::oct << mode;
  }
}

TEST(OutputFile, RemoveTemporaryOutputsRemovesNamedTemporaries) {
  PretendMissing pretend("o_tmpfile");
  TempDir dir;
  WriteFile(dir.File("kept"), "kept");
  auto a = MustOpen(dir.File("a"), false);
  auto b = MustOpen(dir.File("kept"), true);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(dir.List().size(), 3u);
  RemoveTemporaryOutputs();  // what safe-convert's signal handler calls
  EXPECT_EQ(dir.List(), std::vector<std::string>{"kept"});
  // Those conversions cannot complete any more, and leave nothing.
  EXPECT_EQ(a->Commit(0, false).code(), StatusCode::kIoError);
  EXPECT_EQ(b->Commit(0, false).code(), StatusCode::kIoError);
  a.reset();
  b.reset();
  EXPECT_EQ(dir.List(), std::vector<std::string>{"kept"});
  EXPECT_EQ(ReadFile(dir.File("kept")), "kept");
  // A later conversion is unaffected.
  auto c = MustOpen(dir.File("c"), false);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Commit(0, false).ok());
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"c", "kept"}));
}

// A descriptor gets nothing until Commit, then the output in one pass.
TEST(OutputFile, ADescriptorGetsTheOutputOnlyAtCommit) {
  for (const char* pretend_what : {"", "o_tmpfile"}) {
    PretendMissing pretend(pretend_what);
    TempDir dir;
    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_NONBLOCK), 0);
    const std::string bytes(100000, 'x');
    {
      auto out = OutputFile::OpenDescriptor(pipe_fds[1]);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      EXPECT_EQ((*out)->kind(), TempKind::kSpool);
      WriteAll((*out)->fd(), bytes);
      char c;
      EXPECT_EQ(read(pipe_fds[0], &c, 1), -1) << "nothing before Commit";
    }
    char c;
    EXPECT_EQ(read(pipe_fds[0], &c, 1), -1) << "nothing after a discard";
    std::string got;
    {
      auto out = OutputFile::OpenDescriptor(pipe_fds[1]);
      ASSERT_TRUE(out.ok());
      WriteAll((*out)->fd(), bytes + "tail");
      // The pipe holds 64 KiB: drain it while Commit writes (a consumer).
      std::thread reader([&] {
        char buf[4096];
        fcntl(pipe_fds[0], F_SETFL, 0);
        ssize_t n;
        while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
      });
      Status s = (*out)->Commit(bytes.size(), false);
      EXPECT_TRUE(s.ok()) << s.ToString();
      close(pipe_fds[1]);
      reader.join();
    }
    EXPECT_EQ(got, bytes);
    close(pipe_fds[0]);
    EXPECT_EQ(dir.List(), std::vector<std::string>{});
  }
}

TEST(ReserveOutputSpace, ReservesTheDeclaredSizeOrRefuses) {
  TempDir dir;
  auto out = MustOpen(dir.File("m"), false);
  ASSERT_NE(out, nullptr);
  ASSERT_TRUE(ReserveOutputSpace(out->fd(), 3 << 20, 0).ok());
  struct stat st;
  ASSERT_EQ(fstat(out->fd(), &st), 0);
  EXPECT_EQ(st.st_size, 3 << 20);
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, 3u << 20) << "blocks allocated, not a hole";
  Status cap = ReserveOutputSpace(out->fd(), 5000, 4096);
  EXPECT_EQ(cap.code(), StatusCode::kLimitExceeded);
  EXPECT_NE(cap.message().find("over the limit of 4096"), std::string::npos);
  Status huge = ReserveOutputSpace(out->fd(), 1ull << 60, 0);
  EXPECT_EQ(huge.code(), StatusCode::kLimitExceeded) << huge.ToString();
  // Commit trims the reservation to the bytes written.
  ASSERT_TRUE(out->Commit(10, false).ok());
  EXPECT_EQ(StatOf(dir.File("m")).st_size, 10);
}

// A memfd's file system states no size (statvfs f_blocks 0, f_bavail 0):
// that is no free space to check, not none free; fallocate decides.
TEST(ReserveOutputSpace, AFileSystemOfNoStatedSizeIsNotFull) {
  const int fd = memfd_create("out", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct statvfs fs;
  ASSERT_EQ(fstatvfs(fd, &fs), 0);
  if (fs.f_blocks != 0) {
    close(fd);
    GTEST_SKIP() << "this kernel states a size for memfds";
  }
  Status st = ReserveOutputSpace(fd, 1 << 20, 0);
  EXPECT_TRUE(st.ok()) << st.ToString();
  struct stat sb;
  ASSERT_EQ(fstat(fd, &sb), 0);
  EXPECT_EQ(sb.st_size, 1 << 20);
  close(fd);
}

TEST(ReserveOutputSpace, RespectsTheFileSizeLimit) {
  TempDir dir;
  // In a child: RLIMIT_FSIZE is process-wide.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_DFL);  // a write over the limit would kill us: none may happen
    struct rlimit rl = {1 << 20, RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(10);
    auto out = OutputFile::OpenPath(dir.File("m"), false, NoInput());
    if (!out.ok()) _exit(11);
    Status s = ReserveOutputSpace((*out)->fd(), 2 << 20, 0);
    if (s.code() != StatusCode::kLimitExceeded) _exit(12);
    if (s.message().find("ulimit -f") == std::string::npos) _exit(13);
    if (!ReserveOutputSpace((*out)->fd(), 1 << 20, 0).ok()) _exit(14);
    _exit(0);
  }
  EXPECT_EQ(WaitChild(pid), 0);
  EXPECT_EQ(dir.List(), std::vector<std::string>{});
}

}  // namespace
}  // namespace safemodel::testing
