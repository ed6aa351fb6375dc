/* train_kernels.cu - the context, memory helpers, GEMM, and the backward,
 * loss and optimizer kernels of bmcuda_train.h. Element-wise kernels: one
 * thread an element; row kernels: one warp a row; column sums: two passes
 * (partials of row bands in double, then a fixed-order sum), so every result
 * is the same bits run after run. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train_internal.cuh"
#include "bmcuda_fwd.h"
#include "vec.cuh"

/* ---- context, memory ---- */

extern "C" bmct_ctx *bmct_ctx_new(bm_cuda *cu) {
  bmct_ctx *c = (bmct_ctx *)bm_xcalloc(1, sizeof *c);
  c->cu = cu;
  c->st = bm_cs(cu);
  c->blas = cu->blas;
  CKB(cublasSetStream(c->blas, c->st));
  CK(cudaMalloc(&c->red, sizeof(double) * RED_ROWS * RED_COLS));
  CK(cudaMallocHost(&c->hred, sizeof(double) * RED_ROWS * 64));
  return c;
}

extern "C" void bmct_ctx_free(bmct_ctx *c) {
  if (!c) return;
  CK(cudaStreamSynchronize(c->st));
  cudaFree(c->red);
  cudaFreeHost(c->hred);
  free(c);
}

extern "C" void bmct_sync(bmct_ctx *c) { CK(cudaStreamSynchronize(c->st)); }
extern "C" bm_cuda *bmct_ctx_cuda(bmct_ctx *c) { return c->cu; }

extern "C" void bmct_upload(bmct_ctx *c, void *dst, const void *src, size_t bytes) {
  CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->st));
  CK(cudaStreamSynchronize(c->st)); /* src may be pageable and freed right after */
}
extern "C" void bmct_download(bmct_ctx *c, void *dst, const void *src, size_t bytes) {
  CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->st));
  CK(cudaStreamSynchronize(c->st));
}

template <typename D, typename S> __global__ void ctk_cast(D *d, const S *s, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) d[i] = st<D>(ld(s[i]));
}

extern "C" void bmct_upload_as(bmct_ctx *c, void *dst, int prec, const float *src, size_t n) {
  if (prec == BMCT_FP32) return bmct_upload(c, dst, src, n * 4);
  float *tmp = (float *)bm_cuda_malloc(n * 4, "a conversion buffer");
  bmct_upload(c, tmp, src, n * 4);
  BMCT_DISPATCH(prec, T, ctk_cast<T, float><<<nblocks(n, 256), 256, 0, c->st>>>((T *)dst, tmp, n));
  CKL("cast");
  CK(cudaStreamSynchronize(c->st));
  bm_cuda_free(tmp);
}

extern "C" void bmct_download_as(bmct_ctx *c, float *dst, const void *src, int prec, size_t n) {
  if (prec == BMCT_FP32) return bmct_download(c, dst, src, n * 4);
  float *tmp = (float *)bm_cuda_malloc(n * 4, "a conversion buffer");
  BMCT_DISPATCH(prec, T, ctk_cast<float, T><<<nblocks(n, 256), 256, 0, c->st>>>(tmp, (const T *)src, n));
  CKL("cast");
  bmct_download(c, dst, tmp, n * 4);
  bm_cuda_free(tmp);
}

template <typename T> __global__ void ctk_fill_nan(T *p, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) p[i] = st<T>(__int_as_float(0x7fc00000));
}
extern "C" void bmct_poison(bmct_ctx *c, void *p, int prec, size_t n) {
  BMCT_DISPATCH(prec, T, ctk_fill_nan<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)p, n));
  CKL("poison");
}

/* ---- GEMM ---- */

