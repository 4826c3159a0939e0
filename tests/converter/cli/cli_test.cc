// safe-convert, the binary: commands, flags, exit codes and JSON output.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <sstream>

#include "proto/digest.h"
#include "proto/safemodel.pb.h"
#include "safemodel/reader.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

namespace safemodel::testing {
namespace {

std::vector<std::string> TempDirListing(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

int SafeConvert(const std::string& args, std::string* out = nullptr, bool stderr_too = true) {
  return RunCommand(BinDir() + "/safe-convert " + args, out, stderr_too);
}

TEST(Cli, UsageErrorsExitWithTwo) {
  std::string out;
  EXPECT_EQ(SafeConvert("", &out), 2);
  EXPECT_NE(out.find("usage"), std::string::npos);
  EXPECT_EQ(SafeConvert("--help"), 0);
  EXPECT_EQ(SafeConvert("only-one-path"), 2);
  EXPECT_EQ(SafeConvert("a b --bogus-flag"), 2);
  EXPECT_EQ(SafeConvert("a b --timeout"), 2);
  EXPECT_EQ(SafeConvert("a b --memory-limit lots"), 2);
  EXPECT_EQ(SafeConvert("a b --digest md5"), 2);
  EXPECT_EQ(SafeConvert("inspect"), 2);
  EXPECT_EQ(SafeConvert("verify"), 2);
}

TEST(Cli, ConvertInspectVerify) {
  TempDir dir;
  const std::string out_file = dir.File("m.safemodel");
  std::string out;
  ASSERT_EQ(SafeConvert(Fixture("numpy/stored.npz") + " " + out_file + " --no-sync", &out), 0) << out;
  EXPECT_NE(out.find("converted"), std::string::npos) << out;
  // The explicit subcommand form does the same.
  ASSERT_EQ(SafeConvert("convert " + Fixture("numpy/stored.npz") + " " + dir.File("n.safemodel"), &out), 0) << out;
  EXPECT_EQ(ReadFile(out_file), ReadFile(dir.File("n.safemodel")));

  ASSERT_EQ(SafeConvert("inspect " + out_file, &out), 0) << out;
  EXPECT_NE(out.find("source:        npz"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("\n  [^ ]+ +f32 +\\[4, 3\\] +48 bytes\n"))) << out;

  // SHA-256 of every tensor only on request (--sha256).
  ASSERT_EQ(SafeConvert("inspect --json --sha256 " + out_file, &out), 0) << out;
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["tensors"].size(), 5u);
  for (const auto& t : j["tensors"]) {
    for (const char* key : {"name", "dtype", "shape", "sha256", "digest", "offset", "nbytes"}) {
      EXPECT_TRUE(t.contains(key)) << key;
    }
    EXPECT_EQ(t["sha256"].get<std::string>().size(), 64u);
  }
  EXPECT_EQ(j["provenance"]["source_format"], "npz");

  ASSERT_EQ(SafeConvert("verify " + out_file, &out), 0) << out;
  EXPECT_NE(out.find("OK"), std::string::npos);
  std::string bytes = ReadFile(out_file);
  bytes[4096] ^= 0x40;  // first tensor byte
  WriteFile(dir.File("bad.safemodel"), bytes);
  EXPECT_EQ(SafeConvert("verify " + dir.File("bad.safemodel"), &out), 3) << out;
  EXPECT_NE(out.find("digest mismatch"), std::string::npos) << out;
  EXPECT_EQ(SafeConvert("inspect " + Fixture("numpy/f32.npy"), &out), 3) << out;
}

// Reads the trailer straight from the file's bytes (prefix fields 48 and 56,
// little-endian), independently of the reader that inspect uses.
v1::Trailer TrailerOf(const std::string& file) {
  auto u64 = [&](size_t at) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(file[at + static_cast<size_t>(i)]);
    return v;
  };
  v1::Trailer trailer;
  EXPECT_TRUE(trailer.ParseFromString(file.substr(u64(48), u64(56))));
  return trailer;
}

TEST(Cli, InspectJsonDigestsAreThoseOfTheStoredBytes) {
  TempDir dir;
  for (const char* algo : {"xxh3", "sha256"}) {
    SCOPED_TRACE(algo);
    const std::string file = dir.File(std::string(algo) + ".safemodel");
    std::string out;
    ASSERT_EQ(SafeConvert(Fixture("numpy/stored.npz") + " " + file + " --no-sync --digest " + algo, &out),
              0)
        << out;
    ASSERT_EQ(SafeConvert("inspect --json --sha256 " + file, &out, false), 0) << out;
    auto j = nlohmann::json::parse(out);
    // Inspect lists tensors in source order; the file's order is bytewise.
    std::sort(j["tensors"].begin(), j["tensors"].end(),
              [](const nlohmann::json& a, const nlohmann::json& b) {
                return a["name"].get<std::string>() < b["name"].get<std::string>();
              });
    const std::string bytes = ReadFile(file);
    const v1::Trailer trailer = TrailerOf(bytes);
    auto model = Model::Open(file);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    ASSERT_EQ(j["tensors"].size(), model->tensors().size());
    ASSERT_EQ(trailer.tensor_digests_size(), static_cast<int>(model->tensors().size()));
    const DigestAlgorithm algorithm =
        std::string(algo) == "sha256" ? DigestAlgorithm::kSha256 : DigestAlgorithm::kXxh3_128;
    EXPECT_EQ(j["digest_algorithm"], DigestAlgorithmName(algorithm));
    for (size_t i = 0; i < model->tensors().size(); ++i) {
      const TensorInfo& t = model->tensors()[i];
      const auto& jt = j["tensors"][i];
      ASSERT_EQ(jt["name"], t.name);
      ASSERT_TRUE(t.alias_of.empty()) << "stored.npz has no aliases";
      // The tensor's stored bytes, cut from the file by the offset and size
      // inspect printed, and checked against the reader's view of them.
      const uint64_t offset = jt["offset"].get<uint64_t>();
      const uint64_t nbytes = jt["nbytes"].get<uint64_t>();
      ASSERT_EQ(offset, t.offset);
      ASSERT_EQ(nbytes, t.nbytes);
      ASSERT_LE(offset + nbytes, bytes.size());
      const ByteView stored(reinterpret_cast<const uint8_t*>(bytes.data()) + offset, nbytes);
      auto data = model->Data(t);
      ASSERT_EQ(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()),
                std::string_view(bytes).substr(offset, nbytes));
      EXPECT_EQ(jt["sha256"], ToHex(Sha256(stored))) << t.name;
      // "digest" is the trailer's digest of this tensor, which is the
      // configured algorithm's digest of the same bytes.
      EXPECT_EQ(jt["digest"], ToHex(trailer.tensor_digests(static_cast<int>(i)))) << t.name;
      EXPECT_EQ(jt["digest"], ToHex(Digest(algorithm, stored))) << t.name;
    }
  }
}

