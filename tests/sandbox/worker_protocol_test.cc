// The worker protocol's encodings and their decodings, pair by pair
// (sandbox/worker_protocol.h), without a process.
#include "sandbox/worker_protocol.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <string>
#include <vector>

namespace safemodel::sandbox {
namespace {

// argv for ParseWorkerArgs: a program name, then `args`.
Result<WorkerArgs> Parse(const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"safemodel-worker"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return ParseWorkerArgs(static_cast<int>(argv.size()), argv.data());
}

std::vector<std::string> Minimal() { return {"--parent-pid=12", "--input-size=34"}; }

TEST(WorkerArgs, EncodeThenParseGivesTheSameArguments) {
  WorkerArgs args;
  args.parent_pid = 4242;
  args.input_size = 1ull << 40;
  args.address_space = 5ull << 30;
  args.memory_limit = 4ull << 30;
  args.cpu_seconds = 121;
  args.input_files = 3;
  args.manifest_size = 77;
  args.flags = {"keep_optimizer", "weights_only"};
  const std::vector<std::string> encoded = EncodeWorkerArgs(args);
  EXPECT_EQ(encoded, (std::vector<std::string>{
                         "--parent-pid=4242", "--input-size=1099511627776",
                         "--address-space=5368709120", "--memory-limit=4294967296",
                         "--cpu-seconds=121", "--input-files=3", "--manifest-size=77",
                         "--keep_optimizer", "--weights_only"}));
  auto parsed = Parse(encoded);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->parent_pid, 4242);
  EXPECT_EQ(parsed->input_size, 1ull << 40);
  EXPECT_EQ(parsed->address_space, 5ull << 30);
  EXPECT_EQ(parsed->memory_limit, 4ull << 30);
  EXPECT_EQ(parsed->cpu_seconds, 121u);
  EXPECT_EQ(parsed->input_files, 3u);
  EXPECT_EQ(parsed->manifest_size, 77u);
  EXPECT_EQ(parsed->flags, args.flags);
  EXPECT_FALSE(parsed->reexecuted);
}

TEST(WorkerArgs, TheReexecutionMarkerIsRecognised) {
  std::vector<std::string> argv = Minimal();
  argv.push_back(kReexecutedFlag);
  auto parsed = Parse(argv);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->reexecuted);
  EXPECT_TRUE(parsed->flags.empty());
}

TEST(WorkerArgs, LargestValuesParseAndOneMoreOverflows) {
  auto max = Parse({"--parent-pid=2147483647", "--input-size=18446744073709551615"});
  ASSERT_TRUE(max.ok()) << max.status().ToString();
  EXPECT_EQ(max->parent_pid, INT_MAX);
  EXPECT_EQ(max->input_size, UINT64_MAX);
  // 2^64 and a pid past pid_t: refused, not wrapped.
  EXPECT_FALSE(Parse({"--parent-pid=1", "--input-size=18446744073709551616"}).ok());
  EXPECT_FALSE(Parse({"--parent-pid=1", "--input-size=99999999999999999999"}).ok());
  EXPECT_FALSE(Parse({"--parent-pid=2147483648", "--input-size=1"}).ok());
  EXPECT_FALSE(Parse({"--parent-pid=4294967297", "--input-size=1"}).ok());
}

TEST(WorkerArgs, MalformedArgumentsAreRefusedByName) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                                  // nothing
      {"--input-size=1"},                                  // no parent
      {"--parent-pid=1"},                                  // no input size
      {"--parent-pid=0", "--input-size=1"},                // pid 0
      {"--parent-pid=1", "--input-size=0"},                // empty input
      {"--parent-pid=1", "--input-size=1", "--input-size=2"},  // twice
      {"--parent-pid=1", "--input-size=1", "--cpu-seconds=-1"},
      {"--parent-pid=1", "--input-size=1", "--cpu-seconds=1s"},
      {"--parent-pid=1", "--input-size=1", "--cpu-seconds="},
      {"--parent-pid=1", "--input-size=1", "--cpu-seconds=+1"},
      {"--parent-pid=1", "--input-size=1", "--stack-size=1"},  // unknown key
      {"--parent-pid=1", "--input-size=1", "input"},       // not an option
      {"--parent-pid=1", "--input-size=1", "--Weights"},   // not a flag name
      {"--parent-pid=1", "--input-size=1", "--"},          // empty flag
      {"--parent-pid=1", "--input-size=1", "--weights_only", "--weights_only"},
      {"--parent-pid=1", "--input-size=1", kReexecutedFlag, kReexecutedFlag},
  };
  for (const auto& argv : bad) {
    auto parsed = Parse(argv);
    std::string joined;
    for (const std::string& a : argv) joined += a + " ";
    EXPECT_FALSE(parsed.ok()) << joined;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << joined;
    }
  }
  auto unknown = Parse({"--parent-pid=1", "--input-size=1", "--stack-size=1"});
  EXPECT_NE(unknown.status().message().find("'--stack-size=1'"), std::string::npos)
      << unknown.status().message();
}

