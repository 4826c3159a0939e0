// The pickle machine, opcode by opcode and rule by rule, on hand-assembled
// byte strings (in-process, through loader::ParseModel). Also the torch
// containers on hand-built zips and legacy streams.
#include "loader/pickle/pickle_machine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/loader/pickle/pickle_bytes.h"
#include "tests/testing/loader_util.h"
#include "tests/testing/test_util.h"

#include "safemodel/limits.h"

#include "loader/pickle/pickle_globals.h"

namespace safemodel::testing {
namespace {

using loader::pickle::kMaxBigIntBytes;
using loader::pickle::kMaxMarks;

// ---- Assembling pickles (more in pickle_bytes.h) --------------------------------

const std::string kProto2 = B({0x80, 2});
const std::string kProto4 = B({0x80, 4});

InProcessResult Parse(const std::string& bytes) { return ParseInProcess(bytes); }

std::string Json(const Value& v) { return ValueToJson(v); }

// References of every refusal, in order.
std::vector<std::string> Refs(const InProcessResult& r) {
  std::vector<std::string> out;
  for (const Finding& f : r.findings) {
    if (f.severity == Finding::Severity::kRefused)
      out.insert(out.end(), f.references.begin(), f.references.end());
  }
  return out;
}

std::vector<std::string> Refused(const InProcessResult& r) {
  return Rules(r.findings, Finding::Severity::kRefused);
}

#define EXPECT_REFUSED(r, rule)                                                  \
  do {                                                                           \
    EXPECT_EQ((r).status.code(), StatusCode::kRefused) << (r).status.ToString(); \
    auto rules_ = Refused(r);                                                    \
    EXPECT_NE(std::find(rules_.begin(), rules_.end(), rule), rules_.end())       \
        << (r).status.ToString();                                                \
  } while (0)

#define EXPECT_CODE(r, want) EXPECT_EQ((r).status.code(), want) << (r).status.ToString()

// ---- Constants and strings -------------------------------------------------------

TEST(PickleOpcodes, ConstantsOfEveryProtocol) {
  std::string body = "]" + std::string("(") + "N" + B({0x88, 0x89}) +  // NONE NEWTRUE NEWFALSE
                     "I00\n" + "I01\n" + "I-42\n" +                    // INT (bools, int)
                     "J" + LE(0xFFFFFFFE, 4) +                         // BININT -2
                     Int1(200) + "M" + LE(65535, 2) +                  // BININT1, BININT2
                     "L123456789012345678901234567890L\n" +            // LONG (big)
                     B({0x8a, 2, 0x00, 0x80}) +                        // LONG1 -32768
                     B({0x8b}) + LE(1, 4) + B({0x7f}) +                // LONG4 127
                     "F1.5\n" + "G" + B({0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}) +  // pi
                     "e";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(
      Json(r.metadata),
      "[null,true,false,false,true,-42,-2,200,65535,{\"$int\":\"123456789012345678901234567890\"},"
      "-32768,127,1.5,3.141592653589793]");
}

TEST(PickleOpcodes, StringsOfEveryProtocol) {
  std::string body =
      "](" + std::string("S'a\\'b\\x41\\101\\n\\q'\n") +      // STRING with escapes
      "T" + LE(3, 4) + "abc" +                                // BINSTRING
      "U" + LE(2, 1) + B({0xC3, 0xA9}) +                      // SHORT_BINSTRING, not ASCII
      "Vcaf\xe9 \\u00e9\\U0001F600 \\x\n" +                   // UNICODE raw-unicode-escape
      Str("\xc3\xa9t\xc3\xa9") + Short("x") +                 // BINUNICODE, SHORT_BINUNICODE
      B({0x8d}) + LE(2, 8) + "yz" +                           // BINUNICODE8
      "C" + LE(2, 1) + B({0, 1}) + "B" + LE(1, 4) + B({2}) +  // SHORT_BINBYTES, BINBYTES
      B({0x8e}) + LE(1, 8) + B({3}) + B({0x96}) + LE(1, 8) + B({4}) +  // BINBYTES8, BYTEARRAY8
      "e";
  InProcessResult r = Parse(B({0x80, 5}) + body + ".");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata),
            "[\"a'bAA\\n\\\\q\",\"abc\",{\"$bytes\":\"c3a9\"},\"caf\xC3\xA9 "
            "\xC3\xA9\xF0\x9F\x98\x80 \\\\x\","
            "\"\xC3\xA9t\xC3\xA9\",\"x\",\"yz\",{\"$bytes\":\"0001\"},{\"$bytes\":\"02\"},{\"$"
            "bytes\":\"03\"},"
            "{\"$bytes\":\"04\"}]");
}

TEST(PickleOpcodes, ContainersAndTheirOpcodes) {
  std::string body = "}(" + Short("list") + "(" + Int1(1) + Int1(2) + "l" + Int1(3) + "a" + "(" +
                     Int1(4) + Int1(5) + "e" +  // LIST + APPEND(S) onto it
                     Short("tuples") + "(" + ")" + Int1(1) + B({0x85}) + Int1(1) + Int1(2) +
                     B({0x86}) + Int1(1) + Int1(2) + Int1(3) + B({0x87}) + "(" + Int1(9) + "t" +
                     "l" +                                               // TUPLE1/2/3, TUPLE
                     Short("dict") + "(" + Short("k") + Int1(1) + "d" +  // DICT
                     Short("set") + B({0x8f}) + "(" + Int1(1) + Int1(1) + Int1(2) +
                     B({0x90}) +                                    // EMPTY_SET, ADDITEMS
                     Short("frozen") + "(" + Int1(7) + B({0x91}) +  // FROZENSET
                     "u";
  InProcessResult r = Parse(kProto4 + body + ".");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata),
            "{\"list\":[1,2,3,4,5],\"tuples\":[[],[1],[1,2],[1,2,3],[9]],\"dict\":{\"k\":1},"
            "\"set\":{\"$set\":[1,2]},\"frozen\":{\"$set\":[7]}}");
}

