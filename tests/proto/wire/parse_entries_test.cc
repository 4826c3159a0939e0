// wire::ParseBoundedEntries against wire::ParseBounded: the same bytes are
// accepted and refused (a valid header with unknown fields, unknown
// groups, a tensor field of the wrong wire type and a tree given in two
// parts, then thousands of mutations of it: flipped, inserted and removed
// bytes, truncations), and what is accepted comes out the same (the rest
// of the message, and the entries in order, each without a trace of the
// previous one parsed into the same message); both from memory and
// streamed from a source that gives its bytes in pieces, with a header
// many times the window's size, valid and mutated near the windows' edges.
#include "proto/wire/wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace safemodel::testing {
namespace {

class Collect : public wire::EntrySink {
 public:
  void Add(const google::protobuf::Message& entry) override {
    entries.push_back(static_cast<const v1::TensorInfo&>(entry));
  }
  std::vector<v1::TensorInfo> entries;
};

// Gives the bytes in pieces of the sizes `pieces` cycles through, as a
// frame reader does (counting the reads), or fails at byte `fail_at`.
class PieceSource : public wire::ByteSource {
 public:
  PieceSource(const std::string& bytes, std::vector<size_t> pieces, size_t fail_at = SIZE_MAX)
      : bytes_(bytes), pieces_(std::move(pieces)), fail_at_(fail_at) {}
  bool Read(uint8_t* out, size_t n) override {
    ++reads;
    largest = std::max(largest, n);
    if (n == 0 || n > bytes_.size() - at_ || at_ + n > fail_at_) return false;
    // In pieces, as a short read from a pipe would come.
    for (size_t done = 0; done < n;) {
      const size_t piece = std::min(n - done, pieces_[next_++ % pieces_.size()]);
      std::memcpy(out + done, bytes_.data() + at_, piece);
      at_ += piece;
      done += piece;
    }
    return true;
  }
  size_t reads = 0;
  size_t largest = 0;

