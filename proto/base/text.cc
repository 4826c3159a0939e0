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

}  // namespace safemodel
