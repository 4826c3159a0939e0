#include "converter/output_file.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "converter/input_file.h"
#include "proto/base/byte_reader.h"
#include "proto/base/text.h"
#include "safemodel/limits.h"

namespace safemodel {

namespace {

constexpr int kTempNameAttempts = 100;
// sendfile moves at most ~2 GiB per call; read/write fallback buffer size.
constexpr size_t kCopyChunk = 1u << 30;
constexpr size_t kCopyBuffer = 1u << 20;

std::string ErrnoText(int e) { return std::strerror(e); }

// Running out of descriptors is a limit the caller can raise, not an I/O
// error of the file.
Status CreateError(const std::string& what, int e) {
  if (e == EMFILE || e == ENFILE) {
    return Status::LimitExceeded(what + ": " + ErrnoText(e) +
                                 " (raise the descriptor limit, `ulimit -n`)");
  }
  return Status::IoError(what + ": " + ErrnoText(e));
}

struct Pretend {
  bool o_tmpfile = false;
  bool proc = false;
  bool empty_path = false;
};

// Tests only (see the header): behave as if the kernel lacked these.
Pretend PretendMissing() {
  Pretend p;
  const char* v = std::getenv("SAFEMODEL_TEST_PRETEND_MISSING");
  if (v == nullptr) return p;
  std::string_view s(v);
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    if (item == "o_tmpfile") p.o_tmpfile = true;
    if (item == "proc") p.proc = true;
    if (item == "empty_path") p.empty_path = true;
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
  }
  return p;
}

// ".sm-" and six characters: 10 bytes whatever OUT's name is, so every legal
// OUT name (up to NAME_MAX) works, and 62^6 names make collisions (handled
// by O_EXCL / EEXIST anyway) rare.
std::string RandomTempName() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  uint8_t bytes[6];
  if (getrandom(bytes, sizeof bytes, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof bytes)) {
    // No entropy yet (early boot): uniqueness, not secrecy, is what matters.
    static std::atomic<uint64_t> counter{0};
    uint64_t x = static_cast<uint64_t>(getpid()) * uint64_t{0x9E3779B97F4A7C15} ^
                 counter.fetch_add(1) * uint64_t{0xBF58476D1CE4E5B9} ^
                 static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    for (size_t i = 0; i < sizeof bytes; ++i) bytes[i] = static_cast<uint8_t>(x >> (8 * i));
  }
  std::string name = ".sm-";
  for (uint8_t b : bytes) name += kAlphabet[b % (sizeof kAlphabet - 1)];
  return name;
}

std::string ProcPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Status TypeRefusal(const std::string& path, mode_t mode, const char* when) {
  return Status::InvalidArgument("output '" + path + "' is " + FileTypeName(mode) + when +
                                 "; only a regular file is ever replaced");
}

// Opens a directory for *at() calls; a directory that may be written but not
// listed (mode -wx) still works through O_PATH (then it cannot be fsynced).
int OpenDirectory(const std::string& dir, bool* readable) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  *readable = fd >= 0;
  if (fd < 0 && errno == EACCES) fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  return fd;
}

