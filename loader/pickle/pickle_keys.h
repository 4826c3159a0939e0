// Dict and set semantics for the keys pickles use, as Python defines them:
// None, bool, int and float compare numerically (True == 1 == 1.0, and
// 2**53 + 1 != 2.0**53 exactly), str and bytes by content, tuples element
// by element, names by their name, and other records by identity; other
// kinds (lists, dicts, sets, bytearrays) are unhashable. A dict keeps the
// first key object and the last value, in insertion order.
//
// Worst case: each lookup is O(1) expected: hashes are SipHash-2-4 under the
// process key (proto/base/keyed_hash.h), so a file cannot choose keys that
// collide; containers below kIndexThreshold items are searched linearly.
// Every object caches its hash, so hashing costs O(objects) over a run
// however keys share parts; one equality test takes at most
// kMaxKeyCompareSteps steps (a DAG of tuples could make it exponential).
// All of it is charged to the file's work budget (Builder::Spend).
//
// Trust: keys come from the untrusted stream; nothing here recurses.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_KEYS_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_KEYS_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "loader/pickle/pickle_builder.h"

namespace safemodel::loader::pickle {

// Comparison steps for one key equality test (tuples of tuples).
inline constexpr uint64_t kMaxKeyCompareSteps = 1'000'000;
// Dicts and sets switch from linear search to a hash index at this size.
inline constexpr size_t kIndexThreshold = 8;

// Python's hash of `key`, never 0 (Malformed if the key is unhashable).
Result<uint64_t> KeyHash(Builder& m, Ref key);

// Python's `a == b` for two keys.
Result<bool> KeysEqual(Builder& m, Ref a, Ref b);

// The position of `key` among the keys of dict or set `c` (stride 2 for a
// dict's k0, v0, k1, v1, ... items, 1 for a set), building the index when
// the container reaches kIndexThreshold.
Result<std::optional<size_t>> FindKey(Builder& m, Object& c, Ref key, size_t stride);

// d[key] = value: the first key object is kept, the value replaced.
Status SetItem(Builder& m, Ref dict, Ref key, Ref value);

// s.add(item).
Status AddItem(Builder& m, Ref set, Ref item);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_KEYS_H_
