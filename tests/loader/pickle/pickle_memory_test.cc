// What the pickle machine keeps in memory (issue 15). release_consumed:
// the arguments a torch tensor is rebuilt from are released once its record
// is built (pickle_ops.cc), so that a checkpoint of many small tensors does
// not hold them all; anything a second reference may reach is kept, and a
// later GET of a released object's memo key is refused. read_behind: the
// stream's bytes are given back as they are read, so that a mapped data.pkl
// does not stay resident (torch_formats.cc drops its pages).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "tests/loader/pickle/pickle_bytes.h"
#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"
#include "tests/testing/zip_builder.h"

#include "loader/map_residency.h"
#include "loader/parser.h"
#include "loader/pickle/pickle_graph.h"
#include "loader/pickle/pickle_machine.h"
#include "loader/registry.h"

namespace safemodel::testing {
namespace {

using loader::ParseContext;
using loader::ParseOptions;
using loader::pickle::Graph;
using loader::pickle::Kind;
using loader::pickle::Machine;
using loader::pickle::MachineOptions;
using loader::pickle::Ref;
using loader::pickle::RecordKind;
using loader::pickle::StorageInfo;

std::string Put(uint32_t key) { return "r" + LE(key, 4); }  // LONG_BINPUT
std::string Get(uint32_t key) { return "j" + LE(key, 4); }  // LONG_BINGET

// A protocol-2 state_dict of `n` float tensors of 2 elements, each over its
// own storage, written as torch.save writes it: every object memoized, the
// names and strings used again fetched from the memo; with `batch`, a
// SETITEMS after every `batch` entries, as pickle's batching writes them
// (1,000), else one for all. With `one_storage`, every tensor views storage
// "0", whose key str later tensors fetch from the memo (as torch.save names
// a storage it has written before).
std::string TorchSaveLike(int n, int batch = 0, bool one_storage = false) {
  uint32_t key = 0;
  std::string s = "}" + Put(key++) + "(";
  uint32_t k_rebuild = 0, k_storage = 0, k_float = 0, k_cpu = 0, k_hooks = 0, k_key0 = 0;
  for (int i = 0; i < n; ++i) {
    s += Str("w" + std::to_string(i)) + Put(key++);
    if (i == 0) {
      k_rebuild = key;
      s += Global("torch._utils", "_rebuild_tensor_v2") + Put(key++);
    } else {
      s += Get(k_rebuild);
    }
    s += "((";
    if (i == 0) {
      k_storage = key;
      s += Str("storage") + Put(key++);
      k_float = key;
      s += Global("torch", "FloatStorage") + Put(key++);
    } else {
      s += Get(k_storage) + Get(k_float);
    }
    if (one_storage && i > 0) {
      s += Get(k_key0);
    } else {
      k_key0 = key;
      s += Str(std::to_string(i)) + Put(key++);
    }
    if (i == 0) {
      k_cpu = key;
      s += Str("cpu") + Put(key++);
    } else {
      s += Get(k_cpu);
    }
    // Each Put in a statement of its own: the keys follow the stream.
    s += Int1(2) + "t" + Put(key++);
    s += "Q" + Int1(0) + "(" + Int1(2) + "t" + Put(key++);
    s += "(" + Int1(1) + "t" + Put(key++);
    s += B({0x89});
    if (i == 0) {
      k_hooks = key;
      s += Global("collections", "OrderedDict") + Put(key++);
    } else {
      s += Get(k_hooks);
    }
    s += ")R" + Put(key++);
    s += "t" + Put(key++);
    s += "R" + Put(key++);
    if (batch > 0 && i % batch == batch - 1 && i + 1 < n) s += "u(";
  }
  return P2(s + "u");
}

// A persistent_load that makes a float storage record of 2 elements per id
// (as torch_formats.cc's LoadStorage does, without the archive), reading
// the id's tag and location as LoadStorage does.
Result<Ref> LoadFloatStorage(Machine& m, Ref pid, uint64_t) {
  Graph& graph = m.graph();
  if (graph.text(graph.items(pid)[0]) != "storage" || graph.text(graph.items(pid)[3]) != "cpu") {
    return Status::Malformed("not a storage id");
  }
  // One storage per key, one record for it at a time, as LoadStorage.
  const std::string key(graph.text(graph.items(pid)[2]));
  uint32_t index = 0;
  while (index < graph.storages.size() && graph.storages[index].key() != key) ++index;
  if (index == graph.storages.size()) {
    StorageInfo s;
    graph.SetStorageKey(&s, key);
    s.dtype = DType::kF32;
    s.numel = 2;
    graph.storages.push_back(std::move(s));
  } else if (graph.storages[index].object != loader::pickle::kNoObj) {
    graph.at(Ref::Heap(Kind::kRecord, graph.storages[index].object)).shared = true;
    return Ref::Heap(Kind::kRecord, graph.storages[index].object);
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref r, m.New(Kind::kRecord, 0));
  graph.at(r).record = RecordKind::kStorage;
  graph.at(r).aux = index;
  graph.storages[index].object = r.id;
  return r;
}

// Runs `pickle` with LoadFloatStorage.
Result<Ref> RunWithStorages(const std::string& pickle, bool release, Graph* g) {
  ParseContext ctx(ParseOptions{});
  MachineOptions o;
  o.release_consumed = release;
  o.persistent_load = LoadFloatStorage;
  Machine m(ctx, *g, o);
  uint64_t end = 0;
  return m.Run(AsBytes(pickle), 0, &end);
}

// Pieces of the streams below: storage '0' (2 floats) as a persistent id
// and BINPERSID, an empty OrderedDict of hooks, the rebuild function.
const std::string kPid = "((" + Str("storage") + Global("torch", "FloatStorage") + Str("0") +
                         Str("cpu") + Int1(2) + "tQ";
const std::string kHooks = Global("collections", "OrderedDict") + ")R";
const std::string kRebuild = Global("torch._utils", "_rebuild_tensor_v2");

// Reads the state_dict with `body` as its entries with and without release:
// both read, two tensors of 2 elements, alike in every field that counts.
// Returns how many objects each left (released, kept).
std::pair<size_t, size_t> ExpectReadsAsWithoutRelease(const std::string& body) {
  const std::string p = P2("}(" + body + "u");
  Graph kept, released;
  Result<Ref> a = RunWithStorages(p, false, &kept);
  Result<Ref> b = RunWithStorages(p, true, &released);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(released.tensors.size(), 2u);
  EXPECT_EQ(kept.tensors.size(), 2u);
  const size_t n = std::min(released.tensors.size(), kept.tensors.size());
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(released.tensors[i].shape.size(), kept.tensors[i].shape.size());
    EXPECT_EQ(released.tensors[i].shape[0], 2u);
    EXPECT_EQ(released.tensors[i].parameter, kept.tensors[i].parameter);
    EXPECT_EQ(released.tensors[i].requires_grad, kept.tensors[i].requires_grad);
  }
  return {released.objects.size(), kept.objects.size()};
}

TEST(ReleaseConsumed, ATensorsArgumentsAreReleasedAndTheirPlacesTakenAgain) {
  const int n = 1000;
  const std::string p = TorchSaveLike(n);
  Graph kept, released;
  Result<Ref> a = RunWithStorages(p, false, &kept);
  Result<Ref> b = RunWithStorages(p, true, &released);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  // Kept: per tensor its name, the id tuple, the storage key, the storage,
  // size, stride, kHooks, the argument tuple and the tensor (9). Released:
  // the name and the tensor stay (2; the tensor holds its storage's index,
  // the memo the storage key's text); the other seven places are taken
  // again by the next tensor.
  EXPECT_GE(kept.objects.size(), 9u * n);
  EXPECT_LE(released.objects.size(), 2u * n + 16);
  // The same tensors either way.
  ASSERT_EQ(released.tensors.size(), kept.tensors.size());
  ASSERT_EQ(released.tensors.size(), static_cast<size_t>(n));
  for (size_t i = 0; i < released.tensors.size(); ++i) {
    EXPECT_EQ(released.tensors[i].shape.size(), 1u);
    EXPECT_EQ(released.tensors[i].shape[0], 2u);
    // Stride (1,): the C-contiguous ones, implied by the shape, not kept.
    EXPECT_EQ(released.tensors[i].strides, 0u);
    EXPECT_TRUE(released.StridesOf(released.tensors[i]).empty());
    EXPECT_EQ(released.storages[released.tensors[i].storage_index].key(), std::to_string(i));
    EXPECT_EQ(released.storages[released.tensors[i].storage_index].object, loader::pickle::kNoObj);
  }
  // The root's names and tensors are the live objects they were.
  const std::span<const Ref> items = released.items(*b);
  ASSERT_EQ(items.size(), 2u * n);
  for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
    EXPECT_EQ(released.text(items[2 * i]), "w" + std::to_string(i));
    ASSERT_EQ(items[2 * i + 1].kind, Kind::kRecord);
    EXPECT_EQ(released.at(items[2 * i + 1]).record, RecordKind::kTensor);
  }
}