TEST(PickleOpcodes, AContainerChangedAfterItWasSharedChangesForEveryHolder) {
  // A list built complete by LIST, memoized, held by a tuple, fetched, then
  // APPENDS: Python's reference semantics show [1, 2, 3, 4] everywhere.
  std::string list = "(" + Int1(1) + Int1(2) + "l" + "q" + B({0}) + "h" + B({0}) + B({0x85}) + "h" +
                     B({0}) + "(" + Int1(3) + Int1(4) + "e";
  // A dict built by DICT, shared the same way, then SETITEMS replacing a
  // value and adding a key.
  std::string dict = "(" + Short("k") + Int1(1) + "d" + "q" + B({1}) + B({0x85}) + "h" + B({1}) +
                     "(" + Short("k") + Int1(5) + Short("m") + Int1(6) + "u";
  InProcessResult r = Parse(kProto4 + "](" + list + dict + "e.");
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata),
            "[[1,2,3,4],[[1,2,3,4]],[1,2,3,4],[{\"k\":5,\"m\":6}],{\"k\":5,\"m\":6}]");
}

TEST(PickleOpcodes, SetItemFollowsPythonKeyEquality) {
  // {1: 'a', True: 'b', 1.0: 'c', (1, 'x'): 'd', None: 'e'} is {1: 'c', (1, 'x'): 'd', None: 'e'}.
  std::string body = "}(" + Int1(1) + Short("a") + B({0x88}) + Short("b") + "G" +
                     B({0x3f, 0xf0, 0, 0, 0, 0, 0, 0}) + Short("c") + Int1(1) + Short("x") +
                     B({0x86}) + Short("d") + "N" + Short("e") + "u";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata), "{\"1\":\"c\",\"(1, 'x')\":\"d\",\"None\":\"e\"}");
  // A list as a key is unhashable: the stream is malformed.
  InProcessResult bad = Parse(P2("}]" + Int1(1) + "s"));
  EXPECT_CODE(bad, StatusCode::kMalformed);
  // Keys that render alike cannot both be map keys.
  InProcessResult clash = Parse(P2("}(" + Short("1") + Int1(1) + Int1(1) + Int1(2) + "u"));
  EXPECT_CODE(clash, StatusCode::kUnsupported);
}

TEST(PickleOpcodes, StackAndMemo) {
  // PUT does not pop; GET pushes the same object; MEMOIZE uses the memo size.
  std::string body = "](" + Short("a") + "p7\n" + "g7\n" + Short("b") + "q" + B({3}) + "h" +
                     B({3}) + Short("c") + "r" + LE(0xFFFFFFFF, 4) + "j" +
                     LE(0xFFFFFFFF, 4) +    // huge key, no DoS
                     "2" +                  // DUP
                     Int1(9) + "0" +        // POP
                     "(" + Int1(8) + "1" +  // MARK, POP_MARK
                     "(" + "0" +            // POP of an empty mark pops it
                     "e";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata), "[\"a\",\"a\",\"b\",\"b\",\"c\",\"c\",\"c\"]");
  // MEMOIZE stores at len(memo): after BINPUT 0 and MEMOIZE (key 1), GET 1.
  InProcessResult m = Parse(kProto4 + "](" + Short("x") + "q" + B({0}) + "0" + Short("y") +
                            B({0x94}) + "0" + "h" + B({1}) + "e.");
  ASSERT_TRUE(m.status.ok()) << m.status.ToString();
  EXPECT_EQ(Json(m.metadata), "[\"y\"]");
  // A shared object is expanded where it is used.
  InProcessResult shared =
      Parse(P2("](" + std::string("]q") + B({0}) + Int1(1) + "a" + "h" + B({0}) + "e"));
  ASSERT_TRUE(shared.status.ok()) << shared.status.ToString();
  EXPECT_EQ(Json(shared.metadata), "[[1],[1]]");
}

TEST(PickleOpcodes, FramesAreHonouredStrictly) {
  const std::string body = "]" + Short("abc") + "a";
  InProcessResult ok = Parse(kProto4 + Frame(body) + Frame("."));
  ASSERT_TRUE(ok.status.ok()) << ok.status.ToString();
  EXPECT_EQ(Json(ok.metadata), "[\"abc\"]");
  // Opcodes after a used-up frame, outside any frame, are fine.
  EXPECT_TRUE(Parse(kProto4 + Frame(body) + ".").status.ok());
  // A string whose bytes run past the end of its frame.
  std::string straddle = kProto4 + B({0x95}) + LE(3, 8) + "]" + B({0x8c, 3}) + "abca.";
  EXPECT_CODE(Parse(straddle), StatusCode::kMalformed);
  EXPECT_NE(Parse(straddle).status.message().find("straddle"), std::string::npos);
  // A new frame before the current one is used up.
  EXPECT_CODE(Parse(kProto4 + B({0x95}) + LE(20, 8) + Frame("N.")), StatusCode::kMalformed);
  // A frame longer than the file.
  EXPECT_CODE(Parse(kProto4 + B({0x95}) + LE(100, 8) + "N."), StatusCode::kMalformed);
  // STOP with frame bytes left over.
  EXPECT_CODE(Parse(kProto4 + Frame("N.NN")), StatusCode::kMalformed);
}

TEST(PickleOpcodes, ProtocolZeroObjectsViaInstAndReconstructor) {
  // INST collections.OrderedDict with no arguments; then OBJ of a known type.
  InProcessResult inst = Parse("(icollections\nOrderedDict\np0\n.");
  ASSERT_TRUE(inst.status.ok()) << inst.status.ToString();
  EXPECT_EQ(Json(inst.metadata), "{}");
  // copy_reg._reconstructor(argparse.Namespace, object, None) + BUILD, protocol 0.
  InProcessResult ns = Parse(
      "ccopy_reg\n_reconstructor\n(cargparse\nNamespace\nc__builtin__\nobject\nNtR"
      "(dVlr\nF0.5\nsb.");
  ASSERT_TRUE(ns.status.ok()) << ns.status.ToString();
  EXPECT_EQ(Json(ns.metadata), "{\"$class\":\"argparse.Namespace\",\"lr\":0.5}");
}

