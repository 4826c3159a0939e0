#include "converter/worker_limits.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proto/base/byte_reader.h"
#include "proto/base/text.h"

namespace safemodel {

namespace {

Finding Note(std::string message) {
  Finding f;
  f.severity = Finding::Severity::kNote;
  f.rule = "limits.inherited";
  f.location = "worker";
  f.message = std::move(message);
  return f;
}

// The hard limit this process passes on, or UINT64_MAX for none.
uint64_t HardLimit(int resource) {
  struct rlimit rl;
  if (getrlimit(resource, &rl) != 0 || rl.rlim_max == RLIM_INFINITY) return UINT64_MAX;
  return static_cast<uint64_t>(rl.rlim_max);
}

}  // namespace

Result<WorkerLimits> FitWorkerLimits(uint64_t input_size, uint64_t memory_limit, uint64_t cpu_seconds) {
  WorkerLimits out;
  out.memory_limit = memory_limit;
  out.cpu_seconds = cpu_seconds;
  uint64_t wanted = 0;
  if (!CheckedAdd(input_size, memory_limit, &wanted) || !CheckedAdd(wanted, kAddressSpaceSlack, &wanted)) {
    return Status::InvalidArgument("the memory limit overflows");
  }
  out.address_space = wanted;
  const uint64_t as_hard = HardLimit(RLIMIT_AS);
  if (as_hard < wanted) {
    const uint64_t beside_input = as_hard > input_size ? as_hard - input_size : 0;
    if (beside_input < kAddressSpaceFloor + kMinMemoryLimit) {
      return Status::LimitExceeded(
          "the inherited hard address-space limit of " + Num(as_hard) + " bytes (`ulimit -v`) leaves " +
          Num(beside_input) + " bytes beside the worker's map of this " + Num(input_size) +
          "-byte input; it needs at least " + Num(kAddressSpaceFloor + kMinMemoryLimit) +
          " (libraries and stacks, and the smallest --memory-limit): raise it with `ulimit -H -v`");
    }
    out.address_space = as_hard;
    out.memory_limit = std::min(memory_limit, beside_input - kAddressSpaceFloor);
    out.notes.push_back(Note("the worker's address space is limited to " + Num(as_hard) +
                             " bytes, the inherited hard limit (`ulimit -v`), instead of " +
                             Num(wanted) + "; its memory limit is " + Num(out.memory_limit) +
                             " bytes (--memory-limit asked for " + Num(memory_limit) + ")"));
  }
  // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL at the hard one, which
  // must stay above it for the worker's CPU limit to be reported as such.
  const uint64_t cpu_hard = HardLimit(RLIMIT_CPU);
  if (cpu_hard != UINT64_MAX && cpu_hard < cpu_seconds + 1) {
    out.cpu_seconds = cpu_hard >= 2 ? cpu_hard - 1 : 1;
    out.cpu_lowered = true;
    out.notes.push_back(Note("the worker's CPU limit is " + Num(out.cpu_seconds) + " s instead of " +
                             Num(cpu_seconds) + " s, to fit the inherited hard limit of " +
                             Num(cpu_hard) + " s (`ulimit -t`)"));
  }
  return out;
}

Status CheckSpareDescriptors(int any_fd) {
  int fds[kConversionDescriptors];
  int n = 0;
  int error = 0;
  for (; n < kConversionDescriptors; ++n) {
    fds[n] = fcntl(any_fd, F_DUPFD_CLOEXEC, 0);
    if (fds[n] < 0) {
      error = errno;
      break;
    }
  }
  for (int i = 0; i < n; ++i) close(fds[i]);
  if (n == kConversionDescriptors) return Status::Ok();
  struct rlimit rl = {};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (error == EMFILE || error == ENFILE) {
    return Status::LimitExceeded("a conversion needs " + Num(kConversionDescriptors) +
                                 " more file descriptors, and this process may open only " +
                                 Num(rl.rlim_cur) + " in all (RLIMIT_NOFILE): raise it with `ulimit -n`");
  }
  return Status::IoError(std::string("cannot duplicate a descriptor: ") + std::strerror(error));
}

}  // namespace safemodel
