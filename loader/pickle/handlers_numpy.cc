// Handlers for numpy's pickled names: arrays rebuilt by
// numpy.core.multiarray._reconstruct and filled by BUILD, protocol-5 arrays
// (_frombuffer), dtypes and scalars. Numeric data stays a view of the
// stream; object arrays keep their elements as a list.
#include <charconv>
#include <string>
#include <utility>
#include <vector>

#include "loader/pickle/pickle_handlers.h"

namespace safemodel::loader::pickle {

namespace {

// numpy's pickled descr: kind letter + item size ("f4", "O8", "b1", "U5").
Result<Ref> NewDtype(Builder& m, std::string_view descr) {
  NpDtypeInfo info;
  info.descr = std::string(descr);
  if (descr.size() < 2) {
    return Status::Malformed("numpy dtype '" + Printable(descr) + "' is not a descr");
  }
  const char kind = descr[0];
  uint64_t size = 0;
  auto [p, ec] = std::from_chars(descr.data() + 1, descr.data() + descr.size(), size);
  if (ec != std::errc() || p != descr.data() + descr.size() || size > (1u << 30)) {
    return Status::Unsupported("numpy dtype '" + Printable(descr) + "' is not supported");
  }
  info.itemsize = static_cast<uint32_t>(size);
  struct Code {
    char kind;
    uint32_t size;
    DType dtype;
  };
  static constexpr Code kCodes[] = {
      {'b', 1, DType::kBool}, {'i', 1, DType::kI8},   {'u', 1, DType::kU8},  {'i', 2, DType::kI16},
      {'u', 2, DType::kU16},  {'i', 4, DType::kI32},  {'u', 4, DType::kU32}, {'i', 8, DType::kI64},
      {'u', 8, DType::kU64},  {'f', 2, DType::kF16},  {'f', 4, DType::kF32}, {'f', 8, DType::kF64},
      {'c', 8, DType::kC64},  {'c', 16, DType::kC128},
  };
  for (const Code& c : kCodes) {
    if (c.kind == kind && c.size == size) info.dtype = c.dtype;
  }
  info.object = kind == 'O';
  return m.NewRecordWith(RecordKind::kNpDtype, m.graph().dtypes, std::move(info));
}

bool IsDtype(const Graph& g, Ref r) {
  return r.kind == Kind::kRecord && g.at(r).record == RecordKind::kNpDtype;
}

// A record of kind `record` (an array or a scalar) for `info`.
Result<Ref> NewArray(Builder& m, RecordKind record, ArrayInfo info) {
  return m.NewRecordWith(record, m.graph().arrays, std::move(info));
}

}  // namespace

Status CheckNumericDtype(const Builder& m, const NpDtypeInfo& info) {
  if (info.object || info.dtype == DType::kInvalid) {
    return Status::Unsupported("numpy dtype '" + Printable(info.descr) + "' is not supported" +
                               m.At());
  }
  if (info.byteorder == '\0' && info.itemsize > 1) {
    return Status::Malformed("numpy dtype '" + Printable(info.descr) +
                             "' was never given a byte order" + m.At());
  }
  return Status::Ok();
}

// _reconstruct(ndarray, (0,), b'b'): an empty array that BUILD fills.
Result<Ref> ReduceNpReconstruct(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 3, 3));
  const Graph& g = m.graph();
  const Ref cls = call.args[0];
  if (cls.kind != Kind::kGlobal || g.global(cls).kind != GlobalKind::kNpNdarray) {
    return Status::Unsupported(call.name + " of a numpy subclass (" + KindName(g, cls) + ")" +
                               m.At());
  }
  return NewArray(m, RecordKind::kNdArray, ArrayInfo{});
}

Result<Ref> ReduceNpDtype(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 1, 3));
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view descr,
                             AsStr(m.graph(), call.args[0], "numpy dtype"));
  return NewDtype(m, descr);
}

// scalar(dtype, bytes): one element.
Result<Ref> ReduceNpScalar(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 2, 2));
  const Graph& g = m.graph();
  const Ref dt = call.args[0];
  if (!IsDtype(g, dt)) return Status::Malformed("numpy scalar without a dtype" + m.At());
  const NpDtypeInfo& info = g.dtypes[g.at(dt).aux];
  if (info.object) return Status::Unsupported("numpy object scalar" + m.At());
  SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(m, info));
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, BytesArg(m, call.args[1], "numpy scalar data"));
  if (b.size() != info.itemsize) {
    return Status::Malformed("numpy scalar of dtype '" + info.descr + "' has " + Num(b.size()) +
                             " bytes" + m.At());
  }
  ArrayInfo a;
  a.dtype = dt.id;
  a.data = b;
  a.built = true;
  return NewArray(m, RecordKind::kNpScalar, std::move(a));
}

