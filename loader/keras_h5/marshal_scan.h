// Reading Python marshal data as data, to report what a Keras Lambda's
// bytecode would reach (for example `os` and `system`) without running or
// unmarshalling it in Python.
//
// Only the structure is decoded: type codes, lengths, containers and code
// objects (whose field layout depends on the Python version that wrote them,
// so each known layout is tried and the one that consumes the data exactly
// is used). Containers are walked with an explicit stack, never recursion.
// Nothing is executed, imported or evaluated.
//
// Worst case: O(n·k) for n bytes and k known code-object layouts tried.
//
// Trust: the bytes are untrusted; every length is checked against the data.
#ifndef SAFEMODEL_LOADER_KERAS_H5_MARSHAL_SCAN_H_
#define SAFEMODEL_LOADER_KERAS_H5_MARSHAL_SCAN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// Nesting of containers and code objects; real lambdas nest < 10.
inline constexpr uint32_t kMaxMarshalDepth = 100;
// Names reported from one code object tree, and their length.
inline constexpr size_t kMaxMarshalNames = 256;
inline constexpr size_t kMaxMarshalNameBytes = 256;

struct MarshalScan {
  bool is_code = false;  // a Python code object, decoded to the last byte
  std::string python;    // the layout that matched, e.g. "Python 3.11+"
  // Global and attribute names the code uses (co_names of every code object,
  // nested ones included), first occurrence first, without duplicates.
  std::vector<std::string> names;
  std::string function_name;  // co_name of the outer code object
  std::string file_name;      // co_filename of the outer code object
  std::string error;          // when !is_code: why not
};

// Decodes `data` as one marshalled code object.
MarshalScan ScanMarshalCode(ByteView data);

// The bytes Keras stored in a Lambda's JSON string: base64 (Keras 2 and 3),
// else raw_unicode_escape text (Keras 1), tried in Keras's order; whichever
// decodes as a code object is returned in *scan.
std::string DecodeKerasCode(std::string_view text, MarshalScan* scan);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_KERAS_H5_MARSHAL_SCAN_H_