static cudaDataType dt(int prec) {
  return prec == BMCT_BF16 ? CUDA_R_16BF : prec == BMCT_FP16 ? CUDA_R_16F : CUDA_R_32F;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same
 * memory read as column-major, so swap the operands and keep the flags. */
extern "C" void bmct_gemm(bmct_ctx *c, int prec, int c_f32, int ta, int tb, int M, int N, int K,
                          float alpha, const void *A, int lda, long long sA, const void *B, int ldb,
                          long long sB, float beta, void *C, int ldc, long long sC, int batch) {
  if (M == 0 || N == 0) return;
  cudaDataType ab = dt(prec), cc = c_f32 ? CUDA_R_32F : ab;
  CKB(cublasGemmStridedBatchedEx(c->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 N, M, K, &alpha, B, ab, ldb, sB, A, ab, lda, sA, &beta, C, cc, ldc, sC,
                                 batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* ---- column sums ---- */

/* part[r, col] = sum of rows [r*per, (r+1)*per) of column col, in double.
 * Block: 32 columns x 8 row lanes. f(i, col) gives the term. */
template <typename F> __global__ void ctk_colsum_part(double *part, F f, int N, int C, int per) {
  __shared__ double s[8][33];
  int col = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * per;
  int r1 = min(N, r0 + per);
  double a = 0;
  if (col < C)
    for (int i = r0 + threadIdx.y; i < r1; i += 8) a += f(i, col);
  s[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && col < C) {
    double t = 0;
    for (int k = 0; k < 8; k++) t += s[k][threadIdx.x];
    part[(size_t)blockIdx.y * C + col] = t;
  }
}
__global__ void ctk_colsum_finish(float *out, const double *part, int R, int C) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= C) return;
  double t = 0;
  for (int r = 0; r < R; r++) t += part[(size_t)r * C + col];
  out[col] += (float)t;
}

/* Sums f over rows into out[C] (+=) in RED_COLS-wide column bands. */
template <typename F> static void colsum(bmct_ctx *c, float *out, F f, int N, int C) {
  if (!out || N <= 0) return;
  int R = (N + 255) / 256;
  if (R > RED_ROWS) R = RED_ROWS;
  int per = (N + R - 1) / R;
  R = (N + per - 1) / per;
  if (C > RED_COLS) bm_die("internal error: column sum of %d columns", C);
  dim3 grid(nblocks(C, 32), R), block(32, 8);
  ctk_colsum_part<<<grid, block, 0, c->st>>>(c->red, f, N, C, per);
  CKL("colsum");
  ctk_colsum_finish<<<nblocks(C, 256), 256, 0, c->st>>>(out, c->red, R, C);
  CKL("colsum finish");
}

/* The fast column sums: one pass that also does the element-wise work whose
 * result is summed (a conversion, the GELU backward), so no second read of
 * the matrix. Block: 32 threads along the columns, each owning a chunk of V
 * adjacent columns (16-byte accesses), x 8 along the rows of a band; fp32
 * sums over the band's rows (at most a few hundred), then one double
 * partial per band and column, summed in a fixed order by
 * ctk_colsum_finish: the same bits run after run. op(row, col, acc) does
 * the row's work for the chunk at col and adds its V terms into acc. */
template <int V, typename Op>
__global__ void ctk_rows_colsum(double *part, Op op, int N, int C, int per) {
  __shared__ float s[8][32 * V + 1];
  int col = (blockIdx.x * 32 + threadIdx.x) * V, r0 = blockIdx.y * per, r1 = min(N, r0 + per);
  float acc[V];
#pragma unroll
  for (int k = 0; k < V; k++) acc[k] = 0.0f;
  if (col < C)
    for (int i = r0 + threadIdx.y; i < r1; i += 8) op(i, col, acc);
#pragma unroll
  for (int k = 0; k < V; k++) s[threadIdx.y][threadIdx.x * V + k] = acc[k];
  __syncthreads();
  /* 256 threads finish the tile's 32 V columns, each a column at a time */
  for (int t = threadIdx.y * 32 + threadIdx.x; t < 32 * V; t += 256) {
    int cc = blockIdx.x * 32 * V + t;
    if (cc >= C) continue;
    double a = 0;
    for (int k = 0; k < 8; k++) a += s[k][t];
    part[(size_t)blockIdx.y * C + cc] = a;
  }
}

/* Bands: enough blocks to fill the device, within the scratch. */
static int colsum_bands(int N, int C, int *per) {
  int R = (N + 127) / 128;
  int cap = (int)((size_t)RED_ROWS * RED_COLS / (size_t)C);
  if (R > cap) R = cap;
  if (R < 1) R = 1;
  *per = (N + R - 1) / R;
  return (N + *per - 1) / *per;
}
template <int V, typename Op> static void rows_colsum(bmct_ctx *c, float *out, Op op, int N, int C) {
  if (N <= 0) return;
  int per, R = colsum_bands(N, C, &per);
  dim3 grid(nblocks(C, 32 * V), R), block(32, 8);
  ctk_rows_colsum<V><<<grid, block, 0, c->st>>>(c->red, op, N, C, per);
  CKL("rows_colsum");
  if (!out) return; /* the op's own writes only */
  ctk_colsum_finish<<<nblocks(C, 256), 256, 0, c->st>>>(out, c->red, R, C);
  CKL("colsum finish");
}

template <typename T> struct op_plain { /* sum of y */
  const T *y;
  int C;
  __device__ void operator()(int i, int j, float *acc) const {
    const int V = bm_vec<T>::n;
    float v[V];
    bm_ld16(y + (size_t)i * C + j, v);
#pragma unroll
    for (int k = 0; k < V; k++) acc[k] += v[k];
  }
};
template <typename T> struct op_convert { /* yt = y (rounded to T); sum of y */
  const float *y;
  T *yt;
  int C;
  __device__ void operator()(int i, int j, float *acc) const {
    size_t o = (size_t)i * C + j;
    float4 f = *(const float4 *)(y + o);
    float v[4] = {f.x, f.y, f.z, f.w};
    if (yt) bm_stn<T, 4>(yt + o, v);
#pragma unroll
    for (int k = 0; k < 4; k++) acc[k] += v[k];
  }
};
template <typename T> struct op_gelu_bwd { /* dx = dy GELU'(pre); sum of dx as stored */
  T *dx;
  const T *dy, *pre;
  int C;
  __device__ void operator()(int i, int j, float *acc) const {
    const int V = bm_vec<T>::n;
    size_t o = (size_t)i * C + j;
    float a[V], x[V];
    bm_ld16(dy + o, a);
    bm_ld16(pre + o, x);
#pragma unroll
    for (int k = 0; k < V; k++) a[k] = ld(st<T>(a[k] * bm_gelu_grad(x[k])));
    bm_st16(dx + o, a);
#pragma unroll
    for (int k = 0; k < V; k++) acc[k] += a[k];
  }
};

template <typename T> struct term_plain {
  const T *y;
  int C;
  __device__ double operator()(int i, int j) const { return (double)ld(y[(size_t)i * C + j]); }
};

extern "C" void bmct_colsum(bmct_ctx *c, int prec, float *db, const void *y, int N, int C) {
  if (!db) return;
  BMCT_DISPATCH(prec, T, {
    if (C % bm_vec<T>::n == 0 && bm_al16(y))
      rows_colsum<bm_vec<T>::n>(c, db, op_plain<T>{(const T *)y, C}, N, C);
    else
      colsum(c, db, term_plain<T>{(const T *)y, C}, N, C);
  });
}

extern "C" void bmct_convert_colsum(bmct_ctx *c, int prec, void *yt, float *db, const float *y, int N,
                                    int C) {
  if (C % 8 == 0 && bm_al16(y) && (!yt || bm_al16(yt)) && db) {
    BMCT_DISPATCH(prec, T, rows_colsum<4>(c, db, op_convert<T>{y, (T *)yt, C}, N, C));
    return;
  }
  if (yt) bm_cuda_convert(c->cu, yt, (bm_prec)prec, y, (size_t)N * C);
  colsum(c, db, term_plain<float>{y, C}, N, C);
}

/* ---- linear ---- */

extern "C" void bmct_linear_backward(bmct_ctx *c, int prec, void *dx, int dx_f32, float *dW, float *db,
                                     const void *dy, const void *x, const void *W, int N, int in, int out,
                                     int accumulate) {
  /* dx[N,in] = dy[N,out] W[out,in] */
  if (dx) bmct_gemm(c, prec, dx_f32, 0, 0, N, in, out, 1.0f, dy, out, 0, W, in, 0, accumulate ? 1.0f : 0.0f, dx, in, 0, 1);
  /* dW[out,in] += dy^T x */
  if (dW) bmct_gemm(c, prec, 1, 1, 0, out, in, N, 1.0f, dy, out, 0, x, in, 0, 1.0f, dW, in, 0, 1);
  if (db) bmct_colsum(c, prec, db, dy, N, out);
}

/* ---- element-wise ---- */

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

template <typename T> __global__ void ctk_bias_gelu(T *pre, T *h, const float *b, size_t n, int C) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = ld(pre[i]) + (b ? b[i % C] : 0.0f);
  T xs = st<T>(x);
  pre[i] = xs;
  h[i] = st<T>(gelu(ld(xs))); /* from the stored value: the backward sees the same x */
}
/* pre += b (rounded as stored); h = GELU(pre): 16-byte chunks, grid-stride */
template <typename T> __global__ void ctk_bias_gelu_v(T *pre, T *h, const float *b, size_t nchunk, int C) {
  const int V = bm_vec<T>::n;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nchunk; i += (size_t)gridDim.x * blockDim.x) {
    float v[V];
    bm_ld16(pre + i * V, v);
    if (b) {
      int col = (int)(i * V % C);
#pragma unroll
      for (int k = 0; k < V; k++) v[k] = ld(st<T>(v[k] + b[col + k]));
      bm_st16(pre + i * V, v);
    }
#pragma unroll
    for (int k = 0; k < V; k++) v[k] = bm_gelu(v[k]);
    bm_st16(h + i * V, v);
  }
}
static unsigned grid_stride_blocks(size_t nchunk) {
  size_t b = (nchunk + 255) / 256;
  return (unsigned)(b < 132 * 16 ? (b ? b : 1) : 132 * 16);
}