TEST(PickleOpcodes, KnownDataConstructors) {
  std::string body = "](" + Global("__builtin__", "set") + "](" + Int1(1) + Int1(2) + "e" +
                     B({0x85}) + "R" + Global("_codecs", "encode") + Str("\xc3\xbf\x01") +
                     Str("latin1") + B({0x86}) + "R" + Global("__builtin__", "complex") + "G" +
                     B({0x3f, 0xf0, 0, 0, 0, 0, 0, 0}) + Int1(2) + B({0x86}) + "R" +
                     Global("torch", "Size") + Int1(2) + Int1(3) + B({0x86}) + B({0x85}) + "R" +
                     Global("torch", "device") + Short("cuda") + Int1(1) + B({0x86}) + "R" +
                     Global("collections", "OrderedDict") + "](" + Short("k") + Int1(5) +
                     B({0x86}) + "e" + B({0x85}) + "R" + Global("torch", "float16") + "e";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata),
            "[{\"$set\":[1,2]},{\"$bytes\":\"ff01\"},{\"$complex\":[1.0,2.0]},[2,3],{\"$device\":"
            "\"cuda:1\"},"
            "{\"k\":5},{\"$global\":\"torch.float16\"}]");
}

TEST(PickleOpcodes, NumpyScalarsArraysAndDtypes) {
  auto dtype = [](const std::string& descr, const std::string& order) {
    return Global("numpy", "dtype") + Str(descr) + B({0x89, 0x88, 0x87}) + "R" + "(" + Int1(3) +
           Str(order) + "NNN" + "J" + LE(0xFFFFFFFF, 4) + "J" + LE(0xFFFFFFFF, 4) + Int1(0) + "tb";
  };
  // scalar(dtype('<f4'), b'\x00\x00\xc0\x3f') == 1.5; big-endian i2 scalar 258.
  std::string body = "}(" + Short("f") + Global("numpy.core.multiarray", "scalar") +
                     dtype("f4", "<") + "C" + LE(4, 1) + B({0, 0, 0xc0, 0x3f}) + B({0x86}) + "R" +
                     Short("i") + Global("numpy._core.multiarray", "scalar") + dtype("i2", ">") +
                     "C" + LE(2, 1) + B({1, 2}) + B({0x86}) + "R" +
                     // _reconstruct(ndarray, (0,), b'b') + BUILD (1, (2,), dtype, False, data)
                     Short("a") + Global("numpy.core.multiarray", "_reconstruct") +
                     Global("numpy", "ndarray") + Int1(0) + B({0x85}) + "C" + LE(1, 1) + "b" +
                     B({0x87}) + "R" + "(" + Int1(1) + Int1(2) + B({0x85}) + dtype("u2", "<") +
                     B({0x89}) + "C" + LE(4, 1) + B({1, 0, 2, 0}) + "tb" + "u";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata), "{\"f\":1.5,\"i\":258,\"a\":{\"$tensor\":\"a\"}}");
  ASSERT_EQ(r.tensors.count("a"), 1u);
  EXPECT_EQ(r.tensors["a"].dtype, DType::kU16);
  EXPECT_EQ(r.tensors["a"].bytes, B({1, 0, 2, 0}));
  // Data that does not match shape x itemsize is refused as malformed.
  std::string bad = body;
  bad.replace(bad.find(B({1, 0, 2, 0})) - 2, 6, "C" + LE(3, 1) + B({1, 0, 2}));
  EXPECT_CODE(Parse(P2(bad)), StatusCode::kMalformed);
}

// An array whose data the machine decoded (protocol 2 pickles bytes as
// _codecs.encode(text, 'latin1')): the tensor views Graph::owned, which the
// conversion keeps alive on its own while the rest of the graph is freed when
// the parser returns, before the tensor is streamed. 1 MiB of data: a block
// malloc maps on its own, so that a dangling view faults even without ASan.
TEST(PickleOpcodes, DecodedArrayDataOutlivesTheGraph) {
  auto dtype = [](const std::string& descr, const std::string& order) {
    return Global("numpy", "dtype") + Str(descr) + B({0x89, 0x88, 0x87}) + "R" + "(" + Int1(3) +
           Str(order) + "NNN" + "J" + LE(0xFFFFFFFF, 4) + "J" + LE(0xFFFFFFFF, 4) + Int1(0) + "tb";
  };
  constexpr size_t kBytes = 1 << 20;
  // U+00FF U+0002 ... in UTF-8; encoded to latin1: ff 02 ff 02 ...
  std::string text, expected;
  for (size_t i = 0; i < kBytes / 2; ++i) {
    text += "\xc3\xbf\x02";
    expected += "\xff\x02";
  }
  std::string body = "}(" + Short("a") + Global("numpy.core.multiarray", "_reconstruct") +
                     Global("numpy", "ndarray") + Int1(0) + B({0x85}) + "C" + LE(1, 1) + "b" +
                     B({0x87}) + "R" + "(" + Int1(1) + "J" + LE(kBytes / 2, 4) + B({0x85}) +
                     dtype("u2", "<") + B({0x89}) + Global("_codecs", "encode") + Str(text) +
                     Str("latin1") + B({0x86}) + "R" + "tb" + "u";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.tensors.count("a"), 1u);
  EXPECT_EQ(r.tensors["a"].dtype, DType::kU16);
  EXPECT_TRUE(r.tensors["a"].bytes == expected);
}

TEST(PickleOpcodes, UserClassesAreRecordedByNameOnly) {
  // NEWOBJ __main__.Net () + BUILD {'w': [1]}: converted, with a note.
  std::string body =
      Global("__main__", "Net") + ")" + B({0x81}) + "}" + Short("w") + "]" + Int1(1) + "a" + "sb";
  InProcessResult r = Parse(P2(body));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Json(r.metadata), "{\"$class\":\"__main__.Net\",\"$user_class\":true,\"w\":[1]}");
  EXPECT_EQ(Rules(r.findings, Finding::Severity::kNote),
            (std::vector<std::string>{"pickle.user_class"}));
  // Each finding is located at the name's GLOBAL opcode (byte 2, after PROTO).
  ASSERT_EQ(r.findings.size(), 1u);
  EXPECT_EQ(r.findings[0].location, "pickle byte 2");
  // Calling it (REDUCE) runs its code: refused.
  InProcessResult call = Parse(P2(Global("__main__", "Net") + ")R"));
  EXPECT_REFUSED(call, "pickle.call");
  // A bare reference to a user-script name (a function, say): refused.
  InProcessResult bare = Parse(P2(Global("__main__", "helper")));
  EXPECT_REFUSED(bare, "pickle.global");
  EXPECT_EQ(Refs(bare), (std::vector<std::string>{"__main__.helper"}));
  ASSERT_EQ(bare.findings.size(), 1u);
  EXPECT_EQ(bare.findings[0].location, "pickle byte 2");
  EXPECT_NE(bare.findings[0].message.find("__main__.helper at byte 2:"), std::string::npos)
      << bare.findings[0].message;
  // Instantiated once and also kept as a value through the memo
  // ({'obj': Evil(), 'cls': <Evil>}): the value is refused, not rendered.
  InProcessResult memo = Parse(P2("}(" + Short("obj") + Global("__main__", "Evil") + "q" +
                                  B({0x01}) + ")" + B({0x81}) + Short("cls") + "h" + B({0x01}) +
                                  "u"));
  EXPECT_REFUSED(memo, "pickle.global");
  EXPECT_EQ(Refs(memo), (std::vector<std::string>{"__main__.Evil"}));
  for (const Finding& f : memo.findings) {
    if (f.severity != Finding::Severity::kRefused) continue;
    EXPECT_EQ(f.location, "pickle byte 9");  // after PROTO, EMPTY_DICT, MARK, 'obj'
    EXPECT_NE(f.message.find("at byte 9 of pickle"), std::string::npos) << f.message;
  }
}

