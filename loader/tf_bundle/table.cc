#include "loader/tf_bundle/table.h"

#include "loader/tf_bundle/crc32c.h"
#include "loader/tf_bundle/proto_wire.h"
#include "proto/base/text.h"

namespace safemodel::loader::tf {

namespace {

constexpr uint64_t kTrailerBytes = 5;  // type byte + masked CRC32C
constexpr uint8_t kNoCompression = 0;
constexpr uint8_t kSnappy = 1;

Status Bad(std::string_view what, const std::string& message) {
  return Status::Malformed(std::string(what) + ": " + message + " [tf.table]");
}

struct Handle {
  uint64_t offset = 0;
  uint64_t size = 0;
};

Result<Handle> ReadHandle(ByteReader& r, std::string_view what) {
  Handle h;
  SAFEMODEL_ASSIGN_OR_RETURN(h.offset, proto::ReadVarint(r, what));
  SAFEMODEL_ASSIGN_OR_RETURN(h.size, proto::ReadVarint(r, what));
  return h;
}

// The contents of the block at `h`, after checking its trailer.
Result<ByteView> ReadBlock(ByteView file, const Handle& h, std::string_view what,
                           const std::string& label) {
  const uint64_t limit = file.size() - kTableFooterBytes;
  if (h.offset > limit || h.size > limit - h.offset || kTrailerBytes > limit - h.offset - h.size) {
    return Bad(what, label + " [" + Num(h.offset) + ", +" + Num(h.size) +
                         ") and its trailer do not fit before the footer");
  }
  ByteView block = file.subspan(h.offset, h.size);
  ByteView trailer = file.subspan(h.offset + h.size, kTrailerBytes);
  const uint8_t type = trailer[0];
  uint32_t stored = 0;
  for (size_t i = 0; i < 4; ++i) stored |= static_cast<uint32_t>(trailer[1 + i]) << (8 * i);
  uint32_t crc = Crc32cExtend(Crc32c(block), trailer.subspan(0, 1));
  if (UnmaskCrc(stored) != crc) {
    return Bad(what, label + " at byte " + Num(h.offset) + ": CRC32C mismatch (stored " +
                         Num(UnmaskCrc(stored)) + ", computed " + Num(crc) + ")");
  }
  if (type == kSnappy) {
    return Status::Unsupported(std::string(what) + ": " + label +
                               " is snappy-compressed, which TensorFlow's bundle writer never "
                               "produces [tf.table]");
  }
  if (type != kNoCompression) return Bad(what, label + ": unknown block type " + Num(type));
  return block;
}

// Decodes one block's entries, checking its restart array. Entries are
// appended to *out, whose last key is the table's previous one (keys must
// increase across blocks too).
Status ParseBlock(const Handle& h, ByteView block, std::string_view what,
                  const std::string& label, uint64_t* total_key_bytes,
                  std::vector<TableEntry>* out) {
  if (block.size() < 4) return Bad(what, label + " is shorter than its restart count");
  ByteReader tail(block.subspan(block.size() - 4));
  SAFEMODEL_ASSIGN_OR_RETURN(uint32_t restarts, tail.U32LE(what));
  if (restarts == 0 || restarts > (block.size() - 4) / 4) {
    return Bad(what, label + ": restart count " + Num(restarts) + " does not fit the block");
  }
  const uint64_t entries_end = block.size() - 4 - 4ull * restarts;
  ByteReader restart_reader(block.subspan(entries_end, 4ull * restarts));
  uint32_t next_restart = 0;
  SAFEMODEL_ASSIGN_OR_RETURN(next_restart, restart_reader.U32LE(what));
  uint32_t restarts_seen = 0;
  ByteReader r(block.subspan(0, entries_end), h.offset);
  std::string key;
  bool first = true;
  while (!r.at_end()) {
    const uint64_t entry_at = r.position();
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t shared, proto::ReadVarint(r, what));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t unshared, proto::ReadVarint(r, what));
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t value_len, proto::ReadVarint(r, what));
    if (restarts_seen < restarts) {
      if (entry_at == next_restart) {
        if (shared != 0) return Bad(what, label + ": a restart entry shares a key prefix");
        if (++restarts_seen < restarts) {
          SAFEMODEL_ASSIGN_OR_RETURN(uint32_t n, restart_reader.U32LE(what));
          if (n <= next_restart) return Bad(what, label + ": restart offsets do not increase");
          next_restart = n;
        }
      } else if (first || entry_at > next_restart) {
        return Bad(what, label + ": restart offset " + Num(next_restart) +
                             " is not the start of an entry");
      }
    }
    if (shared > key.size() || (first && shared != 0)) {
      return Bad(what, label + ": entry at byte " + Num(h.offset + entry_at) + " shares " +
                           Num(shared) + " bytes of a " + Num(key.size()) + "-byte key");
    }
    if (unshared > kMaxTableKeyBytes || shared + unshared > kMaxTableKeyBytes) {
      return Status::LimitExceeded(std::string(what) + ": a key longer than " +
                                   Num(kMaxTableKeyBytes) + " bytes");
    }
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView suffix, r.Bytes(unshared, what));
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView value, r.Bytes(value_len, what));
    key.resize(shared);
    key.append(AsChars(suffix));
    if (!out->empty() && !(out->back().key < key)) {
      return Bad(what, "key '" + Printable(key) + "' at byte " + Num(h.offset + entry_at) +
                           " does not follow '" + Printable(out->back().key) +
                           "' (keys must be unique and in increasing byte order)");
    }
    *total_key_bytes += key.size();
    if (*total_key_bytes > kMaxTableTotalKeyBytes || out->size() >= kMaxTableEntries) {
      return Status::LimitExceeded(std::string(what) + ": more than " +
                                   Num(kMaxTableEntries) + " entries or " +
                                   Num(kMaxTableTotalKeyBytes) + " bytes of keys");
    }
    out->push_back({key, value, h.offset + entry_at});
    first = false;
  }
  // An empty block (the metaindex) has the one restart offset 0.
  const bool empty_block = first && restarts == 1 && next_restart == 0;
  if (restarts_seen != restarts && !empty_block) {
    return Bad(what, label + ": restart offset " + Num(next_restart) + " is not an entry");
  }
  return Status::Ok();
}

}  // namespace

