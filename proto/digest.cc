#include "proto/digest.h"

// SHA256_Init/Update/Final: deprecated in OpenSSL 3 in favour of EVP, kept
// (not removed) in every 3.x. Used on purpose: the same SHA-NI block
// function as EVP's SHA-256, without EVP's first-use initialisation, which
// loads the providers and reads openssl.cnf (0.5-0.8 ms of CPU per process,
// and a descriptor opened on the hashing thread while the conversion counts
// its own: tests/bench/PROFILE.md, branch tinyh5).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>
#include <xxhash.h>

#include <cstring>
#if defined(__x86_64__)
// Debian's libxxhash exports a dispatcher that picks the AVX2 or AVX-512
// kernel at run time (the plain entry points are its SSE2 build): including
// this header routes XXH3_128bits_update to it. 0.012 s of CPU per GiB
// against 0.052 s on this project's machines (tests/bench/PROFILE.md); the
// digest is the same function, so the same bytes.
#include <xxh_x86dispatch.h>
#endif

namespace safemodel {
namespace {

class Xxh3Hasher final : public Hasher {
 public:
  Xxh3Hasher() : state_(XXH3_createState()) { XXH3_128bits_reset(state_); }
  ~Xxh3Hasher() override { XXH3_freeState(state_); }
  Xxh3Hasher(const Xxh3Hasher&) = delete;
  Xxh3Hasher& operator=(const Xxh3Hasher&) = delete;

  void Update(ByteView bytes) override { XXH3_128bits_update(state_, bytes.data(), bytes.size()); }
  std::string Finish() override {
    uint8_t out[kMaxDigestBytes];
    return std::string(reinterpret_cast<const char*>(out), FinishInto(out));
  }
  size_t FinishInto(uint8_t* out) override {
    XXH128_canonical_t canonical;
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state_));
    XXH3_128bits_reset(state_);
    static_assert(sizeof canonical.digest <= kMaxDigestBytes);
    std::memcpy(out, canonical.digest, sizeof canonical.digest);
    return sizeof canonical.digest;
  }

 private:
  XXH3_state_t* state_;
};

class Sha256Hasher final : public Hasher {
 public:
  Sha256Hasher() { SHA256_Init(&ctx_); }
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(ByteView bytes) override { SHA256_Update(&ctx_, bytes.data(), bytes.size()); }
  std::string Finish() override {
    uint8_t out[kMaxDigestBytes];
    return std::string(reinterpret_cast<const char*>(out), FinishInto(out));
  }
  size_t FinishInto(uint8_t* out) override {
    static_assert(SHA256_DIGEST_LENGTH <= kMaxDigestBytes);
    SHA256_Final(out, &ctx_);
    SHA256_Init(&ctx_);
    return SHA256_DIGEST_LENGTH;
  }

 private:
  SHA256_CTX ctx_;
};

}  // namespace

std::unique_ptr<Hasher> MakeHasher(DigestAlgorithm algorithm) {
  if (algorithm == DigestAlgorithm::kSha256) return std::make_unique<Sha256Hasher>();
  return std::make_unique<Xxh3Hasher>();
}

std::string Digest(DigestAlgorithm algorithm, ByteView bytes) {
  auto h = MakeHasher(algorithm);
  h->Update(bytes);
  return h->Finish();
}

std::string Sha256(ByteView bytes) { return Digest(DigestAlgorithm::kSha256, bytes); }

std::string ToHex(std::string_view bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace safemodel
