/* File: safemodel/c_convert.h
 *
 * Conversion from C: the one function of the C interface that needs the
 * sandbox, so it lives in the converter library (libsafemodel.a,
 * safemodel::safemodel), not in the reader's libsafemodel.so. The rest of
 * the C interface (safemodel/c_api.h: sm_model_open, sm_tensor_*,
 * sm_last_error) is in both libraries. Pure C99.
 */
#ifndef SAFEMODEL_C_CONVERT_H_
#define SAFEMODEL_C_CONVERT_H_

#include "safemodel/c_api.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Converts `input` into the .safemodel `output` in the sandboxed worker, with
 * the defaults of safemodel::ConvertFile (`force` != 0 replaces an existing
 * regular file). Returns the status code (SM_OK, SM_REFUSED, SM_MALFORMED,
 * ...); sm_last_error() says why, naming the first finding. The exit code
 * safe-convert would give is sm_exit_code(status). */
SM_API int sm_convert(const char* input, const char* output, int force);
/* safe-convert's exit code for a status code (README "Exit codes"). */
SM_API int sm_exit_code(int status);

#ifdef __cplusplus
}
#endif

#endif /* SAFEMODEL_C_CONVERT_H_ */