extern "C" void bmct_bias_gelu(bmct_ctx *c, int prec, void *pre, void *h, const float *b, int N, int C) {
  size_t n = (size_t)N * C;
  if (n == 0) return;
  int vec = 0;
  BMCT_DISPATCH(prec, T, {
    const int V = bm_vec<T>::n;
    if (C % V == 0 && bm_al16(pre) && bm_al16(h)) {
      ctk_bias_gelu_v<T><<<grid_stride_blocks(n / V), 256, 0, c->st>>>((T *)pre, (T *)h, b, n / V, C);
      vec = 1;
    }
  });
  if (vec) {
    CKL("bias_gelu");
    return;
  }
  BMCT_DISPATCH(prec, T, ctk_bias_gelu<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)pre, (T *)h, b, n, C));
  CKL("bias_gelu");
}

template <typename T> __global__ void ctk_gelu_bwd(T *dx, const T *dy, const T *pre, size_t n) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = ld(pre[i]);
  float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
  float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
  dx[i] = st<T>(ld(dy[i]) * (cdf + x * pdf));
}
extern "C" void bmct_gelu_backward_db(bmct_ctx *c, int prec, void *dx, float *db, const void *dy, const void *pre,
                                      int N, int C) {
  int done = 0;
  BMCT_DISPATCH(prec, T, {
    if (C % bm_vec<T>::n == 0 && bm_al16(dx) && bm_al16(dy) && bm_al16(pre)) {
      rows_colsum<bm_vec<T>::n>(c, db, op_gelu_bwd<T>{(T *)dx, (const T *)dy, (const T *)pre, C}, N, C);
      done = 1;
    }
  });
  if (done) return;
  bmct_gelu_backward(c, prec, dx, dy, pre, (size_t)N * C);
  bmct_colsum(c, prec, db, dx, N, C);
}

