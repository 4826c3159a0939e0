// The contract between the parent and a fork server (zygote), written once
// for both ends (sandbox/fork_server.cc, sandbox/zygote.cc).
//
// The zygote is the worker binary started by exec (fresh ASLR) with
// kZygoteFlag. It initialises its libraries, then reads only fixed-size
// requests from the parent on kZygoteFd, a SOCK_SEQPACKET socket. It never
// reads any other descriptor: the worker's descriptors arrive by
// SCM_RIGHTS and are only dup'ed into a forked child, which then runs the
// worker's usual lockdown (lockdown.h) before it reads its input.
//
// Requests and replies are one message each, in order, one request at a
// time (the parent serialises them). A child is reaped only when the parent
// asks (kReap), after the parent has killed its process group: until then
// its pid, and so its group id, cannot be reused.
#ifndef SAFEMODEL_SANDBOX_ZYGOTE_PROTOCOL_H_
#define SAFEMODEL_SANDBOX_ZYGOTE_PROTOCOL_H_

#include <sys/types.h>

#include <cstdint>

namespace safemodel::sandbox {

// argv[1] of a zygote: `--zygote=<parent pid>`.
inline constexpr const char* kZygoteFlag = "--zygote=";
// The zygote's end of its socket.
inline constexpr int kZygoteFd = 3;
// The worker's arguments (EncodeWorkerArgs), NUL-terminated one after the
// other: a dozen short options fit many times over.
inline constexpr uint32_t kZygoteArgsBytes = 4096;
// Descriptors in one spawn request: output, input, control and the files of
// a model made of several (loader::kMaxModelFiles is 1,000; SCM_RIGHTS
// carries at most 253 per message, the kernel's SCM_MAX_FD).
inline constexpr uint32_t kZygoteMaxFds = 253;
inline constexpr uint32_t kZygoteMagic = 0x315a4d53;  // "SMZ1"

enum class ZygoteOp : uint32_t { kSpawn = 1, kReap = 2 };

struct ZygoteRequest {
  uint32_t magic = kZygoteMagic;
  ZygoteOp op = ZygoteOp::kSpawn;
  uint32_t fd_count = 0;    // kSpawn: descriptors attached (output, input, control, files)
  int32_t pid = 0;          // kReap: the child to reap
  uint32_t args_bytes = 0;  // kSpawn: bytes of args used
  char args[kZygoteArgsBytes] = {};
};

struct ZygoteReply {
  uint32_t magic = kZygoteMagic;
  ZygoteOp op = ZygoteOp::kSpawn;
  int32_t pid = 0;          // the child forked / reaped; 0 on failure
  int32_t error = 0;        // errno of the failure
  int32_t wait_status = 0;  // kReap: the wait4 status
  int64_t utime_us = 0;     // kReap: the child's rusage
  int64_t stime_us = 0;
  int64_t max_rss_kib = 0;
};

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_ZYGOTE_PROTOCOL_H_
