// Streaming writer of .safemodel files (used by the parent process only).
//
// Begin() lays out the tensors canonically and writes the prefix and header;
// Append() takes the data region bytes tensor by tensor, in header order,
// writing zero padding itself and refusing any byte a tensor does not need;
// Finish() fills in the input digest and writes the trailer. Digests are
// computed here, by the trusted side, never taken from the worker.
#ifndef SAFEMODEL_CONVERTER_WRITER_H_
#define SAFEMODEL_CONVERTER_WRITER_H_

#include <memory>
#include <string>

#include "converter/byte_reader.h"
#include "converter/digest.h"
#include "converter/format.h"
#include "proto/safemodel.pb.h"

namespace safemodel {

class SafemodelWriter {
 public:
  // `header` holds sorted tensors, architecture, metadata and provenance
  // (input_sha256 is filled in by Finish). Offsets are assigned here.
  // Begin is Plan followed by WriteHeader.
  static Result<std::unique_ptr<SafemodelWriter>> Begin(int fd, v1::Header header);

  // Lays the file out without writing anything, so that its size
  // (planned_file_size) can be reserved before the first byte; errors are
  // about the header only, never I/O.
  static Result<std::unique_ptr<SafemodelWriter>> Plan(int fd, v1::Header header);
  // Writes the prefix, the header and the padding before the first tensor.
  Status WriteHeader();

  // Appends bytes of the current tensor. Fails if they are more than the
  // tensor still needs, or if every tensor is complete.
  Status Append(ByteView bytes);

  // Index (in header order) of the tensor the next bytes belong to, and how
  // many bytes it still needs; index == tensor count when all are complete.
  int current_tensor() const { return current_; }
  uint64_t current_remaining() const { return remaining_; }
  bool complete() const { return current_ == header_.tensors_size(); }

  // Sets provenance.input_sha256 (32 bytes), rewrites the header in place,
  // and writes the trailer. Fails unless every tensor is complete.
  Status Finish(std::string_view input_sha256);

  const v1::Header& header() const { return header_; }
  // The size the finished file will have at most (the trailer's exact size
  // is known only at Finish).
  uint64_t planned_file_size() const;
  uint64_t file_size() const { return written_; }

 private:
  SafemodelWriter(int fd, v1::Header header) : fd_(fd), header_(std::move(header)) {}
  Status WriteAll(ByteView bytes);
  Status WriteZeros(uint64_t n);
  // Moves to the next tensor that needs bytes, writing padding for it.
  Status Advance();

  int fd_;
  v1::Header header_;
  format::Prefix prefix_;
  std::unique_ptr<Hasher> hasher_;
  std::string header_bytes_;
  uint64_t written_ = 0;      // bytes written so far (file position)
  int current_ = -1;
  uint64_t remaining_ = 0;
  std::vector<std::string> digests_;
};

}  // namespace safemodel

#endif  // SAFEMODEL_CONVERTER_WRITER_H_
