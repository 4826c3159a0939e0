// The pickle machine, issue 8: BUILD state that changes a loader's path is
// refused, states are copied as Python copies them, a joblib stream must not
// be a second pickle to pickle.load, and every table keyed by the file costs
// O(1) per operation (colliding keys, counted in work units).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tests/loader/pickle/pickle_bytes.h"
#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

#include "loader/parser.h"
#include "loader/pickle/pickle_machine.h"
#include "loader/registry.h"
#include "proto/base/keyed_hash.h"

namespace safemodel::testing {
namespace {

const std::string kNewObj = B({0x81});
const std::string kTuple2 = B({0x86});
std::string Namespace() { return Global("argparse", "Namespace") + ")" + kNewObj; }

std::vector<std::string> Refused(const InProcessResult& r) {
  return Rules(r.findings, Finding::Severity::kRefused);
}
bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// ---- State that changes a loader's path --------------------------------------

TEST(Regression, Issue8JoblibBuildSetsClassToNumpyArrayWrapper) {
  // BUILD's setattr half sets __class__ on a Namespace: joblib then reads raw
  // bytes and runs what the converter took for a BINBYTES payload.
  InProcessResult r = ParseInProcess(ReadFile(Fixture("polyglot/joblib_class_numpy_wrapper.joblib")));
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(Refused(r), "pickle.state"));
  EXPECT_NE(r.status.message().find("__class__"), std::string::npos);
}

TEST(Regression, Issue8JoblibBuildSetsClassToNDArrayWrapper) {
  // The same with NDArrayWrapper: joblib would np.load another file.
  InProcessResult r =
      ParseInProcess(ReadFile(Fixture("polyglot/joblib_class_ndarray_wrapper.joblib")));
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(Refused(r), "pickle.state"));
}

TEST(PickleState, SpecialNamesInEitherHalfOfAStateAreRefused) {
  const std::string set_global = Global("builtins", "set");
  for (const char* name :
       {"__class__", "__dict__", "__setstate__", "__reduce__", "__reduce_ex__", "__getstate__",
        "__getattr__", "__init__"}) {
    // __dict__ half.
    InProcessResult a = ParseInProcess(
        P2(Namespace() + "}" + Short(name) + set_global + "s" + "b"));
    EXPECT_TRUE(Has(Refused(a), "pickle.state")) << name << ": " << a.status.ToString();
    // setattr half: (None, {name: value}).
    InProcessResult b = ParseInProcess(
        P2(Namespace() + "N}" + Short(name) + set_global + "s" + kTuple2 + "b"));
    EXPECT_TRUE(Has(Refused(b), "pickle.state")) << name << ": " << b.status.ToString();
  }
  // Ordinary attributes, also ones with underscores, are data.
  InProcessResult ok = ParseInProcess(
      P2(Namespace() + "}(" + Short("_private") + Int1(1) + Short("__mangled") + Int1(2) +
         Short("lr") + Int1(3) + "ub"));
  EXPECT_TRUE(ok.status.ok()) << ok.status.ToString();
  // On an OrderedDict (a state_dict's _metadata) too.
  InProcessResult od = ParseInProcess(
      P2(Global("collections", "OrderedDict") + ")R}" + Short("__class__") + set_global + "sb"));
  EXPECT_TRUE(Has(Refused(od), "pickle.state")) << od.status.ToString();
}

TEST(PickleState, SetstateFromAnEarlierBuildIsRefused) {
  // A first BUILD puts __setstate__ in the instance's __dict__; Python's
  // second BUILD calls it instead of updating the attributes.
  InProcessResult r = ParseInProcess(
      P2(Namespace() + "}" + Short("__setstate__") + Global("builtins", "set") + "sb}" +
         Short("x") + Int1(1) + "sb"));
  EXPECT_EQ(r.status.code(), StatusCode::kRefused);
  EXPECT_TRUE(Has(Refused(r), "pickle.state"));
}