TEST(Cli, JsonReportOnStdoutAndInAFile) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("m.safemodel") + " --json --report " +
                    dir.File("r.json"),
                &out, false),
            0);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["input"]["format"], "npy");
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir.File("r.json")))["output"]["tensors"], 1);
}

// An HF checkpoint index alone would be a .safemodel without tensors: exit 3,
// naming the unit conversion, and nothing written.
TEST(Cli, AnHfIndexAloneIsRefusedPointingAtBatch) {
  TempDir dir;
  std::string text;
  EXPECT_EQ(SafeConvert(Fixture("hf_index/clean.bin.index.json") + " " + dir.File("o.safemodel"), &text), 3) << text;
  EXPECT_NE(text.find("Hugging Face sharded-checkpoint index"), std::string::npos) << text;
  EXPECT_NE(text.find("safe-convert batch"), std::string::npos) << text;
  EXPECT_EQ(dir.List(), std::vector<std::string>{});
}

TEST(Cli, ExitCodesFollowTheTable) {
  TempDir dir;
  const std::string out = dir.File("o.safemodel");
  std::string text;
  EXPECT_EQ(SafeConvert(Fixture("numpy/object_malicious.npy") + " " + out, &text), 1) << text;
  // The object array's pickle calls posix.system (the pickle machine names it).
  EXPECT_NE(text.find(": refused: posix.system at byte 275: "), std::string::npos) << text;
  EXPECT_NE(text.find(" (pickle.global at npy array byte 275; refers to posix.system)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("posix.system"), std::string::npos) << text;
  EXPECT_EQ(SafeConvert(Fixture("numpy/truncated.npy") + " " + out), 3);
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + out + " --max-input-size 10"), 4);
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("missing/o")), 6);
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + out + " --worker /nonexistent"), 70);
  EXPECT_EQ(dir.List(), std::vector<std::string>{});

  // A refusal's JSON report lists the finding with its rule and location.
  EXPECT_EQ(SafeConvert(Fixture("numpy/object_member.npz") + " " + out + " --json", &text, false), 1);
  auto j = nlohmann::json::parse(text);
  EXPECT_EQ(j["status"], "refused");
  EXPECT_EQ(j["exit_code"], 1);
  ASSERT_EQ(j["findings"].size(), 1u);
  EXPECT_EQ(j["findings"][0]["rule"], "pickle.global");
  EXPECT_EQ(j["findings"][0]["location"], "npz member 'obj.npy' byte 275");
  EXPECT_EQ(j["findings"][0]["references"][0], "posix.system");
  EXPECT_EQ(j["output"]["path"], "");
}

