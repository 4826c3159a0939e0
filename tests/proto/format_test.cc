// The .safemodel container: writer/reader round trip, determinism, and every
// validation rule of proto/FORMAT.md, each on a crafted file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <optional>

#include "proto/digest.h"
#include "proto/format.h"
#include "proto/tensor_table.h"
#include "proto/wire/wire.h"
#include "proto/writer.h"
#include "safemodel/limits.h"
#include "safemodel/reader.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

struct TensorSpec {
  std::string name;
  v1::DType dtype;
  std::vector<uint64_t> shape;
  std::string alias_of;
  std::optional<uint64_t> source_index;
};

// Deterministic contents for a tensor of n bytes.
std::string Pattern(uint64_t n, char seed) {
  std::string s(n, '\0');
  for (uint64_t i = 0; i < n; ++i) s[i] = static_cast<char>(static_cast<uint64_t>(seed) + 31 * i);
  return s;
}

v1::Header MakeHeader(const std::vector<TensorSpec>& specs) {
  v1::Header h;
  for (const auto& s : specs) {
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(s.name);
    t->set_dtype(s.dtype);
    for (uint64_t d : s.shape) t->add_shape(d);
    t->set_alias_of(s.alias_of);
    if (s.source_index.has_value()) t->set_source_index(*s.source_index);
  }
  Value arch = Value::Map();
  arch.Set("class_name", Value::String("Sequential"));
  Value layers = Value::List();
  Value layer = Value::Map();
  layer.Set("units", Value::Int(-7));
  layer.Set("rate", Value::Double(0.25));
  layer.Set("use_bias", Value::Bool(true));
  layer.Set("blob", Value::Bytes(std::string("\x00\xff", 2)));
  layer.Set("nothing", Value());
  layers.Append(std::move(layer));
  arch.Set("layers", std::move(layers));
  wire::ValueToProto(arch, h.mutable_architecture());
  h.mutable_provenance()->set_source_format("npz");
  h.mutable_provenance()->set_input_size(1234);
  h.mutable_provenance()->set_converter_version("safemodel test");
  return h;
}

// Writes a valid file with SafemodelWriter; returns its bytes.
std::string WriteValid(const std::vector<TensorSpec>& specs,
                       v1::DigestAlgorithm algo = v1::XXH3_128) {
  TempDir dir;
  std::string path = dir.File("m.safemodel");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  EXPECT_GE(fd, 0);
  v1::Header h = MakeHeader(specs);
  h.set_digest_algorithm(algo);
  auto w = SafemodelWriter::Begin(fd, h);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  char seed = 'a';
  while (!(*w)->complete()) {
    std::string bytes = Pattern((*w)->current_remaining(), seed++);
    // Feed in two pieces to exercise partial appends.
    size_t half = bytes.size() / 2;
    EXPECT_TRUE((*w)->Append(AsBytes(std::string_view(bytes).substr(0, half))).ok());
    EXPECT_TRUE((*w)->Append(AsBytes(std::string_view(bytes).substr(half))).ok());
  }
  EXPECT_TRUE((*w)->Finish(std::string(32, '\x5a')).ok());
  close(fd);
  return ReadFile(path);
}

const std::vector<TensorSpec> kSpecs = {
    {"a.bias", v1::F32, {3}, ""},
    {"b.big", v1::U8, {1 << 20}, ""},
    {"c.empty", v1::F64, {0, 5}, ""},
    {"d.scalar", v1::I64, {}, ""},
    {"e.tied", v1::F32, {3}, "a.bias"},
    {"f.half", v1::BF16, {2, 3}, ""},
};

Result<Model> FromBytes(const std::string& bytes) {
  return Model::FromBuffer(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

// Splits a valid file into its parts, so tests can alter one and reassemble.
struct Parts {
  v1::Header header;
  std::string data;
  v1::Trailer trailer;
};

Parts Split(const std::string& file) {
  auto p = format::DecodePrefix(AsBytes(file), file.size());
  EXPECT_TRUE(p.ok());
  Parts parts;
  EXPECT_TRUE(parts.header.ParseFromString(file.substr(64, p->header_len)));
  parts.data = file.substr(p->data_off, p->data_len);
  EXPECT_TRUE(parts.trailer.ParseFromString(file.substr(p->trailer_off, p->trailer_len)));
  return parts;
}

// Reassembles without any validation (the prefix is made consistent).
std::string Assemble(const Parts& parts, uint16_t minor = format::kMinorVersion) {
  std::string header = wire::SerializeDeterministic(parts.header);
  std::string trailer = wire::SerializeDeterministic(parts.trailer);
  format::Prefix p;
  p.minor = minor;
  p.header_len = header.size();
  p.data_off = *format::DataOffsetFor(p.header_len);
  p.data_len = parts.data.size();
  p.trailer_off = p.data_off + p.data_len;
  p.trailer_len = trailer.size();
  uint8_t prefix[64];
  format::EncodePrefix(p, prefix);
  std::string out(reinterpret_cast<char*>(prefix), 64);
  out += header;
  out.resize(p.data_off, '\0');
  return out + parts.data + trailer;
}

void ExpectRejected(const std::string& file, StatusCode code, const std::string& part) {
  auto m = FromBytes(file);
  ASSERT_FALSE(m.ok()) << "expected: " << part;
  EXPECT_EQ(m.status().code(), code) << m.status().ToString();
  EXPECT_NE(m.status().message().find(part), std::string::npos) << m.status().ToString();
}

TEST(Format, RoundTripsTensorsValuesAndProvenance) {
  const std::string file = WriteValid(kSpecs);
  auto m = FromBytes(file);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format_major(), 1u);
  ASSERT_EQ(m->tensors().size(), kSpecs.size());
  char seed = 'a';
  for (const TensorInfo& t : m->tensors()) {
    if (!t.alias_of.empty()) continue;
    auto data = m->Data(t);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(data.data()), data.size()),
              Pattern(t.nbytes, seed))
        << t.name;
    if (t.nbytes > 0) ++seed;
    EXPECT_EQ(t.offset % (t.nbytes >= (1 << 20) ? 4096 : 64), 0u) << t.name;
  }
  const TensorInfo* tied = m->Find("e.tied");
  ASSERT_NE(tied, nullptr);
  EXPECT_EQ(tied->alias_of, "a.bias");
  EXPECT_EQ(tied->offset, m->Find("a.bias")->offset);
  EXPECT_EQ(m->Find("d.scalar")->nbytes, 8u);
  EXPECT_EQ(m->Find("c.empty")->nbytes, 0u);
  EXPECT_EQ(m->Find("nope"), nullptr);
  EXPECT_EQ(m->architecture(), *wire::ValueFromProto(MakeHeader(kSpecs).architecture(), "a"));
  EXPECT_EQ(m->provenance().source_format, "npz");
  std::string want_sha;
  for (int i = 0; i < 32; ++i) want_sha += "5a";  // WriteValid's stand-in input digest
  EXPECT_EQ(m->provenance().input_sha256, want_sha);
  EXPECT_TRUE(m->Verify().ok());
  EXPECT_TRUE(m->VerifyTensor("b.big").ok());
}