// Tensors over one storage, whose key str torch.save fetches from the memo
// for each: a GET of the key's text makes a str that the spent persistent
// id alone holds, and it goes with it (an object per tensor stayed before).
TEST(ReleaseConsumed, TensorsOverOneStorageLeaveTwoObjectsEach) {
  const int n = 1000;
  const std::string pickle = TorchSaveLike(n, 0, /*one_storage=*/true);
  Graph g;
  Result<Ref> r = RunWithStorages(pickle, true, &g);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(g.storages.size(), 1u);
  ASSERT_EQ(g.tensors.size(), static_cast<size_t>(n));
  for (size_t i = 0; i < g.tensors.size(); ++i) EXPECT_EQ(g.tensors[i].storage_index, 0u);
  EXPECT_LE(g.objects.size(), 2u * n + 16);
}

// The memo slot that holds a storage's key text is a memo slot like any
// other: a later PUT replaces it. And a key str with a second reference (a
// GET before its persistent id) is kept as the object it is.
TEST(ReleaseConsumed, AKeyTextSlotIsReplacedByAPutAndASharedKeyStrIsKept) {
  const std::string a = Str("a") + kRebuild + "((" + Str("storage") + Global("torch", "FloatStorage") +
                        Str("0") + Put(60) + Str("cpu") + Int1(2) + "tQ" + Int1(0) + "(" + Int1(2) +
                        "t(" + Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  // Key 60 now holds storage 0's text; "x" replaces it.
  const std::string replaced = Str("y") + Str("x") + Put(60) + Str("z") + Get(60);
  // Key 61's str is the value of "k" before it names storage 1: shared.
  const std::string shared = Str("k") + Str("1") + Put(61) + Str("b") + kRebuild + "((" +
                             Str("storage") + Global("torch", "FloatStorage") + Get(61) +
                             Str("cpu") + Int1(2) + "tQ" + Int1(0) + "(" + Int1(2) + "t(" +
                             Int1(1) + "t" + B({0x89}) + kHooks + "tR" + Str("m") + Get(61);
  // Kept while the graph is read: its strs view the stream's bytes.
  const std::string pickle = P2("}(" + a + replaced + shared + "u");
  Graph g;
  Result<Ref> r = RunWithStorages(pickle, true, &g);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::span<const Ref> items = g.items(*r);
  ASSERT_EQ(items.size(), 2u * 6);
  std::vector<std::pair<std::string, std::string>> strs;
  for (size_t i = 0; i < items.size(); i += 2) {
    if (items[i + 1].kind == Kind::kStr) {
      strs.emplace_back(std::string(g.text(items[i])), std::string(g.text(items[i + 1])));
    }
  }
  const std::vector<std::pair<std::string, std::string>> want = {
      {"y", "x"}, {"z", "x"}, {"k", "1"}, {"m", "1"}};
  EXPECT_EQ(strs, want);
  EXPECT_EQ(g.at(items[2 * 5 + 1]).shared, true);  // "m": the same str as "k"'s
  EXPECT_EQ(items[2 * 5 + 1].id, items[2 * 3 + 1].id);
  ASSERT_EQ(g.tensors.size(), 2u);
  EXPECT_EQ(g.storages[g.tensors[1].storage_index].key(), "1");
}

