// sm_convert (safemodel/c_convert.h) over safemodel::ConvertFile.
#include "safemodel/c_convert.h"

#include "proto/c_api_error.h"
#include "safemodel/convert.h"

extern "C" {

int sm_convert(const char* input, const char* output, int force) {
  if (input == nullptr || output == nullptr) {
    return safemodel::CApiFail(safemodel::Status::InvalidArgument("sm_convert: a NULL path"));
  }
  safemodel::ConvertOptions options;
  options.force = force != 0;
  safemodel::ConvertReport report = safemodel::ConvertFile(input, output, options);
  return report.status.ok() ? safemodel::CApiOk() : safemodel::CApiFail(report.status);
}

int sm_exit_code(int status) {
  return safemodel::ExitCodeFor(static_cast<safemodel::StatusCode>(status));
}

}  // extern "C"
