#include "safemodel/status.h"

#include <cstdio>
#include <cstdlib>

#include "safemodel/display.h"

namespace safemodel {

std::string_view StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kRefused: return "refused";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kMalformed: return "malformed";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kLimitExceeded: return "limit_exceeded";
    case StatusCode::kSandboxViolation: return "sandbox_violation";
    case StatusCode::kWorkerCrashed: return "worker_crashed";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kIoError: return "io_error";
    case StatusCode::kInternal: return "internal";
    case StatusCode::kSandboxSetupFailed: return "sandbox_setup_failed";
  }
  return "unknown";
}

std::string_view StatusCodeDescription(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kRefused: return "refused";
    case StatusCode::kInvalidArgument: return "invalid request";
    case StatusCode::kMalformed: return "malformed input";
    case StatusCode::kUnsupported: return "unsupported input";
    case StatusCode::kLimitExceeded: return "resource limit";
    case StatusCode::kSandboxViolation: return "stopped by the sandbox";
    case StatusCode::kWorkerCrashed: return "the worker crashed";
    case StatusCode::kTimeout: return "time limit";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kInternal: return "internal error";
    case StatusCode::kSandboxSetupFailed: return "sandbox setup failed";
  }
  return "unknown error";
}

int ExitCodeFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return kExitConverted;
    case StatusCode::kRefused: return kExitRefused;
    case StatusCode::kInvalidArgument: return kExitUsage;
    case StatusCode::kMalformed:
    case StatusCode::kUnsupported: return kExitMalformed;
    case StatusCode::kLimitExceeded:
    case StatusCode::kTimeout: return kExitLimit;
    case StatusCode::kSandboxViolation:
    case StatusCode::kWorkerCrashed: return kExitWorkerStopped;
    case StatusCode::kIoError: return kExitIoError;
    case StatusCode::kInternal:
    case StatusCode::kSandboxSetupFailed: return kExitInternal;
  }
  return kExitInternal;
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string out(StatusCodeName(code_));
  out += ": ";
  out += message_;
  return out;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, std::move(msg));
}

namespace internal {
void DieOnBadResultAccess(const Status& status) {
  std::fprintf(stderr, "safemodel: value() called on an error Result: %s\n",
               EscapeForDisplay(status.ToString()).c_str());
  std::abort();
}
}  // namespace internal

}  // namespace safemodel