TEST(PickleState, ModuleStatesFollowModuleSetstate) {
  const std::string linear = Global("torch.nn.modules.linear", "Linear") + ")" + kNewObj;
  // Hooks torch would call are refused; empty ones are data.
  InProcessResult hooks = ParseInProcess(
      P2(linear + "}" + Short("_forward_hooks") + Global("collections", "OrderedDict") + ")R" +
         Int1(0) + Global("builtins", "set") + "s" + "sb"));
  EXPECT_TRUE(Has(Refused(hooks), "pickle.state")) << hooks.status.ToString();
  InProcessResult empty = ParseInProcess(
      P2(linear + "}" + Short("_forward_hooks") + Global("collections", "OrderedDict") + ")R" +
         "sb"));
  EXPECT_TRUE(empty.status.ok()) << empty.status.ToString();
  // Module.__setstate__ takes a dict: a (dict, slots) tuple fails in torch.
  InProcessResult tuple = ParseInProcess(P2(linear + "}N" + kTuple2 + "b"));
  EXPECT_EQ(tuple.status.code(), StatusCode::kMalformed) << tuple.status.ToString();
}

TEST(PickleState, NonStrStateKeysAreUnsupported) {
  // The C unpickler stores them, the Python one (joblib) raises.
  InProcessResult r = ParseInProcess(P2(Namespace() + "}" + Int1(1) + Int1(2) + "sb"));
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
}

TEST(PickleState, StateIsCopiedAtBuildAndMergedOnASecondBuild) {
  // SETITEM on the state dict after BUILD does not reach the instance.
  InProcessResult late = ParseInProcess(
      P2(Namespace() + "}" + B({'q', 7}) + "b" + B({'h', 7}) + Short("late") + Int1(1) + "s0"));
  ASSERT_TRUE(late.status.ok()) << late.status.ToString();
  EXPECT_EQ(ValueToJson(late.metadata), "{\"$class\":\"argparse.Namespace\"}");
  // A second BUILD updates the attributes, keeping the first ones.
  InProcessResult twice = ParseInProcess(
      P2(Namespace() + "}" + Short("a") + Int1(1) + "sb}" + Short("b") + Int1(2) + "sb"));
  ASSERT_TRUE(twice.status.ok()) << twice.status.ToString();
  EXPECT_EQ(ValueToJson(twice.metadata), "{\"$class\":\"argparse.Namespace\",\"a\":1,\"b\":2}");
  // The same for an OrderedDict's attributes.
  InProcessResult od = ParseInProcess(
      P2(Global("collections", "OrderedDict") + ")R}" + Short("a") + Int1(1) + "sb}" +
         Short("b") + Int1(2) + "sb"));
  ASSERT_TRUE(od.status.ok()) << od.status.ToString();
  EXPECT_NE(ValueToJson(od.metadata).find("\"a\":1"), std::string::npos) << ValueToJson(od.metadata);
  EXPECT_NE(ValueToJson(od.metadata).find("\"b\":2"), std::string::npos);
}

TEST(PickleState, NumpyDtypeFlagsMustBeNumpys) {
  // numpy.dtype('f4', False, True) with state flags 63 (object flags).
  auto dtype = [](int flags) {
    return Global("numpy", "dtype") + Short("f4") + B({0x89, 0x88, 0x87}) + "R(" + Int1(3) +
           Short("<") + "NNN" + "J" + LE(0xFFFFFFFF, 4) + "J" + LE(0xFFFFFFFF, 4) + Int1(flags) +
           "tb";
  };
  auto array = [&](int flags) {
    return P2(Global("numpy.core.multiarray", "_reconstruct") + Global("numpy", "ndarray") +
              Int1(0) + B({0x85}) + "C" + LE(1, 1) + "b" + B({0x87}) + "R(" + Int1(1) + Int1(2) +
              B({0x85}) + dtype(flags) + B({0x89}) + "C" + LE(8, 1) + std::string(8, '\0') + "tb");
  };
  EXPECT_TRUE(ParseInProcess(array(0)).status.ok());
  InProcessResult r = ParseInProcess(array(63));
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported) << r.status.ToString();
  EXPECT_NE(r.status.message().find("flags 63"), std::string::npos);
}

