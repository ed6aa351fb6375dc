/* bmcuda.cu - device, memory, streams, events and the GEMMs of bmcuda.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bmcuda_fwd.h"
#include "cuda_int.cuh"

extern "C" {

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
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  int drv = 0, rt = 0;
  if (e == cudaErrorInsufficientDriver) {
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
  }
  if (e == cudaErrorInsufficientDriver && drv > 0) {
    snprintf(err, errlen,
             "CUDA driver too old: it supports CUDA %d.%d, this program needs %d.%d "
             "(cudaGetDeviceCount: %s)",
             drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10, cudaGetErrorString(e));
    return -1;
  }
  if (e != cudaSuccess || n == 0) {
    snprintf(err, errlen, "no GPU%s (cudaGetDeviceCount: %s)",
             e == cudaErrorInsufficientDriver ? ": no NVIDIA driver is installed" : "",
             e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return -1;
  }
  return n;
}

bm_cuda *bm_cuda_open(const char *spec, char *err, size_t errlen) {
  int idx = 0;
  if (bm_device_is_cuda(spec) != 1) {
    snprintf(err, errlen, "%s: not a CUDA device (cuda or cuda:N)", spec);
    return NULL;
  }
  if (spec[4] == ':') {
    char *end;
    long v = strtol(spec + 5, &end, 10);
    if (end == spec + 5 || *end || v < 0 || v > 1024) {
      snprintf(err, errlen, "%s: bad device index (cuda or cuda:N)", spec);
      return NULL;
    }
    idx = (int)v;
  }
  char why[256];
  int n = bm_cuda_device_count(why, sizeof why);
  if (n < 0) {
    snprintf(err, errlen, "%s: %s", spec, why);
    return NULL;
  }
  if (idx >= n) {
    snprintf(err, errlen, "%s: no such GPU (%d found: cuda:0..cuda:%d)", spec, n, n - 1);
    return NULL;
  }
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, idx);
  if (e == cudaSuccess) e = cudaSetDevice(idx);
  if (e != cudaSuccess) {
    snprintf(err, errlen, "%s: %s", spec, cudaGetErrorString(e));
    return NULL;
  }
  if (p.major < 8) {
    snprintf(err, errlen, "%s: %s is sm_%d%d; bf16 kernels need sm_80 or newer", spec, p.name,
             p.major, p.minor);
    return NULL;
  }
  bm_cuda *c = (bm_cuda *)calloc(1, sizeof *c);
  if (!c) bm_die("bm_cuda_open: out of memory");
  c->dev = idx;
  CU(cudaStreamCreateWithFlags(&c->stream[0], cudaStreamNonBlocking));
  CU(cudaStreamCreateWithFlags(&c->stream[1], cudaStreamNonBlocking));
  CUBLAS(cublasCreate(&c->blas));
  CUBLAS(cublasSetStream(c->blas, c->stream[0]));
  /* fp32 GEMMs must stay fp32 (no TF32) to match the CPU near 1e-5. */
  CUBLAS(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
  CUBLAS(cublasLtCreate(&c->lt));
  CU(cudaMalloc(&c->ltws, BM_LT_WS));
  snprintf(c->desc, sizeof c->desc, "cuda:%d (%s, sm_%d%d, %.0f GiB)", idx, p.name, p.major,
           p.minor, p.totalGlobalMem / 1073741824.0);
  return c;
}

void bm_cuda_close(bm_cuda *c) {
  if (!c) return;
  CU(cudaStreamSynchronize(c->stream[0]));
  CU(cudaStreamSynchronize(c->stream[1]));
  CUBLAS(cublasDestroy(c->blas));
  CUBLAS(cublasLtDestroy(c->lt));
  CU(cudaFree(c->ltws));
  CU(cudaStreamDestroy(c->stream[0]));
  CU(cudaStreamDestroy(c->stream[1]));
  free(c);
}

const char *bm_cuda_describe(const bm_cuda *c) { return c->desc; }
void *bm_cuda_stream(bm_cuda *c, bm_stream_id s) { return (void *)c->stream[s]; }

