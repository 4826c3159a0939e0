#include "loader/keras_h5/h5_types.h"

#include <cstdint>
#include <cstring>

#include "proto/base/byte_reader.h"

namespace safemodel::loader::h5 {

namespace {

// IEEE 754 binary layouts (sign position, exponent position and size,
// mantissa position and size, exponent bias) by element size.
struct FloatLayout {
  size_t size, spos, epos, esize, mpos, msize, ebias;
  DType dtype;
};
constexpr FloatLayout kFloatLayouts[] = {
    {2, 15, 10, 5, 0, 10, 15, DType::kF16},
    {4, 31, 23, 8, 0, 23, 127, DType::kF32},
    {8, 63, 52, 11, 0, 52, 1023, DType::kF64},
};
// A 2-byte float with bfloat16's layout. h5py has no bfloat16 and returns
// the smallest numpy float that holds it, float32, converted by libhdf5; the
// tensor is that float32 (DatasetInfo::widen_bf16).
constexpr FloatLayout kBfloat16Layout = {2, 15, 7, 8, 0, 7, 127, DType::kF32};

// Byte order of a multi-byte atomic type: swap unit (0 = little-endian).
Result<uint32_t> SwapUnit(hid_t type, size_t size, const std::string& where) {
  if (size == 1) return 0u;
  H5T_order_t order = H5Tget_order(type);
  if (order == H5T_ORDER_LE) return 0u;
  if (order == H5T_ORDER_BE) return static_cast<uint32_t>(size);
  return Status::Unsupported(where + ": byte order " + Num(static_cast<uint64_t>(order)) +
                             " is neither little- nor big-endian");
}

}  // namespace

std::string TakeHdf5Error() {
  std::string message;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* out) -> herr_t {
        if (n == 0 && e != nullptr && e->desc != nullptr) {
          *static_cast<std::string*>(out) = e->desc;
        }
        return 0;
      },
      &message);
  H5Eclear2(H5E_DEFAULT);
  return message.empty() ? std::string("libhdf5 reported an error")
                         : "libhdf5: " + Printable(message, 200);
}

Status Hdf5Malformed(const std::string& what) {
  return Status::Malformed(what + " (" + TakeHdf5Error() + ")");
}

const char* TypeClassName(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER:
      return "integer";
    case H5T_FLOAT:
      return "floating-point";
    case H5T_TIME:
      return "time";
    case H5T_STRING:
      return "string";
    case H5T_BITFIELD:
      return "bitfield";
    case H5T_OPAQUE:
      return "opaque";
    case H5T_COMPOUND:
      return "compound";
    case H5T_REFERENCE:
      return "reference";
    case H5T_ENUM:
      return "enum";
    case H5T_VLEN:
      return "variable-length";
    case H5T_ARRAY:
      return "array";
    default:
      return "unknown";
  }
}

Status ClassifyType(hid_t type, bool bfloat16_attr, const std::string& where, DatasetInfo* info) {
  H5T_class_t cls = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  auto unsupported = [&](const std::string& why) {
    return Status::Unsupported(where + ": " + why + "; weights must be numeric");
  };
  switch (cls) {
    case H5T_INTEGER: {
      if (size != 1 && size != 2 && size != 4 && size != 8) {
        return unsupported(Num(size) + "-byte integers are not supported");
      }
      if (H5Tget_precision(type) != size * 8 || H5Tget_offset(type) != 0) {
        return unsupported("integers with padding bits are not supported");
      }
      bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      static constexpr DType kSigned[] = {DType::kI8,      DType::kI16,     DType::kInvalid,
                                          DType::kI32,     DType::kInvalid, DType::kInvalid,
                                          DType::kInvalid, DType::kI64};
      static constexpr DType kUnsigned[] = {DType::kU8,      DType::kU16,     DType::kInvalid,
                                            DType::kU32,     DType::kInvalid, DType::kInvalid,
                                            DType::kInvalid, DType::kU64};
      info->dtype = is_signed ? kSigned[size - 1] : kUnsigned[size - 1];
      SAFEMODEL_ASSIGN_OR_RETURN(info->swap_unit, SwapUnit(type, size, where));
      return Status::Ok();
    }
    case H5T_FLOAT: {
      size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) {
        return Hdf5Malformed(where + ": unreadable floating-point type");
      }
      size_t ebias = H5Tget_ebias(type);
      H5T_pad_t lsb = H5T_PAD_ERROR, msb = H5T_PAD_ERROR;
      H5Tget_pad(type, &lsb, &msb);
      bool plain = H5Tget_precision(type) == size * 8 && H5Tget_offset(type) == 0 &&
                   H5Tget_norm(type) == H5T_NORM_IMPLIED && H5Tget_inpad(type) == H5T_PAD_ZERO &&
                   lsb == H5T_PAD_ZERO && msb == H5T_PAD_ZERO;
      auto matches = [&](const FloatLayout& f) {
        return plain && f.size == size && f.spos == spos && f.epos == epos && f.esize == esize &&
               f.mpos == mpos && f.msize == msize && f.ebias == ebias;
      };
      for (const FloatLayout& f : kFloatLayouts) {
        if (matches(f)) {
          info->dtype = f.dtype;
          SAFEMODEL_ASSIGN_OR_RETURN(info->swap_unit, SwapUnit(type, size, where));
          return Status::Ok();
        }
      }
      if (matches(kBfloat16Layout)) {
        if (bfloat16_attr) {
          return Status::Unsupported(
              where +
              ": a 2-byte float with bfloat16's layout marked dtype=\"bfloat16\": h5py "
              "returns it as float32 and Keras 3 as bfloat16 (Keras 3 writes bfloat16 as "
              "2-byte opaque elements)");
        }
        SAFEMODEL_RETURN_IF_ERROR(SwapUnit(type, size, where).status());
        info->dtype = kBfloat16Layout.dtype;
        info->widen_bf16 = true;  // libhdf5 converts, to little-endian float32
        return Status::Ok();
      }
      return unsupported("a " + Num(size) + "-byte floating-point type that is not IEEE 754 " +
                         "binary16/32/64 or bfloat16");
    }
    case H5T_ENUM: {
      // h5py's bool: an enum over a 1-byte integer with FALSE = 0, TRUE = 1.
      bool is_bool = size == 1 && H5Tget_nmembers(type) == 2;
      for (unsigned i = 0; is_bool && i < 2; ++i) {
        char* name = H5Tget_member_name(type, i);
        int8_t value = -1;
        is_bool = name != nullptr && H5Tget_member_value(type, i, &value) >= 0 &&
                  std::strcmp(name, i == 0 ? "FALSE" : "TRUE") == 0 &&
                  value == static_cast<int8_t>(i);
        H5free_memory(name);
      }
      if (!is_bool) return unsupported("an enum type other than h5py's bool");
      info->dtype = DType::kBool;
      return Status::Ok();
    }
    case H5T_OPAQUE:
      if (size == 2 && bfloat16_attr) {
        // Keras 3 writes bfloat16 as 2-byte opaque elements (little-endian,
        // as numpy holds them) marked by the dataset attribute dtype.
        info->dtype = DType::kBF16;
        return Status::Ok();
      }
      return unsupported("opaque elements without Keras's dtype=\"bfloat16\" marker");
    default:
      return unsupported("the datatype is " + std::string(TypeClassName(cls)));
  }
}

}  // namespace safemodel::loader::h5
