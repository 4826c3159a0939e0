// Handlers for PyTorch's pickled names: the rebuild functions of
// torch/_utils.py and torch/_tensor.py (dense, parameter, quantized and
// sparse tensors), torch.Size, torch.device and layouts. Arguments are
// checked as those functions check them: what torch would reject is an
// error, never a guess.
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "loader/pickle/pickle_handlers.h"
#include "loader/pickle/pickle_tree.h"

namespace safemodel::loader::pickle {

namespace {

// The part of a tensor's arguments every rebuild function shares: the
// storage offset (an int to torch's set_(), not a bool), the size and the
// stride, of one rank.
Status ReadView(Builder& m, const std::string& function, Ref offset, Ref size, Ref stride,
                TensorInfo* t, std::vector<int64_t>* strides) {
  if (offset.kind != Kind::kInt) {
    return Status::Malformed(function + ": storage offset must be an int, not " +
                             KindName(m.graph(), offset) + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(int64_t off, AsInt(m.graph(), offset, "storage offset"));
  if (off < 0) return Status::Malformed("negative storage offset" + m.At());
  t->offset = static_cast<uint64_t>(off);
  SAFEMODEL_ASSIGN_OR_RETURN(t->shape, ShapeArg(m, size, "tensor size"));
  SAFEMODEL_ASSIGN_OR_RETURN(*strides, StridesArg(m, stride, "tensor stride"));
  return Status::Ok();
}

// Keeps `strides` (as many as the shape has dimensions) with the tensor
// unless they are the C-contiguous ones its shape implies
// (CContiguousStrides), which the emission fills in again (pickle_emit.cc,
// AddTorchTensor). A shape whose product passes int64 keeps them as given.
void StoreStrides(Graph& g, std::vector<int64_t> strides, TensorInfo* t) {
  if (IsCContiguous(std::span<const uint64_t>(t->shape.data(), t->shape.size()), strides)) return;
  g.tensor_strides.emplace_back(strides);
  t->strides = static_cast<uint32_t>(g.tensor_strides.size());
}

// A record for a tensor built by a handler.
Result<Ref> NewTensor(Builder& m, TensorInfo t) {
  return m.NewRecordWith(RecordKind::kTensor, m.graph().tensors, std::move(t));
}

bool IsStorage(const Graph& g, Ref r) {
  return r.kind == Kind::kRecord && g.at(r).record == RecordKind::kStorage;
}
bool IsTensor(const Graph& g, Ref r) {
  return r.kind == Kind::kRecord && g.at(r).record == RecordKind::kTensor;
}
bool IsDenseTensor(const Graph& g, Ref r) {
  return IsTensor(g, r) && g.tensors[g.at(r).aux].layout == TensorInfo::Layout::kStrided;
}

// backward_hooks: torch keeps them, but a saved tensor has none.
Status CheckEmptyHooks(const Graph& g, Ref r) {
  if (IsEmptyState(g, r)) return Status::Ok();
  return Status::Unsupported("tensor backward hooks must be empty (found " + KindName(g, r) + ")");
}

// requires_grad as torch checks it (torch/_utils.py): `tensor.requires_grad
// = x` and Parameter's `_make_subclass` take only a bool ("requires_grad
// must be a bool"), and True only for floating-point and complex dtypes.
Result<bool> RequiresGrad(Builder& m, Ref r, DType dtype, const char* function) {
  if (r.kind != Kind::kBool) {
    return Status::Malformed(std::string(function) + ": requires_grad must be a bool, not " +
                             KindName(m.graph(), r) + " (torch refuses it)" + m.At());
  }
  const bool floating = dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF32 ||
                        dtype == DType::kF64 || dtype == DType::kC64 || dtype == DType::kC128 ||
                        dtype == DType::kF8E4M3FN || dtype == DType::kF8E5M2 ||
                        dtype == DType::kF8E4M3FNUZ || dtype == DType::kF8E5M2FNUZ ||
                        dtype == DType::kF8E8M0FNU;
  if (r.i != 0 && !floating) {
    return Status::Malformed(std::string(function) + ": requires_grad=True on a " +
                             std::string(DTypeName(dtype)) +
                             " tensor (torch: only floating point and complex tensors can "
                             "require gradients)" +
                             m.At());
  }
  return r.i != 0;
}

// The element type of a tensor over storage `s`: v3 names it (a torch dtype
// that must agree with a typed storage), v1/v2 take the storage's.
Status TensorDType(Builder& m, GlobalKind kind, const char* name, const StorageInfo& s,
                   const std::vector<Ref>& args, TensorInfo* t) {
  const Graph& g = m.graph();
  if (kind != GlobalKind::kRebuildTensorV3) {
    if (s.quantized) {
      return Status::Malformed("a plain tensor over quantized storage " + std::string(s.type_name()) +
                               m.At());
    }
    if (s.dtype == DType::kInvalid) {
      return Status::Malformed(std::string(name) + " over an untyped storage" + m.At());
    }
    t->dtype = s.dtype;
    return Status::Ok();
  }
  Ref dt = args[6];
  if (dt.kind != Kind::kGlobal || g.global(dt).kind != GlobalKind::kTorchDType) {
    return Status::Malformed(std::string(name) + ": dtype must be a torch dtype" + m.At());
  }
  if (g.global(dt).dtype == DType::kInvalid || g.global(dt).quantized) {
    return Status::Unsupported("tensor dtype " + g.name(dt) + " is not supported" + m.At());
  }
  t->dtype = g.global(dt).dtype;
  if (s.dtype != DType::kInvalid && s.dtype != t->dtype) {
    return Status::Malformed("tensor dtype " + g.name(dt) + " differs from its storage type " +
                             std::string(s.type_name()) + m.At());
  }
  return Status::Ok();
}

// A quantizer's parameters: (scheme, scale, zero_point) per tensor, or
// (scheme, scales, zero_points, axis) per channel with dense tensors.
Status ReadQuantizer(Builder& m, Ref q, TensorInfo* t) {
  const Graph& g = m.graph();
  if (q.kind != Kind::kTuple || g.at(q).items().empty() ||
      g.at(q).items()[0].kind != Kind::kGlobal ||
      g.global(g.at(q).items()[0]).kind != GlobalKind::kQScheme) {
    return Status::Malformed("quantizer parameters must start with a qscheme" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<Ref> qp, m.CopyItems(q));
  const std::string scheme = g.name(qp[0]).substr(std::string_view("torch.").size());
  t->extra->qscheme = scheme;
  if (scheme == "per_tensor_affine" || scheme == "per_tensor_symmetric") {
    if (qp.size() != 3 || (qp[1].kind != Kind::kFloat && qp[1].kind != Kind::kInt)) {
      return Status::Malformed("per-tensor quantizer expects (scheme, scale, zero_point)" + m.At());
    }
    t->extra->scale = qp[1].kind == Kind::kFloat ? qp[1].f : static_cast<double>(qp[1].i);
    SAFEMODEL_ASSIGN_OR_RETURN(t->extra->zero_point, AsInt(g, qp[2], "zero point"));
    return Status::Ok();
  }
  if (scheme == "per_channel_affine" || scheme == "per_channel_symmetric" ||
      scheme == "per_channel_affine_float_qparams") {
    if (qp.size() != 4 || !IsDenseTensor(g, qp[1]) || !IsDenseTensor(g, qp[2])) {
      return Status::Malformed("per-channel quantizer expects (scheme, scales, zero_points, axis)" +
                               m.At());
    }
    t->extra->scales = qp[1];
    t->extra->zero_points = qp[2];
    SAFEMODEL_ASSIGN_OR_RETURN(t->extra->axis, AsInt(g, qp[3], "axis"));
    return Status::Ok();
  }
  return Status::Unsupported("quantization scheme " + scheme + m.At());
}

}  // namespace

// _rebuild_tensor(storage, offset, size, stride)
// _rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata])
// _rebuild_tensor_v3(..., requires_grad, backward_hooks, dtype[, metadata])
Result<Ref> ReduceRebuildTensor(Builder& m, const Call& call) {
  const GlobalKind kind = call.entry.kind;
  const std::vector<Ref>& args = call.args;
  const Graph& g = m.graph();
  const char* name = kind == GlobalKind::kRebuildTensor     ? "torch._utils._rebuild_tensor"
                     : kind == GlobalKind::kRebuildTensorV2 ? "torch._utils._rebuild_tensor_v2"
                                                            : "torch._utils._rebuild_tensor_v3";
  size_t lo = kind == GlobalKind::kRebuildTensor ? 4 : kind == GlobalKind::kRebuildTensorV2 ? 6 : 7;
  size_t hi = kind == GlobalKind::kRebuildTensor ? 4 : lo + 1;
  if (args.size() < lo || args.size() > hi) {
    return Status::Malformed(std::string(name) + " called with " + Num(args.size()) + " arguments" +
                             m.At());
  }
  Ref storage = args[0];
  if (!IsStorage(g, storage)) {
    return Status::Malformed(std::string(name) + ": first argument must be a storage, not " +
                             KindName(g, storage) + m.At());
  }
  TensorInfo t;
  t.storage_index = g.at(storage).aux;
  const StorageInfo& s = g.storages[t.storage_index];
  std::vector<int64_t> strides;
  SAFEMODEL_RETURN_IF_ERROR(ReadView(m, name, args[1], args[2], args[3], &t, &strides));
  if (strides.size() != t.shape.size()) {
    return Status::Malformed("tensor has " + Num(t.shape.size()) + " sizes but " +
                             Num(strides.size()) + " strides" + m.At());
  }
  const size_t meta_index = kind == GlobalKind::kRebuildTensorV2 ? 6 : 7;
  if (args.size() > meta_index && !IsEmptyState(g, args[meta_index])) {
    return Status::Unsupported("tensor with metadata (conjugate/negative bits) is not converted" +
                               m.At());
  }
  SAFEMODEL_RETURN_IF_ERROR(TensorDType(m, kind, name, s, args, &t));
  if (kind != GlobalKind::kRebuildTensor) {
    SAFEMODEL_ASSIGN_OR_RETURN(t.requires_grad, RequiresGrad(m, args[4], t.dtype, name));
    SAFEMODEL_RETURN_IF_ERROR(CheckEmptyHooks(g, args[5]));
  }
  StoreStrides(m.graph(), std::move(strides), &t);
  return NewTensor(m, std::move(t));
}

// _rebuild_parameter(data, requires_grad, backward_hooks)
// _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state)
Result<Ref> ReduceRebuildParameter(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.entry.kind == GlobalKind::kRebuildParameter ? call.Arity(m, 3, 3)
                                                                             : call.Arity(m, 4, 4));
  Graph& g = m.graph();
  const std::vector<Ref>& args = call.args;
  Ref t = args[0];
  if (!IsTensor(g, t)) return Status::Malformed(call.name + ": data must be a tensor" + m.At());
  SAFEMODEL_RETURN_IF_ERROR(CheckEmptyHooks(g, args[2]));
  if (args.size() == 4 && !IsEmptyState(g, args[3])) {
    return Status::Unsupported(call.name + ": parameters with extra state" + m.At());
  }
  TensorInfo& info = g.tensors[g.at(t).aux];
  info.parameter = true;
  SAFEMODEL_ASSIGN_OR_RETURN(info.requires_grad,
                             RequiresGrad(m, args[1], info.dtype, call.name.c_str()));
  return t;
}

// _rebuild_qtensor(storage, offset, size, stride, quantizer_params,
//                  requires_grad, backward_hooks)
Result<Ref> ReduceRebuildQTensor(Builder& m, const Call& call) {
  const std::vector<Ref>& args = call.args;
  const Graph& g = m.graph();
  if (args.size() != 7) {
    return Status::Malformed("torch._utils._rebuild_qtensor called with " + Num(args.size()) +
                             " arguments" + m.At());
  }
  Ref storage = args[0];
  if (!IsStorage(g, storage)) {
    return Status::Malformed("quantized tensor without a storage" + m.At());
  }
  const StorageInfo& s = g.storages[g.at(storage).aux];
  if (!s.quantized || s.dtype == DType::kInvalid) {
    return Status::Unsupported("quantized tensor over storage " + std::string(s.type_name()) +
                               " (quint8, qint8 and qint32 are converted)" + m.At());
  }
  TensorInfo t;
  t.layout = TensorInfo::Layout::kQuantized;
  t.extra = std::make_unique<TensorExtra>();
  t.storage_index = g.at(storage).aux;
  t.dtype = s.dtype;
  t.extra->qdtype = s.dtype == DType::kU8 ? "quint8" : s.dtype == DType::kI8 ? "qint8" : "qint32";
  std::vector<int64_t> strides;
  SAFEMODEL_RETURN_IF_ERROR(
      ReadView(m, "torch._utils._rebuild_qtensor", args[1], args[2], args[3], &t, &strides));
  if (strides.size() != t.shape.size()) {
    return Status::Malformed("sizes and strides differ in rank" + m.At());
  }
  SAFEMODEL_RETURN_IF_ERROR(ReadQuantizer(m, args[4], &t));
  // Quantized dtypes are integers to torch: requires_grad must be False.
  SAFEMODEL_ASSIGN_OR_RETURN(t.requires_grad,
                             RequiresGrad(m, args[5], DType::kI8, "torch._utils._rebuild_qtensor"));
  SAFEMODEL_RETURN_IF_ERROR(CheckEmptyHooks(g, args[6]));
  StoreStrides(m.graph(), std::move(strides), &t);
  return NewTensor(m, std::move(t));
}

// _rebuild_sparse_tensor(layout, data): data holds the component tensors in
// torch's order, then the size (COO: and an is_coalesced flag, torch >= 2.1).
Result<Ref> ReduceRebuildSparse(Builder& m, const Call& call) {
  const std::vector<Ref>& args = call.args;
  const Graph& g = m.graph();
  if (args.size() != 2 || args[0].kind != Kind::kRecord ||
      g.at(args[0]).record != RecordKind::kLayout || args[1].kind != Kind::kTuple) {
    return Status::Malformed("a sparse tensor rebuild expects (layout, data)" + m.At());
  }
  const std::string layout = g.name(args[0]);
  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<Ref> data, m.CopyItems(args[1]));
  std::vector<std::string> roles;
  if (layout == "torch.sparse_coo") {
    roles = {"indices", "values"};
  } else if (layout == "torch.sparse_csr" || layout == "torch.sparse_bsr") {
    roles = {"crow_indices", "col_indices", "values"};
  } else if (layout == "torch.sparse_csc" || layout == "torch.sparse_bsc") {
    roles = {"ccol_indices", "row_indices", "values"};
  } else {
    return Status::Unsupported("sparse layout '" + Printable(layout) + "'" + m.At());
  }
  if (data.size() != roles.size() + 1 &&
      !(layout == "torch.sparse_coo" && data.size() == roles.size() + 2)) {
    return Status::Malformed("sparse tensor data has " + Num(data.size()) + " parts" + m.At());
  }
  TensorInfo t;
  t.layout = TensorInfo::Layout::kSparse;
  t.extra = std::make_unique<TensorExtra>();
  t.extra->sparse_layout = layout.substr(std::string_view("torch.").size());
  for (size_t i = 0; i < roles.size(); ++i) {
    if (!IsDenseTensor(g, data[i])) {
      return Status::Malformed("sparse tensor part '" + roles[i] + "' must be a dense tensor" +
                               m.At());
    }
    t.extra->components.emplace_back(roles[i], data[i]);
  }
  SAFEMODEL_ASSIGN_OR_RETURN(t.shape, ShapeArg(m, data[roles.size()], "sparse tensor size"));
  return NewTensor(m, std::move(t));
}

// _rebuild_from_type_v2(func, type, args, state): func(*args) made an
// instance of `type` (a plain Tensor or Parameter here) with `state`.
Result<Ref> ReduceRebuildFromTypeV2(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 4, 4));
  Graph& g = m.graph();
  const std::string& name = call.name;
  Ref func = call.args[0], type = call.args[1], fargs = call.args[2], state = call.args[3];
  if (func.kind != Kind::kGlobal || type.kind != Kind::kGlobal || fargs.kind != Kind::kTuple) {
    return Status::Malformed(name + ": expects (function, type, args, state)" + m.At());
  }
  const GlobalKind tk = g.global(type).kind;
  if (tk != GlobalKind::kTensorType && tk != GlobalKind::kParameterType) {
    return Status::Unsupported(name + " to tensor subclass " + g.name(type) + m.At());
  }
  if (!IsEmptyState(g, state)) {
    return Status::Unsupported(name + ": tensor with extra state" + m.At());
  }
  // The inner function is one of the rebuild functions, never this one:
  // one level of recursion at most.
  const GlobalKind fk = g.global(func).kind;
  if (fk != GlobalKind::kRebuildTensor && fk != GlobalKind::kRebuildTensorV2 &&
      fk != GlobalKind::kRebuildTensorV3 && fk != GlobalKind::kRebuildParameter &&
      fk != GlobalKind::kRebuildQTensor && fk != GlobalKind::kRebuildSparseTensor) {
    return Status::Unsupported(name + " with function " + g.name(func) + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> inner, m.CopyItems(fargs));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref t, Reduce(m, func, inner));
  if (tk == GlobalKind::kParameterType && t.kind == Kind::kRecord) {
    g.tensors[g.at(t).aux].parameter = true;
  }
  return t;
}