// _frombuffer(buffer, dtype, shape, order): protocol-5 arrays.
Result<Ref> ReduceNpFromBuffer(Builder& m, const Call& call) {
  SAFEMODEL_RETURN_IF_ERROR(call.Arity(m, 4, 4));
  const Graph& g = m.graph();
  SAFEMODEL_ASSIGN_OR_RETURN(ByteView b, BytesArg(m, call.args[0], "numpy buffer"));
  const Ref dt = call.args[1];
  if (!IsDtype(g, dt)) return Status::Malformed("numpy _frombuffer without a dtype" + m.At());
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<uint64_t> shape,
                             ShapeArg(m, call.args[2], "numpy shape"));
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view order, AsStr(g, call.args[3], "numpy order"));
  if (order != "C" && order != "F") {
    return Status::Malformed("numpy order must be 'C' or 'F'" + m.At());
  }
  const NpDtypeInfo& dinfo = g.dtypes[g.at(dt).aux];
  SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(m, dinfo));
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(shape, "numpy shape"));
  uint64_t need;
  if (!CheckedMul(count, dinfo.itemsize, &need) || need != b.size()) {
    return Status::Malformed("numpy buffer of " + Num(b.size()) + " bytes for " + Num(count) +
                             " elements of '" + dinfo.descr + "'" + m.At());
  }
  ArrayInfo info;
  info.dtype = dt.id;
  info.shape = std::move(shape);
  info.fortran = order == "F";
  info.data = b;
  info.built = true;
  return NewArray(m, RecordKind::kNdArray, std::move(info));
}

// (version, byteorder, subarray, names, fields, elsize, alignment, flags[,
// metadata]): only the byte order and the flags matter to a plain dtype.
Status BuildNpDtype(Builder& m, Object& obj, Ref state) {
  Graph& g = m.graph();
  if (state.kind != Kind::kTuple) {
    return Status::Malformed("numpy dtype state must be a tuple" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(const std::vector<Ref> s, m.CopyItems(state));
  if (s.size() != 8 && s.size() != 9) {
    return Status::Unsupported("numpy dtype state of " + Num(s.size()) + " items" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::string_view order, AsStr(g, s[1], "numpy byte order"));
  if (order != "<" && order != ">" && order != "|") {
    return Status::Unsupported("numpy byte order '" + Printable(order) + "'" + m.At());
  }
  if (s[2].kind != Kind::kNone || s[3].kind != Kind::kNone || s[4].kind != Kind::kNone) {
    return Status::Unsupported("structured or sub-array numpy dtypes are not supported" + m.At());
  }
  NpDtypeInfo& info = g.dtypes[obj.aux];
  // numpy writes flags 0 for numeric types and 63 (NPY_OBJECT_DTYPE_FLAGS)
  // for object; setstate applies whatever the file says, and a numeric dtype
  // with NPY_ITEM_HASOBJECT/NPY_LIST_PICKLE makes numpy read the array's data
  // as a list of objects (or its bytes as object pointers).
  SAFEMODEL_ASSIGN_OR_RETURN(int64_t flags, AsInt(g, s[7], "numpy dtype flags"));
  const int64_t want_flags = info.object ? 63 : 0;
  if (flags != want_flags) {
    return Status::Unsupported("numpy dtype '" + Printable(info.descr) + "' with flags " +
                               std::to_string(flags) + " (numpy writes " +
                               std::to_string(want_flags) +
                               "; other flags change how numpy reads "
                               "the array's data)" +
                               m.At());
  }
  info.byteorder = order[0];
  if (info.byteorder == '|' && info.itemsize > 1 && info.dtype != DType::kInvalid) {
    return Status::Malformed("numpy dtype '" + info.descr + "' needs a byte order" + m.At());
  }
  return Status::Ok();
}

// ([version,] shape, dtype, is_fortran, data): `data` is the raw bytes, or
// for object arrays the list of elements.
Status BuildNpArray(Builder& m, Object& obj, Ref state) {
  Graph& g = m.graph();
  ArrayInfo& a = g.arrays[obj.aux];
  if (a.built) return Status::Malformed("numpy array built twice" + m.At());
  if (state.kind != Kind::kTuple) {
    return Status::Malformed("numpy array state must be a tuple" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(std::vector<Ref> s, m.CopyItems(state));
  if (s.size() == 5) {
    SAFEMODEL_ASSIGN_OR_RETURN(int64_t version, AsInt(g, s[0], "numpy state version"));
    if (version != 1) {
      return Status::Unsupported("numpy array state version " + std::to_string(version) + m.At());
    }
    s.erase(s.begin());
  }
  if (s.size() != 4) {
    return Status::Malformed("numpy array state has " + Num(s.size()) + " items" + m.At());
  }
  SAFEMODEL_ASSIGN_OR_RETURN(a.shape, ShapeArg(m, s[0], "numpy shape"));
  const Ref dt = s[1];
  if (!IsDtype(g, dt)) return Status::Malformed("numpy array state without a dtype" + m.At());
  a.dtype = dt.id;
  if (s[2].kind != Kind::kBool && s[2].kind != Kind::kInt) {
    return Status::Malformed("numpy fortran flag must be a bool" + m.At());
  }
  a.fortran = s[2].i != 0;
  const NpDtypeInfo& info = g.dtypes[g.at(dt).aux];
  SAFEMODEL_ASSIGN_OR_RETURN(uint64_t count, ElementCount(a.shape, "numpy shape"));
  if (info.object) {
    if (s[3].kind != Kind::kList || g.at(s[3]).items().size() != count) {
      return Status::Malformed("numpy object array state must list its " + Num(count) +
                               " elements" + m.At());
    }
    a.items = s[3];
  } else {
    SAFEMODEL_RETURN_IF_ERROR(CheckNumericDtype(m, info));
    SAFEMODEL_ASSIGN_OR_RETURN(a.data, BytesArg(m, s[3], "numpy array data"));
    uint64_t need;
    if (!CheckedMul(count, info.itemsize, &need) || need != a.data.size()) {
      return Status::Malformed("numpy array data is " + Num(a.data.size()) +
                               " bytes; its shape and dtype need " + Num(need) + m.At());
    }
  }
  a.built = true;
  return Status::Ok();
}

}  // namespace safemodel::loader::pickle
