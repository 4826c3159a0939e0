// Worker side of the fork server (zygote_protocol.h): a worker binary's
// main() hands over to RunZygote when argv[1] starts with kZygoteFlag.
#ifndef SAFEMODEL_SANDBOX_ZYGOTE_H_
#define SAFEMODEL_SANDBOX_ZYGOTE_H_

#include "sandbox/worker_protocol.h"

namespace safemodel::sandbox {

using WorkerMainFn = int (*)(int argc, char** argv);
using ZygoteInitFn = void (*)();

// True if argv asks for the zygote mode.
bool IsZygoteInvocation(int argc, char** argv);

// The zygote's loop. Before it: clears its environment (the parent sets
// only LD_BIND_NOW, for the dynamic linker), checks its parent (it exits when the
// parent's end of the socket closes, e.g. when the parent dies), not dumpable (a sibling of the same user cannot ptrace
// it or read its memory), no core files, a CPU limit, every descriptor but
// kZygoteFd closed; then `init` (load and initialise libraries; no
// untrusted byte exists in this process). Then, per kSpawn request: fork;
// the child becomes its own session leader, restores default signal
// handling, moves the passed descriptors to 3, 4, 5, 6..., closes every
// other descriptor (the zygote's socket included) and runs
// `worker_main(argv0 + the request's arguments)`, which locks itself down
// exactly as an exec'd worker does. Per kReap request: wait4 on that child
// and its status and rusage. Returns (the exit code) when the parent closes
// the socket or on a protocol error.
int RunZygote(int argc, char** argv, ZygoteInitFn init, WorkerMainFn worker_main);

// RunZygote(argc, argv, nullptr, worker_main) if argv asks for the zygote
// mode, else worker_main(argc, argv): a stand-in worker's whole main().
int ZygoteOrMain(int argc, char** argv, WorkerMainFn worker_main);

}  // namespace safemodel::sandbox

#endif  // SAFEMODEL_SANDBOX_ZYGOTE_H_