Result<Ref> ReduceRebuildUnsupported(Builder& m, const Call& call) {
  return Status::Unsupported(call.name +
                             ": this kind of tensor (no CPU data, or a layout safemodel "
                             "does not represent) is not converted" +
                             m.At());
}

Result<Ref> ReduceTorchSize(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 1, 1));
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<uint64_t> dims, ShapeArg(m, call.args[0], "torch.Size"));
  std::vector<Ref> items;
  for (uint64_t d : dims) items.push_back(Ref::Int(static_cast<int64_t>(d)));
  return m.NewContainer(Kind::kTuple, std::move(items));
}

Result<Ref> ReduceTorchDevice(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 1, 2));
  Graph& g = m.graph();
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view type, AsStr(g, call.args[0], "torch.device type"));
  std::string device(type);
  if (call.args.size() == 2 && call.args[1].kind != Kind::kNone) {
    SAFEMODEL_ASSIGN_OR_RETURN(int64_t index, AsInt(g, call.args[1], "torch.device index"));
    device += ":" + std::to_string(index);
  }
  SAFEMODEL_ASSIGN_OR_RETURN(Ref d, m.NewRecord(RecordKind::kDevice));
  g.SetName(d.id, device);
  return d;
}

Result<Ref> ReduceGetLayout(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 1, 1));
  Graph& g = m.graph();
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view layout, AsStr(g, call.args[0], "layout name"));
  SAFEMODEL_ASSIGN_OR_RETURN(Ref l, m.NewRecord(RecordKind::kLayout));
  g.SetName(l.id, std::string(layout));
  return l;
}

}  // namespace safemodel::loader::pickle
