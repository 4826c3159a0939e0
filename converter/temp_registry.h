// Names of temporary output files that exist only while a conversion runs,
// kept where an async-signal-safe function can find and remove them
// (RemoveTemporaryOutputs in safemodel/convert.h).
//
// The registry is a fixed array of slots, each guarded by one lock-free
// atomic word, so that a signal handler can walk it on any thread at any
// moment: no allocation, no lock, only unlinkat(2) on the names it finds.
#ifndef SAFEMODEL_CONVERTER_TEMP_REGISTRY_H_
#define SAFEMODEL_CONVERTER_TEMP_REGISTRY_H_

#include <signal.h>

#include <cstdint>
#include <string_view>

namespace safemodel::internal {

// Longest temporary name the registry holds (".sm-" + 6 characters).
inline constexpr size_t kMaxTempNameBytes = 15;

// Blocks every blockable signal on the calling thread while it lives, so that
// a handler cannot run on this thread between creating a name and recording
// it (or between renaming it and forgetting it). Other threads keep their
// masks: a host's handler on another thread still finds the name recorded.
class SignalBlock {
 public:
  SignalBlock();
  ~SignalBlock();
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  sigset_t old_;
};

// One recorded name: `name` in the directory `dir_fd`, removed by
// RemoveRegisteredTemporaries(). The descriptor must stay open while the
// registration is armed; Release() waits for a handler that is removing the
// name on another thread, so closing it afterwards is safe.
class TempRegistration {
 public:
  TempRegistration() = default;
  ~TempRegistration() { Release(); }
  TempRegistration(const TempRegistration&) = delete;
  TempRegistration& operator=(const TempRegistration&) = delete;

  // Records the name; false if it is too long or every slot is taken.
  bool Arm(int dir_fd, std::string_view name);
  // Forgets the name (renamed into place, or removed by its owner).
  void Release();
  bool armed() const { return slot_ >= 0; }

 private:
  int slot_ = -1;
  uint64_t generation_ = 0;
};

// Unlinks every recorded name. Async-signal-safe.
void RemoveRegisteredTemporaries();

}  // namespace safemodel::internal

#endif  // SAFEMODEL_CONVERTER_TEMP_REGISTRY_H_