extern "C" void bmct_gelu_backward(bmct_ctx *c, int prec, void *dx, const void *dy, const void *pre, size_t n) {
  BMCT_DISPATCH(prec, T, ctk_gelu_bwd<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)dx, (const T *)dy, (const T *)pre, n));
  CKL("gelu_backward");
}

/* ---- row kernels: one warp a row ---- */

template <typename T> __global__ void ctk_ln_fwd(T *y, float *mean, float *rstd, const float *x, const float *g,
                                               const float *b, int N, int C, float eps) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float *xr = x + (size_t)row * C;
  float s = 0;
  for (int j = lane; j < C; j += 32) s += xr[j];
  float m = warp_sum(s) / (float)C, v = 0;
  for (int j = lane; j < C; j += 32) v += (xr[j] - m) * (xr[j] - m);
  float r = 1.0f / sqrtf(warp_sum(v) / (float)C + eps); /* as the CPU: not the approximate rsqrt */
  T *yr = y + (size_t)row * C;
  for (int j = lane; j < C; j += 32) yr[j] = st<T>((xr[j] - m) * r * g[j] + b[j]);
  if (lane == 0) mean[row] = m, rstd[row] = r;
}
extern "C" void bmct_layernorm_fwd(bmct_ctx *c, int prec, int y_f32, void *y, float *mean, float *rstd,
                                   const float *x, const float *g, const float *b, int N, int C, float eps) {
  if (y_f32) prec = BMCT_FP32;
  if (bm_cuda_layernorm_stats(c->cu, y_f32 ? (float *)y : NULL, y_f32 ? NULL : y, (bm_prec)prec, mean, rstd,
                              x, g, b, N, C, eps))
    return;
  BMCT_DISPATCH(prec, T, ctk_ln_fwd<T><<<nblocks(N, 8), 256, 0, c->st>>>((T *)y, mean, rstd, x, g, b, N, C, eps));
  CKL("layernorm_fwd");
}

__global__ void ctk_ln_bwd(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                         const float *g, int N, int C, int acc) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float *xr = x + (size_t)row * C, *dyr = dy + (size_t)row * C;
  float *dxr = dx + (size_t)row * C, m = mean[row], r = rstd[row], s1 = 0, s2 = 0;
  for (int j = lane; j < C; j += 32) {
    float d = dyr[j] * g[j];
    s1 += d;
    s2 += d * (xr[j] - m) * r;
  }
  s1 = warp_sum(s1) / (float)C;
  s2 = warp_sum(s2) / (float)C;
  for (int j = lane; j < C; j += 32) {
    float v = r * (dyr[j] * g[j] - s1 - (xr[j] - m) * r * s2);
    dxr[j] = acc ? dxr[j] + v : v;
  }
}

