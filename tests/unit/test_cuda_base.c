/* test_cuda_base.c - the GPU backend's device handling. Without a GPU (or
 * without nvcc) it checks that opening fails with a clear message and skips
 * the rest, saying so in one line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cuda/bmcuda.h"

int main(void) {
  char err[512];
  bm_prec t;
  CHECK(bm_prec_parse("bf16", &t) == 0 && t == BM_PREC_BF16, "dtype bf16 parses");
  CHECK(bm_prec_parse("fp64", &t) == -1, "dtype fp64 is refused");
  CHECK(bm_device_is_cuda("cuda:1") == 1 && bm_device_is_cuda("cpu") == 0 &&
            bm_device_is_cuda("gpu") == -1,
        "device specs: cuda:1, cpu, gpu");
  CHECK(!bm_cuda_open("cuda:x", err, sizeof err) && strstr(err, "cuda:x"),
        "cuda:x is refused naming it: %s", err);
  int n = bm_cuda_device_count(err, sizeof err);
  if (n < 0) {
    char err2[512];
    bm_cuda *c = bm_cuda_open("cuda", err2, sizeof err2);
    CHECK(!c && strstr(err2, "cuda") && strstr(err2, err), "no GPU: open fails: %s", err2);
    printf("# skip: cuda device tests: %s\n", err);
    CHECK_DONE();
  }
  bm_cuda *c = bm_cuda_open("cuda:0", err, sizeof err);
  CHECK(c != NULL, "cuda:0 opens: %s", c ? bm_cuda_describe(c) : err);
  if (!c) CHECK_DONE();
  char spec[32];
  snprintf(spec, sizeof spec, "cuda:%d", n);
  CHECK(!bm_cuda_open(spec, err, sizeof err) && strstr(err, spec), "%s refused: %s", spec, err);
  /* GEMM fp32 against a plain loop, fresh random inputs, poisoned output. */
  int N = 37, in = 53, out = 29;
  float *X = malloc(sizeof(float) * N * in), *W = malloc(sizeof(float) * out * in),
        *b = malloc(sizeof(float) * out), *Y = malloc(sizeof(float) * N * out);
  srand(7);
  for (int i = 0; i < N * in; i++) X[i] = rand() / (float)RAND_MAX - 0.5f;
  for (int i = 0; i < out * in; i++) W[i] = rand() / (float)RAND_MAX - 0.5f;
  for (int i = 0; i < out; i++) b[i] = rand() / (float)RAND_MAX - 0.5f;
  float *dX = bm_cuda_upload(c, X, (size_t)N * in, BM_PREC_FP32, "X");
  float *dW = bm_cuda_upload(c, W, (size_t)out * in, BM_PREC_FP32, "W");
  float *db = bm_cuda_upload(c, b, out, BM_PREC_FP32, "b");
  float *dY = bm_cuda_malloc(sizeof(float) * N * out, "Y");
  bm_cuda_memset(c, dY, 0xff, sizeof(float) * N * out);
  bm_cuda_gemm(c, dY, BM_PREC_FP32, dX, dW, BM_PREC_FP32, db, N, in, out, 1.0f, 0.0f);
  bm_cuda_d2h(c, Y, dY, sizeof(float) * N * out, BM_STREAM_COMPUTE);
  bm_cuda_sync(c, BM_STREAM_COMPUTE);
  double num = 0, den = 0;
  for (int i = 0; i < N; i++)
    for (int o = 0; o < out; o++) {
      double r = b[o];
      for (int k = 0; k < in; k++) r += (double)X[i * in + k] * W[o * in + k];
      num += (Y[i * out + o] - r) * (Y[i * out + o] - r);
      den += r * r;
    }
  CHECK(sqrt(num / den) < 1e-5, "fp32 gemm 37x53x29 + bias: rel err %.2e", sqrt(num / den));
  bm_cuda_free(dX), bm_cuda_free(dW), bm_cuda_free(db), bm_cuda_free(dY);
  free(X), free(W), free(b), free(Y);
  bm_cuda_close(c);
  CHECK_DONE();
}