TEST(Cli, UnwritableReportAndMissingFilesAreUsageErrors) {
  TempDir dir;
  const std::string out = dir.File("o.safemodel");
  std::string text;
  // Found before any work: no output, exit 2.
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + out + " --report " +
                            dir.File("no/such/dir/r.json"),
                        &text),
            2)
      << text;
  EXPECT_NE(text.find("cannot write the report"), std::string::npos) << text;
  EXPECT_EQ(dir.List(), std::vector<std::string>{});
  // Written after the conversion but failing (a full disk): a refusal keeps
  // exit 1; a conversion keeps its output and exits 6.
  if (access("/dev/full", W_OK) == 0) {
    EXPECT_EQ(SafeConvert(Fixture("numpy/object_malicious.npy") + " " + out +
                              " --report /dev/full",
                          &text),
              1)
        << text;
    EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + out + " --report /dev/full", &text), 6)
        << text;
    EXPECT_TRUE(Exists(out));
    unlink(out.c_str());
  }
  EXPECT_EQ(SafeConvert("verify " + dir.File("missing.safemodel"), &text), 2) << text;
  EXPECT_EQ(SafeConvert("inspect " + dir.File("missing.safemodel"), &text), 2) << text;
  EXPECT_NE(text.find("does not exist"), std::string::npos) << text;
}

// True if `text` holds anything a terminal acts on or that reorders text: a
// C0 control other than the newline ending a line, DEL, a C1 control (as
// UTF-8 or as a raw byte), or a bidirectional embedding/override/isolate.
bool HasTerminalControl(const std::string& text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<uint8_t>(text[i]);
    const auto next = [&](size_t k) { return i + k < text.size() ? static_cast<uint8_t>(text[i + k]) : 0; };
    if ((c < 0x20 && c != '\n') || c == 0x7f) return true;
    if (c >= 0x80 && c <= 0x9f && (i == 0 || static_cast<uint8_t>(text[i - 1]) < 0xc0)) {
      // A raw C1 byte that is not a UTF-8 continuation byte.
      if (i == 0 || (static_cast<uint8_t>(text[i - 1]) & 0x80) == 0) return true;
    }
    if (c == 0xc2 && next(1) >= 0x80 && next(1) <= 0x9f) return true;
    if (c == 0xe2 && next(1) == 0x80 && next(2) >= 0xaa && next(2) <= 0xae) return true;
    if (c == 0xe2 && next(1) == 0x81 && next(2) >= 0xa6 && next(2) <= 0xa9) return true;
  }
  return false;
}

TEST(Cli, TheTerminalCheckSeesControls) {
  EXPECT_FALSE(HasTerminalControl("plain text\nr\xc3\xa9sum\xc3\xa9\n"));
  EXPECT_TRUE(HasTerminalControl("a\x1b[2J"));
  EXPECT_TRUE(HasTerminalControl("a\xc2\x9b" "2J"));
  EXPECT_TRUE(HasTerminalControl("a\x9b" "2J"));
  EXPECT_TRUE(HasTerminalControl("a\xe2\x80\xae" "b"));
  EXPECT_TRUE(HasTerminalControl("a\xe2\x81\xa6" "b"));
}