TEST(Format, WriterIsDeterministicAndSupportsSha256) {
  EXPECT_EQ(WriteValid(kSpecs), WriteValid(kSpecs));
  const std::string sha = WriteValid(kSpecs, v1::SHA256);
  auto m = FromBytes(sha);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->digest_algorithm(), DigestAlgorithm::kSha256);
  const TensorInfo* t = m->Find("a.bias");
  auto d = m->Data(*t);
  EXPECT_EQ(t->digest, Sha256(ByteView(reinterpret_cast<const uint8_t*>(d.data()), d.size())));
  EXPECT_TRUE(m->Verify().ok());
}

TEST(Format, WriterRefusesBytesATensorDoesNotNeed) {
  TempDir dir;
  int fd = open(dir.File("x").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  auto w = SafemodelWriter::Begin(fd, MakeHeader({{"a", v1::F32, {2}, ""}}));
  ASSERT_TRUE(w.ok());
  EXPECT_FALSE((*w)->Append(AsBytes(std::string(9, 'x'))).ok());
  EXPECT_FALSE((*w)->Finish(std::string(32, '\0')).ok()) << "incomplete tensor";
  EXPECT_TRUE((*w)->Append(AsBytes(std::string(8, 'x'))).ok());
  EXPECT_FALSE((*w)->Append(AsBytes(std::string(1, 'x'))).ok()) << "after the last tensor";
  EXPECT_TRUE((*w)->Finish(std::string(32, '\0')).ok());
  close(fd);
}

// Small appends are gathered in the writer's buffer: 5,000 small tensors
// (with their padding), a large one among them, appended in pieces of a few
// bytes, must land where the layout puts them, with their digests.
TEST(Format, WriterGathersManySmallAppendsIntoTheRightPlaces) {
  std::vector<TensorSpec> specs;
  for (int i = 0; i < 5000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "t%05d", i);
    const uint64_t n = i == 2500 ? (1u << 18) : static_cast<uint64_t>(i % 17);
    specs.push_back({name, v1::U8, {n}, ""});
  }
  TempDir dir;
  const std::string path = dir.File("m.safemodel");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  auto w = SafemodelWriter::Begin(fd, MakeHeader(specs));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::vector<std::string> contents;
  while (!(*w)->complete()) {
    const std::string bytes = Pattern((*w)->current_remaining(), static_cast<char>(contents.size()));
    for (size_t at = 0; at < bytes.size(); at += 5) {
      ASSERT_TRUE((*w)->Append(AsBytes(std::string_view(bytes).substr(at, 5))).ok());
    }
    contents.push_back(bytes);
  }
  ASSERT_TRUE((*w)->Finish(std::string(32, '\x5a')).ok());
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), (*w)->file_size()) << "every buffered byte is in the file";
  close(fd);
  const std::string file = ReadFile(path);  // the model views these bytes
  auto m = FromBytes(file);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->Verify().ok());
  size_t k = 0;
  for (const TensorSpec& spec : specs) {
    if (spec.shape[0] == 0) continue;
    const TensorInfo* t = m->Find(spec.name);
    ASSERT_NE(t, nullptr);
    auto d = m->Data(*t);
    ASSERT_EQ(std::string(reinterpret_cast<const char*>(d.data()), d.size()), contents[k]) << spec.name;
    ++k;
  }
  EXPECT_EQ(k, contents.size());
}

// Plan writes nothing (the pipeline reserves planned_file_size() first) and
// knows the size and count already; WriteHeader streams the header once;
// tensor bytes and Finish need it first. Plan + WriteHeader is Begin.
TEST(Format, PlanWritesNothingAndWriteHeaderStreamsItOnce) {
  TempDir dir;
  const std::string path = dir.File("m.safemodel");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  auto w = SafemodelWriter::Plan(fd, MakeHeader(kSpecs));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ((*w)->tensor_count(), kSpecs.size());
  EXPECT_GT((*w)->planned_file_size(), uint64_t{1} << 20);
  EXPECT_EQ((*w)->Append(AsBytes(std::string(4, 'x'))).code(), StatusCode::kInternal);
  EXPECT_EQ((*w)->Finish(std::string(32, '\x5a')).code(), StatusCode::kInternal);
  ASSERT_TRUE((*w)->WriteHeader().ok());
  EXPECT_EQ((*w)->WriteHeader().code(), StatusCode::kInternal) << "twice";
  char seed = 'a';
  while (!(*w)->complete()) {
    const std::string bytes = Pattern((*w)->current_remaining(), seed++);
    const size_t half = bytes.size() / 2;
    ASSERT_TRUE((*w)->Append(AsBytes(std::string_view(bytes).substr(0, half))).ok());
    ASSERT_TRUE((*w)->Append(AsBytes(std::string_view(bytes).substr(half))).ok());
  }
  ASSERT_TRUE((*w)->Finish(std::string(32, '\x5a')).ok());
  EXPECT_LE((*w)->file_size(), (*w)->planned_file_size());
  close(fd);
  EXPECT_EQ(ReadFile(path), WriteValid(kSpecs));
}

