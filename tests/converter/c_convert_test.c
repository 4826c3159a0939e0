/* sm_convert (safemodel/c_convert.h) from a program compiled as C, linked
 * with the converter library: converts argv[1] into argv[2]/out.safemodel
 * in the sandbox, reads it back through the C reader interface, and checks
 * that a truncated .npy (argv[3]) is malformed (exit code 3) and leaves no
 * output. Prints "c_convert_test: ok" and exits 0, or names the failure. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "safemodel/c_convert.h"

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "c_convert_test: %s failed (line %d; last error: %s)\n", #cond, \
              __LINE__, sm_last_error());                                             \
      return 1;                                                                       \
    }                                                                                 \
  } while (0)

int main(int argc, char** argv) {
  char out[4096];
  sm_model* m = NULL;
  int status;
  CHECK(argc == 4);
  snprintf(out, sizeof out, "%s/out.safemodel", argv[2]);
  unlink(out);
  CHECK(sm_convert(argv[1], out, 0) == SM_OK);
  CHECK(sm_convert(argv[1], out, 0) == SM_INVALID_ARGUMENT); /* never clobbers */
  CHECK(sm_convert(argv[1], out, 1) == SM_OK);
  CHECK(sm_model_open(out, &m) == SM_OK);
  CHECK(sm_model_tensor_count(m) > 0 && sm_model_verify(m) == SM_OK);
  sm_model_close(m);
  unlink(out);
  status = sm_convert(argv[3], out, 0);
  CHECK(status == SM_MALFORMED && sm_exit_code(status) == 3);
  CHECK(strlen(sm_last_error()) > 0);
  CHECK(access(out, F_OK) != 0);
  puts("c_convert_test: ok");
  return 0;
}
