#include "proto/strict_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

namespace safemodel {

namespace {

// The deepest nesting of [ and { outside strings, stopping early past
// `limit`: checked before parsing, so that a file of brackets costs a scan,
// not the parser's stack of a million levels.
size_t NestingDepth(std::string_view text, size_t limit) {
  size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

Result<nlohmann::json> ParseStrictJson(std::string_view text, const std::string& what) {
  if (NestingDepth(text, kMaxIndexJsonDepth) > kMaxIndexJsonDepth) {
    return Status::Malformed(what + " nests deeper than " + std::to_string(kMaxIndexJsonDepth) + " levels");
  }
  // A set of keys per open object, innermost last: keys belong to the
  // innermost open object.
  std::vector<std::set<std::string>> open;
  std::string problem;
  auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (static_cast<size_t>(depth) > kMaxIndexJsonDepth && problem.empty()) {
      problem = "nests deeper than " + std::to_string(kMaxIndexJsonDepth) + " levels";
    }
    switch (event) {
      case nlohmann::json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case nlohmann::json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case nlohmann::json::parse_event_t::key:
        if (!open.empty() && !open.back().insert(parsed.get<std::string>()).second && problem.empty()) {
          problem = "has the key '" + parsed.get<std::string>() + "' twice in one object";
        }
        break;
      default:
        break;
    }
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Malformed(what + " is not valid JSON");
  if (!problem.empty()) return Status::Malformed(what + " " + problem);
  return j;
}

Result<std::string> ReadSmallFile(const std::string& path, uint64_t max_bytes, const std::string& what) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return Status::IoError("cannot open " + what + " '" + path + "': " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return Status::InvalidArgument(what + " '" + path + "' is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    close(fd);
    return Status::LimitExceeded(what + " '" + path + "' is " + std::to_string(st.st_size) +
                                 " bytes, over the limit of " + std::to_string(max_bytes));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = read(fd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return Status::IoError("reading " + what + " '" + path + "' failed");
    }
    off += static_cast<size_t>(n);
  }
  close(fd);
  return bytes;
}

}  // namespace safemodel