Result<std::vector<TableEntry>> ReadTable(ByteView file, std::string_view what) {
  if (file.size() < kTableFooterBytes) {
    return Bad(what, "shorter than the " + Num(kTableFooterBytes) + "-byte footer");
  }
  ByteReader footer(file.subspan(file.size() - kTableFooterBytes),
                    file.size() - kTableFooterBytes);
  SAFEMODEL_ASSIGN_OR_RETURN(Handle meta, ReadHandle(footer, what));
  SAFEMODEL_ASSIGN_OR_RETURN(Handle index, ReadHandle(footer, what));
  while (footer.position() < kTableFooterBytes - 8) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint8_t pad, footer.U8(what));
    if (pad != 0) return Bad(what, "non-zero footer padding");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t magic, footer.U64LE(what));
  if (magic != kTableMagic) return Bad(what, "bad magic number (not a TensorFlow table)");

  SAFEMODEL_ASSIGN_OR_RETURN(ByteView meta_block, ReadBlock(file, meta, what, "metaindex block"));
  std::vector<TableEntry> meta_entries;
  uint64_t key_bytes = 0;
  SAFEMODEL_RETURN_IF_ERROR(
      ParseBlock(meta, meta_block, what, "metaindex block", &key_bytes, &meta_entries));
  if (!meta_entries.empty()) {
    return Status::Unsupported(std::string(what) +
                               ": the metaindex block lists filter blocks, which TensorFlow's "
                               "bundle writer never produces [tf.table]");
  }
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView index_block, ReadBlock(file, index, what, "index block"));
  std::vector<TableEntry> separators;
  SAFEMODEL_RETURN_IF_ERROR(
      ParseBlock(index, index_block, what, "index block", &key_bytes, &separators));

  // Data blocks back to back from byte 0, then the metaindex and index
  // blocks, then the footer: nothing unaccounted for.
  std::vector<TableEntry> entries;
  key_bytes = 0;
  uint64_t cursor = 0;
  for (size_t b = 0; b < separators.size(); ++b) {
    ByteReader hr(separators[b].value);
    SAFEMODEL_ASSIGN_OR_RETURN(Handle h, ReadHandle(hr, what));
    if (!hr.at_end()) return Bad(what, "index entry " + Num(b) + " has bytes after its handle");
    const std::string label = "data block " + Num(b);
    if (h.offset != cursor) {
      return Bad(what, label + " starts at byte " + Num(h.offset) + ", expected " + Num(cursor));
    }
    SAFEMODEL_ASSIGN_OR_RETURN(ByteView block, ReadBlock(file, h, what, label));
    const size_t before = entries.size();
    SAFEMODEL_RETURN_IF_ERROR(ParseBlock(h, block, what, label, &key_bytes, &entries));
    if (entries.size() == before) return Bad(what, label + " is empty");
    // The separator is >= every key of its block and < every key of the next.
    if (separators[b].key < entries.back().key) {
      return Bad(what, "index separator of " + label + " is below its last key");
    }
    if (b > 0 && !(separators[b - 1].key < entries[before].key)) {
      return Bad(what, "index separator of data block " + Num(b - 1) +
                           " is not below the first key of " + label);
    }
    cursor = h.offset + h.size + kTrailerBytes;
  }
  if (meta.offset != cursor || index.offset != meta.offset + meta.size + kTrailerBytes ||
      index.offset + index.size + kTrailerBytes != file.size() - kTableFooterBytes) {
    return Bad(what, "the blocks do not cover the file exactly (data, metaindex, index, footer)");
  }
  return entries;
}

}  // namespace safemodel::loader::tf