 private:
  const std::string& bytes_;
  std::vector<size_t> pieces_;
  size_t fail_at_;
  size_t at_ = 0;
  size_t next_ = 0;
};

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutField(std::string* out, uint32_t tag, const std::string& payload) {
  PutVarint(out, tag);
  PutVarint(out, payload.size());
  *out += payload;
}

std::string ValidHeader() {
  std::string out;
  v1::Header h;
  h.set_format_major(1);
  out += wire::SerializeDeterministic(h);
  for (int i = 0; i < 6; ++i) {
    v1::TensorInfo t;
    t.set_name("t" + std::to_string(i));
    t.set_dtype(static_cast<v1::DType>(i % 3 == 0 ? 12 : 99));
    for (int d = 0; d <= i; ++d) t.add_shape(static_cast<uint64_t>(d + 1));
    if (i % 2 == 0) t.set_source_index(static_cast<uint64_t>(i));
    if (i == 3) t.set_alias_of("t0");
    std::string body = wire::SerializeDeterministic(t);
    if (i == 1) body += std::string("\x78\x05", 2);                  // unknown field 15, varint
    if (i == 2) body += std::string("\x83\x01\x08\x01\x84\x01", 6);  // unknown group 16
    if (i == 4) body += std::string("\x18\x07", 2);                  // shape unpacked, appended
    PutField(&out, 0x1a, body);
    if (i == 2) {  // fields between the entries
      v1::Header a;
      a.mutable_architecture()->mutable_map_value()->add_entries()->set_key("k1");
      out += wire::SerializeDeterministic(a);
      out += std::string("\x18\x05", 2);  // field 3 as a varint: an unknown field, not an entry
    }
  }
  v1::Header rest;
  rest.mutable_architecture()->mutable_map_value()->add_entries()->set_key("k2");  // merged
  rest.mutable_metadata()->set_string_value("m\xc3\xa9");
  rest.mutable_provenance()->set_source_format("npz");
  rest.mutable_provenance()->add_findings()->set_rule("r");
  rest.set_digest_algorithm(v1::SHA256);
  out += wire::SerializeDeterministic(rest);
  out += std::string("\xc8\x3e\x01", 3);  // unknown top-level field 1001
  out += std::string("\x8b\x01\x08\x02\x8c\x01", 6);  // unknown top-level group 17
  return out;
}

// Both parses of `bytes`: the same verdict, and if accepted the same message.
void ExpectSame(const std::string& bytes, uint64_t max_objects, int* accepted) {
  v1::Header whole;
  const bool want = wire::ParseBounded(AsBytes(bytes), &whole, max_objects);
  v1::Header rest;
  v1::TensorInfo scratch;
  Collect sink;
  const bool got = wire::ParseBoundedEntries(AsBytes(bytes), &rest, v1::Header::kTensorsFieldNumber,
                                             &scratch, &sink, max_objects);
  // Streamed from a source that gives odd pieces, as a frame reader would.
  v1::Header streamed;
  Collect streamed_sink;
  PieceSource source(bytes, {1, 7, 3});
  const bool streamed_got =
      wire::ParseBoundedEntries(source, bytes.size(), &streamed, v1::Header::kTensorsFieldNumber,
                                &scratch, &streamed_sink, max_objects);
  std::string hex;
  for (char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    hex += "0123456789abcdef"[u >> 4];
    hex += "0123456789abcdef"[u & 15];
  }
  ASSERT_EQ(got, want) << "bytes " << hex;
  ASSERT_EQ(streamed_got, want) << "bytes " << hex;
  if (!got) return;
  ++*accepted;
  EXPECT_EQ(rest.tensors_size(), 0);
  EXPECT_EQ(streamed.tensors_size(), 0);
  for (const v1::TensorInfo& t : sink.entries) *rest.add_tensors() = t;
  for (const v1::TensorInfo& t : streamed_sink.entries) *streamed.add_tensors() = t;
  EXPECT_EQ(wire::SerializeDeterministic(rest), wire::SerializeDeterministic(whole));
  EXPECT_EQ(wire::SerializeDeterministic(streamed), wire::SerializeDeterministic(whole));
}

TEST(ParseBoundedEntries, ValidHeaderAsParseBounded) {
  int accepted = 0;
  const std::string bytes = ValidHeader();
  ExpectSame(bytes, wire::kMaxParsedObjects, &accepted);
  EXPECT_EQ(accepted, 1);
  // The entries come out with their unknown fields and without the
  // previous entry's fields.
  v1::Header rest;
  v1::TensorInfo scratch;
  Collect sink;
  ASSERT_TRUE(wire::ParseBoundedEntries(AsBytes(bytes), &rest, v1::Header::kTensorsFieldNumber,
                                        &scratch, &sink));
  ASSERT_EQ(sink.entries.size(), 6u);
  EXPECT_FALSE(sink.entries[1].has_source_index());
  EXPECT_EQ(sink.entries[4].shape_size(), 6);
  EXPECT_TRUE(sink.entries[4].alias_of().empty());
  EXPECT_EQ(rest.architecture().map_value().entries_size(), 2);
  // Too few objects allowed: both refuse.
  for (uint64_t budget : {1u, 5u, 10u, 15u, 20u}) ExpectSame(bytes, budget, &accepted);
}

// A header of `tensors` entries, with a tree of `tree_entries` keys after
// entry `tree_at` and, after entry `group_at`, an unknown group of
// `group_fields` 5,000-byte fields (longer than a window: read on until it
// ends).
std::string ManyWindowHeader(int tensors, int tree_at, int tree_entries, int group_at,
                             int group_fields) {
  std::string bytes;
  for (int i = 0; i < tensors; ++i) {
    v1::TensorInfo t;
    t.set_name("layer." + std::to_string(100000 + i) + ".weight");
    t.set_dtype(v1::F32);
    t.add_shape(static_cast<uint64_t>(i % 9));
    t.set_source_index(static_cast<uint64_t>(i));
    PutField(&bytes, 0x1a, wire::SerializeDeterministic(t));
    if (i == tree_at) {
      v1::Header tree;
      auto* entries = tree.mutable_architecture()->mutable_map_value();
      for (int k = 0; k < tree_entries; ++k) {
        auto* e = entries->add_entries();
        e->set_key("key" + std::to_string(k) + std::string(20, 'k'));
        e->mutable_value()->set_string_value(std::string(10, 'v'));
      }
      bytes += wire::SerializeDeterministic(tree);
    }
    if (i == group_at) {
      bytes += "\x8b\x01";
      for (int k = 0; k < group_fields; ++k) PutField(&bytes, 0x0a, std::string(5000, 'g'));
      bytes += "\x8c\x01";
    }
  }
  return bytes;
}

// A header larger than the window: read a window at a time, never as a
// whole, with entries on both sides of window boundaries, a tree field
// larger than the window (which the window grows for), and the same result
// as ParseBounded. A source that fails stops the parse, wherever it fails.
TEST(ParseBoundedEntries, StreamedAWindowAtATime) {
  const std::string bytes = ManyWindowHeader(20000, 9000, 5000, 15000, 40);
  ASSERT_GT(bytes.size(), 8 * wire::kParseWindowBytes);
  v1::Header whole;
  ASSERT_TRUE(wire::ParseBounded(AsBytes(bytes), &whole));
  v1::Header rest;
  v1::TensorInfo scratch;
  Collect sink;
  PieceSource source(bytes, {4096, 13, 65536});
  ASSERT_TRUE(wire::ParseBoundedEntries(source, bytes.size(), &rest,
                                        v1::Header::kTensorsFieldNumber, &scratch, &sink));
  EXPECT_EQ(sink.entries.size(), 20000u);
  for (const v1::TensorInfo& t : sink.entries) *rest.add_tensors() = t;
  EXPECT_EQ(wire::SerializeDeterministic(rest), wire::SerializeDeterministic(whole));
  // Reads of a window each, but for the tree, which is read whole.
  EXPECT_LT(source.largest, whole.architecture().ByteSizeLong() + wire::kParseWindowBytes);
  EXPECT_GE(source.reads, bytes.size() / (2 * wire::kParseWindowBytes));
  for (size_t fail_at : {size_t{0}, size_t{5}, bytes.size() / 2, bytes.size() - 1}) {
    v1::Header h;
    Collect s;
    PieceSource failing(bytes, {65536}, fail_at);
    EXPECT_FALSE(wire::ParseBoundedEntries(failing, bytes.size(), &h,
                                           v1::Header::kTensorsFieldNumber, &scratch, &s))
        << fail_at;
  }
}

TEST(ParseBoundedEntries, MutationsAsParseBounded) {
  const std::string valid = ValidHeader();
  std::mt19937 rng(15);
  int accepted = 0;
  for (int round = 0; round < 6000; ++round) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(rng());
          break;
        case 1:
          bytes.insert(at, 1, static_cast<char>(rng()));
          break;
        case 2:
          bytes.erase(at, 1);
          break;
        case 3:
          bytes.resize(at);
          break;
      }
    }
    ExpectSame(bytes, wire::kMaxParsedObjects, &accepted);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Both sides of the verdict were reached.
  EXPECT_GT(accepted, 100);
  EXPECT_LT(accepted, 5900);
}

