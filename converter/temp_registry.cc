#include "converter/temp_registry.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "safemodel/convert.h"

namespace safemodel {
namespace internal {

namespace {

// A process rarely runs more than a few conversions at once, and only those
// that fell back to a named temporary file hold a slot; 256 is far beyond
// any batch size the pipeline's two-core budget makes useful.
constexpr size_t kSlots = 256;

// A slot's state word: generation << 2 | phase. The generation changes each
// time the slot is claimed, so an owner never releases a slot that a
// handler freed and someone else claimed since.
enum Phase : uint64_t { kFree = 0, kWriting = 1, kArmed = 2, kRemoving = 3 };

struct Slot {
  std::atomic<uint64_t> state{0};
  int dir_fd = -1;
  char name[kMaxTempNameBytes + 1] = {};
};

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "the signal handler needs a lock-free state word");

Slot g_slots[kSlots];

uint64_t PhaseOf(uint64_t s) { return s & 3; }
uint64_t GenerationOf(uint64_t s) { return s >> 2; }
uint64_t Make(uint64_t generation, uint64_t phase) { return generation << 2 | phase; }

}  // namespace

SignalBlock::SignalBlock() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old_);
}

SignalBlock::~SignalBlock() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

bool TempRegistration::Arm(int dir_fd, std::string_view name) {
  Release();
  if (name.empty() || name.size() > kMaxTempNameBytes) return false;
  for (size_t i = 0; i < kSlots; ++i) {
    Slot& slot = g_slots[i];
    uint64_t s = slot.state.load(std::memory_order_acquire);
    if (PhaseOf(s) != kFree) continue;
    const uint64_t generation = GenerationOf(s) + 1;
    if (!slot.state.compare_exchange_strong(s, Make(generation, kWriting),
                                            std::memory_order_acq_rel)) {
      continue;
    }
    slot.dir_fd = dir_fd;
    std::memcpy(slot.name, name.data(), name.size());
    slot.name[name.size()] = '\0';
    slot.state.store(Make(generation, kArmed), std::memory_order_release);
    slot_ = static_cast<int>(i);
    generation_ = generation;
    return true;
  }
  return false;
}

void TempRegistration::Release() {
  if (slot_ < 0) return;
  Slot& slot = g_slots[slot_];
  for (;;) {
    uint64_t s = slot.state.load(std::memory_order_acquire);
    if (GenerationOf(s) != generation_ || PhaseOf(s) == kFree) break;
    if (PhaseOf(s) == kArmed &&
        slot.state.compare_exchange_strong(s, Make(generation_, kFree), std::memory_order_acq_rel)) {
      break;
    }
    // A handler on another thread is unlinking the name right now.
    sched_yield();
  }
  slot_ = -1;
}

void RemoveRegisteredTemporaries() {
  for (Slot& slot : g_slots) {
    uint64_t s = slot.state.load(std::memory_order_acquire);
    if (PhaseOf(s) != kArmed) continue;
    if (!slot.state.compare_exchange_strong(s, Make(GenerationOf(s), kRemoving),
                                            std::memory_order_acq_rel)) {
      continue;
    }
    unlinkat(slot.dir_fd, slot.name, 0);
    slot.state.store(Make(GenerationOf(s), kFree), std::memory_order_release);
  }
}

}  // namespace internal

void RemoveTemporaryOutputs() { internal::RemoveRegisteredTemporaries(); }

}  // namespace safemodel
