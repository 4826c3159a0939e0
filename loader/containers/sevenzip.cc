#include "loader/containers/sevenzip.h"

#include <lzma.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace safemodel::loader {

namespace {

constexpr uint8_t kSignature[6] = {'7', 'z', 0xBC, 0xAF, 0x27, 0x1C};
constexpr uint64_t kSignatureHeaderBytes = 32;
// Counts a header may declare (folders, coders, files, streams): far above
// any archive a model would be shipped in, and small enough to allocate.
constexpr uint64_t kMaxItems = 100'000;
// Encoded headers that decode to encoded headers again.
constexpr int kMaxHeaderLevels = 4;

enum Property : uint8_t {
  kEnd = 0x00,
  kHeader = 0x01,
  kArchiveProperties = 0x02,
  kAdditionalStreamsInfo = 0x03,
  kMainStreamsInfo = 0x04,
  kFilesInfo = 0x05,
  kPackInfo = 0x06,
  kUnpackInfo = 0x07,
  kSubStreamsInfo = 0x08,
  kSize = 0x09,
  kCrc = 0x0A,
  kFolder = 0x0B,
  kCodersUnpackSize = 0x0C,
  kNumUnpackStream = 0x0D,
  kEmptyStream = 0x0E,
  kName = 0x11,
  kEncodedHeader = 0x17,
};

struct Coder {
  std::string id;
  std::string props;
  uint64_t in_streams = 1, out_streams = 1;
};

struct Folder {
  std::vector<Coder> coders;
  uint64_t packed_streams = 1;
  std::vector<std::pair<uint64_t, uint64_t>> bind_pairs;  // (coder input, coder output)
  std::vector<uint64_t> unpack_sizes;                     // one per coder output
  // The output no bind pair consumes: the folder's data.
  uint64_t MainOutput() const {
    for (uint64_t o = 0; o < unpack_sizes.size(); ++o) {
      bool bound = false;
      for (const auto& [in, out] : bind_pairs) bound = bound || out == o;
      if (!bound) return o;
    }
    return 0;
  }
  uint64_t size() const { return unpack_sizes.empty() ? 0 : unpack_sizes[MainOutput()]; }
  uint64_t substreams = 1;
  std::vector<uint64_t> substream_sizes;
};

struct StreamsInfo {
  uint64_t pack_pos = 0;
  std::vector<uint64_t> pack_sizes;
  std::vector<Folder> folders;
};

// A cursor over header bytes with 7z's number encoding.
class Reader {
 public:
  explicit Reader(ByteView data) : r_(data) {}
  Result<uint8_t> Byte() { return r_.U8("7z header"); }
  Result<uint64_t> Number() {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t first, Byte());
    uint8_t mask = 0x80;
    uint64_t value = 0;
    for (int i = 0; i < 8; ++i) {
      if ((first & mask) == 0) {
        uint64_t high = first & (mask - 1u);
        return value + (high << (8 * i));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(uint8_t b, Byte());
      value |= static_cast<uint64_t>(b) << (8 * i);
      mask = static_cast<uint8_t>(mask >> 1);
    }
    return value;
  }
  Result<uint64_t> Count() {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, Number());
    if (n > kMaxItems)
      return Status::LimitExceeded("7z: a count of " + Num(n) + " exceeds " + Num(kMaxItems));
    return n;
  }
  Result<ByteView> Bytes(uint64_t n) { return r_.Bytes(n, "7z header"); }
  Status Skip(uint64_t n) { return r_.Skip(n, "7z header"); }
  Status SkipDigests(uint64_t n) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t all, Byte());
    uint64_t defined = n;
    if (!all) {
      defined = 0;
      for (uint64_t i = 0; i < n; i += 8) {
        SAFEMODEL_ASSIGN_OR_RETURN(uint8_t bits, Byte());
        defined += static_cast<uint64_t>(__builtin_popcount(bits));
      }
    }
    return Skip(defined * 4);
  }
  bool at_end() const { return r_.at_end(); }

 private:
  ByteReader r_;
};

