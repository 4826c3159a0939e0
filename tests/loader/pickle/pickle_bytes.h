// Assembling pickles byte by byte, for the pickle tests: opcodes with their
// arguments in the layouts CPython's pickler writes.
#ifndef SAFEMODEL_TESTS_LOADER_PICKLE_PICKLE_BYTES_H_
#define SAFEMODEL_TESTS_LOADER_PICKLE_PICKLE_BYTES_H_

#include <cstdint>
#include <initializer_list>
#include <string>

namespace safemodel::testing {

// The bytes given as ints.
inline std::string B(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}
// `v` as `n` little-endian bytes.
inline std::string LE(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}
// BINUNICODE and SHORT_BINUNICODE.
inline std::string Str(const std::string& s) { return "X" + LE(s.size(), 4) + s; }
inline std::string Short(const std::string& s) { return B({0x8c}) + LE(s.size(), 1) + s; }
// GLOBAL and STACK_GLOBAL of module.name.
inline std::string Global(const std::string& m, const std::string& n) {
  return "c" + m + "\n" + n + "\n";
}
inline std::string StackGlobal(const std::string& m, const std::string& n) {
  return Short(m) + Short(n) + B({0x93});
}
// BININT1.
inline std::string Int1(int v) { return "K" + LE(static_cast<uint64_t>(v), 1); }
// FRAME around `body`.
inline std::string Frame(const std::string& body) { return B({0x95}) + LE(body.size(), 8) + body; }
// A protocol-2 pickle of `body` (which leaves one value on the stack).
inline std::string P2(const std::string& body) { return B({0x80, 2}) + body + "."; }

}  // namespace safemodel::testing

#endif  // SAFEMODEL_TESTS_LOADER_PICKLE_PICKLE_BYTES_H_
