/* cuda_stub.c - bmcuda.h for a build without nvcc: opening a GPU fails with
 * a message saying why; nothing else can be reached without a device. */
#ifndef BM_HAVE_CUDA
#include <stdio.h>
#include <string.h>

#include "cuda/bmcuda.h"

size_t bm_prec_size(bm_prec t) { return t == BM_PREC_FP32 ? 4 : 2; }
const char *bm_prec_name(bm_prec t) {
  return t == BM_PREC_FP32 ? "fp32" : t == BM_PREC_BF16 ? "bf16" : t == BM_PREC_FP16 ? "fp16" : "?";
}
int bm_prec_parse(const char *s, bm_prec *t) {
  if (!strcmp(s, "fp32")) *t = BM_PREC_FP32;
  else if (!strcmp(s, "bf16")) *t = BM_PREC_BF16;
  else if (!strcmp(s, "fp16")) *t = BM_PREC_FP16;
  else return -1;
  return 0;
}
int bm_device_is_cuda(const char *spec) {
  if (!strcmp(spec, "cpu")) return 0;
  if (!strncmp(spec, "cuda", 4) && (spec[4] == 0 || spec[4] == ':')) return 1;
  return -1;
}
int bm_cuda_device_count(char *err, size_t errlen) {
  snprintf(err, errlen, "built without CUDA (no nvcc when it was built)");
  return -1;
}
bm_cuda *bm_cuda_open(const char *spec, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: built without CUDA (no nvcc when it was built)", spec);
  return NULL;
}
void bm_cuda_close(bm_cuda *c) { (void)c; }
#else
/* The CUDA build has the real functions in common/cuda/bmcuda.cu. */
typedef int bm_cuda_stub_unused;
#endif
