// The worker's resource limits, fitted to the limits this process passes on.
//
// The worker inherits this process's hard limits and can only lower them. A
// caller under a hard `ulimit -v` or `ulimit -t` below what the options ask
// for gets a worker with the largest limits it may have, and a note in the
// report saying which limit was lowered and why; only when even the minimum
// does not fit is the conversion refused (kLimitExceeded naming the `ulimit`
// that would fix it). The worker applies the same clamp itself
// (sandbox/lockdown.cc), so it never fails to lock down for this reason.
#ifndef SAFEMODEL_CONVERTER_WORKER_LIMITS_H_
#define SAFEMODEL_CONVERTER_WORKER_LIMITS_H_

#include <cstdint>
#include <vector>

#include "safemodel/finding.h"
#include "safemodel/status.h"

namespace safemodel {

// Smallest --memory-limit: below it even a small npy cannot be converted.
inline constexpr uint64_t kMinMemoryLimit = 16ull << 20;
// Address space the worker needs besides its input map and its data by
// default: shared libraries, stacks, HDF5 and protobuf caches, allocator
// reserve.
inline constexpr uint64_t kAddressSpaceSlack = 1ull << 30;
// The least of that the worker can live with when an inherited limit forces
// it (measured: ~100-150 MiB of libraries and stacks before parsing).
inline constexpr uint64_t kAddressSpaceFloor = 256ull << 20;
// Descriptors a conversion opens besides the input, at its peak (the spawn):
// the output directory, the output, the result pipe (2), the control socket
// pair (2), three transient copies for the worker's fds 3, 4 and 5; and one
// to spare. (Afterwards: the pidfd and one /proc file at a time, fewer.)
inline constexpr int kConversionDescriptors = 10;

struct WorkerLimits {
  uint64_t address_space = 0;  // RLIMIT_AS for the worker
  uint64_t memory_limit = 0;   // the parsers' budget (--memory-limit)
  uint64_t cpu_seconds = 0;    // RLIMIT_CPU soft limit; the hard one is one more
  bool cpu_lowered = false;
  std::vector<Finding> notes;  // one per lowered limit (rule "limits.inherited")
};

// The limits for converting an input of `input_size` bytes with the given
// memory budget and CPU seconds, fitted to this process's hard RLIMIT_AS and
// RLIMIT_CPU.
Result<WorkerLimits> FitWorkerLimits(uint64_t input_size, uint64_t memory_limit, uint64_t cpu_seconds);

// kLimitExceeded, naming `ulimit -n`, unless kConversionDescriptors more
// descriptors can be opened now (checked by duplicating `any_fd`).
Status CheckSpareDescriptors(int any_fd);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_WORKER_LIMITS_H_
