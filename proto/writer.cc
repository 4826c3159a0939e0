#include "proto/writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proto/wire/wire.h"
#include "safemodel/limits.h"

namespace safemodel {

namespace {
constexpr size_t kZeroBlock = 4096;
const uint8_t kZeros[kZeroBlock] = {};
// v1::Trailer's field tags: the algorithm (field 1, varint), a tensor's
// digest (field 2) and the header's (field 3), both length-delimited.
constexpr uint8_t kAlgorithmTag = 0x08, kDigestTag = 0x12, kHeaderDigestTag = 0x1a;
// A trailer digest entry's (a tensor's or the header's) tag and length, one
// byte each: both field numbers are under 16, and a digest of at most
// Hasher::kMaxDigestBytes is shorter than 128 bytes, so neither varint
// needs a second byte.
constexpr uint64_t kTrailerEntryHeadBytes = 2;
static_assert(Hasher::kMaxDigestBytes < 128, "a digest's length is one varint byte");
}  // namespace

Status SafemodelWriter::WriteDirect(ByteView bytes) {
  const uint8_t* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("writing the output failed: ") + std::strerror(errno));
    }
    // Appended bytes are final where they land: hashed as written.
    if (file_hasher_) file_hasher_->Update(ByteView(p, static_cast<size_t>(n)));
    p += n;
    left -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Small pieces (a tiny tensor, its padding) are gathered: 100,000 small
// tensors were 200,000 writes. Large ones go straight to the file.
Status SafemodelWriter::WriteAll(ByteView bytes) {
  if (bytes.size() >= kOutBufferBytes / 2) {
    SAFEMODEL_RETURN_IF_ERROR(FlushOut());
    SAFEMODEL_RETURN_IF_ERROR(WriteDirect(bytes));
  } else {
    if (out_used_ + bytes.size() > kOutBufferBytes) SAFEMODEL_RETURN_IF_ERROR(FlushOut());
    if (!out_buf_) out_buf_.reset(new uint8_t[kOutBufferBytes]);
    std::memcpy(out_buf_.get() + out_used_, bytes.data(), bytes.size());
    out_used_ += bytes.size();
  }
  written_ += bytes.size();
  return write_behind_ != 0 ? StepWriteBehind() : Status::Ok();
}

