/* File: safemodel/c_api.h
 *
 * A small C interface to the .safemodel reader in libsafemodel.so, for
 * languages that call C (Python ctypes, Go cgo, Rust FFI). Pure C99.
 *
 * Every function that can fail returns a status code (0 = ok; the values of
 * safemodel::StatusCode, README "Exit codes" maps them) and leaves a
 * message for sm_last_error() in the calling thread. Tensors are addressed
 * by index, 0 .. sm_model_tensor_count() - 1, in the file's order (bytewise
 * by name); an index out of range gives NULL or 0 and sets the last error.
 * Strings and arrays returned point into the model and live until
 * sm_model_close(); tensor data is the read-only file mapping (zero copy).
 *
 * Conversion (sm_convert) is not here: it needs the sandbox and lives in
 * the converter library, libsafemodel.a (safemodel/c_convert.h).
 *
 * Example:
 *   sm_model* m;
 *   if (sm_model_open("m.safemodel", &m) != 0) { puts(sm_last_error()); return 1; }
 *   size_t i;
 *   if (sm_model_find(m, "fc.weight", &i) == 0 && sm_tensor_dtype(m, i) == SM_DTYPE_F32) {
 *     const float* w = (const float*)sm_tensor_data(m, i);
 *   }
 *   sm_model_close(m);
 */
#ifndef SAFEMODEL_C_API_H_
#define SAFEMODEL_C_API_H_

#include <stddef.h>
#include <stdint.h>

#include "safemodel/dlpack.h"

#if defined(__GNUC__) || defined(__clang__)
#define SM_API __attribute__((visibility("default")))
#else
#define SM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes (safemodel::StatusCode). */
#define SM_OK 0
#define SM_REFUSED 1
#define SM_INVALID_ARGUMENT 2
#define SM_MALFORMED 3
#define SM_UNSUPPORTED 4
#define SM_LIMIT_EXCEEDED 5
#define SM_SANDBOX_VIOLATION 6
#define SM_WORKER_CRASHED 7
#define SM_TIMEOUT 8
#define SM_IO_ERROR 9
#define SM_INTERNAL 10
#define SM_SANDBOX_SETUP_FAILED 11

/* dtypes (safemodel::DType, the values stored in the file). */
#define SM_DTYPE_BOOL 1
#define SM_DTYPE_U8 2
#define SM_DTYPE_I8 3
#define SM_DTYPE_U16 4
#define SM_DTYPE_I16 5
#define SM_DTYPE_U32 6
#define SM_DTYPE_I32 7
#define SM_DTYPE_U64 8
#define SM_DTYPE_I64 9
#define SM_DTYPE_F16 10
#define SM_DTYPE_BF16 11
#define SM_DTYPE_F32 12
#define SM_DTYPE_F64 13
#define SM_DTYPE_C64 14
#define SM_DTYPE_C128 15
#define SM_DTYPE_F8_E4M3FN 16
#define SM_DTYPE_F8_E5M2 17
#define SM_DTYPE_F8_E4M3FNUZ 18
#define SM_DTYPE_F8_E5M2FNUZ 19
#define SM_DTYPE_F8_E8M0FNU 20

typedef struct sm_model sm_model;

/* The message of the calling thread's last failure ("" if none); valid until
 * its next call into this API. */
SM_API const char* sm_last_error(void);
/* "ok", "refused", "malformed", ... (safemodel::StatusCodeName). */
SM_API const char* sm_status_name(int status);
/* "f32", "bf16", ... ("invalid" for an unknown value). */
SM_API const char* sm_dtype_name(uint32_t dtype);
/* Bytes per element (0 for an unknown value). */
SM_API uint32_t sm_dtype_size(uint32_t dtype);

/* Maps and validates a .safemodel (safemodel::Model::Open); *out is NULL on
 * failure. O(header): tensor bytes are not read. */
SM_API int sm_model_open(const char* path, sm_model** out);
/* Releases the model (NULL is fine). DLPack tensors handed out stay valid. */
SM_API void sm_model_close(sm_model* model);
/* Checks every digest and all padding (reads the whole file). */
SM_API int sm_model_verify(const sm_model* model);

SM_API size_t sm_model_tensor_count(const sm_model* model);
/* The index of the tensor named `name`; SM_INVALID_ARGUMENT if none. */
SM_API int sm_model_find(const sm_model* model, const char* name, size_t* index);

/* Source order (Model::tensors_in_source_order): sets *index to the table
 * index of the tensor the source listed at `position` (0-based). For a file
 * that records no source order (format 1.0) that is name order, *index ==
 * position. SM_INVALID_ARGUMENT when position >= the tensor count. */
SM_API int sm_model_source_order(const sm_model* model, size_t position, size_t* index);
/* 1 when the file records the source's order (format 1.1), else 0. */
SM_API int sm_model_has_source_order(const sm_model* model);

SM_API const char* sm_tensor_name(const sm_model* model, size_t index);
SM_API uint32_t sm_tensor_dtype(const sm_model* model, size_t index);
SM_API size_t sm_tensor_rank(const sm_model* model, size_t index);
/* sm_tensor_rank() dimensions (NULL for a scalar). */
SM_API const uint64_t* sm_tensor_shape(const sm_model* model, size_t index);
SM_API uint64_t sm_tensor_element_count(const sm_model* model, size_t index);
/* The stored bytes: little-endian, C order, aligned to 64 bytes. */
SM_API const void* sm_tensor_data(const sm_model* model, size_t index);
SM_API uint64_t sm_tensor_nbytes(const sm_model* model, size_t index);
/* The tensor whose bytes this one shares (tied weights), or "". */
SM_API const char* sm_tensor_alias_of(const sm_model* model, size_t index);
/* Checks this tensor's digest (reads only it). */
SM_API int sm_tensor_verify(const sm_model* model, size_t index);
/* A DLPack tensor of it (layout of DLManagedTensor; see safemodel/dlpack.h
 * and Model::ToDLPack): call its deleter when done. */
SM_API int sm_tensor_to_dlpack(const sm_model* model, size_t index, SmDLManagedTensor** out);
SM_API int sm_tensor_to_dlpack_versioned(const sm_model* model, size_t index,
                                         SmDLManagedTensorVersioned** out);

#ifdef __cplusplus
}
#endif

#endif /* SAFEMODEL_C_API_H_ */