// A model whose member names, and a file whose name, try to drive the
// terminal: every line safe-convert prints shows them escaped; the JSON
// keeps the exact names (escaped by JSON itself).
TEST(Cli, HostileNamesAreEscapedInConvertInspectAndVerify) {
  TempDir dir;
  const std::string npy = ReadFile(Fixture("numpy/f32.npy"));
  const std::string retitle = "a\x1b]0;pwned\x07\x1b[2Jverify: OK";
  const std::string reversed = "b\xe2\x80\xae" "evil\xe2\x80\xac";
  const std::string csi = "c\xc2\x9b" "31mred";
  const std::string input = dir.File("model\x1b[2J\xe2\x80\xae.npz");
  std::vector<ZipMember> members;
  for (const std::string& name : {retitle, reversed, csi}) {
    ZipMember m;
    m.name = name + ".npy";
    m.data = npy;
    // UTF-8 names are marked so (as Python's zipfile does for non-ASCII ones).
    const bool ascii = std::all_of(name.begin(), name.end(), [](char c) { return (c & 0x80) == 0; });
    m.extra_flags = ascii ? 0 : 0x800;
    members.push_back(m);
  }
  WriteFile(input, BuildZip(members));
  const std::string out_file = dir.File("out.safemodel");
  std::string out;
  ASSERT_EQ(SafeConvert("'" + input + "' " + out_file + " --no-sync", &out), 0) << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  EXPECT_NE(out.find("model\\x1b[2J\\u202e.npz"), std::string::npos) << out;

  ASSERT_EQ(SafeConvert("inspect " + out_file, &out), 0) << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  EXPECT_NE(out.find("a\\x1b]0;pwned\\x07\\x1b[2Jverify: OK  f32"), std::string::npos) << out;
  // Names are padded to the longest (escaped) one.
  EXPECT_NE(out.find("b\\u202eevil\\u202c                   f32"), std::string::npos) << out;
  EXPECT_NE(out.find("c\\u009b31mred                       f32"), std::string::npos) << out;

  ASSERT_EQ(SafeConvert("inspect --json " + out_file, &out, false), 0) << out;
  EXPECT_FALSE(HasTerminalControl(out.substr(0, out.find("\xe2")))) << "JSON escapes controls";
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"][0]["name"], retitle);
  EXPECT_EQ(j["tensors"][1]["name"], reversed);

  // verify and inspect name their FILE escaped too.
  const std::string hostile_copy = dir.File("copy\x1b]0;x\x07.safemodel");
  WriteFile(hostile_copy, ReadFile(out_file));
  ASSERT_EQ(SafeConvert("verify '" + hostile_copy + "'", &out), 0) << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  WriteFile(hostile_copy, "not a safemodel");
  EXPECT_EQ(SafeConvert("verify '" + hostile_copy + "'", &out), 3) << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
}

// Findings and status messages come from the worker, which a model may have
// taken over: escaped on stderr, in a success and in a refusal.
TEST(Cli, HostileWorkerTextIsEscaped) {
  const std::string probe = BinDir() + "/sandbox-probe";
  TempDir dir;
  std::string out;
  WriteFile(dir.File("text"), "probe:hostile-text\n");
  ASSERT_EQ(SafeConvert(dir.File("text") + " " + dir.File("o.safemodel") + " --no-sync --worker " + probe,
                        &out),
            0)
      << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  EXPECT_NE(out.find(": note: ALL CLEAN\\x0d\\x1b[1A\\u2066 hidden (probe.hostile\\x1b[2J at at "
                     "\\x1b]0;title\\x07; refers to ref\\x1b[0m)\n"),
            std::string::npos)
      << out;
  ASSERT_EQ(SafeConvert("inspect " + dir.File("o.safemodel"), &out), 0) << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  EXPECT_NE(out.find("\\u2066 hidden"), std::string::npos) << out;

  WriteFile(dir.File("error"), "probe:hostile-error\n");
  EXPECT_EQ(SafeConvert(dir.File("error") + " " + dir.File("p.safemodel") + " --worker " + probe, &out), 1)
      << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  // The headline is the worst finding's (attacker-chosen) text, escaped; the
  // worker's own status message is replaced by it.
  EXPECT_NE(out.find(": refused: calls \\u202emetsys.so\\u202c [probe.hostile at member "
                     "'\\x1b[31mevil\\x1b[0m']\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("calls \\u202emetsys.so\\u202c"), std::string::npos) << out;
  // The JSON report carries the text as it was (JSON-escaped).
  EXPECT_EQ(SafeConvert(dir.File("error") + " " + dir.File("p.safemodel") + " --json --worker " + probe,
                        &out, false),
            1);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["findings"][0]["location"], "member '\x1b[31mevil\x1b[0m'");
}

TEST(Cli, RequireIsolation) {
  TempDir dir;
  std::string out;
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("a") + " --require-isolation", &out), 2);
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("a") + " --require-isolation netns,,userns",
                        &out),
            2)
      << out;
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("a") + " --require-isolation landlock", &out),
            2)
      << out;
  EXPECT_NE(out.find("Landlock is not visible"), std::string::npos) << out;
  // What this machine provides can be required (namespaces are available in
  // CI, as on the development machines).
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " " + dir.File("a") +
                            " --no-sync --require-isolation seccomp,netns,mntns --json",
                        &out, false),
            0)
      << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["worker"]["observed"]["seccomp"], "2");
  // A worker that lies about its isolation: exit 70, nothing written.
  WriteFile(dir.File("lie"), "probe:lie\n");
  EXPECT_EQ(SafeConvert(dir.File("lie") + " " + dir.File("b") + " --worker " + BinDir() + "/sandbox-probe",
                        &out),
            70)
      << out;
  EXPECT_NE(out.find("lacks required isolation"), std::string::npos) << out;
  EXPECT_FALSE(Exists(dir.File("b")));
}

std::string Cli() { return BinDir() + "/safe-convert"; }
std::string SlowWorker() { return BinDir() + "/slow-worker"; }

