// The conversion's input, as the parent opens and watches it.
//
// Only a regular file on a real file system, named directly (not through a
// symbolic link), readable to the end its size claims, is converted. Anything
// else is kInvalidArgument (exit 2) with the reason, found before a worker
// starts; a special file (FIFO, device, socket) is never even opened, so
// opening it cannot have side effects. The parent keeps the descriptor and
// its fstat, so that a file changed or truncated during the conversion is
// recognised as such whatever the worker saw (a SIGBUS in its map, odd
// bytes) and reported as an I/O error (exit 6).
#ifndef SAFEMODEL_CONVERTER_INPUT_FILE_H_
#define SAFEMODEL_CONVERTER_INPUT_FILE_H_

#include <sys/stat.h>

#include <string>

#include "safemodel/status.h"

namespace safemodel {

// "a FIFO", "a directory", "a character device", ... for messages.
const char* FileTypeName(mode_t mode);

class InputFile {
 public:
  InputFile() = default;
  InputFile(InputFile&& other) noexcept;
  InputFile& operator=(InputFile&& other) noexcept;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  ~InputFile();

  // Opens `path` read-only. Errors: kInvalidArgument (missing, a symbolic
  // link, not a regular file, on a pseudo file system such as sysfs or
  // procfs, unreadable, shorter than its size, not mappable),
  // kLimitExceeded (no descriptor left: `ulimit -n`).
  static Result<InputFile> Open(const std::string& path);
  // The same for `name`, one path component, in the directory `dir_fd`
  // (AT_FDCWD: the current one); `display` names it in messages.
  static Result<InputFile> OpenAt(int dir_fd, const std::string& name, const std::string& display);
  // An already open descriptor (ConvertFd), duplicated: the caller keeps
  // its own. The same rules as Open (a readable regular file, not on a
  // pseudo file system); `display` names it in messages.
  static Result<InputFile> FromDescriptor(int fd, const std::string& display);

  int fd() const { return fd_; }
  const struct stat& stat() const { return stat_; }
  uint64_t size() const { return static_cast<uint64_t>(stat_.st_size); }

  // kIoError "the input changed during the conversion (...)" if the file's
  // size, modification time or change time differ from those at Open.
  Status CheckUnchanged() const;

 private:
  int fd_ = -1;
  struct stat stat_ = {};
};

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_INPUT_FILE_H_
