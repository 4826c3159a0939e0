// The JSON header of a safetensors file, read with nlohmann's SAX parser
// (iterative) into a flat description, strictly:
//  * the text is one JSON object (nlohmann checks the grammar and that
//    strings are valid UTF-8; whitespace may follow, as serde_json allows);
//  * no key appears twice in any object (the reference reader's serde maps
//    would keep the last one silently; the format's README forbids them);
//  * `__metadata__`, if present, is an object of strings;
//  * every other key is a tensor whose value is an object with exactly the
//    fields dtype (a string), shape (an array of non-negative integers) and
//    data_offsets (an array of exactly two non-negative integers). An unknown
//    field is refused (serde would ignore it: a field one reader ignores and
//    another reads is how two readers come to disagree).
// What the fields mean (dtype names, sizes, offsets) is checked by the
// parser (safetensors.h), not here.
//
// Worst case: O(n) in the header text, one keyed-hash insert per key.
//
// Trust: `text` is untrusted.
#ifndef SAFEMODEL_LOADER_SAFETENSORS_HEADER_JSON_H_
#define SAFEMODEL_LOADER_SAFETENSORS_HEADER_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "safemodel/status.h"

namespace safemodel::loader {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in the order the header lists them
  bool has_metadata = false;
  std::vector<std::pair<std::string, std::string>> metadata;  // in header order
};

// Parses the header text (without the 8-byte length). Errors are Malformed
// and name the key and field at fault.
Result<SafetensorsHeader> ParseSafetensorsHeader(std::string_view text);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_SAFETENSORS_HEADER_JSON_H_
