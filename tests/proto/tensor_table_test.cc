// format::TensorTable against the protobuf messages it stands in for:
// - its serialisation is byte for byte protobuf's deterministic one of the
//   same entries as field 3 of a v1::Header (zero tensors, a scalar, empty
//   dimensions, names of kMaxNameBytes, non-ASCII names, kMaxRank shapes,
//   dimensions and offsets past 32 bits, aliases, source indices from 0,
//   every dtype, page-aligned large tensors);
// - a whole header written by SafemodelWriter is protobuf's serialisation
//   of the v1::Header it was given (input digest still the placeholder);
// - Layout() fails exactly as a reference implementation of the rules
//   (ReferenceLayout, the code TensorTable replaced) does, code and
//   message, first failure first, for every rule; and so does
//   format::CheckTensorLayout, the reader's check through the table, on
//   entries as stored in a file.
#include "proto/tensor_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <functional>
#include <string>
#include <vector>

#include "proto/format.h"
#include "proto/wire/wire.h"
#include "proto/writer.h"
#include "safemodel/limits.h"
#include "tests/testing/test_util.h"

namespace safemodel::testing {
namespace {

using google::protobuf::RepeatedPtrField;

struct Spec {
  std::string name;
  int dtype;
  std::vector<uint64_t> shape;
  std::string alias_of;
  int64_t source_index = -1;  // -1: not set
};

RepeatedPtrField<v1::TensorInfo> Entries(const std::vector<Spec>& specs) {
  RepeatedPtrField<v1::TensorInfo> out;
  for (const Spec& s : specs) {
    v1::TensorInfo* t = out.Add();
    t->set_name(s.name);
    t->set_dtype(static_cast<v1::DType>(s.dtype));
    for (uint64_t d : s.shape) t->add_shape(d);
    t->set_alias_of(s.alias_of);
    if (s.source_index >= 0) t->set_source_index(static_cast<uint64_t>(s.source_index));
  }
  return out;
}

format::TensorTable Table(const RepeatedPtrField<v1::TensorInfo>& entries) {
  format::TensorTable table;
  // One reused message, as the parent adds them.
  v1::TensorInfo scratch;
  for (const v1::TensorInfo& t : entries) {
    scratch = t;
    table.Add(scratch);
  }
  return table;
}

// The rules of a header's tensor entries as format::LayoutTensors checked
// them before TensorTable replaced it (8ce5f5c), message for message: an
// independent reference the table must agree with, on messages rather than
// packed records. With `assign_offsets` it lays a proposal out (the
// writer's case); without, it checks stored nbytes and offsets (the
// reader's, format::CheckTensorLayout).
Status ReferenceSourceOrder(const google::protobuf::RepeatedPtrField<v1::TensorInfo>& tensors) {
  const auto count = static_cast<uint64_t>(tensors.size());
  if (count == 0 || !tensors[0].has_source_index()) {
    for (const v1::TensorInfo& t : tensors) {
      if (t.has_source_index()) {
        return Status::Malformed("tensor '" + Printable(t.name()) +
                                 "' has a source_index but the first tensor has none "
                                 "(all tensors or none record the source order)");
      }
    }
    return Status::Ok();
  }
  // One byte per tensor: at most kMaxTensorCount (2 MB), checked by the caller.
  std::vector<uint8_t> seen(count, 0);
  for (const v1::TensorInfo& t : tensors) {
    const std::string where = "tensor '" + Printable(t.name()) + "'";
    if (!t.has_source_index()) {
      return Status::Malformed(where + " has no source_index but the first tensor has one "
                               "(all tensors or none record the source order)");
    }
    if (t.source_index() >= count) {
      return Status::Malformed(where + ": source_index " + Num(t.source_index()) +
                               " is not below the tensor count " + Num(count));
    }
    if (seen[t.source_index()] != 0) {
      return Status::Malformed(where + ": source_index " + Num(t.source_index()) +
                               " is used twice (not a permutation of 0.." + Num(count - 1) + ")");
    }
    seen[t.source_index()] = 1;
  }
  return Status::Ok();
}

Result<uint64_t> ReferenceLayout(google::protobuf::RepeatedPtrField<v1::TensorInfo>* tensors,
                               bool assign_offsets) {
  const uint64_t count = static_cast<uint64_t>(tensors->size());
  if (count > kMaxTensorCount) {
    return Status::LimitExceeded(Num(count) + " tensors exceed the limit of " +
                                 Num(kMaxTensorCount));
  }
  // Pass 1: each tensor on its own, and the sort order.
  for (int i = 0; i < tensors->size(); ++i) {
    v1::TensorInfo& t = (*tensors)[i];
    const std::string& name = t.name();
    const std::string where = "tensor #" + Num(static_cast<uint64_t>(i)) + " '" +
                              Printable(name) + "'";
    if (name.empty() || name.size() > kMaxNameBytes) {
      return Status::Malformed(where + ": name length " + Num(name.size()) +
                               " is outside 1.." + Num(kMaxNameBytes));
    }
    if (name.find('\0') != std::string::npos || !IsValidUtf8(name)) {
      return Status::Malformed(where + ": name is not NUL-free UTF-8");
    }
    if (i > 0 && !((*tensors)[i - 1].name() < name)) {
      return Status::Malformed(where + ": names are not sorted and unique (previous is '" +
                               Printable((*tensors)[i - 1].name()) + "')");
    }
    if (!IsValidDType(static_cast<uint32_t>(t.dtype()))) {
      return Status::Unsupported(where + ": unknown dtype value " +
                                 Num(static_cast<uint32_t>(t.dtype())));
    }
    if (static_cast<uint64_t>(t.shape_size()) > kMaxRank) {
      return Status::LimitExceeded(where + ": rank " + Num(static_cast<uint64_t>(t.shape_size())) +
                                   " exceeds the limit of " + Num(kMaxRank));
    }
    std::vector<uint64_t> shape(t.shape().begin(), t.shape().end());
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t nbytes,
                               TensorByteSize(shape, static_cast<DType>(t.dtype()), where));
    if (nbytes > kMaxFileBytes) {
      return Status::LimitExceeded(where + ": " + Num(nbytes) + " bytes is larger than any file");
    }
    if (t.alias_of().empty()) {
      if (!assign_offsets && t.nbytes() != nbytes) {
        return Status::Malformed(where + ": nbytes " + Num(t.nbytes()) + " != shape x dtype = " +
                                 Num(nbytes));
      }
      t.set_nbytes(nbytes);
    } else if (!assign_offsets && (t.nbytes() != 0 || t.offset() != 0)) {
      return Status::Malformed(where + ": an alias must have offset 0 and nbytes 0");
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(ReferenceSourceOrder(*tensors));
  // Pass 2: aliases point at real tensors of the same dtype and shape.
  for (v1::TensorInfo& t : *tensors) {
    if (t.alias_of().empty()) continue;
    auto it = std::lower_bound(
        tensors->begin(), tensors->end(), t.alias_of(),
        [](const v1::TensorInfo& a, const std::string& key) { return a.name() < key; });
    const std::string where = "tensor '" + Printable(t.name()) + "'";
    if (it == tensors->end() || it->name() != t.alias_of()) {
      return Status::Malformed(where + ": alias_of names no tensor ('" +
                               Printable(t.alias_of()) + "')");
    }
    if (!it->alias_of().empty()) {
      return Status::Malformed(where + ": alias_of names another alias ('" +
                               Printable(t.alias_of()) + "')");
    }
    if (it->dtype() != t.dtype() ||
        !std::equal(it->shape().begin(), it->shape().end(), t.shape().begin(), t.shape().end())) {
      return Status::Malformed(where + ": alias differs in dtype or shape from '" +
                               Printable(t.alias_of()) + "'");
    }
    t.set_offset(0);
    t.set_nbytes(0);
  }
  // Pass 3: canonical offsets in table order.
  uint64_t cursor = 0;
  for (v1::TensorInfo& t : *tensors) {
    if (!t.alias_of().empty()) continue;
    uint64_t offset, end;
    if (!AlignUp(cursor, format::TensorAlignmentFor(t.nbytes()), &offset) ||
        !CheckedAdd(offset, t.nbytes(), &end) || end > kMaxFileBytes) {
      return Status::LimitExceeded("tensor data exceeds the maximum file size");
    }
    if (assign_offsets) {
      t.set_offset(offset);
    } else if (t.offset() != offset) {
      return Status::Malformed("tensor '" + Printable(t.name()) + "': offset " + Num(t.offset()) +
                               " is not the canonical offset " + Num(offset) +
                               " (overlap, hole or misalignment)");
    }
    cursor = end;
  }
  return cursor;
}

// Protobuf's bytes for the entries (after ReferenceLayout) and the table's.
void ExpectSameBytes(const std::vector<Spec>& specs) {
  RepeatedPtrField<v1::TensorInfo> entries = Entries(specs);
  format::TensorTable table = Table(entries);
  auto want_len = ReferenceLayout(&entries, true);
  ASSERT_TRUE(want_len.ok()) << want_len.status().ToString();
  auto got_len = table.Layout();
  ASSERT_TRUE(got_len.ok()) << got_len.status().ToString();
  EXPECT_EQ(*got_len, *want_len);

  v1::Header h;
  *h.mutable_tensors() = entries;
  const std::string want = wire::SerializeDeterministic(h);
  std::string got;
  {
    google::protobuf::io::StringOutputStream stream(&got);
    google::protobuf::io::CodedOutputStream coded(&stream);
    table.Serialize(&coded);
  }
  EXPECT_EQ(table.SerializedBytes(), got.size());
  EXPECT_EQ(got, want);
  ASSERT_EQ(table.size(), static_cast<uint64_t>(entries.size()));
  uint64_t end = 0;
  for (int i = 0; i < entries.size(); ++i) {
    const auto k = static_cast<uint64_t>(i);
    EXPECT_EQ(table.name(k), entries[i].name());
    if (!table.alias(k)) {
      const uint64_t offset = format::TensorTable::NextOffset(end, table.nbytes(k));
      EXPECT_EQ(offset, entries[i].offset());
      end = offset + table.nbytes(k);
    }
    EXPECT_EQ(table.nbytes(k), entries[i].nbytes());
    EXPECT_EQ(table.alias(k), !entries[i].alias_of().empty());
    EXPECT_EQ(table.is_bool(k), entries[i].dtype() == v1::BOOL);
  }
}

TEST(TensorTable, ZeroTensors) { ExpectSameBytes({}); }

TEST(TensorTable, ScalarsEmptyDimensionsAndAliases) {
  ExpectSameBytes({{"a", v1::F32, {3}, ""},
                   {"b.scalar", v1::I64, {}, ""},
                   {"c.empty", v1::F64, {0, 5}, ""},
                   {"d.tied", v1::F32, {3}, "a"},
                   {"e.empty_scalar_alias", v1::I64, {}, "b.scalar"},
                   {"f.bool", v1::BOOL, {7}, ""}});
}

TEST(TensorTable, LongAndNonAsciiNames) {
  const std::string longest(kMaxNameBytes, 'x');
  ExpectSameBytes({{"caf\xc3\xa9", v1::U8, {1}, ""},
                   {"long." + std::string(300, 'n'), v1::U8, {200}, ""},  // a two-byte length
                   {longest, v1::U16, {2}, ""},
                   {"\xe6\x97\xa5\xe6\x9c\xac", v1::F16, {4}, ""},
                   {"\xf0\x9f\x98\x80.alias", v1::F16, {4}, "\xe6\x97\xa5\xe6\x9c\xac"}});
}

TEST(TensorTable, MaxRankBigDimensionsAndOffsets) {
  std::vector<uint64_t> max_rank(kMaxRank, 1);
  max_rank[0] = 3;
  max_rank[kMaxRank - 1] = 1ull << 40;  // a six-byte varint
  std::vector<uint64_t> with_zero(kMaxRank, 2);
  with_zero[0] = 1ull << 20;  // the product of the others, bytes included, fits
  with_zero[5] = 0;
  ExpectSameBytes({{"a.rank32", v1::U8, max_rank, ""},
                   {"b.rank32.empty", v1::C128, with_zero, ""},
                   {"c.after", v1::F32, {1ull << 20}, ""},  // page-aligned, at an offset past 2^40
                   {"d.small", v1::U8, {1}, ""},
                   {"e.tied", v1::U8, max_rank, "a.rank32"}});
}

TEST(TensorTable, EveryDtypeAndSourceIndices) {
  std::vector<Spec> specs;
  for (int d = 1; d <= static_cast<int>(v1::DType_MAX); ++d) {
    specs.push_back(
        {"t" + std::to_string(100 + d), d, {3, 5}, "", static_cast<int64_t>(v1::DType_MAX - d)});
  }
  ExpectSameBytes(specs);
  // A permutation of 0..n-1 over 300 tensors: source indices of two bytes,
  // 0 written explicitly.
  specs.clear();
  for (int i = 0; i < 300; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "w%04d", i);
    specs.push_back({name, v1::F32, {static_cast<uint64_t>(i)}, "", (i * 7) % 300});
  }
  ExpectSameBytes(specs);
}

// Records and text are kept in blocks (4,096 records, 64 KiB of text) that
// an entry's text never spans: thousands of entries of names from 7 bytes
// to kMaxNameBytes fill dozens of text blocks, each with an unused end, and
// aliases in later blocks name tensors in earlier ones.
TEST(TensorTable, ManyBlocksOfRecordsAndText) {
  std::vector<Spec> specs;
  for (int i = 0; i < 9000; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "n%05d", i);
    const size_t pad = i % 1000 == 999 ? kMaxNameBytes - 6 : static_cast<size_t>(i * 37 % 600);
    const uint64_t dim = static_cast<uint64_t>(i % 7) + 1;
    // 4,200 is a multiple of 7 and 20: the target has the same shape.
    const bool alias = i % 500 == 499 && i >= 4200;
    specs.push_back({name + std::string(pad, 'p'), v1::F32, {dim, 1ull << (i % 20)},
                     alias ? specs[static_cast<size_t>(i - 4200)].name : "", -1});
  }
  ExpectSameBytes(specs);
}

// format::CheckTensorLayout (the reader's check, through the table) gives
// the reference's verdict on entries as a file stores them: the same data
// length, or the same code and message.
void ExpectSameStoredVerdict(const RepeatedPtrField<v1::TensorInfo>& stored) {
  RepeatedPtrField<v1::TensorInfo> copy = stored;
  auto want = ReferenceLayout(&copy, false);
  auto got = format::CheckTensorLayout(stored);
  ASSERT_EQ(got.ok(), want.ok()) << (got.ok() ? want.status() : got.status()).ToString();
  if (want.ok()) {
    EXPECT_EQ(*got, *want);
    return;
  }
  EXPECT_EQ(got.status().code(), want.status().code());
  EXPECT_EQ(got.status().message(), want.status().message());
}

// Layout fails where ReferenceLayout does, with the same code and message.
void ExpectSameError(const std::vector<Spec>& specs) {
  RepeatedPtrField<v1::TensorInfo> entries = Entries(specs);
  format::TensorTable table = Table(entries);
  auto want = ReferenceLayout(&entries, true);
  ASSERT_FALSE(want.ok()) << "the case is valid";
  auto got = table.Layout();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), want.status().code());
  EXPECT_EQ(got.status().message(), want.status().message());
  ExpectSameStoredVerdict(Entries(specs));  // the same entries read from a file
}