struct term_ln_g {
  const float *dy, *x, *mean, *rstd;
  int C;
  __device__ double operator()(int i, int j) const {
    size_t k = (size_t)i * C + j;
    return (double)dy[k] * (double)((x[k] - mean[i]) * rstd[i]);
  }
};

/* The fast backward: one warp a row (lane l owns columns 4l + 128k, k < K,
 * as float4s), 8 warps a block over a band of rows; each lane keeps its
 * columns' dgamma / dbeta terms of the band in registers, the block's warps
 * add theirs in a fixed order through shared memory, and one double partial
 * per band and column goes to part (dgamma) and part + R C (dbeta), reduced
 * once by ctk_colsum_finish. Deterministic; no second pass over dy or x. */
template <int K>
__global__ void ctk_ln_bwd_fused(float *dx, double *part, const float *dy, const float *x, const float *mean,
                                 const float *rstd, const float *g, int N, int C, int per, int acc) {
  extern __shared__ float sh[]; /* [2][C] */
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = blockIdx.y * per, r1 = min(N, r0 + per);
  float4 ag[K], ab[K];
#pragma unroll
  for (int k = 0; k < K; k++) ag[k] = ab[k] = make_float4(0, 0, 0, 0);
  for (int row = r0 + w; row < r1; row += 8) {
    const float *xr = x + (size_t)row * C, *dyr = dy + (size_t)row * C;
    float m = mean[row], r = rstd[row], s1 = 0, s2 = 0;
    float4 xh[K], d[K];
#pragma unroll
    for (int k = 0; k < K; k++) {
      int j = 4 * lane + 128 * k;
      if (j >= C) continue;
      float4 a = *(const float4 *)(xr + j), e = *(const float4 *)(dyr + j);
      xh[k] = make_float4((a.x - m) * r, (a.y - m) * r, (a.z - m) * r, (a.w - m) * r);
      d[k] = e;
      ag[k].x += e.x * xh[k].x, ag[k].y += e.y * xh[k].y, ag[k].z += e.z * xh[k].z, ag[k].w += e.w * xh[k].w;
      ab[k].x += e.x, ab[k].y += e.y, ab[k].z += e.z, ab[k].w += e.w;
      float gx = e.x * g[j], gy = e.y * g[j + 1], gz = e.z * g[j + 2], gw = e.w * g[j + 3];
      s1 += (gx + gy) + (gz + gw);
      s2 += (gx * xh[k].x + gy * xh[k].y) + (gz * xh[k].z + gw * xh[k].w);
    }
    if (!dx) continue;
    s1 = warp_sum(s1) / (float)C;
    s2 = warp_sum(s2) / (float)C;
#pragma unroll
    for (int k = 0; k < K; k++) {
      int j = 4 * lane + 128 * k;
      if (j >= C) continue;
      float4 v = make_float4(r * (d[k].x * g[j] - s1 - xh[k].x * s2), r * (d[k].y * g[j + 1] - s1 - xh[k].y * s2),
                             r * (d[k].z * g[j + 2] - s1 - xh[k].z * s2), r * (d[k].w * g[j + 3] - s1 - xh[k].w * s2));
      float4 *o = (float4 *)(dx + (size_t)row * C + j);
      if (acc) {
        float4 p = *o;
        v.x += p.x, v.y += p.y, v.z += p.z, v.w += p.w;
      }
      *o = v;
    }
  }
  /* warps add their band sums in order 0..7 */
  for (int ww = 0; ww < 8; ww++) {
    if (w == ww) {
#pragma unroll
      for (int k = 0; k < K; k++) {
        int j = 4 * lane + 128 * k;
        if (j >= C) continue;
        float *pg = sh + j, *pb = sh + C + j;
        if (ww == 0) {
          pg[0] = ag[k].x, pg[1] = ag[k].y, pg[2] = ag[k].z, pg[3] = ag[k].w;
          pb[0] = ab[k].x, pb[1] = ab[k].y, pb[2] = ab[k].z, pb[3] = ab[k].w;
        } else {
          pg[0] += ag[k].x, pg[1] += ag[k].y, pg[2] += ag[k].z, pg[3] += ag[k].w;
          pb[0] += ab[k].x, pb[1] += ab[k].y, pb[2] += ab[k].z, pb[3] += ab[k].w;
        }
      }
    }
    __syncthreads();
  }
  size_t RC = (size_t)gridDim.y * C;
  for (int j = threadIdx.x; j < C; j += blockDim.x) {
    part[(size_t)blockIdx.y * C + j] = sh[j];
    part[RC + (size_t)blockIdx.y * C + j] = sh[C + j];
  }
}

