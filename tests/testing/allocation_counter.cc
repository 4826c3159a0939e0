#include "tests/testing/allocation_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_news{0};
}  // namespace

// GCC, seeing an inlined new[] beside this free in a caller, can take them
// for a mismatched pair; operator new[] calls this operator new, so they
// match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace safemodel::testing {

uint64_t AllocationCount() { return g_news.load(std::memory_order_relaxed); }

}  // namespace safemodel::testing
