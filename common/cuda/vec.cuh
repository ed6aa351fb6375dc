/* vec.cuh - 16-byte loads and stores of fp32 / bf16 / fp16 elements with
 * fp32 math, for the memory-bound kernels around the GEMMs: a chunk is
 * 16 bytes (8 half-width or 4 fp32 elements), so one warp moves 512
 * contiguous bytes per access. Callers check 16-byte alignment and that a
 * chunk never straddles a row (C a multiple of the chunk). */
#ifndef BM_CUDA_VEC_CUH
#define BM_CUDA_VEC_CUH

#include <stdint.h>

#include "cuda_int.cuh"

template <typename T> struct bm_vec {
  static const int n = 16 / (int)sizeof(T);
};

template <typename T> __device__ __forceinline__ void bm_ld16(const T *p, float *v) {
  uint4 u = *(const uint4 *)p;
  const T *e = (const T *)&u;
#pragma unroll
  for (int i = 0; i < bm_vec<T>::n; i++) v[i] = bm_ld(e, i);
}
template <typename T> __device__ __forceinline__ void bm_st16(T *p, const float *v) {
  uint4 u;
  T *e = (T *)&u;
#pragma unroll
  for (int i = 0; i < bm_vec<T>::n; i++) bm_st(e, i, v[i]);
  *(uint4 *)p = u;
}
/* n (4 or 8) consecutive elements of T from fp32 values, one store */
template <typename T, int n> __device__ __forceinline__ void bm_stn(T *p, const float *v) {
  if (sizeof(T) * n == 16) {
    bm_st16(p, v);
  } else if (sizeof(T) * n == 8) {
    uint2 u;
    T *e = (T *)&u;
#pragma unroll
    for (int i = 0; i < n; i++) bm_st(e, i, v[i]);
    *(uint2 *)p = u;
  } else {
#pragma unroll
    for (int i = 0; i < n; i++) bm_st(p, i, v[i]);
  }
}

static inline int bm_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__device__ __forceinline__ float bm_gelu(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
__device__ __forceinline__ float bm_gelu_grad(float x) {
  return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
         x * 0.39894228040143268f * expf(-0.5f * x * x);
}

#endif
