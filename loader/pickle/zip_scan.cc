// Scanning a zip archive's members for pickles, whatever state the archive
// is in. ZipArchive rejects archives with encryption flags, CRC mismatches,
// disagreeing local and central names, '..' paths: loaders that are less
// strict (torch, miniz) still read them, and the trick is to hide a payload
// from scanners that use a strict reader. The verdict stays "not converted"
// either way; this only makes sure that the report names the callables
// (exit 1 rather than 3). Nothing read here reaches the output.
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "loader/pickle/pickle_formats.h"
#include "loader/pickle/pickle_internal.h"

namespace safemodel::loader {

namespace {

// Members looked at in one archive; a real checkpoint has a few thousand.
constexpr uint64_t kMaxScannedMembers = 100'000;

struct Member {
  std::string name;
  uint64_t data_offset = 0;
  uint64_t compressed_size = 0;
  uint16_t method = 0;
};

// Local header at `lho`: where its data starts, and its sizes.
bool LocalHeader(ByteView image, uint64_t lho, uint64_t* data_offset, uint16_t* flags,
                 uint16_t* method, uint64_t* csize, std::string* name) {
  if (lho >= image.size()) return false;
  ByteReader r(image.subspan(lho));
  auto sig = r.U32LE("sig");
  if (!sig.ok() || *sig != kZipLocalSig) return false;
  if (!r.Skip(2, "").ok()) return false;
  auto f = r.U16LE("");
  auto m = r.U16LE("");
  if (!f.ok() || !m.ok() || !r.Skip(8, "").ok()) return false;
  auto cs = r.U32LE("");
  auto us = r.U32LE("");
  auto nl = r.U16LE("");
  auto el = r.U16LE("");
  if (!cs.ok() || !us.ok() || !nl.ok() || !el.ok()) return false;
  auto n = r.Bytes(*nl, "");
  if (!n.ok() || !r.Skip(*el, "").ok()) return false;
  *flags = *f;
  *method = *m;
  *csize = *cs;
  *name = std::string(AsChars(*n));
  *data_offset = lho + r.position();
  return true;
}

std::vector<Member> FromCentralDirectory(ByteView image) {
  std::vector<Member> out;
  if (image.size() < 22) return out;
  uint64_t eocd = UINT64_MAX;
  uint64_t lowest = image.size() - 22 > 0xFFFF ? image.size() - 22 - 0xFFFF : 0;
  for (uint64_t off = image.size() - 22 + 1; off-- > lowest;) {
    ByteReader r(image.subspan(off, 4));
    if (*r.U32LE("sig") == kZipEndSig) {
      eocd = off;
      break;
    }
  }
  if (eocd == UINT64_MAX) return out;
  ByteReader er(image.subspan(eocd, 22));
  (void)er.Skip(10, "");
  uint64_t n = *er.U16LE("");
  uint64_t cd_size = *er.U32LE("");
  uint64_t cd_offset = *er.U32LE("");
  if ((n == 0xFFFF || cd_offset == 0xFFFFFFFF) && eocd >= 20) {
    ByteReader lr(image.subspan(eocd - 20, 20));
    if (*lr.U32LE("") == kZip64LocatorSig) {
      (void)lr.Skip(4, "");
      uint64_t rec = *lr.U64LE("");
      if (rec < image.size()) {
        ByteReader zr(image.subspan(rec));
        if (zr.Skip(24, "").ok()) {
          auto zn = zr.U64LE("");
          auto zn2 = zr.U64LE("");
          auto zs = zr.U64LE("");
          auto zo = zr.U64LE("");
          if (zn.ok() && zn2.ok() && zs.ok() && zo.ok()) {
            n = *zn2;
            cd_size = *zs;
            cd_offset = *zo;
          }
        }
      }
    }
  }
  if (cd_offset >= image.size()) return out;
  ByteReader cr(image.subspan(cd_offset, std::min<uint64_t>(cd_size, image.size() - cd_offset)));
  for (uint64_t i = 0; i < n && i < kMaxScannedMembers; ++i) {
    auto sig = cr.U32LE("");
    if (!sig.ok() || *sig != kZipCentralSig || !cr.Skip(6, "").ok()) break;
    auto method = cr.U16LE("");
    if (!method.ok() || !cr.Skip(8, "").ok()) break;
    auto cs = cr.U32LE("");
    auto us = cr.U32LE("");
    auto nl = cr.U16LE("");
    auto el = cr.U16LE("");
    auto cl = cr.U16LE("");
    if (!cs.ok() || !us.ok() || !nl.ok() || !el.ok() || !cl.ok() || !cr.Skip(8, "").ok()) break;
    auto lho = cr.U32LE("");
    auto name = cr.Bytes(*nl, "");
    auto extra = cr.Bytes(*el, "");
    if (!lho.ok() || !name.ok() || !extra.ok() || !cr.Skip(*cl, "").ok()) break;
    Member m;
    m.name = std::string(AsChars(*name));
    m.method = *method;
    uint64_t csize = *cs, usize = *us, offset = *lho;
    // zip64 extended information (uncompressed, compressed, offset).
    ByteReader xr(*extra);
    while (xr.remaining() >= 4) {
      uint16_t id = *xr.U16LE(""), len = *xr.U16LE("");
      auto body = xr.Bytes(len, "");
      if (!body.ok()) break;
      if (id != 1) continue;
      ByteReader zr(*body);
      if (usize == 0xFFFFFFFF) (void)zr.U64LE("");
      if (csize == 0xFFFFFFFF) {
        auto v = zr.U64LE("");
        if (v.ok()) csize = *v;
      }
      if (offset == 0xFFFFFFFF) {
        auto v = zr.U64LE("");
        if (v.ok()) offset = *v;
      }
    }
    uint16_t lflags, lmethod;
    uint64_t lcsize;
    std::string lname;
    if (!LocalHeader(image, offset, &m.data_offset, &lflags, &lmethod, &lcsize, &lname)) continue;
    m.compressed_size = std::min<uint64_t>(csize, image.size() - m.data_offset);
    if (lname != m.name) m.name += "' (local header: '" + lname;
    out.push_back(std::move(m));
  }
  return out;
}

// Without a usable central directory: walk the local headers from the start
// while their sizes are known.
std::vector<Member> FromLocalHeaders(ByteView image) {
  std::vector<Member> out;
  uint64_t off = 0;
  while (out.size() < kMaxScannedMembers) {
    Member m;
    uint16_t flags;
    uint64_t csize;
    if (!LocalHeader(image, off, &m.data_offset, &flags, &m.method, &csize, &m.name)) break;
    m.compressed_size = std::min<uint64_t>(csize, image.size() - m.data_offset);
    out.push_back(m);
    if ((flags & 0x0008) && csize == 0) break;  // size only in a data descriptor
    off = m.data_offset + m.compressed_size;
  }
  return out;
}

}  // namespace

namespace pickle {

// Raw deflate, as much as inflates cleanly (a truncated member can still
// hold a complete payload), at most `cap` bytes.
std::string InflateRaw(ByteView in, uint64_t cap) {
  std::string out;
  z_stream zs;
  std::memset(&zs, 0, sizeof zs);
  if (inflateInit2(&zs, -15) != Z_OK) return out;
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(std::min<uint64_t>(in.size(), UINT32_MAX));
  for (;;) {
    if (out.size() >= cap) break;
    size_t old = out.size();
    uint64_t grow = std::min<uint64_t>(std::max<uint64_t>(old, 1 << 16), cap - old);
    out.resize(old + grow);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = static_cast<uInt>(std::min<uint64_t>(grow, UINT32_MAX));
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + (grow - zs.avail_out));
    if (rc != Z_OK) break;
  }
  inflateEnd(&zs);
  return out;
}

void ScanMember(ByteView bytes, const std::string& where, ParseContext& ctx) {
  // A zip inside the member ("PK" is the PERSID opcode to a pickle reader,
  // which no loader without a persistent_load accepts): not a pickle.
  if (StartsWith(bytes, "PK\x03\x04")) return;
  if (LooksLikePickle(bytes)) {
    ScanForFindings(bytes, 0, where, ctx);
    return;
  }
  if (StartsWith(bytes, "\x93NUMPY")) {
    Result<NpyHeader> h = ParseNpyHeader(bytes, where);
    if (h.ok() && h->is_object && h->data_offset < bytes.size()) {
      ScanForFindings(bytes, h->data_offset, where, ctx);
    }
  }
}

}  // namespace pickle

void ScanDamagedZip(ByteView image, ParseContext& ctx) {
  std::vector<Member> members = FromCentralDirectory(image);
  if (members.empty()) members = FromLocalHeaders(image);
  uint64_t budget = ctx.options().memory_limit;
  for (const Member& m : members) {
    const std::string where = "zip member '" + Printable(m.name) + "'";
    ByteView data = image.subspan(m.data_offset, m.compressed_size);
    if (m.method == 0) {
      pickle::ScanMember(data, where, ctx);
    } else if (m.method == 8 && budget > 0) {
      std::string inflated = pickle::InflateRaw(data, budget);
      budget -= std::min<uint64_t>(budget, inflated.size());
      pickle::ScanMember(AsBytes(inflated), where, ctx);
    }
  }
}

}  // namespace safemodel::loader