template <int K>
static void ln_bwd_fused(bmct_ctx *c, float *dx, float *dg, float *db, const float *dy, const float *x,
                         const float *mean, const float *rstd, const float *g, int N, int C, int acc) {
  /* bands of about 64 rows (8 a warp), within half the scratch each */
  int R = (N + 63) / 64, cap = (int)((size_t)RED_ROWS * RED_COLS / 2 / (size_t)C);
  if (R > cap) R = cap;
  int per = (N + R - 1) / R;
  R = (N + per - 1) / per;
  ctk_ln_bwd_fused<K><<<dim3(1, R), 256, 2 * C * sizeof(float), c->st>>>(dx, c->red, dy, x, mean, rstd, g, N, C,
                                                                         per, acc);
  CKL("layernorm_backward");
  if (dg) ctk_colsum_finish<<<nblocks(C, 256), 256, 0, c->st>>>(dg, c->red, R, C);
  if (db) ctk_colsum_finish<<<nblocks(C, 256), 256, 0, c->st>>>(db, c->red + (size_t)R * C, R, C);
  CKL("layernorm_backward finish");
}

extern "C" void bmct_layernorm_backward(bmct_ctx *c, float *dx, float *dg, float *db, const float *dy,
                                        const float *x, const float *mean, const float *rstd, const float *g,
                                        int N, int C, int accumulate) {
  if (N <= 0) return;
  if (C % 4 == 0 && bm_al16(dy) && bm_al16(x) && (!dx || bm_al16(dx)) && (dx || dg || db)) {
    switch ((C + 127) / 128) {
    case 1: return ln_bwd_fused<1>(c, dx, dg, db, dy, x, mean, rstd, g, N, C, accumulate);
    case 2: return ln_bwd_fused<2>(c, dx, dg, db, dy, x, mean, rstd, g, N, C, accumulate);
    case 3: return ln_bwd_fused<3>(c, dx, dg, db, dy, x, mean, rstd, g, N, C, accumulate);
    case 4: return ln_bwd_fused<4>(c, dx, dg, db, dy, x, mean, rstd, g, N, C, accumulate);
    case 6: return ln_bwd_fused<6>(c, dx, dg, db, dy, x, mean, rstd, g, N, C, accumulate);
    case 8: return ln_bwd_fused<8>(c, dx, dg, db, dy, x, mean, rstd, g, N, C, accumulate);
    default: break;
    }
  }
  if (dx) {
    ctk_ln_bwd<<<nblocks(N, 8), 256, 0, c->st>>>(dx, dy, x, mean, rstd, g, N, C, accumulate);
    CKL("layernorm_backward");
  }
  if (dg) colsum(c, dg, term_ln_g{dy, x, mean, rstd, C}, N, C);
  if (db) colsum(c, db, term_plain<float>{dy, C}, N, C);
}

template <typename T> __global__ void ctk_softmax_bwd(T *dx, const T *dy, const T *y, int N, int n) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  size_t o = (size_t)row * n;
  float s = 0;
  for (int j = lane; j < n; j += 32) s += ld(y[o + j]) * ld(dy[o + j]);
  s = warp_sum(s);
  for (int j = lane; j < n; j += 32) dx[o + j] = st<T>(ld(y[o + j]) * (ld(dy[o + j]) - s));
}
extern "C" void bmct_softmax_backward(bmct_ctx *c, int prec, void *dx, const void *dy, const void *y, int N, int n) {
  BMCT_DISPATCH(prec, T, ctk_softmax_bwd<T><<<nblocks(N, 8), 256, 0, c->st>>>((T *)dx, (const T *)dy, (const T *)y, N, n));
  CKL("softmax_backward");
}

