// What each worker executable maps (converter/worker/CMakeLists.txt). The
// lean worker, which every conversion starts, must not need libhdf5 or what
// libhdf5 pulls in (curl, ldap, krb5, gnutls, ssh2, ...): all of that would
// be attack surface after lockdown, and dynamic-linking time for every file.
#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

// Library names (a "NEEDED" entry, or an ldd line's first word).
std::set<std::string> Names(const std::string& command, bool needed_entries) {
  std::string out;
  EXPECT_EQ(RunCommand(command, &out, false), 0) << command << "\n" << out;
  std::set<std::string> names;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (needed_entries) {
      const size_t open = line.find("(NEEDED)");
      const size_t lb = line.find('[');
      const size_t rb = line.find(']');
      if (open != std::string::npos && lb != std::string::npos && rb > lb) {
        names.insert(line.substr(lb + 1, rb - lb - 1));
      }
    } else {
      std::istringstream words(line);
      std::string name;
      words >> name;
      if (name.find(".so") != std::string::npos) names.insert(name);
    }
  }
  return names;
}

std::set<std::string> Needed(const std::string& program) {
  return Names("readelf -d '" + program + "'", true);
}
std::set<std::string> Mapped(const std::string& program) {
  return Names("ldd '" + program + "'", false);
}

// libhdf5 and the libraries only it brings in.
const char* const kHdf5Closure[] = {"hdf5", "curl", "ldap", "krb5", "gnutls", "ssh", "sasl", "sz."};

std::string Hdf5Related(const std::set<std::string>& names) {
  std::string hits;
  for (const std::string& n : names) {
    for (const char* bad : kHdf5Closure) {
      if (n.find(bad) != std::string::npos) hits += n + " ";
    }
  }
  return hits;
}

TEST(WorkerLibraries, LeanWorkerNeedsNoHdf5) {
  if (RunCommand("readelf --version && ldd --version") != 0) GTEST_SKIP() << "no readelf or ldd";
  const std::string lean = BinDir() + "/safemodel-worker";
  const std::set<std::string> needed = Needed(lean);
  // The reading worked: the worker's own libraries are there.
  ASSERT_TRUE(needed.count("libseccomp.so.2")) << ::testing::PrintToString(needed);
  ASSERT_TRUE(needed.count("libzip.so.4")) << ::testing::PrintToString(needed);
  EXPECT_EQ(Hdf5Related(needed), "") << ::testing::PrintToString(needed);
  const std::set<std::string> mapped = Mapped(lean);
  ASSERT_TRUE(mapped.count("libseccomp.so.2")) << ::testing::PrintToString(mapped);
  EXPECT_EQ(Hdf5Related(mapped), "") << ::testing::PrintToString(mapped);
  // 13 with a shared C++ runtime (libc, libstdc++, protobuf, libzip and its
  // libcrypto, ...), 10 with SAFEMODEL_STATIC_RUNTIME; the HDF5 worker maps
  // 44 or 41. A new dependency is a decision, not an accident.
  EXPECT_LE(mapped.size(), 16u) << ::testing::PrintToString(mapped);
}

TEST(WorkerLibraries, Hdf5WorkerIsTheOneWithLibhdf5) {
  if (RunCommand("readelf --version") != 0) GTEST_SKIP() << "no readelf";
  const std::set<std::string> needed = Needed(BinDir() + "/safemodel-worker-hdf5");
  ASSERT_TRUE(needed.count("libseccomp.so.2")) << ::testing::PrintToString(needed);
  EXPECT_NE(Hdf5Related(needed).find("hdf5"), std::string::npos)
      << ::testing::PrintToString(needed);
}

// SAFEMODEL_STATIC_RUNTIME (the top-level CMakeLists.txt): the programs
// started once per conversion carry protobuf and the C++ runtime, so that the
// dynamic linker does not relocate them at every start.
TEST(WorkerLibraries, StartedProgramsNeedNoProtobufOrCxxRuntime) {
#ifndef SAFEMODEL_EXPECT_STATIC_RUNTIME
  GTEST_SKIP() << "built with the shared runtime (SAFEMODEL_STATIC_RUNTIME off or a sanitizer build)";
#else
  if (RunCommand("readelf --version") != 0) GTEST_SKIP() << "no readelf";
  for (const char* program : {"safemodel-worker", "safemodel-worker-hdf5", "safe-convert"}) {
    const std::set<std::string> needed = Needed(BinDir() + "/" + program);
    ASSERT_TRUE(needed.count("libc.so.6")) << program << ::testing::PrintToString(needed);
    for (const std::string& n : needed) {
      EXPECT_EQ(n.find("libprotobuf"), std::string::npos) << program << " needs " << n;
      EXPECT_EQ(n.find("libstdc++"), std::string::npos) << program << " needs " << n;
      EXPECT_EQ(n.find("libgcc_s"), std::string::npos) << program << " needs " << n;
    }
  }
#endif
}

}  // namespace
}  // namespace safemodel::testing
