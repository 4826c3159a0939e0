// What the parent sees of a locked-down worker, read from /proc by the parent
// itself: the worker's own account of its isolation (its LOCKED frame) is a
// claim, this is the evidence.
//
// The worker stops after LockDown() and waits for the parent's go-ahead
// (lockdown.h), so this runs while the worker is alive, idle, and has not
// read its input. Nothing observed here can be undone by the worker: a
// seccomp filter and no-new-privs are permanent, and without capabilities it
// can regain neither an identity nor a namespace.
#ifndef SAFEMODEL_SANDBOX_OBSERVE_H_
#define SAFEMODEL_SANDBOX_OBSERVE_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace safemodel::sandbox {

// Layers the parent can observe, and what each requires (of every thread):
//   seccomp          /proc/<pid>/status Seccomp: 2 (a filter is installed)
//   no_new_privs     NoNewPrivs: 1
//   no_capabilities  CapEff, CapPrm, CapInh and CapAmb all zero
//   non_root         no user or group id (real, effective, saved, fs) and no
//                    supplementary group is 0, as this process's user
//                    namespace sees them
//   rlimits          /proc/<pid>/limits: no file size, no open files, no
//                    core file, no locked memory (hard limits 0)
//   userns netns mntns ipcns utsns
//                    /proc/<pid>/ns/<x> differs from this process's own
//   aslr             ADDR_NO_RANDOMIZE clear in /proc/<pid>/personality and
//                    kernel.randomize_va_space not 0
// Landlock is not among them: the kernel does not show it in /proc.
const std::vector<std::string>& ObservableLayers();

// Always required by the converter: without these the worker is not
// confined, whatever else is in place.
const std::vector<std::string>& MandatoryLayers();

struct IsolationObservation {
  std::vector<std::string> layers;  // observed layers, in ObservableLayers() order
  // The raw facts behind them, for the report: {"threads", "1"},
  // {"seccomp", "2"}, {"uid", "65534 65534 65534 65534"}, {"cap_eff", "0"}, ...
  std::vector<std::pair<std::string, std::string>> facts;
  std::string error;  // why something could not be read ("" if all was)

  bool Has(std::string_view layer) const;
};

// Reads /proc/<pid> of `pid`, which must be an unreaped child of this
// process (so that the pid cannot have been reused).
IsolationObservation ObserveIsolation(pid_t pid);

// The peak resident size of `pid`'s own memory, in bytes: VmHWM of
// /proc/<pid>/status, which the kernel keeps per address space, so that it
// starts afresh at exec (unlike wait4's ru_maxrss, which folds in the peak
// of the process that called exec: a posix_spawn child runs on its
// caller's memory until then). `pid` must be an unreaped child of this
// process or of its fork server's zygote (so that the pid cannot have been
// reused) and still alive: an exited process has no memory and no VmHWM.
// nullopt if it cannot be read. For the report only: nothing is decided on it.
std::optional<uint64_t> ObservePeakResidentBytes(pid_t pid);

// The VmHWM of a /proc/<pid>/status text, in bytes: "VmHWM:" then spaces,
// at most kMaxVmHwmDigits decimal digits and " kB". nullopt for anything
// else.
inline constexpr size_t kMaxVmHwmDigits = 15;  // 10^15 KiB (~1 EiB) fits u64 bytes
std::optional<uint64_t> ParseVmHwmBytes(std::string_view status);

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_OBSERVE_H_
