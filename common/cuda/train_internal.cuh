/* train_internal.cuh - what the training .cu files share: checked calls,
 * element types, the context. */
#ifndef BM_CUDA_TRAIN_INTERNAL_CUH
#define BM_CUDA_TRAIN_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "bmcuda_train.h"
#include "cuda_int.cuh"

extern "C" {
void *bm_xmalloc(size_t n);
void *bm_xcalloc(size_t n, size_t size);
}

#define CK(call)                                                                           \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) bm_die("cuda: %s: %s (%s:%d)", #call, cudaGetErrorString(e_),   \
                                  __FILE__, __LINE__);                                     \
  } while (0)
#define CKB(call)                                                                          \
  do {                                                                                     \
    cublasStatus_t s_ = (call);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                       \
      bm_die("cublas: %s: %s (%s:%d)", #call, cublasGetStatusString(s_), __FILE__, __LINE__); \
  } while (0)
/* after every launch: a bad configuration shows here, a fault at the next sync */
#define CKL(what) CK(cudaGetLastError())

/* Reduction scratch: RED_ROWS partial rows of up to RED_COLS columns, in double. */
#define RED_ROWS 256
#define RED_COLS 8192

struct bmct_ctx {
  bm_cuda *cu;
  cudaStream_t st;
  cublasHandle_t blas;
  double *red;      /* [RED_ROWS * RED_COLS] partial sums */
  double *hred;     /* pinned host copy of a few partials */
};

/* fp32 arithmetic on any storage type */
__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ float ld(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float ld(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T st(float x);
template <> __device__ __forceinline__ float st<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 st<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half st<__half>(float x) { return __float2half_rn(x); }

/* Runs the statement with T the storage type of prec. */
#define BMCT_DISPATCH(prec, T, ...)                                       \
  do {                                                                    \
    switch (prec) {                                                       \
    case BMCT_FP32: { typedef float T; __VA_ARGS__; } break;              \
    case BMCT_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;      \
    case BMCT_FP16: { typedef __half T; __VA_ARGS__; } break;             \
    default: bm_die("internal error: precision %d", (int)(prec));         \
    }                                                                     \
  } while (0)

/* warp-wide reductions (every lane gets the result) */
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sumd(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

static inline unsigned nblocks(size_t n, int per) { return (unsigned)((n + per - 1) / per); }

#endif
