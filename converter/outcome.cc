#include "converter/outcome.h"

#include <signal.h>
#include <string.h>

#include <utility>

#include "proto/base/text.h"

namespace safemodel {

const char* WorkerOutcomeName(WorkerOutcome::Kind kind) {
  switch (kind) {
    case WorkerOutcome::Kind::kNotStarted: return "not_started";
    case WorkerOutcome::Kind::kExited: return "exited";
    case WorkerOutcome::Kind::kSignaled: return "signaled";
    case WorkerOutcome::Kind::kSeccomp: return "seccomp";
    case WorkerOutcome::Kind::kTimeout: return "timeout";
    case WorkerOutcome::Kind::kKilled: return "killed";
    case WorkerOutcome::Kind::kUnknown: return "unknown";
  }
  return "unknown";
}

bool StreamOutcome::End(StreamEnd why, Status cause) {
  if (!ended_) {
    ended_ = true;
    end_ = why;
    cause_ = std::move(cause);
  }
  return false;
}

namespace {

using Kind = WorkerOutcome::Kind;
using ExitKind = sandbox::Worker::Exit::Kind;

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

WorkerOutcome::Kind KindOf(const sandbox::Worker::Exit& exit) {
  switch (exit.kind) {
    case sandbox::Worker::Exit::Kind::kExited: return WorkerOutcome::Kind::kExited;
    case sandbox::Worker::Exit::Kind::kSignaled: return WorkerOutcome::Kind::kSignaled;
    case sandbox::Worker::Exit::Kind::kTimeout: return WorkerOutcome::Kind::kTimeout;
    case sandbox::Worker::Exit::Kind::kWaitFailed: return WorkerOutcome::Kind::kUnknown;
  }
  return WorkerOutcome::Kind::kUnknown;
}

// How a worker that died by a signal is reported. The seccomp policy denies
// kill and tkill, so the worker cannot send itself a signal: a fault
// (SIGSEGV, SIGBUS, SIGILL, SIGFPE), abort() (SIGABRT), the kernel enforcing
// an rlimit (SIGXCPU; SIGKILL at the hard CPU limit) or the out-of-memory
// killer (SIGKILL), or another process.
Status SignalVerdict(const sandbox::Worker::Exit& exit, const WorkerLimits& limits) {
  const std::string name = SignalName(exit.signal);
  if (exit.signal == SIGXCPU ||
      (exit.signal == SIGKILL && exit.cpu_seconds >= static_cast<double>(limits.cpu_seconds))) {
    return Status::LimitExceeded("the worker exceeded its CPU time limit of " + Num(limits.cpu_seconds) +
                                 " s" + (limits.cpu_lowered ? " (lowered to fit `ulimit -t`)" : ""));
  }
  if (exit.signal == SIGBUS) {
    // The worker reads the input through a map; the input is unchanged (checked
    // first), so the storage failed under it.
    return Status::IoError("the worker could not read the input (SIGBUS in its map of the file: an "
                           "I/O error of the storage)");
  }
  if (exit.signal == SIGKILL) {
    return Status(StatusCode::kWorkerCrashed,
                  "the worker was killed by SIGKILL, which it cannot send itself: most likely the "
                  "kernel's out-of-memory killer (the worker may use " + Num(limits.memory_limit) +
                      " bytes, --memory-limit; a lower limit makes it fail cleanly instead), or "
                      "another process");
  }
  switch (exit.signal) {
    case SIGSEGV:
    case SIGILL:
    case SIGFPE:
    case SIGABRT:
    case SIGTRAP:
      return Status(StatusCode::kWorkerCrashed, "the worker crashed with " + name);
    default:
      return Status(StatusCode::kWorkerCrashed,
                    "the worker was killed by " + name +
                        ", which it cannot send itself (another process sent it)");
  }
}

Verdict Fail(Kind kind, Status status) { return {std::move(status), false, kind, -1, ""}; }

// The seccomp verdict: a VIOLATION frame names the call; a SIGSYS the
// worker did not get from us without one is the filter's KILL_PROCESS for a
// foreign architecture.
Verdict SeccompVerdict(const StreamOutcome& stream) {
  if (!stream.violation) {
    return Fail(Kind::kSeccomp, Status(StatusCode::kSandboxViolation,
                                       "the sandbox killed the worker (SIGSYS: a system call of a "
                                       "foreign architecture or ABI)"));
  }
  const uint32_t nr = stream.violation->syscall_nr;
  Verdict v;
  v.kind = Kind::kSeccomp;
  v.syscall_nr = static_cast<int>(nr);
  v.syscall_name = sandbox::SyscallName(static_cast<int>(nr));
  v.status = Status(StatusCode::kSandboxViolation,
                    "the sandbox stopped the worker: it attempted the forbidden system call " +
                        Num(nr) + " (" + (v.syscall_name.empty() ? "unknown" : v.syscall_name) + ")");
  return v;
}

}  // namespace

Verdict Classify(const RunOutcome& run) {
  const StreamOutcome& stream = *run.stream;
  const sandbox::Worker::Exit& exit = run.exit;
  const Kind kind = KindOf(exit);
  const StreamEnd end = stream.end();
  const bool signaled_from_outside = exit.kind == ExitKind::kSignaled && !exit.killed_by_us;
  if (!run.input_unchanged.ok()) return Fail(kind, run.input_unchanged);
  if (end == StreamEnd::kTimeout || exit.kind == ExitKind::kTimeout) {
    return Fail(Kind::kTimeout,
                Status(StatusCode::kTimeout, "the conversion exceeded its time limit of " +
                                                 Num(run.timeout_ms) + " ms; the worker was killed"));
  }
  if (exit.kind == ExitKind::kWaitFailed) return Fail(kind, Status::Internal(exit.error));
  if (stream.violation || (signaled_from_outside && exit.signal == SIGSYS)) {
    return SeccompVerdict(stream);
  }
  if (end == StreamEnd::kHeldOpen) {
    return Fail(kind, Status(StatusCode::kWorkerCrashed,
                             "the worker exited, but a process it started still held the result "
                             "channel open; " + run.held_open_detail + "; nothing was written"));
  }
  if (end == StreamEnd::kOutputIoError || end == StreamEnd::kOutputLimit) {
    return Fail(Kind::kKilled, stream.cause());
  }
  if (signaled_from_outside) return Fail(kind, SignalVerdict(exit, run.limits));
  if (end == StreamEnd::kIsolationRefused) return Fail(Kind::kKilled, stream.cause());
  if (end == StreamEnd::kProtocolError) {
    return Fail(kind, Status(StatusCode::kWorkerCrashed,
                             "the worker sent an invalid result (" + stream.cause().message() +
                                 "); nothing was written"));
  }
  if (exit.kind == ExitKind::kSignaled) return Fail(kind, SignalVerdict(exit, run.limits));
  if (stream.report == StreamOutcome::Report::kError) return Fail(kind, stream.worker_error);
  if (stream.report == StreamOutcome::Report::kHandOff) {
    Verdict v = Fail(kind, Status::Unsupported("the input needs the HDF5 worker"));
    v.hand_off = true;
    return v;
  }
  if (exit.exit_code != 0) {
    return Fail(kind, Status(StatusCode::kWorkerCrashed,
                             "the worker exited with code " +
                                 Num(static_cast<uint64_t>(exit.exit_code)) +
                                 " without reporting a result"));
  }
  if (stream.report != StreamOutcome::Report::kDone) {
    return Fail(kind, Status(StatusCode::kWorkerCrashed,
                             "the worker ended without completing its result"));
  }
  return {Status::Ok(), false, kind, -1, ""};
}

}  // namespace safemodel
