// The conversion's output: the only code that creates, names or replaces it.
//
// Rules (README "Output files"; safemodel/convert.h states them for callers):
//  * OUT is absent, or is a regular file and `force` is set. A symbolic link,
//    FIFO, socket, device or directory at OUT is refused (kInvalidArgument,
//    naming the type), with or without `force`. Checked at Open, before any
//    work, and again at Commit.
//  * The bytes go to a temporary file in OUT's directory: an anonymous one
//    (O_TMPFILE) when the kernel can later give it a name (linkat with
//    AT_EMPTY_PATH, or through /proc/self/fd), else a named `.sm-XXXXXX`
//    (fixed length, so every legal OUT name works) that is removed on every
//    failure path and by RemoveTemporaryOutputs() from a signal handler.
//  * Commit: a new OUT appears by linkat or renameat2(RENAME_NOREPLACE), so a
//    file that appeared at OUT meanwhile is never replaced silently (with
//    `force` and a regular file, it is then replaced like an existing one).
//    An existing OUT is replaced by rename, after its mode and, where
//    permitted, its owner and group were copied to the new file.
//  * A new file's mode is 0666 & ~umask (the kernel applies the umask, or the
//    directory's default ACL, at creation); the temporary file of a
//    replacement is 0600 until Commit copies the old mode.
//  * For a descriptor (safe-convert's `-`), the bytes are spooled in an
//    anonymous file in $TMPDIR (or /tmp) and copied to the descriptor in one
//    pass at Commit, so nothing reaches it before the conversion is
//    validated.
//
// Tests only: the environment variable SAFEMODEL_TEST_PRETEND_MISSING, a
// comma-separated list of "o_tmpfile", "proc" and "empty_path", makes Open
// behave as if the kernel lacked those (e.g. a system without /proc).
#ifndef SAFEMODEL_CONVERTER_OUTPUT_FILE_H_
#define SAFEMODEL_CONVERTER_OUTPUT_FILE_H_

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>

#include "converter/temp_registry.h"
#include "safemodel/status.h"

namespace safemodel {

// How the temporary output gets its final name.
enum class TempKind {
  kLinkEmptyPath,  // O_TMPFILE, named by linkat(fd, "", AT_EMPTY_PATH)
  kLinkProc,       // O_TMPFILE, named by linkat("/proc/self/fd/N")
  kNamed,          // a named hidden file from the start
  kSpool,          // an anonymous spool copied to a descriptor
};

const char* TempKindName(TempKind kind);

class OutputFile {
 public:
  // Checks OUT and creates the temporary file. `input` is the input's stat
  // (OUT may not be the input file). Errors: kInvalidArgument for the OUT
  // rules, kIoError when the directory cannot hold the file, kLimitExceeded
  // when descriptors run out.
  static Result<std::unique_ptr<OutputFile>> OpenPath(const std::string& path, bool force,
                                                      const struct stat& input);
  // Output for an open descriptor (any type but a directory): spooled until
  // Commit.
  static Result<std::unique_ptr<OutputFile>> OpenDescriptor(int fd);

  // Discards the output unless it was committed: no file is left behind.
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // The descriptor to write the output to (a regular file, read-write).
  int fd() const { return fd_; }
  TempKind kind() const { return kind_; }
  // The temporary's name in OUT's directory (kNamed only; tests use it).
  const std::string& temp_name() const { return temp_name_; }

  // Makes the first `size` bytes written the output, as described above;
  // `sync` fsyncs the file (and the directory) first. Any failure leaves OUT
  // as it was.
  Status Commit(uint64_t size, bool sync);

 private:
  OutputFile() = default;
  Status CreateTemp(mode_t mode);
  Status CreateNamed(int dir_fd, mode_t mode, bool keep_name);
  Status CommitNew(bool* appeared);
  Status CommitReplace(const struct stat& old);
  Status CopyAttributes(const struct stat& old);
  int LinkTo(const std::string& name);
  Status CopyToDescriptor(uint64_t size);

  std::string path_, name_, temp_name_;
  int dir_fd_ = -1;
  bool dir_readable_ = false;
  int fd_ = -1;
  int target_fd_ = -1;  // kSpool: where Commit copies the bytes
  TempKind kind_ = TempKind::kNamed;
  bool force_ = false;
  bool committed_ = false;
  internal::TempRegistration registration_;
};

// Reserves `planned` bytes for the output behind `fd` before any tensor byte
// is written (fallocate), after checking the caller's cap
// (`max_output_bytes`, 0 = none), this process's RLIMIT_FSIZE and the file
// system's free space: kLimitExceeded when the output cannot fit, so that
// concurrent conversions into a nearly full file system fail early and
// cleanly or succeed. File systems without fallocate get the free-space
// check only, file systems of no stated size (statvfs f_blocks 0) fallocate
// only. The file's size becomes `planned`; Commit trims it.
Status ReserveOutputSpace(int fd, uint64_t planned, uint64_t max_output_bytes);

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_OUTPUT_FILE_H_