// Names are kept front-coded, whole every 16th: names that are prefixes of
// the next, shared prefixes that end inside a UTF-8 character, and aliases
// found (or not) at, around and between the whole ones, before the first
// name and after the last; sorting errors against a name put together.
TEST(TensorTable, FrontCodedNamesAndTheirSearch) {
  std::vector<Spec> specs;
  const char* stems[] = {"a", "ab", "abc", "abd", "b", "b\xc3\xa9", "b\xc3\xa9z", "b\xc3\xaa"};
  for (int block = 0; block < 3; ++block) {
    for (const char* stem : stems) {
      const std::string name = std::string(1, static_cast<char>('c' + block)) + stem;
      specs.push_back({name, v1::F32, {2}, ""});
      specs.push_back({name + ".w", v1::F32, {2}, ""});
    }
  }
  // 48 entries: whole names at 0, 16 and 32. Aliases of entries 0, 15,
  // 16, 17, 31, 32 and 47, sorted after every other name.
  const std::vector<std::string> targets = {specs[0].name,  specs[15].name, specs[16].name,
                                            specs[17].name, specs[31].name, specs[32].name,
                                            specs[47].name};
  for (size_t k = 0; k < targets.size(); ++k) {
    specs.push_back({"z" + std::to_string(k), v1::F32, {2}, targets[k]});
  }
  ExpectSameBytes(specs);
  // Names that are not there, between and around the kept ones.
  for (const std::string& missing :
       {std::string("a"), std::string("c"), std::string("caa"), std::string("cb\xc3"),
        specs[16].name + "x", std::string("d"), std::string("y"), std::string("zz")}) {
    std::vector<Spec> bad = specs;
    bad.back().alias_of = missing;
    ExpectSameError(bad);
  }
  // Out of order after a front-coded name and after a whole one.
  for (size_t at : {size_t{5}, size_t{16}, size_t{17}}) {
    std::vector<Spec> bad(specs.begin(), specs.begin() + static_cast<long>(at) + 1);
    bad.push_back({specs[at - 1].name, v1::F32, {2}, ""});
    ExpectSameError(bad);
  }
}

