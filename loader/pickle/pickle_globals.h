// The closed table of names a pickle may refer to.
//
// A pickle names Python objects by (module, name) with GLOBAL, STACK_GLOBAL
// and INST. A real unpickler imports the module and fetches the attribute;
// this table instead maps the exact pair, after the Python 2 name mapping of
// CPython's _compat_pickle, to a tag. REDUCE/NEWOBJ/BUILD on a tag run our own
// handler that builds inert data (pickle_handlers.h). A pair that is not in
// the table is never looked up anywhere: the machine reports it as a finding.
//
// Matching is on the pair, never on the joined string: ("torch",
// "_utils._rebuild_tensor_v2") is a dotted attribute path, not the table's
// ("torch._utils", "_rebuild_tensor_v2"), and is refused.
//
// Worst case: a lookup compares the name with O(log t) entries of the table
// and at most the ~100 entries of the Python 2 and torch.nn lists: constant
// per name, linear in its length.
// Trust: the names are untrusted text; they are compared, never resolved.
#ifndef SAFEMODEL_LOADER_PICKLE_PICKLE_GLOBALS_H_
#define SAFEMODEL_LOADER_PICKLE_PICKLE_GLOBALS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "safemodel/dtype.h"

namespace safemodel::loader::pickle {

// What a table entry is. Handlers switch on this.
enum class GlobalKind : uint8_t {
  kUnknown,  // not in the table: a finding
  // Python built-ins and the standard library's data types.
  kOrderedDict,    // collections.OrderedDict
  kCounter,        // collections.Counter
  kSet,            // builtins.set
  kFrozenSet,      // builtins.frozenset
  kByteArray,      // builtins.bytearray
  kBytes,          // builtins.bytes (empty bytes in protocol < 3)
  kComplex,        // builtins.complex
  kObject,         // builtins.object (only as copyreg._reconstructor's base)
  kCodecsEncode,   // _codecs.encode (bytes in protocol < 3)
  kReconstructor,  // copyreg._reconstructor (protocol < 2 object pattern)
  kNewObj,         // copyreg.__newobj__ (protocol < 2 NEWOBJ)
  kNamespace,      // argparse.Namespace, types.SimpleNamespace
  // PyTorch.
  kRebuildTensor,              // torch._utils._rebuild_tensor (v1)
  kRebuildTensorV2,            // torch._utils._rebuild_tensor_v2
  kRebuildTensorV3,            // torch._utils._rebuild_tensor_v3
  kRebuildParameter,           // torch._utils._rebuild_parameter
  kRebuildParameterWithState,  // torch._utils._rebuild_parameter_with_state
  kRebuildQTensor,             // torch._utils._rebuild_qtensor
  kRebuildSparseTensor,        // torch._utils._rebuild_sparse_tensor
  kRebuildFromTypeV2,          // torch._tensor._rebuild_from_type_v2
  kRebuildUnsupported,         // torch rebuild functions we do not convert
  kStorageType,                // torch.FloatStorage, ... (dtype in the entry)
  kUntypedStorage,             // torch.UntypedStorage (v3: bytes)
  kTorchDType,                 // torch.float32, ... (dtype in the entry)
  kTorchSize,                  // torch.Size
  kTorchDevice,                // torch.device
  kGetLayout,                  // torch.serialization._get_layout
  kQScheme,                    // torch.per_tensor_affine, ...
  kTensorType,                 // torch.Tensor
  kParameterType,              // torch.nn.parameter.Parameter
  kNnModule,                   // torch.nn.modules.<file>.<Class>
  // NumPy.
  kNpReconstruct,  // numpy.core.multiarray._reconstruct (and numpy._core)
  kNpNdarray,      // numpy.ndarray
  kNpMemmap,       // numpy.memmap (joblib's subclass field only)
  kNpDtype,        // numpy.dtype
  kNpScalar,       // numpy.core.multiarray.scalar (and numpy._core)
  kNpFromBuffer,   // numpy.core.numeric._frombuffer (protocol 5 arrays)
  // joblib.
  kJoblibArrayWrapper,  // joblib.numpy_pickle.NumpyArrayWrapper (inline data)
  kJoblibFileWrapper,   // NDArrayWrapper / ZNDArrayWrapper: data in other files
};
// The number of kinds (kJoblibFileWrapper is the last): handler tables are
// indexed by kind.
inline constexpr size_t kGlobalKindCount = static_cast<size_t>(GlobalKind::kJoblibFileWrapper) + 1;

struct GlobalEntry {
  GlobalKind kind = GlobalKind::kUnknown;
  // kStorageType, kTorchDType: the element type (kInvalid when the type has
  // no safemodel dtype, e.g. torch.complex32 or a packed quantized type).
  DType dtype = DType::kInvalid;
  // kStorageType, kTorchDType: set for quantized element types (quint8,
  // qint8, qint32, quint4x2, quint2x4).
  bool quantized = false;
};

// Applies CPython's _compat_pickle NAME_MAPPING, then IMPORT_MAPPING, to a
// (module, name) pair read from a protocol 0-2 pickle (as the unpickler does
// with fix_imports=True).
std::pair<std::string, std::string> MapPython2Name(std::string_view module, std::string_view name);

// The table entry for an exact (module, name) pair (already mapped).
// kUnknown if the pair is not in the table.
GlobalEntry LookupGlobal(std::string_view module, std::string_view name);

// True for the module a user's script runs as: its classes are recorded by
// name (never resolved) when the pickle only instantiates them with NEWOBJ.
inline bool IsUserModule(std::string_view module) { return module == "__main__"; }

}  // namespace safemodel::loader::pickle

#endif  // SAFEMODEL_LOADER_PICKLE_PICKLE_GLOBALS_H_