// An input for slow-worker (tests/converter/slow_worker.cc): the worker sends
// the header of one N-byte tensor and then sleeps, so the conversion stays
// in progress with its output reserved.
void WriteParkedInput(const std::string& path, uint64_t n) {
  WriteFile(path, "slow:park " + std::to_string(n) + "\n");
}

bool IsTempName(const std::string& name) {
  return std::regex_match(name, std::regex(R"(\.sm-[A-Za-z0-9]{6})"));
}

// The worker process of converter `pid`: gone (reaped, or a zombie of init).
bool Gone(pid_t worker) {
  const std::string stat = ReadFile("/proc/" + std::to_string(worker) + "/stat");
  const size_t close = stat.rfind(')');
  return stat.empty() || (close != std::string::npos && stat.substr(close + 2, 1) == "Z");
}

struct SignalCase {
  int sig;
  const char* pretend;  // SAFEMODEL_TEST_PRETEND_MISSING: "" = the kernel's way
  bool existing;        // OUT exists (replaced with --force)
};

std::string SignalCaseName(const ::testing::TestParamInfo<SignalCase>& info) {
  std::string pretend = info.param.pretend;
  for (char& c : pretend) c = c == ',' ? '_' : c;
  return std::string(sigabbrev_np(info.param.sig)) + "_" + (pretend.empty() ? "kernel" : "no_" + pretend) +
         (info.param.existing ? "_replacing" : "_new");
}

class CliSignal : public ::testing::TestWithParam<SignalCase> {};

// Ctrl-C, SIGTERM and SIGHUP while the conversion is in progress (its
// output open and reserved, which the test waits for) leave nothing behind
// on any path: not with O_TMPFILE, not with the named temporary file a
// system without /proc or O_TMPFILE gets, and an existing OUT is untouched.
// The converter dies by the signal it got; its worker dies with it.
TEST_P(CliSignal, LeavesNothingBehind) {
  const SignalCase& c = GetParam();
  TempDir in_dir, out_dir;
  WriteParkedInput(in_dir.File("in"), 1 << 20);
  const std::string out = out_dir.File("o.safemodel");
  if (c.existing) WriteFile(out, "previous");
  ChildOptions options;
  if (*c.pretend != '\0') options.env = {std::string("SAFEMODEL_TEST_PRETEND_MISSING=") + c.pretend};
  std::vector<std::string> argv = {Cli(), in_dir.File("in"), out, "--worker", SlowWorker(), "--timeout", "60"};
  if (c.existing) argv.push_back("--force");
  const pid_t pid = StartChild(argv, options);
  ASSERT_TRUE(WaitFor([&] { return OpenOutputSize(pid, out_dir.path()) >= (1 << 20); }))
      << "the conversion never got under way";
  const bool named = std::string(c.pretend) == "proc,empty_path" || std::string(c.pretend) == "o_tmpfile";
  std::vector<std::string> during = out_dir.List();
  if (named) {
    EXPECT_EQ(during.size(), c.existing ? 2u : 1u);
    EXPECT_TRUE(IsTempName(during.back() == "o.safemodel" ? during.front() : during.back()));
  }
  const std::vector<pid_t> workers = ChildrenNamed(pid, "slow-worker");
  ASSERT_EQ(workers.size(), 1u);
  ASSERT_EQ(kill(pid, c.sig), 0);
  EXPECT_EQ(WaitChild(pid), 128 + c.sig) << "dies by the signal it got";
  EXPECT_EQ(out_dir.List(), c.existing ? std::vector<std::string>{"o.safemodel"} : std::vector<std::string>{});
  if (c.existing) {
    EXPECT_EQ(ReadFile(out), "previous");
  }
  EXPECT_TRUE(WaitFor([&] { return Gone(workers[0]); }, 10)) << "the worker dies with its parent";
}