Result<Folder> ReadFolder(Reader& r) {
  Folder f;
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t coders, r.Count());
  if (coders == 0) return Status::Malformed("7z: a folder without coders");
  uint64_t in_total = 0, out_total = 0;
  for (uint64_t i = 0; i < coders; ++i) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t flags, r.Byte());
    if (flags & 0x80) return Status::Unsupported("7z: alternative coder methods");
    Coder c;
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView id, r.Bytes(flags & 0x0F));
    c.id = std::string(AsChars(id));
    if (flags & 0x10) {
      SAFEMODEL_ASSIGN_OR_RETURN(c.in_streams, r.Count());
      SAFEMODEL_ASSIGN_OR_RETURN(c.out_streams, r.Count());
    }
    if (flags & 0x20) {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, r.Count());
      SAFEMODEL_ASSIGN_OR_RETURN(ByteView props, r.Bytes(n));
      c.props = std::string(AsChars(props));
    }
    in_total += c.in_streams;
    out_total += c.out_streams;
    f.coders.push_back(std::move(c));
  }
  if (out_total == 0 || out_total > kMaxItems || in_total > kMaxItems)
    return Status::Malformed("7z: bad coder streams");
  const uint64_t bind_pairs = out_total - 1;
  for (uint64_t i = 0; i < bind_pairs; ++i) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t in, r.Number());
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t out, r.Number());
    f.bind_pairs.emplace_back(in, out);
  }
  if (in_total < bind_pairs) return Status::Malformed("7z: more bind pairs than coder inputs");
  f.packed_streams = in_total - bind_pairs;
  if (f.packed_streams > 1) {
    for (uint64_t i = 0; i < f.packed_streams; ++i) SAFEMODEL_RETURN_IF_ERROR(r.Number().status());
  }
  f.unpack_sizes.resize(out_total);
  return f;
}

Status ReadStreamsInfo(Reader& r, StreamsInfo* s) {
  for (;;) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t id, r.Byte());
    if (id == kEnd) return Status::Ok();
    if (id == kPackInfo) {
      SAFEMODEL_ASSIGN_OR_RETURN(s->pack_pos, r.Number());
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, r.Count());
      s->pack_sizes.assign(n, 0);
      for (;;) {
        SAFEMODEL_ASSIGN_OR_RETURN(uint8_t p, r.Byte());
        if (p == kEnd) break;
        if (p == kSize) {
          for (uint64_t& size : s->pack_sizes) {
            SAFEMODEL_ASSIGN_OR_RETURN(size, r.Number());
          }
        } else if (p == kCrc) {
          SAFEMODEL_RETURN_IF_ERROR(r.SkipDigests(n));
        } else {
          return Status::Malformed("7z: unexpected property in pack info");
        }
      }
    } else if (id == kUnpackInfo) {
      SAFEMODEL_ASSIGN_OR_RETURN(uint8_t p, r.Byte());
      if (p != kFolder) return Status::Malformed("7z: unpack info without folders");
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t n, r.Count());
      SAFEMODEL_ASSIGN_OR_RETURN(uint8_t external, r.Byte());
      if (external) return Status::Unsupported("7z: external folder definitions");
      for (uint64_t i = 0; i < n; ++i) {
        SAFEMODEL_ASSIGN_OR_RETURN(Folder f, ReadFolder(r));
        s->folders.push_back(std::move(f));
      }
      SAFEMODEL_ASSIGN_OR_RETURN(p, r.Byte());
      if (p != kCodersUnpackSize) return Status::Malformed("7z: folders without unpack sizes");
      for (Folder& f : s->folders) {
        for (uint64_t& size : f.unpack_sizes) {
          SAFEMODEL_ASSIGN_OR_RETURN(size, r.Number());
        }
      }
      for (;;) {
        SAFEMODEL_ASSIGN_OR_RETURN(p, r.Byte());
        if (p == kEnd) break;
        if (p != kCrc) return Status::Malformed("7z: unexpected property in unpack info");
        SAFEMODEL_RETURN_IF_ERROR(r.SkipDigests(n));
      }
    } else if (id == kSubStreamsInfo) {
      SAFEMODEL_ASSIGN_OR_RETURN(uint8_t p, r.Byte());
      if (p == kNumUnpackStream) {
        for (Folder& f : s->folders) {
          SAFEMODEL_ASSIGN_OR_RETURN(f.substreams, r.Count());
        }
        SAFEMODEL_ASSIGN_OR_RETURN(p, r.Byte());
      }
      // Sizes of all but the last substream of each folder.
      const bool sizes = p == kSize;
      for (Folder& f : s->folders) {
        if (f.substreams == 0) continue;
        uint64_t used = 0;
        for (uint64_t i = 0; i + 1 < f.substreams; ++i) {
          uint64_t size = 0;
          if (sizes) {
            SAFEMODEL_ASSIGN_OR_RETURN(size, r.Number());
          }
          if (size > f.size() - used)
            return Status::Malformed("7z: substreams exceed their folder");
          used += size;
          f.substream_sizes.push_back(size);
        }
        f.substream_sizes.push_back(f.size() - used);
      }
      if (sizes) {
        SAFEMODEL_ASSIGN_OR_RETURN(p, r.Byte());
      }
      // CRCs and anything else up to kEnd are not needed to find the data.
      while (p != kEnd) {
        if (p != kCrc) return Status::Malformed("7z: unexpected property in substreams info");
        uint64_t streams = 0;
        for (const Folder& f : s->folders) streams += f.substreams;
        SAFEMODEL_RETURN_IF_ERROR(r.SkipDigests(streams));
        SAFEMODEL_ASSIGN_OR_RETURN(p, r.Byte());
      }
    } else {
      return Status::Malformed("7z: unexpected property " + Num(id) + " in streams info");
    }
  }
}

