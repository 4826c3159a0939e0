// Streaming writer of .safemodel files (used by the parent process only).
//
// Begin() (or Plan(), then WriteHeader() once the planned size is reserved)
// lays out the tensors canonically and writes the prefix and header;
// Append() takes the data region bytes tensor by tensor, in header order,
// writing zero padding itself and refusing any byte a tensor does not need;
// Finish() fills in the input digest and writes the trailer. Digests are
// computed here, by the trusted side, never taken from the worker.
#ifndef SAFEMODEL_PROTO_WRITER_H_
#define SAFEMODEL_PROTO_WRITER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/base/byte_reader.h"
#include "proto/digest.h"
#include "proto/format.h"
#include "proto/safemodel.pb.h"
#include "proto/tensor_table.h"

namespace safemodel {

class SafemodelWriter {
 public:
  // `header` holds sorted tensors, architecture, metadata and provenance
  // (input_sha256 is filled in by Finish). Offsets are assigned here. The
  // tensor entries are kept as a format::TensorTable (16 bytes per tensor
  // plus its name and shape), the rest of the header as a message until it
  // is streamed into the file. Each tensor's digest goes to its place in
  // the trailer as soon as it is computed (ahead of the data still to come:
  // `fd` must be a regular file, or a memory file, open for reading and
  // writing).
  // Begin is Plan followed by WriteHeader.
  static Result<std::unique_ptr<SafemodelWriter>> Begin(int fd, v1::Header header);

  // Lays the file out without writing anything, so that its size
  // (planned_file_size) can be reserved before the first byte; errors are
  // about the header only, never I/O. The parsed header is kept until
  // WriteHeader.
  static Result<std::unique_ptr<SafemodelWriter>> Plan(int fd, v1::Header header);
  // The same with the tensor entries given as a table (every entry added,
  // not yet laid out) and `rest` the header without them (its tensors
  // empty): the parent builds the table entry by entry from the worker's
  // frame and never holds the entries as messages. The file is byte for
  // byte the one Plan(fd, header) writes for the same entries.
  static Result<std::unique_ptr<SafemodelWriter>> Plan(int fd, format::TensorTable tensors,
                                                       v1::Header rest);
  // Writes the prefix, the header and the padding before the first tensor,
  // and frees the header's message part (keeping the tensor table).
  // Once only, after Plan; Append and Finish need it first.
  Status WriteHeader();

  // Appends bytes of the current tensor. Fails if they are more than the
  // tensor still needs, or if every tensor is complete.
  Status Append(ByteView bytes);

  // Index (in header order) of the tensor the next bytes belong to, and how
  // many bytes it still needs; index == tensor count when all are complete.
  int current_tensor() const { return current_; }
  uint64_t current_remaining() const { return remaining_; }
  // The current tensor's size and dtype (its number in proto/safemodel.proto);
  // 0 once every tensor is complete.
  uint64_t current_size() const { return current_ < 0 || complete() ? 0 : tensors_.nbytes(static_cast<uint64_t>(current_)); }
  uint32_t current_dtype() const { return current_ < 0 || complete() ? 0 : tensors_.dtype(static_cast<uint64_t>(current_)); }
  bool complete() const { return static_cast<uint64_t>(current_) == tensors_.size(); }
  size_t tensor_count() const { return static_cast<size_t>(tensors_.size()); }
  // Tensors with bytes of their own (not aliases); known after WriteHeader.
  size_t data_tensor_count() const;

  // Writes provenance.input_sha256 (32 bytes) into the header in the file,
  // digests the header as written (reading it back), writes the trailer and
  // the final prefix. Fails unless every tensor is complete. The file must
  // be open for reading as well.
  Status Finish(std::string_view input_sha256);

  // Asks for the SHA-256 of the finished file, as `sha256sum` would print
  // it (file_sha256() after Finish), computed from the bytes as they are
  // written rather than by reading the file again. Call before WriteHeader.
  // The header holds the input's SHA-256, known only later; `input_sha256`
  // is asked (before each Append) whether it is known yet: once it gives
  // the 32 bytes, they are written into the header at once, the bytes
  // written so far are read back once (the prefix with its final trailer
  // length comes from memory), and every later byte is hashed as written.
  // If it never gives them, Finish reads the whole file back once. The
  // value given must be the one Finish then receives (else kInternal).
  // Everything the writer writes goes through it: a caller that wrote to
  // the descriptor itself would make this digest wrong.
  using InputSha256Source = std::function<std::optional<std::string>()>;
  void HashFile(InputSha256Source input_sha256);
  // The finished file's SHA-256 (32 bytes), or "" unless HashFile was
  // called and Finish succeeded.
  const std::string& file_sha256() const { return file_sha256_; }

