// Counts a test binary's heap allocations: linking allocation_counter.cc
// into a test replaces the global operator new with one that counts each
// call (operator new[] goes through it too) and the bytes it holds, then
// takes plain malloc. For tests that pin "no allocation per tensor"
// (header_allocations_test, zip_many_members_test, model_test) or the bytes
// held per tensor; not for binaries that must keep the default allocator's
// behaviour.
#ifndef SAFEMODEL_TESTS_TESTING_ALLOCATION_COUNTER_H_
#define SAFEMODEL_TESTS_TESTING_ALLOCATION_COUNTER_H_

#include <cstdint>

namespace safemodel::testing {

// operator new calls so far in this process, from every thread.
uint64_t AllocationCount();

// Bytes held by operator new's blocks now (malloc_usable_size of each), and
// the most held at once since the last ResetPeakLiveBytes (or the start).
uint64_t LiveBytes();
uint64_t PeakLiveBytes();
void ResetPeakLiveBytes();

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_TESTING_ALLOCATION_COUNTER_H_