Status WriteAllTo(int fd, const char* p, size_t n, uint64_t* written) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        poll(&pfd, 1, -1);
        continue;
      }
      return Status::IoError(ErrnoText(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
    *written += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

}  // namespace

const char* TempKindName(TempKind kind) {
  switch (kind) {
    case TempKind::kLinkEmptyPath: return "o_tmpfile+empty_path";
    case TempKind::kLinkProc: return "o_tmpfile+proc";
    case TempKind::kNamed: return "named";
    case TempKind::kSpool: return "spool";
  }
  return "unknown";
}

Result<std::unique_ptr<OutputFile>> OutputFile::OpenPath(const std::string& path, bool force,
                                                         const struct stat& input) {
  std::unique_ptr<OutputFile> out(new OutputFile());
  out->path_ = path;
  out->force_ = force;
  const std::filesystem::path p(path);
  out->name_ = p.filename().string();
  if (path.empty() || out->name_.empty() || out->name_ == "." || out->name_ == "..") {
    return Status::InvalidArgument("output path '" + path + "' names no file");
  }
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  out->dir_fd_ = OpenDirectory(dir, &out->dir_readable_);
  if (out->dir_fd_ < 0) {
    if (errno == ENOENT) return Status::IoError("the output directory '" + dir + "' does not exist");
    return CreateError("cannot open the output directory '" + dir + "'", errno);
  }
  const long name_max = fpathconf(out->dir_fd_, _PC_NAME_MAX);
  if (name_max > 0 && out->name_.size() > static_cast<size_t>(name_max)) {
    return Status::InvalidArgument("the output file name is " + Num(out->name_.size()) +
                                   " bytes long; its file system allows " +
                                   Num(static_cast<uint64_t>(name_max)));
  }
  struct stat st;
  bool replacing = false;
  if (fstatat(out->dir_fd_, out->name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(st.st_mode)) return TypeRefusal(path, st.st_mode, "");
    if (st.st_dev == input.st_dev && st.st_ino == input.st_ino) {
      return Status::InvalidArgument("the output path is the input file");
    }
    if (!force) {
      return Status::InvalidArgument("output '" + path +
                                     "' exists; pass --force (ConvertOptions::force) to replace it");
    }
    replacing = true;
  } else if (errno != ENOENT) {
    return Status::IoError("cannot check the output path '" + path + "': " + ErrnoText(errno));
  }
  // A replacement's data stays private until Commit gives it the old mode;
  // a new file gets what the kernel gives any new file (0666 & ~umask, or
  // the directory's default ACL).
  SAFEMODEL_RETURN_IF_ERROR(out->CreateTemp(replacing ? 0600 : 0666));
  return out;
}

Status OutputFile::CreateTemp(mode_t mode) {
  const Pretend pretend = PretendMissing();
  if (!pretend.o_tmpfile) {
    int fd = openat(dir_fd_, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
      return CreateError("cannot create the output file", errno);
    }
    if (fd >= 0) {
      // Can it be named at Commit? Linking to "." (which always exists)
      // answers without creating anything: EEXIST means the kernel accepted
      // the source; ENOENT/EPERM mean this way is closed (no capability for
      // AT_EMPTY_PATH on older kernels, no /proc).
      if (!pretend.empty_path && linkat(fd, "", dir_fd_, ".", AT_EMPTY_PATH) != 0 && errno == EEXIST) {
        kind_ = TempKind::kLinkEmptyPath;
        fd_ = fd;
        return Status::Ok();
      }
      if (!pretend.proc && linkat(AT_FDCWD, ProcPath(fd).c_str(), dir_fd_, ".", AT_SYMLINK_FOLLOW) != 0 &&
          errno == EEXIST) {
        kind_ = TempKind::kLinkProc;
        fd_ = fd;
        return Status::Ok();
      }
      close(fd);
    }
  }
  kind_ = TempKind::kNamed;
  return CreateNamed(dir_fd_, mode, /*keep_name=*/true);
}

Status OutputFile::CreateNamed(int dir_fd, mode_t mode, bool keep_name) {
  for (int attempt = 0; attempt < kTempNameAttempts; ++attempt) {
    std::string name = RandomTempName();
    // No handler may run on this thread between creating the name and
    // recording it.
    internal::SignalBlock block;
    int fd = openat(dir_fd, name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
      if (errno == EEXIST) continue;
      return CreateError("cannot create a temporary file for the output", errno);
    }
    if (!registration_.Arm(dir_fd, name)) {
      unlinkat(dir_fd, name.c_str(), 0);
      close(fd);
      return Status::LimitExceeded("too many conversions with a named temporary file in this process");
    }
    if (keep_name) {
      temp_name_ = std::move(name);
    } else {
      unlinkat(dir_fd, name.c_str(), 0);
      registration_.Release();
    }
    fd_ = fd;
    return Status::Ok();
  }
  return Status::IoError("cannot create a temporary file for the output: " + Num(kTempNameAttempts) +
                         " random names were taken");
}

Result<std::unique_ptr<OutputFile>> OutputFile::OpenDescriptor(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return Status::InvalidArgument("the output descriptor " + std::to_string(fd) + " is not open");
  }
  if (S_ISDIR(st.st_mode)) return Status::InvalidArgument("the output descriptor is a directory");
  std::unique_ptr<OutputFile> out(new OutputFile());
  out->path_ = "-";
  out->kind_ = TempKind::kSpool;
  out->target_fd_ = fd;
  const char* tmpdir = std::getenv("TMPDIR");
  const std::string dir = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  bool readable = false;
  int dir_fd = OpenDirectory(dir, &readable);
  if (dir_fd < 0) return CreateError("cannot open the spool directory '" + dir + "' ($TMPDIR)", errno);
  Status s;
  if (!PretendMissing().o_tmpfile) out->fd_ = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (out->fd_ < 0) s = out->CreateNamed(dir_fd, 0600, /*keep_name=*/false);
  close(dir_fd);
  if (!s.ok()) return s.WithContext("spooling in '" + dir + "' ($TMPDIR)");
  return out;
}