// ---- Refusal rules ------------------------------------------------------------------

TEST(PickleRefusal, UnknownGlobalIsNamedWithItsOffset) {
  InProcessResult r = Parse(P2(Global("posix", "system") + Str("echo hi") + B({0x85}) + "R"));
  EXPECT_REFUSED(r, "pickle.global");
  ASSERT_FALSE(r.findings.empty());
  EXPECT_EQ(r.findings[0].location, "pickle byte 2");
  EXPECT_EQ(r.findings[0].references, (std::vector<std::string>{"posix.system"}));
  EXPECT_NE(r.status.message().find("posix.system at byte 2"), std::string::npos)
      << r.status.ToString();
  // Python 2 names are mapped before the lookup (and in the report).
  InProcessResult py2 = Parse("c__builtin__\neval\n(S'1'\ntR.");
  EXPECT_EQ(Refs(py2), (std::vector<std::string>{"builtins.eval"}));
}

TEST(PickleRefusal, EveryCallableInTheStreamIsListed) {
  std::string body = "](" + Global("os", "system") + Global("builtins", "getattr") +
                     StackGlobal("subprocess", "run") + "e";
  InProcessResult r = Parse(kProto4 + body + ".");
  EXPECT_REFUSED(r, "pickle.global");
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"os.system", "builtins.getattr", "subprocess.run"}));
}

TEST(PickleRefusal, InstAndStackGlobalAreNamesToo) {
  InProcessResult inst = Parse("(S'ls'\nios\nsystem\n.");
  EXPECT_REFUSED(inst, "pickle.global");
  EXPECT_EQ(Refs(inst), (std::vector<std::string>{"os.system"}));
  // Protocol-0 STRING operands to STACK_GLOBAL (no PROTO opcode at all).
  InProcessResult sg = Parse("S'os'\nS'system'\n" + B({0x93}) + ".");
  EXPECT_EQ(Refs(sg), (std::vector<std::string>{"os.system"}));
}

TEST(PickleRefusal, DottedNamesAreRefusedEvenForKnownPaths) {
  // ("torch", "_utils._rebuild_tensor_v2") is an attribute path, not the
  // table's ("torch._utils", "_rebuild_tensor_v2").
  InProcessResult r = Parse(kProto4 + StackGlobal("torch", "_utils._rebuild_tensor_v2") + ".");
  EXPECT_REFUSED(r, "pickle.global");
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"torch._utils._rebuild_tensor_v2"}));
  InProcessResult p = Parse(kProto4 + StackGlobal("pathlib", "os.system") + ".");
  EXPECT_EQ(Refs(p), (std::vector<std::string>{"pathlib.os.system"}));
}

TEST(PickleRefusal, NamesComputedAtLoadTimeAreRefused) {
  // STACK_GLOBAL whose operands are names, not literal strings.
  std::string body = Global("torch", "float32") + Short("x") + B({0x93});
  InProcessResult r = Parse(kProto4 + body + ".");
  EXPECT_REFUSED(r, "pickle.global");
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"<computed name>"}));
  // Non-string literals are simply malformed (CPython raises).
  InProcessResult n = Parse(kProto4 + Int1(1) + Short("x") + B({0x93}) + ".");
  EXPECT_CODE(n, StatusCode::kMalformed);
}

TEST(PickleRefusal, CallingAnythingButANameIsRefused) {
  // REDUCE on a tuple and on a known data value.
  InProcessResult r = Parse(P2(")" + B({0x85}) + ")R"));
  EXPECT_REFUSED(r, "pickle.call");
  // APPEND onto an instance would call its append method.
  InProcessResult a = Parse(P2(Global("argparse", "Namespace") + ")" + B({0x81}) + Int1(1) + "a"));
  EXPECT_REFUSED(a, "pickle.call");
}

TEST(PickleRefusal, BuildOnANameIsRefused) {
  // Setting attributes on a module or function changes what names resolve to.
  InProcessResult r = Parse(P2(Global("torch._utils", "_rebuild_tensor_v2") + "}b"));
  EXPECT_REFUSED(r, "pickle.build_global");
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"torch._utils._rebuild_tensor_v2"}));
}

TEST(PickleRefusal, ExtensionCodesPersistentIdsAndBuffers) {
  EXPECT_REFUSED(Parse(P2(B({0x82, 1}))), "pickle.extension_code");
  EXPECT_REFUSED(Parse(P2(B({0x83, 1, 0}))), "pickle.extension_code");
  EXPECT_REFUSED(Parse(P2(B({0x84, 1, 0, 0, 0}))), "pickle.extension_code");
  EXPECT_REFUSED(Parse("Pfile:/etc/passwd\n."), "pickle.persistent_id");
  EXPECT_REFUSED(Parse(P2(Str("storage") + "Q")), "pickle.persistent_id");
  EXPECT_REFUSED(Parse(B({0x80, 5, 0x97, '.'})), "pickle.out_of_band_buffer");
  // An in-band buffer made read-only is just bytes.
  InProcessResult ro = Parse(B({0x80, 5, 0x96}) + LE(1, 8) + "z" + B({0x98}) + ".");
  ASSERT_TRUE(ro.status.ok()) << ro.status.ToString();
  EXPECT_EQ(Json(ro.metadata), "{\"$bytes\":\"7a\"}");
}

