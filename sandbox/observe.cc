#include "sandbox/observe.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/personality.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace safemodel::sandbox {

namespace {

// /proc files read here are a few KiB; more is not a status file.
constexpr size_t kMaxProcFileBytes = 64 * 1024;
// A worker is single-threaded; a replaced binary may not be, and every
// thread is checked. More than this many is refused outright.
constexpr size_t kMaxThreads = 64;

bool ReadProcFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  out->clear();
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 && out->size() < kMaxProcFileBytes) {
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return n == 0;
}

// The value of "Key:\t..." in a /proc status file, without the whitespace.
std::string StatusField(const std::string& status, std::string_view key) {
  const std::string text = "\n" + status;
  const std::string needle = "\n" + std::string(key) + ":";
  size_t at = text.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  size_t end = text.find('\n', at);
  std::string v = text.substr(at, end == std::string::npos ? std::string::npos : end - at);
  // One space between items ("65534 65534 65534 65534"), none around.
  std::istringstream in(v);
  std::string item, out;
  while (in >> item) out += (out.empty() ? "" : " ") + item;
  return out;
}

bool AllNonZero(const std::string& ids) {
  std::istringstream in(ids);
  std::string id;
  int n = 0;
  while (in >> id) {
    if (id == "0") return false;
    ++n;
  }
  return n > 0;
}

bool HexZero(const std::string& hex) {
  return !hex.empty() && hex.find_first_not_of('0') == std::string::npos;
}

// Hard limit of a row of /proc/<pid>/limits ("Max open files  0  0  files").
std::string HardLimit(const std::string& limits, std::string_view row) {
  size_t at = limits.find(row);
  if (at == std::string::npos) return "";
  std::istringstream in(limits.substr(at + row.size(), limits.find('\n', at) - at - row.size()));
  std::string soft, hard;
  in >> soft >> hard;
  return hard;
}