std::vector<SignalCase> SignalCases() {
  std::vector<SignalCase> out;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    for (const char* pretend : {"", "proc,empty_path", "o_tmpfile"}) {
      for (bool existing : {false, true}) out.push_back({sig, pretend, existing});
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, CliSignal, ::testing::ValuesIn(SignalCases()), SignalCaseName);

// SIGKILL cannot be caught: with O_TMPFILE the kernel frees the anonymous
// file and nothing is left; on the named path the hidden `.sm-XXXXXX` stays
// (README "Output files" says so). OUT itself is untouched either way.
TEST(Cli, SigkillLeavesAtMostTheHiddenTemporaryFile) {
  for (const char* pretend : {"", "proc,empty_path"}) {
    SCOPED_TRACE(*pretend ? pretend : "kernel default");
    TempDir in_dir, out_dir;
    WriteParkedInput(in_dir.File("in"), 1 << 20);
    WriteFile(out_dir.File("o"), "previous");
    ChildOptions options;
    if (*pretend != '\0') options.env = {std::string("SAFEMODEL_TEST_PRETEND_MISSING=") + pretend};
    const pid_t pid = StartChild(
        {Cli(), in_dir.File("in"), out_dir.File("o"), "--force", "--worker", SlowWorker()}, options);
    ASSERT_TRUE(WaitFor([&] { return OpenOutputSize(pid, out_dir.path()) >= (1 << 20); }));
    kill(pid, SIGKILL);
    EXPECT_EQ(WaitChild(pid), 128 + SIGKILL);
    std::vector<std::string> left = out_dir.List();
    EXPECT_EQ(ReadFile(out_dir.File("o")), "previous");
    const int anonymous = open(out_dir.path().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (anonymous >= 0) close(anonymous);
    if (*pretend == '\0' && anonymous >= 0) {
      EXPECT_EQ(left, std::vector<std::string>{"o"});
    } else {
      ASSERT_EQ(left.size(), 2u);
      EXPECT_TRUE(IsTempName(left[0])) << left[0];
    }
  }
}

// Only a regular file is ever replaced, an existing one only with --force,
// and OUT is checked before any work (the worker never starts).
TEST(Cli, OutputRules) {
  TempDir dir;
  std::string text;
  const std::string in = Fixture("numpy/f32.npy");
  ASSERT_EQ(mkfifo(dir.File("fifo").c_str(), 0600), 0);
  ASSERT_EQ(symlink("target", dir.File("link").c_str()), 0);
  ASSERT_EQ(mkdir(dir.File("dir").c_str(), 0700), 0);
  for (const auto& [out, type] : std::vector<std::pair<std::string, std::string>>{
           {dir.File("fifo"), "a FIFO"}, {dir.File("link"), "a symbolic link"},
           {dir.File("dir"), "a directory"}, {"/dev/null", "a character device"}}) {
    for (const char* force : {"", " --force"}) {
      EXPECT_EQ(SafeConvert(in + " " + out + force + " --worker /nonexistent", &text), 2) << text;
      EXPECT_NE(text.find("is " + type + "; only a regular file is ever replaced"), std::string::npos) << text;
    }
  }
  EXPECT_TRUE(S_ISFIFO([&] { struct stat st; lstat(dir.File("fifo").c_str(), &st); return st.st_mode; }()));
  WriteFile(dir.File("m"), "previous");
  EXPECT_EQ(SafeConvert(in + " " + dir.File("m") + " --no-sync", &text), 2) << text;
  EXPECT_NE(text.find("exists; pass --force"), std::string::npos) << text;
  EXPECT_EQ(ReadFile(dir.File("m")), "previous");
  EXPECT_EQ(SafeConvert(in + " " + dir.File("m") + " --no-sync --force", &text), 0) << text;
  EXPECT_TRUE(Model::Open(dir.File("m")).ok());
  EXPECT_EQ(SafeConvert(in + " " + dir.File("m") + " --no-sync -f", &text), 0) << text;
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"dir", "fifo", "link", "m"}));
}

TEST(Cli, TheReportIsNeitherTheOutputNorTheInput) {
  TempDir dir;
  std::string text;
  WriteFile(dir.File("in.npy"), ReadFile(Fixture("numpy/f32.npy")));
  const std::string in = dir.File("in.npy");
  EXPECT_EQ(SafeConvert(in + " " + dir.File("o") + " --report " + dir.File("o"), &text), 2) << text;
  EXPECT_NE(text.find("the report path is the output path"), std::string::npos) << text;
  EXPECT_EQ(SafeConvert(in + " " + dir.File("o") + " --report " + dir.path() + "/./o", &text), 2) << text;
  WriteFile(dir.File("o"), "previous");
  ASSERT_EQ(link(dir.File("o").c_str(), dir.File("hardlink").c_str()), 0);
  EXPECT_EQ(SafeConvert(in + " " + dir.File("o") + " --force --report " + dir.File("hardlink"), &text), 2)
      << text;
  EXPECT_NE(text.find("is the output"), std::string::npos) << text;
  EXPECT_EQ(ReadFile(dir.File("o")), "previous");
  EXPECT_EQ(SafeConvert(in + " " + dir.File("p") + " --report " + in, &text), 2) << text;
  EXPECT_NE(text.find("is the input"), std::string::npos) << text;
  EXPECT_EQ(ReadFile(in), ReadFile(Fixture("numpy/f32.npy"))) << "the input was not truncated";
  EXPECT_EQ(SafeConvert(in + " - --report /dev/stdout > " + dir.File("stdout"), &text), 2) << text;
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"hardlink", "in.npy", "o", "stdout"}));
}