// The 1-element size tuple, stored under key 7 by the first tensor, fetched
// again by a later one: torch.save never writes this (each tensor's size is
// a new object), and the first tensor's arguments are released by then.
TEST(ReleaseConsumed, AGetOfAReleasedArgumentIsRefused) {
  const std::string storage0 = "((" + Str("storage") + Global("torch", "FloatStorage") + Str("0") +
                               Str("cpu") + Int1(2) + "tQ";
  const std::string storage1 = "((" + Str("storage") + Global("torch", "FloatStorage") + Str("1") +
                               Str("cpu") + Int1(2) + "tQ";
  const std::string first = Str("a") + kRebuild + storage0 + Int1(0) + "(" + Int1(2) + "t" + Put(7) +
                            "(" + Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  const std::string later = Str("b") + kRebuild + storage1 + Int1(0) + Get(7) + "(" + Int1(1) + "t" +
                            B({0x89}) + kHooks + "tR";
  const std::string p = P2("}(" + first + later + "u");
  Graph g;
  Result<Ref> r = RunWithStorages(p, true, &g);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("memo key 7 refers back to the arguments of a tensor"),
            std::string::npos)
      << r.status().ToString();
  // Without releasing (every other pickle), the same stream reads.
  Graph kept;
  EXPECT_TRUE(RunWithStorages(p, false, &kept).ok());

  // Through the torch zip reader, with its byte offset.
  const std::string data(8, '\0');
  InProcessResult z = ParseInProcess(BuildZip({{"a/data.pkl", p},
                                              {"a/data/0", data},
                                              {"a/data/1", data},
                                              {"a/version", "3"}}));
  EXPECT_EQ(z.status.code(), StatusCode::kUnsupported) << z.status.ToString();
  EXPECT_NE(z.status.message().find("memo key 7 refers back"), std::string::npos);
}