TEST(Format, RejectsBadPrefixes) {
  const std::string file = WriteValid(kSpecs);
  std::string bad = file;
  bad[1] = 'X';
  ExpectRejected(bad, StatusCode::kMalformed, "bad magic");
  ExpectRejected("version https://git-lfs.github.com/spec/v1\noid sha256:" + std::string(64, 'a'),
                 StatusCode::kMalformed, "Git LFS");
  bad = file;
  bad[8] = 2;  // major 2
  ExpectRejected(bad, StatusCode::kUnsupported, "major version 2");
  bad = file;
  bad[12] = 1;  // flags
  ExpectRejected(bad, StatusCode::kUnsupported, "flags");
  bad = file;
  bad[16] = 65;  // header_off
  ExpectRejected(bad, StatusCode::kMalformed, "header_off");
  bad = file;
  bad[31] = 0x7f;  // header_len huge
  ExpectRejected(bad, StatusCode::kLimitExceeded, "header_len");
  bad = file;
  bad[33] ^= 0x20;  // data_off not canonical
  ExpectRejected(bad, StatusCode::kMalformed, "data_off");
  bad = file;
  bad[48] ^= 1;  // trailer_off
  ExpectRejected(bad, StatusCode::kMalformed, "trailer_off");
  ExpectRejected(file.substr(0, 40), StatusCode::kMalformed, "shorter than the 64-byte");
}

TEST(Format, CapsTrailerLenAt128MiB) {
  const std::string file = WriteValid(kSpecs);
  auto prefix = format::DecodePrefix(AsBytes(file), file.size());
  ASSERT_TRUE(prefix.ok());
  auto with_trailer_len = [&](uint64_t trailer_len) {
    format::Prefix p = *prefix;
    p.trailer_len = trailer_len;
    uint8_t bytes[64];
    format::EncodePrefix(p, bytes);
    return std::string(reinterpret_cast<char*>(bytes), 64) + file.substr(64);
  };
  // Over the cap: refused as a limit before the length is compared with the
  // file size (a reader must not trust it enough to map or parse that much).
  ExpectRejected(with_trailer_len(kMaxTrailerBytes + 1), StatusCode::kLimitExceeded,
                 "trailer_len 134217729 exceeds the limit of 134217728");
  // At the cap the length is allowed; this file is then merely truncated.
  ExpectRejected(with_trailer_len(kMaxTrailerBytes), StatusCode::kMalformed, "truncated");
}

TEST(Format, RejectsTruncationAndTrailingBytes) {
  const std::string file = WriteValid(kSpecs);
  ExpectRejected(file.substr(0, file.size() - 1), StatusCode::kMalformed, "truncated");
  ExpectRejected(file + "polyglot", StatusCode::kMalformed, "trailing bytes");
}

TEST(Format, RejectsUnsortedDuplicateAndBadNames) {
  Parts parts = Split(WriteValid(kSpecs));
  auto with_name = [&](int index, const std::string& name) {
    Parts p = parts;
    p.header.mutable_tensors(index)->set_name(name);
    return Assemble(p);
  };
  ExpectRejected(with_name(1, "a.bias"), StatusCode::kMalformed, "sorted and unique");
  ExpectRejected(with_name(0, "z"), StatusCode::kMalformed, "sorted and unique");
  ExpectRejected(with_name(0, ""), StatusCode::kMalformed, "name length");
  ExpectRejected(with_name(0, std::string("a\0b", 3)), StatusCode::kMalformed, "NUL-free");
  ExpectRejected(with_name(0, std::string(kMaxNameBytes + 1, 'a')), StatusCode::kMalformed,
                 "name length");
}

std::vector<std::string> SourceOrderNames(const Model& m) {
  std::vector<std::string> out;
  for (const TensorInfo* t : m.tensors_in_source_order()) out.push_back(t->name);
  return out;
}

TEST(Format, RecordsTheSourceOrderDeterministically) {
  std::vector<TensorSpec> specs = kSpecs;
  const uint64_t order[] = {3, 5, 0, 4, 1, 2};
  for (size_t i = 0; i < specs.size(); ++i) specs[i].source_index = order[i];
  const std::string file = WriteValid(specs);
  EXPECT_EQ(file, WriteValid(specs));
  auto m = FromBytes(file);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format_minor(), 1u);
  EXPECT_TRUE(m->has_source_order());
  EXPECT_EQ(SourceOrderNames(*m), (std::vector<std::string>{"c.empty", "e.tied", "f.half",
                                                            "a.bias", "d.scalar", "b.big"}));
  EXPECT_EQ(m->Find("b.big")->source_index, std::optional<uint64_t>(5));
  EXPECT_TRUE(m->Verify().ok());
}

TEST(Format, AFileWithoutTheOrderOpensInNameOrder) {
  // A 1.0 file as version 1.0 wrote it: no source_index, minor 0.
  Parts p = Split(WriteValid(kSpecs));
  p.header.set_format_minor(0);
  auto m = FromBytes(Assemble(p, 0));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->format_minor(), 0u);
  EXPECT_FALSE(m->has_source_order());
  std::vector<std::string> names;
  for (const TensorInfo& t : m->tensors()) {
    names.push_back(t.name);
    EXPECT_FALSE(t.source_index.has_value());
  }
  EXPECT_EQ(SourceOrderNames(*m), names);
}

