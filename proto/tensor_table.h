// The tensor entries of a header that SafemodelWriter lays out and writes,
// kept compactly: a fixed-size record per tensor (16 bytes) and a byte
// arena holding every name (front-coded: what it does not share with the
// name before it), alias target and shape (the shape as the packed varints
// it is serialised as). Neither offsets nor sizes are
// stored: a size follows from the packed shape and the dtype, an offset
// from the sizes in table order (NextOffset). A parsed v1::TensorInfo costs
// ~96 bytes plus a heap string and a heap array; for 100,000 tensors the
// parent held ~15 MB of them (tests/bench/PROFILE.md, branch parenthdr).
// Records and arena are kept in fixed-size blocks that never move, so that
// the table grows without a copy of itself (a doubling vector and string
// held 1.5 times their contents while they grew, and the arena's final
// shrink copied it once more: tests/bench/PROFILE.md, eleventh round).
//
// Entries are added one at a time, in header order, from a TensorInfo the
// caller may reuse (the parent parses the worker's entries one by one into
// the same message: wire::ParseBoundedEntries). This is the one place the
// rules of a header's tensor entries are checked (FORMAT.md section 4): the
// writer lays out a proposal with it, and the reader checks a file's stored
// layout with it (format::CheckTensorLayout). The serialisation is, byte for
// byte, what protobuf's deterministic serialisation of the same entries as
// field 3 of a v1::Header gives (tests/proto/tensor_table_test.cc checks it,
// and checks the rules against a reference implementation of them).
//
// Trust: the entries are untrusted until Layout() succeeded.
#ifndef SAFEMODEL_PROTO_TENSOR_TABLE_H_
#define SAFEMODEL_PROTO_TENSOR_TABLE_H_

#include <google/protobuf/io/coded_stream.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <span>
#include <utility>
#include <vector>

#include "proto/safemodel.pb.h"
#include "safemodel/dtype.h"
#include "safemodel/limits.h"
#include "safemodel/status.h"

namespace safemodel::format {

class TensorTable {
 public:
  // Adds the next entry and checks it on its own and against the previous
  // name, as LayoutTensors' first pass does. offset and nbytes of `t` are
  // ignored (Layout assigns them), and so are its unknown fields. After the
  // first failure entries are only counted, not kept: Layout reports it.
  // One rule LayoutTensors does not have: the arena's offsets are 32 bits,
  // so names and shapes over 4 GiB in all are refused (a header that holds
  // them is over kMaxHeaderBytes anyway).
  void Add(const v1::TensorInfo& t);
  // The same for an entry read from a file (the reader): its stored nbytes
  // must also be shape x dtype (an alias's nbytes and offset 0), checked
  // with the entry's other rules. Layout(stored_offsets) then checks the
  // stored offsets.
  void AddStored(const v1::TensorInfo& t);

  // Entries added (kept or not).
  uint64_t size() const { return count_; }

  // Once, after the last Add: the count limit, the first failure of Add,
  // then the source order, the aliases and the canonical offsets. With
  // `stored_offsets` (one per entry, in order: a file's), each tensor's
  // stored offset must be its canonical one. Returns the data region's
  // length.
  Result<uint64_t> Layout(std::span<const uint64_t> stored_offsets = {});

  // The count limit alone, for a caller that knows the count before adding
  // (the reader checks it before allocating): Layout's first rule.
  static Status CheckCount(uint64_t count);

  // After Layout: the entries as protobuf serialises them as field 3 of a
  // v1::Header (tag, length and body each), their total size, and what one
  // entry needs. Serialize writes exactly SerializedBytes() bytes.
  uint64_t SerializedBytes() const;
  void Serialize(google::protobuf::io::CodedOutputStream* out) const;

  // After Layout: the offset of a tensor of `nbytes` (not an alias) whose
  // bytes follow data that ends at `end` (0 for the first): walking the
  // table in order from 0 gives each tensor's canonical offset.
  static uint64_t NextOffset(uint64_t end, uint64_t nbytes);

  // The name of entry `i`, put together from its block of kRestartEvery
  // (names are kept front-coded).
  std::string name(uint64_t i) const;
  // The tensor's size in bytes (shape x dtype, as checked by Add); 0 for an
  // alias.
  uint64_t nbytes(uint64_t i) const { return Nbytes(entry(i)); }
  bool alias(uint64_t i) const { return entry(i).alias_len != 0; }
  bool is_bool(uint64_t i) const { return entry(i).dtype == v1::BOOL; }
  // The dtype's number in proto/safemodel.proto.
  uint8_t dtype(uint64_t i) const { return entry(i).dtype; }