// OUT "-" is standard output: written in one pass after the conversion is
// validated, so a failed conversion writes nothing there.
TEST(Cli, DashIsStandardOutputWrittenOnlyWhenValid) {
  TempDir dir;
  std::string out, text;
  ASSERT_EQ(SafeConvert(Fixture("numpy/stored.npz") + " " + dir.File("file.safemodel") + " --no-sync"), 0);
  ASSERT_EQ(SafeConvert(Fixture("numpy/stored.npz") + " - --no-sync", &out, false), 0);
  EXPECT_TRUE(out == ReadFile(dir.File("file.safemodel"))) << "the same bytes through a pipe";
  ASSERT_EQ(RunCommand("(" + Cli() + " " + Fixture("numpy/stored.npz") + " - > " + dir.File("redirected") +
                       " 2> " + dir.File("err") + ")"),
            0);
  EXPECT_NE(ReadFile(dir.File("err")).find("converted"), std::string::npos) << "the summary goes to stderr";
  EXPECT_TRUE(ReadFile(dir.File("redirected")) == ReadFile(dir.File("file.safemodel")));
  EXPECT_EQ(SafeConvert(Fixture("numpy/object_malicious.npy") + " -", &out, false), 1);
  EXPECT_EQ(out, "") << "nothing on stdout for a refusal";
  EXPECT_EQ(SafeConvert(Fixture("numpy/truncated.npy") + " -", &out, false), 3);
  EXPECT_EQ(out, "");
  EXPECT_EQ(SafeConvert(Fixture("numpy/f32.npy") + " - --json", &text), 2) << text;
  EXPECT_EQ(SafeConvert("- " + dir.File("x"), &text), 2) << text;
  // A reader that stops early: the converter reports the write error.
  WriteFile(dir.File("big.npy"), NpyBytes(4 << 20));
  EXPECT_EQ(RunCommand("(" + Cli() + " " + dir.File("big.npy") + " - 2>/dev/null; echo $? > " +
                       dir.File("code") + ") | head -c 10 > /dev/null"),
            0);
  EXPECT_EQ(ReadFile(dir.File("code")), "6\n");
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"big.npy", "code", "err", "file.safemodel", "redirected"}));
}

