// File: safemodel/status.h
//
// Errors are values. Every fallible function in safemodel returns a `Status`
// or a `Result<T>`; nothing throws across a module boundary.
//
// The numeric values of `StatusCode` are a contract: they cross the process
// boundary between the sandboxed worker and the parent, and they map one to one
// onto the exit codes of `safe-convert` (see `ExitCodeFor`). Values are pinned
// and never renumbered; new codes are only appended.
//
// Example:
//   safemodel::Result<Model> model = safemodel::Model::Open("m.safemodel");
//   if (!model.ok()) {
//     std::cerr << model.status().ToString() << "\n";
//     return ExitCodeFor(model.status().code());
//   }
#ifndef SAFEMODEL_STATUS_H_
#define SAFEMODEL_STATUS_H_

#include <cstdint>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "safemodel/export.h"

namespace safemodel {

// Pinned values; see the file comment.
enum class StatusCode : uint32_t {
  kOk = 0,
  // The input carries code, a reference to code, or a reference outside
  // itself (external file, plugin). The findings name each one.
  kRefused = 1,
  // The caller used the API or the CLI wrongly (bad flag, missing argument).
  kInvalidArgument = 2,
  // The input is truncated, corrupt, or violates its own format.
  kMalformed = 3,
  // The input is well-formed but uses a feature safemodel does not convert.
  kUnsupported = 4,
  // A size, count, time or memory limit was reached.
  kLimitExceeded = 5,
  // The sandboxed worker was stopped by the sandbox (seccomp) or crashed.
  kSandboxViolation = 6,
  kWorkerCrashed = 7,
  // The wall-clock deadline passed; the worker was killed.
  kTimeout = 8,
  // Reading the input or writing the output failed at the OS level.
  kIoError = 9,
  // A bug in safemodel itself. Please report it.
  kInternal = 10,
  // The sandbox could not be set up (seccomp unavailable, spawn failed).
  kSandboxSetupFailed = 11,
};

// Returns a stable lower-case name such as "refused" or "limit_exceeded".
SAFEMODEL_EXPORT std::string_view StatusCodeName(StatusCode code);

// The same for a person, in words ("refused", "malformed input", "resource
// limit", "sandbox setup failed"): what tools print instead of the names.
SAFEMODEL_EXPORT std::string_view StatusCodeDescription(StatusCode code);

// safe-convert's exit codes (README "Exit codes"), pinned like the status
// codes they stand for.
inline constexpr int kExitConverted = 0;      // converted (or inspect/verify succeeded)
inline constexpr int kExitRefused = 1;        // the input carries code or refers to code
inline constexpr int kExitUsage = 2;          // bad flags, unusable IN or OUT
inline constexpr int kExitMalformed = 3;      // malformed or unsupported input
inline constexpr int kExitLimit = 4;          // a size, time or memory limit
inline constexpr int kExitWorkerStopped = 5;  // the sandbox stopped the worker, or it crashed
inline constexpr int kExitIoError = 6;        // I/O error: output, report, or the input changed
inline constexpr int kExitInternal = 70;      // a bug, or the sandbox could not be set up

// The exit code for a status code.
SAFEMODEL_EXPORT int ExitCodeFor(StatusCode code);

class [[nodiscard]] SAFEMODEL_EXPORT Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status Refused(std::string msg) { return {StatusCode::kRefused, std::move(msg)}; }
  static Status InvalidArgument(std::string msg) {
    return {StatusCode::kInvalidArgument, std::move(msg)};
  }
  static Status Malformed(std::string msg) { return {StatusCode::kMalformed, std::move(msg)}; }
  static Status Unsupported(std::string msg) { return {StatusCode::kUnsupported, std::move(msg)}; }
  static Status LimitExceeded(std::string msg) {
    return {StatusCode::kLimitExceeded, std::move(msg)};
  }
  static Status IoError(std::string msg) { return {StatusCode::kIoError, std::move(msg)}; }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "malformed: npy header is not terminated by a newline"
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(std::string_view context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// A value or an error. Mirrors absl::StatusOr: ok(), status(), value(), *, ->.
// Accessing the value of an error Result is a programming error and aborts.
template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::decay_t<T>, Status>, "Result<Status> is not allowed");

 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (status_.ok()) status_ = Status::Internal("Result constructed from an OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const& { return status_; }
  Status status() && { return std::move(status_); }

  T& value() & { return Checked(); }
  const T& value() const& { return const_cast<Result*>(this)->Checked(); }
  T&& value() && { return std::move(Checked()); }

  T& operator*() & { return Checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->Checked(); }
  T* operator->() { return &Checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->Checked(); }

 private:
  T& Checked();
  std::optional<T> value_;
  Status status_;
};

namespace internal {
[[noreturn]] SAFEMODEL_EXPORT void DieOnBadResultAccess(const Status& status);
}  // namespace internal

template <typename T>
T& Result<T>::Checked() {
  if (!value_.has_value()) internal::DieOnBadResultAccess(status_);
  return *value_;
}

}  // namespace safemodel

#define SAFEMODEL_CONCAT_INNER_(a, b) a##b
#define SAFEMODEL_CONCAT_(a, b) SAFEMODEL_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define SAFEMODEL_RETURN_IF_ERROR(expr)                        \
  do {                                                         \
    ::safemodel::Status safemodel_status_ = (expr);            \
    if (!safemodel_status_.ok()) return safemodel_status_;     \
  } while (0)

// `lhs` = value of `rexpr` (a Result<T>), or returns its error.
#define SAFEMODEL_ASSIGN_OR_RETURN(lhs, rexpr) \
  SAFEMODEL_ASSIGN_OR_RETURN_IMPL_(SAFEMODEL_CONCAT_(safemodel_result_, __LINE__), lhs, rexpr)
#define SAFEMODEL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                      \
  if (!tmp.ok()) return std::move(tmp).status();           \
  lhs = std::move(tmp).value()

#endif  // SAFEMODEL_STATUS_H_
