// Keyed hashing for every hash table whose keys come from an input file.
//
// An unkeyed hash (std::hash, FNV, a fixed-seed Murmur) lets a file choose
// keys that all land in one bucket: each insert then compares against every
// earlier key and a table of n keys costs n^2 (issue 8: a 880 KB pickle of
// 55,000 colliding tuples took 56 s). SipHash-2-4 under a secret 128-bit key
// drawn once per process makes collisions unpredictable to whoever wrote the
// file, so every table stays O(1) per operation in expectation.
//
// The key comes from getrandom() (or /dev/urandom). SeedKeyedHash() draws it;
// the sandboxed worker calls it (through loader::PrepareLibraries) before its
// seccomp lockdown, which forbids getrandom. Elsewhere the key is drawn on
// first use.
// Hash values differ from process to process, so nothing may depend on the
// iteration order of a keyed table (outputs are deterministic regardless).
#ifndef SAFEMODEL_PROTO_BASE_KEYED_HASH_H_
#define SAFEMODEL_PROTO_BASE_KEYED_HASH_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace safemodel {

// Draws the process key if it was not drawn yet. False if the kernel gave no
// randomness: the key then comes from the clock and ASLR addresses (still
// unknown to a file's author), which the sandboxed worker refuses to use.
bool SeedKeyedHash();

// SipHash-2-4 (Aumasson and Bernstein, 2012) of `n` bytes under `key`
// (16 bytes, little-endian k0 then k1). Exposed for the test vectors.
uint64_t SipHash24(const uint8_t key[16], const void* data, size_t n);

// SipHash-2-4 under the process key. `domain` is mixed into the key so that
// equal bytes of different kinds (a str and a bytes object) hash apart.
uint64_t KeyedHash(const void* data, size_t n, uint64_t domain = 0);
inline uint64_t KeyedHash(std::string_view s, uint64_t domain = 0) {
  return KeyedHash(s.data(), s.size(), domain);
}
uint64_t KeyedHashU64(uint64_t v, uint64_t domain = 0);

// Functors for std::unordered_* containers keyed by file contents.
struct KeyedStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return KeyedHash(s); }
};
struct KeyedU64Hash {
  size_t operator()(uint64_t v) const { return KeyedHashU64(v); }
};

using KeyedStringSet = std::unordered_set<std::string, KeyedStringHash, std::equal_to<>>;
using KeyedStringViewSet = std::unordered_set<std::string_view, KeyedStringHash, std::equal_to<>>;
template <typename V>
using KeyedStringMap = std::unordered_map<std::string, V, KeyedStringHash, std::equal_to<>>;
template <typename K, typename V>
using KeyedIntMap = std::unordered_map<K, V, KeyedU64Hash>;

// A set of string views (the caller keeps the bytes) for one pass over a
// file's names: open addressing under the keyed hash, in one block sized by
// Reserve (at most half full; it doubles past that). A node set made a heap
// block per name, and freed them in its buckets' order, which differs from
// process to process: the holes it left under the next phase's allocations
// moved a converter's peak by 3.4 MB from run to run (100,000 zip names,
// tests/bench/PROFILE.md). One block leaves no holes.
class KeyedViewSet {
 public:
  // Room for `n` views without growing.
  void Reserve(size_t n);
  // Adds `view`; false if an equal view was there.
  bool Insert(std::string_view view);
  bool Contains(std::string_view view) const;
  size_t size() const { return count_; }

 private:
  // The smallest table: a few names cost one small block.
  static constexpr size_t kMinSlots = 16;
  struct Slot {
    const char* data = nullptr;  // null: empty (an empty view is stored as "")
    uint32_t size = 0;
    uint32_t tag = 0;  // the hash's low 32 bits
  };
  // The slot holding `view` or the empty one where it would go.
  size_t Probe(std::string_view view, uint64_t hash) const;
  void Grow(size_t slots);
  std::vector<Slot> slots_;
  size_t count_ = 0;
};

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_BASE_KEYED_HASH_H_