OutputFile::~OutputFile() {
  if (!committed_ && !temp_name_.empty()) {
    internal::SignalBlock block;
    unlinkat(dir_fd_, temp_name_.c_str(), 0);
    registration_.Release();
  }
  registration_.Release();
  if (fd_ >= 0) close(fd_);
  if (dir_fd_ >= 0) close(dir_fd_);
}

Status OutputFile::Commit(uint64_t size, bool sync) {
  if (committed_) return Status::Internal("the output was already committed");
  if (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return Status::IoError("setting the output's size failed: " + ErrnoText(errno));
  }
  if (sync && fsync(fd_) != 0) return Status::IoError("fsync of the output failed: " + ErrnoText(errno));
  if (kind_ == TempKind::kSpool) {
    SAFEMODEL_RETURN_IF_ERROR(CopyToDescriptor(size));
    committed_ = true;
    return Status::Ok();
  }
  // OUT may have changed since Open: it is looked at again, and a file that
  // appears between this look and the link is caught by the link's EEXIST.
  for (int attempt = 0; attempt < 3 && !committed_; ++attempt) {
    struct stat st;
    if (fstatat(dir_fd_, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISREG(st.st_mode)) return TypeRefusal(path_, st.st_mode, " (since the conversion began)");
      if (!force_) {
        return Status::InvalidArgument("output '" + path_ +
                                       "' was created during the conversion; it is not replaced "
                                       "without --force");
      }
      SAFEMODEL_RETURN_IF_ERROR(CommitReplace(st));
    } else if (errno == ENOENT) {
      bool appeared = false;
      SAFEMODEL_RETURN_IF_ERROR(CommitNew(&appeared));
    } else {
      return Status::IoError("cannot check the output path '" + path_ + "': " + ErrnoText(errno));
    }
  }
  if (!committed_) return Status::IoError("the output path '" + path_ + "' kept changing during the commit");
  if (sync && dir_readable_) fsync(dir_fd_);
  return Status::Ok();
}

// Gives the anonymous file the name `name`; 0 or the errno.
int OutputFile::LinkTo(const std::string& name) {
  int r = kind_ == TempKind::kLinkEmptyPath
              ? linkat(fd_, "", dir_fd_, name.c_str(), AT_EMPTY_PATH)
              : linkat(AT_FDCWD, ProcPath(fd_).c_str(), dir_fd_, name.c_str(), AT_SYMLINK_FOLLOW);
  return r == 0 ? 0 : errno;
}

