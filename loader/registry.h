// Format detection and dispatch: the one entry point the worker calls.
//
// The format is detected from the content (magic bytes, and for zip archives
// the member names), never from a file name; then the second readings of
// polyglot.h decide whether the file is also something else to another
// loader, and if so it is refused naming every reading.
//
// Worst case: the chosen parser's, plus O(log n + 64 KiB) for the second
// readings; a polyglot is parsed once per reading (at most four).
#ifndef SAFEMODEL_LOADER_REGISTRY_H_
#define SAFEMODEL_LOADER_REGISTRY_H_

#include <string>

#include "loader/model.h"
#include "loader/parser.h"
#include "proto/base/byte_reader.h"
#include "safemodel/status.h"

namespace safemodel::loader {

// Puts the format libraries into their safe state before the worker locks
// itself down (e.g. HDF5 plugin loading off, error printing off) and does
// their one-time initialisation, which may need system calls the sandbox
// forbids later. Reads no input.
Status PrepareLibraries();

// Detects the format of `input` and parses it.
// Trust: `input` is untrusted. Runs only in the sandboxed worker.
// In a program without libhdf5 (hdf5_seam.h), an input that needs it fails
// with kUnsupported and LinkedHdf5Seam().needed() turns true: the caller
// then discards the result and has the input read where libhdf5 is. The
// same holds for ParseModelFiles.
Status ParseModel(ByteView input, ParseContext& ctx, ParsedModel* out);

// Parses a model made of several files (a SavedModel directory, a TF
// checkpoint, a sharded Keras weight store), as files/model_files.h chose
// them. The names and roles are checked again here; each file's bytes are
// untrusted. Runs only in the sandboxed worker.
Status ParseModelFiles(const InputFiles& input, ParseContext& ctx, ParsedModel* out);

// A short description of what the leading bytes look like, for messages.
std::string DescribeLeadingBytes(ByteView input);

}  // namespace safemodel::loader

#endif  // SAFEMODEL_LOADER_REGISTRY_H_