TEST(PickleState, JoblibStreamsMustNotBeASecondPickle) {
  // A NumpyArrayWrapper whose "array bytes" are opcodes that call a name:
  // joblib.load reads an array, pickle.load runs the call.
  const std::string wrapper = Global("joblib.numpy_pickle", "NumpyArrayWrapper") + ")" + kNewObj;
  const std::string dtype = Global("numpy", "dtype") + Short("u1") + B({0x89, 0x88, 0x87}) +
                            "R(" + Int1(3) + Short("|") + "NNN" + "J" + LE(0xFFFFFFFF, 4) + "J" +
                            LE(0xFFFFFFFF, 4) + Int1(0) + "tb";
  const std::string hidden = Global("os", "system") + ")R0";
  const std::string state = "}(" + Short("subclass") + Global("numpy", "ndarray") +
                            Short("shape") + Int1(static_cast<int>(hidden.size())) + B({0x85}) +
                            Short("order") + Short("C") + Short("dtype") + dtype +
                            Short("allow_mmap") + B({0x89}) + "u";
  InProcessResult r = ParseInProcess(P2(wrapper + state + "b" + hidden));
  EXPECT_EQ(r.status.code(), StatusCode::kRefused) << r.status.ToString();
  EXPECT_TRUE(Has(Refused(r), "format.polyglot"));
  EXPECT_TRUE(Has(Refused(r), "pickle.global"));  // os.system, read as pickle.load reads it
  // Real array bytes (0x00 is no opcode): one reading, converted.
  const std::string zeros(hidden.size(), '\0');
  InProcessResult ok = ParseInProcess(P2(wrapper + state + "b" + zeros));
  EXPECT_TRUE(ok.status.ok()) << ok.status.ToString();
}

TEST(PickleState, IntAndFloatKeysCompareExactly) {
  // 2**53 + 1 and 2.0**53 are different keys to Python.
  const std::string big_int = "\x8a" + LE(8, 1) + LE((uint64_t{1} << 53) + 1, 8);
  std::string big_float = "G";
  const uint64_t bits = 0x4340000000000000ULL;  // 2.0**53, big-endian
  for (int i = 7; i >= 0; --i) big_float.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
  InProcessResult r = ParseInProcess(P2("}(" + big_int + Int1(1) + big_float + Int1(2) + "u"));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  const std::string json = ValueToJson(r.metadata);
  EXPECT_NE(json.find("\"9007199254740993\":1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"9007199254740992.0\":2"), std::string::npos) << json;
}

// ---- Hash flooding ---------------------------------------------------------------------

// The machine's tuple hash before issue 8: murmur's finalizer, no key.
constexpr uint64_t kC1 = 0xff51afd7ed558ccdULL, kC2 = 0xc4ceb9fe1a85ec53ULL;
constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
uint64_t InverseOf(uint64_t a) {  // mod 2^64, a odd (Newton)
  uint64_t x = a;
  for (int i = 0; i < 6; ++i) x *= 2 - a * x;
  return x;
}
uint64_t Mix(uint64_t h) {
  h ^= h >> 33;
  h *= kC1;
  h ^= h >> 33;
  h *= kC2;
  h ^= h >> 33;
  return h;
}
uint64_t Unmix(uint64_t h) {
  h ^= h >> 33;
  h *= InverseOf(kC2);
  h ^= h >> 33;
  h *= InverseOf(kC1);
  h ^= h >> 33;
  return h;
}
uint64_t OldPairHash(int64_t x, int64_t y) {
  uint64_t h = 0x345678;
  h = Mix(h ^ (Mix(static_cast<uint64_t>(x)) | 1)) + kGolden;
  h = Mix(h ^ (Mix(static_cast<uint64_t>(y)) | 1)) + kGolden;
  return h | 1;
}
// n (x, y) pairs whose tuples all had one old hash (the issue's attack).
std::vector<std::pair<int64_t, int64_t>> CollidingPairs(size_t n) {
  const uint64_t want = Unmix(0x0123456789abcdefULL - kGolden);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t x = 1000; out.size() < n; ++x) {
    const uint64_t h1 = Mix(0x345678 ^ (Mix(static_cast<uint64_t>(x)) | 1)) + kGolden;
    const uint64_t ih = want ^ h1;
    if (ih & 1) out.emplace_back(x, static_cast<int64_t>(Unmix(ih)));
  }
  return out;
}
std::string Long8(int64_t v) { return B({0x8a, 8}) + LE(static_cast<uint64_t>(v), 8); }

