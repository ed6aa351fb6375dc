/* k_norm.cu - the row reductions: LayerNorm, softmax, L2 normalize. One
 * block per row, fp32 math, two passes over the row (kept in registers or
 * L1) so the variance is computed around the mean as the CPU does. */
#include "bmcuda_fwd.h"
#include "cuda_int.cuh"
#include "vec.cuh"

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

/* The fast form: one warp a row, the row held in registers as float4s
 * (lane l owns columns 4l + 128k, k < K), so x is read once; needs C a
 * multiple of 4, C <= 128 K, x, yf and yt 16-byte aligned rows (C % 8 == 0
 * for a 2-byte yt). 1/sqrt rather than rsqrtf: the CPU's rounding. */
template <typename T, int K>
__global__ void k_layernorm_warp(float *yf, T *yt, float *mean, float *rstd, const float *x,
                                 const float *g, const float *b, int N, int C, float eps) {
  int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (row >= N) return;
  const float *xr = x + (size_t)row * C;
  float4 v[K];
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < K; k++) {
    int j = 4 * lane + 128 * k;
    v[k] = j < C ? *(const float4 *)(xr + j) : make_float4(0, 0, 0, 0);
    s += (v[k].x + v[k].y) + (v[k].z + v[k].w);
  }
  float m = bm_warp_sum(s) / (float)C, q = 0.0f;
#pragma unroll
  for (int k = 0; k < K; k++) {
    int j = 4 * lane + 128 * k;
    if (j < C) {
      float a = v[k].x - m, bb = v[k].y - m, cc = v[k].z - m, d = v[k].w - m;
      q += (a * a + bb * bb) + (cc * cc + d * d);
    }
  }
  float r = 1.0f / sqrtf(bm_warp_sum(q) / (float)C + eps);
#pragma unroll
  for (int k = 0; k < K; k++) {
    int j = 4 * lane + 128 * k;
    if (j >= C) continue;
    float y[4] = {v[k].x, v[k].y, v[k].z, v[k].w};
#pragma unroll
    for (int e = 0; e < 4; e++) y[e] = (y[e] - m) * r * g[j + e] + b[j + e];
    if (yt) bm_stn<T, 4>(yt + (size_t)row * C + j, y);
    if (yf) *(float4 *)(yf + (size_t)row * C + j) = make_float4(y[0], y[1], y[2], y[3]);
  }
  if (lane == 0 && mean) mean[row] = m, rstd[row] = r;
}

template <typename T, int K>
static void ln_warp(bm_cuda *c, float *yf, void *yt, float *mean, float *rstd, const float *x,
                    const float *g, const float *b, int N, int C, float eps) {
  k_layernorm_warp<T, K><<<bm_blocks((size_t)N, 8), 256, 0, bm_cs(c)>>>(
      yf, (T *)yt, mean, rstd, x, g, b, N, C, eps);
  CU_LAUNCH("k_layernorm_warp");
}
/* 1 when the warp form took it; 0 for shapes it does not take */
template <typename T>
static void layernorm_stats(int *done, bm_cuda *c, float *yf, void *yt, float *mean, float *rstd,
                            const float *x, const float *g, const float *b, int N, int C,
                            float eps) {
  *done = 1;
  int K = (C + 127) / 128;
  if (C % 8 == 0 && bm_al16(x) && (!yf || bm_al16(yf)) && (!yt || bm_al16(yt))) {
    switch (K) {
    case 1: return ln_warp<T, 1>(c, yf, yt, mean, rstd, x, g, b, N, C, eps);
    case 2: return ln_warp<T, 2>(c, yf, yt, mean, rstd, x, g, b, N, C, eps);
    case 3: return ln_warp<T, 3>(c, yf, yt, mean, rstd, x, g, b, N, C, eps);
    case 4: return ln_warp<T, 4>(c, yf, yt, mean, rstd, x, g, b, N, C, eps);
    case 6: return ln_warp<T, 6>(c, yf, yt, mean, rstd, x, g, b, N, C, eps);
    case 8: return ln_warp<T, 8>(c, yf, yt, mean, rstd, x, g, b, N, C, eps);
    default: break;
    }
  }
  *done = 0;
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
  int done = 0;
  BM_DISPATCH(t, layernorm_stats, &done, c, yf, yt, NULL, NULL, x, g, b, N, C, eps);
  if (!done) BM_DISPATCH(t, layernorm, c, yf, yt, x, g, b, N, C, eps);
}
int bm_cuda_layernorm_stats(bm_cuda *c, float *yf, void *yt, bm_prec t, float *mean, float *rstd,
                            const float *x, const float *g, const float *b, int N, int C,
                            float eps) {
  int done = 1;
  if (N > 0) BM_DISPATCH(t, layernorm_stats, &done, c, yf, yt, mean, rstd, x, g, b, N, C, eps);
  return done;
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
