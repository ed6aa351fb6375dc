/* bw_norm.c - LayerNorm, softmax and L2 normalization backward (see backward.h). */
#include <math.h>
#include <stdlib.h>

#include "backward.h"
#include "bw_internal.h"
#include "util.h"

void bm_layernorm_backward(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *g, int N, int C,
                           int accumulate) {
  int nt = bw_team();
#pragma omp parallel num_threads(nt) if (nt > 1 && (size_t)N * C > 16384)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads(), i0, i1;
    /* dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * g */
    if (dx) {
      bw_band(N, 1, t, n, &i0, &i1);
      for (int i = i0; i < i1; i++) {
        const float *xr = x + (size_t)i * C, *dyr = dy + (size_t)i * C;
        float *dxr = dx + (size_t)i * C;
        float m = mean[i], r = rstd[i], s1 = 0.0f, s2 = 0.0f;
#pragma omp simd reduction(+ : s1, s2)
        for (int j = 0; j < C; j++) {
          float d = dyr[j] * g[j];
          s1 += d;
          s2 += d * (xr[j] - m) * r;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        if (accumulate) {
#pragma omp simd
          for (int j = 0; j < C; j++) dxr[j] += r * (dyr[j] * g[j] - s1 - (xr[j] - m) * r * s2);
        } else {
#pragma omp simd
          for (int j = 0; j < C; j++) dxr[j] = r * (dyr[j] * g[j] - s1 - (xr[j] - m) * r * s2);
        }
      }
    }
    /* dg, db: sums over rows, each thread a band of columns, rows in order */
    if (dg || db) {
      bw_band(C, 16, t, n, &i0, &i1);
      int w = i1 - i0;
      if (w > 0) {
        double *acc = calloc(2 * (size_t)w, sizeof(double));
        if (!acc) bm_die("out of memory in bm_layernorm_backward");
        for (int i = 0; i < N; i++) {
          const float *xr = x + (size_t)i * C + i0, *dyr = dy + (size_t)i * C + i0;
          float m = mean[i], r = rstd[i];
          for (int j = 0; j < w; j++) {
            acc[j] += dyr[j] * ((xr[j] - m) * r);
            acc[w + j] += dyr[j];
          }
        }
        for (int j = 0; j < w; j++) {
          if (dg) dg[i0 + j] += (float)acc[j];
          if (db) db[i0 + j] += (float)acc[w + j];
        }
        free(acc);
      }
    }
  }
}

void bm_softmax_backward(float *dx, const float *dy, const float *y, int N, int n) {
#pragma omp parallel for schedule(static) if (N >= 64 && !omp_in_parallel())
  for (int i = 0; i < N; i++) {
    const float *yr = y + (size_t)i * n, *dyr = dy + (size_t)i * n;
    float *dxr = dx + (size_t)i * n, s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) s += yr[j] * dyr[j];
#pragma omp simd
    for (int j = 0; j < n; j++) dxr[j] = yr[j] * (dyr[j] - s);
  }
}

/* Norm summed in double as bm_l2_normalize does. */
void bm_l2_normalize_backward(float *dx, const float *dy, const float *x, int N, int C) {
  for (int i = 0; i < N; i++) {
    const float *xr = x + (size_t)i * C, *dyr = dy + (size_t)i * C;
    float *dxr = dx + (size_t)i * C;
    double ss = 0;
    for (int j = 0; j < C; j++) ss += (double)xr[j] * xr[j];
    double nrm = sqrt(ss);
    if (nrm <= 1e-12) {
      for (int j = 0; j < C; j++) dxr[j] = (float)(dyr[j] / 1e-12);
      continue;
    }
    /* y = x / nrm: dx = (dy - y (y . dy)) / nrm */
    double yd = 0;
    for (int j = 0; j < C; j++) yd += xr[j] / nrm * dyr[j];
    for (int j = 0; j < C; j++) dxr[j] = (float)((dyr[j] - xr[j] / nrm * yd) / nrm);
  }
}