TEST(Format, RejectsSourceIndicesThatAreNotAPermutation) {
  Parts parts = Split(WriteValid(kSpecs));
  auto with = [&](std::vector<std::optional<uint64_t>> indices) {
    Parts p = parts;
    for (size_t i = 0; i < indices.size(); ++i) {
      if (!indices[i].has_value()) continue;
      p.header.mutable_tensors(static_cast<int>(i))->set_source_index(*indices[i]);
    }
    return Assemble(p);
  };
  ASSERT_TRUE(FromBytes(with({5, 4, 3, 2, 1, 0})).ok());  // the crafting itself is sound
  ExpectRejected(with({5, 4, 3, 2, 1, 1}), StatusCode::kMalformed, "source_index 1 is used twice");
  ExpectRejected(with({0, 1, 2, 3, 4, 6}), StatusCode::kMalformed,
                 "source_index 6 is not below the tensor count 6");
  ExpectRejected(with({0, 1, 2, 3, 4, std::nullopt}), StatusCode::kMalformed,
                 "has no source_index but the first tensor has one");
  ExpectRejected(with({std::nullopt, 1, 2, 3, 4, 0}), StatusCode::kMalformed,
                 "has a source_index but the first tensor has none");
  ExpectRejected(with({UINT64_MAX, 1, 2, 3, 4, 0}), StatusCode::kMalformed,
                 "is not below the tensor count");
}

TEST(Format, RejectsBadDtypesRanksAndSizes) {
  Parts parts = Split(WriteValid(kSpecs));
  Parts p = parts;
  p.header.mutable_tensors(0)->set_dtype(static_cast<v1::DType>(99));
  ExpectRejected(Assemble(p), StatusCode::kUnsupported, "unknown dtype");
  p = parts;  // DTYPE_INVALID: the proto3 default, i.e. a dtype that was never set
  p.header.mutable_tensors(0)->set_dtype(v1::DTYPE_INVALID);
  ExpectRejected(Assemble(p), StatusCode::kUnsupported, "unknown dtype value 0");
  p = parts;  // one past the last known dtype
  p.header.mutable_tensors(0)->set_dtype(static_cast<v1::DType>(kMaxDType + 1));
  ExpectRejected(Assemble(p), StatusCode::kUnsupported,
                 "unknown dtype value " + std::to_string(kMaxDType + 1));
  p = parts;
  for (uint32_t i = 0; i < kMaxRank; ++i) p.header.mutable_tensors(0)->add_shape(1);
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "rank");
  p = parts;
  p.header.mutable_tensors(0)->set_nbytes(13);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "nbytes");
  p = parts;  // a shape whose byte size overflows 64 bits
  p.header.mutable_tensors(0)->clear_shape();
  p.header.mutable_tensors(0)->add_shape(1ull << 40);
  p.header.mutable_tensors(0)->add_shape(1ull << 40);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "overflows");
}

TEST(Format, RejectsOverlapsHolesAndMisalignment) {
  Parts parts = Split(WriteValid(kSpecs));
  // b.big starts on a page after a.bias; move it onto a.bias (overlap).
  Parts p = parts;
  p.header.mutable_tensors(1)->set_offset(parts.header.tensors(0).offset());
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "canonical offset");
  p = parts;  // a hole: one page further
  p.header.mutable_tensors(1)->set_offset(parts.header.tensors(1).offset() + 4096);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "canonical offset");
  p = parts;  // misaligned by 8
  p.header.mutable_tensors(3)->set_offset(parts.header.tensors(3).offset() + 8);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "canonical offset");
  p = parts;  // data region longer than the layout
  p.data += std::string(64, '\0');
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "data_len");
}

TEST(Format, RejectsBadAliases) {
  Parts parts = Split(WriteValid(kSpecs));
  Parts p = parts;
  p.header.mutable_tensors(4)->set_alias_of("missing");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "names no tensor");
  p = parts;
  p.header.mutable_tensors(4)->set_alias_of("f.half");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "differs in dtype or shape");
  p = parts;
  p.header.mutable_tensors(4)->set_offset(64);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "offset 0 and nbytes 0");
  p = parts;  // alias of an alias
  p.header.mutable_tensors(3)->set_alias_of("e.tied");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "");
}

TEST(Format, LaysOutModelsFarBeyondFourGigabytes) {
  // A 100 GB model: 50 tensors of 2 GB. Offsets are 64-bit; no tensor byte
  // is ever inside a protobuf message, so nothing caps the size at 2 GiB.
  v1::Header h;
  char name[16];
  for (int i = 0; i < 50; ++i) {
    std::snprintf(name, sizeof name, "layer%02d", i);
    v1::TensorInfo* t = h.add_tensors();
    t->set_name(name);
    t->set_dtype(v1::BF16);
    t->add_shape(1000);
    t->add_shape(1'000'000);
  }
  format::TensorTable table;
  for (const v1::TensorInfo& t : h.tensors()) table.Add(t);
  auto data_len = table.Layout();
  ASSERT_TRUE(data_len.ok()) << data_len.status().ToString();
  uint64_t end = 0;
  for (int i = 0; i < h.tensors_size(); ++i) {
    v1::TensorInfo* t = h.mutable_tensors(i);
    t->set_nbytes(table.nbytes(static_cast<uint64_t>(i)));
    t->set_offset(format::TensorTable::NextOffset(end, t->nbytes()));
    end = t->offset() + t->nbytes();
  }
  EXPECT_EQ(*data_len, 50ull * 2'000'000'000ull + 49ull * (4096 - 2'000'000'000ull % 4096));
  EXPECT_GT(h.tensors(49).offset(), 1ull << 36);
  EXPECT_EQ(h.tensors(49).offset() % 4096, 0u);
  // The reader accepts the same table (it checks offsets against the layout).
  auto checked = format::CheckTensorLayout(h.tensors());
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(*checked, *data_len);
}

