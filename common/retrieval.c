#include "retrieval.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

double bm_pair_score(const float *img, const float *txt, size_t d) {
  double s = 0;
  for (size_t k = 0; k < d; k++) s += (double)img[k] * (double)txt[k];
  return s;
}

/* What count_tile needs besides the tile: the embeddings, and per query
 * the window [lo, hi] around its true pair's score outside of which a GEMM
 * score cannot change the exact comparison (float bounds rounded outwards,
 * so the window only grows). */
typedef struct {
  const float *img, *txt;
  size_t d;
  const double *truth;      /* bm_pair_score of each true pair */
  const float *lo_i, *hi_i; /* image queries */
  const float *lo_t, *hi_t; /* text queries */
} ranker;

/* One comparison, exactly: GEMM score s of (img a, txt b) against a query's
 * true score and window. */
static inline void compare(const ranker *rk, float s, double truth, float lo, float hi, size_t a,
                           size_t b, int64_t *gt, int64_t *eq) {
  if (s > hi) {
    (*gt)++;
  } else if (s >= lo) {
    double e = bm_pair_score(rk->img + a * rk->d, rk->txt + b * rk->d, rk->d);
    *gt += e > truth;
    *eq += e == truth;
  }
}

/* Add one tile's comparisons to the counts: image query r0+i against the
 * texts of the tile, text query c0+j against its images. A row is first
 * scanned in a loop the compiler vectorizes; only a row with a score in
 * some window (and a row holding its own true pair) takes the exact path.
 * Rows go to threads; each thread sums its columns apart, then adds them. */
static void count_tile(const ranker *rk, const float *S, size_t r0, size_t nr, size_t c0, size_t nc,
                       int64_t *ib, int64_t *it, int64_t *tb, int64_t *tt) {
  const float *lo_t = rk->lo_t + c0, *hi_t = rk->hi_t + c0;
#pragma omp parallel if (nr * nc >= (size_t)1 << 16) /* small tiles: not worth the threads */
  {
    int64_t *cb = bm_xcalloc(nc, sizeof *cb), *ce = bm_xcalloc(nc, sizeof *ce);
#pragma omp for schedule(static)
    for (size_t i = 0; i < nr; i++) {
      size_t a = r0 + i;
      const float *row = S + i * nc;
      float lo = rk->lo_i[a], hi = rk->hi_i[a];
      int32_t gt = 0, near = a >= c0 && a < c0 + nc;
#pragma omp simd reduction(+ : gt) reduction(| : near)
      for (size_t j = 0; j < nc; j++) {
        float s = row[j];
        gt += s > hi;
        near |= ((s >= lo) & (s <= hi)) | ((s >= lo_t[j]) & (s <= hi_t[j]));
      }
      if (!near) {
#pragma omp simd
        for (size_t j = 0; j < nc; j++) cb[j] += row[j] > hi_t[j];
        ib[a] += gt;
        continue;
      }
      int64_t g = 0, e = 0;
      for (size_t j = 0; j < nc; j++) {
        size_t b = c0 + j;
        if (a == b) continue; /* the true pair itself */
        compare(rk, row[j], rk->truth[a], lo, hi, a, b, &g, &e);
        compare(rk, row[j], rk->truth[b], lo_t[j], hi_t[j], a, b, &cb[j], &ce[j]);
      }
      ib[a] += g;
      it[a] += e;
    }
#pragma omp critical
    for (size_t j = 0; j < nc; j++) {
      tb[c0 + j] += cb[j];
      tt[c0 + j] += ce[j];
    }
    free(cb);
    free(ce);
  }
}

static double norm(const float *v, size_t d) { return sqrt(bm_pair_score(v, v, d)); }