std::string NamespaceId(const std::string& proc, const char* ns) {
  char buf[128];
  ssize_t n = readlink((proc + "/ns/" + ns).c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

std::vector<std::string> ThreadIds(const std::string& proc) {
  std::vector<std::string> out;
  DIR* d = opendir((proc + "/task").c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.' && out.size() <= kMaxThreads) out.emplace_back(e->d_name);
  }
  closedir(d);
  return out;
}

}  // namespace

const std::vector<std::string>& ObservableLayers() {
  static const std::vector<std::string> kLayers = {
      "seccomp", "no_new_privs", "no_capabilities", "non_root", "rlimits", "userns",
      "netns",   "mntns",        "ipcns",           "utsns",    "aslr"};
  return kLayers;
}

const std::vector<std::string>& MandatoryLayers() {
  static const std::vector<std::string> kLayers = {"seccomp", "no_new_privs", "no_capabilities",
                                                   "rlimits"};
  return kLayers;
}

bool IsolationObservation::Has(std::string_view layer) const {
  return std::find(layers.begin(), layers.end(), layer) != layers.end();
}

std::optional<uint64_t> ParseVmHwmBytes(std::string_view status) {
  // The key at the start of a line, never inside another field's value.
  constexpr std::string_view kKey = "VmHWM:";
  size_t at = 0;
  if (status.substr(0, kKey.size()) != kKey) {
    at = status.find("\nVmHWM:");
    if (at == std::string_view::npos) return std::nullopt;
    ++at;
  }
  at += kKey.size();
  while (at < status.size() && (status[at] == ' ' || status[at] == '\t')) ++at;
  uint64_t kib = 0;
  size_t digits = 0;
  for (; at < status.size() && status[at] >= '0' && status[at] <= '9'; ++at) {
    if (++digits > kMaxVmHwmDigits) return std::nullopt;
    kib = kib * 10 + static_cast<uint64_t>(status[at] - '0');
  }
  if (digits == 0 || status.substr(at, 3) != " kB") return std::nullopt;
  return kib * 1024;
}

std::optional<uint64_t> ObservePeakResidentBytes(pid_t pid) {
  std::string status;
  if (pid <= 0 || !ReadProcFile("/proc/" + std::to_string(pid) + "/status", &status)) return std::nullopt;
  return ParseVmHwmBytes(status);
}

IsolationObservation ObserveIsolation(pid_t pid) {
  IsolationObservation obs;
  const std::string proc = "/proc/" + std::to_string(pid);
  auto fact = [&](const char* key, std::string value) { obs.facts.emplace_back(key, std::move(value)); };
  auto fail = [&](const std::string& what) {
    if (obs.error.empty()) obs.error = what;
  };

  // Per-thread properties hold only if they hold for every thread.
  bool seccomp = true, nnp = true, no_caps = true, non_root = true;
  std::vector<std::string> tids = ThreadIds(proc);
  fact("threads", std::to_string(tids.size()));
  if (tids.empty() || tids.size() > kMaxThreads) {
    fail(tids.empty() ? "cannot list " + proc + "/task" : "the worker has too many threads");
    seccomp = nnp = no_caps = non_root = false;
  }
  bool first = true;
  for (const std::string& tid : tids) {
    std::string status;
    if (!ReadProcFile(proc + "/task/" + tid + "/status", &status)) {
      fail("cannot read " + proc + "/task/" + tid + "/status: " + std::strerror(errno));
      seccomp = nnp = no_caps = non_root = false;
      break;
    }
    const std::string uid = StatusField(status, "Uid"), gid = StatusField(status, "Gid");
    const std::string groups = StatusField(status, "Groups");
    const std::string eff = StatusField(status, "CapEff"), prm = StatusField(status, "CapPrm");
    const std::string inh = StatusField(status, "CapInh"), amb = StatusField(status, "CapAmb");
    seccomp = seccomp && StatusField(status, "Seccomp") == "2";
    nnp = nnp && StatusField(status, "NoNewPrivs") == "1";
    no_caps = no_caps && HexZero(eff) && HexZero(prm) && HexZero(inh) && HexZero(amb);
    non_root = non_root && AllNonZero(uid) && AllNonZero(gid) &&
               (" " + groups + " ").find(" 0 ") == std::string::npos;
    if (first) {
      first = false;
      fact("seccomp", StatusField(status, "Seccomp"));
      fact("seccomp_filters", StatusField(status, "Seccomp_filters"));
      fact("no_new_privs", StatusField(status, "NoNewPrivs"));
      fact("uid", uid);
      fact("gid", gid);
      fact("groups", groups);
      fact("cap_eff", eff);
      fact("cap_prm", prm);
      fact("cap_inh", inh);
      fact("cap_amb", amb);
      fact("cap_bnd", StatusField(status, "CapBnd"));
      fact("speculation_store_bypass", StatusField(status, "Speculation_Store_Bypass"));
      fact("speculation_indirect_branch", StatusField(status, "SpeculationIndirectBranch"));
    }
  }

  std::string limits;
  bool rlimits = ReadProcFile(proc + "/limits", &limits);
  if (!rlimits) fail("cannot read " + proc + "/limits");
  for (const char* row : {"Max file size", "Max open files", "Max core file size",
                          "Max locked memory"}) {
    rlimits = rlimits && HardLimit(limits, row) == "0";
  }

  std::vector<std::string> namespaces;
  for (const char* ns : {"user", "net", "mnt", "ipc", "uts"}) {
    std::string theirs = NamespaceId(proc, ns), ours = NamespaceId("/proc/self", ns);
    if (theirs.empty() || ours.empty()) {
      fail("cannot read " + proc + "/ns/" + ns + ": " + std::strerror(errno));
    } else if (theirs != ours) {
      namespaces.push_back(std::string(ns) + "ns");
    }
  }

  std::string persona, randomize;
  bool aslr = ReadProcFile(proc + "/personality", &persona) &&
              ReadProcFile("/proc/sys/kernel/randomize_va_space", &randomize);
  if (aslr) {
    unsigned long bits = std::strtoul(persona.c_str(), nullptr, 16);
    aslr = (bits & ADDR_NO_RANDOMIZE) == 0 && !randomize.empty() && randomize[0] != '0';
    fact("personality", persona.substr(0, persona.find('\n')));
  } else {
    fail("cannot read " + proc + "/personality");
  }

  auto add = [&](bool present, const char* layer) {
    if (present) obs.layers.push_back(layer);
  };
  add(seccomp, "seccomp");
  add(nnp, "no_new_privs");
  add(no_caps, "no_capabilities");
  add(non_root, "non_root");
  add(rlimits, "rlimits");
  for (const char* ns : {"userns", "netns", "mntns", "ipcns", "utsns"}) {
    add(std::find(namespaces.begin(), namespaces.end(), ns) != namespaces.end(), ns);
  }
  add(aslr, "aslr");
  return obs;
}

}  // namespace safemodel::sandbox
