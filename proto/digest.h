// Streaming digests of tensor bytes: XXH3-128 (default, ~18 GB/s here) and
// SHA-256 (on request, for signing workflows that need a cryptographic hash).
#ifndef SAFEMODEL_PROTO_DIGEST_H_
#define SAFEMODEL_PROTO_DIGEST_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "proto/base/byte_reader.h"
#include "safemodel/reader.h"

namespace safemodel {

class Hasher {
 public:
  virtual ~Hasher() = default;
  virtual void Update(ByteView bytes) = 0;
  // The digest bytes (16 for XXH3-128 in canonical big-endian form, 32 for
  // SHA-256). The hasher is reset afterwards and can be reused.
  virtual std::string Finish() = 0;
  // The same into `out`, which has room for kMaxDigestBytes; returns the
  // digest's size. No string per digest: the writer finishes one per tensor.
  static constexpr size_t kMaxDigestBytes = 32;
  virtual size_t FinishInto(uint8_t* out) = 0;
};

std::unique_ptr<Hasher> MakeHasher(DigestAlgorithm algorithm);

// One-shot helpers.
std::string Digest(DigestAlgorithm algorithm, ByteView bytes);
std::string Sha256(ByteView bytes);
std::string ToHex(std::string_view bytes);

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_DIGEST_H_
