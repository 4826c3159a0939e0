#include "loader/pickle/pickle_keys.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "proto/base/keyed_hash.h"

namespace safemodel::loader::pickle {

namespace {

// Hash domains: values of different kinds that Python never calls equal
// hash apart; bool, int and integral float share kNumber (True == 1 == 1.0).
enum HashDomain : uint64_t {
  kHashNumber = 1,
  kHashFloat,
  kHashStr,
  kHashBytes,
  kHashBigInt,
  kHashGlobal,
  kHashIdentity,
  kHashTuple,
};

// Never 0: 0 marks a hash that is not computed yet.
uint64_t NonZero(uint64_t h) { return h | 1; }

// True if `f` is an integer that fits int64 (then *out is it): the floats
// Python calls equal to an int. NaN and infinities are not.
bool IntegralFloat(double f, int64_t* out) {
  if (!(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) return false;
  if (f != std::floor(f)) return false;
  *out = static_cast<int64_t>(f);
  return true;
}

// The hash of an inline value (None, bool, int, float); nullopt for a heap
// object.
std::optional<uint64_t> ScalarHash(Ref r) {
  switch (r.kind) {
    case Kind::kNone:
      return NonZero(KeyedHashU64(0, kHashIdentity));
    case Kind::kBool:
    case Kind::kInt:
      return NonZero(KeyedHashU64(static_cast<uint64_t>(r.i), kHashNumber));
    case Kind::kFloat: {
      int64_t as_int;
      if (IntegralFloat(r.f, &as_int)) {
        return NonZero(KeyedHashU64(static_cast<uint64_t>(as_int), kHashNumber));
      }
      return NonZero(KeyedHashU64(std::bit_cast<uint64_t>(r.f), kHashFloat));
    }
    default:
      return std::nullopt;
  }
}

// The hash of a heap object other than a tuple; nullopt if it is unhashable.
std::optional<uint64_t> LeafHash(const Graph& g, const Object& o, Ref r) {
  switch (r.kind) {
    case Kind::kStr:
      return NonZero(KeyedHash(o.data().data(), o.data().size(), kHashStr));
    case Kind::kBytes:
      return NonZero(KeyedHash(o.data().data(), o.data().size(), kHashBytes));
    case Kind::kBigInt:
      return NonZero(KeyedHash(o.data().data(), o.data().size(), kHashBigInt));
    case Kind::kGlobal:
      return NonZero(KeyedHash(g.name(r), kHashGlobal));
    case Kind::kRecord:
    case Kind::kOpaque:
      return NonZero(KeyedHashU64(r.id, kHashIdentity));
    default:
      return std::nullopt;
  }
}

// A tuple whose items are all hashed: the item hashes, in order, hashed
// again, so a tuple's hash is as unpredictable as its items'.
uint64_t TupleHash(const Graph& g, const Object& o) {
  std::vector<uint64_t> hashes;
  hashes.reserve(o.items().size());
  for (Ref item : o.items()) hashes.push_back(item.is_heap() ? g.at(item).hash : *ScalarHash(item));
  return NonZero(KeyedHash(hashes.data(), hashes.size() * sizeof(uint64_t), kHashTuple));
}

bool IsNumber(Kind k) { return k == Kind::kBool || k == Kind::kInt || k == Kind::kFloat; }

// Exact comparison, as Python's int == float: 2**53 + 1 != 2.0**53.
bool NumbersEqual(Ref a, Ref b) {
  if (a.kind == Kind::kFloat && b.kind == Kind::kFloat) return a.f == b.f;
  if (a.kind == Kind::kFloat || b.kind == Kind::kFloat) {
    const double f = a.kind == Kind::kFloat ? a.f : b.f;
    const int64_t i = a.kind == Kind::kFloat ? b.i : a.i;
    int64_t as_int;
    return IntegralFloat(f, &as_int) && as_int == i;
  }
  return a.i == b.i;
}

// One step of comparing two distinct heap objects of the same kind: false if
// they differ; a tuple's item pairs are pushed onto `work` instead.
bool HeapStepEqual(const Graph& g, Ref a, Ref b, std::vector<std::pair<Ref, Ref>>* work) {
  const Object& x = g.at(a);
  const Object& y = g.at(b);
  if (x.hash != 0 && y.hash != 0 && x.hash != y.hash) return false;
  switch (a.kind) {
    case Kind::kStr:
    case Kind::kBytes:
    case Kind::kBigInt: {
      const ByteView xd = x.data(), yd = y.data();
      return xd.size() == yd.size() &&
             (xd.empty() || std::memcmp(xd.data(), yd.data(), xd.size()) == 0);
    }
    case Kind::kGlobal:
      return g.name(a) == g.name(b);
    case Kind::kTuple: {
      const std::span<const Ref> xi = x.items(), yi = y.items();
      if (xi.size() != yi.size()) return false;
      for (size_t i = 0; i < xi.size(); ++i) work->push_back({xi[i], yi[i]});
      return true;
    }
    default:
      return false;  // identity, and the ids differ
  }
}

}  // namespace

Result<uint64_t> KeyHash(Builder& m, Ref root) {
  if (std::optional<uint64_t> h = ScalarHash(root)) return *h;
  Graph& g = m.graph();
  // Iterative post-order over tuples.
  std::vector<std::pair<Ref, bool>> work{{root, false}};
  uint64_t steps = 0;
  while (!work.empty()) {
    auto [r, expanded] = work.back();
    work.pop_back();
    ++steps;
    if (!r.is_heap()) continue;
    Object& o = g.at(r);
    if (o.hash != 0) continue;
    if (r.kind != Kind::kTuple) {
      std::optional<uint64_t> h = LeafHash(g, o, r);
      if (!h) {
        return Status::Malformed("unhashable dict key or set item (" + KindName(g, r) + ")" +
                                 m.At());
      }
      o.hash = *h;
    } else if (!expanded) {
      work.push_back({r, true});
      for (Ref item : o.items()) work.push_back({item, false});
    } else {
      o.hash = TupleHash(g, o);
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(m.Spend(steps));
  return g.at(root).hash;
}

Result<bool> KeysEqual(Builder& m, Ref a0, Ref b0) {
  const Graph& g = m.graph();
  std::vector<std::pair<Ref, Ref>> work{{a0, b0}};
  uint64_t steps = 0;
  bool equal = true;
  while (!work.empty()) {
    if (++steps > kMaxKeyCompareSteps) {
      return Status::LimitExceeded("comparing dict keys took more than " +
                                   Num(kMaxKeyCompareSteps) + " steps" + m.At());
    }
    auto [a, b] = work.back();
    work.pop_back();
    bool same;
    if (IsNumber(a.kind) && IsNumber(b.kind)) {
      same = NumbersEqual(a, b);
    } else if (a.kind != b.kind) {
      same = false;
    } else if (!a.is_heap() || a.id == b.id) {
      same = true;  // None, or one object
    } else {
      same = HeapStepEqual(g, a, b, &work);
    }
    if (!same) {
      equal = false;
      break;
    }
  }
  SAFEMODEL_RETURN_IF_ERROR(m.Spend(steps));
  return equal;
}

Result<std::optional<size_t>> FindKey(Builder& m, Object& c, Ref key, size_t stride) {
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t h, KeyHash(m, key));
  const size_t n = c.items().size() / stride;
  if (n < kIndexThreshold && c.side == UINT32_MAX) {
    for (size_t i = 0; i < n; ++i) {
      SAFEMODEL_ASSIGN_OR_RETURN(bool eq, KeysEqual(m, c.items()[i * stride], key));
      if (eq) return std::optional<size_t>(i);
    }
    return std::optional<size_t>();
  }
  Graph& g = m.graph();
  // The conversion frees the key indices (ConvertSettings::release_objects)
  // and no machine runs on the graph after it; if one did, fail closed
  // rather than index a freed table. (SetItem and AddItem add to the index
  // only after this lookup.)
  if (c.side != UINT32_MAX && c.side >= g.key_index.size()) {
    return Status::Internal("a dict's key index was freed before the pickle machine was done");
  }
  if (c.side == UINT32_MAX) {
    g.key_index.emplace_back();
    c.side = static_cast<uint32_t>(g.key_index.size() - 1);
    for (size_t i = 0; i < n; ++i) {
      SAFEMODEL_ASSIGN_OR_RETURN(uint64_t ih, KeyHash(m, c.items()[i * stride]));
      g.key_index[c.side].Add(ih, static_cast<uint32_t>(i));
    }
  }
  // Each candidate is compared in full (a 32-bit tag can match another key).
  Status failed = Status::Ok();
  const std::optional<uint32_t> found = g.key_index[c.side].Find(h, [&](uint32_t pos) {
    Result<bool> eq = KeysEqual(m, c.items()[pos * stride], key);
    if (!eq.ok()) failed = eq.status();
    return !eq.ok() || *eq;
  });
  if (!failed.ok()) return failed;
  if (found) return std::optional<size_t>(*found);
  return std::optional<size_t>();
}

Status SetItem(Builder& m, Ref dict, Ref key, Ref value) {
  Graph& g = m.graph();
  SAFEMODEL_RETURN_IF_ERROR(m.Spend(1));
  // FindKey may add heap objects (hash caches only), never new objects, so
  // the reference stays valid.
  SAFEMODEL_ASSIGN_OR_RETURN(std::optional<size_t> pos, FindKey(m, g.at(dict), key, 2));
  const Object& d = g.at(dict);
  if (pos) {
    g.GrowItems(dict.id)[*pos * 2 + 1] = value;  // Python keeps the first key object
    return Status::Ok();
  }
  SAFEMODEL_RETURN_IF_ERROR(m.CheckGrowth(d.items().size() / 2 + 1, "dict"));
  std::vector<Ref>& items = g.GrowItems(dict.id);
  items.push_back(key);
  items.push_back(value);
  if (d.side != UINT32_MAX) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t h, KeyHash(m, key));
    g.key_index[d.side].Add(h, static_cast<uint32_t>(items.size() / 2 - 1));
  }
  return Status::Ok();
}

Status AddItem(Builder& m, Ref set, Ref item) {
  Graph& g = m.graph();
  SAFEMODEL_RETURN_IF_ERROR(m.Spend(1));
  SAFEMODEL_ASSIGN_OR_RETURN(std::optional<size_t> pos, FindKey(m, g.at(set), item, 1));
  if (pos) return Status::Ok();
  const Object& s = g.at(set);
  SAFEMODEL_RETURN_IF_ERROR(m.CheckGrowth(s.items().size() + 1, "set"));
  std::vector<Ref>& items = g.GrowItems(set.id);
  items.push_back(item);
  if (s.side != UINT32_MAX) {
    SAFEMODEL_ASSIGN_OR_RETURN(uint64_t h, KeyHash(m, item));
    g.key_index[s.side].Add(h, static_cast<uint32_t>(items.size() - 1));
  }
  return Status::Ok();
}

}  // namespace safemodel::loader::pickle