// A new OUT appears without ever replacing anything: linkat and
// renameat2(RENAME_NOREPLACE) fail with EEXIST if a file took the name
// meanwhile; *appeared then asks the caller to look again.
Status OutputFile::CommitNew(bool* appeared) {
  int r = -1;
  int e = 0;
  if (kind_ != TempKind::kNamed) {
    e = LinkTo(name_);
    r = e == 0 ? 0 : -1;
  } else {
    internal::SignalBlock block;
    r = renameat2(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str(), RENAME_NOREPLACE);
    e = errno;
    if (r != 0 && (e == EINVAL || e == ENOSYS)) {
      // No RENAME_NOREPLACE on this file system (some network and FUSE
      // ones): a hard link fails on an existing name just the same.
      r = linkat(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str(), 0);
      e = errno;
      if (r == 0) {
        unlinkat(dir_fd_, temp_name_.c_str(), 0);
      } else if (e == EPERM || e == EOPNOTSUPP) {
        // Neither (e.g. vfat): look, then rename. A file created at OUT in
        // between would be replaced; README documents this last resort.
        struct stat st;
        if (fstatat(dir_fd_, name_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
          r = -1;
          e = EEXIST;
        } else {
          r = renameat(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str());
          e = errno;
        }
      }
    }
    if (r == 0) {
      registration_.Release();
      temp_name_.clear();
    }
  }
  if (r == 0) {
    committed_ = true;
    return Status::Ok();
  }
  if (e == EEXIST) {
    *appeared = true;
    return Status::Ok();
  }
  return Status::IoError("giving the output its name '" + path_ + "' failed: " + ErrnoText(e));
}

// An existing regular file is replaced by rename. An anonymous file cannot
// replace a name in one step (linkat never replaces), so it gets a hidden
// name first, recorded for RemoveTemporaryOutputs; only a SIGKILL between
// that link and the rename can leave it behind (README).
Status OutputFile::CommitReplace(const struct stat& old) {
  SAFEMODEL_RETURN_IF_ERROR(CopyAttributes(old));
  internal::SignalBlock block;
  if (kind_ == TempKind::kNamed) {
    if (renameat(dir_fd_, temp_name_.c_str(), dir_fd_, name_.c_str()) != 0) {
      return Status::IoError("replacing the output '" + path_ + "' failed: " + ErrnoText(errno));
    }
    registration_.Release();
    temp_name_.clear();
    committed_ = true;
    return Status::Ok();
  }
  internal::TempRegistration hidden_registration;
  std::string hidden;
  for (int attempt = 0;; ++attempt) {
    if (attempt == kTempNameAttempts) {
      return Status::IoError("cannot name the output: " + Num(kTempNameAttempts) +
                             " random names were taken");
    }
    hidden = RandomTempName();
    if (!hidden_registration.Arm(dir_fd_, hidden)) {
      return Status::LimitExceeded("too many conversions with a named temporary file in this process");
    }
    const int e = LinkTo(hidden);
    if (e == 0) break;
    hidden_registration.Release();
    if (e != EEXIST) return Status::IoError("cannot name the output in its directory: " + ErrnoText(e));
  }
  if (renameat(dir_fd_, hidden.c_str(), dir_fd_, name_.c_str()) != 0) {
    const int e = errno;
    unlinkat(dir_fd_, hidden.c_str(), 0);
    return Status::IoError("replacing the output '" + path_ + "' failed: " + ErrnoText(e));
  }
  committed_ = true;
  return Status::Ok();
}

// The replacement keeps the old file's permission bits (not set-user-ID,
// set-group-ID or sticky) and, where this process may set them, its owner
// and group. If the group could not be kept, the new group's members get no
// more than both the old group and everyone else had: nobody gains access.
Status OutputFile::CopyAttributes(const struct stat& old) {
  struct stat mine;
  if (fstat(fd_, &mine) != 0) return Status::IoError("fstat of the output failed: " + ErrnoText(errno));
  if (mine.st_uid != old.st_uid || mine.st_gid != old.st_gid) {
    // Root may set both; an owner who is a member of the old group, the
    // group alone. Anything else is not permitted and keeps ours.
    if (fchown(fd_, old.st_uid, old.st_gid) != 0 && fchown(fd_, static_cast<uid_t>(-1), old.st_gid) != 0) {
      // Neither permitted: ours stay, and the mode below accounts for it.
    }
    if (fstat(fd_, &mine) != 0) return Status::IoError("fstat of the output failed: " + ErrnoText(errno));
  }
  mode_t mode = old.st_mode & 0777;
  if (mine.st_gid != old.st_gid) {
    const mode_t group = (mode >> 3) & mode & 07;
    mode = (mode & ~static_cast<mode_t>(070)) | (group << 3);
  }
  if (fchmod(fd_, mode) != 0) return Status::IoError("setting the output's mode failed: " + ErrnoText(errno));
  return Status::Ok();
}

// One sequential pass from the spool to the descriptor. Nothing was written
// to it before; if this fails part-way, what was written is incomplete and
// the caller reports an I/O error (the reader must check the exit status).
Status OutputFile::CopyToDescriptor(uint64_t size) {
  off_t offset = 0;
  uint64_t written = 0;
  bool use_sendfile = true;
  std::unique_ptr<char[]> buffer;
  while (written < size) {
    const uint64_t left = size - written;
    if (use_sendfile) {
      ssize_t n = sendfile(target_fd_, fd_, &offset, static_cast<size_t>(std::min<uint64_t>(left, kCopyChunk)));
      if (n > 0) {
        written += static_cast<uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {
        struct pollfd pfd = {target_fd_, POLLOUT, 0};
        poll(&pfd, 1, -1);
        continue;
      }
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        use_sendfile = false;  // e.g. an O_APPEND file: plain writes
        continue;
      }
      return Status::IoError("writing the output to descriptor " + std::to_string(target_fd_) +
                             " failed after " + Num(written) + " of " + Num(size) + " bytes: " +
                             (n < 0 ? ErrnoText(errno) : std::string("the spool ended early")));
    }
    if (!buffer) buffer.reset(new char[kCopyBuffer]);
    ssize_t n = pread(fd_, buffer.get(), static_cast<size_t>(std::min<uint64_t>(left, kCopyBuffer)),
                      static_cast<off_t>(written));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::IoError("reading the spooled output failed: " +
                             (n < 0 ? ErrnoText(errno) : std::string("it ended early")));
    }
    Status s = WriteAllTo(target_fd_, buffer.get(), static_cast<size_t>(n), &written);
    if (!s.ok()) {
      return Status::IoError("writing the output to descriptor " + std::to_string(target_fd_) +
                             " failed after " + Num(written) + " of " + Num(size) + " bytes: " +
                             s.message());
    }
  }
  return Status::Ok();
}

