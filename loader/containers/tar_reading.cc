#include "loader/containers/tar_reading.h"

#include <algorithm>
#include <optional>
#include <string_view>

namespace safemodel::loader {

namespace {

// Python's str.isspace() for ASCII.
bool PySpace(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f');
}

// int(s, 8) for ASCII text s, as CPython parses it: surrounding whitespace,
// a sign, an optional 0o prefix (which may be followed by one underscore),
// octal digits with single underscores between them. False if Python would
// raise ValueError. Values beyond 2^62 are reported as not matching.
bool PyIntBase8(std::string_view s, int64_t* out) {
  size_t b = 0, e = s.size();
  while (b < e && PySpace(s[b])) ++b;
  while (e > b && PySpace(s[e - 1])) --e;
  s = s.substr(b, e - b);
  if (s.empty()) return false;
  bool negative = false;
  size_t i = 0;
  if (s[i] == '+' || s[i] == '-') negative = s[i++] == '-';
  if (i + 1 < s.size() && s[i] == '0' && (s[i + 1] == 'o' || s[i + 1] == 'O')) {
    i += 2;
    if (i < s.size() && s[i] == '_') ++i;
  }
  if (i >= s.size() || s[i] == '_') return false;
  int64_t v = 0;
  bool big = false, prev_underscore = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (prev_underscore) return false;
      prev_underscore = true;
      continue;
    }
    if (c < '0' || c > '7') return false;
    prev_underscore = false;
    if (v > (int64_t{1} << 58)) big = true;
    if (!big) v = v * 8 + (c - '0');
  }
  if (prev_underscore) return false;
  *out = big ? (int64_t{1} << 62) : (negative ? -v : v);
  return true;
}

// tarfile.nti: base-256 when the first byte is 0o200 or 0o377, else text up
// to the first NUL, ASCII, stripped, "0" when empty, read by int(s, 8).
bool TarNumber(ByteView field, int64_t* out) {
  if (field[0] == 0x80 || field[0] == 0xFF) {
    int64_t n = 0;
    bool big = false;
    for (size_t i = 1; i < field.size(); ++i) {
      if (n > (int64_t{1} << 53)) big = true;
      if (!big) n = n * 256 + field[i];
    }
    if (big) n = int64_t{1} << 62;
    // 0o377: negative, -(256 ** (len - 1) - n); only the checksum compares
    // values, and a negative one never matches.
    *out = field[0] == 0xFF ? -1 : n;
    return true;
  }
  size_t len = 0;
  while (len < field.size() && field[len] != 0) ++len;
  std::string_view text(reinterpret_cast<const char*>(field.data()), len);
  if (std::any_of(text.begin(), text.end(),
                  [](char c) { return static_cast<uint8_t>(c) >= 0x80; })) {
    return false;  // UnicodeDecodeError is a ValueError: InvalidHeaderError
  }
  size_t b = 0, e = text.size();
  while (b < e && PySpace(text[b])) ++b;
  while (e > b && PySpace(text[e - 1])) --e;
  if (b == e) {
    *out = 0;
    return true;
  }
  return PyIntBase8(text.substr(b, e - b), out);
}

struct TarHeader {
  std::string name;
  char type = 0;
  int64_t size = 0;
};

