// The pickle machine: reads a pickle stream (protocols 0-5) and builds an
// inert object graph. It never resolves a name and never calls anything.
//
// Every opcode is parsed byte-exactly with an explicit, bounded stack, a
// bounded memo (keys 0, 1, 2, ... in a vector, any other key in a keyed hash
// map: PUT does not pop, MEMOIZE uses the memo's size),
// bounded marks, and every length checked against the remaining input before
// it is used. FRAME is honoured strictly: an opcode and its argument must lie
// inside the frame they start in, and a frame must be used up before the next
// one starts. Nothing recurses.
//
// Names (GLOBAL, STACK_GLOBAL, INST) become tags from the closed table in
// pickle_globals.h. REDUCE, NEWOBJ and BUILD on a tag run our own C++ handler,
// which builds data: tensor and storage references, ordered maps, numpy arrays
// and scalars, namespace and module records, sets, bytes. Everything else
// that a real unpickler would import or call - a name outside the table,
// extension codes, text persistent ids, out-of-band buffers, BUILD on a name,
// calling a non-name - is a finding: ParseContext::Refuse names the callable
// and the byte offset of its opcode, and the machine goes on reading so that
// every callable in the stream is listed. A finding taints the result; the
// caller refuses the file.
//
// Errors: a stream the machine cannot read (truncated, unknown opcode, bad
// memo key, stack underflow) stops it with Malformed. A stream it can read
// but whose data does not fit a handler (wrong argument types) is a "semantic"
// error: the machine records the first one, replaces the value by an opaque
// placeholder and reads on, so that later callables are still found; Run()
// then returns the error (after any findings).
//
// Worst case: O(n) for a stream of n bytes. Each opcode is O(1) amortized,
// dict/set/memo operations are O(1) expected (SipHash-2-4 under a per-process
// key: a file cannot choose colliding keys), hashes are cached per object,
// and everything that could grow faster than the input (copies of
// containers, key comparisons, hash operations) is charged to the file's
// work budget of kWorkBase + kWorkPerByte per byte read (loader/parser.h).
// Memory: O(n) objects and at most kMaxContainerItems per container.
//
// Trust: the stream is untrusted; all offsets are checked here.
//
// The code, by seam: the opcode loop, framing, stack and memo
// (pickle_interpreter.h, pickle_machine.cc, pickle_ops.cc; opcodes in
// pickle_opcodes.h); the objects it builds (pickle_graph.h, built through
// pickle_builder.h); dict and set keys (pickle_keys.h); what each table name
// does when called or built (pickle_handlers.h); the text codecs of
// protocols 0-2 (text_codecs.h).
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_MACHINE_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "safemodel/status.h"

#include "loader/parser.h"
#include "loader/pickle/pickle_graph.h"
#include "proto/base/byte_reader.h"

