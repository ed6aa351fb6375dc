/* k_elementwise.cu - bias, bias + GELU, type conversion, row gather. */
#include "bmcuda_fwd.h"
#include "cuda_int.cuh"
#include "vec.cuh"

/* Vector forms: one 16-byte chunk a thread, grid-stride; a chunk lies in
 * one row (C a multiple of the chunk), so its bias is b[col .. col+V).
 * The bias is read element by element: it may sit at any float offset in a
 * parameter block. */
template <typename T>
__global__ void k_bias_gelu_v(T *y, const float *b, size_t nchunk, int C) {
  const int V = bm_vec<T>::n;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < nchunk;
       i += (size_t)gridDim.x * blockDim.x) {
    float v[V];
    bm_ld16(y + i * V, v);
    int col = (int)(i * V % C);
#pragma unroll
    for (int k = 0; k < V; k++) v[k] = bm_gelu(v[k] + (b ? b[col + k] : 0.0f));
    bm_st16(y + i * V, v);
  }
}
template <typename T>
__global__ void k_add_bias_v(T *y, const float *b, size_t nchunk, int C) {
  const int V = bm_vec<T>::n;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < nchunk;
       i += (size_t)gridDim.x * blockDim.x) {
    float v[V];
    bm_ld16(y + i * V, v);
    int col = (int)(i * V % C);
#pragma unroll
    for (int k = 0; k < V; k++) v[k] += b[col + k];
    bm_st16(y + i * V, v);
  }
}
/* enough blocks to fill the device a few times over, then grid-stride */
static unsigned vec_blocks(size_t nchunk) {
  size_t b = (nchunk + 255) / 256;
  return (unsigned)(b < 132 * 16 ? (b ? b : 1) : 132 * 16);
}

template <typename T> __global__ void k_bias_gelu(T *y, const float *b, size_t n, int C) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = bm_ld(y, i) + (b ? b[i % C] : 0.0f);
  bm_st(y, i, 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
}
template <typename T> static void bias_gelu(bm_cuda *c, void *y, const float *b, size_t n, int C) {
  const int V = bm_vec<T>::n;
  if (C % V == 0 && bm_al16(y)) {
    k_bias_gelu_v<T><<<vec_blocks(n / V), 256, 0, bm_cs(c)>>>((T *)y, b, n / V, C);
    CU_LAUNCH("k_bias_gelu_v");
    return;
  }
  k_bias_gelu<T><<<bm_blocks(n, 256), 256, 0, bm_cs(c)>>>((T *)y, b, n, C);
  CU_LAUNCH("k_bias_gelu");
}

template <typename T> __global__ void k_add_bias(T *y, const float *b, size_t n, int C) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) bm_st(y, i, bm_ld(y, i) + b[i % C]);
}
template <typename T> static void add_bias(bm_cuda *c, void *y, const float *b, size_t n, int C) {
  const int V = bm_vec<T>::n;
  if (C % V == 0 && bm_al16(y)) {
    k_add_bias_v<T><<<vec_blocks(n / V), 256, 0, bm_cs(c)>>>((T *)y, b, n / V, C);
    CU_LAUNCH("k_add_bias_v");
    return;
  }
  k_add_bias<T><<<bm_blocks(n, 256), 256, 0, bm_cs(c)>>>((T *)y, b, n, C);
  CU_LAUNCH("k_add_bias");
}

template <typename T> __global__ void k_convert(T *dst, const float *src, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) bm_st(dst, i, src[i]);
}
template <typename T> __global__ void k_convert_v(T *dst, const float *src, size_t n4) {
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4;
       i += (size_t)gridDim.x * blockDim.x) {
    float4 f = ((const float4 *)src)[i];
    float v[4] = {f.x, f.y, f.z, f.w};
    bm_stn<T, 4>(dst + i * 4, v);
  }
}
template <typename T> static void convert(bm_cuda *c, void *dst, const float *src, size_t n) {
  if (n % 4 == 0 && bm_al16(dst) && bm_al16(src)) {
    k_convert_v<T><<<vec_blocks(n / 4), 256, 0, bm_cs(c)>>>((T *)dst, src, n / 4);
    CU_LAUNCH("k_convert_v");
    return;
  }
  k_convert<T><<<bm_blocks(n, 256), 256, 0, bm_cs(c)>>>((T *)dst, src, n);
  CU_LAUNCH("k_convert");
}

__global__ void k_gather_rows(float *dst, const float *src, const int *rows, int C) {
  const float *s = src + (size_t)rows[blockIdx.x] * C;
  float *d = dst + (size_t)blockIdx.x * C;
  for (int j = threadIdx.x; j < C; j += blockDim.x) d[j] = s[j];
}

extern "C" {
void bm_cuda_bias_gelu(bm_cuda *c, void *y, bm_prec t, const float *b, int N, int C) {
  if (N <= 0) return;
  BM_DISPATCH(t, bias_gelu, c, y, b, (size_t)N * C, C);
}
void bm_cuda_add_bias(bm_cuda *c, void *y, bm_prec t, const float *b, int N, int C) {
  if (N <= 0) return;
  BM_DISPATCH(t, add_bias, c, y, b, (size_t)N * C, C);
}
void bm_cuda_convert(bm_cuda *c, void *dst, bm_prec t, const float *src, size_t n) {
  if (!n) return;
  BM_DISPATCH(t, convert, c, dst, src, n);
}
void bm_cuda_gather_rows(bm_cuda *c, float *dst, const float *src, const int *rows, int n,
                         int C) {
  if (n <= 0) return;
  k_gather_rows<<<n, 256, 0, bm_cs(c)>>>(dst, src, rows, C);
  CU_LAUNCH("k_gather_rows");
}
}
