/* The C interface (safemodel/c_api.h) from a program compiled as C: opens
 * the .safemodel written by reader_api_test (argv[1]) and checks what it
 * reports. Prints "c_api_test: ok" and exits 0, or names the first failure. */
#include <stdio.h>
#include <string.h>

#include "safemodel/c_api.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "c_api_test: %s failed (line %d; last error: %s)\n",    \
              #cond, __LINE__, sm_last_error());                               \
      return 1;                                                                \
    }                                                                          \
  } while (0)

int main(int argc, char** argv) {
  sm_model* m = NULL;
  size_t i = 0;
  SmDLManagedTensor* dl = NULL;
  CHECK(argc == 2);
  CHECK(sm_model_open("/nonexistent/m.safemodel", &m) == SM_INVALID_ARGUMENT);
  CHECK(m == NULL && strlen(sm_last_error()) > 0);
  CHECK(sm_model_open(argv[1], &m) == SM_OK && m != NULL);
  CHECK(sm_model_verify(m) == SM_OK);
  CHECK(sm_model_tensor_count(m) == 5);
  CHECK(strcmp(sm_tensor_name(m, 0), "a_f32") == 0);
  CHECK(sm_model_find(m, "c_bool", &i) == SM_OK && i == 2);
  CHECK(sm_model_find(m, "nope", &i) == SM_INVALID_ARGUMENT);
  CHECK(strstr(sm_last_error(), "nope") != NULL);
  /* The source listed the tensors in reverse (reader_api_test's WriteModel). */
  CHECK(sm_model_has_source_order(m) == 1);
  CHECK(sm_model_source_order(m, 0, &i) == SM_OK && i == 4);
  CHECK(sm_model_source_order(m, 4, &i) == SM_OK && i == 0);
  CHECK(sm_model_source_order(m, 5, &i) == SM_INVALID_ARGUMENT);
  CHECK(sm_model_source_order(m, 0, NULL) == SM_INVALID_ARGUMENT);
  CHECK(sm_model_has_source_order(NULL) == 0);
  CHECK(sm_tensor_dtype(m, 0) == SM_DTYPE_F32);
  CHECK(strcmp(sm_dtype_name(sm_tensor_dtype(m, 1)), "bf16") == 0);
  CHECK(sm_dtype_size(SM_DTYPE_BF16) == 2);
  CHECK(sm_tensor_rank(m, 0) == 2);
  CHECK(sm_tensor_shape(m, 0)[0] == 2 && sm_tensor_shape(m, 0)[1] == 3);
  CHECK(sm_tensor_rank(m, 3) == 0 && sm_tensor_shape(m, 3) == NULL);
  CHECK(sm_tensor_element_count(m, 0) == 6 && sm_tensor_nbytes(m, 0) == 24);
  CHECK(((const unsigned char*)sm_tensor_data(m, 0))[1] == 3);
  CHECK(((uintptr_t)sm_tensor_data(m, 0)) % 64 == 0);
  CHECK(strcmp(sm_tensor_alias_of(m, 0), "") == 0);
  CHECK(sm_tensor_verify(m, 4) == SM_OK);
  CHECK(sm_tensor_name(m, 5) == NULL && strstr(sm_last_error(), "out of range") != NULL);
  CHECK(sm_tensor_verify(m, 99) == SM_INVALID_ARGUMENT);
  CHECK(strcmp(sm_status_name(SM_MALFORMED), "malformed") == 0);
  CHECK(sm_tensor_to_dlpack(m, 0, &dl) == SM_OK && dl != NULL);
  CHECK(dl->dl_tensor.data == sm_tensor_data(m, 0));
  sm_model_close(m);
  /* The DLPack tensor keeps the mapping. */
  CHECK(((const unsigned char*)dl->dl_tensor.data)[1] == 3);
  dl->deleter(dl);
  sm_model_close(NULL);
  puts("c_api_test: ok");
  return 0;
}