TEST(Regression, Issue8HashFlooding) {
  constexpr size_t kN = 30000;  // 55,000 took 56 s before; ~1 s would be n^2/2 compares at 1 ns
  auto pairs = CollidingPairs(kN);
  // The keys really collided under the old hash.
  for (size_t i = 1; i < 100; ++i) {
    ASSERT_EQ(OldPairHash(pairs[i].first, pairs[i].second),
              OldPairHash(pairs[0].first, pairs[0].second));
  }
  std::string set_items, dict_items;
  for (auto [x, y] : pairs) {
    set_items += Long8(x) + Long8(y) + kTuple2;
    dict_items += Long8(x) + Long8(y) + kTuple2 + "N";
  }
  for (const std::string& pickle : {B({0x80, 4, 0x8f}) + "(" + set_items + B({0x90}) + ".",
                                    B({0x80, 4}) + "}(" + dict_items + "u."}) {
    loader::ParseContext ctx(loader::ParseOptions{});
    loader::ParsedModel out;
    Status s = loader::ParseModel(AsBytes(pickle), ctx, &out);
    ASSERT_TRUE(s.ok()) << s.ToString();
    // Counted, not timed: every insert hashes its key (3 steps for a pair)
    // and compares with keys of equal hash only. The old hash needed
    // kN * kN / 2 comparisons here.
    EXPECT_LT(ctx.work_spent(), 16 * kN) << "work units for " << kN << " keys";
  }
}