// An argument that has a second reference before its tensor is built (the
// same tuple as size and stride through GET, an argument tuple DUP'd into
// two rebuilds) is kept, and the stream reads as it would without releasing.
TEST(ReleaseConsumed, AnArgumentWithASecondReferenceIsKept) {
  // Size (2,) under key 3, its stride the same tuple: a contiguous (2,)
  // view. Then key 3 once more, for a second tensor's size and stride.
  const std::string shared_size = Str("a") + kRebuild + kPid + Int1(0) + "(" + Int1(2) + "t" +
                                  Put(3) + Get(3) + B({0x89}) + kHooks + "tR";
  const std::string again = Str("b") + kRebuild + kPid + Int1(0) + Get(3) + Get(3) + B({0x89}) +
                            kHooks + "tR";
  // An argument tuple DUP'd: two tensors from one tuple (DUP is opcode 2).
  const std::string dup = kRebuild + Put(9) + "0" + Str("c") + kRebuild + kPid + Int1(0) + "(" +
                          Int1(2) + "t(" + Int1(1) + "t" + B({0x89}) + kHooks + "t2" + Put(10) +
                          "0" + "R" + Str("d") + Get(9) + Get(10) + "R";
  for (const std::string& body : {shared_size + again, dup}) ExpectReadsAsWithoutRelease(body);
}

