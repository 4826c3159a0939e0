#include "tests/testing/allocation_counter.h"

#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_news{0};
std::atomic<uint64_t> g_live{0};
std::atomic<uint64_t> g_peak{0};
}  // namespace

// GCC, seeing an inlined new[] beside this free in a caller, can take them
// for a mismatched pair; operator new[] calls this operator new, so they
// match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  const uint64_t live = g_live.fetch_add(malloc_usable_size(p), std::memory_order_relaxed) +
                        malloc_usable_size(p);
  uint64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
  return p;
}
void operator delete(void* p) noexcept {
  if (p != nullptr) g_live.fetch_sub(malloc_usable_size(p), std::memory_order_relaxed);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }

namespace safemodel::testing {

uint64_t AllocationCount() { return g_news.load(std::memory_order_relaxed); }
uint64_t LiveBytes() { return g_live.load(std::memory_order_relaxed); }
uint64_t PeakLiveBytes() { return g_peak.load(std::memory_order_relaxed); }
void ResetPeakLiveBytes() { g_peak.store(g_live.load(std::memory_order_relaxed), std::memory_order_relaxed); }

}  // namespace safemodel::testing