// A header several windows long, mutated where MeasureField reads a field
// across a window's edge: edits clustered near multiples of the window,
// budgets at and around the header's object count, and an unknown group
// longer than a window (read on until it ends). The single-window mutation
// test above never reaches MeasureField's partial-window paths.
TEST(ParseBoundedEntries, MutationsOfAMultiWindowHeaderAsParseBounded) {
  const std::string valid = ManyWindowHeader(4000, 1500, 2000, 2500, 20);
  const uint64_t window = wire::kParseWindowBytes;
  ASSERT_GT(valid.size(), 4 * window);
  // The fewest objects the valid header needs (ParseBounded's budget walk).
  v1::Header probe;
  uint64_t low = 1, high = wire::kMaxParsedObjects;
  ASSERT_TRUE(wire::ParseBounded(AsBytes(valid), &probe, high));
  while (low < high) {
    const uint64_t mid = low + (high - low) / 2;
    if (wire::ParseBounded(AsBytes(valid), &probe, mid)) {
      high = mid;
    } else {
      low = mid + 1;
    }
  }
  const uint64_t need = low;
  const uint64_t budgets[] = {need - 1, need, need + 1, need + 50, wire::kMaxParsedObjects};
  std::mt19937 rng(64);
  int accepted = 0;
  const uint64_t windows = valid.size() / window;
  for (int round = 0; round < 600; ++round) {
    std::string bytes = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      // Within 40 bytes of a window's edge.
      const uint64_t edge = (1 + rng() % windows) * window;
      const uint64_t at = std::min<uint64_t>(edge - 40 + rng() % 80, bytes.size() - 1);
      switch (rng() % 4) {
        case 0:
          bytes[at] = static_cast<char>(rng());
          break;
        case 1:
          bytes.insert(at, 1, static_cast<char>(rng()));
          break;
        case 2:
          bytes.erase(at, 1);
          break;
        case 3:
          bytes.resize(at);
          break;
      }
    }
    ExpectSame(bytes, budgets[rng() % std::size(budgets)], &accepted);
    if (::testing::Test::HasFatalFailure()) return;
  }
  // Both sides of the verdict were reached.
  EXPECT_GT(accepted, 30);
  EXPECT_LT(accepted, 570);
}

}  // namespace
}  // namespace safemodel::testing
