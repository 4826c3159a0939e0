// What REDUCE, NEWOBJ and BUILD do to the names of the closed table
// (pickle_globals.h): one handler per GlobalKind, which builds inert data in
// place of the Python object the call would return. A handler reads its
// arguments, checks them as the real callable would (a value the callable
// would reject is an error, never a guess), and builds records through the
// Builder. Internal to loader/pickle.
//
// The handlers live by family: handlers_builtins.cc (builtins, collections,
// copyreg, argparse), handlers_torch.cc (torch rebuild functions, sizes,
// devices, layouts), handlers_numpy.cc (arrays, dtypes, scalars) and
// handlers_state.cc (BUILD states of instances and OrderedDicts);
// pickle_calls.cc holds the table from kind to handler and the dispatch.
//
// Errors a handler returns are "semantic" (pickle_machine.h): the opcode
// loop remembers the first, replaces the value by an opaque placeholder and
// reads on. Findings (a user class called with arguments, BUILD on a name,
// hooks in a module's state) go to the context through Builder::Refuse.
//
// Worst case: O(arguments) per call, plus O(items) for the containers a
// handler copies (charged as work); nothing recurses except the one level of
// torch._tensor._rebuild_from_type_v2, whose inner function is never itself
// that function.
//
// Trust: every argument comes from the untrusted stream.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_HANDLERS_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_HANDLERS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "loader/pickle/pickle_builder.h"

namespace safemodel::loader::pickle {

// One call of a table name: its entry, its name ("module.name", for
// messages) and its arguments (already copied: a handler may allocate).
struct Call {
  Ref callable;
  GlobalEntry entry;
  std::string name;
  const std::vector<Ref>& args;
  // Malformed "<name> called with N arguments" unless lo <= N <= hi.
  Status Arity(const Builder& m, size_t lo, size_t hi) const;
};
// Contract with MachineOptions::release_consumed (pickle_ops.cc,
// Interpreter::ReleaseArguments): after a torch tensor rebuild, the argument
// tuple and its tuple and empty-dict items are released and their places
// reused, and so is a storage record among them (its StorageInfo stays). A
// handler must therefore never return, nor keep in a side table
// (TensorInfo, InstanceInfo, ArrayInfo, Graph::attrs, ...), a tuple or dict
// it was given or one of their items; it copies what it needs (sizes,
// strides, keys, a storage's index in Graph::storages) or keeps records
// other than storages only. A handler that needs otherwise must
// mark what it keeps Object::shared. Sanitizer builds check every reference
// against its object's kind (Graph::CheckKind) and poison released spans.
using Handler = Result<Ref> (*)(Builder& m, const Call& call);

// ---- Dispatch (pickle_calls.cc) ------------------------------------------------

// REDUCE (and INST/OBJ with arguments): `callable` applied to the tuple
// `args`. Only a table name runs a handler; calling anything else, or a
// user-script name, is a finding. Errors come back as opaque values
// (remembered); the Result fails only when the machine must stop.
Result<Ref> CallName(Builder& m, Ref callable, Ref args, uint8_t op);

// The handler of the table name `callable` on `args`.
Result<Ref> Reduce(Builder& m, Ref callable, const std::vector<Ref>& args);

// cls.__new__(cls, *args) for NEWOBJ(_EX), INST/OBJ without arguments and
// copyreg's protocol-0/1 patterns: an instance record for the classes whose
// instances are data (Namespace, nn modules, joblib's array wrapper, classes
// of the user's script without arguments); a finding or an error otherwise.
Result<Ref> NewObject(Builder& m, Ref cls, const std::vector<Ref>& args, uint8_t op);

// BUILD of `state` on *target: instances, OrderedDicts, numpy arrays and
// dtypes; a finding on a name (it would change what later names resolve
// to). joblib wrappers are the opcode loop's (it reads their data).
Status Build(Builder& m, Ref* target, Ref state);

// ---- Arguments (pickle_calls.cc) -----------------------------------------------

// A tuple or list of non-negative ints, at most kMaxRank of them.
Result<std::vector<uint64_t>> ShapeArg(Builder& m, Ref r, const char* what);
// A tuple or list of non-negative ints (torch never writes negative strides).
Result<std::vector<int64_t>> StridesArg(Builder& m, Ref r, const char* what);
// bytes or bytearray (or an ASCII str: Python 2 str data read as text).
Result<ByteView> BytesArg(Builder& m, Ref r, const char* what);
// None or an empty dict: a state, hook table or metadata that carries nothing.
bool IsEmptyState(const Graph& g, Ref r);

// ---- builtins, collections, copyreg, argparse (handlers_builtins.cc) ------------
Result<Ref> ReduceOrderedDict(Builder& m, const Call& call);  // also Counter
Result<Ref> ReduceSet(Builder& m, const Call& call);          // set, frozenset
Result<Ref> ReduceBytes(Builder& m, const Call& call);        // bytes, bytearray
Result<Ref> ReduceCodecsEncode(Builder& m, const Call& call);
Result<Ref> ReduceComplex(Builder& m, const Call& call);
Result<Ref> ReduceReconstructor(Builder& m, const Call& call);
Result<Ref> ReduceNewObj(Builder& m, const Call& call);
Result<Ref> ReduceNamespace(Builder& m, const Call& call);

// ---- torch (handlers_torch.cc) ---------------------------------------------------
Result<Ref> ReduceRebuildTensor(Builder& m, const Call& call);  // v1, v2, v3
Result<Ref> ReduceRebuildParameter(Builder& m, const Call& call);
Result<Ref> ReduceRebuildQTensor(Builder& m, const Call& call);
Result<Ref> ReduceRebuildSparse(Builder& m, const Call& call);
Result<Ref> ReduceRebuildFromTypeV2(Builder& m, const Call& call);
Result<Ref> ReduceRebuildUnsupported(Builder& m, const Call& call);
Result<Ref> ReduceTorchSize(Builder& m, const Call& call);
Result<Ref> ReduceTorchDevice(Builder& m, const Call& call);
Result<Ref> ReduceGetLayout(Builder& m, const Call& call);

// ---- numpy (handlers_numpy.cc) ---------------------------------------------------
Result<Ref> ReduceNpReconstruct(Builder& m, const Call& call);
Result<Ref> ReduceNpDtype(Builder& m, const Call& call);
Result<Ref> ReduceNpScalar(Builder& m, const Call& call);
Result<Ref> ReduceNpFromBuffer(Builder& m, const Call& call);
// BUILD of a numpy array's and a dtype's state.
Status BuildNpArray(Builder& m, Object& obj, Ref state);
Status BuildNpDtype(Builder& m, Object& obj, Ref state);
// A dtype numeric data can be read with: a safemodel dtype, and a byte
// order from BUILD (numpy always writes one) unless elements are one byte.
Status CheckNumericDtype(const Builder& m, const NpDtypeInfo& info);

// ---- BUILD states (handlers_state.cc) ----------------------------------------------
Status BuildInstance(Builder& m, Ref obj, Ref state);
Status BuildOrderedDict(Builder& m, Ref obj, Ref state);
// Checks the keys of one half of a BUILD state for an object of class `cls`
// (`setattr`: the slot-state half; `module`: an nn.Module, whose non-empty
// hook tables are findings). Special names are findings; non-str keys are
// errors.
Status CheckState(Builder& m, Ref dict, const std::string& cls, bool setattr, bool module);
// A copy of dict `d` as it is now (what Python copies into __dict__).
Result<Ref> Snapshot(Builder& m, Ref d);

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_HANDLERS_H_
