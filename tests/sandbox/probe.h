// sandbox-probe's internals shared by its source files: what a mode knows,
// and the helpers that send frames. sandbox_probe.cc holds the modes about
// the sandbox (forbidden calls, resources, protocol, hygiene) and the mode
// table; probe_streams.cc the streams that test the parent's text handling
// and memory bound.
#ifndef SAFEMODEL_TESTS_SANDBOX_PROBE_H_
#define SAFEMODEL_TESTS_SANDBOX_PROBE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "proto/safemodel.pb.h"
#include "safemodel/status.h"

namespace safemodel::probe {

struct Args {
  pid_t parent_pid = 0;
  uint64_t input_size = 0;
  uint64_t address_space = 0;
  uint64_t memory_limit = 0;
  uint64_t cpu_seconds = 0;
  bool unconfined = false;
  bool print_pfc = false;
  bool reexecuted = false;
};

// What the probe knows when it runs its mode.
struct Context {
  Args args;
  std::string argument;             // text after the mode name
  const uint8_t* input = nullptr;   // read-only map of fd 4
  uint64_t input_size = 0;
  std::vector<std::string> layers;  // isolation layers LockDown reported
  std::string entry_report;         // fds, environment, signals at exec
  std::string prepared_fds;         // fds after PrepareWorkerProcess
  int dumpable_before_lockdown = -1;
  std::string program;              // argv[0] (a forked probe: its zygote's)
};

// The result the "ok" mode sends: one f32 tensor "t" of shape [4].
inline constexpr float kTensor[4] = {1.0f, 2.0f, 3.0f, 4.0f};

// The "ok" mode's result (kTensor).
int SendValidResult(const Context& ctx);
// Sleeps until killed, making no forbidden call.
[[noreturn]] void Park();

// Reports to the parent in an ERROR frame.
void SendError(StatusCode code, const std::string& message, const Context& ctx);
// A serialised WorkerHeader with `names` as tensors of `dtype` and `shape`.
std::string HeaderBytes(const Context& ctx, const std::vector<std::string>& names,
                        int dtype = v1::F32, std::vector<uint64_t> shape = {4});
bool SendHeader(const std::string& bytes);
bool SendData(const void* p, size_t n);
bool SendDone(uint64_t tensors, uint64_t bytes);
void AppendVarint(std::string* out, uint64_t v);

// probe_streams.cc
// As the real worker ends (converter/worker/worker_main.cc): first makes
// its peak `argument` MiB (at most 1024; touched, then freed), then sends
// the "ok" result and waits for the parent to dismiss it before it exits.
int DoOkThenWait(const Context& ctx);
// Sends the "ok" result, then neither waits for the parent nor exits: the
// deadline must still end it.
[[noreturn]] void DoOkThenPark(const Context& ctx);
int DoHostileText(const Context& ctx);
int DoHostileError(const Context& ctx);
int DoMaxTensors(const Context& ctx);
int DoMaxObjects(const Context& ctx);
int DoMaxHeaderBytes(const Context& ctx);
int DoMaxFindings(const Context& ctx);
int DoMaxErrorFindings(const Context& ctx);
int DoBadXform(const Context& ctx);
int DoMaxAll(const Context& ctx);
int DoMaxDataFrames(const Context& ctx);
// A hand-off request (conversion_protocol.h); the argument picks a variant:
// "" (valid), "twice", "after-header", "with-message", "unknown".
int DoHandOff(const Context& ctx);
// A valid hand-off as the lean worker; as the HDF5 worker (a program name
// ending in "hdf5") "park" or the "ok" result, as the argument says.
int DoHandOffThen(const Context& ctx);

}  // namespace safemodel::probe

#endif  // SAFEMODEL_TESTS_SANDBOX_PROBE_H_