// Fresh page-cache pages cost more than the copy into them (the kernel
// clears, accounts and later reclaims each; in a virtual machine the host
// may fault each in as well): on this project's 2-core guest an 8 GiB
// durable write took 0.94 s/GiB of which 0.8 in the kernel, and 0.31 s/GiB
// written behind like this (tests/bench/PROFILE.md, "Output written behind").
Status SafemodelWriter::StepWriteBehind() {
  const uint64_t end = written_ - out_used_;  // what the file holds
  if (end - behind_started_ < write_behind_) return Status::Ok();
  auto failed = [](int err) {
    return Status::IoError(std::string("writing the output failed: ") + std::strerror(err));
  };
  // Only this first call, which starts write-back and reports no earlier
  // error, may say the descriptor does not support it (or a policy forbids
  // it). A waiting call's error is the file's write-back error, which it
  // consumes for this descriptor: it always fails the write, or Commit's
  // fsync would no longer see it.
  if (sync_file_range(fd_, static_cast<off_t>(behind_started_), static_cast<off_t>(end - behind_started_),
                      SYNC_FILE_RANGE_WRITE) != 0) {
    const int err = errno;
    if (err == ESPIPE || err == EINVAL || err == ENOSYS || err == EPERM) {
      write_behind_ = 0;  // not a file the kernel writes back this way
      return Status::Ok();
    }
    return failed(err);
  }
  // HashFile reads back what was written before the input digest is known.
  const bool read_back = hash_file_ && !file_hasher_;
  if (!read_back && behind_started_ > behind_dropped_) {
    const auto from = static_cast<off_t>(behind_dropped_);
    const auto len = static_cast<off_t>(behind_started_ - behind_dropped_);
    const auto start = std::chrono::steady_clock::now();
    const int waited = sync_file_range(fd_, from, len,
                                       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
    const int err = errno;
    behind_waited_ += std::chrono::steady_clock::now() - start;
    if (waited != 0) return failed(err);
    // Clean now, so dropped; a failure here only leaves them cached.
    (void)posix_fadvise(fd_, from, len, POSIX_FADV_DONTNEED);
    behind_dropped_ = behind_started_;
  }
  behind_started_ = end;
  return Status::Ok();
}

Status SafemodelWriter::FlushOut() {
  if (out_used_ == 0) return Status::Ok();
  const size_t n = out_used_;
  out_used_ = 0;
  return WriteDirect(ByteView(out_buf_.get(), n));
}

Status SafemodelWriter::WriteZeros(uint64_t n) {
  while (n > 0) {
    uint64_t step = n < kZeroBlock ? n : kZeroBlock;
    SAFEMODEL_RETURN_IF_ERROR(WriteAll(ByteView(kZeros, step)));
    n -= step;
  }
  return Status::Ok();
}

namespace {

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// The serialised provenance with the input digest's placeholder, and where
// in the serialised header those 32 bytes sit. The provenance is field 6 of
// the header; only digest_algorithm (field 7) follows it, so it ends
// `after` bytes before the header does. The digest's place inside it is the
// first byte that differs between zeros and ones there.
struct ShaPlace {
  std::string provenance;  // as serialised, with zeros in the digest
  uint64_t provenance_at = 0;
  uint64_t sha_at = 0;
};

Result<ShaPlace> LocateSha256(const v1::Header& header, uint64_t header_len) {
  ShaPlace place;
  v1::Provenance p = header.provenance();
  p.set_input_sha256(std::string(32, '\0'));
  place.provenance = wire::SerializeDeterministic(p);
  p.set_input_sha256(std::string(32, '\xff'));
  const std::string ones = wire::SerializeDeterministic(p);
  uint64_t in_prov = 0;
  while (in_prov < ones.size() && place.provenance[in_prov] == ones[in_prov]) ++in_prov;
  v1::Header tail;
  tail.set_digest_algorithm(header.digest_algorithm());
  const uint64_t after = tail.ByteSizeLong();
  if (ones.size() != place.provenance.size() || in_prov + 32 > ones.size() ||
      header_len < ones.size() + after) {
    return Status::Internal("cannot locate the input digest in the serialised header");
  }
  place.provenance_at = header_len - after - ones.size();
  place.sha_at = place.provenance_at + in_prov;
  return place;
}

}  // namespace

Status SafemodelWriter::PwriteAll(ByteView bytes, uint64_t offset) {
  SAFEMODEL_RETURN_IF_ERROR(FlushOut());  // buffered bytes reach the file first
  return PwriteAt(bytes, offset);
}

Status SafemodelWriter::PwriteAt(ByteView bytes, uint64_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = pwrite(fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("writing the output failed: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status SafemodelWriter::PreadAll(uint8_t* out, uint64_t n, uint64_t offset) {
  SAFEMODEL_RETURN_IF_ERROR(FlushOut());  // buffered bytes reach the file first
  uint64_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd_, out + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return Status::IoError(std::string("reading back the output failed: ") +
                             (r < 0 ? std::strerror(errno) : "unexpected end of file"));
    }
    done += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

// Streams the header into the file rather than holding its serialisation:
// it can be as large as the header limit. Protobuf writes a message's
// fields in number order, so head_, the entries and the tail, one after
// the other, are the whole header's deterministic serialisation.
Status SafemodelWriter::StreamHeader(const v1::Header& tail, uint64_t header_len) {
  SAFEMODEL_RETURN_IF_ERROR(FlushOut());  // buffered bytes reach the file first
  {
    google::protobuf::io::FileOutputStream stream(fd_);
    {
      google::protobuf::io::CodedOutputStream coded(&stream);
      coded.SetSerializationDeterministic(true);
      coded.WriteRaw(head_.data(), static_cast<int>(head_.size()));
      tensors_.Serialize(&coded);
      tail.SerializeWithCachedSizes(&coded);
      if (coded.HadError()) return Status::IoError("writing the output header failed");
      if (static_cast<uint64_t>(coded.ByteCount()) != header_len) {
        return Status::Internal("the header written is not the size planned");
      }
    }
    if (!stream.Flush() || stream.GetErrno() != 0) {
      return Status::IoError(std::string("writing the output failed: ") +
                             std::strerror(stream.GetErrno()));
    }
  }
  written_ += header_len;
  return Status::Ok();
}

Result<std::unique_ptr<SafemodelWriter>> SafemodelWriter::Begin(int fd, v1::Header header) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::unique_ptr<SafemodelWriter> w, Plan(fd, std::move(header)));
  SAFEMODEL_RETURN_IF_ERROR(w->WriteHeader());
  return w;
}

Result<std::unique_ptr<SafemodelWriter>> SafemodelWriter::Plan(int fd, v1::Header header) {
  format::TensorTable tensors;
  for (const v1::TensorInfo& t : header.tensors()) tensors.Add(t);
  header.clear_tensors();
  return Plan(fd, std::move(tensors), std::move(header));
}

Result<std::unique_ptr<SafemodelWriter>> SafemodelWriter::Plan(int fd, format::TensorTable tensors,
                                                               v1::Header rest) {
  if (rest.tensors_size() != 0)
    return Status::Internal("tensor entries both in a table and in the header");
  // Fields 1 and 2 come before the tensors in the serialised header; the
  // rest, after them, is streamed from `tail`. On the heap from here on:
  // the sizes ByteSizeLong caches are what WriteHeader streams with, and a
  // moved message does not carry its own.
  v1::Header head;
  head.set_format_major(format::kMajorVersion);
  head.set_format_minor(format::kMinorVersion);
  auto tail = std::make_unique<v1::Header>(std::move(rest));
  tail->clear_format_major();
  tail->clear_format_minor();
  if (tail->digest_algorithm() == v1::DIGEST_INVALID) tail->set_digest_algorithm(v1::XXH3_128);
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t data_len, tensors.Layout());
  // A placeholder of the final size: Finish() writes the real digest over it.
  tail->mutable_provenance()->set_input_sha256(std::string(32, '\0'));
  std::string head_bytes = wire::SerializeDeterministic(head);
  const uint64_t header_len = head_bytes.size() + tensors.SerializedBytes() + tail->ByteSizeLong();
  if (header_len > kMaxHeaderBytes) {
    return Status::LimitExceeded("the header would be " + std::to_string(header_len) +
                                 " bytes, over the limit of " + std::to_string(kMaxHeaderBytes));
  }
  SAFEMODEL_ASSIGN_OR_RETURN(ShaPlace place, LocateSha256(*tail, header_len));

  const auto algorithm = static_cast<DigestAlgorithm>(tail->digest_algorithm());
  std::unique_ptr<SafemodelWriter> w(new SafemodelWriter(fd, algorithm));
  w->sha_at_ = place.sha_at;
  w->provenance_at_ = place.provenance_at;
  w->provenance_ = std::move(place.provenance);
  format::Prefix& p = w->prefix_;
  p.header_len = header_len;
  SAFEMODEL_ASSIGN_OR_RETURN(p.data_off, format::DataOffsetFor(p.header_len));
  p.data_len = data_len;
  p.trailer_off = p.data_off + data_len;
  w->hasher_ = MakeHasher(algorithm);
  w->digest_size_ = w->hasher_->Finish().size();
  w->tensors_ = std::move(tensors);
  w->head_ = std::move(head_bytes);
  w->pending_ = std::move(tail);
  return w;
}

