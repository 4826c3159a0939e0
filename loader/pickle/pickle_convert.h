// From the pickle machine's object graph to a ParsedModel: tensors with
// dotted path names, the metadata tree, and (for whole nn.Module pickles) the
// architecture tree.
//
// The graph is a DAG (the memo shares objects) and may have cycles (a list
// appended to itself). The walk is iterative, refuses cycles, and bounds the
// expansion of shared objects by the Value limits (kMaxValueNodes,
// kMaxValueDepth). A tensor object reached twice is one tensor; distinct
// tensor objects that are the same view of the same storage (tied weights)
// become aliases; every other view is materialised on its own, so output
// byte ranges never overlap.
//
// Representation (README "Pickle-based inputs"): scalars, strings and bytes
// are Values; tuples and lists are lists; dicts are maps (non-string keys
// rendered like Python's repr); sets are {"$set": [...]}; a tensor is
// {"$tensor": "<name>"}; class instances (argparse.Namespace, nn modules,
// user classes) are {"$class": "<module.Class>", <attributes>}.
//
// Worst case: O(kMaxValueNodes) values and O(t log t) for t tensors (tied
// views are found through an ordered map); a tensor's bytes are not read
// here but when it is streamed.
//
// Trust: the graph was built from an untrusted stream; every view is proved
// inside its storage before it is emitted.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_CONVERT_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_CONVERT_H_

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loader/model.h"
#include "loader/parser.h"
#include "loader/pickle/pickle_machine.h"

namespace safemodel::loader::pickle {

// Storages that are members of one container (a zip's data/<key>
// records): one object fetches any member's bytes and tells where it is, so
// that a storage holds a word for it instead of a closure and a text of its
// own (two heap blocks per storage; a checkpoint has one storage a tensor).
class StorageMembers {
 public:
  virtual ~StorageMembers() = default;
  // Member `member`'s bytes (Elements.view = all of them).
  virtual Result<Elements> Fetch(uint64_t member) const = 0;
  // Where member `member` is, e.g. "zip member 'archive/data/0'".
  virtual std::string Origin(uint64_t member) const = 0;
};

// Where a torch storage's bytes are (decided by the container): a member of
// `members`, or a fixed origin text and a fetch of its own.
struct StorageData {
  uint64_t nbytes = 0;  // bytes the storage holds
  bool big_endian = false;
  std::shared_ptr<const StorageMembers> members;
  uint64_t member = 0;
  std::string origin;  // without members: e.g. "storage '140234'"
  // Without members: produces the storage's bytes (Elements.view = all of
  // them); called lazily when a tensor is streamed.
  std::function<Result<Elements>()> fetch;

  Result<Elements> Fetch() const { return members ? members->Fetch(member) : fetch(); }
  std::string Origin() const { return members ? members->Origin(member) : origin; }
};
using StorageResolver = std::function<Result<StorageData>(const StorageInfo& storage)>;

struct ConvertSettings {
  std::string where = "pickle";  // for messages
  // The name of a tensor that is the root object itself (a pickled tensor,
  // a .npy array).
  std::string root_name = "tensor";
  // Prefix for every tensor name (an .npz member), joined with ".".
  std::string prefix;
  StorageResolver storages;  // null when the input has no torch storages
  // A root nn.Module becomes the architecture tree (and no metadata).
  bool architecture_from_root_module = true;
  // The caller does not read the graph's objects after the conversion, nor
  // runs the machine on it again: the dicts' key indices are freed before
  // the walk, the objects before the tensors are emitted (for 100,000
  // tensors, ~100 MB less at the parser's peak). The side tables and
  // Graph::owned stay.
  bool release_objects = false;
  // With release_objects: called once the objects are freed, before the
  // tensors are emitted, when nothing reads the stream's bytes any more
  // (the tensors' names are copied): the caller may drop the pages of a
  // mapped stream, which the walk's reading of every name brought back.
  std::function<void()> after_walk;
  // Called with the bytes of each name (a state_dict's key, a str the walk
  // copies) as the walk reads them: a caller whose stream lies in a
  // droppable map counts the read (ZipArchive::TouchPages), so that the walk
  // maps a few blocks of it back in at a time, not the whole stream (8.7 MB
  // for 100,000 tensors). Null: nothing is called.
  std::function<void(ByteView bytes)> name_read;
};

struct Converted {
  Value metadata;      // null when nothing besides tensors was found
  Value architecture;  // null unless the root is a module
};

// Adds the tensors of the graph under `root` to out->tensors and returns the
// trees. The tensors view only the input and the bytes the machine decoded:
// those (Graph::owned) move to out->keepalive, so the caller's graph is
// emptied of them and the rest of it can be freed before streaming.
Result<Converted> ConvertGraph(std::shared_ptr<Graph> graph, Ref root,
                               const ConvertSettings& settings, ParseContext& ctx,
                               ParsedModel* out);

// Sets out->metadata / out->architecture from a conversion (the parts that
// are not null).
void StoreTrees(Converted converted, ParsedModel* out);

// Makes room in `v` for `more` elements: exactly as many into an empty
// vector (one conversion of one pickle: no second buffer at its peak), at
// least twice the capacity otherwise (many conversions into one list, as an
// .npz of object arrays does per member: growth stays geometric, so the
// elements move O(log n) times, not once per conversion).
template <typename T>
void ReserveForMore(std::vector<T>& v, size_t more) {
  const size_t need = v.size() + more;
  if (need <= v.capacity()) return;
  v.reserve(v.empty() ? need : std::max(need, 2 * v.capacity()));
}

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_CONVERT_H_
