// Magic numbers of containers safemodel recognises but does not convert:
// compressors wrapped around a model file, and the formats that can show up
// inside one. A leaf: used by the registry (a whole input) and by the pickle
// parser (what a gzip/zlib-compressed joblib stream turned out to hold).
#ifndef SAFEMODEL_LOADER_CONTAINERS_SNIFF_H_
#define SAFEMODEL_LOADER_CONTAINERS_SNIFF_H_

#include <string_view>

#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// The compressor whose magic `input` starts with: "gzip", "zlib" (only the
// header zlib itself writes, as LooksLikeCompressedPickle), "bzip2", "xz",
// "zstd", "lzma" (the .lzma "alone" header joblib writes: 0x5d 00 00), or ""
// for none.
std::string_view CompressorName(ByteView input);

// What a decompressed payload is, when its first bytes are another known
// container's magic: "zip archive", ".npy array", "HDF5 file", "7z archive",
// or a compressor's name ("gzip data", ...); "" otherwise. None of these
// magics is a pickle that joblib.load (pickle._Unpickler) could run: each
// fails at its first or second opcode (PERSID without persistent_load,
// STACK_GLOBAL on an empty stack, an invalid opcode).
std::string_view PayloadContainerName(ByteView payload);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_CONTAINERS_SNIFF_H_