// liblzma's id for a 7z coder id, or LZMA_VLI_UNKNOWN.
lzma_vli FilterId(const std::string& id) {
  struct Known {
    const char* id;
    size_t size;
    lzma_vli filter;
  };
  static constexpr Known kKnown[] = {
      {"\x21", 1, LZMA_FILTER_LZMA2},
      {"\x03\x01\x01", 3, LZMA_FILTER_LZMA1},
      {"\x03", 1, LZMA_FILTER_DELTA},
      {"\x03\x03\x01\x03", 4, LZMA_FILTER_X86},
      {"\x03\x03\x02\x05", 4, LZMA_FILTER_POWERPC},
      {"\x03\x03\x04\x01", 4, LZMA_FILTER_IA64},
      {"\x03\x03\x05\x01", 4, LZMA_FILTER_ARM},
      {"\x03\x03\x07\x01", 4, LZMA_FILTER_ARMTHUMB},
      {"\x03\x03\x08\x05", 4, LZMA_FILTER_SPARC},
  };
  for (const Known& k : kKnown) {
    if (id == std::string(k.id, k.size)) return k.filter;
  }
  return LZMA_VLI_UNKNOWN;
}

// Unpacks a folder: Copy, or a chain of one LZMA/LZMA2 coder and at most one
// filter (BCJ, Delta), which is what 7-Zip and py7zr write by default.
Result<std::string> UnpackFolder(ByteView image, uint64_t offset, uint64_t packed, const Folder& f,
                                 uint64_t memory_limit) {
  if (f.packed_streams != 1 || f.coders.size() > 2) {
    return Status::Unsupported("7z: folders with several packed streams or coders");
  }
  const uint64_t size = f.size();
  if (size > memory_limit) return Status::LimitExceeded("7z: a folder of " + Num(size) + " bytes");
  if (offset > image.size() || packed > image.size() - offset) {
    return Status::Malformed("7z: packed stream outside the file");
  }
  ByteView in = image.subspan(offset, packed);
  if (f.coders.size() == 1 && f.coders[0].id == std::string(1, '\0')) {
    if (size > packed) return Status::Malformed("7z: copied stream shorter than its size");
    return std::string(AsChars(in.subspan(0, size)));
  }
  // Order the coders from the packed data outwards: the one whose output a
  // bind pair feeds into the other comes first.
  std::vector<const Coder*> chain{&f.coders[0]};
  if (f.coders.size() == 2) {
    if (f.bind_pairs.size() != 1) return Status::Malformed("7z: two coders without one bind pair");
    const auto [in_index, out_index] = f.bind_pairs[0];
    if (in_index == 1 && out_index == 0) {
      chain = {&f.coders[0], &f.coders[1]};
    } else if (in_index == 0 && out_index == 1) {
      chain = {&f.coders[1], &f.coders[0]};
    } else {
      return Status::Malformed("7z: bind pair does not chain the two coders");
    }
  }
  // liblzma lists a raw chain from the uncompressed side.
  lzma_filter filters[3] = {
      {LZMA_VLI_UNKNOWN, nullptr}, {LZMA_VLI_UNKNOWN, nullptr}, {LZMA_VLI_UNKNOWN, nullptr}};
  Status status;
  for (size_t i = 0; i < chain.size(); ++i) {
    lzma_filter& flt = filters[chain.size() - 1 - i];
    flt.id = FilterId(chain[i]->id);
    const bool compressor = flt.id == LZMA_FILTER_LZMA1 || flt.id == LZMA_FILTER_LZMA2;
    if (flt.id == LZMA_VLI_UNKNOWN || compressor != (i == 0)) {
      status = Status::Unsupported("7z: coder methods other than LZMA/LZMA2 with BCJ or Delta");
      break;
    }
    if (lzma_properties_decode(&flt, nullptr,
                               reinterpret_cast<const uint8_t*>(chain[i]->props.data()),
                               chain[i]->props.size()) != LZMA_OK) {
      status = Status::Malformed("7z: bad coder properties");
      break;
    }
    if (compressor) {
      // The dictionary never needs to exceed the output: no match reaches
      // further back than what was decoded.
      auto* opt = static_cast<lzma_options_lzma*>(flt.options);
      opt->dict_size = static_cast<uint32_t>(std::clamp<uint64_t>(
          size, LZMA_DICT_SIZE_MIN, std::max<uint64_t>(opt->dict_size, LZMA_DICT_SIZE_MIN)));
    }
  }
  lzma_stream strm = LZMA_STREAM_INIT;
  if (status.ok() && lzma_raw_decoder(&strm, filters) != LZMA_OK) {
    status = Status::LimitExceeded("7z: cannot start the LZMA decoder");
  }
  for (lzma_filter& flt : filters) free(flt.options);
  SAFEMODEL_RETURN_IF_ERROR(status);
  std::string out(size, '\0');
  strm.next_in = in.data();
  strm.avail_in = in.size();
  strm.next_out = reinterpret_cast<uint8_t*>(out.data());
  strm.avail_out = out.size();
  while (strm.avail_out > 0) {
    const size_t before = strm.avail_out + strm.avail_in;
    lzma_ret rc = lzma_code(&strm, strm.avail_in > 0 ? LZMA_RUN : LZMA_FINISH);
    if (rc != LZMA_OK || strm.avail_out + strm.avail_in == before) break;
  }
  const uint64_t produced = out.size() - strm.avail_out;
  lzma_end(&strm);
  // A truncated stream keeps what decoded: a payload may be complete in it.
  out.resize(produced);
  return out;
}