// A new file's mode is 0666 & ~umask; a replaced file keeps its mode.
TEST(Cli, ModesFollowTheUmaskAndAreNeverWidened) {
  TempDir dir;
  const std::string in = Fixture("numpy/f32.npy");
  for (int mask : {022, 077, 002}) {
    const std::string out = dir.File("m" + std::to_string(mask));
    ChildOptions o;
    o.umask = mask;
    ASSERT_EQ(RunChild({Cli(), in, out, "--no-sync"}, o), 0);
    struct stat st;
    ASSERT_EQ(stat(out.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0666u & ~static_cast<mode_t>(mask)) << std::oct << mask;
  }
  WriteFile(dir.File("private"), "old");
  ASSERT_EQ(chmod(dir.File("private").c_str(), 0600), 0);
  ChildOptions o;
  o.umask = 0;
  ASSERT_EQ(RunChild({Cli(), in, dir.File("private"), "--force", "--no-sync"}, o), 0);
  struct stat st;
  ASSERT_EQ(stat(dir.File("private").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "re-converting never makes a private model readable";
  EXPECT_TRUE(Model::Open(dir.File("private")).ok());
}

// The temporary name has a fixed length: an OUT name of 255 bytes (the
// longest Linux allows) works on every path; 256 is refused before any work.
TEST(Cli, TheLongestLegalNameWorks) {
  for (const char* pretend : {"", "proc,empty_path", "o_tmpfile"}) {
    SCOPED_TRACE(pretend);
    TempDir dir;
    const std::string name(255, 'x');
    ChildOptions o;
    if (*pretend != '\0') o.env = {std::string("SAFEMODEL_TEST_PRETEND_MISSING=") + pretend};
    EXPECT_EQ(RunChild({Cli(), Fixture("numpy/f32.npy"), dir.File(name), "--no-sync"}, o), 0);
    EXPECT_EQ(RunChild({Cli(), Fixture("numpy/f32.npy"), dir.File(name), "--no-sync", "--force"}, o), 0);
    EXPECT_TRUE(Model::Open(dir.File(name)).ok());
    o.stderr_file = dir.path() + "/err";
    EXPECT_EQ(RunChild({Cli(), Fixture("numpy/f32.npy"), dir.File(name + "x"), "--no-sync"}, o), 2);
    EXPECT_NE(ReadFile(dir.File("err")).find("256 bytes long"), std::string::npos);
    EXPECT_EQ(dir.List(), (std::vector<std::string>{"err", name}));
  }
}

// The parent needs only a handful of descriptors; with fewer, exit 4 names
// the limit to raise. Limits are set on the converter's process, as
// `prlimit --nofile=N:N` would.
TEST(Cli, AHandfulOfDescriptorsIsEnough) {
  TempDir dir;
  ChildOptions o;
  o.stderr_file = dir.File("err");
  o.rlimits = {{RLIMIT_NOFILE, 14}};
  EXPECT_EQ(RunChild({Cli(), Fixture("numpy/f32.npy"), dir.File("m"), "--no-sync"}, o), 0)
      << ReadFile(dir.File("err"));
  o.rlimits = {{RLIMIT_NOFILE, 10}};
  EXPECT_EQ(RunChild({Cli(), Fixture("numpy/f32.npy"), dir.File("n"), "--no-sync"}, o), 4);
  EXPECT_NE(ReadFile(dir.File("err")).find("raise it with `ulimit -n`"), std::string::npos)
      << ReadFile(dir.File("err"));
  EXPECT_EQ(dir.List(), (std::vector<std::string>{"err", "m"}));
}

// A disk too small for the output, reached through RLIMIT_FSIZE: exit 4
// before the first tensor byte, the limit named, nothing left behind.
TEST(Cli, AnOutputThatCannotFitFailsEarlyAndCleanly) {
  TempDir dir, in_dir;
  WriteFile(in_dir.File("big.npy"), NpyBytes(4 << 20));
  ChildOptions o;
  o.stderr_file = in_dir.File("err");
  o.rlimits = {{RLIMIT_FSIZE, 1 << 20}};
  EXPECT_EQ(RunChild({Cli(), in_dir.File("big.npy"), dir.File("m"), "--no-sync"}, o), 4);
  EXPECT_NE(ReadFile(in_dir.File("err")).find("`ulimit -f`"), std::string::npos) << ReadFile(in_dir.File("err"));
  EXPECT_EQ(dir.List(), std::vector<std::string>{});
}

// Four conversions at once into a file system with room for two outputs:
// with the space reserved before the first tensor byte, exactly two succeed
// and two fail early and cleanly with exit 4. The file system is a small
// tmpfs in a private mount namespace (as root, or in a user namespace).
TEST(Cli, ConcurrentConversionsIntoANearlyFullFileSystem) {
  TempDir dir;
  const std::string in = dir.File("in.npy");
  constexpr uint64_t kTensor = 3 << 20;
  WriteFile(in, NpyBytes(kTensor));
  const std::string mnt = dir.File("mnt");
  ASSERT_EQ(mkdir(mnt.c_str(), 0755), 0);
  const std::string result = dir.File("result");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const uid_t uid = geteuid();
    const gid_t gid = getegid();
    if (unshare(CLONE_NEWNS) != 0) {
      if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) _exit(77);
      WriteFile("/proc/self/setgroups", "deny");
      WriteFile("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1");
      WriteFile("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1");
    }
    // Room for two outputs and a half (each ~3 MiB + 8 KiB).
    const std::string size = "size=" + std::to_string(kTensor * 5 / 2);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("tmpfs", mnt.c_str(), "tmpfs", 0, size.c_str()) != 0) {
      _exit(77);
    }
    std::vector<pid_t> runs;
    for (int i = 0; i < 4; ++i) {
      runs.push_back(StartChild({Cli(), in, mnt + "/out" + std::to_string(i), "--no-sync"}));
    }
    std::string codes;
    for (pid_t r : runs) codes += std::to_string(WaitChild(r)) + " ";
    std::string files;
    int verified = 0;
    for (const std::string& f : TempDirListing(mnt)) {
      files += f + " ";
      verified += RunChild({Cli(), "verify", mnt + "/" + f}) == 0 ? 1 : 0;
    }
    WriteFile(result, codes + "\n" + files + "\n" + std::to_string(verified) + "\n");
    _exit(0);
  }
  const int status = WaitChild(pid);
  if (status == 77) GTEST_SKIP() << "cannot mount a tmpfs here (not root, no user namespaces)";
  ASSERT_EQ(status, 0);
  std::istringstream lines(ReadFile(result));
  std::string codes, files, verified;
  std::getline(lines, codes);
  std::getline(lines, files);
  std::getline(lines, verified);
  std::vector<int> sorted;
  std::istringstream code_words(codes);
  for (int c; code_words >> c;) sorted.push_back(c);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int>{0, 0, 4, 4})) << codes;
  EXPECT_EQ(std::count(files.begin(), files.end(), ' '), 2) << "two outputs and nothing else: " << files;
  EXPECT_EQ(files.find(".sm-"), std::string::npos) << files;
  EXPECT_EQ(verified, "2") << "both outputs are complete";
}

}  // namespace
}  // namespace safemodel::testing