void *bm_cuda_malloc(size_t bytes, const char *what) {
  void *p = NULL;
  if (!bytes) bytes = 1;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess)
    bm_die("cudaMalloc of %zu bytes for %s failed: %s", bytes, what, cudaGetErrorString(e));
  return p;
}
void bm_cuda_free(void *p) {
  if (p) CU(cudaFree(p));
}
void bm_cuda_memset(bm_cuda *c, void *p, int byte, size_t bytes) {
  CU(cudaMemsetAsync(p, byte, bytes, bm_cs(c)));
}
void *bm_cuda_host_alloc(size_t bytes, const char *what) {
  void *p = NULL;
  if (!bytes) bytes = 1;
  cudaError_t e = cudaMallocHost(&p, bytes);
  if (e != cudaSuccess)
    bm_die("cudaMallocHost of %zu bytes for %s failed: %s", bytes, what, cudaGetErrorString(e));
  return p;
}
void bm_cuda_host_free(void *p) {
  if (p) CU(cudaFreeHost(p));
}
void bm_cuda_h2d(bm_cuda *c, void *dst, const void *src, size_t bytes, bm_stream_id s) {
  CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream[s]));
}
void bm_cuda_d2h(bm_cuda *c, void *dst, const void *src, size_t bytes, bm_stream_id s) {
  CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream[s]));
}
void bm_cuda_d2d(bm_cuda *c, void *dst, const void *src, size_t bytes, bm_stream_id s) {
  CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream[s]));
}
void bm_cuda_sync(bm_cuda *c, bm_stream_id s) { CU(cudaStreamSynchronize(c->stream[s])); }

struct bm_cuda_event {
  cudaEvent_t e;
};
bm_cuda_event *bm_cuda_event_new(void) {
  bm_cuda_event *e = (bm_cuda_event *)calloc(1, sizeof *e);
  if (!e) bm_die("bm_cuda_event_new: out of memory");
  CU(cudaEventCreate(&e->e));
  return e;
}
void bm_cuda_event_free(bm_cuda_event *e) {
  if (!e) return;
  CU(cudaEventDestroy(e->e));
  free(e);
}
void bm_cuda_event_record(bm_cuda *c, bm_cuda_event *e, bm_stream_id s) {
  CU(cudaEventRecord(e->e, c->stream[s]));
}
void bm_cuda_stream_wait(bm_cuda *c, bm_stream_id s, bm_cuda_event *e) {
  CU(cudaStreamWaitEvent(c->stream[s], e->e, 0));
}
void bm_cuda_event_sync(bm_cuda_event *e) { CU(cudaEventSynchronize(e->e)); }
float bm_cuda_event_ms(bm_cuda_event *from, bm_cuda_event *to) {
  float ms = 0;
  CU(cudaEventElapsedTime(&ms, from->e, to->e));
  return ms;
}

} /* extern "C" */

static cudaDataType_t cu_type(bm_prec t) {
  return t == BM_PREC_FP32 ? CUDA_R_32F : t == BM_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
}

