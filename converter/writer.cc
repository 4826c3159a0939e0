#include "converter/writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "safemodel/limits.h"

namespace safemodel {

namespace {
constexpr size_t kZeroBlock = 4096;
const uint8_t kZeros[kZeroBlock] = {};
}  // namespace

Status SafemodelWriter::WriteAll(ByteView bytes) {
  const uint8_t* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IoError(std::string("writing the output failed: ") + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status SafemodelWriter::WriteZeros(uint64_t n) {
  while (n > 0) {
    uint64_t step = n < kZeroBlock ? n : kZeroBlock;
    SAFEMODEL_RETURN_IF_ERROR(WriteAll(ByteView(kZeros, step)));
    n -= step;
  }
  return Status::Ok();
}

Result<std::unique_ptr<SafemodelWriter>> SafemodelWriter::Begin(int fd, v1::Header header) {
  SAFEMODEL_ASSIGN_OR_RETURN(std::unique_ptr<SafemodelWriter> w, Plan(fd, std::move(header)));
  SAFEMODEL_RETURN_IF_ERROR(w->WriteHeader());
  return w;
}

Result<std::unique_ptr<SafemodelWriter>> SafemodelWriter::Plan(int fd, v1::Header header) {
  header.set_format_major(format::kMajorVersion);
  header.set_format_minor(format::kMinorVersion);
  if (header.digest_algorithm() == v1::DIGEST_INVALID) header.set_digest_algorithm(v1::XXH3_128);
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t data_len,
                             format::LayoutTensors(header.mutable_tensors(), true));
  // A placeholder of the final size: Finish() writes the real digest over it.
  header.mutable_provenance()->set_input_sha256(std::string(32, '\0'));

  std::unique_ptr<SafemodelWriter> w(new SafemodelWriter(fd, std::move(header)));
  w->header_bytes_ = format::SerializeDeterministic(w->header_);
  if (w->header_bytes_.size() > kMaxHeaderBytes) {
    return Status::LimitExceeded("the header would be " + std::to_string(w->header_bytes_.size()) +
                                 " bytes, over the limit of " + std::to_string(kMaxHeaderBytes));
  }
  format::Prefix& p = w->prefix_;
  p.header_len = w->header_bytes_.size();
  SAFEMODEL_ASSIGN_OR_RETURN(p.data_off, format::DataOffsetFor(p.header_len));
  p.data_len = data_len;
  p.trailer_off = p.data_off + data_len;
  w->hasher_ = MakeHasher(static_cast<DigestAlgorithm>(w->header_.digest_algorithm()));
  w->digests_.resize(static_cast<size_t>(w->header_.tensors_size()));
  return w;
}

Status SafemodelWriter::WriteHeader() {
  if (current_ != -1 || written_ != 0) return Status::Internal("the header was already written");
  // trailer_len is known only at Finish(); the prefix is rewritten then.
  uint8_t prefix_bytes[format::kPrefixBytes];
  format::EncodePrefix(prefix_, prefix_bytes);
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(ByteView(prefix_bytes, sizeof prefix_bytes)));
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(AsBytes(header_bytes_)));
  SAFEMODEL_RETURN_IF_ERROR(WriteZeros(prefix_.data_off - written_));
  return Advance();
}

uint64_t SafemodelWriter::planned_file_size() const {
  // A trailer entry is a tag, a length and at most a 32-byte digest.
  constexpr uint64_t kTrailerBytesPerTensor = 2 + 1 + 32;
  return prefix_.trailer_off + 64 +
         kTrailerBytesPerTensor * static_cast<uint64_t>(header_.tensors_size());
}

Status SafemodelWriter::Advance() {
  // Close the current tensor, then skip aliases and open the next one.
  if (current_ >= 0 && current_ < header_.tensors_size()) {
    digests_[static_cast<size_t>(current_)] = hasher_->Finish();
  }
  while (++current_ < header_.tensors_size()) {
    const v1::TensorInfo& t = header_.tensors(current_);
    if (!t.alias_of().empty()) continue;
    SAFEMODEL_RETURN_IF_ERROR(WriteZeros(prefix_.data_off + t.offset() - written_));
    remaining_ = t.nbytes();
    if (remaining_ > 0) return Status::Ok();
    digests_[static_cast<size_t>(current_)] = hasher_->Finish();
  }
  remaining_ = 0;
  return Status::Ok();
}

