#include "sandbox/worker_protocol.h"

#include <climits>

#include "proto/base/byte_reader.h"
#include "proto/base/text.h"

namespace safemodel::sandbox {

namespace {

// Decimal digits only, at most 20 of them, no overflow.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || !CheckedMul(v, 10, &v) ||
        !CheckedAdd(v, static_cast<uint64_t>(c - '0'), &v)) {
      return false;
    }
  }
  *out = v;
  return true;
}

bool IsFlagName(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdentifierBytes) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

// The numeric arguments, in the order they are encoded.
struct NumericKey {
  std::string_view key;  // without "--" and "="
  uint64_t WorkerArgs::*field;
};
constexpr NumericKey kNumericKeys[] = {
    {"input-size", &WorkerArgs::input_size},
    {"address-space", &WorkerArgs::address_space},
    {"memory-limit", &WorkerArgs::memory_limit},
    {"cpu-seconds", &WorkerArgs::cpu_seconds},
    {"input-files", &WorkerArgs::input_files},
    {"manifest-size", &WorkerArgs::manifest_size},
};
constexpr std::string_view kParentPidKey = "parent-pid";

}  // namespace

std::vector<std::string> EncodeWorkerArgs(const WorkerArgs& args) {
  std::vector<std::string> out;
  out.push_back("--" + std::string(kParentPidKey) + "=" +
                Num(static_cast<uint64_t>(args.parent_pid)));
  for (const NumericKey& k : kNumericKeys) {
    out.push_back("--" + std::string(k.key) + "=" + Num(args.*k.field));
  }
  for (const std::string& flag : args.flags) out.push_back("--" + flag);
  return out;
}

Result<WorkerArgs> ParseWorkerArgs(int argc, const char* const* argv) {
  WorkerArgs out;
  std::vector<std::string_view> seen;
  auto bad = [](std::string_view arg, const char* why) {
    return Status::InvalidArgument("worker argument '" + Printable(arg) + "': " + why);
  };
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg(argv[i]);
    if (arg == kReexecutedFlag) {
      if (out.reexecuted) return bad(arg, "given twice");
      out.reexecuted = true;
      continue;
    }
    if (arg.substr(0, 2) != "--") return bad(arg, "not an option");
    const std::string_view body = arg.substr(2);
    const size_t eq = body.find('=');
    const std::string_view key = body.substr(0, eq);
    for (std::string_view s : seen) {
      if (s == key) return bad(arg, "given twice");
    }
    seen.push_back(key);
    if (eq == std::string_view::npos) {
      if (!IsFlagName(key)) return bad(arg, "not a flag name");
      out.flags.emplace_back(key);
      continue;
    }
    uint64_t value = 0;
    if (!ParseU64(body.substr(eq + 1), &value)) return bad(arg, "not a decimal number that fits 64 bits");
    if (key == kParentPidKey) {
      if (value > static_cast<uint64_t>(INT_MAX)) return bad(arg, "not a process id");
      out.parent_pid = static_cast<pid_t>(value);
      continue;
    }
    bool known = false;
    for (const NumericKey& k : kNumericKeys) {
      if (key == k.key) {
        out.*k.field = value;
        known = true;
      }
    }
    if (!known) return bad(arg, "unknown");
  }
  if (out.parent_pid <= 0) return Status::InvalidArgument("worker arguments lack --parent-pid");
  if (out.input_size == 0) return Status::InvalidArgument("worker arguments lack --input-size");
  return out;
}

void EncodeFrameHeader(FrameType type, uint64_t length, uint8_t* out) {
  StoreLE(out, kFrameMagic, 4);
  StoreLE(out + 4, static_cast<uint32_t>(type), 4);
  StoreLE(out + 8, length, 8);
}

Result<FrameHeader> DecodeFrameHeader(const uint8_t* in, const FrameCaps& caps) {
  if (LoadLE(in, 4) != kFrameMagic) return Status::Malformed("bad frame magic from the worker");
  const uint64_t type = LoadLE(in + 4, 4);
  const uint64_t length = LoadLE(in + 8, 8);
  if (type == 0 || type > kMaxFrameType) {
    return Status::Malformed("unknown frame type " + Num(type) + " from the worker");
  }
  if (length > caps[type]) {
    return Status::Malformed("frame of type " + Num(type) + " declares " + Num(length) +
                             " bytes, over its limit of " + Num(caps[type]));
  }
  return FrameHeader{static_cast<FrameType>(type), length};
}

std::string EncodeLockedClaim(const std::vector<std::string>& layers) {
  std::string claim;
  for (const std::string& l : layers) claim += (claim.empty() ? "" : ",") + l;
  if (claim.size() > kMaxLockedPayloadBytes) claim.resize(kMaxLockedPayloadBytes);
  return claim;
}

Result<std::vector<std::string>> DecodeLockedClaim(std::string_view payload) {
  std::vector<std::string> out;
  size_t start = 0;
  while (!payload.empty() && start <= payload.size()) {
    const size_t comma = payload.find(',', start);
    const std::string_view layer =
        payload.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    SAFEMODEL_RETURN_IF_ERROR(CheckIdentifier(layer, "isolation layer"));
    if (out.size() >= kMaxIsolationLayers) return Status::Malformed("too many isolation layers claimed");
    out.emplace_back(layer);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

void EncodeViolation(const Violation& v, uint8_t* out) {
  StoreLE(out, v.syscall_nr, 4);
  StoreLE(out + 4, v.arch, 4);
  StoreLE(out + 8, v.instruction_pointer, 8);
}

Violation DecodeViolation(const uint8_t* in) {
  Violation v;
  v.syscall_nr = static_cast<uint32_t>(LoadLE(in, 4));
  v.arch = static_cast<uint32_t>(LoadLE(in + 4, 4));
  v.instruction_pointer = LoadLE(in + 8, 8);
  return v;
}

}  // namespace safemodel::sandbox
