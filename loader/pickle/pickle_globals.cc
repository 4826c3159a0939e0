#include "loader/pickle/pickle_globals.h"

#include <algorithm>
#include <array>
#include <map>

namespace safemodel::loader::pickle {

namespace {

struct Pair {
  std::string_view module;
  std::string_view name;
};

// CPython Lib/_compat_pickle.py IMPORT_MAPPING (Python 2 module names).
constexpr std::pair<std::string_view, std::string_view> kImportMapping[] = {
    {"BaseHTTPServer", "http.server"},
    {"CGIHTTPServer", "http.server"},
    {"ConfigParser", "configparser"},
    {"Cookie", "http.cookies"},
    {"Dialog", "tkinter.dialog"},
    {"DocXMLRPCServer", "xmlrpc.server"},
    {"FileDialog", "tkinter.filedialog"},
    {"HTMLParser", "html.parser"},
    {"Queue", "queue"},
    {"ScrolledText", "tkinter.scrolledtext"},
    {"SimpleDialog", "tkinter.simpledialog"},
    {"SimpleHTTPServer", "http.server"},
    {"SimpleXMLRPCServer", "xmlrpc.server"},
    {"SocketServer", "socketserver"},
    {"StringIO", "io"},
    {"Tix", "tkinter.tix"},
    {"Tkconstants", "tkinter.constants"},
    {"Tkdnd", "tkinter.dnd"},
    {"Tkinter", "tkinter"},
    {"UserDict", "collections"},
    {"UserList", "collections"},
    {"UserString", "collections"},
    {"__builtin__", "builtins"},
    {"_abcoll", "collections.abc"},
    {"_elementtree", "xml.etree.ElementTree"},
    {"_winreg", "winreg"},
    {"anydbm", "dbm"},
    {"cPickle", "pickle"},
    {"cStringIO", "io"},
    {"commands", "subprocess"},
    {"cookielib", "http.cookiejar"},
    {"copy_reg", "copyreg"},
    {"dbhash", "dbm.bsd"},
    {"dbm", "dbm.ndbm"},
    {"dumbdbm", "dbm.dumb"},
    {"dummy_thread", "_dummy_thread"},
    {"gdbm", "dbm.gnu"},
    {"htmlentitydefs", "html.entities"},
    {"httplib", "http.client"},
    {"markupbase", "_markupbase"},
    {"repr", "reprlib"},
    {"robotparser", "urllib.robotparser"},
    {"test.test_support", "test.support"},
    {"thread", "_thread"},
    {"tkColorChooser", "tkinter.colorchooser"},
    {"tkCommonDialog", "tkinter.commondialog"},
    {"tkFileDialog", "tkinter.filedialog"},
    {"tkFont", "tkinter.font"},
    {"tkMessageBox", "tkinter.messagebox"},
    {"tkSimpleDialog", "tkinter.simpledialog"},
    {"ttk", "tkinter.ttk"},
    {"urllib2", "urllib.request"},
    {"urlparse", "urllib.parse"},
    {"whichdb", "dbm"},
    {"xmlrpclib", "xmlrpc.client"},
};

// CPython Lib/_compat_pickle.py NAME_MAPPING, except the ("exceptions", X)
// family, which maps every X to ("builtins", X) (StandardError to Exception)
// and is handled in code.
constexpr std::pair<Pair, Pair> kNameMapping[] = {
    {{"UserDict", "IterableUserDict"}, {"collections", "UserDict"}},
    {{"UserDict", "UserDict"}, {"collections", "UserDict"}},
    {{"UserList", "UserList"}, {"collections", "UserList"}},
    {{"UserString", "UserString"}, {"collections", "UserString"}},
    {{"__builtin__", "basestring"}, {"builtins", "str"}},
    {{"__builtin__", "intern"}, {"sys", "intern"}},
    {{"__builtin__", "long"}, {"builtins", "int"}},
    {{"__builtin__", "reduce"}, {"functools", "reduce"}},
    {{"__builtin__", "unichr"}, {"builtins", "chr"}},
    {{"__builtin__", "unicode"}, {"builtins", "str"}},
    {{"__builtin__", "xrange"}, {"builtins", "range"}},
    {{"_multiprocessing", "Connection"}, {"multiprocessing.connection", "Connection"}},
    {{"_socket", "fromfd"}, {"socket", "fromfd"}},
    {{"itertools", "ifilter"}, {"builtins", "filter"}},
    {{"itertools", "ifilterfalse"}, {"itertools", "filterfalse"}},
    {{"itertools", "imap"}, {"builtins", "map"}},
    {{"itertools", "izip"}, {"builtins", "zip"}},
    {{"itertools", "izip_longest"}, {"itertools", "zip_longest"}},
    {{"multiprocessing", "AuthenticationError"},
     {"multiprocessing.context", "AuthenticationError"}},
    {{"multiprocessing", "BufferTooShort"}, {"multiprocessing.context", "BufferTooShort"}},
    {{"multiprocessing", "ProcessError"}, {"multiprocessing.context", "ProcessError"}},
    {{"multiprocessing", "TimeoutError"}, {"multiprocessing.context", "TimeoutError"}},
    {{"multiprocessing.forking", "Popen"}, {"multiprocessing.popen_fork", "Popen"}},
    {{"multiprocessing.process", "Process"}, {"multiprocessing.context", "Process"}},
    {{"socket", "_socketobject"}, {"socket", "SocketType"}},
    {{"urllib", "ContentTooShortError"}, {"urllib.error", "ContentTooShortError"}},
    {{"urllib", "getproxies"}, {"urllib.request", "getproxies"}},
    {{"urllib", "pathname2url"}, {"urllib.request", "pathname2url"}},
    {{"urllib", "quote"}, {"urllib.parse", "quote"}},
    {{"urllib", "quote_plus"}, {"urllib.parse", "quote_plus"}},
    {{"urllib", "unquote"}, {"urllib.parse", "unquote"}},
    {{"urllib", "unquote_plus"}, {"urllib.parse", "unquote_plus"}},
    {{"urllib", "url2pathname"}, {"urllib.request", "url2pathname"}},
    {{"urllib", "urlcleanup"}, {"urllib.request", "urlcleanup"}},
    {{"urllib", "urlencode"}, {"urllib.parse", "urlencode"}},
    {{"urllib", "urlopen"}, {"urllib.request", "urlopen"}},
    {{"urllib", "urlretrieve"}, {"urllib.request", "urlretrieve"}},
    {{"urllib2", "HTTPError"}, {"urllib.error", "HTTPError"}},
    {{"urllib2", "URLError"}, {"urllib.error", "URLError"}},
    {{"whichdb", "whichdb"}, {"dbm", "whichdb"}},
};

struct Entry {
  Pair pair;
  GlobalEntry entry;
};

constexpr GlobalEntry K(GlobalKind kind) { return {kind, DType::kInvalid, false}; }
constexpr GlobalEntry S(DType dtype, bool quantized = false) {
  return {GlobalKind::kStorageType, dtype, quantized};
}
constexpr GlobalEntry D(DType dtype, bool quantized = false) {
  return {GlobalKind::kTorchDType, dtype, quantized};
}

// Every data constructor a checkpoint, a joblib file or a numpy object array
// is known to use. Nothing here can run code when our handlers "call" it.
constexpr Entry kTable[] = {
    {{"collections", "OrderedDict"}, K(GlobalKind::kOrderedDict)},
    {{"collections", "Counter"}, K(GlobalKind::kCounter)},
    {{"builtins", "set"}, K(GlobalKind::kSet)},
    {{"builtins", "frozenset"}, K(GlobalKind::kFrozenSet)},
    {{"builtins", "bytearray"}, K(GlobalKind::kByteArray)},
    {{"builtins", "bytes"}, K(GlobalKind::kBytes)},
    {{"builtins", "complex"}, K(GlobalKind::kComplex)},
    {{"builtins", "object"}, K(GlobalKind::kObject)},
    {{"_codecs", "encode"}, K(GlobalKind::kCodecsEncode)},
    {{"copyreg", "_reconstructor"}, K(GlobalKind::kReconstructor)},
    {{"copyreg", "__newobj__"}, K(GlobalKind::kNewObj)},
    {{"argparse", "Namespace"}, K(GlobalKind::kNamespace)},
    {{"types", "SimpleNamespace"}, K(GlobalKind::kNamespace)},

    {{"torch._utils", "_rebuild_tensor"}, K(GlobalKind::kRebuildTensor)},
    {{"torch._utils", "_rebuild_tensor_v2"}, K(GlobalKind::kRebuildTensorV2)},
    {{"torch._utils", "_rebuild_tensor_v3"}, K(GlobalKind::kRebuildTensorV3)},
    {{"torch._utils", "_rebuild_parameter"}, K(GlobalKind::kRebuildParameter)},
    {{"torch._utils", "_rebuild_parameter_with_state"}, K(GlobalKind::kRebuildParameterWithState)},
    {{"torch._utils", "_rebuild_qtensor"}, K(GlobalKind::kRebuildQTensor)},
    {{"torch._utils", "_rebuild_sparse_tensor"}, K(GlobalKind::kRebuildSparseTensor)},
    {{"torch._tensor", "_rebuild_from_type_v2"}, K(GlobalKind::kRebuildFromTypeV2)},
    // Known torch rebuild functions for tensors without CPU data or with
    // layouts safemodel does not represent: refused as unsupported, not as code.
    {{"torch._utils", "_rebuild_meta_tensor_no_storage"}, K(GlobalKind::kRebuildUnsupported)},
    {{"torch._utils", "_rebuild_wrapper_subclass"}, K(GlobalKind::kRebuildUnsupported)},
    {{"torch._utils", "_rebuild_nested_tensor"}, K(GlobalKind::kRebuildUnsupported)},
    {{"torch._utils", "_rebuild_device_tensor_from_numpy"}, K(GlobalKind::kRebuildUnsupported)},
    {{"torch._utils", "_rebuild_xla_tensor"}, K(GlobalKind::kRebuildUnsupported)},
    {{"torch._utils", "_rebuild_mps_tensor"}, K(GlobalKind::kRebuildUnsupported)},
    {{"torch._utils", "_rebuild_sparse_csr_tensor"}, K(GlobalKind::kRebuildSparseTensor)},
    {{"torch._tensor", "_rebuild_from_type"}, K(GlobalKind::kRebuildUnsupported)},

    {{"torch", "DoubleStorage"}, S(DType::kF64)},
    {{"torch", "FloatStorage"}, S(DType::kF32)},
    {{"torch", "HalfStorage"}, S(DType::kF16)},
    {{"torch", "BFloat16Storage"}, S(DType::kBF16)},
    {{"torch", "LongStorage"}, S(DType::kI64)},
    {{"torch", "IntStorage"}, S(DType::kI32)},
    {{"torch", "ShortStorage"}, S(DType::kI16)},
    {{"torch", "CharStorage"}, S(DType::kI8)},
    {{"torch", "ByteStorage"}, S(DType::kU8)},
    {{"torch", "BoolStorage"}, S(DType::kBool)},
    {{"torch", "ComplexFloatStorage"}, S(DType::kC64)},
    {{"torch", "ComplexDoubleStorage"}, S(DType::kC128)},
    {{"torch", "QUInt8Storage"}, S(DType::kU8, true)},
    {{"torch", "QInt8Storage"}, S(DType::kI8, true)},
    {{"torch", "QInt32Storage"}, S(DType::kI32, true)},
    {{"torch", "QUInt4x2Storage"}, S(DType::kInvalid, true)},
    {{"torch", "QUInt2x4Storage"}, S(DType::kInvalid, true)},
    {{"torch.cuda", "DoubleStorage"}, S(DType::kF64)},
    {{"torch.cuda", "FloatStorage"}, S(DType::kF32)},
    {{"torch.cuda", "HalfStorage"}, S(DType::kF16)},
    {{"torch.cuda", "BFloat16Storage"}, S(DType::kBF16)},
    {{"torch.cuda", "LongStorage"}, S(DType::kI64)},
    {{"torch.cuda", "IntStorage"}, S(DType::kI32)},
    {{"torch.cuda", "ShortStorage"}, S(DType::kI16)},
    {{"torch.cuda", "CharStorage"}, S(DType::kI8)},
    {{"torch.cuda", "ByteStorage"}, S(DType::kU8)},
    {{"torch.cuda", "BoolStorage"}, S(DType::kBool)},
    {{"torch.cuda", "ComplexFloatStorage"}, S(DType::kC64)},
    {{"torch.cuda", "ComplexDoubleStorage"}, S(DType::kC128)},
    {{"torch", "UntypedStorage"}, K(GlobalKind::kUntypedStorage)},

    {{"torch", "float32"}, D(DType::kF32)},
    {{"torch", "float"}, D(DType::kF32)},
    {{"torch", "float64"}, D(DType::kF64)},
    {{"torch", "double"}, D(DType::kF64)},
    {{"torch", "float16"}, D(DType::kF16)},
    {{"torch", "half"}, D(DType::kF16)},
    {{"torch", "bfloat16"}, D(DType::kBF16)},
    {{"torch", "complex64"}, D(DType::kC64)},
    {{"torch", "cfloat"}, D(DType::kC64)},
    {{"torch", "complex128"}, D(DType::kC128)},
    {{"torch", "cdouble"}, D(DType::kC128)},
    {{"torch", "uint8"}, D(DType::kU8)},
    {{"torch", "int8"}, D(DType::kI8)},
    {{"torch", "int16"}, D(DType::kI16)},
    {{"torch", "short"}, D(DType::kI16)},
    {{"torch", "int32"}, D(DType::kI32)},
    {{"torch", "int"}, D(DType::kI32)},
    {{"torch", "int64"}, D(DType::kI64)},
    {{"torch", "long"}, D(DType::kI64)},
    {{"torch", "uint16"}, D(DType::kU16)},
    {{"torch", "uint32"}, D(DType::kU32)},
    {{"torch", "uint64"}, D(DType::kU64)},
    {{"torch", "bool"}, D(DType::kBool)},
    {{"torch", "float8_e4m3fn"}, D(DType::kF8E4M3FN)},
    {{"torch", "float8_e5m2"}, D(DType::kF8E5M2)},
    {{"torch", "float8_e4m3fnuz"}, D(DType::kF8E4M3FNUZ)},
    {{"torch", "float8_e5m2fnuz"}, D(DType::kF8E5M2FNUZ)},
    {{"torch", "float8_e8m0fnu"}, D(DType::kF8E8M0FNU)},
    {{"torch", "complex32"}, D(DType::kInvalid)},
    {{"torch", "chalf"}, D(DType::kInvalid)},
    {{"torch", "float4_e2m1fn_x2"}, D(DType::kInvalid)},
    {{"torch", "quint8"}, D(DType::kU8, true)},
    {{"torch", "qint8"}, D(DType::kI8, true)},
    {{"torch", "qint32"}, D(DType::kI32, true)},
    {{"torch", "quint4x2"}, D(DType::kInvalid, true)},
    {{"torch", "quint2x4"}, D(DType::kInvalid, true)},

    {{"torch", "Size"}, K(GlobalKind::kTorchSize)},
    {{"torch", "device"}, K(GlobalKind::kTorchDevice)},
    {{"torch.serialization", "_get_layout"}, K(GlobalKind::kGetLayout)},
    {{"torch", "per_tensor_affine"}, K(GlobalKind::kQScheme)},
    {{"torch", "per_channel_affine"}, K(GlobalKind::kQScheme)},
    {{"torch", "per_tensor_symmetric"}, K(GlobalKind::kQScheme)},
    {{"torch", "per_channel_symmetric"}, K(GlobalKind::kQScheme)},
    {{"torch", "per_channel_affine_float_qparams"}, K(GlobalKind::kQScheme)},
    {{"torch", "Tensor"}, K(GlobalKind::kTensorType)},
    {{"torch._tensor", "Tensor"}, K(GlobalKind::kTensorType)},
    {{"torch.nn.parameter", "Parameter"}, K(GlobalKind::kParameterType)},

    {{"numpy.core.multiarray", "_reconstruct"}, K(GlobalKind::kNpReconstruct)},
    {{"numpy._core.multiarray", "_reconstruct"}, K(GlobalKind::kNpReconstruct)},
    {{"numpy.core.multiarray", "scalar"}, K(GlobalKind::kNpScalar)},
    {{"numpy._core.multiarray", "scalar"}, K(GlobalKind::kNpScalar)},
    {{"numpy.core.numeric", "_frombuffer"}, K(GlobalKind::kNpFromBuffer)},
    {{"numpy._core.numeric", "_frombuffer"}, K(GlobalKind::kNpFromBuffer)},
    {{"numpy", "ndarray"}, K(GlobalKind::kNpNdarray)},
    {{"numpy", "memmap"}, K(GlobalKind::kNpMemmap)},
    {{"numpy", "dtype"}, K(GlobalKind::kNpDtype)},

    {{"joblib.numpy_pickle", "NumpyArrayWrapper"}, K(GlobalKind::kJoblibArrayWrapper)},
    {{"sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"},
     K(GlobalKind::kJoblibArrayWrapper)},
    {{"joblib.numpy_pickle", "NDArrayWrapper"}, K(GlobalKind::kJoblibFileWrapper)},
    {{"joblib.numpy_pickle", "ZNDArrayWrapper"}, K(GlobalKind::kJoblibFileWrapper)},
    {{"sklearn.externals.joblib.numpy_pickle", "NDArrayWrapper"},
     K(GlobalKind::kJoblibFileWrapper)},
    {{"sklearn.externals.joblib.numpy_pickle", "ZNDArrayWrapper"},
     K(GlobalKind::kJoblibFileWrapper)},
};

// torch.nn module classes (torch 1.13 torch.nn.modules.* plus the few later
// additions), recorded as inert module records. Pairs are (file, class) under
// "torch.nn.modules.".
constexpr Pair kNnModules[] = {
    {"activation", "CELU"},
    {"activation", "ELU"},
    {"activation", "GELU"},
    {"activation", "GLU"},
    {"activation", "Hardshrink"},
    {"activation", "Hardsigmoid"},
    {"activation", "Hardswish"},
    {"activation", "Hardtanh"},
    {"activation", "LeakyReLU"},
    {"activation", "LogSigmoid"},
    {"activation", "LogSoftmax"},
    {"activation", "Mish"},
    {"activation", "MultiheadAttention"},
    {"activation", "PReLU"},
    {"activation", "RReLU"},
    {"activation", "ReLU"},
    {"activation", "ReLU6"},
    {"activation", "SELU"},
    {"activation", "SiLU"},
    {"activation", "Sigmoid"},
    {"activation", "Softmax"},
    {"activation", "Softmax2d"},
    {"activation", "Softmin"},
    {"activation", "Softplus"},
    {"activation", "Softshrink"},
    {"activation", "Softsign"},
    {"activation", "Tanh"},
    {"activation", "Tanhshrink"},
    {"activation", "Threshold"},
    {"adaptive", "AdaptiveLogSoftmaxWithLoss"},
    {"batchnorm", "BatchNorm1d"},
    {"batchnorm", "BatchNorm2d"},
    {"batchnorm", "BatchNorm3d"},
    {"batchnorm", "LazyBatchNorm1d"},
    {"batchnorm", "LazyBatchNorm2d"},
    {"batchnorm", "LazyBatchNorm3d"},
    {"batchnorm", "SyncBatchNorm"},
    {"batchnorm", "_BatchNorm"},
    {"batchnorm", "_LazyNormBase"},
    {"batchnorm", "_NormBase"},
    {"channelshuffle", "ChannelShuffle"},
    {"container", "Container"},
    {"container", "ModuleDict"},
    {"container", "ModuleList"},
    {"container", "ParameterDict"},
    {"container", "ParameterList"},
    {"container", "Sequential"},
    {"conv", "Conv1d"},
    {"conv", "Conv2d"},
    {"conv", "Conv3d"},
    {"conv", "ConvTranspose1d"},
    {"conv", "ConvTranspose2d"},
    {"conv", "ConvTranspose3d"},
    {"conv", "LazyConv1d"},
    {"conv", "LazyConv2d"},
    {"conv", "LazyConv3d"},
    {"conv", "LazyConvTranspose1d"},
    {"conv", "LazyConvTranspose2d"},
    {"conv", "LazyConvTranspose3d"},
    {"conv", "_ConvNd"},
    {"conv", "_ConvTransposeMixin"},
    {"conv", "_ConvTransposeNd"},
    {"distance", "CosineSimilarity"},
    {"distance", "PairwiseDistance"},
    {"dropout", "AlphaDropout"},
    {"dropout", "Dropout"},
    {"dropout", "Dropout1d"},
    {"dropout", "Dropout2d"},
    {"dropout", "Dropout3d"},
    {"dropout", "FeatureAlphaDropout"},
    {"dropout", "_DropoutNd"},
    {"flatten", "Flatten"},
    {"flatten", "Unflatten"},
    {"fold", "Fold"},
    {"fold", "Unfold"},
    {"instancenorm", "InstanceNorm1d"},
    {"instancenorm", "InstanceNorm2d"},
    {"instancenorm", "InstanceNorm3d"},
    {"instancenorm", "LazyInstanceNorm1d"},
    {"instancenorm", "LazyInstanceNorm2d"},
    {"instancenorm", "LazyInstanceNorm3d"},
    {"instancenorm", "_InstanceNorm"},
    {"linear", "Bilinear"},
    {"linear", "Identity"},
    {"linear", "LazyLinear"},
    {"linear", "Linear"},
    {"linear", "NonDynamicallyQuantizableLinear"},
    {"loss", "BCELoss"},
    {"loss", "BCEWithLogitsLoss"},
    {"loss", "CTCLoss"},
    {"loss", "CosineEmbeddingLoss"},
    {"loss", "CrossEntropyLoss"},
    {"loss", "GaussianNLLLoss"},
    {"loss", "HingeEmbeddingLoss"},
    {"loss", "HuberLoss"},
    {"loss", "KLDivLoss"},
    {"loss", "L1Loss"},
    {"loss", "MSELoss"},
    {"loss", "MarginRankingLoss"},
    {"loss", "MultiLabelMarginLoss"},
    {"loss", "MultiLabelSoftMarginLoss"},
    {"loss", "MultiMarginLoss"},
    {"loss", "NLLLoss"},
    {"loss", "NLLLoss2d"},
    {"loss", "PoissonNLLLoss"},
    {"loss", "SmoothL1Loss"},
    {"loss", "SoftMarginLoss"},
    {"loss", "TripletMarginLoss"},
    {"loss", "TripletMarginWithDistanceLoss"},
    {"loss", "_Loss"},
    {"loss", "_WeightedLoss"},
    {"module", "Module"},
    {"normalization", "CrossMapLRN2d"},
    {"normalization", "GroupNorm"},
    {"normalization", "LayerNorm"},
    {"normalization", "LocalResponseNorm"},
    {"normalization", "RMSNorm"},
    {"padding", "CircularPad1d"},
    {"padding", "CircularPad2d"},
    {"padding", "CircularPad3d"},
    {"padding", "ConstantPad1d"},
    {"padding", "ConstantPad2d"},
    {"padding", "ConstantPad3d"},
    {"padding", "ReflectionPad1d"},
    {"padding", "ReflectionPad2d"},
    {"padding", "ReflectionPad3d"},
    {"padding", "ReplicationPad1d"},
    {"padding", "ReplicationPad2d"},
    {"padding", "ReplicationPad3d"},
    {"padding", "ZeroPad1d"},
    {"padding", "ZeroPad2d"},
    {"padding", "ZeroPad3d"},
    {"padding", "_ConstantPadNd"},
    {"padding", "_ReflectionPadNd"},
    {"padding", "_ReplicationPadNd"},
    {"pixelshuffle", "PixelShuffle"},
    {"pixelshuffle", "PixelUnshuffle"},
    {"pooling", "AdaptiveAvgPool1d"},
    {"pooling", "AdaptiveAvgPool2d"},
    {"pooling", "AdaptiveAvgPool3d"},
    {"pooling", "AdaptiveMaxPool1d"},
    {"pooling", "AdaptiveMaxPool2d"},
    {"pooling", "AdaptiveMaxPool3d"},
    {"pooling", "AvgPool1d"},
    {"pooling", "AvgPool2d"},
    {"pooling", "AvgPool3d"},
    {"pooling", "FractionalMaxPool2d"},
    {"pooling", "FractionalMaxPool3d"},
    {"pooling", "LPPool1d"},
    {"pooling", "LPPool2d"},
    {"pooling", "MaxPool1d"},
    {"pooling", "MaxPool2d"},
    {"pooling", "MaxPool3d"},
    {"pooling", "MaxUnpool1d"},
    {"pooling", "MaxUnpool2d"},
    {"pooling", "MaxUnpool3d"},
    {"pooling", "_AdaptiveAvgPoolNd"},
    {"pooling", "_AdaptiveMaxPoolNd"},
    {"pooling", "_AvgPoolNd"},
    {"pooling", "_LPPoolNd"},
    {"pooling", "_MaxPoolNd"},
    {"pooling", "_MaxUnpoolNd"},
    {"rnn", "GRU"},
    {"rnn", "GRUCell"},
    {"rnn", "LSTM"},
    {"rnn", "LSTMCell"},
    {"rnn", "RNN"},
    {"rnn", "RNNBase"},
    {"rnn", "RNNCell"},
    {"rnn", "RNNCellBase"},
    {"sparse", "Embedding"},
    {"sparse", "EmbeddingBag"},
    {"transformer", "Transformer"},
    {"transformer", "TransformerDecoder"},
    {"transformer", "TransformerDecoderLayer"},
    {"transformer", "TransformerEncoder"},
    {"transformer", "TransformerEncoderLayer"},
    {"upsampling", "Upsample"},
    {"upsampling", "UpsamplingBilinear2d"},
    {"upsampling", "UpsamplingNearest2d"},
};

constexpr std::string_view kNnPrefix = "torch.nn.modules.";

using Table = std::map<std::pair<std::string_view, std::string_view>, GlobalEntry>;

const Table& TheTable() {
  static const Table* table = [] {
    auto* t = new Table();
    for (const Entry& e : kTable) t->emplace(std::make_pair(e.pair.module, e.pair.name), e.entry);
    return t;
  }();
  return *table;
}

}  // namespace

std::pair<std::string, std::string> MapPython2Name(std::string_view module, std::string_view name) {
  for (const auto& [from, to] : kNameMapping) {
    if (from.module == module && from.name == name) {
      return {std::string(to.module), std::string(to.name)};
    }
  }
  if (module == "exceptions") {
    return {"builtins", name == "StandardError" ? "Exception" : std::string(name)};
  }
  for (const auto& [from, to] : kImportMapping) {
    if (from == module) return {std::string(to), std::string(name)};
  }
  return {std::string(module), std::string(name)};
}

GlobalEntry LookupGlobal(std::string_view module, std::string_view name) {
  const Table& table = TheTable();
  auto it = table.find(std::make_pair(module, name));
  if (it != table.end()) return it->second;
  if (module.size() > kNnPrefix.size() && module.substr(0, kNnPrefix.size()) == kNnPrefix) {
    std::string_view file = module.substr(kNnPrefix.size());
    for (const Pair& p : kNnModules) {
      if (p.module == file && p.name == name) return K(GlobalKind::kNnModule);
    }
  }
  return {};
}

}  // namespace safemodel::loader::pickle
