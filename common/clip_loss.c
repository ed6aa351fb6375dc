#include "clip_loss.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

float bm_clip_clamp_log_scale(float ls) {
  if (ls < 0.0f) return 0.0f;
  if (ls > (float)BM_CLIP_LOG_SCALE_MAX) return (float)BM_CLIP_LOG_SCALE_MAX;
  return ls;
}

/* C[M,N] = A(T)[M,K] @ Bm[K,N], rows of C in bands over the OpenMP threads,
 * each band one single-threaded sgemm (as kernels.c splits its GEMMs).
 * transA: A is stored [K,M] (so row m of op(A) is column m of A). */
static void gemm_rows(float *C, const float *A, int transA, const float *Bm, int M, int N, int K,
                      float alpha) {
  int nt = omp_get_max_threads();
  if (nt > 1 && (omp_in_parallel() || M < 16 * nt)) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    int i0 = (int)((long)M * t / n), i1 = (int)((long)M * (t + 1) / n);
    if (i1 > i0) {
      const float *a = transA ? A + i0 : A + (size_t)i0 * K;
      cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, CblasNoTrans, i1 - i0, N, K,
                  alpha, a, transA ? M : K, Bm, N, 0.0f, C + (size_t)i0 * N, N);
    }
  }
}

double bm_clip_loss(const float *img, const float *txt, int B, int E, float log_scale,
                    float *dimg, float *dtxt, float *dlog_scale) {
  if (B < 1) {
    if (dlog_scale) *dlog_scale = 0;
    return 0;
  }
  size_t BB = (size_t)B * B;
  float *S = malloc(BB * sizeof *S);
  /* per row i: lse of row i; per column j: lse of column j; both in double */
  double *lse_r = malloc((size_t)B * sizeof *lse_r), *lse_c = malloc((size_t)B * sizeof *lse_c);
  double *dls = malloc((size_t)B * sizeof *dls);
  if (!S || !lse_r || !lse_c || !dls) bm_die("clip loss: out of memory for a %d x %d batch", B, B);
  const double scale = exp((double)log_scale);

  bm_linear(S, img, txt, NULL, B, E, B); /* S[i,j] = img_i . txt_j (unscaled) */

#pragma omp parallel for schedule(static) if (B >= 64 && !omp_in_parallel())
  for (int i = 0; i < B; i++) {
    const float *s = S + (size_t)i * B;
    float mx = s[0];
    for (int j = 1; j < B; j++) mx = s[j] > mx ? s[j] : mx;
    double sum = 0;
    for (int j = 0; j < B; j++) sum += exp(scale * ((double)s[j] - mx));
    lse_r[i] = scale * mx + log(sum);
  }
  /* columns in bands of 64, each band walking down the rows (cache-friendly) */
  int nband = (B + 63) / 64;
#pragma omp parallel for schedule(dynamic, 1) if (B >= 64 && !omp_in_parallel())
  for (int band = 0; band < nband; band++) {
    int j0 = band * 64, j1 = j0 + 64 < B ? j0 + 64 : B;
    float mx[64];
    double sum[64];
    for (int j = j0; j < j1; j++) mx[j - j0] = S[j];
    for (int i = 1; i < B; i++)
      for (int j = j0; j < j1; j++) {
        float v = S[(size_t)i * B + j];
        mx[j - j0] = v > mx[j - j0] ? v : mx[j - j0];
      }
    for (int j = j0; j < j1; j++) sum[j - j0] = 0;
    for (int i = 0; i < B; i++)
      for (int j = j0; j < j1; j++) sum[j - j0] += exp(scale * ((double)S[(size_t)i * B + j] - mx[j - j0]));
    for (int j = j0; j < j1; j++) lse_c[j] = scale * mx[j - j0] + log(sum[j - j0]);
  }

  double loss = 0;
  for (int i = 0; i < B; i++) {
    double diag = scale * (double)S[(size_t)i * B + i];
    loss += (lse_r[i] - diag) + (lse_c[i] - diag);
  }
  loss /= 2.0 * B;

  if (dimg || dtxt || dlog_scale) {
    /* G[i,j] = dloss/dlogits[i,j] = (p_row[i,j] + p_col[i,j] - 2 delta_ij) / 2B.
     * dloss/dlog_scale = sum G * logits (dlogits/dlog_scale = logits), taken
     * before S is overwritten by dloss/dS = scale * G. */
    const double inv2B = 1.0 / (2.0 * B);
#pragma omp parallel for schedule(static) if (B >= 64 && !omp_in_parallel())
    for (int i = 0; i < B; i++) {
      float *s = S + (size_t)i * B;
      double acc = 0;
      for (int j = 0; j < B; j++) {
        double z = scale * (double)s[j];
        double g = (exp(z - lse_r[i]) + exp(z - lse_c[j]) - (i == j ? 2.0 : 0.0)) * inv2B;
        acc += g * z;
        s[j] = (float)(g * scale);
      }
      dls[i] = acc;
    }
    if (dlog_scale) {
      double d = 0;
      for (int i = 0; i < B; i++) d += dls[i]; /* fixed order: same bits at any thread count */
      *dlog_scale = (float)d;
    }
    if (dimg) gemm_rows(dimg, S, 0, txt, B, E, B, 1.0f); /* dS @ txt */
    if (dtxt) gemm_rows(dtxt, S, 1, img, B, E, B, 1.0f); /* dS^T @ img */
  }
  free(S);
  free(lse_r);
  free(lse_c);
  free(dls);
  return loss;
}