Status SafemodelWriter::Append(ByteView bytes) {
  if (bytes.empty()) return Status::Ok();
  if (complete()) {
    return Status::Malformed(std::to_string(bytes.size()) + " data bytes after the last tensor");
  }
  if (bytes.size() > remaining_) {
    return Status::Malformed("tensor '" + Printable(header_.tensors(current_).name()) +
                             "' got " + std::to_string(bytes.size()) + " bytes but needs only " +
                             std::to_string(remaining_) + " more");
  }
  if (header_.tensors(current_).dtype() == v1::BOOL) {
    // The worker checks this too; the parent does not rely on it.
    if (size_t i = FirstNonBool(bytes); i < bytes.size()) {
      return Status::Malformed("tensor '" + Printable(header_.tensors(current_).name()) +
                               "': a bool byte is " + std::to_string(bytes[i]) +
                               " (a bool is 0 or 1)");
    }
  }
  hasher_->Update(bytes);
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(bytes));
  remaining_ -= bytes.size();
  if (remaining_ == 0) SAFEMODEL_RETURN_IF_ERROR(Advance());
  return Status::Ok();
}

Status SafemodelWriter::Finish(std::string_view input_sha256) {
  if (!complete()) {
    return Status::Malformed("the data stream ended with tensor '" +
                             Printable(header_.tensors(current_).name()) + "' missing " +
                             std::to_string(remaining_) + " bytes");
  }
  if (input_sha256.size() != 32) return Status::Internal("input digest is not 32 bytes");
  header_.mutable_provenance()->set_input_sha256(std::string(input_sha256));
  std::string final_header = format::SerializeDeterministic(header_);
  if (final_header.size() != header_bytes_.size()) {
    return Status::Internal("header size changed when the input digest was filled in");
  }
  header_bytes_ = std::move(final_header);

  v1::Trailer trailer;
  trailer.set_digest_algorithm(header_.digest_algorithm());
  for (const std::string& d : digests_) trailer.add_tensor_digests(d);
  // The header digest covers the final prefix, whose trailer_len depends on
  // the trailer, which holds the header digest: break the cycle by fixing the
  // digest size first (it is constant per algorithm).
  auto hasher = MakeHasher(static_cast<DigestAlgorithm>(header_.digest_algorithm()));
  trailer.set_header_digest(std::string(hasher->Finish().size(), '\0'));
  prefix_.trailer_len = format::SerializeDeterministic(trailer).size();
  uint8_t prefix_bytes[format::kPrefixBytes];
  format::EncodePrefix(prefix_, prefix_bytes);
  hasher->Update(ByteView(prefix_bytes, sizeof prefix_bytes));
  hasher->Update(AsBytes(header_bytes_));
  trailer.set_header_digest(hasher->Finish());
  std::string trailer_bytes = format::SerializeDeterministic(trailer);
  if (trailer_bytes.size() != prefix_.trailer_len) {
    return Status::Internal("trailer size changed when the header digest was filled in");
  }
  SAFEMODEL_RETURN_IF_ERROR(WriteAll(AsBytes(trailer_bytes)));

  // Rewrite prefix and header in place with their final contents.
  auto pwrite_all = [&](ByteView bytes, uint64_t offset) -> Status {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = pwrite(fd_, bytes.data() + done, bytes.size() - done,
                         static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::IoError(std::string("writing the output failed: ") + std::strerror(errno));
      }
      done += static_cast<size_t>(n);
    }
    return Status::Ok();
  };
  SAFEMODEL_RETURN_IF_ERROR(pwrite_all(ByteView(prefix_bytes, sizeof prefix_bytes), 0));
  SAFEMODEL_RETURN_IF_ERROR(pwrite_all(AsBytes(header_bytes_), format::kPrefixBytes));
  return Status::Ok();
}

}  // namespace safemodel