TEST(Regression, Issue8HashFloodingMemoKeys) {
  // Memo keys the file chooses: multiples of a bucket count collide in an
  // unkeyed std::unordered_map (identity hash). The memo is keyed.
  constexpr uint64_t kKeys = 10000;
  std::unordered_map<uint64_t, int> plain;
  plain.reserve(kKeys);
  const uint64_t buckets = plain.bucket_count();
  for (uint64_t i = 0; i < kKeys; ++i) plain.emplace(i * buckets, 0);
  ASSERT_EQ(plain.bucket_count(), buckets);
  EXPECT_EQ(plain.bucket_size(0), kKeys);  // the attack on an unkeyed table
  KeyedIntMap<uint64_t, int> keyed;
  keyed.reserve(kKeys);
  for (uint64_t i = 0; i < kKeys; ++i) keyed.emplace(i * keyed.bucket_count(), 0);
  size_t worst = 0;
  for (size_t b = 0; b < keyed.bucket_count(); ++b) worst = std::max(worst, keyed.bucket_size(b));
  EXPECT_LT(worst, 32u);
  // And the machine reads a pickle that puts them in its memo (PUT takes
  // decimal keys): generous bound, real cost a few milliseconds.
  std::string p = B({0x80, 2}) + "N";
  for (uint64_t i = 1; i <= kKeys; ++i) p += "p" + std::to_string(i * buckets) + "\n";
  p += ".";
  const auto start = std::chrono::steady_clock::now();
  InProcessResult r = ParseInProcess(p);
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(Regression, Issue8HashFloodingStringTables) {
  // Names colliding in std::hash<std::string> modulo a bucket count (found
  // by search, as an attacker would) spread in the keyed tables that hold
  // zip member names, tensor names, HDF5 paths and metadata keys.
  constexpr size_t kNames = 1500;
  std::unordered_set<std::string> sizing;
  sizing.reserve(kNames);
  const size_t buckets = sizing.bucket_count();
  std::vector<std::string> names;
  std::hash<std::string> h;
  for (uint64_t i = 0; names.size() < kNames; ++i) {
    std::string n = "w" + std::to_string(i) + ".npy";
    if (h(n) % buckets == 0) names.push_back(n);
  }
  std::unordered_set<std::string> plain(names.begin(), names.end(), buckets);
  ASSERT_EQ(plain.bucket_count(), buckets);
  EXPECT_EQ(plain.bucket_size(plain.bucket(names[0])), kNames);
  KeyedStringSet keyed;
  keyed.reserve(kNames);
  keyed.insert(names.begin(), names.end());
  size_t worst = 0;
  for (size_t b = 0; b < keyed.bucket_count(); ++b) worst = std::max(worst, keyed.bucket_size(b));
  EXPECT_LT(worst, 32u);
  // Those names as dict keys: converted, one work unit per insert plus the
  // string hashes.
  std::string p = B({0x80, 4}) + "}(";
  for (const std::string& n : names) p += Short(n) + "N";
  p += "u.";
  loader::ParseContext ctx(loader::ParseOptions{});
  loader::ParsedModel out;
  ASSERT_TRUE(loader::ParseModel(AsBytes(p), ctx, &out).ok());
  EXPECT_LT(ctx.work_spent(), 8 * kNames);
}

TEST(PickleState, MemoKeysDenseAndSparse) {
  // Keys the pickler's way (0, 1, 2) and far apart (2000 before there are
  // enough entries to make it dense, 2^40): each found again, and a key
  // stored twice keeps its last value wherever it lives.
  std::string p = B({0x80, 2}) + "(";
  auto put = [&](uint64_t key, int value) {
    p += Int1(value) + "p" + std::to_string(key) + "\n" + "0";
  };
  put(0, 10);
  put(2000, 11);
  put(uint64_t{1} << 40, 12);
  for (uint64_t k = 1; k <= 1500; ++k) put(k, static_cast<int>(k % 7));
  put(2000, 13);  // now below 2 * entries + 1024: must still replace, not duplicate
  put(1, 14);
  for (uint64_t key : {uint64_t{0}, uint64_t{2000}, uint64_t{1} << 40, uint64_t{1}, uint64_t{1500}}) {
    p += "g" + std::to_string(key) + "\n";
  }
  p += "l.";
  InProcessResult r = ParseInProcess(p);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(ValueToJson(r.metadata), "[10,13,12,14," + std::to_string(1500 % 7) + "]");
}

TEST(PickleCost, AmplifyingCopiesHitTheWorkLimit) {
  // A 100,000-item list turned into a set by every 6-byte REDUCE: each
  // copy costs 100,000 units; the budget is linear in the bytes read.
  std::string p = B({0x80, 2}) + Global("builtins", "set") + B({'q', 1}) + "0](";
  for (int i = 0; i < 100000; ++i) p += "N";
  p += "e" + B({'q', 2}) + "0";
  for (int i = 0; i < 2000; ++i) p += B({'h', 1, 'h', 2, 0x85}) + "R0";
  p += "N.";
  loader::ParseContext ctx(loader::ParseOptions{});
  loader::ParsedModel out;
  Status s = loader::ParseModel(AsBytes(p), ctx, &out);
  EXPECT_EQ(s.code(), StatusCode::kLimitExceeded) << s.ToString();
  EXPECT_NE(s.message().find("units of work"), std::string::npos);
}

}  // namespace
}  // namespace safemodel::testing
