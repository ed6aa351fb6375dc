/* cuda_int.cuh - what the .cu files share: the device struct, the checks
 * that name the failed call and its file:line, and typed loads/stores so a
 * kernel is written once for fp32, bf16 and fp16. */
#ifndef BM_CUDA_INT_CUH
#define BM_CUDA_INT_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>

#include "bmcuda.h"

extern "C" void bm_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A cuBLASLt plan for one nn.Linear shape (bmcuda.cu's gemm cache). */
struct bm_lt_plan {
  long long key[8];
  int ok; /* 0: no algorithm with the bias epilogue: use cuBLAS + a bias pass */
  cublasLtMatmulAlgo_t algo;
};
#define BM_LT_PLANS 64

struct bm_cuda {
  int dev;
  cudaStream_t stream[2]; /* compute, copy */
  cublasHandle_t blas;
  cublasLtHandle_t lt;
  void *ltws; /* cuBLASLt workspace, BM_LT_WS bytes */
  bm_lt_plan plan[BM_LT_PLANS];
  int nplan;
  char desc[320];
};
#define BM_LT_WS (32u << 20)

static inline void bm_cu_check(cudaError_t e, const char *call, const char *file, int line) {
  if (e != cudaSuccess)
    bm_die("CUDA error: %s at %s:%d: %s (%s)", call, file, line, cudaGetErrorString(e),
           cudaGetErrorName(e));
}
static inline void bm_cublas_check(cublasStatus_t s, const char *call, const char *file,
                                   int line) {
  if (s != CUBLAS_STATUS_SUCCESS)
    bm_die("cuBLAS error: %s at %s:%d: %s (%s)", call, file, line, cublasGetStatusString(s),
           cublasGetStatusName(s));
}
#define CU(call) bm_cu_check((call), #call, __FILE__, __LINE__)
#define CUBLAS(call) bm_cublas_check((call), #call, __FILE__, __LINE__)
/* After a kernel launch: a bad launch configuration shows up here. */
#define CU_LAUNCH(what) bm_cu_check(cudaGetLastError(), what, __FILE__, __LINE__)

static inline cudaStream_t bm_cs(bm_cuda *c) { return c->stream[BM_STREAM_COMPUTE]; }
static inline unsigned bm_blocks(size_t n, unsigned t) { return (unsigned)((n + t - 1) / t); }

/* Typed element access: fp32 math on every type. */
__device__ __forceinline__ float bm_ld(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float bm_ld(const __nv_bfloat16 *p, size_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ float bm_ld(const __half *p, size_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void bm_st(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void bm_st(__nv_bfloat16 *p, size_t i, float v) {
  p[i] = __float2bfloat16(v);
}
__device__ __forceinline__ void bm_st(__half *p, size_t i, float v) { p[i] = __float2half(v); }

/* Calls F<T>(args) with T the element type of dtype t. */
#define BM_DISPATCH(t, F, ...)                                                    \
  do {                                                                            \
    switch (t) {                                                                  \
    case BM_PREC_FP32: F<float>(__VA_ARGS__); break;                                   \
    case BM_PREC_BF16: F<__nv_bfloat16>(__VA_ARGS__); break;                           \
    case BM_PREC_FP16: F<__half>(__VA_ARGS__); break;                                  \
    default: bm_die("bmcuda: bad dtype %d at %s:%d", (int)(t), __FILE__, __LINE__); \
    }                                                                             \
  } while (0)

__device__ __forceinline__ float bm_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the total. sh holds 32 floats; callers that reduce twice in a
 * row must __syncthreads() between the calls (done here at the start). */
__device__ __forceinline__ float bm_block_sum(float v, float *sh) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  v = l < nw ? sh[l] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float bm_block_max(float v, float *sh) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();
  if (l == 0) sh[w] = v;
  __syncthreads();
  v = l < nw ? sh[l] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* The device buffers a tower owns, freed together. */
struct bm_dev_list {
  void **p;
  int n, cap;
};
static inline void *bm_dev_keep(bm_dev_list *l, void *d) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    l->p = (void **)realloc(l->p, sizeof(void *) * (size_t)l->cap);
    if (!l->p) bm_die("bmcuda: out of memory");
  }
  return l->p[l->n++] = d;
}
static inline void bm_dev_free_all(bm_dev_list *l) {
  for (int i = 0; i < l->n; i++) bm_cuda_free(l->p[i]);
  free(l->p);
  l->p = NULL, l->n = l->cap = 0;
}

#endif
