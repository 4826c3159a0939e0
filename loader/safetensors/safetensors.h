// safetensors files (huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header, then the byte buffer the header's
// data_offsets index. Read strictly (README.md in this folder lists every
// rule and what the reference reader does with the same bytes):
//  * N <= kMaxSafetensorsHeaderBytes (proto/base/safetensors_format.h) and 8 + N <= the file size;
//  * the header starts with '{' and is one JSON object with no duplicate
//    key at any level (header_json.h), tensor entries of exactly {dtype,
//    shape, data_offsets}, `__metadata__` string to string;
//  * every dtype is one safemodel represents (proto/base/safetensors_format.h);
//  * shape x element size == end - begin, with overflow checks;
//  * sorted by begin, the tensors tile the byte buffer exactly: the first
//    begins at 0, each begins where the previous ended, the last ends at the
//    end of the file (no gap, no overlap, no trailing byte).
// Tensors are views of the input (zero copy) in the order of their offsets,
// which is the order of the bytes in the file. `__metadata__` becomes the
// model's metadata under "safetensors_metadata" (strings, as data).
//
// Worst case: O(header) plus a sort of the tensor list.
//
// Trust: the input is untrusted.
#ifndef SAFEMODEL_LOADER_SAFETENSORS_SAFETENSORS_H_
#define SAFEMODEL_LOADER_SAFETENSORS_SAFETENSORS_H_

#include <cstdint>
#include <memory>

#include "loader/parser.h"
#include "proto/base/byte_reader.h"
#include "proto/base/safetensors_format.h"

namespace safemodel::loader {

// The model metadata key that holds the header's __metadata__ map.
inline constexpr std::string_view kSafetensorsMetadataKey = "safetensors_metadata";

// True if `input` is meant as a safetensors file: its byte 8 is '{' and the
// length prefix is below 2^32 (bytes 4..7 zero). The registry asks only
// after the npy, zip, HDF5 and 7z magics, and reads a file that pickle.load
// would also read both ways (a polyglot). The parser then says precisely
// what is wrong with a length over the cap or past the end.
bool LooksLikeSafetensors(ByteView input);

std::unique_ptr<Parser> NewSafetensorsParser();

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_SAFETENSORS_SAFETENSORS_H_