TEST(TensorTable, EveryRuleFailsAsTheReferenceDoes) {
  const Spec ok{"ok", v1::F32, {2}, ""};
  ExpectSameError({ok, {"", v1::F32, {2}, ""}});
  ExpectSameError({{std::string(kMaxNameBytes + 1, 'a'), v1::F32, {2}, ""}});
  ExpectSameError({{std::string("a\0b", 3), v1::F32, {2}, ""}});
  ExpectSameError({{"a\xff", v1::F32, {2}, ""}});
  ExpectSameError({ok, {"a", v1::F32, {2}, ""}});   // not sorted
  ExpectSameError({ok, {"ok", v1::F32, {2}, ""}});  // not unique
  ExpectSameError({{"a", 99, {2}, ""}});            // unknown dtype
  ExpectSameError({{"a", -1, {2}, ""}});
  ExpectSameError({{"a", 0, {2}, ""}});
  ExpectSameError({{"a", v1::F32, std::vector<uint64_t>(kMaxRank + 1, 1), ""}});
  ExpectSameError({{"a", v1::F32, {1ull << 62, 4}, ""}});                  // product overflows
  ExpectSameError({{"a", v1::U8, {(1ull << 62) + 1}, ""}});                // larger than any file
  ExpectSameError({{"a", v1::F32, {2}, "", 0}, {"b", v1::F32, {2}, ""}});  // source index on some
  ExpectSameError({{"a", v1::F32, {2}, ""}, {"b", v1::F32, {2}, "", 0}});
  ExpectSameError({{"a", v1::F32, {2}, "", 0}, {"b", v1::F32, {2}, "", 2}});
  ExpectSameError({{"a", v1::F32, {2}, "", 1}, {"b", v1::F32, {2}, "", 1}});
  ExpectSameError({{"a", v1::F32, {2}, "", 1ll << 40}, {"b", v1::F32, {2}, "", 0}});
  ExpectSameError({{"a", v1::F32, {2}, "", 0}, {"b", v1::F32, {2}, "", 4294967295ll}});
  ExpectSameError({{"a", v1::F32, {2}, "", 0},
                   {"b", v1::F32, {2}, "", 1},
                   {"c", v1::F32, {2}, "", 4294967296ll},
                   {"d", v1::F32, {2}, "", 4294967297ll}});
  ExpectSameError(
      {{"a", v1::F32, {2}, "", 0}, {"b", v1::F32, {2}, "", 0}, {"c", v1::F32, {2}, "", 1ll << 50}});
  ExpectSameError({ok, {"p", v1::F32, {2}, "nothing"}});
  ExpectSameError({{"a", v1::F32, {2}, "ok"}, ok, {"z", v1::F32, {2}, "a"}});  // alias of an alias
  ExpectSameError({ok, {"p", v1::F64, {2}, "ok"}});
  ExpectSameError({ok, {"p", v1::F32, {1, 2}, "ok"}});
  ExpectSameError({ok, {"p", v1::F32, {}, "ok"}});
  ExpectSameError({ok, {"p", v1::F32, {2}, std::string(kMaxNameBytes + 500, 'o')}});
  ExpectSameError({ok, {"p", v1::F32, {2}, "ok" + std::string(kMaxNameBytes - 2, 'k')}});
  // Past the largest file, laid out.
  ExpectSameError(
      {{"a", v1::U8, {1ull << 61}, ""}, {"b", v1::U8, {1ull << 61}, ""}, {"c", v1::U8, {64}, ""}});
  // The first failure wins: a later entry's, and source order and aliases
  // (checked after every entry), wait for it.
  ExpectSameError({{"a", v1::F32, {2}, "", 5}, {"b", 99, {2}, "x"}, {"a", v1::F32, {2}, ""}});
  ExpectSameError({{"a", v1::F32, {2}, "x", 5}, {"b", v1::F32, {2}, "y"}});
}

