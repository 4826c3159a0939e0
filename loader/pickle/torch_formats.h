// PyTorch checkpoints: the zip layout (torch >= 1.6) and the legacy stream
// (torch < 1.6, or _use_new_zipfile_serialization=False).
//
// Zip layout: every record under one directory (or, as some tools write
// them, at the archive root: read the same, with a note): data.pkl (the
// pickle, whose persistent ids ('storage', type, key, location, numel) name
// the storages), data/<key> (one member per storage, its raw elements),
// version (1..kMaxTorchZipVersion), byteorder ("little" or "big"), and the
// informational records of newer versions. Records are found as torch finds
// them (ASCII case-insensitively), so two names that differ only in case
// are refused. An archive with TorchScript records (code/, constants.pkl,
// ...) is refused: it is a program. Every data/<key> must be referred to by
// data.pkl, and every member must be a record torch knows.
//
// Legacy stream: five consecutive pickles - the magic number 0x1950a86a20f9469cfc6c,
// the protocol version 1001, sys_info (byte order, type sizes), the object
// whose persistent ids name the storages, the list of storage keys - then,
// per key in that list, an int64 element count and the raw elements.
//
// Worst case: O(n) in the bytes read, with the pickle machine's constant;
// each storage is read once, when its tensor is streamed.
//
// Trust: the input is untrusted.
#ifndef SAFEMODEL_LOADER_PICKLE_TORCH_FORMATS_H_
#define SAFEMODEL_LOADER_PICKLE_TORCH_FORMATS_H_

#include <cstdint>
#include <memory>

#include "loader/containers/zip_archive.h"
#include "loader/parser.h"
#include "loader/pickle/pickle_machine.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// True if the archive's member names are those of a PyTorch checkpoint or a
// TorchScript archive (which is refused).
bool LooksLikeTorchZip(const ZipArchive& zip);

// A zip archive that is not an .npz: a PyTorch checkpoint (refused when it
// is TorchScript), or any other archive, whose members are scanned for
// pickles and which is refused if they call anything, and otherwise reported
// as not a model container. `image` is the archive's bytes.
Status ParseTorchZipArchive(ByteView image, std::shared_ptr<ZipArchive> zip, ParseContext& ctx,
                            ParsedModel* out);

namespace pickle {

// True if `root` is the legacy torch magic number 0x1950a86a20f9469cfc6c
// written as a literal integer.
bool IsLegacyTorchMagic(const Graph& graph, Ref root);

// Parses a legacy torch stream whose first pickle (the magic number) ended
// at `pos`. `graph` already holds that pickle's objects.
Status ParseLegacyTorch(ByteView input, uint64_t pos, std::shared_ptr<Graph> graph,
                        ParseContext& ctx, ParsedModel* out);

}  // namespace pickle

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PICKLE_TORCH_FORMATS_H_
