/* k_norm.cu - the row reductions: LayerNorm, softmax, L2 normalize. One
 * block per row, fp32 math, two passes over the row (kept in registers or
 * L1) so the variance is computed around the mean as the CPU does. */
#include "bmcuda_fwd.h"
#include "cuda_int.cuh"

#define ROW_THREADS 256

template <typename T>
__global__ void k_layernorm(float *yf, T *yt, const float *x, const float *g, const float *b,
                            int C, float eps) {
  __shared__ float sh[32];
  size_t r = blockIdx.x;
  const float *xr = x + r * C;
  float s = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) s += xr[j];
  float mean = bm_block_sum(s, sh) / (float)C;
  float v = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    float d = xr[j] - mean;
    v += d * d;
  }
  float rstd = rsqrtf(bm_block_sum(v, sh) / (float)C + eps);
  /* every thread has read its elements before any writes (yf may be x) */
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    float y = (xr[j] - mean) * rstd * g[j] + b[j];
    if (yt) bm_st(yt, r * C + j, y);
    if (yf) yf[r * C + j] = y;
  }
}
template <typename T>
static void layernorm(bm_cuda *c, float *yf, void *yt, const float *x, const float *g,
                      const float *b, int N, int C, float eps) {
  k_layernorm<T><<<N, ROW_THREADS, 0, bm_cs(c)>>>(yf, (T *)yt, x, g, b, C, eps);
  CU_LAUNCH("k_layernorm");
}

__global__ void k_softmax(float *x, int n) {
  __shared__ float sh[32];
  float *xr = x + (size_t)blockIdx.x * n;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, xr[j]);
  m = bm_block_max(m, sh);
  float s = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - m);
  float inv = 1.0f / bm_block_sum(s, sh);
  for (int j = threadIdx.x; j < n; j += blockDim.x) xr[j] = expf(xr[j] - m) * inv;
}

template <typename T> __global__ void k_softmax_to(T *y, const float *x, int n) {
  __shared__ float sh[32];
  const float *xr = x + (size_t)blockIdx.x * n;
  size_t o = (size_t)blockIdx.x * n;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, xr[j]);
  m = bm_block_max(m, sh);
  float s = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - m);
  float inv = 1.0f / bm_block_sum(s, sh);
  for (int j = threadIdx.x; j < n; j += blockDim.x) bm_st(y, o + j, expf(xr[j] - m) * inv);
}
template <typename T> static void softmax_to(bm_cuda *c, void *y, const float *x, int N, int n) {
  k_softmax_to<T><<<N, ROW_THREADS, 0, bm_cs(c)>>>((T *)y, x, n);
  CU_LAUNCH("k_softmax_to");
}

__global__ void k_l2_normalize(float *x, int C) {
  __shared__ float sh[32];
  float *xr = x + (size_t)blockIdx.x * C;
  float s = 0.0f;
  for (int j = threadIdx.x; j < C; j += blockDim.x) s += xr[j] * xr[j];
  float inv = 1.0f / fmaxf(sqrtf(bm_block_sum(s, sh)), 1e-12f);
  for (int j = threadIdx.x; j < C; j += blockDim.x) xr[j] *= inv;
}

extern "C" {
void bm_cuda_layernorm(bm_cuda *c, float *yf, void *yt, bm_prec t, const float *x,
                       const float *g, const float *b, int N, int C, float eps) {
  if (N <= 0) return;
  BM_DISPATCH(t, layernorm, c, yf, yt, x, g, b, N, C, eps);
}
void bm_cuda_softmax(bm_cuda *c, float *x, int N, int n) {
  if (N <= 0) return;
  k_softmax<<<N, ROW_THREADS, 0, bm_cs(c)>>>(x, n);
  CU_LAUNCH("k_softmax");
}
void bm_cuda_softmax_to(bm_cuda *c, void *y, bm_prec t, const float *x, int N, int n) {
  if (N <= 0) return;
  BM_DISPATCH(t, softmax_to, c, y, x, N, n);
}
void bm_cuda_l2_normalize(bm_cuda *c, float *x, int N, int C) {
  if (N <= 0) return;
  k_l2_normalize<<<N, ROW_THREADS, 0, bm_cs(c)>>>(x, C);
  CU_LAUNCH("k_l2_normalize");
}
}