void bm_retrieval_counts(const float *img, const float *txt, size_t n, size_t d,
                         const bm_retrieval_opts *opt, int64_t *i2t_better, int64_t *i2t_tied,
                         int64_t *t2i_better, int64_t *t2i_tied) {
  size_t B = opt->block ? opt->block : 1024;
  if (B > n) B = n ? n : 1;
  /* the rounding bound below needs d * 2^-24 well under 1 */
  if (d > (size_t)1 << 22 || B > 46340) bm_die("retrieval: embedding width %zu or block %zu too large", d, B);
  float *S = bm_xmalloc(bm_mul_size(B * B, sizeof *S));
  double *truth = bm_xmalloc(bm_mul_size(n, sizeof *truth));
  float *win = bm_xmalloc(bm_mul_size(n, 4 * sizeof *win));
  float *lo_i = win, *hi_i = win + n, *lo_t = win + 2 * n, *hi_t = win + 3 * n;
  /* Any summation order of d products stays within gamma_d |a||b| of the
   * true dot product (gamma_d = d u / (1 - d u), u the unit roundoff), so an
   * sgemm score and bm_pair_score differ by at most (gamma_single +
   * gamma_double) |a||b|, plus the rounding of the windows to float; 1.01
   * covers the rounding of the bound itself. */
  double D = (double)d, us = 0x1p-24, ud = 0x1p-53;
  double g = 1.01 * (D * us / (1 - D * us) + D * ud / (1 - D * ud));
  double max_i = 0, max_t = 0;
  for (size_t i = 0; i < n; i++) {
    truth[i] = bm_pair_score(img + i * d, txt + i * d, d);
    hi_i[i] = (float)norm(img + i * d, d); /* the norms, for now */
    hi_t[i] = (float)norm(txt + i * d, d);
    max_i = hi_i[i] > max_i ? hi_i[i] : max_i;
    max_t = hi_t[i] > max_t ? hi_t[i] : max_t;
  }
  for (size_t i = 0; i < n; i++) {
    double ti = g * 1.001 * hi_i[i] * max_t, tt = g * 1.001 * hi_t[i] * max_i; /* 1.001: float norms */
    lo_i[i] = nextafterf((float)(truth[i] - ti), -INFINITY);
    hi_i[i] = nextafterf((float)(truth[i] + ti), INFINITY);
    lo_t[i] = nextafterf((float)(truth[i] - tt), -INFINITY);
    hi_t[i] = nextafterf((float)(truth[i] + tt), INFINITY);
  }
  ranker rk = {.img = img, .txt = txt, .d = d, .truth = truth, .lo_i = lo_i, .hi_i = hi_i, .lo_t = lo_t, .hi_t = hi_t};
  memset(i2t_better, 0, n * sizeof *i2t_better);
  memset(i2t_tied, 0, n * sizeof *i2t_tied);
  memset(t2i_better, 0, n * sizeof *t2i_better);
  memset(t2i_tied, 0, n * sizeof *t2i_tied);

  bm_progress prog;
  bm_progress_init(&prog, opt->quiet);
  size_t nblk = (n + B - 1) / B, done = 0;
  for (size_t r0 = 0; r0 < n; r0 += B) {
    size_t nr = n - r0 < B ? n - r0 : B;
    for (size_t c0 = 0; c0 < n; c0 += B) {
      size_t nc = n - c0 < B ? n - c0 : B;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)d, 1.0f, img + r0 * d,
                  (int)d, txt + c0 * d, (int)d, 0.0f, S, (int)nc);
      count_tile(&rk, S, r0, nr, c0, nc, i2t_better, i2t_tied, t2i_better, t2i_tied);
      done++;
      bm_progress_update(&prog, "retrieval: tile %zu of %zu", done, nblk * nblk);
    }
  }
  bm_progress_done(&prog);
  free(win);
  free(truth);
  free(S);
}

double bm_recall_at(const int64_t *better, const int64_t *tied, size_t n, int pessimistic, int64_t k) {
  if (n == 0) return 0;
  size_t hit = 0;
  for (size_t i = 0; i < n; i++) hit += better[i] + (pessimistic ? tied[i] : 0) + 1 <= k;
  return (double)hit / (double)n;
}