Status SafemodelWriter::WriteHeader() {
  if (!pending_ || current_ != -1 || written_ != 0) {
    return Status::Internal("the header was already written");
  }
  std::unique_ptr<v1::Header> tail = std::move(pending_);
  // trailer_len is known only at Finish(); the prefix is rewritten then.
  uint8_t prefix_bytes[format::kPrefixBytes];
  format::EncodePrefix(prefix_, prefix_bytes);
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(ByteView(prefix_bytes, sizeof prefix_bytes)));
  SAFEMODEL_RETURN_IF_ERROR(StreamHeader(*tail, prefix_.header_len));
  // The provenance is where it was computed to be.
  std::string check(provenance_.size(), '\0');
  SAFEMODEL_RETURN_IF_ERROR(PreadAll(reinterpret_cast<uint8_t*>(check.data()), check.size(),
                                     format::kPrefixBytes + provenance_at_));
  if (check != provenance_) {
    return Status::Internal("the input digest is not where the header layout puts it");
  }
  provenance_ = std::string();

  tail.reset();  // frees the trees and findings now
  head_ = std::string();
  spill_at_ = prefix_.trailer_off + TrailerHeadBytes();
  SAFEMODEL_RETURN_IF_ERROR(WriteZeros(prefix_.data_off - written_));
  return Advance();
}

