// Running the pickle machine over a stream, the ways the containers need:
// one whole pickle that must fill its bytes (RunWholePickle), and scanning
// for findings only (ScanForFindings).
//
// "Settling" a run is the same for every container: findings win (the file
// is refused, with a note if the stream was also unreadable), then the
// machine's error, then bytes after the STOP (scanned for findings first, so
// that a second pickle hidden there is named, then refused as hidden data).
//
// Worst case: the pickle machine's, O(n) in the bytes read; scanning reads
// at most kMaxScannedStreams streams, each byte at most once.
//
// Trust: the streams are untrusted.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_RUN_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_RUN_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "loader/parser.h"
#include "loader/pickle/pickle_machine.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::pickle {

// Pickles scanned after a refused or broken one: enough for every
// concatenated-stream trick seen, bounded so a file of tiny pickles is cheap.
inline constexpr uint32_t kMaxScannedStreams = 64;

// Runs `machine` over `data` from byte 0 as one whole pickle and settles it
// (above). `where` names the stream in messages; bytes after the STOP are
// "<where>: <n> bytes after <after>". Returns the root.
Result<Ref> RunWholePickle(Machine& machine, ByteView data, const std::string& where,
                           std::string_view after, ParseContext& ctx);

// Settles a run that has already happened: `root` and `end` as Machine::Run
// returned them over `data` from byte 0.
Result<Ref> SettleWholePickle(const Result<Ref>& root, uint64_t end, ByteView data,
                              const std::string& where, std::string_view after, ParseContext& ctx);

// Reads consecutive pickles from data[start] only to report their findings
// (a second pickle after STOP, the rest of a broken legacy stream). Stops at
// the end of the data, at the first stream the machine cannot read, or after
// kMaxScannedStreams. Produces nothing else.
void ScanForFindings(ByteView data, uint64_t start, const std::string& where, ParseContext& ctx);

// A persistent_load for scanning only: accepts any id as an opaque value.
PersistentLoad ScanPersistentLoad();

// The status after findings: kRefused. If the input is also unreadable
// (`error` is not OK), a note says so, so the report shows both.
Status RefusedStatus(ParseContext& ctx, const Status& error, const std::string& where);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_RUN_H_
