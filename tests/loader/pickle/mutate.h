// Deterministic mutation testing for the pickle tests: a poor man's fuzzer
// that runs in every build (and finds most of what it finds under ASan).
#ifndef SAFEMODEL_TESTS_LOADER_PICKLE_MUTATE_H_
#define SAFEMODEL_TESTS_LOADER_PICKLE_MUTATE_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tests/testing/loader_util.h"

namespace safemodel::testing {

// Parses `count` mutations of `original` in-process (one to three edits
// each: bit flips, truncations, length fields set to extremes, spans copied
// from elsewhere): every one must end in a verdict, never in an internal
// error. SAFEMODEL_PICKLE_MUTATIONS=<n> overrides the count.
inline void ExpectMutationsNeverBreakTheParser(const std::string& original, int count = 512) {
  if (const char* env = std::getenv("SAFEMODEL_PICKLE_MUTATIONS")) count = std::atoi(env);
  uint64_t state = 0x9e3779b97f4a7c15ULL ^ original.size();
  auto next = [&state](uint64_t bound) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return bound == 0 ? 0 : (state >> 33) % bound;
  };
  for (int i = 0; i < count; ++i) {
    std::string m = original;
    for (uint64_t edits = 1 + next(3); edits > 0 && !m.empty(); --edits) {
      const size_t pos = next(m.size());
      switch (next(4)) {
        case 0:
          m[pos] = static_cast<char>(m[pos] ^ (1 << next(8)));
          break;
        case 1:
          m.resize(pos);
          break;
        case 2:
          m.replace(pos, std::min<size_t>(4, m.size() - pos), std::string("\xff\xff\xff\x7f", 4));
          break;
        default: {
          const size_t from = next(m.size());
          const size_t len = next(32);
          m.insert(pos, m.substr(from, len));
        }
      }
    }
    InProcessResult r = ParseInProcess(m);
    EXPECT_NE(r.status.code(), StatusCode::kInternal)
        << "mutation " << i << ": " << r.status.ToString();
  }
}

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_LOADER_PICKLE_MUTATE_H_