// Every folder's unpacked bytes, split into its substreams.
Result<std::vector<std::string>> UnpackStreams(ByteView image, const StreamsInfo& s,
                                               uint64_t memory_limit) {
  std::vector<std::string> streams;
  uint64_t offset;
  if (!CheckedAdd(kSignatureHeaderBytes, s.pack_pos, &offset))
    return Status::Malformed("7z: pack position");
  size_t pack = 0;
  uint64_t budget = memory_limit;
  for (const Folder& f : s.folders) {
    if (pack + f.packed_streams > s.pack_sizes.size())
      return Status::Malformed("7z: folders need more packed streams");
    uint64_t packed = 0;
    for (uint64_t i = 0; i < f.packed_streams; ++i) packed += s.pack_sizes[pack + i];
    Result<std::string> data = UnpackFolder(image, offset, s.pack_sizes[pack], f, budget);
    if (!CheckedAdd(offset, packed, &offset)) return Status::Malformed("7z: pack sizes overflow");
    pack += f.packed_streams;
    if (!data.ok()) {
      if (data.status().code() == StatusCode::kLimitExceeded) return data.status();
      continue;  // a folder we cannot unpack: nothing to scan in it
    }
    budget -= std::min<uint64_t>(budget, data->size());
    std::vector<uint64_t> sizes =
        f.substream_sizes.empty() ? std::vector<uint64_t>{f.size()} : f.substream_sizes;
    uint64_t at = 0;
    for (uint64_t size : sizes) {
      uint64_t take = std::min<uint64_t>(size, data->size() - std::min<uint64_t>(at, data->size()));
      streams.push_back(data->substr(std::min<uint64_t>(at, data->size()), take));
      at += size;
    }
  }
  return streams;
}

