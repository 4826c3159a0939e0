/* File: safemodel/dlpack.h
 *
 * The DLPack exchange structures (DLPack 1.1 ABI: dmlc/dlpack,
 * include/dlpack/dlpack.h), declared here under our own names so that
 * libsafemodel needs no dlpack package and a program may include the real
 * dlpack.h beside this one. Each struct has exactly the layout of its DLPack
 * namesake (static checks in proto/dlpack.cc), so a pointer converts with a
 * cast: (DLManagedTensor*)sm_dl_managed, (DLManagedTensorVersioned*)...
 *
 * Pure C; also valid C++.
 */
#ifndef SAFEMODEL_DLPACK_H_
#define SAFEMODEL_DLPACK_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* DLDeviceType: tensors of a .safemodel live in host memory. */
#define SM_DL_CPU 1

/* DLDataTypeCode values (the `code` of SmDLDataType). */
#define SM_DL_INT 0
#define SM_DL_UINT 1
#define SM_DL_FLOAT 2
#define SM_DL_BFLOAT 4
#define SM_DL_COMPLEX 5
#define SM_DL_BOOL 6
#define SM_DL_FLOAT8_E4M3FN 10
#define SM_DL_FLOAT8_E4M3FNUZ 11
#define SM_DL_FLOAT8_E5M2 12
#define SM_DL_FLOAT8_E5M2FNUZ 13
#define SM_DL_FLOAT8_E8M0FNU 14

/* DLPACK_FLAG_BITMASK_READ_ONLY of the versioned tensor's flags. */
#define SM_DL_FLAG_READ_ONLY 1ull

/* The DLPack version these structures follow (DLPackVersion). */
#define SM_DL_MAJOR_VERSION 1
#define SM_DL_MINOR_VERSION 1

typedef struct {
  uint32_t major;
  uint32_t minor;
} SmDLPackVersion; /* DLPackVersion */

typedef struct {
  int32_t device_type; /* DLDeviceType, an int32_t enum */
  int32_t device_id;
} SmDLDevice; /* DLDevice */

typedef struct {
  uint8_t code;   /* SM_DL_* type code */
  uint8_t bits;   /* bits per lane */
  uint16_t lanes; /* 1: scalar elements */
} SmDLDataType; /* DLDataType */

typedef struct {
  void* data;
  SmDLDevice device;
  int32_t ndim;
  SmDLDataType dtype;
  int64_t* shape;
  int64_t* strides; /* NULL: compact C order */
  uint64_t byte_offset;
} SmDLTensor; /* DLTensor */

typedef struct SmDLManagedTensor {
  SmDLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(struct SmDLManagedTensor* self);
} SmDLManagedTensor; /* DLManagedTensor (legacy, unversioned) */

typedef struct SmDLManagedTensorVersioned {
  SmDLPackVersion version;
  void* manager_ctx;
  void (*deleter)(struct SmDLManagedTensorVersioned* self);
  uint64_t flags; /* SM_DL_FLAG_READ_ONLY is always set */
  SmDLTensor dl_tensor;
} SmDLManagedTensorVersioned; /* DLManagedTensorVersioned */

#ifdef __cplusplus
}
#endif

#endif /* SAFEMODEL_DLPACK_H_ */
