// sandbox-probe modes that test the parent rather than the sandbox: text
// that would drive a terminal, and the most each frame kind may carry for
// the input's size (converter/protocol/stream_limits.h), or a little more ("over").
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "converter/protocol/stream_limits.h"
#include "converter/protocol/tensor_xform.h"
#include "converter/protocol/worker.pb.h"
#include "proto/wire/wire.h"
#include "sandbox/frame_io.h"
#include "sandbox/lockdown.h"
#include "tests/sandbox/probe.h"

namespace safemodel::probe {

// Keeps DoOkThenWait's stores: the block's address escapes through it.
char* volatile touched_block = nullptr;

int DoOkThenWait(const Context& ctx) {
  uint64_t mib = 0;
  const char* end = ctx.argument.data() + ctx.argument.size();
  if (std::from_chars(ctx.argument.data(), end, mib).ptr != end || mib > 1024) return 1;
  if (mib > 0) {
    std::unique_ptr<char[]> block(new char[mib << 20]);
    touched_block = block.get();
    std::memset(block.get(), 0x5a, mib << 20);
  }
  const int code = SendValidResult(ctx);
  sandbox::AwaitDismissal();
  return code;
}

void DoOkThenPark(const Context& ctx) {
  SendValidResult(ctx);
  Park();
}

using sandbox::FrameType;
using sandbox::kOutputFd;

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// A valid result whose names and findings hold terminal control sequences
// and bidirectional overrides.
int DoHostileText(const Context&) {
  worker::WorkerHeader h;
  h.set_source_format("probe");
  for (const char* name : {"a\x1b]0;pwned\x07\x1b[2Jverify: OK", "b\xe2\x80\xae" "evil\xe2\x80\xac",
                           "c\xc2\x9b" "31mred"}) {
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(name);
    t->set_dtype(v1::F32);
    t->add_shape(4);
  }
  v1::Finding* f = h.add_findings();
  f->set_severity("note");
  f->set_rule("probe.hostile\x1b[2J");
  f->set_location("at \x1b]0;title\x07");
  f->set_message("ALL CLEAN\r\x1b[1A\xe2\x81\xa6 hidden");
  f->add_references("ref\x1b[0m");
  std::string bytes = wire::SerializeDeterministic(h);
  if (!SendHeader(bytes)) return 1;
  for (int i = 0; i < 3; ++i) SendData(kTensor, sizeof kTensor);
  return SendDone(3, 3 * sizeof kTensor) ? 0 : 1;
}

int DoHostileError(const Context& ctx) {
  worker::WorkerError e;
  e.set_code(static_cast<uint32_t>(StatusCode::kRefused));
  e.set_message("refused\x1b[2J\x1b]0;pwned\x07 verify: OK \xe2\x80\xae");
  v1::Finding* f = e.add_findings();
  f->set_severity("refused");
  f->set_rule("probe.hostile");
  f->set_location("member '\x1b[31mevil\x1b[0m'");
  f->set_message("calls \xe2\x80\xaemetsys.so\xe2\x80\xac");
  f->add_references("os.system\x07");
  std::string bytes = wire::SerializeDeterministic(e);
  (void)ctx;
  sandbox::WriteFrame(kOutputFd, FrameType::kError, bytes.data(), bytes.size());
  return 1;
}

// A valid result: one f32 tensor "t" of shape [4] = {1, 2, 3, 4}.
int SendValidResult(const Context& ctx) {
  if (!SendHeader(HeaderBytes(ctx, {"t"})) || !SendData(kTensor, sizeof kTensor) ||
      !SendDone(1, sizeof kTensor)) {
    return 1;
  }
  return 0;
}

// Sleeps forever without a forbidden call (FUTEX_WAIT_PRIVATE is allowed).
[[noreturn]] void Park() {
  static int word = 0;
  for (;;) syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
}

// As the lean worker (any program name but one ending in "hdf5"): a valid
// hand-off. As the HDF5 worker (a link to the probe named so, given as the
// HDF5 worker): what the argument says, "park" (sleeps until killed) or "ok"
// (the valid result). A conversion through both workers, with the probe.
int DoHandOffThen(const Context& ctx) {
  if (!ctx.program.ends_with("hdf5")) {
    Context lean = ctx;
    lean.argument.clear();
    return DoHandOff(lean);
  }
  if (ctx.argument == "park") Park();
  return SendValidResult(ctx);
}

// The lean worker's hand-off request, valid or broken as the argument says.
int DoHandOff(const Context& ctx) {
  worker::WorkerError e;
  e.set_hand_off(ctx.argument == "unknown" ? static_cast<worker::HandOff>(7)
                                           : worker::HAND_OFF_HDF5_WORKER);
  if (ctx.argument == "with-message") {
    e.set_code(static_cast<uint32_t>(StatusCode::kUnsupported));
    e.set_message("needs libhdf5");
  }
  if (ctx.argument == "after-header" && !SendHeader(HeaderBytes(ctx, {"t"}))) return 1;
  const std::string bytes = wire::SerializeDeterministic(e);
  const int frames = ctx.argument == "twice" ? 2 : 1;
  for (int i = 0; i < frames; ++i) {
    sandbox::WriteFrame(kOutputFd, FrameType::kError, bytes.data(), bytes.size());
  }
  return 1;
}

// ---------------------------------------------------------------------------
// Memory: the most each frame kind may carry for this input (stream_limits.h)
// and, with the argument "over", a little more. The parent's peak memory is
// measured around these (tests/sandbox/parent_memory_test.cc).

namespace {

bool Over(const Context& c) { return c.argument == "over"; }

}  // namespace

// As many tensors as allowed: empty f32 tensors (shape [0], no data) with
// 8-character names, the cheapest entry on the wire and the dearest parsed.
int DoMaxTensors(const Context& ctx) {
  const StreamLimits limits = StreamLimitsFor(ctx.input_size);
  const uint64_t n = limits.tensors + (Over(ctx) ? 1 : 0);
  worker::WorkerHeader h;
  h.set_source_format("probe");
  h.mutable_tensors()->Reserve(static_cast<int>(n));
  char name[24];
  for (uint64_t i = 0; i < n; ++i) {
    std::snprintf(name, sizeof name, "%08llx", static_cast<unsigned long long>(i));
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(name);
    t->set_dtype(v1::F32);
    t->add_shape(0);
  }
  std::string bytes = wire::SerializeDeterministic(h);
  h.Clear();
  return SendHeader(bytes) && SendDone(n, 0) ? 0 : 1;  // n empty tensors sent
}

// A list Value of `count` objects, in lists of 1000 (so that no single list
// is huge): each inner list costs 1002 objects (its items, its ListValue and
// the Value holding it).
std::string ListOfObjects(uint64_t count) {
  std::string inner;  // ListValue with 1000 empty Value items
  for (int i = 0; i < 1000; ++i) inner.append("\x0a\x00", 2);
  std::string item = "\x0a";  // ListValue.items: a Value holding list_value
  std::string value = "\x3a";  // Value.list_value
  AppendVarint(&value, inner.size());
  value += inner;
  AppendVarint(&item, value.size());
  item += value;
  std::string outer;
  uint64_t objects = 2;  // the root Value and its ListValue
  while (objects + 1002 <= count) {
    outer += item;
    objects += 1002;
  }
  for (; objects < count; ++objects) outer.append("\x0a\x00", 2);
  std::string root = "\x3a";
  AppendVarint(&root, outer.size());
  root += outer;
  return root;
}

// An architecture and metadata of as many empty Values as the object budget
// allows, split between the two trees (each may have 1,000,000 nodes).
int DoMaxObjects(const Context& ctx) {
  const StreamLimits limits = StreamLimitsFor(ctx.input_size);
  const uint64_t target = limits.header_objects - 16 + (Over(ctx) ? 32 : 0);
  std::string bytes = HeaderBytes(ctx, {});
  const std::string architecture = ListOfObjects(target / 2);
  bytes += "\x1a";  // WorkerHeader.architecture
  AppendVarint(&bytes, architecture.size());
  bytes += architecture;
  const std::string metadata = ListOfObjects(target - target / 2);
  bytes += "\x22";  // WorkerHeader.metadata
  AppendVarint(&bytes, metadata.size());
  bytes += metadata;
  return SendHeader(bytes) && SendDone(0, 0) ? 0 : 1;
}

// One string as long as the header's byte limit allows, in the metadata.
int DoMaxHeaderBytes(const Context& ctx) {
  const StreamLimits limits = StreamLimitsFor(ctx.input_size);
  std::string bytes = HeaderBytes(ctx, {});
  const uint64_t room = limits.header_bytes - bytes.size() - 32 + (Over(ctx) ? 64 : 0);
  std::string value = "\x2a";  // Value.string_value
  AppendVarint(&value, room);
  value.append(room, 'x');
  bytes += "\x22";  // WorkerHeader.metadata
  AppendVarint(&bytes, value.size());
  bytes += value;
  return SendHeader(bytes) && SendDone(0, 0) ? 0 : 1;
}

// As many findings as allowed, their text filling the total budget.
void FillFindings(const Context& ctx, google::protobuf::RepeatedPtrField<v1::Finding>* out,
                  const char* severity) {
  const StreamLimits limits = StreamLimitsFor(ctx.input_size);
  const uint64_t n = limits.findings;
  uint64_t per = limits.findings_bytes / n;
  if (per > wire::kMaxFindingTextBytes) per = wire::kMaxFindingTextBytes;
  for (uint64_t i = 0; i < n; ++i) {
    v1::Finding* f = out->Add();
    f->set_severity(severity);
    f->set_rule("r");
    f->set_location("l");
    f->set_message(std::string(per - 2, 'm'));
  }
  // Over: one byte of text more than the total allows.
  if (Over(ctx)) out->Mutable(0)->mutable_message()->append(limits.findings_bytes - n * per + 1, 'm');
}

int DoMaxFindings(const Context& ctx) {
  worker::WorkerHeader h;
  h.set_source_format("probe");
  FillFindings(ctx, h.mutable_findings(), "note");
  std::string bytes = wire::SerializeDeterministic(h);
  h.Clear();
  return SendHeader(bytes) && SendDone(0, 0) ? 0 : 1;
}

int DoMaxErrorFindings(const Context& ctx) {
  worker::WorkerError e;
  e.set_code(static_cast<uint32_t>(StatusCode::kRefused));
  e.set_message(std::string(wire::kMaxFindingTextBytes, 'e'));
  FillFindings(ctx, e.mutable_findings(), "refused");
  std::string bytes = wire::SerializeDeterministic(e);
  e.Clear();
  sandbox::WriteFrame(kOutputFd, FrameType::kError, bytes.data(), bytes.size());
  return 1;
}

// Everything at once: as many tensors and findings as allowed, and the rest
// of the header's byte budget in one metadata string.
int DoMaxAll(const Context& ctx) {
  const StreamLimits limits = StreamLimitsFor(ctx.input_size);
  worker::WorkerHeader h;
  h.set_source_format("probe");
  FillFindings(ctx, h.mutable_findings(), "note");
  const uint64_t tensors =
      std::min(limits.tensors, limits.header_objects - static_cast<uint64_t>(h.findings_size()) - 8);
  char name[24];
  for (uint64_t i = 0; i < tensors; ++i) {
    std::snprintf(name, sizeof name, "%08llx", static_cast<unsigned long long>(i));
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(name);
    t->set_dtype(v1::F32);
    t->add_shape(0);
  }
  std::string bytes = wire::SerializeDeterministic(h);
  h.Clear();
  if (bytes.size() + 64 < limits.header_bytes) {
    const uint64_t room = limits.header_bytes - bytes.size() - 32 + (Over(ctx) ? 64 : 0);
    std::string value = "\x2a";  // Value.string_value
    AppendVarint(&value, room);
    value.append(room, 'x');
    bytes += "\x22";  // WorkerHeader.metadata
    AppendVarint(&bytes, value.size());
    bytes += value;
  }
  return SendHeader(bytes) && SendDone(tensors, 0) ? 0 : 1;  // all empty
}

// One tensor of 64 MiB in data frames of the largest size allowed.
int DoMaxDataFrames(const Context& ctx) {
  constexpr uint64_t kFrame = 16ull << 20;
  constexpr uint64_t kTotal = 64ull << 20;
  if (!SendHeader(HeaderBytes(ctx, {"t"}, v1::U8, {kTotal + (Over(ctx) ? 1 : 0)}))) return 1;
  std::string frame(kFrame, '\x5a');
  for (uint64_t sent = 0; sent < kTotal; sent += kFrame) {
    if (!SendData(frame.data(), frame.size())) return 1;
  }
  return SendDone(1, kTotal) ? 0 : 1;
}

// A TENSOR_XFORM (converter/protocol/tensor_xform.h) for the 16-byte float32
// tensor, one field wrong (the argument): a region past the end of the
// input (the probe's input is a few dozen bytes), an element size of 3, a
// stride reaching past the region.
int DoBadXform(const Context& ctx) {
  SendHeader(HeaderBytes(ctx, {"t"}));
  protocol::TensorXform x;
  x.region_length = 16;
  x.elem_size = 4;
  x.swap_unit = 4;
  x.rank = 1;
  x.shape[0] = 4;
  x.strides[0] = 1;
  if (ctx.argument == "outside") x.region_offset = uint64_t{1} << 40;
  if (ctx.argument == "elem") x.elem_size = 3;
  if (ctx.argument == "stride") x.strides[0] = 2;
  uint8_t payload[protocol::kTensorXformPayloadBytes];
  protocol::EncodeTensorXform(x, payload);
  sandbox::WriteFrame(kOutputFd, FrameType::kTensorXform, payload, sizeof payload);
  return SendDone(1, 16) ? 0 : 1;
}

}  // namespace safemodel::probe