TEST(PickleRefusal, JoblibArraysInOtherFilesAreRefused) {
  InProcessResult r = Parse(P2(Global("joblib.numpy_pickle", "NDArrayWrapper") + ")" + B({0x81}) +
                               "}" + Short("filename") + Short("x.npy") + "sb"));
  EXPECT_REFUSED(r, "pickle.external_file");
}

TEST(PickleRefusal, FindingsBeforeAParseErrorStillRefuse) {
  // A payload, then a string that claims 500 MB: refused (and named), not
  // merely malformed.
  InProcessResult r = Parse("cbuiltins\nexec\n(X" + LE(543558206, 4) + "x");
  EXPECT_REFUSED(r, "pickle.global");
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"builtins.exec"}));
  // A payload, then a memo key never stored.
  InProcessResult k = Parse(P2(Global("os", "system") + Str("x") + B({0x85}) + "R0h" + B({3})));
  EXPECT_EQ(Refs(k), (std::vector<std::string>{"os.system"}));
}

TEST(PickleRefusal, ASecondPickleAfterStopIsScanned) {
  InProcessResult r = Parse(
      P2("]") + P2(Global("requests.api", "get") + Str("http://x.invalid") + B({0x85}) + "R"));
  EXPECT_REFUSED(r, "pickle.global");
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"requests.api.get"}));
  // Harmless trailing bytes are still not accepted.
  EXPECT_CODE(Parse(P2("]") + "junk"), StatusCode::kMalformed);
}

// ---- Malformed streams and limits ------------------------------------------------------

TEST(PickleMalformed, StructuralErrors) {
  EXPECT_CODE(Parse(kProto2 + B({0xff}) + "."), StatusCode::kMalformed);           // unknown opcode
  EXPECT_CODE(Parse(kProto2 + "X" + LE(100, 4) + "ab."), StatusCode::kMalformed);  // truncated
  EXPECT_CODE(Parse(kProto2 + "N"), StatusCode::kMalformed);                       // no STOP
  EXPECT_CODE(Parse(kProto2 + "h" + B({1}) + "."), StatusCode::kMalformed);        // memo miss
  EXPECT_CODE(Parse(kProto2 + "a."), StatusCode::kMalformed);                      // underflow
  EXPECT_CODE(Parse(kProto2 + "]" + Int1(1) + "e."),
              StatusCode::kMalformed);  // APPENDS without MARK
  EXPECT_CODE(Parse(kProto2 + "}(" + Int1(1) + "u."), StatusCode::kMalformed);  // odd SETITEMS
  EXPECT_CODE(Parse(kProto2 + "NN."), StatusCode::kMalformed);                  // leftovers at STOP
  EXPECT_CODE(Parse(kProto2 + "(N."), StatusCode::kMalformed);                  // a mark left open
  EXPECT_FALSE(Parse(B({0x80, 6}) + "N.").status.ok());                         // protocol 6
  EXPECT_CODE(Parse("S'unquoted\n."), StatusCode::kMalformed);
  EXPECT_CODE(Parse("I012\n."), StatusCode::kMalformed);        // not canonical decimal
  EXPECT_CODE(Parse("cmod\n\xf8\n."), StatusCode::kMalformed);  // GLOBAL not UTF-8
  EXPECT_CODE(Parse(kProto2 + "X" + LE(2, 4) + "\xc3\x28."),
              StatusCode::kMalformed);  // invalid UTF-8
  EXPECT_CODE(Parse(kProto2 + B({0x8b}) + LE(0x80000000, 4) + "."),
              StatusCode::kMalformed);  // negative LONG4
  EXPECT_CODE(Parse(kProto2 + "T" + LE(0xFFFFFFFF, 4) + "."),
              StatusCode::kMalformed);  // negative BINSTRING
}

// kMaxObjects counts every heap object a stream makes (here one list per
// EMPTY_LIST, popped at once: the limit is on what is made, not on what is
// kept), but EMPTY_TUPLE makes none past the first of a run: every () is the
// same object, as in Python, whose pickle.loads takes the second stream.
TEST(PickleMalformed, TheObjectLimitCountsEveryObjectMadeButTheOneEmptyTuple) {
  const uint64_t n = loader::pickle::kMaxObjects + 1;
  std::string lists = kProto2, tuples = kProto2;
  lists.reserve(2 * n + 4);
  tuples.reserve(2 * n + 4);
  for (uint64_t i = 0; i < n; ++i) {
    lists += "]0";
    tuples += ")0";
  }
  const InProcessResult refused = Parse(lists + "N.");
  EXPECT_CODE(refused, StatusCode::kLimitExceeded);
  EXPECT_NE(refused.status.message().find("more than 8388608 objects (limit)"), std::string::npos)
      << refused.status.ToString();
  EXPECT_NE(Parse(tuples + "N.").status.code(), StatusCode::kLimitExceeded);
}

TEST(PickleMalformed, LimitsAreEnforcedWithoutRecursion) {
  // More open marks than allowed.
  EXPECT_CODE(Parse(kProto2 + std::string(kMaxMarks + 1, '(')), StatusCode::kLimitExceeded);
  // An integer wider than the limit.
  EXPECT_CODE(Parse(kProto2 + B({0x8b}) + LE(kMaxBigIntBytes + 8, 4) +
                    std::string(kMaxBigIntBytes + 8, '\x11') + "."),
              StatusCode::kLimitExceeded);
  // Lists nested deeper than the Value tree allows.
  std::string deep = kProto2;
  for (int i = 0; i < 100; ++i) deep += "]";
  for (int i = 0; i < 99; ++i) deep += "a";
  EXPECT_CODE(Parse(deep + "."), StatusCode::kLimitExceeded);
  // A "billion laughs": each list holds the previous one ten times.
  std::string laughs = kProto2 + "]" + "q" + B({0}) + "0";
  for (int level = 1; level <= 9; ++level) {
    laughs += "](";
    for (int i = 0; i < 10; ++i) laughs += "h" + B({level - 1});
    laughs += "eq" + B({level}) + (level < 9 ? "0" : "");
  }
  EXPECT_CODE(Parse(laughs + "."), StatusCode::kLimitExceeded);
  // A list that contains itself.
  EXPECT_CODE(Parse(kProto2 + "]q" + B({0}) + "h" + B({0}) + "a."), StatusCode::kUnsupported);
  // Deeply nested tuples as a dict key: hashed without recursion.
  std::string key = kProto2 + "}" + "N";
  for (int i = 0; i < 100000; ++i) key += B({0x85});
  InProcessResult k = Parse(key + "Ns.");
  EXPECT_NE(k.status.code(), StatusCode::kInternal);
}