// More ways a second reference is made before the release, each kept: a
// tuple memoized twice (then fetched by its first key), one memoized under
// a key outside the memo's vector (then fetched). And a parameter's
// arguments are released like a tensor's, with the same tensors read.
TEST(ReleaseConsumed, MemoizedTwiceOrSparselyIsKeptAndParametersRelease) {
  const std::string twice = Str("a") + kRebuild + kPid + Int1(0) + "(" + Int1(2) + "t" + Put(3) +
                            Put(4) + "(" + Int1(1) + "t" + B({0x89}) + kHooks + "tR" + Str("b") +
                            kRebuild + kPid + Int1(0) + Get(3) + "(" + Int1(1) + "t" + B({0x89}) +
                            kHooks + "tR";
  // Under a key the memo's vector does not admit (a far one; one past twice
  // the entries so far plus the slack, though inside the vector's chunks).
  auto sparse_at = [](uint32_t key) {
    return Str("a") + kRebuild + kPid + Int1(0) + "(" + Int1(2) + "t" + Put(key) + "(" + Int1(1) +
           "t" + B({0x89}) + kHooks + "tR" + Str("b") + kRebuild + kPid + Int1(0) + Get(key) +
           "(" + Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  };
  const std::string sparse = sparse_at(0x7FFFFFF0);
  const std::string near = sparse_at(5000);
  const std::string tensor = kRebuild + kPid + Int1(0) + "(" + Int1(2) + "t(" + Int1(1) + "t" +
                             B({0x89}) + kHooks + "tR";
  std::string params;
  for (int i = 0; i < 2; ++i) {
    params += Str(i == 0 ? "a" : "b") + Global("torch._utils", "_rebuild_parameter") + "(" +
              tensor + B({0x88}) + kHooks + "tR";
  }
  for (const std::string& body : {twice, sparse, near, params}) {
    const auto [released, kept] = ExpectReadsAsWithoutRelease(body);
    EXPECT_LT(released, kept) << "something is released";
  }
}

// A storage's persistent-id tuple, released once its storage record is
// built, fetched again: refused like any released argument.
TEST(ReleaseConsumed, AGetOfAReleasedPersistentIdIsRefused) {
  const std::string first = Str("a") + kRebuild + "((" + Str("storage") +
                            Global("torch", "FloatStorage") + Str("0") + Str("cpu") + Int1(2) +
                            "t" + Put(5) + "Q" + Int1(0) + "(" + Int1(2) + "t(" + Int1(1) + "t" +
                            B({0x89}) + kHooks + "tR";
  const std::string later = Str("b") + kRebuild + "(" + Get(5) + "Q" + Int1(0) + "(" + Int1(2) +
                            "t(" + Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  const std::string p = P2("}(" + first + later + "u");
  Graph g;
  Result<Ref> r = RunWithStorages(p, true, &g);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().message().find("memo key 5 refers back"), std::string::npos)
      << r.status().ToString();
  Graph kept;
  EXPECT_TRUE(RunWithStorages(p, false, &kept).ok());
}