size_t SafemodelWriter::data_tensor_count() const {
  size_t n = 0;
  for (uint64_t i = 0; i < tensors_.size(); ++i) n += tensors_.alias(i) ? 0u : 1u;
  return n;
}

std::string SafemodelWriter::Name(size_t i) const { return std::string(tensors_.name(i)); }

uint64_t SafemodelWriter::planned_file_size() const {
  // A trailer entry is a tag, a length and at most a 32-byte digest.
  constexpr uint64_t kTrailerBytesPerTensor = 2 + 1 + 32;
  return prefix_.trailer_off + 64 + kTrailerBytesPerTensor * tensors_.size();
}

Status SafemodelWriter::Advance() {
  // Close the current tensor, then skip aliases (an empty digest each) and
  // open the next one.
  auto finish_digest = [&] {
    uint8_t d[Hasher::kMaxDigestBytes];
    const size_t n = hasher_->FinishInto(d);
    return AddTrailerEntry(ByteView(d, n));
  };
  if (current_ >= 0 && static_cast<uint64_t>(current_) < tensors_.size()) {
    SAFEMODEL_RETURN_IF_ERROR(finish_digest());
  }
  while (static_cast<uint64_t>(++current_) < tensors_.size()) {
    const auto i = static_cast<uint64_t>(current_);
    if (tensors_.alias(i)) {
      SAFEMODEL_RETURN_IF_ERROR(AddTrailerEntry(ByteView()));
      continue;
    }
    const uint64_t nbytes = tensors_.nbytes(i);
    const uint64_t offset = format::TensorTable::NextOffset(data_end_, nbytes);
    data_end_ = offset + nbytes;
    SAFEMODEL_RETURN_IF_ERROR(WriteZeros(prefix_.data_off + offset - written_));
    remaining_ = nbytes;
    if (remaining_ > 0) return Status::Ok();
    SAFEMODEL_RETURN_IF_ERROR(finish_digest());
  }
  remaining_ = 0;
  return FlushTrailerEntries();
}

// Digests are 16 or 32 bytes a tensor; for 100,000 small tensors they were
// 1.6 MB of the parent's peak (tests/bench/PROFILE.md, eleventh round).
Status SafemodelWriter::AddTrailerEntry(ByteView digest) {
  if (!spill_buf_) spill_buf_.reset(new uint8_t[kSpillBytes]);
  if (spill_used_ + kTrailerEntryHeadBytes + digest.size() > kSpillBytes) SAFEMODEL_RETURN_IF_ERROR(FlushTrailerEntries());
  spill_buf_[spill_used_++] = kDigestTag;
  spill_buf_[spill_used_++] = static_cast<uint8_t>(digest.size());
  if (!digest.empty()) std::memcpy(spill_buf_.get() + spill_used_, digest.data(), digest.size());
  spill_used_ += digest.size();
  return Status::Ok();
}

Status SafemodelWriter::FlushTrailerEntries() {
  if (spill_used_ == 0) return Status::Ok();
  // Past every byte written so far: nothing buffered needs to go first.
  SAFEMODEL_RETURN_IF_ERROR(PwriteAt(ByteView(spill_buf_.get(), spill_used_), spill_at_));
  spill_at_ += spill_used_;
  spill_used_ = 0;
  return Status::Ok();
}

uint64_t SafemodelWriter::TrailerHeadBytes() const {
  return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(static_cast<uint64_t>(algorithm_));
}

