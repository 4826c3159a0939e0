#include "converter/input_file.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "proto/base/text.h"

namespace safemodel {

namespace {

// Kernel pseudo file systems: their "files" are generated on read (sizes
// that lie, contents that change, reads with side effects), never model
// files. Values from <linux/magic.h>; configfs is not listed there.
struct PseudoFs {
  unsigned long magic;
  const char* name;
};
constexpr unsigned long kConfigFsMagic = 0x62656570;
constexpr PseudoFs kPseudoFileSystems[] = {
    {PROC_SUPER_MAGIC, "procfs"},     {SYSFS_MAGIC, "sysfs"},
    {DEBUGFS_MAGIC, "debugfs"},       {TRACEFS_MAGIC, "tracefs"},
    {SECURITYFS_MAGIC, "securityfs"}, {CGROUP_SUPER_MAGIC, "cgroupfs"},
    {CGROUP2_SUPER_MAGIC, "cgroup2"}, {kConfigFsMagic, "configfs"},
    {BPF_FS_MAGIC, "bpffs"},          {PSTOREFS_MAGIC, "pstore"},
    {EFIVARFS_MAGIC, "efivarfs"},     {SELINUX_MAGIC, "selinuxfs"},
    {SMACK_MAGIC, "smackfs"},         {DEVPTS_SUPER_MAGIC, "devpts"},
    {BINFMTFS_MAGIC, "binfmt_misc"},  {NSFS_MAGIC, "nsfs"},
};

Status Refuse(const std::string& path, const std::string& why) {
  return Status::InvalidArgument("input '" + path + "' " + why);
}

Status OpenFailure(const std::string& path, int e) {
  switch (e) {
    case ENOENT: return Refuse(path, "does not exist");
    case ELOOP: return Refuse(path, "is a symbolic link; pass the path of the file itself");
    case EMFILE:
    case ENFILE:
      return Status::LimitExceeded("cannot open input '" + path + "': " + std::strerror(e) +
                                   " (raise the descriptor limit, `ulimit -n`)");
    default: return Refuse(path, std::string("cannot be read: ") + std::strerror(e));
  }
}

// The worker maps the input and the hasher reads it to its declared end: a
// file that cannot do both is refused here rather than crash or mislead
// later.
Status CheckReadable(const std::string& path, int fd, uint64_t size) {
  struct statfs fs;
  if (fstatfs(fd, &fs) == 0) {
    for (const PseudoFs& p : kPseudoFileSystems) {
      if (static_cast<unsigned long>(fs.f_type) == p.magic) {
        return Refuse(path, std::string("is on ") + p.name +
                                ", a kernel pseudo file system; its files are not model files");
      }
    }
  }
  if (size == 0) return Status::Ok();  // refused as empty by the caller
  uint8_t last;
  ssize_t n;
  while ((n = pread(fd, &last, 1, static_cast<off_t>(size - 1))) < 0 && errno == EINTR) {
  }
  if (n < 0) return Refuse(path, std::string("cannot be read: ") + std::strerror(errno));
  if (n == 0) return Refuse(path, "claims " + Num(size) + " bytes but ends before them");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* map = mmap(nullptr, size < page ? size : page, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    return Refuse(path, std::string("cannot be memory-mapped (") + std::strerror(errno) +
                            "), which the converter needs; copy it to a local file system");
  }
  munmap(map, size < page ? size : page);
  return Status::Ok();
}

}  // namespace

const char* FileTypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
  }
  return "a file of unknown type";
}

InputFile::InputFile(InputFile&& other) noexcept { *this = std::move(other); }

InputFile& InputFile::operator=(InputFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    stat_ = other.stat_;
  }
  return *this;
}

InputFile::~InputFile() {
  if (fd_ >= 0) close(fd_);
}

Result<InputFile> InputFile::Open(const std::string& path) { return OpenAt(AT_FDCWD, path, path); }

Result<InputFile> InputFile::OpenAt(int dir_fd, const std::string& name, const std::string& path) {
  // Look before opening: opening a device or a FIFO can have effects (a
  // watchdog armed, a tape rewound, a writer unblocked), so they never are.
  struct stat before;
  if (fstatat(dir_fd, name.c_str(), &before, AT_SYMLINK_NOFOLLOW) != 0) return OpenFailure(path, errno);
  if (S_ISLNK(before.st_mode)) return OpenFailure(path, ELOOP);
  if (!S_ISREG(before.st_mode)) {
    return Refuse(path, std::string("is ") + FileTypeName(before.st_mode) + ", not a regular file");
  }
  InputFile in;
  in.fd_ = openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (in.fd_ < 0) return OpenFailure(path, errno);
  if (fstat(in.fd_, &in.stat_) != 0) return Refuse(path, std::string("cannot be read: ") + std::strerror(errno));
  if (!S_ISREG(in.stat_.st_mode) || in.stat_.st_dev != before.st_dev || in.stat_.st_ino != before.st_ino) {
    return Refuse(path, "was replaced while it was being opened");
  }
  fcntl(in.fd_, F_SETFL, fcntl(in.fd_, F_GETFL) & ~O_NONBLOCK);
  SAFEMODEL_RETURN_IF_ERROR(CheckReadable(path, in.fd_, in.size()));
  return in;
}

Result<InputFile> InputFile::FromDescriptor(int fd, const std::string& display) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) return Refuse(display, "is not an open descriptor");
  if (!S_ISREG(st.st_mode)) {
    return Refuse(display, std::string("is ") + FileTypeName(st.st_mode) + ", not a regular file");
  }
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY) return Refuse(display, "is not open for reading");
  InputFile in;
  in.fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (in.fd_ < 0) return OpenFailure(display, errno);
  in.stat_ = st;
  SAFEMODEL_RETURN_IF_ERROR(CheckReadable(display, in.fd_, in.size()));
  return in;
}

Status InputFile::CheckUnchanged() const {
  struct stat now;
  if (fstat(fd_, &now) != 0) {
    return Status::IoError(std::string("the input changed during the conversion (fstat: ") +
                           std::strerror(errno) + ")");
  }
  if (now.st_size != stat_.st_size) {
    return Status::IoError("the input changed during the conversion (its size went from " +
                           Num(static_cast<uint64_t>(stat_.st_size)) + " to " +
                           Num(static_cast<uint64_t>(now.st_size)) + " bytes); nothing was written");
  }
  if (now.st_mtim.tv_sec != stat_.st_mtim.tv_sec || now.st_mtim.tv_nsec != stat_.st_mtim.tv_nsec ||
      now.st_ctim.tv_sec != stat_.st_ctim.tv_sec || now.st_ctim.tv_nsec != stat_.st_ctim.tv_nsec) {
    return Status::IoError(
        "the input changed during the conversion (it was written to, or its metadata changed); "
        "nothing was written");
  }
  return Status::Ok();
}

}  // namespace safemodel