TEST(Format, RejectsHugeCountsBeforeAllocating) {
  Parts p = Split(WriteValid({{"a", v1::F32, {1}, ""}}));
  p.header.clear_tensors();
  p.trailer.clear_tensor_digests();
  char name[16];
  for (uint64_t i = 0; i <= kMaxTensorCount; ++i) {
    std::snprintf(name, sizeof name, "t%08llu", static_cast<unsigned long long>(i));
    v1::TensorInfo* t = p.header.add_tensors();
    t->set_name(name);
    t->set_dtype(v1::U8);
  }
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "tensors exceed");
}

TEST(Format, RejectsDeepOrInconsistentValues) {
  Parts parts = Split(WriteValid(kSpecs));
  Parts p = parts;
  v1::Value* v = p.header.mutable_architecture();
  v->Clear();
  for (uint32_t i = 0; i < kMaxValueDepth + 1; ++i) v = v->mutable_list_value()->add_items();
  v->set_int_value(1);
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "architecture");
  p = parts;
  v1::MapValue* map = p.header.mutable_metadata()->mutable_map_value();
  map->add_entries()->set_key("k");
  map->add_entries()->set_key("k");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "duplicate key");
}

TEST(Format, RejectsValueTreesOverTheNodeCap) {
  // A flat list (depth 2, far under the depth cap) of kMaxValueNodes items:
  // with the list itself, one node over kMaxValueNodes. ValueFromProto must
  // stop while building the tree; CheckValue, run on the finished tree, has a
  // different message ("has more than"), so the message tells which caught it.
  Parts p = Split(WriteValid(kSpecs));
  v1::ListValue* list = p.header.mutable_architecture()->mutable_list_value();
  list->Clear();
  list->mutable_items()->Reserve(static_cast<int>(kMaxValueNodes));
  for (uint64_t i = 0; i < kMaxValueNodes; ++i) list->add_items()->set_int_value(1);
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded,
                 "architecture exceeds the node or depth limit");
  // One node fewer is accepted: the cap is exactly kMaxValueNodes.
  list->mutable_items()->RemoveLast();
  const std::string at_cap = Assemble(p);
  auto m = FromBytes(at_cap);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->architecture().list().size(), kMaxValueNodes - 1);
}

TEST(Format, RejectsInconsistentTrailers) {
  Parts parts = Split(WriteValid(kSpecs));
  Parts p = parts;
  p.trailer.mutable_tensor_digests()->RemoveLast();
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "digests for");
  p = parts;
  p.trailer.set_tensor_digests(0, "short");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "digest of 5 bytes");
  p = parts;
  p.trailer.set_digest_algorithm(v1::SHA256);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "algorithm");
  p = parts;
  p.header.mutable_provenance()->set_input_sha256("abc");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "input_sha256");
}

TEST(Format, RejectsHeaderVersionsThatDifferFromThePrefix) {
  Parts parts = Split(WriteValid(kSpecs));
  ASSERT_EQ(parts.header.format_major(), 1u);
  ASSERT_EQ(parts.header.format_minor(), 1u);
  Parts p = parts;  // the prefix says 1.1 (Assemble), the header 1.2
  p.header.set_format_minor(2);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "header version differs from the prefix");
  p = parts;
  p.header.set_format_major(2);
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "header version differs from the prefix");
}

TEST(Format, RejectsUnknownDigestAlgorithms) {
  Parts parts = Split(WriteValid(kSpecs));
  // Header and trailer agree, and the digests have XXH3's 16 bytes, so only
  // the rule on known algorithms stands between these files and a reader.
  for (int algo : {0, 3, 7}) {
    Parts p = parts;
    p.header.set_digest_algorithm(static_cast<v1::DigestAlgorithm>(algo));
    p.trailer.set_digest_algorithm(static_cast<v1::DigestAlgorithm>(algo));
    ExpectRejected(Assemble(p), StatusCode::kUnsupported,
                   "unknown digest algorithm " + std::to_string(algo));
  }
}

TEST(Format, RejectsHeaderDigestsOfTheWrongSize) {
  Parts parts = Split(WriteValid(kSpecs));
  ASSERT_EQ(parts.trailer.header_digest().size(), 16u);
  Parts p = parts;
  p.trailer.set_header_digest(std::string(15, '\x11'));
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "bad header digest size");
  p = parts;
  p.trailer.clear_header_digest();
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "bad header digest size");
  p = parts;  // SHA-256's size in an XXH3 file
  p.trailer.set_header_digest(std::string(32, '\x11'));
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "bad header digest size");
  Parts sha = Split(WriteValid(kSpecs, v1::SHA256));
  ASSERT_EQ(sha.trailer.header_digest().size(), 32u);
  sha.trailer.set_header_digest(std::string(16, '\x11'));
  ExpectRejected(Assemble(sha), StatusCode::kMalformed, "bad header digest size");
}

v1::Finding MakeFinding(const std::string& severity) {
  v1::Finding f;
  f.set_severity(severity);
  f.set_rule("keras.lambda");
  f.set_location("model_config/layers[3]");
  f.set_message("dropped");
  f.add_references("os.system");
  return f;
}


// Every text field of a Finding, by the name the reader's errors use, with a
// setter (a finding made by MakeFinding has one reference).
using FindingTextSetter = void (*)(v1::Finding*, const std::string&);
const std::vector<std::pair<std::string, FindingTextSetter>>& FindingTextFields() {
  static const std::vector<std::pair<std::string, FindingTextSetter>> fields = {
      {"finding rule", [](v1::Finding* f, const std::string& s) { f->set_rule(s); }},
      {"finding location", [](v1::Finding* f, const std::string& s) { f->set_location(s); }},
      {"finding message", [](v1::Finding* f, const std::string& s) { f->set_message(s); }},
      {"finding reference", [](v1::Finding* f, const std::string& s) { f->set_references(0, s); }},
  };
  return fields;
}