  // For an output that will be made durable (fsynced before it is named):
  // every `window` bytes written are handed to the kernel's write-back at
  // once and, when the next window is full, the one before is waited for
  // and dropped from the page cache. A large output then occupies about two
  // windows of page cache instead of its whole size, the page cache's pages
  // are reused instead of fresh ones taken for every byte, and the final
  // fsync finds little left to write. The bytes written do not change; a
  // write-back error fails the write as the fsync would have. A descriptor
  // whose first sync_file_range fails with ESPIPE, EINVAL, ENOSYS or EPERM
  // (no such support, or a policy against it) just stops doing it; an error
  // from a call that waits always fails the write. On tmpfs and overlayfs
  // the calls succeed and the pages stay cached.
  // Nothing is dropped while HashFile still has to read the file back.
  // Not for a file read in full after it is written (a spool copied to its
  // descriptor): it would be read from the disk again.
  static constexpr uint64_t kWriteBehindBytes = 64 << 20;
  void WriteBehind(uint64_t window = kWriteBehindBytes) { write_behind_ = window; }
  // Time spent waiting for the disk in WriteBehind so far: the caller's own
  // output, which a deadline meant for the worker should not count.
  std::chrono::nanoseconds behind_waited() const { return behind_waited_; }

  // The size the finished file will have at most (the trailer's exact size
  // is known only at Finish).
  uint64_t planned_file_size() const;
  uint64_t file_size() const { return written_; }

 private:
  SafemodelWriter(int fd, DigestAlgorithm algorithm) : fd_(fd), algorithm_(algorithm) {}
  // Writes at the file position through a buffer of kOutBufferBytes;
  // FlushOut() empties it (done before every positional read or write and
  // the header's own stream, so the file holds every byte written before).
  Status WriteAll(ByteView bytes);
  Status FlushOut();
  Status WriteDirect(ByteView bytes);
  // WriteBehind's step, after every write at the file position.
  Status StepWriteBehind();
  Status WriteZeros(uint64_t n);
  // The header as protobuf would serialise it: head_ (fields 1 and 2), the
  // tensor entries (field 3), `tail` (fields 4 to 7).
  Status StreamHeader(const v1::Header& tail, uint64_t header_len);
  Status PwriteAll(ByteView bytes, uint64_t offset);
  // The same without FlushOut first: for bytes past every one written.
  Status PwriteAt(ByteView bytes, uint64_t offset);
  Status PreadAll(uint8_t* out, uint64_t n, uint64_t offset);
  // The trailer's exact size (known once WriteHeader ran).
  uint64_t TrailerLen() const;
  // HashFile: the input digest written into the header, and the file so
  // far hashed (read back); later writes are hashed by WriteAll.
  Status StartFileHash(std::string_view input_sha256);
  // Moves to the next tensor that needs bytes, writing padding for it.
  Status Advance();
  // The trailer's entry for the next tensor (its digest; empty for an
  // alias), gathered in spill_buf_ and written into the trailer's place in
  // the file (fallocated, or a hole until then) a buffer at a time, rather
  // than kept for Finish: the entries' offsets are known from the layout.
  // Finish writes them again, in order, from the file.
  Status AddTrailerEntry(ByteView digest);
  Status FlushTrailerEntries();
  // The trailer's algorithm field (tag and varint): where its entries start.
  uint64_t TrailerHeadBytes() const;
  std::string Name(size_t i) const;

  int fd_;
  DigestAlgorithm algorithm_;
  size_t digest_size_ = 0;
  format::TensorTable tensors_;
  // AddTrailerEntry: entries not yet in the file, and where they go.
  static constexpr size_t kSpillBytes = 64 << 10;
  std::unique_ptr<uint8_t[]> spill_buf_;
  size_t spill_used_ = 0;
  uint64_t spill_at_ = 0;
  format::Prefix prefix_;
  std::unique_ptr<Hasher> hasher_;
  uint64_t sha_at_ = 0;       // where provenance.input_sha256's bytes are in the header
  // Between Plan and WriteHeader: the header's serialised fields 1 and 2,
  // its fields 4 to 7 (tensors aside), and its serialised provenance with
  // where it must land (checked after streaming).
  std::string head_;
  std::unique_ptr<v1::Header> pending_;
  std::string provenance_;
  uint64_t provenance_at_ = 0;
  uint64_t written_ = 0;      // bytes written so far (file position, buffered ones included)
  // HashFile: wanted, the source asked, the running SHA-256 (set once the
  // input digest is known), the digest it started with, the result.
  bool hash_file_ = false;
  InputSha256Source input_sha256_source_;
  std::unique_ptr<Hasher> file_hasher_;
  std::string early_input_sha256_;
  std::string file_sha256_;
  static constexpr size_t kOutBufferBytes = 64 << 10;
  std::unique_ptr<uint8_t[]> out_buf_;
  size_t out_used_ = 0;
  // WriteBehind: the window (0: off); write-back started for [0, started),
  // [0, dropped) on the disk and out of the page cache.
  uint64_t write_behind_ = 0;
  uint64_t behind_started_ = 0;
  uint64_t behind_dropped_ = 0;
  std::chrono::nanoseconds behind_waited_{0};
  int current_ = -1;
  uint64_t remaining_ = 0;
  uint64_t data_end_ = 0;  // where the last opened tensor's bytes end, in the data region
};

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_WRITER_H_