__global__ void ctk_l2_fwd(float *y, const float *x, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float *xr = x + (size_t)row * C;
  double s = 0;
  for (int j = lane; j < C; j += 32) s += (double)xr[j] * xr[j];
  float nrm = (float)sqrt(warp_sumd(s));
  float d = nrm > 1e-12f ? nrm : 1e-12f;
  for (int j = lane; j < C; j += 32) y[(size_t)row * C + j] = xr[j] / d;
}
__global__ void ctk_l2_bwd(float *dx, const float *dy, const float *x, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float *xr = x + (size_t)row * C, *dyr = dy + (size_t)row * C;
  float *dxr = dx + (size_t)row * C;
  double s = 0;
  for (int j = lane; j < C; j += 32) s += (double)xr[j] * xr[j];
  double nrm = sqrt(warp_sumd(s));
  if (nrm <= 1e-12) {
    for (int j = lane; j < C; j += 32) dxr[j] = (float)(dyr[j] / 1e-12);
    return;
  }
  double yd = 0;
  for (int j = lane; j < C; j += 32) yd += xr[j] / nrm * dyr[j];
  yd = warp_sumd(yd);
  for (int j = lane; j < C; j += 32) dxr[j] = (float)((dyr[j] - xr[j] / nrm * yd) / nrm);
}
extern "C" void bmct_l2norm_fwd(bmct_ctx *c, float *y, const float *x, int N, int C) {
  ctk_l2_fwd<<<nblocks(N, 8), 256, 0, c->st>>>(y, x, N, C);
  CKL("l2norm_fwd");
}
extern "C" void bmct_l2norm_backward(bmct_ctx *c, float *dx, const float *dy, const float *x, int N, int C) {
  ctk_l2_bwd<<<nblocks(N, 8), 256, 0, c->st>>>(dx, dy, x, N, C);
  CKL("l2norm_backward");
}

/* ---- patch embedding, tokens ---- */

extern "C" void bmct_patch_embed_backward(bmct_ctx *c, int prec, float *dW, float *db, const void *dpatch,
                                          const void *cols, int B, int S, int P, int C) {
  int G = S / P;
  bmct_linear_backward(c, prec, NULL, 0, dW, db, dpatch, cols, NULL, B * G * G, 3 * P * P, C, 0);
}

template <typename T> __global__ void ctk_tokens_dpatch(T *dpatch, const float *dx, int B, int GG, int W) {
  size_t n = (size_t)B * GG * W, i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  int c = (int)(i % W);
  size_t row = i / W, b = row / GG, p = row % GG;
  dpatch[i] = st<T>(dx[(b * (GG + 1) + 1 + p) * W + c]);
}
/* one thread per (t, c): the sum over images in order */
__global__ void ctk_tokens_dpos(float *dcls, float *dpos, const float *dx, int B, int GG, int W) {
  int T = GG + 1;
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= (size_t)T * W) return;
  double s = 0;
  for (int b = 0; b < B; b++) s += dx[(size_t)b * T * W + i];
  if (dpos) dpos[i] += (float)s;
  if (dcls && i < (size_t)W) dcls[i] += (float)s;
}
extern "C" void bmct_vit_tokens_backward(bmct_ctx *c, int prec, void *dpatch, float *dcls, float *dpos,
                                         const float *dx, int B, int GG, int W) {
  if (dpatch) {
    size_t n = (size_t)B * GG * W;
    BMCT_DISPATCH(prec, T, ctk_tokens_dpatch<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)dpatch, dx, B, GG, W));
    CKL("tokens_backward");
  }
  if (dcls || dpos) {
    size_t n = (size_t)(GG + 1) * W;
    ctk_tokens_dpos<<<nblocks(n, 256), 256, 0, c->st>>>(dcls, dpos, dx, B, GG, W);
    CKL("tokens_backward pos");
  }
}

/* ---- dropout: bw_embed.c's mask ---- */

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t mix64_host(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__global__ void ctk_dropout(float *y, const float *x, size_t n, uint64_t key, uint32_t thresh, float scale) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  uint32_t u = (uint32_t)(mix64(key ^ (uint64_t)i) >> 40);
  y[i] = u >= thresh ? x[i] * scale : 0.0f;
}
extern "C" void bmct_dropout(bmct_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed,
                             uint64_t step, uint64_t site) {
  if (p <= 0.0f) {
    if (y != x) CK(cudaMemcpyAsync(y, x, n * 4, cudaMemcpyDeviceToDevice, c->st));
    return;
  }
  uint64_t key = mix64_host(mix64_host(mix64_host(seed) ^ step) ^ site);
  uint32_t thresh = (uint32_t)((double)p * 16777216.0 + 0.5);
  ctk_dropout<<<nblocks(n, 256), 256, 0, c->st>>>(y, x, n, key, thresh, 1.0f / (1.0f - p));
  CKL("dropout");
}

/* ---- losses: a thread per row, in double as loss.c ---- */