Status ReserveOutputSpace(int fd, uint64_t planned, uint64_t max_output_bytes) {
  if (max_output_bytes != 0 && planned > max_output_bytes) {
    return Status::LimitExceeded("the output would be " + Num(planned) + " bytes, over the limit of " +
                                 Num(max_output_bytes));
  }
  if (planned > kMaxFileBytes) {
    return Status::LimitExceeded("the output would be " + Num(planned) + " bytes, over the format's limit");
  }
  struct rlimit fsize;
  if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY && planned > fsize.rlim_cur) {
    return Status::LimitExceeded("the output would be " + Num(planned) +
                                 " bytes, over this process's file size limit of " +
                                 Num(fsize.rlim_cur) + " bytes (RLIMIT_FSIZE; raise it with `ulimit -f`)");
  }
  // Free space first: a header declaring terabytes must not make fallocate
  // take every free block from concurrent conversions, even for a moment.
  // A file system of no stated size (f_blocks 0: a memfd, tmpfs or a FUSE
  // mount without a limit) says nothing about its free space: fallocate
  // alone decides there (a memfd read as "0 bytes free" refused every
  // output; found by the worker-stream fuzzer).
  struct statvfs fs;
  uint64_t free_bytes = 0;
  if (fstatvfs(fd, &fs) == 0 && fs.f_blocks != 0 && CheckedMul(fs.f_bavail, fs.f_frsize, &free_bytes) &&
      planned > free_bytes) {
    return Status::LimitExceeded("the output would be " + Num(planned) +
                                 " bytes but its file system has only " + Num(free_bytes) + " bytes free");
  }
  int r;
  while ((r = fallocate(fd, 0, 0, static_cast<off_t>(planned))) != 0 && errno == EINTR) {
  }
  if (r == 0) return Status::Ok();
  const int e = errno;
  if (e == EOPNOTSUPP || e == ENOSYS) return Status::Ok();  // checked above, not reserved (README)
  if (e == ENOSPC || e == EDQUOT) {
    return Status::LimitExceeded("there is no room for the output: reserving its " + Num(planned) +
                                 " bytes failed (" + ErrnoText(e) + ")");
  }
  if (e == EFBIG) {
    return Status::LimitExceeded("the output would be " + Num(planned) +
                                 " bytes, more than a file may hold on its file system");
  }
  return Status::IoError("reserving " + Num(planned) + " bytes for the output failed: " + ErrnoText(e));
}

}  // namespace safemodel