// Names of the files that have data, in stream order (UTF-16LE, printable
// ASCII kept for messages).
Result<std::vector<std::string>> ReadFileNames(Reader& r) {
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t files, r.Count());
  std::vector<std::string> names(files);
  std::vector<bool> empty(files, false);
  for (;;) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t type, r.Byte());
    if (type == kEnd) break;
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t size, r.Number());
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView body, r.Bytes(size));
    if (type == kEmptyStream) {
      for (uint64_t i = 0; i < files && i / 8 < body.size(); ++i)
        empty[i] = (body[i / 8] >> (7 - i % 8)) & 1;
    } else if (type == kName && !body.empty() && body[0] == 0) {
      size_t file = 0;
      for (size_t i = 1; i + 1 < body.size() && file < files; i += 2) {
        uint16_t unit = static_cast<uint16_t>(body[i] | (body[i + 1] << 8));
        if (unit == 0) {
          ++file;
        } else {
          names[file].push_back(unit >= 0x20 && unit < 0x7F ? static_cast<char>(unit) : '?');
        }
      }
    }
  }
  std::vector<std::string> with_data;
  for (uint64_t i = 0; i < files; ++i) {
    if (!empty[i]) with_data.push_back(names[i]);
  }
  return with_data;
}

}  // namespace

bool LooksLikeSevenZip(ByteView input) {
  return input.size() >= kSignatureHeaderBytes && StartsWith(input, AsChars(ByteView(kSignature)));
}

Result<std::vector<SevenZipMember>> UnpackSevenZip(ByteView image, uint64_t memory_limit) {
  ByteReader sh(image);
  SAFEMODEL_RETURN_IF_ERROR(sh.Skip(12, "7z signature header"));
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t next_offset, sh.U64LE("7z next header offset"));
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t next_size, sh.U64LE("7z next header size"));
  uint64_t start;
  if (!CheckedAdd(kSignatureHeaderBytes, next_offset, &start))
    return Status::Malformed("7z: header offset");
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView header_bytes, SubView(image, start, next_size, "7z header"));
  std::string decoded;
  for (int level = 0;; ++level) {
    Reader r(header_bytes);
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t id, r.Byte());
    if (id == kEncodedHeader) {
      if (level >= kMaxHeaderLevels) return Status::Malformed("7z: encoded headers nest too deep");
      StreamsInfo s;
      SAFEMODEL_RETURN_IF_ERROR(ReadStreamsInfo(r, &s));
      SAFEMODEL_ASSIGN_OR_RETURN(std::vector<std::string> streams,
                                 UnpackStreams(image, s, memory_limit));
      if (streams.empty())
        return Status::Unsupported("7z: the archive's header cannot be unpacked");
      decoded = std::move(streams[0]);
      header_bytes = AsBytes(decoded);
      continue;
    }
    if (id != kHeader)
      return Status::Malformed("7z: the header does not start with a header property");
    StreamsInfo main;
    std::vector<std::string> names;
    for (;;) {
      SAFEMODEL_ASSIGN_OR_RETURN(uint8_t p, r.Byte());
      if (p == kEnd) break;
      if (p == kMainStreamsInfo) {
        SAFEMODEL_RETURN_IF_ERROR(ReadStreamsInfo(r, &main));
      } else if (p == kFilesInfo) {
        SAFEMODEL_ASSIGN_OR_RETURN(names, ReadFileNames(r));
      } else if (p == kArchiveProperties || p == kAdditionalStreamsInfo) {
        return Status::Unsupported("7z: archive properties and additional streams are not read");
      } else {
        return Status::Malformed("7z: unexpected property " + Num(p) + " in the header");
      }
    }
    SAFEMODEL_ASSIGN_OR_RETURN(std::vector<std::string> streams,
                               UnpackStreams(image, main, memory_limit));
    std::vector<SevenZipMember> members;
    members.reserve(streams.size());
    for (size_t i = 0; i < streams.size(); ++i) {
      members.push_back({i < names.size() ? names[i] : "#" + Num(i), std::move(streams[i])});
    }
    return members;
  }
}

}  // namespace safemodel::loader
