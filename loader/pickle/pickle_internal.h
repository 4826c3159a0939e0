// Shared by the pickle containers (pickle_formats.cc, torch_formats.cc,
// zip_scan.cc). Not part of the loader's interface.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_INTERNAL_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_INTERNAL_H_

#include <memory>
#include <string>

#include "loader/parser.h"
#include "loader/pickle/pickle_convert.h"
#include "loader/pickle/pickle_machine.h"

namespace safemodel::loader::pickle {

// Pickles scanned after a refused or broken one: enough for every
// concatenated-stream trick seen, bounded so a file of tiny pickles is cheap.
inline constexpr uint32_t kMaxScannedStreams = 64;

// Reads consecutive pickles from data[start] only to report their findings
// (a second pickle after STOP, the rest of a broken legacy stream). Stops at
// the end of the data, at the first stream the machine cannot read, or after
// kMaxScannedStreams. Produces nothing else.
void ScanForFindings(ByteView data, uint64_t start, const std::string& where, ParseContext& ctx);

// Scans one archive member for findings if it is a pickle or an object .npy
// (whatever its name says).
void ScanMember(ByteView bytes, const std::string& where, ParseContext& ctx);

// Inflates raw deflate data as far as it inflates cleanly (a truncated
// member can still hold a complete payload), to at most `cap` bytes.
std::string InflateRaw(ByteView in, uint64_t cap);

// A persistent_load for scanning only: accepts any id as an opaque value.
PersistentLoad ScanPersistentLoad();

// Parses a legacy torch stream whose first pickle (the magic number) ended
// at `pos`. `graph` already holds that pickle's objects.
Status ParseLegacyTorch(ByteView input, uint64_t pos, std::shared_ptr<Graph> graph,
                        ParseContext& ctx, ParsedModel* out);

// True if `root` is the legacy torch magic number 0x1950a86a20f9469cfc6c
// written as a literal integer.
bool IsLegacyTorchMagic(const Graph& graph, Ref root);

// The status after findings: kRefused. If the input is also unreadable
// (`error` is not OK), a note says so, so the report shows both.
Status RefusedStatus(ParseContext& ctx, const Status& error, const std::string& where);

// Sets out->metadata / out->architecture from a conversion.
void StoreTrees(Converted converted, ParsedModel* out);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_INTERNAL_H_