void SafemodelWriter::HashFile(InputSha256Source input_sha256) {
  hash_file_ = true;
  input_sha256_source_ = std::move(input_sha256);
}

uint64_t SafemodelWriter::TrailerLen() const {
  // v1::Trailer as Finish writes it: the algorithm (tag, varint), a digest
  // entry per tensor (tag, length, digest; empty for an alias), the header
  // digest (tag, length, digest).
  uint64_t len = TrailerHeadBytes() + kTrailerEntryHeadBytes + digest_size_;
  for (uint64_t i = 0; i < tensors_.size(); ++i)
    len += kTrailerEntryHeadBytes + (tensors_.alias(i) ? 0 : digest_size_);
  return len;
}

Status SafemodelWriter::StartFileHash(std::string_view input_sha256) {
  if (input_sha256.size() != 32) return Status::Internal("input digest is not 32 bytes");
  SAFEMODEL_RETURN_IF_ERROR(PwriteAll(AsBytes(input_sha256), format::kPrefixBytes + sha_at_));
  early_input_sha256_ = std::string(input_sha256);
  auto hasher = MakeHasher(DigestAlgorithm::kSha256);
  // The prefix as Finish will leave it (only trailer_len changes there).
  format::Prefix final_prefix = prefix_;
  final_prefix.trailer_len = TrailerLen();
  uint8_t prefix_bytes[format::kPrefixBytes];
  format::EncodePrefix(final_prefix, prefix_bytes);
  hasher->Update(ByteView(prefix_bytes, sizeof prefix_bytes));
  // What follows it, as written so far: final from here on (the header has
  // its input digest now), read back once.
  constexpr uint64_t kBlock = 1 << 20;
  std::unique_ptr<uint8_t[]> block(new uint8_t[kBlock]);
  for (uint64_t off = format::kPrefixBytes; off < written_;) {
    const uint64_t n = std::min(kBlock, written_ - off);
    SAFEMODEL_RETURN_IF_ERROR(PreadAll(block.get(), n, off));
    hasher->Update(ByteView(block.get(), n));
    off += n;
  }
  file_hasher_ = std::move(hasher);
  return Status::Ok();
}

Status SafemodelWriter::Append(ByteView bytes) {
  if (bytes.empty()) return Status::Ok();
  if (current_ < 0) return Status::Internal("tensor bytes before the header was written");
  if (hash_file_ && !file_hasher_ && input_sha256_source_) {
    if (std::optional<std::string> sha = input_sha256_source_(); sha.has_value()) {
      SAFEMODEL_RETURN_IF_ERROR(StartFileHash(*sha));
    }
  }
  if (complete()) {
    return Status::Malformed(std::to_string(bytes.size()) + " data bytes after the last tensor");
  }
  const size_t i = static_cast<size_t>(current_);
  if (bytes.size() > remaining_) {
    return Status::Malformed("tensor '" + Printable(Name(i)) + "' got " + std::to_string(bytes.size()) +
                             " bytes but needs only " + std::to_string(remaining_) + " more");
  }
  if (tensors_.is_bool(i)) {
    // The worker checks this too; the parent does not rely on it.
    if (size_t k = FirstNonBool(bytes); k < bytes.size()) {
      return Status::Malformed("tensor '" + Printable(Name(i)) + "': a bool byte is " +
                               std::to_string(bytes[k]) + " (a bool is 0 or 1)");
    }
  }
  hasher_->Update(bytes);
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(bytes));
  remaining_ -= bytes.size();
  if (remaining_ == 0) SAFEMODEL_RETURN_IF_ERROR(Advance());
  return Status::Ok();
}