TEST(Format, RejectsMalformedFindings) {
  Parts parts = Split(WriteValid(kSpecs));
  v1::Provenance* prov = parts.header.mutable_provenance();
  for (const char* severity : {"refused", "dropped", "note"}) {
    *prov->add_findings() = MakeFinding(severity);
  }
  {
    const std::string ok_file = Assemble(parts);
    auto m = FromBytes(ok_file);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    ASSERT_EQ(m->provenance().findings.size(), 3u);
  }
  Parts p = parts;
  *p.header.mutable_provenance()->add_findings() = MakeFinding("fatal");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "unknown severity 'fatal'");
  p = parts;
  *p.header.mutable_provenance()->add_findings() = MakeFinding("");
  ExpectRejected(Assemble(p), StatusCode::kMalformed, "unknown severity ''");

  // Every text field is capped at 64 KiB (exactly 64 KiB is allowed).
  const std::string at_cap(wire::kMaxFindingTextBytes, 'x');
  const std::string over_cap(wire::kMaxFindingTextBytes + 1, 'x');
  const auto& fields = FindingTextFields();
  for (const auto& [what, set] : fields) {
    p = parts;
    set(p.header.mutable_provenance()->mutable_findings(1), at_cap);
    const std::string ok_file = Assemble(p);
    EXPECT_TRUE(FromBytes(ok_file).ok()) << what;
    set(p.header.mutable_provenance()->mutable_findings(1), over_cap);
    ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, what + " is longer than 65536 bytes");
  }
  p = parts;
  for (uint64_t i = 0; i < wire::kMaxFindings; ++i) {
    p.header.mutable_provenance()->mutable_findings(0)->add_references("r");
  }
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "too many references");
}

TEST(Format, CapsFindingsAt10000) {
  Parts p = Split(WriteValid(kSpecs));
  auto* findings = p.header.mutable_provenance()->mutable_findings();
  for (uint64_t i = 0; i < wire::kMaxFindings; ++i) *findings->Add() = MakeFinding("note");
  {
    const std::string at_cap = Assemble(p);
    auto m = FromBytes(at_cap);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->provenance().findings.size(), wire::kMaxFindings);
  }
  *findings->Add() = MakeFinding("note");
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "10001 findings exceed the limit of 10000");
}

TEST(Format, RejectsMalformedOptions) {
  Parts parts = Split(WriteValid(kSpecs));
  Parts p = parts;
  auto* options = p.header.mutable_provenance()->mutable_options();
  for (uint64_t i = 0; i < wire::kMaxOptions; ++i) options->Add("--opt" + std::to_string(i));
  {
    const std::string at_cap = Assemble(p);
    auto m = FromBytes(at_cap);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->provenance().options.size(), wire::kMaxOptions);
  }
  options->Add("--one-too-many");
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "too many options");
  p = parts;
  p.header.mutable_provenance()->add_options(std::string(wire::kMaxFindingTextBytes + 1, 'o'));
  ExpectRejected(Assemble(p), StatusCode::kLimitExceeded, "option is longer than 65536 bytes");
}

TEST(Format, FindingAndOptionTextMustBeUtf8) {
  // proto3 parsing already refuses non-UTF-8 in these string fields, so the
  // reader's own check is reached only through the function itself (the
  // parent also runs it on the worker's proposal).
  const std::string bad("ok\xff\xfe", 4);
  v1::Provenance prov;
  *prov.add_findings() = MakeFinding("note");
  EXPECT_TRUE(wire::CheckFindings(prov.findings()).ok());
  const auto& fields = FindingTextFields();
  for (const auto& [what, set] : fields) {
    v1::Provenance copy = prov;
    set(copy.mutable_findings(0), bad);
    Status s = wire::CheckFindings(copy.findings());
    EXPECT_EQ(s.code(), StatusCode::kMalformed) << what << ": " << s.ToString();
    EXPECT_NE(s.message().find(what + " is not valid UTF-8"), std::string::npos) << s.ToString();
  }
  prov.add_options("--digest sha256");
  EXPECT_TRUE(wire::CheckOptions(prov.options()).ok());
  prov.add_options(bad);
  Status s = wire::CheckOptions(prov.options());
  EXPECT_EQ(s.code(), StatusCode::kMalformed) << s.ToString();
  EXPECT_NE(s.message().find("option is not valid UTF-8"), std::string::npos) << s.ToString();
}

TEST(Format, RejectsNonUtf8ProvenanceText) {
  // proto3 parsing refuses non-UTF-8 in string fields before the reader's own
  // "provenance text is not valid UTF-8" check runs (protobuf logs an error
  // here), so that check cannot be reached through a file with this protobuf.
  // This pins the outcome: should the fields ever become `bytes`, the
  // reader's check must take over.
  const std::string bad("np\xff", 3);
  Parts parts = Split(WriteValid(kSpecs));
  for (int field = 0; field < 2; ++field) {
    Parts p = parts;
    if (field == 0) p.header.mutable_provenance()->set_source_format(bad);
    if (field == 1) p.header.mutable_provenance()->set_converter_version(bad);
    auto m = FromBytes(Assemble(p));
    ASSERT_FALSE(m.ok()) << "field " << field;
    EXPECT_EQ(m.status().code(), StatusCode::kMalformed) << m.status().ToString();
    const std::string& msg = m.status().message();
    EXPECT_TRUE(msg.find("not a valid protobuf Header message") != std::string::npos ||
                msg.find("provenance text is not valid UTF-8") != std::string::npos)
        << m.status().ToString();
  }
}

