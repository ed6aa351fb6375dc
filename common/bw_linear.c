/* bw_linear.c - backward of linear, GELU and patch embedding (see backward.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "bw_internal.h"
#include "kernels.h"
#include "util.h"

void bm_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int N, int in, int out, int accumulate) {
  int nt = bw_team();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads(), i0, i1;
    /* dx[N,in] (+)= dy[N,out] @ W[out,in]: each thread a band of rows */
    if (dx) {
      bw_band(N, 8, t, n, &i0, &i1);
      if (i1 > i0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, in, out, 1.0f,
                    dy + (size_t)i0 * out, out, W, in, accumulate ? 1.0f : 0.0f,
                    dx + (size_t)i0 * in, in);
    }
    /* dW[out,in] += dy^T[out,N] @ x[N,in]: each thread a band of W's rows,
     * summing over all N rows itself (no cross-thread reduction) */
    if (dW) {
      bw_band(out, 8, t, n, &i0, &i1);
      if (i1 > i0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1 - i0, in, N, 1.0f, dy + i0, out,
                    x, in, 1.0f, dW + (size_t)i0 * in, in);
    }
    /* db[out] += column sums of dy: a band of columns each, rows in order,
     * in double (N is thousands of tokens) */
    if (db) {
      bw_band(out, 16, t, n, &i0, &i1);
      if (i1 > i0) {
        double *acc = calloc((size_t)(i1 - i0), sizeof(double));
        if (!acc) bm_die("out of memory in bm_linear_backward");
        for (int i = 0; i < N; i++) {
          const float *r = dy + (size_t)i * out + i0;
          for (int j = 0; j < i1 - i0; j++) acc[j] += r[j];
        }
        for (int j = 0; j < i1 - i0; j++) db[i0 + j] += (float)acc[j];
        free(acc);
      }
    }
  }
}

void bm_linear_gelu_train(float *pre, float *y, const float *x, const float *W, const float *b,
                          int N, int in, int out) {
  size_t n = (size_t)N * out;
  bm_linear(pre, x, W, b, N, in, out);
  memcpy(y, pre, n * sizeof(float));
  bm_gelu(y, n);
}

void bm_gelu_backward(float *dx, const float *dy, const float *pre, size_t n) {
  const float inv_sqrt2 = 0.70710678118654752f, inv_sqrt_2pi = 0.39894228040143268f;
#pragma omp parallel for schedule(static) if (n > 65536 && !omp_in_parallel())
  for (size_t i = 0; i < n; i++) {
    float x = pre[i];
    float cdf = 0.5f * (1.0f + erff(x * inv_sqrt2));
    float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
    dx[i] = dy[i] * (cdf + x * pdf);
  }
}

void bm_patch_embed_backward(float *dW, float *db, const float *dy, const float *cols, int B,
                             int S, int P, int C) {
  int G = S / P;
  bm_linear_backward(NULL, dW, db, dy, cols, NULL, B * G * G, 3 * P * P, C, 0);
}
