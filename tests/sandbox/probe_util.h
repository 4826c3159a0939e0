// Running tests/sandbox/sandbox_probe.cc: directly through the supervisor API
// (sandbox::Spawn + FrameReader + Worker::Wait) or through ConvertFile with
// the probe as the worker. The probe's behaviour is selected by its input
// file, "probe:<mode>[ <argument>]".
#ifndef SAFEMODEL_TESTS_SANDBOX_PROBE_UTIL_H_
#define SAFEMODEL_TESTS_SANDBOX_PROBE_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "safemodel/convert.h"
#include "sandbox/frame_io.h"
#include "sandbox/observe.h"
#include "sandbox/supervisor.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {

// Absolute path of the sandbox-probe executable.
std::string ProbePath();

// Writes "probe:<mode_line>\n" as `dir`/probe-input and returns its path.
std::string WriteProbeInput(const TempDir& dir, const std::string& mode_line);

struct ProbeFrame {
  sandbox::FrameType type;
  std::string payload;
};

struct ProbeRun {
  bool spawned = false;
  std::string spawn_error;
  std::vector<ProbeFrame> frames;
  sandbox::FrameReader::Result end = sandbox::FrameReader::Result::kError;
  std::string reader_error;
  sandbox::Worker::Exit exit;
  // Decoded from a VIOLATION frame, if one came.
  bool violation = false;
  uint32_t syscall_nr = 0;
  uint32_t arch = 0;
  // The LOCKED frame, if one came: the worker's claim and what /proc showed
  // before the probe was let go.
  bool locked = false;
  std::string claimed;
  sandbox::IsolationObservation observed;
  // Decoded from the first ERROR frame, if one came.
  bool error_frame = false;
  uint32_t error_code = 0;
  std::string error_message;

  bool SignaledWith(int sig) const {
    return exit.kind == sandbox::Worker::Exit::Kind::kSignaled && exit.signal == sig;
  }
  std::string Describe() const;  // for assertion messages
};

struct ProbeOptions {
  std::vector<std::string> flags;  // the probe's flags without "--", e.g. "unconfined"
  uint64_t cpu_seconds = 0;         // --cpu-seconds (0: no limit)
  std::chrono::milliseconds timeout{20'000};
  pid_t parent_pid = 0;  // 0 = this process
};

// Runs the probe through the supervisor API and reads its whole stream.
ProbeRun RunProbe(const std::string& mode_line, const ProbeOptions& options = {});

// Converts a probe input with the probe as the worker. `out_dir` receives the
// output "out.safemodel" (and nothing else, on failure).
ConvertReport ConvertWithProbe(const std::string& mode_line, const TempDir& out_dir,
                               ConvertOptions options = {});

// Entries of a directory (hidden ones included) other than `except`.
std::vector<std::string> Leftovers(const TempDir& dir);

// Number of open fds of this process.
int CountOpenFds();

// Contents of /proc/<pid>/status, or "" if it is gone.
std::string ProcStatus(pid_t pid);

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_SANDBOX_PROBE_UTIL_H_