// A file's stored layout: valid, then each stored field wrong on its own
// and with an earlier entry's failure beside it (the first failure wins).
TEST(TensorTable, AStoredLayoutIsCheckedAsTheReferenceChecksIt) {
  RepeatedPtrField<v1::TensorInfo> valid = Entries({{"a", v1::F32, {3}, "", 2},
                                                    {"b", v1::U8, {5000}, "", 0},
                                                    {"c", v1::F32, {3}, "a", 3},
                                                    {"d", v1::F64, {1 << 20}, "", 1}});
  ASSERT_TRUE(ReferenceLayout(&valid, true).ok());
  ExpectSameStoredVerdict(valid);
  const std::vector<std::function<void(RepeatedPtrField<v1::TensorInfo>&)>> breaks = {
      [](auto& e) { e[1].set_nbytes(e[1].nbytes() + 1); },
      [](auto& e) { e[0].set_nbytes(0); },
      [](auto& e) { e[2].set_nbytes(12); },                        // an alias with bytes
      [](auto& e) { e[2].set_offset(64); },                        // an alias with an offset
      [](auto& e) { e[1].set_offset(e[1].offset() + 64); },        // a hole
      [](auto& e) { e[3].set_offset(e[3].offset() - 4096); },      // an overlap
      [](auto& e) { e[3].set_offset(e[3].offset() + 1); },         // misaligned
      [](auto& e) { e[1].set_offset(0); e[3].set_nbytes(1); },     // both: the entry's first
      [](auto& e) { e[1].set_offset(0); e[2].set_alias_of("z"); },  // both: the alias first
      [](auto& e) { e[3].set_offset(0); e[0].set_source_index(7); },
  };
  for (size_t i = 0; i < breaks.size(); ++i) {
    SCOPED_TRACE(i);
    RepeatedPtrField<v1::TensorInfo> stored = valid;
    breaks[i](stored);
    ExpectSameStoredVerdict(stored);
    EXPECT_FALSE(format::CheckTensorLayout(stored).ok());
  }
}

