// slow-worker: a stand-in for safemodel-worker that keeps a conversion in
// progress for as long as a test needs, so that the test can act on a real
// "conversion in progress" state (signals, input changes, outside kills).
//
// It honours the worker's contract (fd 3 = result channel, fd 4 = input,
// fd 5 = control channel, the pipeline's arguments) and confines itself with
// the production PrepareWorkerProcess and LockDown, like sandbox-probe: the
// LOCKED frame, the parent's check in /proc and its go-ahead included. Its
// input's first line chooses what it does:
//
//   slow:park N            a header for one u8 tensor "t" of N bytes, then
//                          sleeps forever (the parent has reserved the
//                          output and waits for data)
//   slow:partial N         the header, then half of a 4 KiB data frame, then
//                          sleeps: a worker killed now leaves a cut frame
//   slow:trickle N F MS    the header, then the tensor in frames of F bytes,
//                          frame i copied from the input's map at offset i*F,
//                          one frame every MS milliseconds, then DONE: a
//                          truncated input makes it fault (SIGBUS)
//
// The input must hold at least N bytes for "trickle".
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "converter/protocol/worker.pb.h"
#include "proto/wire/wire.h"
#include "sandbox/frame_io.h"
#include "sandbox/lockdown.h"
#include "sandbox/worker_protocol.h"

namespace safemodel {
namespace {

using sandbox::FrameType;
using sandbox::kOutputFd;

// Numbers on its input line.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

void SendError(const std::string& message) {
  worker::WorkerError e;
  e.set_code(static_cast<uint32_t>(StatusCode::kMalformed));
  e.set_message(message);
  std::string bytes = wire::SerializeDeterministic(e);
  sandbox::WriteFrame(kOutputFd, FrameType::kError, bytes.data(), bytes.size());
}

bool SendHeader(uint64_t tensor_bytes) {
  worker::WorkerHeader h;
  h.set_source_format("slow_worker");
  v1::TensorInfo* t = h.add_tensors();
  t->set_name("t");
  t->set_dtype(v1::U8);
  t->add_shape(tensor_bytes);
  std::string bytes = wire::SerializeDeterministic(h);
  return sandbox::WriteFrame(kOutputFd, FrameType::kHeader, bytes.data(), bytes.size());
}

// Sleeps without a forbidden call (FUTEX_WAIT_PRIVATE is allowed): forever,
// or for `ms` milliseconds.
void Sleep(uint64_t ms) {
  static int word = 0;
  struct timespec ts = {static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1'000'000};
  syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, ms == 0 ? nullptr : &ts, nullptr, 0);
}

[[noreturn]] void Park() {
  for (;;) Sleep(0);
}

int Trickle(const uint8_t* input, uint64_t input_size, uint64_t n, uint64_t frame, uint64_t ms) {
  if (frame == 0 || frame > (1u << 20) || n > input_size) return 2;
  std::vector<uint8_t> buf(frame);
  uint64_t sent = 0;
  while (sent < n) {
    const uint64_t len = n - sent < frame ? n - sent : frame;
    std::memcpy(buf.data(), input + sent, len);  // faults (SIGBUS) if truncated
    if (!sandbox::WriteFrame(kOutputFd, FrameType::kTensorData, buf.data(), len)) return 1;
    sent += len;
    if (sent < n) Sleep(ms);
  }
  worker::WorkerDone d;
  d.set_tensors_sent(1);
  d.set_bytes_sent(sent);
  std::string b = wire::SerializeDeterministic(d);
  return sandbox::WriteFrame(kOutputFd, FrameType::kDone, b.data(), b.size()) ? 0 : 1;
}

int Main(int argc, char** argv) {
  // The worker's contract; conversion options are accepted and ignored.
  auto parsed = sandbox::ParseWorkerArgs(argc, argv);
  Status setup = parsed.ok() ? sandbox::PrepareWorkerProcess(parsed->parent_pid) : parsed.status();
  if (!setup.ok()) {
    SendError("slow-worker: bad arguments or setup: " + setup.message());
    return 1;
  }
  const sandbox::WorkerArgs& args = *parsed;
  struct stat st;
  if (fstat(sandbox::kInputFd, &st) != 0 || st.st_size <= 0) return 1;
  const auto size = static_cast<uint64_t>(st.st_size);
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, sandbox::kInputFd, 0);
  if (map == MAP_FAILED) return 1;
  close(sandbox::kInputFd);
  const auto* input = static_cast<const uint8_t*>(map);
  std::string_view line(reinterpret_cast<const char*>(input), size);
  line = line.substr(0, line.find('\n'));
  std::vector<std::string> words;
  for (size_t at = 0; at <= line.size();) {
    size_t space = line.find(' ', at);
    if (space == std::string_view::npos) space = line.size();
    words.emplace_back(line.substr(at, space - at));
    at = space + 1;
  }
  uint64_t n = 0, frame = 0, ms = 0;
  if (words.empty() || !ParseU64(words.size() > 1 ? words[1] : "", &n)) {
    SendError("slow-worker: bad input line");
    return 1;
  }
  if (words[0] == "slow:trickle" &&
      (words.size() != 4 || !ParseU64(words[2], &frame) || !ParseU64(words[3], &ms))) {
    SendError("slow-worker: trickle needs N F MS");
    return 1;
  }

  std::vector<std::string> layers;
  sandbox::LockdownOptions lock;
#if !defined(SAFEMODEL_SANITIZER_BUILD)
  lock.address_space_bytes = args.address_space;
#endif
  lock.cpu_seconds = args.cpu_seconds;
  lock.parent_pid = args.parent_pid;
  if (Status locked = sandbox::LockDown(lock, &layers); !locked.ok()) {
    SendError("slow-worker: lockdown failed: " + locked.message());
    return 1;
  }
  if (!SendHeader(n)) return 1;
  if (words[0] == "slow:park") Park();
  if (words[0] == "slow:partial") {
    uint8_t frame_header[sandbox::kFrameHeaderBytes];
    sandbox::EncodeFrameHeader(FrameType::kTensorData, 4096, frame_header);
    static const uint8_t kHalf[2048] = {};
    if (write(kOutputFd, frame_header, sizeof frame_header) < 0 || write(kOutputFd, kHalf, sizeof kHalf) < 0) {
      return 1;
    }
    Park();
  }
  if (words[0] == "slow:trickle") return Trickle(input, size, n, frame, ms);
  return 1;
}

}  // namespace
}  // namespace safemodel

#if defined(SAFEMODEL_SANITIZER_BUILD)
// The worker has no environment, so ASAN_OPTIONS cannot reach it. ASan's own
// SIGBUS handler would try to print a report after lockdown and be killed for
// that (SIGSYS); the input-change tests want the plain SIGBUS.
extern "C" const char* __asan_default_options() { return "handle_segv=0:handle_sigbus=0:handle_abort=0"; }
#endif

// _exit, like the worker: no atexit handlers inside the sandbox.
int main(int argc, char** argv) { _exit(safemodel::Main(argc, argv)); }