 private:
  // One tensor. The arena holds, from `at`: the name's bytes after the
  // `prefix_len` it shares with the previous entry's (names are sorted, so
  // they share much: "w000123" after "w000122" keeps "3"; a real
  // checkpoint's "model.layers.7.mlp.up_proj.weight" keeps "up_proj.weight"),
  // then alias_of, then the shape.
  struct Entry {
    uint32_t at;
    // kBigSourceIndex: the value is in big_source_indices_ (no valid one
    // is: the count is at most kMaxTensorCount).
    uint32_t source_index;
    uint16_t prefix_len;  // 0 for every kRestartEvery-th entry
    uint16_t suffix_len;  // prefix_len + suffix_len <= kMaxNameBytes (checked before)
    uint16_t alias_len;   // at most kMaxNameBytes + 1 bytes kept: see Add
    uint16_t shape_len : 9;  // packed varints, <= kMaxRank * 10 bytes
    uint16_t dtype : 6;
    uint16_t has_source_index : 1;
  };
  static_assert(sizeof(Entry) == 16);
  static constexpr uint32_t kBigSourceIndex = UINT32_MAX;
  static_assert(kMaxRank * 10 < (1 << 9) && kMaxDType < (1 << 6));
  // Every kRestartEvery-th name is kept whole, so that a name is put
  // together from at most that many pieces and a name can be searched for
  // among the whole ones first.
  static constexpr uint64_t kRestartEvery = 16;
  // Records per block: 64 KiB blocks, a few allocations per 100,000 tensors.
  static constexpr uint64_t kEntryBlockShift = 12;
  static constexpr uint64_t kEntriesPerBlock = uint64_t{1} << kEntryBlockShift;
  // Arena bytes per block; an entry's text (name, alias, shape: at most
  // kMaxNameBytes + kMaxNameBytes + 1 + kMaxRank * 10 bytes) never spans
  // two blocks, and at most a seventh of a block is left unused at its end.
  static constexpr uint32_t kArenaBlockShift = 16;
  static constexpr uint32_t kArenaBlockBytes = uint32_t{1} << kArenaBlockShift;
  static constexpr uint64_t kMaxArenaBlocks = (uint64_t{1} << 32) >> kArenaBlockShift;
  static_assert((uint64_t{kMaxNameBytes} * 2 + 1 + uint64_t{kMaxRank} * 10) * 7 <= kArenaBlockBytes);

  const Entry& entry(uint64_t i) const {
    return entry_blocks_[i >> kEntryBlockShift][i & (kEntriesPerBlock - 1)];
  }
  Entry& entry(uint64_t i) {
    return entry_blocks_[i >> kEntryBlockShift][i & (kEntriesPerBlock - 1)];
  }
  const char* Text(uint32_t at) const {
    return arena_blocks_[at >> kArenaBlockShift].get() + (at & (kArenaBlockBytes - 1));
  }
  // Room for `bytes` (at most a block) of text, in the current block or a
  // new one; returns where it starts.
  uint32_t AllocateText(uint32_t bytes);
  uint64_t Nbytes(const Entry& e) const;

  void AddChecked(const v1::TensorInfo& t, bool stored);
  Status Check(const v1::TensorInfo& t, uint64_t i, bool stored) const;
  Status CheckSourceOrder() const;
  Status CheckAliases() const;
  uint64_t SourceIndex(uint64_t i) const;
  uint64_t BodyBytes(const Entry& e, uint64_t offset, uint64_t nbytes) const;
  std::string_view suffix(const Entry& e) const { return std::string_view(Text(e.at), e.suffix_len); }
  std::string_view alias_of(const Entry& e) const {
    return std::string_view(Text(e.at) + e.suffix_len, e.alias_len);
  }
  std::string_view packed_shape(const Entry& e) const {
    return std::string_view(Text(e.at) + e.suffix_len + e.alias_len, e.shape_len);
  }
  static uint64_t NameBytes(const Entry& e) { return uint64_t{e.prefix_len} + e.suffix_len; }
  // The index of the entry named `target`, or kept_ if none is.
  uint64_t Find(std::string_view target) const;

  std::vector<std::unique_ptr<Entry[]>> entry_blocks_;
  uint64_t kept_ = 0;  // entries in entry_blocks_
  std::vector<std::unique_ptr<char[]>> arena_blocks_;
  uint32_t arena_used_ = 0;  // bytes of the last block in use
  std::string last_name_;    // the last kept entry's name
  // (entry, value) of the source indices of kBigSourceIndex or more: only
  // a hostile proposal has any, and each is an error Layout reports.
  std::vector<std::pair<uint64_t, uint64_t>> big_source_indices_;
  uint64_t count_ = 0;
  Status first_error_;
  bool laid_out_ = false;
};

}  // namespace safemodel::format

#endif  // SAFEMODEL_PROTO_TENSOR_TABLE_H_
