#include "tests/testing/zip_builder.h"

#include <zlib.h>

namespace safemodel::testing {

namespace {
void Put(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
}  // namespace

uint32_t Crc32Of(const std::string& data) {
  return static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

std::string RawDeflate(const std::string& data) {
  z_stream z = {};
  deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, data.size()) + 16, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string BuildZip(const std::vector<ZipMember>& members, const ZipLayout& layout) {
  std::string out = layout.prefix;
  std::vector<std::string> centrals(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    std::string& central = centrals[i];
    const ZipMember& m = members[i];
    if (i == 1) out += layout.gap;
    const std::string payload = m.deflate ? RawDeflate(m.data) : m.data;
    const uint16_t method = m.method.value_or(m.deflate ? 8 : 0);
    const uint16_t flags = static_cast<uint16_t>(m.extra_flags | (m.descriptor ? 0x0008 : 0));
    const uint32_t crc = m.crc.value_or(Crc32Of(m.data));
    const uint64_t usize = m.uncompressed_size.value_or(m.data.size());
    const uint64_t csize = payload.size();
    const uint64_t offset = out.size();
    const std::string& lname = m.local_name.empty() ? m.name : m.local_name;

    std::string lextra, cextra;
    if (m.zip64_extra) {
      Put(&lextra, 0x0001, 2);
      Put(&lextra, 16, 2);
      Put(&lextra, usize, 8);
      Put(&lextra, csize, 8);
      Put(&cextra, 0x0001, 2);
      Put(&cextra, 24, 2);
      Put(&cextra, usize, 8);
      Put(&cextra, csize, 8);
      Put(&cextra, offset, 8);
    }
    lextra += m.extra;
    cextra += m.extra;
    const uint32_t u32 = m.zip64_extra ? 0xFFFFFFFFu : static_cast<uint32_t>(usize);
    const uint32_t c32 = m.zip64_extra ? 0xFFFFFFFFu : static_cast<uint32_t>(csize);
    // Local header (CRC and sizes zero when a descriptor follows).
    Put(&out, 0x04034b50, 4);
    Put(&out, 20, 2);
    Put(&out, flags, 2);
    Put(&out, method, 2);
    Put(&out, m.local_mod_time, 2);
    Put(&out, 0, 2);
    Put(&out, m.descriptor ? 0 : crc, 4);
    Put(&out, m.descriptor && !m.zip64_extra ? 0 : c32, 4);
    Put(&out, m.descriptor && !m.zip64_extra ? 0 : u32, 4);
    Put(&out, lname.size(), 2);
    Put(&out, lextra.size(), 2);
    out += lname + lextra + payload;
    if (m.descriptor) {
      Put(&out, 0x08074b50, 4);
      Put(&out, crc, 4);
      Put(&out, csize, m.zip64_extra ? 8 : 4);
      Put(&out, usize, m.zip64_extra ? 8 : 4);
    }
    // Central entry.
    Put(&central, 0x02014b50, 4);
    Put(&central, m.made_by, 2);
    Put(&central, 20, 2);
    Put(&central, flags, 2);
    Put(&central, method, 2);
    Put(&central, 0, 4);
    Put(&central, crc, 4);
    Put(&central, c32, 4);
    Put(&central, u32, 4);
    Put(&central, m.name.size(), 2);
    Put(&central, cextra.size(), 2);
    Put(&central, 0, 2);
    Put(&central, 0, 2);
    Put(&central, 0, 2);
    Put(&central, m.external_attr, 4);
    Put(&central, m.zip64_extra ? 0xFFFFFFFFu : offset, 4);
    central += m.name + cextra;
  }
  std::string central;
  for (size_t k = 0; k < members.size(); ++k) {
    central += centrals[layout.central_order.empty() ? k : layout.central_order[k]];
  }
  const uint64_t cd_offset = out.size();
  out += central;
  const uint64_t count = layout.entry_count.value_or(members.size());
  if (layout.zip64_end) {
    const uint64_t rec = out.size();
    Put(&out, 0x06064b50, 4);
    Put(&out, 44, 8);
    Put(&out, 45, 2);
    Put(&out, 45, 2);
    Put(&out, 0, 4);
    Put(&out, 0, 4);
    Put(&out, count, 8);
    Put(&out, count, 8);
    Put(&out, central.size(), 8);
    Put(&out, cd_offset, 8);
    Put(&out, 0x07064b50, 4);
    Put(&out, 0, 4);
    Put(&out, rec, 8);
    Put(&out, 1, 4);
  }
  Put(&out, 0x06054b50, 4);
  Put(&out, layout.disk, 2);
  Put(&out, 0, 2);
  Put(&out, layout.zip64_end ? 0xFFFF : count, 2);
  Put(&out, layout.zip64_end ? 0xFFFF : count, 2);
  Put(&out, layout.zip64_end ? 0xFFFFFFFFu : central.size(), 4);
  Put(&out, layout.zip64_end ? 0xFFFFFFFFu : cd_offset, 4);
  Put(&out, layout.comment.size(), 2);
  out += layout.comment;
  return out;
}

std::string GrowMemberSizes(std::string image, char name) {
  auto add_one = [&image](size_t at) {
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<uint8_t>(image[at + i])) << (8 * i);
    ++v;
    for (size_t i = 0; i < 4; ++i) image[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  };
  // Local header: name at 30, sizes at 18 and 22; central: name at 46, sizes at 20 and 24.
  for (size_t at = 0; (at = image.find("PK\x03\x04", at)) != std::string::npos; ++at) {
    if (image[at + 30] == name) add_one(at + 18), add_one(at + 22);
  }
  for (size_t at = 0; (at = image.find("PK\x01\x02", at)) != std::string::npos; ++at) {
    if (image[at + 46] == name) add_one(at + 20), add_one(at + 24);
  }
  return image;
}

}  // namespace safemodel::testing