extern "C" {

void *bm_cuda_upload(bm_cuda *c, const float *src, size_t n, bm_prec t, const char *what) {
  void *d = bm_cuda_malloc(n * bm_prec_size(t), what);
  if (t == BM_PREC_FP32) {
    CU(cudaMemcpyAsync(d, src, n * 4, cudaMemcpyHostToDevice, bm_cs(c)));
  } else {
    float *tmp = (float *)bm_cuda_malloc(n * 4, what);
    CU(cudaMemcpyAsync(tmp, src, n * 4, cudaMemcpyHostToDevice, bm_cs(c)));
    bm_cuda_convert(c, d, t, tmp, n);
    CU(cudaStreamSynchronize(bm_cs(c)));
    bm_cuda_free(tmp);
  }
  CU(cudaStreamSynchronize(bm_cs(c)));
  return d;
}

/* The largest power of two (up to 256) dividing a device address: what
 * cuBLASLt may assume of it when it picks an algorithm. */
static unsigned align_of(const void *p) {
  uintptr_t a = (uintptr_t)p;
  unsigned k = 256;
  while (k > 1 && a % k) k >>= 1;
  return k;
}

/* The tail of the cuBLASLt workspace holds the bias in the output type
 * when that is bf16 / fp16: cuBLASLt (CUDA 12-13, sm_90) has no algorithm
 * for a 16-bit D with an fp32 bias (the profile showed every bf16 qkv GEMM
 * falling back to a bias pass),
 * so the bias is rounded to the output type first, as PyTorch's 16-bit
 * nn.Linear holds it. Its error is at most the output's own rounding. */
#define LT_BIAS_BYTES (256u << 10)
#define LT_WS_GEMM (BM_LT_WS - LT_BIAS_BYTES)

/* y = alpha X W^T + beta Y + bias through cuBLASLt with the BIAS epilogue
 * (added after beta Y, before rounding to yt), so the bias costs no pass
 * of its own. Plans (the algorithm for a shape, types and
 * alignments) are cached per device; 0 when cuBLASLt has no algorithm with
 * the epilogue for this case, and the caller falls back. */
static int gemm_lt(bm_cuda *c, void *Y, bm_prec yt, const void *X, const void *W, bm_prec ab,
                   const float *bias, int N, int in, int out, float alpha, float beta) {
  long long key[8] = {N, in, out, yt * 16 + ab, beta != 0.0f,
                      align_of(Y) * 1000000LL + align_of(X) * 1000LL + align_of(W),
                      align_of(bias), 1};
  bm_lt_plan *pl = NULL;
  for (int i = 0; i < c->nplan && !pl; i++)
    if (!memcmp(c->plan[i].key, key, sizeof key)) pl = &c->plan[i];
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasOperation_t tA = CUBLAS_OP_T, tB = CUBLAS_OP_N;
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
  cudaDataType_t bt = yt == BM_PREC_FP32 ? CUDA_R_32F : cu_type(yt);
  if (bt != CUDA_R_32F) {
    if ((size_t)out * 2 > LT_BIAS_BYTES) return 0;
    void *b16 = (char *)c->ltws + LT_WS_GEMM; /* stream-ordered: the last GEMM's is done */
    bm_cuda_convert(c, b16, yt, bias, (size_t)out);
    bias = (const float *)b16;
  }
  CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA));
  CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB));
  CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
  CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
  CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  CUBLAS(cublasLtMatrixLayoutCreate(&la, cu_type(ab), in, out, in));
  CUBLAS(cublasLtMatrixLayoutCreate(&lb, cu_type(ab), in, N, in));
  CUBLAS(cublasLtMatrixLayoutCreate(&lc, cu_type(yt), out, N, out));
  if (!pl) {
    pl = c->nplan < BM_LT_PLANS ? &c->plan[c->nplan++] : &c->plan[N % BM_LT_PLANS];
    memcpy(pl->key, key, sizeof key);
    cublasLtMatmulPreference_t pref;
    size_t ws = LT_WS_GEMM;
    uint32_t aY = align_of(Y), aX = align_of(X), aW = align_of(W);
    CUBLAS(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aW, sizeof aW));
    CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &aX, sizeof aX));
    CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &aY, sizeof aY));
    CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &aY, sizeof aY));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, lc, lc, pref, 1, &h, &found);
    pl->ok = s == CUBLAS_STATUS_SUCCESS && found > 0 && h.state == CUBLAS_STATUS_SUCCESS;
    if (pl->ok) pl->algo = h.algo;
    CUBLAS(cublasLtMatmulPreferenceDestroy(pref));
  }
  int ok = pl->ok;
  if (ok) {
    cublasStatus_t s = cublasLtMatmul(c->lt, op, &alpha, W, la, X, lb, &beta, Y, lc, Y, lc,
                                      &pl->algo, c->ltws, LT_WS_GEMM, bm_cs(c));
    if (s == CUBLAS_STATUS_NOT_SUPPORTED) ok = pl->ok = 0;
    else CUBLAS(s);
  }
  CUBLAS(cublasLtMatrixLayoutDestroy(la));
  CUBLAS(cublasLtMatrixLayoutDestroy(lb));
  CUBLAS(cublasLtMatrixLayoutDestroy(lc));
  CUBLAS(cublasLtMatmulDescDestroy(op));
  return ok;
}

/* Row-major Y[N,out] = X[N,in] W[out,in]^T is column-major
 * Y^T[out,N] = W^T (op T on the [in,out] column-major W) X^T. */
void bm_cuda_gemm(bm_cuda *c, void *Y, bm_prec yt, const void *X, const void *W, bm_prec ab,
                  const float *bias, int N, int in, int out, float alpha, float beta) {
  if (N <= 0) return;
  if (yt != ab && yt != BM_PREC_FP32) bm_die("bm_cuda_gemm: output %s with operands %s",
                                        bm_prec_name(yt), bm_prec_name(ab));
  if (bias && gemm_lt(c, Y, yt, X, W, ab, bias, N, in, out, alpha, beta)) return;
  CUBLAS(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, N, in, &alpha, W, cu_type(ab), in,
                      X, cu_type(ab), in, &beta, Y, cu_type(yt), out, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT));
  if (bias) bm_cuda_add_bias(c, Y, yt, bias, N, out);
}

/* Row-major C[M,N] = A[M,K] op(B) is column-major C^T[N,M] = op(B)^T A^T. */
void bm_cuda_gemm_batched(bm_cuda *c, void *C, bm_prec ct, const void *A, const void *B,
                          bm_prec ab, int M, int N, int K, int transB, int lda, int ldb,
                          int ldc, long long sa, long long sb, long long sc, int batch,
                          float alpha, float beta) {
  if (batch <= 0 || M <= 0 || N <= 0) return;
  CUBLAS(cublasGemmStridedBatchedEx(c->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, N,
                                    M, K, &alpha, B, cu_type(ab), ldb, sb, A, cu_type(ab), lda,
                                    sa, &beta, C, cu_type(ct), ldc, sc, batch,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

} /* extern "C" */
