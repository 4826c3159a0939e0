// sandbox/observe.h's peak-memory reading: the VmHWM parser, and what it
// reads of a live child and of one that has exited.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "sandbox/observe.h"

namespace safemodel::sandbox {
namespace {

TEST(ParseVmHwm, ReadsTheFieldInBytes) {
  EXPECT_EQ(ParseVmHwmBytes("Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    7640 kB\nVmRSS:\t 7000 kB\n"),
            7640ull * 1024);
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:\t1 kB\n"), 1024u) << "at the very start";
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:\t0 kB"), 0u);
  EXPECT_EQ(ParseVmHwmBytes("VmHWM:\t999999999999999 kB\n"), 999999999999999ull * 1024) << "15 digits";
}

TEST(ParseVmHwm, RefusesAnythingElse) {
  EXPECT_FALSE(ParseVmHwmBytes(""));
  EXPECT_FALSE(ParseVmHwmBytes("Name:\tx\nVmRSS:\t 7000 kB\n")) << "absent (an exited process)";
  EXPECT_FALSE(ParseVmHwmBytes("Name:\tVmHWM:\t5 kB\n")) << "only at a line's start";
  EXPECT_FALSE(ParseVmHwmBytes("VmHWM:\t kB\n")) << "no digits";
  EXPECT_FALSE(ParseVmHwmBytes("VmHWM:\t12 MB\n")) << "another unit";
  EXPECT_FALSE(ParseVmHwmBytes("VmHWM:\t12")) << "cut";
  EXPECT_FALSE(ParseVmHwmBytes("VmHWM:\t-12 kB\n"));
  EXPECT_FALSE(ParseVmHwmBytes("VmHWM:\t1000000000000000 kB\n")) << "16 digits: could overflow";
  EXPECT_FALSE(ParseVmHwmBytes("VmHWM:\t99999999999999999999999 kB\n"));
}

// A child that touches `bytes`, frees them, then waits for a byte on `fd`.
pid_t StartToucher(uint64_t bytes, int fd) {
  const pid_t pid = fork();
  if (pid != 0) return pid;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) _exit(2);
  std::memset(p, 1, bytes);
  munmap(p, bytes);
  char c;
  _exit(read(fd, &c, 1) == 1 ? 0 : 1);
}

TEST(ObservePeakResidentBytes, IsALiveChildsOwnPeakAndNothingOnceItExited) {
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = StartToucher(64ull << 20, go[0]);
  ASSERT_GT(child, 0);
  // The child has touched its memory once its status shows it.
  std::optional<uint64_t> peak;
  for (int i = 0; i < 5000 && !(peak && *peak >= (64ull << 20)); ++i) {
    peak = ObservePeakResidentBytes(child);
    usleep(1000);
  }
  ASSERT_TRUE(peak.has_value());
  EXPECT_GE(*peak, 64ull << 20) << "touched, then unmapped: still its peak";
  ASSERT_EQ(write(go[1], "x", 1), 1);
  // Exited, not yet reaped: a zombie has no memory to read.
  siginfo_t info = {};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(ObservePeakResidentBytes(child).has_value());
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(go[0]);
  close(go[1]);
  EXPECT_FALSE(ObservePeakResidentBytes(-1).has_value());
}

}  // namespace
}  // namespace safemodel::sandbox