// A storage's record is released with the arguments of the tensor it was
// made for; its StorageInfo stays. Through the torch zip reader: a later
// tensor over the same key gets a new record for the same storage (read at
// its own offset); a record memoized (torch.save never does) is kept, so a
// bare storage in the dict and a GET of it into another tensor's arguments
// stay one storage, and identical views of it are tied as before. The key
// str, memoized as torch.save memoizes it, is kept as the storage's text
// once its id tuple is spent: a GET of it (torch.save's way to name the
// storage of a second tensor) still names the same storage.
TEST(ReleaseConsumed, AStorageRecordGoesWithItsTensorAndItsKeyIsMadeAgain) {
  const std::string a = Str("a") + kRebuild + "((" + Str("storage") + Global("torch", "FloatStorage") +
                        Str("0") + Put(60) + Str("cpu") + Int1(2) + "tQ" + Int1(0) + "(" + Int1(2) +
                        "t(" + Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  const std::string f = Str("f") + kRebuild + "((" + Str("storage") + Global("torch", "FloatStorage") +
                        Get(60) + Str("cpu") + Int1(2) + "tQ" + Int1(0) + "(" + Int1(2) + "t(" +
                        Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  const std::string b = Str("b") + kRebuild + kPid + Int1(1) + "(" + Int1(1) + "t(" + Int1(1) + "t" +
                        B({0x89}) + kHooks + "tR";
  const std::string pid_memoized = "(" + Str("storage") + Global("torch", "FloatStorage") +
                                   Str("0") + Str("cpu") + Int1(2) + "tQ" + Put(50);
  const std::string c = Str("c") + pid_memoized;
  const std::string e = Str("e") + kRebuild + "(" + Get(50) + Int1(0) + "(" + Int1(2) + "t(" +
                        Int1(1) + "t" + B({0x89}) + kHooks + "tR";
  const std::string data("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);  // 1.0f, 2.0f
  InProcessResult r = ParseInProcess(BuildZip(
      {{"a/data.pkl", P2("}(" + a + b + c + e + f + "u")}, {"a/data/0", data}, {"a/version", "3"}}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.tensors.size(), 5u);
  EXPECT_EQ(r.tensors["f"].alias_of, "a");
  EXPECT_EQ(r.tensors["b"].bytes, data.substr(4));
  EXPECT_EQ(r.tensors["b"].alias_of, "");
  // a, c (the bare storage: 2 floats) and e: one view of one storage.
  EXPECT_EQ(r.tensors["a"].alias_of, "");
  EXPECT_EQ(r.tensors["a"].bytes, data);
  EXPECT_EQ(r.tensors["c"].alias_of, "a");
  EXPECT_EQ(r.tensors["e"].alias_of, "a");
}

// Only the torch zip reader releases; a tensor in a plain pickle keeps its
// arguments (nothing here reads them again, but nothing needs the memory).
TEST(ReleaseConsumed, OffUnlessAsked) {
  Graph g;
  ASSERT_TRUE(RunWithStorages(TorchSaveLike(10), false, &g).ok());
  EXPECT_TRUE(g.free_ids.empty());
  EXPECT_GE(g.objects.size(), 90u);
}

// The stream comes back to read_behind in order, every byte once, in runs
// of at least kReadBehindBytes, and only bytes read kReadBehindLag ago
// (the lag: a SETITEMS reads its batch's keys again).
TEST(ReadBehind, GivesTheStreamBackInOrderInRunsOfAFolio) {
  std::string body = "](";
  for (int i = 0; i < 100; ++i) body += "B" + LE(100 << 10, 4) + std::string(100 << 10, 'x');
  const std::string p = P2(body + "e");
  std::vector<ByteView> runs;
  ParseContext ctx(ParseOptions{});
  Graph g;
  MachineOptions o;
  o.read_behind = [&runs](ByteView read) { runs.push_back(read); };
  Machine m(ctx, g, o);
  uint64_t end = 0;
  const ByteView data = AsBytes(p);
  ASSERT_TRUE(m.Run(data, 0, &end).ok());
  ASSERT_GE(runs.size(), 3u);
  const uint8_t* next = data.data();
  for (const ByteView& r : runs) {
    EXPECT_EQ(r.data(), next);
    EXPECT_GE(r.size(), loader::pickle::kReadBehindBytes);
    next = r.data() + r.size();
  }
  EXPECT_LE(next + loader::pickle::kReadBehindLag, data.data() + end);
  // What is not given back is the lag and less than a run, plus one opcode.
  EXPECT_GE(next + loader::pickle::kReadBehindLag + loader::pickle::kReadBehindBytes + (100 << 10) + 5,
            data.data() + end);
}

// torch.save's data.pkl read from a file map, its pages dropped as the
// machine reads past them: nothing behind the last drop is mapped again
// while the rest is read. Before the lag and the copy on GET, the keys of a
// SETITEMS batch that straddled a drop, and 'storage' and 'cpu' (fetched
// from the memo for every tensor, written at the start), mapped every
// dropped block back in: all of data.pkl was resident at the end of the
// run, 90 MB for a million tensors.
TEST(ReadBehind, WhatWasDroppedIsNotReadAgain) {
  const std::string p = TorchSaveLike(90000, 1000);
  ASSERT_GT(p.size(), 4 * loader::pickle::kReadBehindBytes);
  const MappedFile file(p);
  ASSERT_TRUE(file.ok());
  if (MappedHere(file.view().data()) < 0) GTEST_SKIP() << "no /proc/self/pagemap";
  file.Drop();
  loader::MapResidency residency(file.view());
  const uint8_t* dropped_to = file.view().data();
  ParseContext ctx(ParseOptions{});
  Graph g;
  MachineOptions o;
  o.release_consumed = true;
  o.persistent_load = LoadFloatStorage;
  o.read_behind = [&](ByteView read) {
    residency.Drop(read);
    dropped_to = read.data() + read.size();
  };
  Machine m(ctx, g, o);
  uint64_t end = 0;
  const Result<Ref> root = m.Run(file.view(), 0, &end);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  ASSERT_GT(dropped_to, file.view().data() + 2 * loader::pickle::kReadBehindBytes);
  // Up to the start of the 2 MiB block the last drop ended in: a read after
  // the drop may map that block's large page-cache folio whole, pages
  // before the drop point with it, on a kernel that maps folios so.
  const uint8_t* counted_to =
      file.view().data() + (static_cast<uint64_t>(dropped_to - file.view().data()) & ~((uint64_t{2} << 20) - 1));
  size_t pages = 0, mapped = 0;
  for (const uint8_t* at = file.view().data(); at + 4096 <= counted_to; at += 4096) {
    ++pages;
    if (MappedHere(at) == 1) ++mapped;
  }
  EXPECT_EQ(mapped, 0u) << "of " << pages << " pages behind the last drop";
}

// With read_behind set, a GET of a short str that lies in the stream moves
// its bytes out of the stream once (same bytes); a long one, a bytes
// object, or one fetched without read_behind, stays where it was written.
TEST(ReadBehind, AGetCopiesAShortStringOutOfTheStream) {
  const std::string long_text(loader::pickle::kCopyOnGetBytes + 1, 'x');
  const std::string p = P2("(" + Str("cpu") + Put(0) + Str(long_text) + Put(1) + Get(0) + Get(1) +
                           Get(0) + "C" + LE(3, 1) + "cpu" + Put(2) + Get(2) + "t");
  const ByteView data = AsBytes(p);
  auto inside = [&data](ByteView d) {
    return d.data() >= data.data() && d.data() < data.data() + data.size();
  };
  for (const bool behind : {false, true}) {
    SCOPED_TRACE(behind);
    ParseContext ctx(ParseOptions{});
    Graph g;
    MachineOptions o;
    if (behind) o.read_behind = [](ByteView) {};
    Machine m(ctx, g, o);
    uint64_t end = 0;
    Result<Ref> root = m.Run(data, 0, &end);
    ASSERT_TRUE(root.ok()) << root.status().ToString();
    const auto items = g.items(*root);
    ASSERT_EQ(items.size(), 7u);
    EXPECT_TRUE(inside(g.at(items[6]).data()));  // bytes: not copied
    EXPECT_EQ(g.text(items[0]), "cpu");
    EXPECT_EQ(g.text(items[2]), "cpu");
    EXPECT_EQ(g.text(items[3]), long_text);
    EXPECT_EQ(items[0].id, items[2].id);  // one object, as in Python
    EXPECT_EQ(inside(g.at(items[0]).data()), !behind);
    EXPECT_TRUE(inside(g.at(items[1]).data()));
    EXPECT_EQ(g.owned.size(), behind ? 1u : 0u);  // copied once, not per GET
  }
}

// The copies on GET of one stream stop at kMaxCopyOnGetTotal: a stream of
// many short strings, each fetched again, has the first ones copied and the
// rest read where they are.
TEST(ReadBehind, CopiesOnGetStopAtTheirTotal) {
  constexpr uint32_t kLen = 256;
  constexpr uint32_t kCopied = loader::pickle::kMaxCopyOnGetTotal / kLen;
  std::string body = "(";
  for (uint32_t i = 0; i < kCopied + 100; ++i) {
    std::string text = std::to_string(i);
    text.resize(kLen, 'a');
    body += Str(text) + Put(i) + "0" + Get(i);  // POP the str, fetch it again
  }
  const std::string p = P2(body + "t");
  ParseContext ctx(ParseOptions{});
  Graph g;
  MachineOptions o;
  o.read_behind = [](ByteView) {};
  Machine m(ctx, g, o);
  uint64_t end = 0;
  Result<Ref> root = m.Run(AsBytes(p), 0, &end);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(g.items(*root).size(), kCopied + 100u);
  EXPECT_EQ(g.owned.size(), kCopied);
}

// A torch checkpoint whose data.pkl (3 MB here) lies in the worker's map: once
// parsed, its pages are not left mapped (read behind as the machine reads,
// and again after the walk has copied the names). Without a droppable map,
// the control, they are.
TEST(ReadBehind, ATorchDataPklLeavesFewPagesMapped) {
  std::string body = "}(";
  for (int i = 0; i < 30000; ++i) {
    body += Str("layer." + std::to_string(i) + ".weight") +
            Global("torch._utils", "_rebuild_tensor_v2") + "((" + Str("storage") +
            Global("torch", "FloatStorage") + Str(std::to_string(i)) + Str("cpu") + Int1(1) +
            "tQ" + Int1(0) + "(" + Int1(1) + "t(" + Int1(1) + "t" + B({0x89}) +
            Global("collections", "OrderedDict") + ")Rt" + "R";
    if (i % 1000 == 999) body += "u(";
  }
  const std::string pkl = P2(body + "u");
  std::vector<ZipMember> members = {{.name = "a/data.pkl", .data = pkl}};
  for (int i = 0; i < 30000; ++i) members.push_back({.name = "a/data/" + std::to_string(i), .data = "\x01\x02\x03\x04"});
  members.push_back({.name = "a/version", .data = "3"});
  const std::string image = BuildZip(members);
  members.clear();
  const size_t at = image.find(pkl);
  ASSERT_NE(at, std::string::npos);
  const MappedFile file(image);
  ASSERT_TRUE(file.ok());
  if (MappedHere(file.view().data()) < 0) GTEST_SKIP() << "no /proc/self/pagemap";
  for (const bool droppable : {false, true}) {
    SCOPED_TRACE(droppable);
    file.Drop();
    ParseOptions options;
    if (droppable) options.droppable_map = file.view();
    ParseContext ctx(options);
    loader::ParsedModel model;
    ASSERT_TRUE(loader::ParseModel(file.view(), ctx, &model).ok());
    ASSERT_EQ(model.tensors.size(), 30000u);
    size_t pages = 0, mapped = 0;
    for (size_t off = (at + 4095) / 4096 * 4096; off + 4096 <= at + pkl.size(); off += 4096) {
      ++pages;
      if (MappedHere(file.view().data() + off) == 1) ++mapped;
    }
    if (droppable) {
      EXPECT_LE(mapped, 8u) << "of " << pages;
    } else {
      EXPECT_GE(mapped, pages / 2) << "of " << pages;  // the control
    }
  }
}

}  // namespace
}  // namespace safemodel::testing
