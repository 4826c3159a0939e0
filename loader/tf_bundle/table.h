// A strict reader of LevelDB-format tables as TensorFlow writes them: the
// index file of a tensor bundle (`*.index`, `variables/variables.index`).
//
// Layout (tensorflow/core/lib/io/format.h, table_builder.cc, block_builder.cc):
//   [data block + trailer]... [metaindex block + trailer] [index block +
//   trailer] [footer: metaindex handle, index handle, zero padding to 40
//   bytes, magic 0xdb4775248b80fb57]
// A block holds prefix-compressed entries (varint32 shared, unshared and
// value lengths, the key suffix, the value), then a restart array and its
// count; its 5-byte trailer is a type byte and the masked CRC32C of the
// block and that byte. A block handle is varint64 offset and size.
//
// Stricter than TensorFlow's reader, which binary-searches the restarts and
// so silently misses keys in a table that is not as written (TensorFlow
// verifies the block CRCs and the magic, nothing more). Refused as
// malformed, each message naming the rule "tf.table": a footer other than
// TensorFlow's, blocks that are not back to back in data, metaindex, index
// order covering the whole file, a bad trailer CRC, a compressed block
// (snappy, never written by TensorFlow since 1.2: unsupported), a non-empty
// metaindex (filters), restart arrays that do not point at the entries with
// shared == 0 in order, keys that are not strictly increasing across the
// whole table, and index separators that do not lie between the last key of
// their block and the first key of the next.
//
// Worst case: O(n + k) for an n-byte file whose keys total k bytes; k is
// capped (kMaxTableKeyBytes), since prefix compression lets a few bytes of
// input stand for a long key.
//
// Trust: the bytes are untrusted.
#ifndef SAFEMODEL_LOADER_TF_BUNDLE_TABLE_H_
#define SAFEMODEL_LOADER_TF_BUNDLE_TABLE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/byte_reader.h"
#include "safemodel/status.h"

namespace safemodel::loader::tf {

// The footer is two handles of at most 10 + 10 varint bytes each, padded.
inline constexpr uint64_t kTableFooterBytes = 48;
inline constexpr uint64_t kTableMagic = 0xdb4775248b80fb57ull;
// One key: tensor names end up as safemodel tensor names (4 KiB at most);
// a key of more than 64 KiB is no TensorFlow key.
inline constexpr uint64_t kMaxTableKeyBytes = 64 * 1024;
// All keys together: 2M tensors (safemodel's tensor cap) with 128-byte
// names; bounds the memory the prefix-compressed keys expand to.
inline constexpr uint64_t kMaxTableTotalKeyBytes = 256ull << 20;
// Entries in one table: safemodel's tensor cap plus the header and the
// object graph.
inline constexpr uint64_t kMaxTableEntries = 2'000'016;

struct TableEntry {
  std::string key;
  ByteView value;       // a view of the file
  uint64_t offset = 0;  // of the entry in the file, for messages
};

// All entries of the table in `file`, in key order. `what` names the file.
Result<std::vector<TableEntry>> ReadTable(ByteView file, std::string_view what);

}  // namespace safemodel::loader::tf

#endif  // SAFEMODEL_LOADER_TF_BUNDLE_TABLE_H_
