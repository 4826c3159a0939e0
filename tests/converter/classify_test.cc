// Classify (converter/outcome.h): the verdict on a worker's run, from
// outcomes built by hand. No process is started: each cause, and the order
// in which causes win over one another, is checked directly.
#include "converter/outcome.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <string>

namespace safemodel {
namespace {

using ExitKind = sandbox::Worker::Exit::Kind;
using Kind = WorkerOutcome::Kind;

sandbox::Worker::Exit Exited(int code) {
  sandbox::Worker::Exit e;
  e.kind = ExitKind::kExited;
  e.exit_code = code;
  e.cpu_seconds = 0.5;
  return e;
}

sandbox::Worker::Exit Signaled(int sig, bool by_us, double cpu_seconds = 0.5) {
  sandbox::Worker::Exit e;
  e.kind = ExitKind::kSignaled;
  e.signal = sig;
  e.killed_by_us = by_us;
  e.cpu_seconds = cpu_seconds;
  return e;
}

// A run whose stream ended as `stream` did and whose worker ended as `exit`;
// the input unchanged, a 1000 ms timeout and a 10 s CPU limit.
struct FakeRun {
  StreamOutcome stream;
  RunOutcome run;
  explicit FakeRun(sandbox::Worker::Exit exit) {
    run.stream = &stream;
    run.exit = exit;
    run.timeout_ms = 1000;
    run.limits.cpu_seconds = 10;
    run.limits.memory_limit = 1ull << 30;
  }
  // The stream a correct worker sends: DONE, then the end of the channel.
  FakeRun& Done() {
    stream.report = StreamOutcome::Report::kDone;
    stream.End(StreamEnd::kEof);
    return *this;
  }
  Verdict Classify() const { return safemodel::Classify(run); }
};

void ExpectVerdict(const Verdict& v, StatusCode code, const std::string& message, Kind kind) {
  EXPECT_EQ(v.status.code(), code) << v.status.ToString();
  EXPECT_NE(v.status.message().find(message), std::string::npos)
      << "expected '" << message << "' in: " << v.status.message();
  EXPECT_EQ(v.kind, kind) << WorkerOutcomeName(v.kind);
}

TEST(Classify, ACompleteResultFromAWorkerThatExitedZeroIsOk) {
  FakeRun r(Exited(0));
  r.Done();
  Verdict v = r.Classify();
  EXPECT_TRUE(v.status.ok()) << v.status.ToString();
  EXPECT_EQ(v.kind, Kind::kExited);
  EXPECT_EQ(v.syscall_nr, -1);
}

TEST(Classify, AnInputThatChangedExplainsEverythingElse) {
  FakeRun r(Signaled(SIGBUS, false));
  r.stream.End(StreamEnd::kTimeout);
  r.stream.violation = sandbox::Violation{257, 0xc000003e, 0};
  r.run.input_unchanged = Status::IoError("the input changed during the conversion");
  ExpectVerdict(r.Classify(), StatusCode::kIoError, "the input changed", Kind::kSignaled);
}

TEST(Classify, TimeoutFromTheStreamOrFromTheWait) {
  FakeRun stream_timeout(Signaled(SIGKILL, true));
  stream_timeout.stream.End(StreamEnd::kTimeout);
  stream_timeout.stream.violation = sandbox::Violation{257, 0, 0};
  ExpectVerdict(stream_timeout.Classify(), StatusCode::kTimeout,
                "exceeded its time limit of 1000 ms; the worker was killed", Kind::kTimeout);

  sandbox::Worker::Exit waited = Signaled(SIGKILL, true);
  waited.kind = ExitKind::kTimeout;
  FakeRun wait_timeout(waited);
  wait_timeout.Done();
  ExpectVerdict(wait_timeout.Classify(), StatusCode::kTimeout, "1000 ms", Kind::kTimeout);
}

TEST(Classify, AFailedWaitIsInternal) {
  sandbox::Worker::Exit e;
  e.kind = ExitKind::kWaitFailed;
  e.error = "wait4 on the worker (did the host reap it?): No child processes";
  FakeRun r(e);
  r.Done();
  ExpectVerdict(r.Classify(), StatusCode::kInternal, "did the host reap it?", Kind::kUnknown);
}

TEST(Classify, AViolationFrameNamesTheCallAndBeatsWhatFollows) {
  FakeRun r(Signaled(SIGSYS, false));
  r.stream.violation = sandbox::Violation{257, 0xc000003e, 0x1234};
  r.stream.End(StreamEnd::kProtocolError, Status::Malformed("bad frame magic from the worker"));
  Verdict v = r.Classify();
  ExpectVerdict(v, StatusCode::kSandboxViolation,
                "it attempted the forbidden system call 257 (openat)", Kind::kSeccomp);
  EXPECT_EQ(v.syscall_nr, 257);
  EXPECT_EQ(v.syscall_name, "openat");
}

TEST(Classify, AnUnknownSyscallNumberIsSaidToBeUnknown) {
  FakeRun r(Signaled(SIGSYS, false));
  r.stream.violation = sandbox::Violation{99999, 0xc000003e, 0};
  r.stream.End(StreamEnd::kEof);
  Verdict v = r.Classify();
  ExpectVerdict(v, StatusCode::kSandboxViolation, "system call 99999 (unknown)", Kind::kSeccomp);
  EXPECT_EQ(v.syscall_nr, 99999);
  EXPECT_EQ(v.syscall_name, "");
}

TEST(Classify, SigsysWithoutAFrameIsAForeignAbi) {
  FakeRun r(Signaled(SIGSYS, false));
  r.stream.End(StreamEnd::kEof);
  Verdict v = r.Classify();
  ExpectVerdict(v, StatusCode::kSandboxViolation, "a system call of a foreign architecture or ABI",
                Kind::kSeccomp);
  EXPECT_EQ(v.syscall_nr, -1);
}

TEST(Classify, AChannelHeldOpenAfterTheExitBeatsTheOutputAndTheExit) {
  FakeRun r(Exited(0));
  r.stream.report = StreamOutcome::Report::kDone;
  r.stream.End(StreamEnd::kHeldOpen);
  r.run.held_open_detail = "it was killed with the worker's process group";
  ExpectVerdict(r.Classify(), StatusCode::kWorkerCrashed,
                "held the result channel open; it was killed with the worker's process group; "
                "nothing was written",
                Kind::kExited);
}

TEST(Classify, OutputFailuresAreTheParentsAndTheWorkerWasKilled) {
  FakeRun io(Signaled(SIGKILL, true));
  io.stream.End(StreamEnd::kOutputIoError, Status::IoError("writing the output failed: ENOSPC"));
  ExpectVerdict(io.Classify(), StatusCode::kIoError, "writing the output failed", Kind::kKilled);

  FakeRun limit(Signaled(SIGKILL, true));
  limit.stream.End(StreamEnd::kOutputLimit, Status::LimitExceeded("needs 4 TiB, 3 GiB bytes free"));
  ExpectVerdict(limit.Classify(), StatusCode::kLimitExceeded, "bytes free", Kind::kKilled);
}

TEST(Classify, ASignalFromOutsideBeatsMissingIsolationAndAnInvalidResult) {
  FakeRun r(Signaled(SIGKILL, false));
  r.stream.End(StreamEnd::kProtocolError, Status::Malformed("the worker channel ended in the middle"));
  ExpectVerdict(r.Classify(), StatusCode::kWorkerCrashed,
                "killed by SIGKILL, which it cannot send itself", Kind::kSignaled);

  FakeRun isolation(Signaled(SIGTERM, false));
  isolation.stream.End(StreamEnd::kIsolationRefused,
                       Status(StatusCode::kSandboxSetupFailed, "the worker lacks required isolation"));
  ExpectVerdict(isolation.Classify(), StatusCode::kWorkerCrashed,
                "killed by SIGTERM, which it cannot send itself (another process sent it)",
                Kind::kSignaled);
}

TEST(Classify, SignalsAreNamedForWhatSendsThem) {
  FakeRun xcpu(Signaled(SIGXCPU, false));
  xcpu.stream.End(StreamEnd::kEof);
  ExpectVerdict(xcpu.Classify(), StatusCode::kLimitExceeded,
                "exceeded its CPU time limit of 10 s", Kind::kSignaled);

  FakeRun hard_cpu(Signaled(SIGKILL, false, 10.0));
  hard_cpu.run.limits.cpu_lowered = true;
  hard_cpu.stream.End(StreamEnd::kEof);
  ExpectVerdict(hard_cpu.Classify(), StatusCode::kLimitExceeded,
                "CPU time limit of 10 s (lowered to fit `ulimit -t`)", Kind::kSignaled);

  FakeRun bus(Signaled(SIGBUS, false));
  bus.stream.End(StreamEnd::kEof);
  ExpectVerdict(bus.Classify(), StatusCode::kIoError, "SIGBUS in its map of the file",
                Kind::kSignaled);

  FakeRun segv(Signaled(SIGSEGV, false));
  segv.stream.End(StreamEnd::kEof);
  ExpectVerdict(segv.Classify(), StatusCode::kWorkerCrashed, "the worker crashed with SIGSEGV",
                Kind::kSignaled);

  FakeRun oom(Signaled(SIGKILL, false));
  oom.stream.End(StreamEnd::kEof);
  ExpectVerdict(oom.Classify(), StatusCode::kWorkerCrashed, "out-of-memory killer",
                Kind::kSignaled);
}

TEST(Classify, MissingIsolationBeatsAnInvalidResult) {
  FakeRun r(Signaled(SIGKILL, true));
  r.stream.End(StreamEnd::kIsolationRefused,
               Status(StatusCode::kSandboxSetupFailed, "the worker lacks required isolation: userns"));
  r.stream.End(StreamEnd::kProtocolError, Status::Malformed("ignored: the stream had ended"));
  ExpectVerdict(r.Classify(), StatusCode::kSandboxSetupFailed, "lacks required isolation: userns",
                Kind::kKilled);
}

TEST(Classify, AnInvalidResultBeatsOurKillAndTheWorkersOwnReport) {
  FakeRun r(Signaled(SIGKILL, true));
  r.stream.report = StreamOutcome::Report::kError;
  r.stream.worker_error = Status::Refused("pickle.global os.system");
  r.stream.End(StreamEnd::kProtocolError, Status::Malformed("frame after the end of the result"));
  ExpectVerdict(r.Classify(), StatusCode::kWorkerCrashed,
                "the worker sent an invalid result (frame after the end of the result); nothing "
                "was written",
                Kind::kSignaled);
}

TEST(Classify, OurOwnKillWithoutAnotherCauseIsReportedAsTheSignal) {
  FakeRun r(Signaled(SIGKILL, true));
  r.stream.End(StreamEnd::kEof);
  ExpectVerdict(r.Classify(), StatusCode::kWorkerCrashed, "SIGKILL", Kind::kSignaled);
}

TEST(Classify, TheWorkersReportBeatsItsExitCode) {
  FakeRun r(Exited(0));
  r.stream.report = StreamOutcome::Report::kError;
  r.stream.worker_error = Status::Refused("refused, but exiting 0");
  r.stream.End(StreamEnd::kEof);
  ExpectVerdict(r.Classify(), StatusCode::kRefused, "refused, but exiting 0", Kind::kExited);
}

// A valid hand-off (the stream reader accepted it) is the verdict that
// starts the HDF5 worker, whatever the lean worker's exit code; a crash or
// an invalid stream still beats it.
TEST(Classify, AHandOffIsItsOwnVerdict) {
  FakeRun r(Exited(1));
  r.stream.report = StreamOutcome::Report::kHandOff;
  r.stream.End(StreamEnd::kEof);
  Verdict v = r.Classify();
  EXPECT_TRUE(v.hand_off);
  ExpectVerdict(v, StatusCode::kUnsupported, "needs the HDF5 worker", Kind::kExited);

  FakeRun crashed(Signaled(SIGSEGV, false));
  crashed.stream.report = StreamOutcome::Report::kHandOff;
  crashed.stream.End(StreamEnd::kEof);
  v = crashed.Classify();
  EXPECT_FALSE(v.hand_off);
  ExpectVerdict(v, StatusCode::kWorkerCrashed, "SIGSEGV", Kind::kSignaled);

  FakeRun broken(Exited(1));
  broken.stream.report = StreamOutcome::Report::kHandOff;
  broken.stream.End(StreamEnd::kProtocolError,
                    Status::Malformed("frame after the end of the result"));
  v = broken.Classify();
  EXPECT_FALSE(v.hand_off);
  ExpectVerdict(v, StatusCode::kWorkerCrashed, "frame after the end of the result", Kind::kExited);
}

TEST(Classify, ANonZeroExitWithoutAReportIsACrash) {
  FakeRun r(Exited(3));
  r.stream.End(StreamEnd::kEof);
  ExpectVerdict(r.Classify(), StatusCode::kWorkerCrashed,
                "the worker exited with code 3 without reporting a result", Kind::kExited);
}

TEST(Classify, AZeroExitWithoutDoneIsIncomplete) {
  FakeRun r(Exited(0));
  r.stream.header_seen = true;
  r.stream.End(StreamEnd::kEof);
  ExpectVerdict(r.Classify(), StatusCode::kWorkerCrashed,
                "the worker ended without completing its result", Kind::kExited);
}

TEST(StreamOutcome, TheFirstCauseWins) {
  StreamOutcome s;
  EXPECT_FALSE(s.End(StreamEnd::kOutputLimit, Status::LimitExceeded("first")));
  EXPECT_FALSE(s.End(StreamEnd::kProtocolError, Status::Malformed("second")));
  EXPECT_FALSE(s.End(StreamEnd::kEof));
  EXPECT_EQ(s.end(), StreamEnd::kOutputLimit);
  EXPECT_EQ(s.cause().message(), "first");
}

TEST(WorkerOutcomeName, EveryKindHasItsReportName) {
  EXPECT_STREQ(WorkerOutcomeName(Kind::kNotStarted), "not_started");
  EXPECT_STREQ(WorkerOutcomeName(Kind::kExited), "exited");
  EXPECT_STREQ(WorkerOutcomeName(Kind::kSignaled), "signaled");
  EXPECT_STREQ(WorkerOutcomeName(Kind::kSeccomp), "seccomp");
  EXPECT_STREQ(WorkerOutcomeName(Kind::kTimeout), "timeout");
  EXPECT_STREQ(WorkerOutcomeName(Kind::kKilled), "killed");
  EXPECT_STREQ(WorkerOutcomeName(Kind::kUnknown), "unknown");
}

}  // namespace
}  // namespace safemodel
