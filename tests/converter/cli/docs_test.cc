// The manual page and the bash completion (converter/cli/safe-convert.1,
// safe-convert.bash) stay in step with the options the program accepts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <string>

#include "tests/converter/cli/cli_util.h"

namespace safemodel::testing {
namespace {

std::string SourceFile(const std::string& name) { return Fixture("../../converter/cli/" + name); }

// The long options a command's --help lists.
std::set<std::string> HelpOptions(const std::string& command) {
  std::string out;
  EXPECT_EQ(SafeConvert(command + " --help", &out, false), 0) << command;
  std::set<std::string> opts;
  const std::regex option("(--[a-z][a-z0-9-]*)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), option); it != std::sregex_iterator(); ++it) {
    opts.insert((*it)[1]);
  }
  return opts;
}

TEST(CliDocs, ManPageAndCompletionNameEveryOption) {
  const std::string man = ReadFile(SourceFile("safe-convert.1"));
  const std::string completion = ReadFile(SourceFile("safe-convert.bash"));
  ASSERT_FALSE(man.empty());
  ASSERT_FALSE(completion.empty());
  for (const std::string cmd : {"convert", "inspect", "verify", "export", "batch"}) {
    const std::set<std::string> opts = HelpOptions(cmd);
    EXPECT_GT(opts.size(), 2u) << cmd;
    for (const std::string& opt : opts) {
      std::string roff;  // the page writes '-' as '\-'
      for (char c : opt) roff += c == '-' ? std::string("\\-") : std::string(1, c);
      EXPECT_NE(man.find(roff), std::string::npos) << cmd << " " << opt;
      EXPECT_NE(completion.find(opt), std::string::npos) << cmd << " " << opt;
    }
  }
}

TEST(CliDocs, ManPageRendersWithoutWarnings) {
  if (access("/usr/bin/groff", X_OK) != 0) GTEST_SKIP() << "needs groff";
  std::string out;
  ASSERT_EQ(RunCommand("/usr/bin/groff -man -Tutf8 -ww -z '" + SourceFile("safe-convert.1") + "'", &out), 0);
  EXPECT_EQ(out, "");
}

std::string Complete(const std::string& words, int cword) {
  std::string out;
  EXPECT_EQ(RunCommand("bash -c 'source \"" + SourceFile("safe-convert.bash") + "\"; COMP_WORDS=(" + words +
                           "); COMP_CWORD=" + std::to_string(cword) +
                           "; _safe_convert; echo \"${COMPREPLY[*]}\"'",
                       &out),
            0);
  return out;
}

TEST(CliDocs, BashCompletion) {
  const std::string inspect = Complete("safe-convert inspect --", 2);
  for (const char* opt : {"--json", "--tensors", "--architecture", "--sha256", "--help", "--version"}) {
    EXPECT_NE(inspect.find(opt), std::string::npos) << opt << ": " << inspect;
  }
  EXPECT_EQ(inspect.find("--force"), std::string::npos) << inspect;
  EXPECT_NE(Complete("safe-convert in.pt out --ti", 3).find("--timeout"), std::string::npos);
  EXPECT_EQ(Complete("safe-convert a b --digest ''", 4), "xxh3 sha256\n");
  EXPECT_NE(Complete("safe-convert ins", 1).find("inspect"), std::string::npos);
  EXPECT_NE(Complete("safe-convert ba", 1).find("batch"), std::string::npos);
  EXPECT_NE(Complete("safe-convert batch zoo --sh", 3).find("--shards"), std::string::npos);
  EXPECT_EQ(Complete("safe-convert batch zoo --sh", 3).find("--sha256"), std::string::npos);
}

}  // namespace
}  // namespace safemodel::testing
