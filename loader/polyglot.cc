#include "loader/polyglot.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "loader/pickle/pickle_formats.h"
#include "loader/pickle/pickle_internal.h"
#include "loader/zip/zip_archive.h"

namespace safemodel::loader {

namespace {

// Offsets zipfile computes can go negative or past 2^64 on crafted input.
__extension__ using Int128 = __int128;

constexpr uint64_t kTarBlock = 512;
constexpr uint8_t kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
constexpr uint64_t kHdf5SignatureBytes = sizeof kHdf5Signature;
// zipfile's _EndRecData: the end record is 22 bytes, its comment at most
// 64 KiB; the zip64 locator is 20 bytes and the zip64 end record 56.
constexpr uint64_t kEndRecordBytes = 22;
constexpr uint64_t kMaxCommentBytes = 1 << 16;
constexpr uint64_t kZip64LocatorBytes = 20;
constexpr uint64_t kZip64EndBytes = 56;
constexpr uint64_t kCentralHeaderBytes = 46;
// Tar members scanned: tarfile has no limit; 1 M headers is 512 MiB of them.
constexpr uint64_t kMaxTarMembers = 1 << 20;
// A tar pax or GNU long-name record read for a member's name.
constexpr uint64_t kMaxTarNameRecord = 1 << 16;

uint64_t Le(ByteView b, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | b[off + i];
  return v;
}

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
  if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) >= 0x80; })) {
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
  static constexpr std::pair<size_t, size_t> kFields[] = {
      {100, 8}, {108, 8}, {116, 8}, {124, 12}, {136, 12}, {329, 8}, {337, 8}};
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

std::optional<uint64_t> FindHdf5Signature(ByteView input) {
  const uint64_t eof = input.size();
  unsigned maxpow = 0;
  for (uint64_t a = eof; a; a >>= 1) ++maxpow;
  maxpow = std::max(maxpow, 9u);
  for (unsigned n = 8; n < maxpow && n < 64; ++n) {
    const uint64_t addr = n == 8 ? 0 : uint64_t{1} << n;
    if (addr + kHdf5SignatureBytes > eof) break;
    if (std::memcmp(input.data() + addr, kHdf5Signature, kHdf5SignatureBytes) == 0) return addr;
  }
  return std::nullopt;
}

std::optional<ZipfileView> FindZipfileArchive(ByteView input) {
  const uint64_t size = input.size();
  if (size < kEndRecordBytes) return std::nullopt;
  uint64_t pos = UINT64_MAX;
  const uint64_t tail = size - kEndRecordBytes;
  if (StartsWith(input.subspan(tail), "PK\x05\x06") && input[size - 2] == 0 &&
      input[size - 1] == 0) {
    pos = tail;
  } else {
    const uint64_t from = size > kMaxCommentBytes + kEndRecordBytes
                              ? size - kMaxCommentBytes - kEndRecordBytes
                              : 0;
    for (uint64_t off = size - 4 + 1; off-- > from;) {  // rfind
      if (StartsWith(input.subspan(off), "PK\x05\x06")) {
        pos = off;
        break;
      }
    }
    if (pos == UINT64_MAX || pos + kEndRecordBytes > size) return std::nullopt;
  }
  ZipfileView v;
  v.end_record = pos;
  uint64_t cd_size = Le(input, pos + 12, 4);
  uint64_t cd_offset = Le(input, pos + 16, 4);
  // _EndRecData64: a locator exactly 20 bytes before, then a 56-byte zip64
  // end record exactly before that (its declared size is not used).
  if (pos >= kZip64LocatorBytes &&
      StartsWith(input.subspan(pos - kZip64LocatorBytes), "PK\x06\x07")) {
    const uint64_t loc = pos - kZip64LocatorBytes;
    const uint64_t disk = Le(input, loc + 4, 4), disks = Le(input, loc + 16, 4);
    if (disk != 0 || disks > 1) return std::nullopt;  // BadZipFile
    if (loc >= kZip64EndBytes && StartsWith(input.subspan(loc - kZip64EndBytes), "PK\x06\x06")) {
      const uint64_t rec = loc - kZip64EndBytes;
      v.zip64 = true;
      cd_size = Le(input, rec + 40, 8);
      cd_offset = Le(input, rec + 48, 8);
    }
  }
  Int128 concat = static_cast<Int128>(pos) - cd_size - cd_offset;
  if (v.zip64) concat -= kZip64EndBytes + kZip64LocatorBytes;
  const Int128 start = static_cast<Int128>(cd_offset) + concat;
  if (start < 0 || start > static_cast<Int128>(size)) return std::nullopt;
  v.concat = static_cast<int64_t>(concat);
  v.cd_start = static_cast<uint64_t>(start);
  v.cd_size = cd_size;
  v.has_entries = cd_size >= kCentralHeaderBytes && v.cd_start + kCentralHeaderBytes <= size &&
                  StartsWith(input.subspan(v.cd_start), "PK\x01\x02");
  return v;
}

std::optional<uint64_t> StrictZipEndRecord(ByteView input) {
  const uint64_t size = input.size();
  if (size < kEndRecordBytes) return std::nullopt;
  std::optional<uint64_t> found;
  const uint64_t lowest =
      size - kEndRecordBytes > 0xFFFF ? size - kEndRecordBytes - 0xFFFF : 0;
  for (uint64_t off = size - kEndRecordBytes + 1; off-- > lowest;) {
    if (!StartsWith(input.subspan(off), "PK\x05\x06")) continue;
    if (off + kEndRecordBytes + Le(input, off + 20, 2) != size) continue;
    if (found) return std::nullopt;
    found = off;
  }
  return found;
}

Status CheckZipfileAgrees(ByteView input) {
  std::optional<uint64_t> ours = StrictZipEndRecord(input);
  std::optional<ZipfileView> py = FindZipfileArchive(input);
  if (!ours) return Status::Malformed("zip: no single end record");
  if (!py) {
    return Status::Malformed("zip: Python's zipfile finds no archive in these bytes (the end "
                             "record at byte " + Num(*ours) + " is not one it accepts)");
  }
  if (py->end_record != *ours) {
    return Status::Malformed(
        "zip: two readings of the same bytes: safemodel's end record is at byte " + Num(*ours) +
        ", but Python's zipfile (np.load, Keras) takes the last end-record signature, at byte " +
        Num(py->end_record) + " inside the archive comment, and reads another archive");
  }
  if (py->concat != 0) {
    return Status::Malformed(
        "zip: two readings of the same bytes: Python's zipfile shifts every offset by " +
        std::to_string(py->concat) +
        " bytes (a zip64 end record with extra data, or a central directory that does not end "
        "at the end record), so it reads other entries than torch and safemodel");
  }
  return Status::Ok();
}

void ScanTarReading(ByteView input, ParseContext& ctx) {
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
    const std::string name = next_name ? *next_name : global_name ? *global_name : h.name;
    bool has_data = true;
    switch (h.type) {
      case 'L':  // GNU long name for the next member
        next_name = std::string(AsChars(body.subspan(0, std::min(avail, kMaxTarNameRecord))));
        next_name->erase(std::find(next_name->begin(), next_name->end(), '\0'), next_name->end());
        off = data + blocks * kTarBlock;
        continue;
      case 'x':
      case 'X':
      case 'g': {
        std::optional<std::string> path =
            PaxPath(AsChars(body.subspan(0, std::min(avail, kMaxTarNameRecord))));
        if (path) (h.type == 'g' ? global_name : next_name) = *path;
        off = data + blocks * kTarBlock;
        continue;
      }
      case '1':
      case '2':
        if (name == "storages" || name == "tensors" || name == "pickle") {
          ctx.Refuse("tar.link", "tar member '" + Printable(name) + "'",
                     "a link named '" + Printable(name) +
                         "': torch.load extracts it without a filter and opens the file it "
                         "points to, outside the archive",
                     {name});
        }
        has_data = false;
        break;
      case '3':
      case '4':
      case '5':
      case '6':
        has_data = false;  // devices, directories, FIFOs carry no data
        break;
      default:
        break;
    }
    next_name.reset();
    if (has_data) {
      const std::string where = "tar member '" + Printable(name) + "'";
      if (StartsWith(body, "PK\x03\x04")) {
        // A checkpoint packed in the tar: its members are scanned (one
        // level; ScanMember does not open zips).
        ScanDamagedZip(body, ctx);
      } else {
        pickle::ScanMember(body, where, ctx);
      }
      off = data + blocks * kTarBlock;
    } else {
      off = data;
    }
  }
}