// Redirects this process's standard error to a file while it lives.
class StderrCapture {
 public:
  StderrCapture() : path_(dir_.File("stderr")) {
    std::fflush(stderr);
    file_ = open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    saved_ = dup(STDERR_FILENO);
    dup2(file_, STDERR_FILENO);
  }
  ~StderrCapture() { Release(); }
  // Restores standard error and returns what was written to it.
  std::string Release() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      dup2(saved_, STDERR_FILENO);
      close(saved_);
      close(file_);
      saved_ = -1;
    }
    return ReadFile(path_);
  }

 private:
  TempDir dir_;
  std::string path_;
  int file_ = -1;
  int saved_ = -1;
};

// Text is `bytes` in the schema, checked as UTF-8 by the reader: a file with
// non-UTF-8 text anywhere is refused as a whole, and a library host hears
// nothing from protobuf about it (a `string` field made protobuf log an
// error line on the host's standard error for each such file).
TEST(Format, NonUtf8TextIsRefusedWithoutAWordOnStderr) {
  const std::string bad("x\xc0\xaf", 3);  // an overlong '/'
  const Parts parts = Split(WriteValid(kSpecs));
  using Edit = void (*)(v1::Header*, const std::string&);
  const std::vector<std::pair<std::string, Edit>> edits = {
      {"tensor name", [](v1::Header* h, const std::string& b) { h->mutable_tensors(0)->set_name(b); }},
      {"alias_of", [](v1::Header* h, const std::string& b) { h->mutable_tensors(4)->set_alias_of(b); }},
      {"string value",
       [](v1::Header* h, const std::string& b) { h->mutable_architecture()->set_string_value(b); }},
      {"map key",
       [](v1::Header* h, const std::string& b) {
         v1::MapEntry* e = h->mutable_metadata()->mutable_map_value()->add_entries();
         e->set_key(b);
         e->mutable_value()->set_null_value(true);
       }},
      {"finding rule",
       [](v1::Header* h, const std::string& b) {
         v1::Finding* f = h->mutable_provenance()->add_findings();
         *f = MakeFinding("note");
         f->set_rule(b);
       }},
      {"source format",
       [](v1::Header* h, const std::string& b) { h->mutable_provenance()->set_source_format(b); }},
      {"option", [](v1::Header* h, const std::string& b) { h->mutable_provenance()->add_options(b); }},
  };
  for (const auto& [what, edit] : edits) {
    Parts p = parts;
    edit(&p.header, bad);
    const std::string file = Assemble(p);
    StderrCapture capture;
    auto m = FromBytes(file);
    const std::string said = capture.Release();
    ASSERT_FALSE(m.ok()) << what;
    EXPECT_EQ(m.status().code(), StatusCode::kMalformed) << what << ": " << m.status().ToString();
    EXPECT_NE(m.status().message().find("not a valid protobuf Header message"), std::string::npos)
        << what << ": " << m.status().ToString();
    EXPECT_EQ(said, "") << what;
  }
  // Binary fields are not text: non-UTF-8 bytes in a bytes value are data.
  Parts p = parts;
  p.header.mutable_metadata()->set_bytes_value(bad);
  auto m = FromBytes(Assemble(p));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->metadata().kind(), Value::Kind::kBytes);
  EXPECT_EQ(m->metadata().string_value(), bad);
}

// A bool is one byte, 0 or 1 (FORMAT.md). The writer (the parent, fed by a
// worker it does not trust) refuses anything else, and Verify catches a file
// that holds it with consistent digests.
TEST(Format, BoolBytesAreZeroOrOne) {
  TempDir dir;
  int fd = open(dir.File("b.safemodel").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  auto w = SafemodelWriter::Begin(fd, MakeHeader({{"flags", v1::BOOL, {3}, ""}}));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  Status s = (*w)->Append(AsBytes(std::string_view("\x01\x00\x02", 3)));
  close(fd);
  EXPECT_EQ(s.code(), StatusCode::kMalformed) << s.ToString();
  EXPECT_NE(s.message().find("a bool byte is 2"), std::string::npos) << s.ToString();

  // The same bytes as u8 are fine; relabelled bool with every digest
  // recomputed, the file opens (O(header)) and Verify refuses it.
  const std::string file = WriteValid({{"flags", v1::U8, {3}, ""}});
  Parts parts = Split(file);
  auto m = FromBytes(file);
  ASSERT_TRUE(m.ok());
  const uint64_t off = m->Find("flags")->offset;  // in the file
  const std::string_view bad("\x01\x00\x02", 3);
  const uint64_t data_off = format::DecodePrefix(AsBytes(file), file.size())->data_off;
  parts.data.replace(off - data_off, 3, bad);
  parts.header.mutable_tensors(0)->set_dtype(v1::BOOL);
  parts.trailer.set_tensor_digests(0, Digest(DigestAlgorithm::kXxh3_128, AsBytes(bad)));
  std::string relabelled = Assemble(parts);
  const uint64_t header_end = 64 + wire::SerializeDeterministic(parts.header).size();
  parts.trailer.set_header_digest(Digest(
      DigestAlgorithm::kXxh3_128, AsBytes(std::string_view(relabelled).substr(0, header_end))));
  relabelled = Assemble(parts);
  auto bm = FromBytes(relabelled);
  ASSERT_TRUE(bm.ok()) << bm.status().ToString();
  Status v = bm->Verify();
  EXPECT_EQ(v.code(), StatusCode::kMalformed) << v.ToString();
  EXPECT_NE(v.message().find("bool element 2 is 2"), std::string::npos) << v.ToString();
  EXPECT_FALSE(bm->VerifyTensor("flags").ok());
}

TEST(Format, VerifyCatchesCorruptedDataPaddingAndHeader) {
  const std::string file = WriteValid(kSpecs);
  auto m = FromBytes(file);
  ASSERT_TRUE(m.ok());
  const uint64_t off = m->Find("f.half")->offset;
  std::string flipped = file;
  flipped[off] ^= 1;
  auto fm = FromBytes(flipped);
  ASSERT_TRUE(fm.ok()) << "Open is O(header): it does not read tensor bytes";
  Status s = fm->Verify();
  EXPECT_EQ(s.code(), StatusCode::kMalformed);
  EXPECT_NE(s.message().find("f.half"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fm->VerifyTensor("f.half").ok());
  EXPECT_TRUE(fm->VerifyTensor("a.bias").ok());

  std::string padded = file;
  padded[m->Find("a.bias")->offset + 12 + 1] = 'p';  // the gap after a.bias
  auto pm = FromBytes(padded);
  ASSERT_TRUE(pm.ok());
  EXPECT_NE(pm->Verify().message().find("padding"), std::string::npos);

  // Header padding is checked at open; a changed header byte by Verify.
  Parts parts = Split(file);
  std::string hp = file;
  hp[64 + wire::SerializeDeterministic(parts.header).size()] = 'x';
  ExpectRejected(hp, StatusCode::kMalformed, "padding");
  parts.header.mutable_provenance()->set_input_size(999);
  const std::string changed_header = Assemble(parts);  // must outlive the Model
  auto hm = FromBytes(changed_header);
  ASSERT_TRUE(hm.ok());
  EXPECT_NE(hm->Verify().message().find("header digest"), std::string::npos);
}

TEST(Format, OpenMapsFilesAndReportsMissingOnes) {
  TempDir dir;
  WriteFile(dir.File("m.safemodel"), WriteValid(kSpecs));
  auto m = Model::Open(dir.File("m.safemodel"));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->Verify().ok());
  EXPECT_EQ(Model::Open(dir.File("missing")).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Model::Open(dir.path()).status().code(), StatusCode::kInvalidArgument);
}


// The independent reader in tests/tools/safemodel_reader.py was written from
// proto/FORMAT.md alone. It must accept what we write, agree on every tensor,
// and reject what the C++ reader rejects.
class SpecReader : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PythonHas({"json"})) GTEST_SKIP() << "needs /usr/bin/python3";
  }
  static int Read(const std::string& bytes, std::string* out) {
    static int counter = 0;
    TempDir dir;
    std::string path = dir.File("f" + std::to_string(counter++) + ".safemodel");
    WriteFile(path, bytes);
    return RunPython(std::string(SAFEMODEL_SOURCE_DIR) + "/tests/tools/safemodel_reader.py", {path},
                     out);
  }
};

