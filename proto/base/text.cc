#include "proto/base/text.h"

#include <algorithm>

#include "proto/base/byte_reader.h"

namespace safemodel {

Status CheckIdentifier(std::string_view s, std::string_view what) {
  const bool ok = !s.empty() && s.size() <= kMaxIdentifierBytes &&
                  std::all_of(s.begin(), s.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
                  });
  if (!ok) {
    return Status::Malformed(std::string(what) + " '" + Printable(s) + "' is not an identifier");
  }
  return Status::Ok();
}

bool IsPlainFileName(std::string_view name) {
  if (name.empty() || name.size() > kMaxPlainFileNameBytes || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace safemodel