void ScanZipfileReading(ByteView input, const ZipfileView& view, ParseContext& ctx) {
  if (view.cd_start >= input.size()) return;
  ByteReader cr(input.subspan(view.cd_start,
                              std::min<uint64_t>(view.cd_size, input.size() - view.cd_start)));
  uint64_t budget = ctx.options().memory_limit;
  for (uint64_t i = 0; i < kMaxZipEntries && cr.remaining() >= kCentralHeaderBytes; ++i) {
    ByteView h = *cr.Bytes(kCentralHeaderBytes, "central header");
    if (Le(h, 0, 4) != kZipCentralSig) break;
    const uint64_t method = Le(h, 10, 2);
    uint64_t csize = Le(h, 20, 4), usize = Le(h, 24, 4), lho = Le(h, 42, 4);
    auto name = cr.Bytes(Le(h, 28, 2), "name");
    auto extra = cr.Bytes(Le(h, 30, 2), "extra");
    if (!name.ok() || !extra.ok() || !cr.Skip(Le(h, 32, 2), "comment").ok()) break;
    ByteReader xr(*extra);
    while (xr.remaining() >= 4) {
      uint64_t id = *xr.U16LE(""), len = *xr.U16LE("");
      auto body = xr.Bytes(len, "");
      if (!body.ok()) break;
      if (id != 1) continue;
      ByteReader zr(*body);
      if (usize == 0xFFFFFFFF) (void)zr.U64LE("");
      if (csize == 0xFFFFFFFF) {
        auto v = zr.U64LE("");
        if (v.ok()) csize = *v;
      }
      if (lho == 0xFFFFFFFF) {
        auto v = zr.U64LE("");
        if (v.ok()) lho = *v;
      }
    }
    // zipfile adds concat to the local header's offset, then skips the
    // local name and extra field.
    const Int128 local = static_cast<Int128>(lho) + view.concat;
    if (local < 0 || local + 30 > static_cast<Int128>(input.size())) continue;
    const uint64_t l = static_cast<uint64_t>(local);
    if (Le(input, l, 4) != kZipLocalSig) continue;
    const uint64_t data = l + 30 + Le(input, l + 26, 2) + Le(input, l + 28, 2);
    if (data > input.size()) continue;
    const ByteView bytes = input.subspan(data, std::min<uint64_t>(csize, input.size() - data));
    const std::string where = "zip member '" + Printable(AsChars(*name)) + "'";
    if (method == 0) {
      pickle::ScanMember(bytes, where, ctx);
    } else if (method == 8 && budget > 0) {
      std::string inflated = pickle::InflateRaw(bytes, budget);
      budget -= std::min<uint64_t>(budget, inflated.size());
      pickle::ScanMember(AsBytes(inflated), where, ctx);
    }
  }
}

}  // namespace safemodel::loader