TEST(FrameHeader, EncodeThenDecode) {
  FrameCaps caps = {0, 100, 100, 100, 100, kViolationPayloadBytes, kMaxLockedPayloadBytes};
  uint8_t h[kFrameHeaderBytes];
  EncodeFrameHeader(FrameType::kLocked, 77, h);
  EXPECT_EQ(std::memcmp(h, "SMF1", 4), 0);
  auto decoded = DecodeFrameHeader(h, caps);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->type, FrameType::kLocked);
  EXPECT_EQ(decoded->length, 77u);
}

TEST(FrameHeader, BadMagicUnknownTypeAndOversizeAreRefused) {
  FrameCaps caps = {0, 100, 100, 100, 100, kViolationPayloadBytes, kMaxLockedPayloadBytes};
  uint8_t h[kFrameHeaderBytes];
  EncodeFrameHeader(FrameType::kHeader, 101, h);
  auto over = DecodeFrameHeader(h, caps);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().message(), "frame of type 1 declares 101 bytes, over its limit of 100");

  EncodeFrameHeader(FrameType::kHeader, 1, h);
  h[0] ^= 1;
  EXPECT_EQ(DecodeFrameHeader(h, caps).status().message(), "bad frame magic from the worker");

  for (uint32_t type : {0u, kMaxFrameType + 1, 0xffffffffu}) {
    EncodeFrameHeader(static_cast<FrameType>(type), 1, h);
    auto bad = DecodeFrameHeader(h, caps);
    ASSERT_FALSE(bad.ok()) << type;
    EXPECT_EQ(bad.status().message(),
              "unknown frame type " + std::to_string(type) + " from the worker");
  }
}

TEST(LockedClaim, EncodeThenDecode) {
  const std::vector<std::string> layers = {"userns", "netns", "no_capabilities", "seccomp"};
  EXPECT_EQ(EncodeLockedClaim(layers), "userns,netns,no_capabilities,seccomp");
  auto decoded = DecodeLockedClaim(EncodeLockedClaim(layers));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, layers);
  auto empty = DecodeLockedClaim("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(LockedClaim, BadNamesAndTooManyAreRefused) {
  for (const char* payload : {"seccomp,", ",seccomp", "seccomp,,netns", "Seccomp", "sec comp",
                              "seccomp\x1b[2J", "a123456789012345678901234567890123"}) {
    auto decoded = DecodeLockedClaim(payload);
    EXPECT_FALSE(decoded.ok()) << payload;
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.status().code(), StatusCode::kMalformed);
    }
  }
  std::vector<std::string> many(kMaxIsolationLayers + 1, "x");
  EXPECT_EQ(DecodeLockedClaim(EncodeLockedClaim(many)).status().message(),
            "too many isolation layers claimed");
  many.pop_back();
  EXPECT_TRUE(DecodeLockedClaim(EncodeLockedClaim(many)).ok());
}

TEST(LockedClaim, EncodingIsCutToThePayloadCap) {
  std::vector<std::string> layers(100, std::string(30, 'a'));
  EXPECT_EQ(EncodeLockedClaim(layers).size(), kMaxLockedPayloadBytes);
}

TEST(Violation, EncodeThenDecode) {
  Violation v;
  v.syscall_nr = 257;            // openat
  v.arch = 0xc000003eu;          // AUDIT_ARCH_X86_64
  v.instruction_pointer = 0x7f0011223344ull;
  uint8_t payload[kViolationPayloadBytes];
  EncodeViolation(v, payload);
  // Little-endian, in the documented order.
  EXPECT_EQ(payload[0], 0x01);
  EXPECT_EQ(payload[1], 0x01);
  EXPECT_EQ(payload[7], 0xc0);
  EXPECT_EQ(payload[8], 0x44);
  const Violation back = DecodeViolation(payload);
  EXPECT_EQ(back.syscall_nr, v.syscall_nr);
  EXPECT_EQ(back.arch, v.arch);
  EXPECT_EQ(back.instruction_pointer, v.instruction_pointer);
}

}  // namespace
}  // namespace safemodel::sandbox