TEST_F(SpecReader, AgreesWithTheCppReaderOnEveryTensor) {
  for (auto algo : {v1::XXH3_128, v1::SHA256}) {
    const std::string file = WriteValid(kSpecs, algo);
    std::string out;
    ASSERT_EQ(Read(file, &out), 0) << out;
    auto j = nlohmann::json::parse(out);
    auto m = FromBytes(file);
    ASSERT_TRUE(m.ok());
    ASSERT_EQ(j["tensors"].size(), m->tensors().size());
    for (const TensorInfo& t : m->tensors()) {
      const auto& pt = j["tensors"][t.name];
      EXPECT_EQ(pt["dtype"], std::string(DTypeName(t.dtype))) << t.name;
      EXPECT_EQ(pt["shape"].get<std::vector<uint64_t>>(), t.shape) << t.name;
      EXPECT_EQ(pt["alias_of"], t.alias_of) << t.name;
      auto d = m->Data(t);
      EXPECT_EQ(pt["sha256"], ToHex(Sha256(ByteView(reinterpret_cast<const uint8_t*>(d.data()), d.size()))))
          << t.name;
    }
    EXPECT_EQ(nlohmann::json::parse(ValueToJson(m->architecture())), j["architecture"]);
  }
  // The recorded source order, read by both.
  std::vector<TensorSpec> specs = kSpecs;
  const uint64_t order[] = {3, 5, 0, 4, 1, 2};
  for (size_t i = 0; i < specs.size(); ++i) specs[i].source_index = order[i];
  const std::string file = WriteValid(specs);
  std::string out;
  ASSERT_EQ(Read(file, &out), 0) << out;
  auto m = FromBytes(file);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(nlohmann::json::parse(out)["source_order"].get<std::vector<std::string>>(),
            SourceOrderNames(*m));
}

TEST_F(SpecReader, RejectsWhatTheCppReaderRejects) {
  const std::string file = WriteValid(kSpecs, v1::SHA256);
  Parts parts = Split(file);
  std::vector<std::string> bad;
  bad.push_back(file + "x");
  bad.push_back(file.substr(0, file.size() - 1));
  Parts p = parts;
  p.header.mutable_tensors(1)->set_offset(parts.header.tensors(0).offset());
  bad.push_back(Assemble(p));
  p = parts;
  p.header.mutable_tensors(1)->set_name("a.bias");
  bad.push_back(Assemble(p));
  p = parts;
  p.header.mutable_tensors(4)->set_alias_of("f.half");
  bad.push_back(Assemble(p));
  p = parts;  // source indices 0, 0, 2, ...: not a permutation
  for (int i = 0; i < p.header.tensors_size(); ++i) {
    p.header.mutable_tensors(i)->set_source_index(i == 1 ? 0u : static_cast<uint64_t>(i));
  }
  bad.push_back(Assemble(p));
  std::string corrupt = file;
  corrupt[FromBytes(file)->Find("f.half")->offset] ^= 1;  // caught by digests (SHA-256)
  bad.push_back(corrupt);
  for (size_t i = 0; i < bad.size(); ++i) {
    std::string out;
    EXPECT_EQ(Read(bad[i], &out), 1) << "case " << i << ": " << out;
    EXPECT_EQ(out.rfind("invalid: ", 0), 0u) << "a rule violation, not a crash: " << out;
    auto m = FromBytes(bad[i]);
    EXPECT_TRUE(!m.ok() || !m->Verify().ok()) << "case " << i;
  }
}

}  // namespace
}  // namespace safemodel::testing