namespace safemodel::loader::pickle {

// Items on the stack at once. Real pickles stay below a few thousand (the
// pickler batches containers by 1000); 4M bounds the stack to 64 MiB.
inline constexpr uint64_t kMaxStackDepth = 1u << 22;
// Open MARKs at once: one per nesting level of a container being built;
// Python's own recursion limit keeps real pickles below ~1000.
inline constexpr uint64_t kMaxMarks = 4096;
// Memo entries: one per memoized object. 4M covers checkpoints with ~500k
// tensors; the hash map (not an array indexed by the key) keeps
// LONG_BINPUT 0xFFFFFFFF from costing memory.
inline constexpr uint64_t kMaxMemoEntries = 1u << 22;
// Heap objects (strings, containers, records) of a file alive at once (a
// released object's place is taken again, MachineOptions::release_consumed):
// 8 M objects is ~360 MB of bookkeeping (8 M empty lists, measured); real
// checkpoints need ~10 per tensor. Every EMPTY_TUPLE of a run is one object.
inline constexpr uint64_t kMaxObjects = 1u << 23;
// Integers wider than this many bytes are refused: the largest real one is
// the legacy torch magic number (10 bytes); sizes and offsets need 8.
inline constexpr uint64_t kMaxBigIntBytes = 64;
// Findings listed per file; a stream with more is refused all the same.
inline constexpr uint64_t kMaxFindingsListed = 256;
// Items in one list, tuple, dict or set: 16 M items is 256 MiB of
// references; the largest real containers (vocabularies, index lists) hold
// a few million.
inline constexpr uint64_t kMaxContainerItems = 1u << 24;
// How much MachineOptions::read_behind gives back at once: a 2 MiB
// page-cache folio, the unit the kernel maps a file read in (a few dozen
// calls for the 10 MB data.pkl of 100,000 tensors).
inline constexpr uint64_t kReadBehindBytes = uint64_t{2} << 20;
// How far behind the read position read_behind's bytes end. A container
// reads its items again when it is built: SETITEMS hashes the keys of its
// batch, which torch.save makes 1,000 entries (~100 KB; ~200 KB with long
// names) long. A key read behind the dropped point maps its whole folio back
// in: without the lag every dropped block came back while the next one was
// read. Larger batches only fault a few pages back.
inline constexpr uint64_t kReadBehindLag = uint64_t{512} << 10;
// The longest str that a GET copies out of the stream when read_behind is
// set (Machine: "copy on GET"). torch.save refers back to the same few
// strings ('storage', the location 'cpu') for every tensor; reading them
// where they were first written maps the stream's first folio back in after
// every drop. Longer ones are read where they are (a fault-in, not a copy
// of a large text).
inline constexpr uint64_t kCopyOnGetBytes = 256;
// All copies on GET of one stream together: each str is copied once, but
// many objects can view the same bytes (bytes(b), bytearray(b) make new
// ones; only str is copied, and this bounds whatever else may), so the copies
// are bounded here and not by the stream's size. torch.save's need is two
// short strings.
inline constexpr uint64_t kMaxCopyOnGetTotal = uint64_t{1} << 20;
// joblib object arrays hold one nested pickle; nothing nests deeper.
inline constexpr uint32_t kMaxNestedPickles = 1;

class Machine;

// Resolves a BINPERSID id (the torch containers); errors are semantic.
using PersistentLoad = std::function<Result<Ref>(Machine& machine, Ref pid, uint64_t offset)>;

struct MachineOptions {
  // Label for locations in findings and errors: "data.pkl", "pickle", ...
  std::string where = "pickle";
  // Added to stream positions in messages (the stream's offset in its file).
  uint64_t base = 0;
  // Null: every BINPERSID is a finding (plain pickles).
  PersistentLoad persistent_load;
  // joblib: NumpyArrayWrapper BUILD is followed by the array's bytes.
  bool joblib = true;
  // The stream was decompressed (a zlib/gzip joblib file): a wrapper that
  // allows mmap is noted, since joblib.load(mmap_mode=...) would map the
  // compressed file at the decompressed offset.
  bool compressed = false;
  // torch.save's data.pkl: the arguments a tensor is rebuilt from (the
  // argument tuple of _rebuild_tensor*/_rebuild_parameter, its size and
  // stride tuples and empty hook dict, the storage record, the persistent-id
  // tuple of a storage and the strs only it holds) are released once the
  // tensor or storage record is built, unless a second reference to them
  // exists (Object::shared), and a storage's key str that only the memo
  // still holds is kept there as the storage's text (Memo::KeepAsStorageKey):
  // a checkpoint of n tensors then holds ~2n objects instead of ~9n while it
  // is read. A later GET of a
  // released object's memo key is refused (Unsupported): torch.save never
  // writes one, since every such object is made afresh for its one tensor.
  bool release_consumed = false;
  // Called with each run of at least kReadBehindBytes of the stream once the
  // machine has read kReadBehindLag past its end: a caller whose stream
  // lies in a file map can drop those pages from the resident set (views
  // into them stay valid and fault back in when read). Set, a GET of a str
  // of up to kCopyOnGetBytes that lies in the stream also moves its bytes
  // into Graph::owned, once, up to kMaxCopyOnGetTotal for the stream. Null:
  // nothing is called.
  std::function<void(ByteView read)> read_behind;
};

class Machine {
 public:
  Machine(ParseContext& ctx, Graph& graph, MachineOptions options);

  // Reads one pickle from data[start] up to and including its STOP. On
  // success *end is the position after STOP and the result is the root.
  // Findings are reported to the context; tainted() then says so.
  Result<Ref> Run(ByteView data, uint64_t start, uint64_t* end);

  // True once this machine reported a finding.
  bool tainted() const { return findings_ > 0; }
  uint64_t findings() const { return findings_; }

  // Reports a finding (used by persistent_load callbacks too).
  void Refuse(std::string rule, uint64_t offset, std::string message,
              std::vector<std::string> references = {});

  // Allocates a heap object.
  Result<Ref> New(Kind kind, uint64_t offset);
  Graph& graph() { return graph_; }
  const MachineOptions& options() const { return options_; }
  // "data.pkl byte 42" for a stream offset.
  std::string Location(uint64_t offset) const;
  // Where findings, notes and work go.
  ParseContext& context() { return ctx_; }

 private:
  ParseContext& ctx_;
  Graph& graph_;
  MachineOptions options_;
  uint64_t findings_ = 0;
};

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_MACHINE_H_
