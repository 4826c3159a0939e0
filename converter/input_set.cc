#include "converter/input_set.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "converter/protocol/worker.pb.h"
#include "converter/worker_limits.h"
#include "proto/base/byte_reader.h"
#include "proto/digest.h"

namespace safemodel {

namespace {

using loader::ListedEntry;

// A descriptor closed when it goes out of scope.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) close(fd_);
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Status OpenError(const std::string& what, int e) {
  if (e == EMFILE || e == ENFILE) {
    return Status::LimitExceeded("cannot open '" + what + "': " + std::strerror(e) +
                                 " (raise the descriptor limit, `ulimit -n`)");
  }
  if (e == ELOOP || e == ENOTDIR) {
    return Status::InvalidArgument("'" + what +
                                   "' became a symbolic link or stopped being a directory while "
                                   "it was listed; safemodel opens nothing through links [input.symlink]");
  }
  return Status::InvalidArgument("cannot open '" + what + "': " + std::strerror(e));
}

// The directory `rel` ('/'-separated, or "" for the root) below `root`,
// opened one component at a time without following a link.
Result<Fd> OpenDirBeneath(int root, const std::string& rel, const std::string& display) {
  Fd dir(fcntl(root, F_DUPFD_CLOEXEC, 0));
  if (dir.get() < 0) return OpenError(display, errno);
  size_t start = 0;
  while (start < rel.size()) {
    size_t end = rel.find('/', start);
    if (end == std::string::npos) end = rel.size();
    const std::string part = rel.substr(start, end - start);
    Fd next(openat(dir.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.get() < 0) return OpenError(display + "/" + rel.substr(0, end), errno);
    dir = std::move(next);
    start = end + 1;
  }
  return dir;
}

ListedEntry::Type TypeOf(mode_t mode) {
  if (S_ISLNK(mode)) return ListedEntry::Type::kSymlink;
  if (S_ISDIR(mode)) return ListedEntry::Type::kDirectory;
  if (S_ISREG(mode)) return ListedEntry::Type::kRegular;
  return ListedEntry::Type::kOther;
}

// The entries of `dir` (consumed), with names prefixed by `prefix`. Stops
// once `out` holds more than loader::kMaxListedEntries (the planner refuses
// that many).
Status ListOne(Fd dir, const std::string& prefix, const std::string& display,
               std::vector<ListedEntry>* out) {
  DIR* d = fdopendir(dir.get());
  if (d == nullptr) return OpenError(display, errno);
  dir.release();  // closedir closes it
  const int fd = dirfd(d);
  Status status;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      status = OpenError(display + "/" + name, errno);
      break;
    }
    out->push_back({prefix + name, TypeOf(st.st_mode)});
    if (out->size() > loader::kMaxListedEntries) break;
    errno = 0;
  }
  if (status.ok() && errno != 0) status = OpenError(display, errno);
  closedir(d);
  return status;
}

// Every entry below `root` (directories included), iteratively, at most
// loader::kMaxListedDepth levels deep.
Status ListTree(int root, const std::string& display, std::vector<ListedEntry>* out) {
  struct Pending {
    std::string rel;
    uint32_t depth;
  };
  std::vector<Pending> pending{{"", 0}};
  while (!pending.empty() && out->size() <= loader::kMaxListedEntries) {
    Pending p = std::move(pending.back());
    pending.pop_back();
    if (p.depth >= loader::kMaxListedDepth) {
      return Status::LimitExceeded("the input directory nests more than " + Num(loader::kMaxListedDepth) +
                                   " levels deep ('" + p.rel + "') [input.too_many_files]");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(Fd dir, OpenDirBeneath(root, p.rel, display));
    const size_t first = out->size();
    SAFEMODEL_RETURN_IF_ERROR(
        ListOne(std::move(dir), p.rel.empty() ? "" : p.rel + "/", display, out));
    for (size_t i = first; i < out->size(); ++i) {
      if ((*out)[i].type == ListedEntry::Type::kDirectory) pending.push_back({(*out)[i].name, p.depth + 1});
    }
  }
  return Status::Ok();
}

// That `count` more descriptors can be opened (each file is held, and
// duplicated once more when the worker starts), with the margin a
// conversion needs besides.
Status ReserveDescriptors(uint64_t count) {
  std::vector<int> fds;
  int error = 0;
  for (uint64_t i = 0; i < count + kConversionDescriptors; ++i) {
    const int fd = fds.empty() ? open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                               : fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
      error = errno;
      break;
    }
    fds.push_back(fd);
  }
  for (int fd : fds) close(fd);
  if (error == 0) return Status::Ok();
  struct rlimit rl = {};
  getrlimit(RLIMIT_NOFILE, &rl);
  return Status::LimitExceeded("the model's " + Num(count) + " files need " +
                               Num(2 * count + kConversionDescriptors) +
                               " file descriptors, and this process may open only " + Num(rl.rlim_cur) +
                               " in all (RLIMIT_NOFILE): raise it with `ulimit -n` [input.too_many_files]");
}

// Files named one by one in the input.files note; the count is always given.
constexpr size_t kFilesNamedInNote = 32;

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

Result<int> SealedMemoryFile(const std::string& bytes) {
  Fd fd(memfd_create("safemodel-input-list", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd.get() < 0) return Status::IoError(std::string("memfd_create: ") + std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = write(fd.get(), bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError(std::string("writing the input list: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return fd.release();
}

Result<InputSet> InputSet::FromDescriptor(int fd, const std::string& display) {
  InputSet set;
  SAFEMODEL_ASSIGN_OR_RETURN(set.single_, InputFile::FromDescriptor(fd, display));
  return set;
}

Result<InputSet> InputSet::Open(const std::string& path) {
  const std::string bare = StripTrailingSlashes(path);
  struct stat st;
  const bool exists = fstatat(AT_FDCWD, bare.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  const int stat_error = errno;
  std::optional<loader::FilePlan> plan;
  Fd dir;             // the directory the plan's names are relative to
  std::string shown;  // how that directory is named in messages
  if (exists && S_ISDIR(st.st_mode)) {
    dir = Fd(open(bare.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (dir.get() < 0) return OpenError(path, errno);
    std::vector<ListedEntry> listing;
    SAFEMODEL_RETURN_IF_ERROR(ListTree(dir.get(), bare, &listing));
    Result<loader::FilePlan> planned = loader::PlanDirectory(listing);
    if (!planned.ok()) return Status(planned.status().code(), "input '" + path + "': " + planned.status().message());
    plan = std::move(*planned);
    shown = bare;
  } else if ((exists && S_ISREG(st.st_mode) && (EndsWith(bare, ".index") || EndsWith(bare, ".weights.json"))) ||
             (!exists && stat_error == ENOENT)) {
    // A file of a multi-file model, or a checkpoint prefix (no such file).
    const size_t slash = bare.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : bare.substr(0, slash);
    const std::string name = slash == std::string::npos ? bare : bare.substr(slash + 1);
    dir = Fd(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() >= 0 && !name.empty() && name != "." && name != "..") {
      std::vector<ListedEntry> siblings;
      Fd listed(fcntl(dir.get(), F_DUPFD_CLOEXEC, 0));
      SAFEMODEL_RETURN_IF_ERROR(ListOne(std::move(listed), "", parent, &siblings));
      Result<std::optional<loader::FilePlan>> planned = loader::PlanFile(name, siblings);
      if (!planned.ok()) return Status(planned.status().code(), "input '" + path + "': " + planned.status().message());
      if (planned->has_value()) plan = std::move(**planned);
      shown = parent;
    }
  }
  InputSet set;
  if (!plan.has_value()) {
    SAFEMODEL_ASSIGN_OR_RETURN(set.single_, InputFile::Open(path));
    return set;
  }
  SAFEMODEL_RETURN_IF_ERROR(ReserveDescriptors(plan->open.size()));
  set.kind_ = plan->kind;
  set.listed_ = std::move(plan->listed);
  for (loader::PlannedFile& f : plan->open) {
    const size_t slash = f.name.rfind('/');
    const std::string sub = slash == std::string::npos ? "" : f.name.substr(0, slash);
    const std::string leaf = slash == std::string::npos ? f.name : f.name.substr(slash + 1);
    SAFEMODEL_ASSIGN_OR_RETURN(Fd sub_dir, OpenDirBeneath(dir.get(), sub, shown));
    SAFEMODEL_ASSIGN_OR_RETURN(InputFile file, InputFile::OpenAt(sub_dir.get(), leaf, shown + "/" + f.name));
    set.files_.push_back({f.role, std::move(f.name), std::move(file)});
  }
  return set;
}

uint64_t InputSet::total_size() const {
  if (!multi_file()) return single_.size();
  uint64_t total = 0;
  for (const File& f : files_) total += f.file.size();  // each < 2^63; at most 1,000
  return total;
}

std::vector<std::pair<int, uint64_t>> InputSet::Parts() const {
  std::vector<std::pair<int, uint64_t>> parts;
  if (!multi_file()) parts.emplace_back(single_.fd(), single_.size());
  for (const File& f : files_) parts.emplace_back(f.file.fd(), f.file.size());
  return parts;
}

Status InputSet::CheckUnchanged() const {
  if (!multi_file()) return single_.CheckUnchanged();
  for (const File& f : files_) {
    Status s = f.file.CheckUnchanged();
    if (!s.ok()) return Status(s.code(), "'" + f.name + "': " + s.message());
  }
  return Status::Ok();
}

Status InputSet::CheckNotOutput(const std::string& out_path) const {
  struct stat out;
  if (stat(out_path.c_str(), &out) != 0) return Status::Ok();
  for (const File& f : files_) {
    if (f.file.stat().st_dev == out.st_dev && f.file.stat().st_ino == out.st_ino) {
      return Status::InvalidArgument("output '" + out_path + "' is '" + f.name +
                                     "', one of the input's files");
    }
  }
  return Status::Ok();
}

Finding InputSet::FilesNote() const {
  Finding note;
  note.severity = Finding::Severity::kNote;
  note.rule = "input.files";
  note.location = "input";
  std::string names;
  for (size_t i = 0; i < files_.size() && i < kFilesNamedInNote; ++i) {
    names += (i == 0 ? "" : ", ") + Printable(files_[i].name, 200) + " (" + Num(files_[i].file.size()) + " bytes)";
  }
  if (files_.size() > kFilesNamedInNote) names += ", and " + Num(files_.size() - kFilesNamedInNote) + " more";
  note.message = "a " + std::string(loader::ModelKindName(kind_)) + " of " + Num(files_.size()) +
                 " files, " + Num(total_size()) + " bytes in all, was read: " + names;
  return note;
}

std::string InputSet::Manifest() const {
  worker::InputManifest m;
  m.set_kind(static_cast<uint32_t>(kind_));
  for (const File& f : files_) {
    worker::InputManifestFile* o = m.add_files();
    o->set_role(static_cast<uint32_t>(f.role));
    o->set_name(f.name);
    o->set_size(f.file.size());
  }
  for (const std::string& l : listed_) m.add_listed(l);
  std::string bytes;
  m.SerializeToString(&bytes);
  return bytes;
}

std::string InputSet::CombineDigests(const std::vector<std::string>& digests) const {
  if (!multi_file()) return digests.empty() ? std::string() : digests[0];
  std::vector<std::pair<std::string, std::string>> lines;  // name, hex
  for (size_t i = 0; i < files_.size() && i < digests.size(); ++i) {
    lines.emplace_back(files_[i].name, ToHex(digests[i]));
  }
  std::sort(lines.begin(), lines.end());
  auto hasher = MakeHasher(DigestAlgorithm::kSha256);
  for (const auto& [name, hex] : lines) {
    const std::string line = hex + "  " + name + "\n";
    hasher->Update(AsBytes(line));
  }
  return hasher->Finish();
}

}  // namespace safemodel