bool ReadTarHeader(ByteView block, TarHeader* h) {
  if (block.size() != kTarBlock) return false;
  if (std::all_of(block.begin(), block.end(), [](uint8_t c) { return c == 0; })) return false;
  int64_t stored = 0;
  if (!TarNumber(block.subspan(148, 8), &stored)) return false;
  int64_t unsigned_sum = 256, signed_sum = 256;
  for (size_t i = 0; i < kTarBlock; ++i) {
    if (i >= 148 && i < 156) continue;
    unsigned_sum += block[i];
    signed_sum += static_cast<int8_t>(block[i]);
  }
  if (stored != unsigned_sum && stored != signed_sum) return false;
  // mode, uid, gid, size, mtime; devmajor, devminor.
  static constexpr std::pair<size_t, size_t> kFields[] = {{100, 8},  {108, 8}, {116, 8}, {124, 12},
                                                          {136, 12}, {329, 8}, {337, 8}};
  int64_t v = 0;
  for (auto [off, len] : kFields) {
    if (!TarNumber(block.subspan(off, len), &v)) return false;
    if (off == 124) h->size = v;
  }
  size_t n = 0;
  while (n < 100 && block[n] != 0) ++n;
  h->name.assign(reinterpret_cast<const char*>(block.data()), n);
  h->type = static_cast<char>(block[156]);
  size_t p = 0;
  while (p < 155 && block[345 + p] != 0) ++p;
  const bool gnu = h->type == 'L' || h->type == 'K' || h->type == 'S';
  if (p > 0 && !gnu) {
    h->name = std::string(reinterpret_cast<const char*>(block.data()) + 345, p) + "/" + h->name;
  }
  return true;
}

// The "path" record of a pax header body ("<len> path=<value>\n" records).
std::optional<std::string> PaxPath(std::string_view body) {
  std::optional<std::string> path;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t sp = body.find(' ', pos);
    if (sp == std::string_view::npos) break;
    uint64_t len = 0;
    for (size_t i = pos; i < sp; ++i) {
      if (body[i] < '0' || body[i] > '9' || len > body.size()) return path;
      len = len * 10 + static_cast<uint64_t>(body[i] - '0');
    }
    if (len == 0 || pos + len > body.size()) break;
    std::string_view rec = body.substr(sp + 1, pos + len - sp - 1);
    if (!rec.empty() && rec.back() == '\n') rec.remove_suffix(1);
    if (rec.substr(0, 5) == "path=") path = std::string(rec.substr(5));
    pos += len;
  }
  return path;
}

}  // namespace

bool IsTarHeader(ByteView block) {
  TarHeader h;
  return ReadTarHeader(block, &h);
}

bool TorchReadsAsTar(ByteView input) {
  return input.size() >= kTarBlock && !StartsWith(input, "PK\x03\x04") &&
         IsTarHeader(input.subspan(0, kTarBlock));
}

void ForEachTarMember(ByteView input, const std::function<void(const TarMember&)>& visit) {
  uint64_t off = 0;
  std::optional<std::string> next_name, global_name;
  for (uint64_t count = 0; count < kMaxTarMembers; ++count) {
    if (off > input.size() || input.size() - off < kTarBlock) break;
    TarHeader h;
    if (!ReadTarHeader(input.subspan(off, kTarBlock), &h)) break;  // ends the archive
    if (h.size < 0) break;
    const uint64_t data = off + kTarBlock;
    const uint64_t avail = std::min<uint64_t>(static_cast<uint64_t>(h.size), input.size() - data);
    const uint64_t blocks = (static_cast<uint64_t>(h.size) + kTarBlock - 1) / kTarBlock;
    const ByteView body = input.subspan(data, avail);
    const uint64_t after_data = data + blocks * kTarBlock;
    if (h.type == 'L') {  // GNU long name for the next member
      next_name = std::string(AsChars(body.subspan(0, std::min(avail, kMaxTarNameRecord))));
      next_name->erase(std::find(next_name->begin(), next_name->end(), '\0'), next_name->end());
      off = after_data;
      continue;
    }
    if (h.type == 'x' || h.type == 'X' || h.type == 'g') {  // pax records
      std::optional<std::string> path =
          PaxPath(AsChars(body.subspan(0, std::min(avail, kMaxTarNameRecord))));
      if (path) (h.type == 'g' ? global_name : next_name) = *path;
      off = after_data;
      continue;
    }
    TarMember m;
    m.name = next_name ? *next_name : global_name ? *global_name : h.name;
    m.type = h.type;
    // Links, devices, directories and FIFOs carry no data, whatever their
    // size field says.
    m.has_data = !(h.type >= '1' && h.type <= '6');
    if (m.has_data) m.data = body;
    next_name.reset();
    visit(m);
    off = m.has_data ? after_data : data;
  }
}

}  // namespace safemodel::loader
