// The C interface's per-thread last error (safemodel/c_api.h), shared by
// libsafemodel.so's reader functions and libsafemodel.a's sm_convert.
#ifndef SAFEMODEL_PROTO_C_API_ERROR_H_
#define SAFEMODEL_PROTO_C_API_ERROR_H_

#include "safemodel/status.h"

namespace safemodel {

// Records `s` as the calling thread's last error; returns its code.
int CApiFail(const Status& s);
// Clears the last error; returns SM_OK.
int CApiOk();

}  // namespace safemodel

#endif  // SAFEMODEL_PROTO_C_API_ERROR_H_
