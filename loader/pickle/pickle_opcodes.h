// The pickle opcodes (protocols 0-5) as CPython's Lib/pickle.py defines
// them, their names for messages, and the family each belongs to in the
// machine's dispatch. Facts only; no code reads a stream here (OpName is
// O(1); the family table is built at compile time).
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_OPCODES_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_OPCODES_H_

#include <array>
#include <cstdint>

namespace safemodel::loader::pickle {

enum Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloat = 'F',
  kInt = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLong = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kPersId = 'P',
  kBinPersId = 'Q',
  kReduce = 'R',
  kString = 'S',
  kBinString = 'T',
  kShortBinString = 'U',
  kUnicode = 'V',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinGet = 'h',
  kInst = 'i',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kProto = 0x80,
  kNewObj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAddItems = 0x90,
  kFrozenSet = 0x91,
  kNewObjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  kByteArray8 = 0x96,
  kNextBuffer = 0x97,
  kReadOnlyBuffer = 0x98,
};

inline constexpr uint8_t kHighestProtocol = 5;

// The name of an opcode that calls, names or mutates something, for
// findings ("REDUCE", "BUILD", ...); "opcode" for the others.
const char* OpName(uint8_t op);

// How the machine dispatches an opcode.
enum class OpFamily : uint8_t {
  kUnknown,    // not an opcode of protocols 0-5
  kFraming,    // PROTO, FRAME, STOP
  kConstant,   // None, bools, ints, floats
  kString,     // text and bytes (and out-of-band buffers)
  kContainer,  // building tuples, lists, dicts and sets
  kMemo,       // the stack, marks and the memo
  kName,       // names, calls and everything that reaches outside the data
};

namespace internal {
constexpr std::array<OpFamily, 256> MakeOpFamilies() {
  std::array<OpFamily, 256> f{};
  for (uint8_t op : {kProto, kFrame, kStop}) f[op] = OpFamily::kFraming;
  for (uint8_t op : {kNone, kNewTrue, kNewFalse, kInt, kLong, kBinInt, kBinInt1, kBinInt2, kLong1,
                     kLong4, kFloat, kBinFloat}) {
    f[op] = OpFamily::kConstant;
  }
  for (uint8_t op : {kString, kBinString, kShortBinString, kUnicode, kShortBinUnicode, kBinUnicode,
                     kBinUnicode8, kShortBinBytes, kBinBytes, kBinBytes8, kByteArray8, kNextBuffer,
                     kReadOnlyBuffer}) {
    f[op] = OpFamily::kString;
  }
  for (uint8_t op : {kEmptyList, kEmptyTuple, kEmptyDict, kEmptySet, kTuple1, kTuple2, kTuple3,
                     kTuple, kList, kFrozenSet, kDict, kAppend, kSetItem, kAppends, kSetItems,
                     kAddItems}) {
    f[op] = OpFamily::kContainer;
  }
  for (uint8_t op : {kPop, kDup, kMark, kPopMark, kGet, kBinGet, kLongBinGet, kPut, kBinPut,
                     kLongBinPut, kMemoize}) {
    f[op] = OpFamily::kMemo;
  }
  for (uint8_t op : {kGlobal, kInst, kStackGlobal, kReduce, kObj, kNewObj, kNewObjEx, kBuild,
                     kPersId, kBinPersId, kExt1, kExt2, kExt4}) {
    f[op] = OpFamily::kName;
  }
  return f;
}
}  // namespace internal

// The family of every byte value.
inline constexpr std::array<OpFamily, 256> kOpFamilies = internal::MakeOpFamilies();

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_OPCODES_H_
