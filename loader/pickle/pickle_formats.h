// Pickle streams as files: plain pickles and joblib files (also zlib/gzip
// compressed); a stream that turns out to be a legacy PyTorch checkpoint is
// handed to torch_formats.h. All go through one pickle machine
// (pickle_machine.h) that never resolves a name and never calls anything.
//
// Verdicts: a stream that refers to anything outside the table of known data
// constructors is refused (kRefused, one finding per callable with its byte
// offset); a stream the machine cannot read is Malformed; a known construct
// safemodel does not represent is Unsupported. Findings take precedence:
// where a stream is also broken, whatever could be read is still scanned, so
// that the report names the callables.
//
// joblib: a stream with NumpyArrayWrapper records is read twice, as
// joblib.load reads it (array bytes after each wrapper's BUILD) and as
// pickle.load reads it (opcodes all the way); the second reading must fail
// before it calls anything or completes, else the file is refused as two
// things to two loaders.
//
// Worst case: O(n) in the bytes read, with the pickle machine's constant
// (twice for joblib streams); a compressed stream inflates to at most the
// memory limit. Turning the graph into values visits at most kMaxValueNodes
// nodes.
//
// Trust: the input is untrusted.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_

#include <memory>

#include "loader/parser.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader {

// True if `input` starts like a pickle stream (any protocol; the legacy
// torch stream is a pickle).
bool LooksLikePickle(ByteView input);

// True if pickle.load would read a pickle from `input` although its first
// opcode is not one a pickler writes first (LooksLikePickle): the machine
// reaches STOP, or meets a name or call before anything pickle.load raises
// at (a file that starts with BINBYTES and then calls os.system; not a PNG,
// whose 0x89 'P' is NEWFALSE and a persistent id pickle.load rejects).
bool ReadsAsPickle(ByteView input);

// True if `input` is a zlib or gzip stream (compressed joblib files).
bool LooksLikeCompressedPickle(ByteView input);

// A plain pickle / joblib stream, or a legacy (pre-1.6) torch stream; also
// a zlib/gzip-compressed one, decompressed within ParseOptions::memory_limit.
std::unique_ptr<Parser> NewPickleParser();

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_FORMATS_H_
