#include "proto/base/keyed_hash.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>

namespace safemodel {

namespace {

inline uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

struct SipState {
  uint64_t v0, v1, v2, v3;
  void Round() {
    v0 += v1;
    v1 = Rotl(v1, 13);
    v1 ^= v0;
    v0 = Rotl(v0, 32);
    v2 += v3;
    v3 = Rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = Rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = Rotl(v1, 17);
    v1 ^= v2;
    v2 = Rotl(v2, 32);
  }
};

uint64_t Sip(uint64_t k0, uint64_t k1, const uint8_t* in, size_t n) {
  // Initialisation constants: "somepseudorandomlygeneratedbytes".
  SipState s{k0 ^ 0x736f6d6570736575ULL, k1 ^ 0x646f72616e646f6dULL, k0 ^ 0x6c7967656e657261ULL,
             k1 ^ 0x7465646279746573ULL};
  const size_t whole = n - n % 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = Load64(in + i);
    s.v3 ^= m;
    s.Round();
    s.Round();
    s.v0 ^= m;
  }
  // Last block: the remaining bytes, and the length's low byte on top.
  uint64_t last = static_cast<uint64_t>(n & 0xFF) << 56;
  for (size_t i = 0; i < n % 8; ++i) last |= static_cast<uint64_t>(in[whole + i]) << (8 * i);
  s.v3 ^= last;
  s.Round();
  s.Round();
  s.v0 ^= last;
  s.v2 ^= 0xFF;
  for (int i = 0; i < 4; ++i) s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

struct ProcessKey {
  uint64_t k0 = 0, k1 = 0;
  bool ok = false;
};

// getrandom() first; /dev/urandom where the call does not exist (old
// kernels, some container runtimes).
bool FillRandom(uint8_t* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(buf + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    break;
  }
  if (got == n) return true;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (!(r < 0 && errno == EINTR)) {
      break;
    }
  }
  close(fd);
  return got == n;
}

// Without a kernel source of randomness (a host process confined so that
// neither getrandom nor /dev/urandom works): the clock and the addresses
// ASLR chose, mixed. A file's author cannot observe them, so keys stay
// unpredictable to it; the worker does not settle for this (SeedKeyedHash()
// reports it and PrepareLibraries fails).
void FallbackKey(uint8_t out[16]) {
  const int on_stack = 0;
  const uint64_t parts[4] = {
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()),
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()),
      static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&on_stack)),
      static_cast<uint64_t>(reinterpret_cast<uintptr_t>(&FallbackKey))};
  const uint8_t fixed[16] = {0x73, 0x61, 0x66, 0x65, 0x6d, 0x6f, 0x64, 0x65,
                             0x6c, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x31};
  const uint64_t a = Sip(Load64(fixed), Load64(fixed + 8), reinterpret_cast<const uint8_t*>(parts),
                         sizeof parts);
  const uint64_t b = Sip(a, ~a, reinterpret_cast<const uint8_t*>(parts), sizeof parts);
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<uint8_t>(a >> (8 * i));
    out[8 + i] = static_cast<uint8_t>(b >> (8 * i));
  }
}

const ProcessKey& Key() {
  static const ProcessKey key = [] {
    ProcessKey k;
    uint8_t buf[16];
    k.ok = FillRandom(buf, sizeof buf);
    if (!k.ok) FallbackKey(buf);
    k.k0 = Load64(buf);
    k.k1 = Load64(buf + 8);
    return k;
  }();
  return key;
}

}  // namespace

bool SeedKeyedHash() { return Key().ok; }

uint64_t SipHash24(const uint8_t key[16], const void* data, size_t n) {
  return Sip(Load64(key), Load64(key + 8), static_cast<const uint8_t*>(data), n);
}

uint64_t KeyedHash(const void* data, size_t n, uint64_t domain) {
  const ProcessKey& k = Key();
  return Sip(k.k0, k.k1 ^ domain, static_cast<const uint8_t*>(data), n);
}

uint64_t KeyedHashU64(uint64_t v, uint64_t domain) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  return KeyedHash(b, sizeof b, domain);
}

void KeyedViewSet::Reserve(size_t n) {
  size_t slots = kMinSlots;
  while (slots < 2 * n) slots *= 2;
  if (slots > slots_.size()) Grow(slots);
}

size_t KeyedViewSet::Probe(std::string_view view, uint64_t hash) const {
  const size_t mask = slots_.size() - 1;
  const auto tag = static_cast<uint32_t>(hash);
  for (size_t i = static_cast<size_t>(hash >> 32) & mask;; i = (i + 1) & mask) {
    const Slot& s = slots_[i];
    if (s.data == nullptr) return i;
    if (s.tag == tag && std::string_view(s.data, s.size) == view) return i;
  }
}

void KeyedViewSet::Grow(size_t slots) {
  std::vector<Slot> old(slots);
  old.swap(slots_);
  for (const Slot& s : old) {
    if (s.data == nullptr) continue;
    const std::string_view view(s.data, s.size);
    slots_[Probe(view, KeyedHash(view))] = s;
  }
}

bool KeyedViewSet::Insert(std::string_view view) {
  // Views longer than 4 GiB are not names; the size is kept in 32 bits.
  if (view.size() > UINT32_MAX) __builtin_trap();
  if (2 * (count_ + 1) > slots_.size()) Grow(std::max<size_t>(kMinSlots, 2 * slots_.size()));
  const uint64_t hash = KeyedHash(view);
  Slot& s = slots_[Probe(view, hash)];
  if (s.data != nullptr) return false;
  s = {view.data() == nullptr ? "" : view.data(), static_cast<uint32_t>(view.size()),
       static_cast<uint32_t>(hash)};
  ++count_;
  return true;
}

bool KeyedViewSet::Contains(std::string_view view) const {
  if (slots_.empty()) return false;
  return slots_[Probe(view, KeyedHash(view))].data != nullptr;
}

}  // namespace safemodel
