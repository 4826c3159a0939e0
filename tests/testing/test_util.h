// Helpers shared by the tests: scratch directories, fixture paths, and
// running conversions through the real sandboxed pipeline.
#ifndef SAFEMODEL_TESTS_TESTING_TEST_UTIL_H_
#define SAFEMODEL_TESTS_TESTING_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/convert.h"

namespace safemodel::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  // Names of the entries in the directory (hidden ones included), sorted.
  std::vector<std::string> List() const;

 private:
  std::string path_;
};

// Path of a file under tests/fixtures/.
std::string Fixture(const std::string& relative);
// Path of a file in the shared corpus (../shared/corpus/...), or "" if the
// corpus is not present (tests then GTEST_SKIP()).
std::string CorpusFile(const std::string& relative);
// The build's bin directory (safe-convert, safemodel-worker, helpers).
std::string BinDir();

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& bytes);
bool Exists(const std::string& path);

// ConvertFile without the fsync and with a 60 s timeout. With
// SAFEMODEL_TEST_FORK_SERVER=1 in the environment (the "forked" runs of the
// sandbox tests), through a fork server kept per worker path.
ConvertReport Convert(const std::string& in, const std::string& out, ConvertOptions options = {});
bool ForkServerMode();

// Runs /usr/bin/python3 with a script file and arguments; returns the exit
// code (-1 if python3 is unavailable). Output goes to *output if given.
int RunPython(const std::string& script, const std::vector<std::string>& args,
              std::string* output = nullptr);
// True if /usr/bin/python3 can import all of the given modules.
bool PythonHas(const std::vector<std::string>& modules);

// A child process started by fork + exec, with resource limits (soft = hard,
// as `prlimit` would set them), extra environment variables ("K=V"), a umask
// and its output in files ("" = /dev/null).
struct ChildOptions {
  std::vector<std::pair<int, uint64_t>> rlimits;
  std::vector<std::string> env;
  int umask = -1;
  std::string stdout_file;
  std::string stderr_file;
};
pid_t StartChild(const std::vector<std::string>& argv, const ChildOptions& options = {});
// Waits for it; returns its exit code, or 128 + N if signal N ended it.
int WaitChild(pid_t pid);
// StartChild + WaitChild.
int RunChild(const std::vector<std::string>& argv, const ChildOptions& options = {});

// Polls `ready` every millisecond until it is true (true) or `seconds`
// passed (false). For waiting on a real state, never as a sleep.
bool WaitFor(const std::function<bool()>& ready, double seconds = 30);

// The size of the largest regular file under `dir` that process `pid` holds
// open, anonymous (O_TMPFILE) or named, or -1 if none: the sign that a
// conversion into `dir` is in progress (the output's space is reserved, so
// the size is the planned one, right after the worker's header).
int64_t OpenOutputSize(pid_t pid, const std::string& dir);

// The pids of the processes whose parent is `parent` and whose name is `comm`.
std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm);

// A NumPy .npy file, format 1.0, header padded to 64 bytes as NumPy writes
// it: `descr` ("<f4"), the order, `shape` as the tuple's inside ("3, 4",
// "12,"), then `data` as it is.
std::string NpyImage(const std::string& descr, bool fortran, const std::string& shape,
                     const std::string& data);

// A NumPy .npy file holding `n` u8 values i % 251.
std::string NpyBytes(uint64_t n);

// How many pages of bytes [from, to) of the file at `path` are in the page
// cache (mincore; the file is mapped, never read). -1 if it cannot tell.
int64_t ResidentPages(const std::string& path, uint64_t from, uint64_t to);
// Whether the page holding `address` is mapped in this process's page tables
// (/proc/self/pagemap's "present" bit): 1 or 0, -1 if it cannot tell. Unlike
// ResidentPages (the page cache), this is what counts in the process's RSS.
int MappedHere(const void* address);
// A size field of /proc/self/status ("VmHWM", "RssFile", ...) in bytes; 0
// if absent.
uint64_t ProcStatusBytes(const std::string& field);
// This process's peak resident size (VmHWM), and its reset to the current
// resident size (/proc/self/clear_refs, "5"): false if it cannot be reset.
inline uint64_t PeakRssBytes() { return ProcStatusBytes("VmHWM"); }
bool ResetPeakRss();

// `image` written to a file in a new temporary directory and mapped the way
// the worker maps its input (read-only, private); unmapped at the end.
class MappedFile {
 public:
  explicit MappedFile(const std::string& image);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  bool ok() const { return data_ != nullptr; }
  ByteView view() const { return ByteView(static_cast<const uint8_t*>(data_), size_); }
  // Drops the map's resident pages, as a fresh map would have none.
  void Drop() const;

 private:
  TempDir dir_;
  size_t size_;
  void* data_ = nullptr;
};
// Whether a file written in `dir`, written back and dropped the way
// SafemodelWriter::WriteBehind does (sync_file_range, then
// posix_fadvise(DONTNEED)), really leaves the page cache there: not on
// tmpfs, nor on overlayfs, whose sync_file_range writes nothing back.
// Probed with a file of its own, so it cannot hide a bug of the writer.
bool PageCacheDropWorks(const std::string& dir);

// Runs a command line through /bin/sh; returns its exit code. Its stdout (and
// stderr too, unless `stderr_too` is false) goes to *output.
int RunCommand(const std::string& command, std::string* output = nullptr, bool stderr_too = true);

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_TESTING_TEST_UTIL_H_