// ---- PyTorch containers on hand-built archives --------------------------------------

uint32_t Crc32(const std::string& s) {
  uint32_t crc = 0xFFFFFFFF;
  for (char ch : s) {
    crc ^= static_cast<uint8_t>(ch);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

// A stored (uncompressed) zip archive of the given members, in order.
std::string Zip(const std::vector<std::pair<std::string, std::string>>& members) {
  std::string out, central;
  for (const auto& [name, data] : members) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    const uint32_t crc = Crc32(data);
    std::string common = LE(20, 2) + LE(0, 2) + LE(0, 2) + LE(0, 2) + LE(0x21, 2) + LE(crc, 4) +
                         LE(data.size(), 4) + LE(data.size(), 4) + LE(name.size(), 2) + LE(0, 2);
    out += LE(0x04034b50, 4) + common + name + data;
    central += LE(0x02014b50, 4) + LE(20, 2) + common + LE(0, 2) + LE(0, 2) + LE(0, 2) + LE(0, 4) +
               LE(offset, 4) + name;
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += central;
  out += LE(0x06054b50, 4) + LE(0, 2) + LE(0, 2) + LE(members.size(), 2) + LE(members.size(), 2) +
         LE(central.size(), 4) + LE(cd_offset, 4) + LE(0, 2);
  return out;
}

// _rebuild_tensor_v2(('storage', <type>, key, 'cpu', numel), offset, size, stride, False,
// OrderedDict())
std::string TensorV2(const std::string& type, const std::string& key, int numel, int offset,
                     std::vector<int> size, std::vector<int> stride) {
  std::string s = Global("torch._utils", "_rebuild_tensor_v2") + "((" + Str("storage") +
                  Global("torch", type) + Str(key) + Str("cpu") + Int1(numel) + "tQ" +
                  Int1(offset) + "(";
  for (int d : size) s += Int1(d);
  s += "t(";
  for (int d : stride) s += Int1(d);
  s += "t" + B({0x89}) + Global("collections", "OrderedDict") + ")Rt" + "R";
  return s;
}

std::string Pkl(const std::string& body) { return P2(body); }

TEST(TorchZip, ReadsAStateDictAndItsViews) {
  std::string data = LE(1, 4) + LE(2, 4) + LE(3, 4) + LE(4, 4) + LE(5, 4) + LE(6, 4);  // int32 1..6
  std::string pkl = Pkl("}(" + Short("w") + TensorV2("IntStorage", "0", 6, 0, {2, 3}, {3, 1}) +
                        Short("t") + TensorV2("IntStorage", "0", 6, 0, {3, 2}, {1, 3}) +
                        Short("tail") + TensorV2("IntStorage", "0", 6, 4, {2}, {1}) + "u");
  InProcessResult r =
      Parse(Zip({{"arch/data.pkl", pkl}, {"arch/data/0", data}, {"arch/version", "3\n"}}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "pytorch");
  EXPECT_EQ(r.tensors["w"].bytes, data);
  EXPECT_EQ(r.tensors["t"].bytes, LE(1, 4) + LE(4, 4) + LE(2, 4) + LE(5, 4) + LE(3, 4) + LE(6, 4));
  EXPECT_EQ(r.tensors["tail"].bytes, LE(5, 4) + LE(6, 4));
}

TEST(TorchZip, RebuildV3CarriesDtypesWithoutStorageClasses) {
  // float8_e4m3fn over an untyped storage of 4 bytes, and a uint16 view.
  std::string v3 = Global("torch._utils", "_rebuild_tensor_v3") + "((" + Str("storage") +
                   Global("torch", "UntypedStorage") + Str("0") + Str("cpu") + Int1(4) + "tQ" +
                   Int1(0) + "(" + Int1(4) + "t(" + Int1(1) + "t" + B({0x89}) +
                   Global("collections", "OrderedDict") + ")R" + Global("torch", "float8_e4m3fn") +
                   "t" + "R";
  std::string u16 = Global("torch._utils", "_rebuild_tensor_v3") + "((" + Str("storage") +
                    Global("torch", "UntypedStorage") + Str("0") + Str("cpu") + Int1(4) + "tQ" +
                    Int1(1) + "(" + Int1(1) + "t(" + Int1(1) + "t" + B({0x89}) +
                    Global("collections", "OrderedDict") + ")R" + Global("torch", "uint16") + "t" +
                    "R";
  std::string pkl = Pkl("}(" + Short("f8") + v3 + Short("u16") + u16 + "u");
  InProcessResult r =
      Parse(Zip({{"a/data.pkl", pkl}, {"a/data/0", "\x01\x02\x03\x04"}, {"a/version", "3"}}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tensors["f8"].dtype, DType::kF8E4M3FN);
  EXPECT_EQ(r.tensors["f8"].bytes, "\x01\x02\x03\x04");
  EXPECT_EQ(r.tensors["u16"].dtype, DType::kU16);
  EXPECT_EQ(r.tensors["u16"].bytes, "\x03\x04");
}

TEST(TorchZip, BigEndianByteorderRecordIsHonoured) {
  std::string pkl = Pkl("}(" + Short("w") + TensorV2("ShortStorage", "0", 2, 0, {2}, {1}) + "u");
  InProcessResult r = Parse(Zip({{"a/data.pkl", pkl},
                                 {"a/byteorder", "big"},
                                 {"a/data/0", "\x01\x02\x03\x04"},
                                 {"a/version", "3"}}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tensors["w"].bytes, "\x02\x01\x04\x03");
}

TEST(TorchZip, LayoutRules) {
  const std::string data = "\x01\x02\x03\x04";
  const std::string pkl =
      Pkl("}(" + Short("w") + TensorV2("IntStorage", "0", 1, 0, {1}, {1}) + "u");
  // Every member under one directory.
  EXPECT_CODE(Parse(Zip({{"a/data.pkl", pkl}, {"b/data/0", data}, {"a/version", "3"}})),
              StatusCode::kMalformed);
  // A version record is required, and must be a small number.
  EXPECT_CODE(Parse(Zip({{"a/data.pkl", pkl}, {"a/data/0", data}})), StatusCode::kMalformed);
  EXPECT_CODE(Parse(Zip({{"a/data.pkl", pkl}, {"a/data/0", data}, {"a/version", "99"}})),
              StatusCode::kUnsupported);
  // A storage record data.pkl never refers to is hidden data.
  EXPECT_CODE(
      Parse(Zip({{"a/data.pkl", pkl}, {"a/data/0", data}, {"a/data/1", data}, {"a/version", "3"}})),
      StatusCode::kMalformed);
  // A storage whose record is missing or has the wrong size.
  EXPECT_CODE(Parse(Zip({{"a/data.pkl", pkl}, {"a/version", "3"}})), StatusCode::kMalformed);
  EXPECT_CODE(Parse(Zip({{"a/data.pkl", pkl}, {"a/data/0", data + "xx"}, {"a/version", "3"}})),
              StatusCode::kMalformed);
  // A view reaching past its storage.
  const std::string oob =
      Pkl("}(" + Short("w") + TensorV2("IntStorage", "0", 1, 0, {2}, {1}) + "u");
  EXPECT_CODE(Parse(Zip({{"a/data.pkl", oob}, {"a/data/0", data}, {"a/version", "3"}})),
              StatusCode::kMalformed);
  // Members torch does not write.
  EXPECT_CODE(
      Parse(
          Zip({{"a/data.pkl", pkl}, {"a/data/0", data}, {"a/version", "3"}, {"a/notes.txt", "x"}})),
      StatusCode::kUnsupported);
}

TEST(TorchZip, StorageKeysAreFoundInAnyMemberOrder) {
  // Records in an order that is neither the keys' nor data.pkl's; key "1"
  // used by two tensors (one storage, an alias); "10" a prefix of none.
  const std::string four = "\x01\x02\x03\x04";
  auto pkl = [](const std::string& last_key) {
    return Pkl("}(" + Short("a") + TensorV2("IntStorage", "10", 1, 0, {1}, {1}) + Short("b") +
               TensorV2("IntStorage", "1", 1, 0, {1}, {1}) + Short("c") +
               TensorV2("IntStorage", "2", 1, 0, {1}, {1}) + Short("d") +
               TensorV2("IntStorage", last_key, 1, 0, {1}, {1}) + "u");
  };
  InProcessResult r = Parse(Zip({{"a/data.pkl", pkl("1")},
                                 {"a/data/2", "\x03\x03\x03\x03"},
                                 {"a/data/10", four},
                                 {"a/data/1", "\x02\x02\x02\x02"},
                                 {"a/version", "3"}}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.tensors["a"].bytes, four);
  EXPECT_EQ(r.tensors["b"].bytes, "\x02\x02\x02\x02");
  EXPECT_EQ(r.tensors["c"].bytes, "\x03\x03\x03\x03");
  EXPECT_EQ(r.tensors["d"].alias_of, "b");  // one storage, one view: tied
  // A key with no record (a miss between, and past, the layout's keys).
  for (const char* missing : {"11", "3"}) {
    InProcessResult m = Parse(Zip({{"a/data.pkl", pkl(missing)},
                                   {"a/data/2", four},
                                   {"a/data/10", four},
                                   {"a/data/1", four},
                                   {"a/version", "3"}}));
    EXPECT_CODE(m, StatusCode::kMalformed);
    EXPECT_NE(m.status.message().find("storage '" + std::string(missing) +
                                      "' (torch.IntStorage) has no record data/" + missing),
              std::string::npos)
        << m.status.ToString();
  }
  // A view past its storage names the storage's member.
  InProcessResult oob = Parse(Zip(
      {{"a/data.pkl", Pkl("}(" + Short("w") + TensorV2("IntStorage", "10", 1, 0, {2}, {1}) + "u")},
       {"a/data/10", four},
       {"a/version", "3"}}));
  EXPECT_CODE(oob, StatusCode::kMalformed);
  EXPECT_NE(oob.status.message().find("data.pkl' tensor 'w' (zip member 'a/data/10')"),
            std::string::npos)
      << oob.status.ToString();
  // Two records no tensor refers to: the first in key order is named ("10"
  // before "9", as strings), whatever the members' order.
  InProcessResult hidden = Parse(Zip({{"a/data.pkl", pkl("1")},
                                      {"a/data/9", four},
                                      {"a/data/2", four},
                                      {"a/data/1", four},
                                      {"a/data/10", four},
                                      {"a/data/11", four},
                                      {"a/version", "3"}}));
  EXPECT_CODE(hidden, StatusCode::kMalformed);
  EXPECT_NE(hidden.status.message().find(
                "PyTorch archive member 'a/data/11' is not referred to by data.pkl (hidden data)"),
            std::string::npos)
      << hidden.status.ToString();
}

TEST(TorchZip, TorchScriptArchivesAreRefused) {
  InProcessResult r = Parse(Zip({{"m/data.pkl", Pkl("}")},
                                 {"m/constants.pkl", Pkl(")")},
                                 {"m/code/__torch__/m.py", "def forward(self, x): return x"},
                                 {"m/version", "3"}}));
  EXPECT_REFUSED(r, "torch.torchscript");
}

TEST(TorchZip, PayloadsInAnyZipAreNamed) {
  // A pickle stored as data.txt in an arbitrary zip; and a checkpoint whose
  // data.pkl calls posix.system before the real state dict.
  const std::string evil = Pkl(Global("posix", "system") + Str("id") + B({0x85}) + "R");
  InProcessResult any = Parse(Zip({{"data.txt", evil}}));
  EXPECT_EQ(Refs(any), (std::vector<std::string>{"posix.system"}));
  InProcessResult ckpt = Parse(Zip({{"a/data.pkl", evil}, {"a/version", "3"}}));
  EXPECT_EQ(Refs(ckpt), (std::vector<std::string>{"posix.system"}));
}

// ---- The legacy stream ----------------------------------------------------------------

const std::string kMagic =
    P2(B({0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}));
const std::string kVersion = P2("M" + LE(1001, 2));
std::string SysInfo(bool little) {
  return P2("}(" + Short("protocol_version") + "M" + LE(1001, 2) + Short("little_endian") +
            B({little ? 0x88 : 0x89}) + Short("type_sizes") + "}u");
}
// _rebuild_tensor_v2 with a legacy 6-field persistent id.
std::string LegacyTensor(const std::string& key, int numel) {
  return Global("torch._utils", "_rebuild_tensor_v2") + "((" + Str("storage") +
         Global("torch", "ShortStorage") + Str(key) + Str("cpu") + Int1(numel) + "NtQ" + Int1(0) +
         "(" + Int1(numel) + "t(" + Int1(1) + "t" + B({0x89}) +
         Global("collections", "OrderedDict") + ")Rt" + "R";
}

TEST(TorchLegacy, ReadsTheFivePicklesAndRawStorages) {
  std::string file = kMagic + kVersion + SysInfo(true) +
                     P2("}(" + Short("w") + LegacyTensor("140", 2) + "u") +
                     P2("](" + Str("140") + "e") + LE(2, 8) + "\x01\x02\x03\x04";
  InProcessResult r = Parse(file);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(r.source_format, "pytorch_legacy");
  EXPECT_EQ(r.tensors["w"].bytes, "\x01\x02\x03\x04");
  // Written on a big-endian host: counts and elements are swapped back.
  std::string be = kMagic + kVersion + SysInfo(false) +
                   P2("}(" + Short("w") + LegacyTensor("140", 2) + "u") +
                   P2("](" + Str("140") + "e") + std::string(7, '\0') + "\x02" + "\x01\x02\x03\x04";
  InProcessResult b = Parse(be);
  ASSERT_TRUE(b.status.ok()) << b.status.ToString();
  EXPECT_EQ(b.tensors["w"].bytes, "\x02\x01\x04\x03");
  // Wrong element count, and bytes after the last storage.
  EXPECT_CODE(Parse(kMagic + kVersion + SysInfo(true) +
                    P2("}(" + Short("w") + LegacyTensor("140", 2) + "u") +
                    P2("](" + Str("140") + "e") + LE(3, 8) + "\x01\x02\x03\x04\x05\x06"),
              StatusCode::kMalformed);
  EXPECT_CODE(Parse(file + "x"), StatusCode::kMalformed);
}

TEST(TorchLegacy, TheMagicNumberMustBeLiteralData) {
  // eval("0x1950a86a20f9469cfc6c"), then a payload: both named.
  std::string file =
      P2(Global("builtins", "eval") + Str("0x1950a86a20f9469cfc6c") + B({0x85}) + "R") + kVersion +
      P2("}") + P2("]") + P2(Global("posix", "system") + Str("id") + B({0x85}) + "R");
  InProcessResult r = Parse(file);
  EXPECT_EQ(Refs(r), (std::vector<std::string>{"builtins.eval", "posix.system"}));
  // The real magic followed by a payload in the main pickle.
  InProcessResult p = Parse(kMagic + kVersion + SysInfo(true) +
                            P2(Global("posix", "system") + Str("id") + B({0x85}) + "R"));
  EXPECT_EQ(Refs(p), (std::vector<std::string>{"posix.system"}));
  // A whole-module save carries class source code in its persistent ids.
  InProcessResult m = Parse(kMagic + kVersion + SysInfo(true) +
                            P2("(" + Str("module") + Global("torch.nn.modules.linear", "Linear") +
                               Str("x.py") + Str("class Linear: ...") + "tQ"));
  EXPECT_REFUSED(m, "torch.module_source");
}

// ---- 7z (scanned, never converted) ---------------------------------------------------

// A 7z archive of one member stored with the Copy coder (7zFormat.txt).
std::string SevenZip(const std::string& name, const std::string& data) {
  auto number = [](uint64_t v) {  // small values only: one byte
    return B({static_cast<int>(v)});
  };
  std::string header = B({0x01, 0x04});  // Header, MainStreamsInfo
  header +=
      B({0x06}) + number(0) + number(1) + B({0x09}) + number(data.size()) + B({0x00});  // PackInfo
  header +=
      B({0x07, 0x0B}) + number(1) + B({0x00}) + number(1) + B({0x01, 0x00});  // one folder, Copy
  header += B({0x0C}) + number(data.size()) + B({0x00});                      // unpack size
  header += B({0x00});                                                        // end of streams info
  std::string utf16;
  for (char c : name) utf16 += std::string(1, c) + '\0';
  utf16 += std::string(2, '\0');
  header +=
      B({0x05}) + number(1) + B({0x11}) + number(utf16.size() + 1) + B({0x00}) + utf16 + B({0x00});
  header += B({0x00});
  return std::string("7z\xbc\xaf\x27\x1c\x00\x04", 8) + LE(0, 4) + LE(data.size(), 8) +
         LE(header.size(), 8) + LE(0, 4) + data + header;
}

TEST(SevenZip, MembersAreScannedForPickles) {
  InProcessResult evil =
      Parse(SevenZip("model.bin", P2(Global("posix", "system") + Str("id") + B({0x85}) + "R")));
  EXPECT_REFUSED(evil, "pickle.global");
  EXPECT_EQ(Refs(evil), (std::vector<std::string>{"posix.system"}));
  ASSERT_FALSE(evil.findings.empty());
  EXPECT_EQ(evil.findings[0].location, "7z member 'model.bin' byte 2");
  InProcessResult benign = Parse(SevenZip("data.pkl", P2("]")));
  EXPECT_CODE(benign, StatusCode::kUnsupported);
  EXPECT_CODE(Parse(SevenZip("x", "abc").substr(0, 40)), StatusCode::kMalformed);
}

// ---- Detection -------------------------------------------------------------------

TEST(PickleDetection, ProtocolZeroAndCompressedJoblibAreRecognised) {
  EXPECT_TRUE(Parse("(lp0\nI1\na.").status.ok());
  EXPECT_EQ(Json(Parse("(lp0\nI1\na.").metadata), "[1]");
  // A text file that starts like a pickle says what it was taken for.
  InProcessResult text = Parse("The quick brown fox");
  EXPECT_NE(text.status.message().find("protocol 0/1 pickle"), std::string::npos)
      << text.status.ToString();
  // "(S'..." looks like a zlib header with a small window; it is a pickle.
  EXPECT_TRUE(Parse("(S'a'\nS'b'\nt.").status.ok());
}

}  // namespace
}  // namespace safemodel::testing