TEST(TensorTable, TooManyTensorsIsTheFirstFailure) {
  // The reference checks the count before any entry; so does Layout. The
  // entries are bad too (unsorted) so that the order shows.
  format::TensorTable table;
  v1::TensorInfo t;
  t.set_name("same");
  t.set_dtype(v1::U8);
  for (uint64_t i = 0; i <= kMaxTensorCount; ++i) table.Add(t);
  auto got = table.Layout();
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kLimitExceeded);
  EXPECT_EQ(got.status().message(), std::to_string(kMaxTensorCount + 1) +
                                        " tensors exceed the limit of " +
                                        std::to_string(kMaxTensorCount));
}

// The whole header as written to the file is protobuf's deterministic
// serialisation of the v1::Header the writer was given, laid out.
TEST(TensorTable, WrittenHeaderIsTheMessageSerialised) {
  for (int variant = 0; variant < 3; ++variant) {
    std::vector<Spec> specs;
    if (variant >= 1) {
      specs = {{"a", v1::F32, {3}, "", 2},
               {"b\xc3\xa9", v1::BOOL, {}, "", 0},
               {"c", v1::F32, {3}, "a", 1}};
    }
    if (variant == 2) {
      for (int i = 0; i < 2000; ++i) {
        char name[16];
        std::snprintf(name, sizeof name, "m%05d", i);
        specs.push_back({name, v1::F32, {16}, ""});
      }
      for (Spec& s : specs) s.source_index = -1;
    }
    v1::Header h;
    *h.mutable_tensors() = Entries(specs);
    h.mutable_architecture()->mutable_map_value()->add_entries()->set_key("layers");
    h.mutable_metadata()->set_string_value("m\xc3\xa9ta");
    v1::Provenance* p = h.mutable_provenance();
    p->set_source_format("npz");
    p->set_input_size(123456789);
    p->set_converter_version("safemodel test");
    p->add_options("--an-option");
    v1::Finding* f = p->add_findings();
    f->set_severity("note");
    f->set_rule("r");
    h.set_digest_algorithm(variant == 1 ? v1::SHA256 : v1::XXH3_128);

    v1::Header want = h;
    want.set_format_major(format::kMajorVersion);
    want.set_format_minor(format::kMinorVersion);
    ASSERT_TRUE(ReferenceLayout(want.mutable_tensors(), true).ok());
    want.mutable_provenance()->set_input_sha256(std::string(32, '\0'));
    const std::string want_bytes = wire::SerializeDeterministic(want);

    TempDir dir;
    const std::string path = dir.path() + "/h.safemodel";
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    auto w = SafemodelWriter::Begin(fd, h);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    std::string got(want_bytes.size() + 1, '\0');
    const ssize_t n = pread(fd, got.data(), got.size(), static_cast<off_t>(format::kPrefixBytes));
    close(fd);
    ASSERT_GE(n, static_cast<ssize_t>(want_bytes.size()));
    got.resize(want_bytes.size());
    EXPECT_EQ(got, want_bytes) << "variant " << variant;
    // And the prefix says that length.
    uint8_t prefix[format::kPrefixBytes];
    const int rfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_EQ(pread(rfd, prefix, sizeof prefix, 0), static_cast<ssize_t>(sizeof prefix));
    close(rfd);
    uint64_t header_len = 0;
    for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(prefix[24 + i]) << (8 * i);
    EXPECT_EQ(header_len, want_bytes.size());
  }
}

}  // namespace
}  // namespace safemodel::testing