__global__ void ctk_xent(double *rows, const float *logits, const float *target, int B, int C, float *dl,
                       float scale) {
  int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float *x = logits + (size_t)b * C, *y = target + (size_t)b * C;
  double mx = x[0];
  for (int k = 1; k < C; k++) mx = x[k] > mx ? x[k] : mx;
  double sum = 0;
  for (int k = 0; k < C; k++) sum += exp(x[k] - mx);
  double logz = mx + log(sum), tot = 0, ysum = 0;
  for (int k = 0; k < C; k++) tot -= y[k] * (x[k] - logz), ysum += y[k];
  rows[b] = tot;
  if (dl)
    for (int k = 0; k < C; k++) dl[(size_t)b * C + k] = (float)((exp(x[k] - logz) * ysum - y[k]) / B) * scale;
}
__global__ void ctk_bce(double *rows, const float *logits, const float *target, const float *pw, int B, int C,
                      float *dl, float scale) {
  int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  double n = (double)B * C, tot = 0;
  for (int k = 0; k < C; k++) {
    size_t i = (size_t)b * C + k;
    double x = logits[i], y = target[i], w = pw ? pw[k] : 1.0;
    double coef = 1 + (w - 1) * y;
    double sp = log1p(exp(-fabs(x))) + (x < 0 ? -x : 0);
    tot += (1 - y) * x + coef * sp;
    if (dl) {
      double sig = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
      dl[i] = (float)(((1 - y) - coef * (1 - sig)) / n) * scale;
    }
  }
  rows[b] = tot;
}
extern "C" double bmct_loss(bmct_ctx *c, int multilabel, const float *logits, const float *target,
                            const float *pos_weight, int B, int C, float *dlogits, float scale) {
  if (B > RED_ROWS * RED_COLS) bm_die("internal error: loss over %d rows", B);
  if (multilabel) ctk_bce<<<nblocks(B, 128), 128, 0, c->st>>>(c->red, logits, target, pos_weight, B, C, dlogits, scale);
  else ctk_xent<<<nblocks(B, 128), 128, 0, c->st>>>(c->red, logits, target, B, C, dlogits, scale);
  CKL("loss");
  double *h = (double *)bm_xmalloc(sizeof(double) * (size_t)B);
  bmct_download(c, h, c->red, sizeof(double) * (size_t)B);
  double t = 0;
  for (int b = 0; b < B; b++) t += h[b];
  free(h);
  return multilabel ? t / ((double)B * C) : t / B;
}

/* ---- AdamW, norms ---- */

template <typename T> __global__ void ctk_adamw(float *w, T *wc, const float *g, float *m, float *v, size_t n,
                                              double decay, double b1, double b2, float step_size,
                                              float sqrt_bc2, float eps, float gscale) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  float gi = gscale == 1.0f ? g[i] : g[i] * gscale;
  float wi = (float)(w[i] * decay);
  float mi = (float)(b1 * m[i] + (1 - b1) * gi);
  float vi = (float)(b2 * v[i] + (1 - b2) * (double)gi * gi);
  float denom = sqrtf(vi) / sqrt_bc2 + eps;
  wi -= step_size * mi / denom;
  w[i] = wi, m[i] = mi, v[i] = vi;
  if (wc) wc[i] = st<T>(wi);
}
extern "C" void bmct_adamw(bmct_ctx *c, float *w, void *wc, int prec, const float *g, float *m, float *v,
                           size_t n, double lr, double wd, double beta1, double beta2, double eps, long step,
                           float gscale) {
  if (n == 0) return;
  double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
  float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
  if (!wc) prec = BMCT_FP32;
  BMCT_DISPATCH(prec, T, ctk_adamw<T><<<nblocks(n, 256), 256, 0, c->st>>>(w, (T *)wc, g, m, v, n, 1 - lr * wd,
                                                                         beta1, beta2, step_size, sqrt_bc2,
                                                                         (float)eps, gscale));
  CKL("adamw");
}

/* part[block] = sum of squares of the block's grid-stride slice */
__global__ void ctk_sumsq(double *part, const float *g, size_t n) {
  __shared__ double s[8];
  double a = 0;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
    a += (double)g[i] * g[i];
  a = warp_sumd(a);
  if (threadIdx.x % 32 == 0) s[threadIdx.x / 32] = a;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int k = 0; k < 8; k++) t += s[k];
    part[blockIdx.x] = t;
  }
}
extern "C" double bmct_sumsq(bmct_ctx *c, const float *g, size_t n) {
  int nb = 1024;
  ctk_sumsq<<<nb, 256, 0, c->st>>>(c->red, g, n);
  CKL("sumsq");
  bmct_download(c, c->hred, c->red, sizeof(double) * (size_t)nb);
  double t = 0;
  for (int b = 0; b < nb; b++) t += c->hred[b];
  return t;
}

__global__ void ctk_scale(float *g, size_t n, float s) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i < n) g[i] *= s;
}
extern "C" void bmct_scale(bmct_ctx *c, float *g, size_t n, float s) {
  if (n == 0) return;
  ctk_scale<<<nblocks(n, 256), 256, 0, c->st>>>(g, n, s);
  CKL("scale");
}
