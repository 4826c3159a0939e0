#include "loader/pickle/archive_scan.h"

#include <algorithm>
#include <vector>

#include "loader/containers/inflate.h"
#include "loader/containers/sevenzip.h"
#include "loader/containers/zip_scan.h"
#include "loader/numpy/npy_header.h"
#include "loader/pickle/pickle_formats.h"
#include "loader/pickle/pickle_run.h"

namespace safemodel::loader {

void ScanMemberForPickles(ByteView bytes, const std::string& where, ParseContext& ctx) {
  if (StartsWith(bytes, "PK\x03\x04")) return;
  if (LooksLikePickle(bytes)) {
    pickle::ScanForFindings(bytes, 0, where, ctx);
    return;
  }
  if (StartsWith(bytes, "\x93NUMPY")) {
    Result<NpyHeader> h = ParseNpyHeader(bytes, where);
    if (h.ok() && h->is_object && h->data_offset < bytes.size()) {
      pickle::ScanForFindings(bytes, h->data_offset, where, ctx);
    }
  }
}

void ScanZipMemberData(uint16_t method, ByteView data, const std::string& where, uint64_t* budget,
                       ParseContext& ctx) {
  if (method == 0) {
    ScanMemberForPickles(data, where, ctx);
  } else if (method == 8 && *budget > 0) {
    std::string inflated = InflateRaw(data, *budget);
    *budget -= std::min<uint64_t>(*budget, inflated.size());
    ScanMemberForPickles(AsBytes(inflated), where, ctx);
  }
}

void ScanDamagedZip(ByteView image, ParseContext& ctx) {
  uint64_t budget = ctx.options().memory_limit;
  for (const LenientZipMember& m : ListZipMembersLeniently(image)) {
    ScanZipMemberData(m.method, image.subspan(m.data_offset, m.compressed_size),
                      "zip member '" + Printable(m.name) + "'", &budget, ctx);
  }
}

Status ParseSevenZip(ByteView input, ParseContext& ctx) {
  Result<std::vector<SevenZipMember>> members = UnpackSevenZip(input, ctx.options().memory_limit);
  if (members.ok()) {
    for (const SevenZipMember& m : *members) {
      ScanMemberForPickles(AsBytes(m.data), "7z member '" + Printable(m.name) + "'", ctx);
    }
  }
  const Status s = members.status();
  if (ctx.refused()) return pickle::RefusedStatus(ctx, s, "7z archive");
  if (!s.ok()) return s.WithContext("7z archive");
  return Status::Unsupported(
      "7z archives are not converted (none of its members calls anything; extract the "
      "model and convert it)");
}

}  // namespace safemodel::loader