Status SafemodelWriter::Finish(std::string_view input_sha256) {
  if (current_ < 0) return Status::Internal("the header was not written");
  if (!complete()) {
    return Status::Malformed("the data stream ended with tensor '" +
                             Printable(Name(static_cast<size_t>(current_))) + "' missing " +
                             std::to_string(remaining_) + " bytes");
  }
  if (input_sha256.size() != 32) return Status::Internal("input digest is not 32 bytes");
  if (hash_file_ && !file_hasher_) SAFEMODEL_RETURN_IF_ERROR(StartFileHash(input_sha256));
  if (file_hasher_ && early_input_sha256_ != input_sha256) {
    return Status::Internal("the input digest differs from the one the output hash started with");
  }
  SAFEMODEL_RETURN_IF_ERROR(PwriteAll(AsBytes(input_sha256), format::kPrefixBytes + sha_at_));

  // The trailer (v1::Trailer) serialised as protobuf would, field by field
  // and in field order: one std::string per digest in a message would cost
  // ~80 bytes per tensor. Aliases have an empty digest. The tensors'
  // entries are in the file already (AddTrailerEntry), where they belong.
  std::string head;
  head.push_back(static_cast<char>(kAlgorithmTag));
  PutVarint(&head, static_cast<uint64_t>(algorithm_));
  uint64_t trailer_len = head.size() + kTrailerEntryHeadBytes + digest_size_;  // + header digest
  for (uint64_t i = 0; i < tensors_.size(); ++i)
    trailer_len += kTrailerEntryHeadBytes + (tensors_.alias(i) ? 0 : digest_size_);
  if (trailer_len != TrailerLen()) return Status::Internal("the trailer's length is computed two ways");
  const uint64_t entries_at = prefix_.trailer_off + head.size();
  if (spill_used_ != 0 || spill_at_ != prefix_.trailer_off + trailer_len - kTrailerEntryHeadBytes - digest_size_) {
    return Status::Internal("the tensors' digests are not all in the trailer");
  }
  // The header digest covers the final prefix, whose trailer_len depends on
  // the trailer, which holds the header digest: the digest's size is fixed
  // per algorithm, so the length is known before the digest.
  prefix_.trailer_len = trailer_len;
  uint8_t prefix_bytes[format::kPrefixBytes];
  format::EncodePrefix(prefix_, prefix_bytes);
  auto hasher = MakeHasher(algorithm_);
  hasher->Update(ByteView(prefix_bytes, sizeof prefix_bytes));
  // The header as it is in the file now, read back in blocks (through the
  // trailer's buffer, free now: a block of its own was 256 KiB of the
  // parent's peak for 100,000 small tensors).
  if (!spill_buf_) spill_buf_.reset(new uint8_t[kSpillBytes]);
  for (uint64_t off = 0; off < prefix_.header_len; off += kSpillBytes) {
    const uint64_t n = std::min<uint64_t>(kSpillBytes, prefix_.header_len - off);
    SAFEMODEL_RETURN_IF_ERROR(PreadAll(spill_buf_.get(), n, format::kPrefixBytes + off));
    hasher->Update(ByteView(spill_buf_.get(), static_cast<size_t>(n)));
  }
  const std::string header_digest = hasher->Finish();

  // The tensors' entries are read back and written again where they are,
  // so that the trailer, like every other byte, is written in order (the
  // file's running SHA-256 and the write-behind see it as they see data).
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(AsBytes(head)));
  for (uint64_t off = entries_at; off < spill_at_;) {
    const uint64_t n = std::min<uint64_t>(kSpillBytes, spill_at_ - off);
    SAFEMODEL_RETURN_IF_ERROR(PreadAll(spill_buf_.get(), n, off));
    SAFEMODEL_RETURN_IF_ERROR(WriteAll(ByteView(spill_buf_.get(), static_cast<size_t>(n))));
    off += n;
  }
  std::string chunk;
  chunk.push_back(static_cast<char>(kHeaderDigestTag));
  chunk.push_back(static_cast<char>(header_digest.size()));
  chunk += header_digest;
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(AsBytes(chunk)));
  if (written_ != prefix_.trailer_off + trailer_len) {
    return Status::Internal("the trailer is not the size announced in the prefix");
  }

  // The prefix with its final trailer length (the header is final already);
  // the file's SHA-256 started from this prefix (StartFileHash).
  SAFEMODEL_RETURN_IF_ERROR(PwriteAll(ByteView(prefix_bytes, sizeof prefix_bytes), 0));
  if (file_hasher_) file_sha256_ = file_hasher_->Finish();
  return Status::Ok();
}

}  // namespace safemodel
