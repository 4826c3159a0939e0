#include "loader/polyglot.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "loader/map_residency.h"
#include "loader/pickle/archive_scan.h"

namespace safemodel::loader {

namespace {

constexpr uint8_t kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
constexpr uint64_t kHdf5SignatureBytes = sizeof kHdf5Signature;

}  // namespace

std::optional<uint64_t> FindHdf5Signature(ByteView input, ByteView droppable_map) {
  const uint64_t eof = input.size();
  unsigned maxpow = 0;
  for (uint64_t a = eof; a; a >>= 1) ++maxpow;
  maxpow = std::max(maxpow, 9u);
  MapResidency probed(droppable_map);
  std::optional<uint64_t> found;
  for (unsigned n = 8; n < maxpow && n < 64; ++n) {
    const uint64_t addr = n == 8 ? 0 : uint64_t{1} << n;
    if (addr + kHdf5SignatureBytes > eof) break;
    const ByteView probe = input.subspan(addr, kHdf5SignatureBytes);
    const bool match = std::memcmp(probe.data(), kHdf5Signature, kHdf5SignatureBytes) == 0;
    probed.Touch(probe);
    if (match) {
      found = addr;
      break;
    }
  }
  probed.DropTouched();
  return found;
}

void ScanTarReading(ByteView input, ParseContext& ctx) {
  ForEachTarMember(input, [&ctx](const TarMember& m) {
    if ((m.type == '1' || m.type == '2') &&
        (m.name == "storages" || m.name == "tensors" || m.name == "pickle")) {
      ctx.Refuse("tar.link", "tar member '" + Printable(m.name) + "'",
                 "a link named '" + Printable(m.name) +
                     "': torch.load extracts it without a filter and opens the file it "
                     "points to, outside the archive",
                 {m.name});
    }
    if (!m.has_data) return;
    if (StartsWith(m.data, "PK\x03\x04")) {
      // A checkpoint packed in the tar: its members are scanned (one level;
      // ScanMemberForPickles does not open zips).
      ScanDamagedZip(m.data, ctx);
    } else {
      ScanMemberForPickles(m.data, "tar member '" + Printable(m.name) + "'", ctx);
    }
  });
}

void ScanZipfileReading(ByteView input, const ZipfileView& view, ParseContext& ctx) {
  uint64_t budget = ctx.options().memory_limit;
  ForEachZipfileMember(input, view, [&](const ZipfileMember& m) {
    ScanZipMemberData(m.method, m.data, "zip member '" + Printable(m.name) + "'", &budget, ctx);
  });
}

}  // namespace safemodel::loader
