// safe-convert, the binary: commands, flags, exit codes and JSON output.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "converter/digest.h"
#include "proto/safemodel.pb.h"
#include "safemodel/reader.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

namespace safemodel::testing {
namespace {

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
  EXPECT_NE(out.find("f32 [4, 3]"), std::string::npos) << out;

  ASSERT_EQ(SafeConvert("inspect --json " + out_file, &out), 0) << out;
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
    ASSERT_EQ(SafeConvert("inspect --json " + file, &out, false), 0) << out;
    auto j = nlohmann::json::parse(out);
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

TEST(Cli, ExitCodesFollowTheTable) {
  TempDir dir;
  const std::string out = dir.File("o.safemodel");
  std::string text;
  EXPECT_EQ(SafeConvert(Fixture("numpy/object_malicious.npy") + " " + out, &text), 1) << text;
  // The object array's pickle calls posix.system (the pickle machine names it).
  EXPECT_NE(text.find("refused: pickle.global"), std::string::npos) << text;
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
  EXPECT_NE(out.find("b\\u202eevil\\u202c  f32"), std::string::npos) << out;
  EXPECT_NE(out.find("c\\u009b31mred  f32"), std::string::npos) << out;

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
  EXPECT_NE(out.find("note: probe.hostile\\x1b[2J at at \\x1b]0;title\\x07: ALL CLEAN\\x0d"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("[ref\\x1b[0m]"), std::string::npos) << out;
  ASSERT_EQ(SafeConvert("inspect " + dir.File("o.safemodel"), &out), 0) << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  EXPECT_NE(out.find("\\u2066 hidden"), std::string::npos) << out;

  WriteFile(dir.File("error"), "probe:hostile-error\n");
  EXPECT_EQ(SafeConvert(dir.File("error") + " " + dir.File("p.safemodel") + " --worker " + probe, &out), 1)
      << out;
  EXPECT_FALSE(HasTerminalControl(out)) << out;
  EXPECT_NE(out.find("refused\\x1b[2J\\x1b]0;pwned\\x07 verify: OK \\u202e"), std::string::npos) << out;
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

// A converter killed mid-conversion (Ctrl-C, a batch scheduler's SIGKILL)
// leaves nothing in the output directory: the output is an anonymous file
// until the final rename, and the worker dies with its parent.
TEST(Cli, AKilledConversionLeavesNoFileBehind) {
  for (int sig : {SIGTERM, SIGKILL}) {
    TempDir in_dir, out_dir;
    const std::string input = in_dir.File("probe-input");
    WriteFile(input, "probe:park\n");  // sandbox-probe parks after lockdown
    const std::string probe = BinDir() + "/sandbox-probe";
    if (access(probe.c_str(), X_OK) != 0) GTEST_SKIP() << "no sandbox-probe";
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const std::string cli = BinDir() + "/safe-convert";
      const std::string out = out_dir.File("o.safemodel");
      execl(cli.c_str(), cli.c_str(), input.c_str(), out.c_str(), "--worker", probe.c_str(),
            "--timeout", "30", static_cast<char*>(nullptr));
      _exit(127);
    }
    usleep(700 * 1000);  // the output is created before the worker starts
    ASSERT_EQ(kill(pid, sig), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the converter ended on its own: " << status;
    EXPECT_EQ(WTERMSIG(status), sig);
    EXPECT_EQ(out_dir.List(), std::vector<std::string>{}) << "signal " << sig;
  }
}

}  // namespace
}  // namespace safemodel::testing
