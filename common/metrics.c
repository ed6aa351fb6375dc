#define _GNU_SOURCE
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

static int cmp_desc(const void *a, const void *b, void *ctx) {
  const double *s = ctx;
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  if (s[i] > s[j]) return -1;
  if (s[i] < s[j]) return 1;
  return (i > j) - (i < j); /* deterministic order inside a tie group */
}

void bm_order_desc(const double *s, size_t n, size_t *order) {
  for (size_t i = 0; i < n; i++) order[i] = i;
  qsort_r(order, n, sizeof *order, cmp_desc, (void *)s);
}

void bm_walk_init(bm_walk *it, const double *s, const uint8_t *y, const uint32_t *w,
                  const size_t *order, size_t n) {
  *it = (bm_walk){.s = s, .y = y, .w = w, .order = order, .n = n};
}

int bm_walk_next(bm_walk *it) {
  if (it->pos >= it->n) return 0;
  it->thr = it->s[it->order[it->pos]];
  while (it->pos < it->n) {
    size_t i = it->order[it->pos];
    if (it->s[i] != it->thr) break;
    int64_t wt = it->w ? it->w[i] : 1;
    if (it->y[i]) it->tp += wt;
    else it->fp += wt;
    it->pos++;
  }
  return 1;
}

void bm_count_pn(const uint8_t *y, const uint32_t *w, size_t n, int64_t *pos, int64_t *neg) {
  int64_t p = 0, q = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t wt = w ? w[i] : 1;
    if (y[i]) p += wt;
    else q += wt;
  }
  *pos = p;
  *neg = q;
}

/* The trapezoids between consecutive ROC vertices, in units of one
 * positive x one negative, times two: the integer 2U of Mann-Whitney (a
 * tied pair adds 1, a won pair 2). Summed in double, exact below 2^53. */
double bm_auc(const double *s, const uint8_t *y, const uint32_t *w, const size_t *order, size_t n) {
  int64_t P, N;
  bm_count_pn(y, w, n, &P, &N);
  if (P == 0 || N == 0) return NAN;
  bm_walk it;
  bm_walk_init(&it, s, y, w, order, n);
  double area2 = 0;
  int64_t tp0 = 0, fp0 = 0;
  while (bm_walk_next(&it)) {
    area2 += (double)(it.fp - fp0) * (double)(it.tp + tp0);
    tp0 = it.tp;
    fp0 = it.fp;
  }
  return area2 / (2.0 * (double)P * (double)N);
}

double bm_ap(const double *s, const uint8_t *y, const uint32_t *w, const size_t *order, size_t n) {
  int64_t P, N;
  bm_count_pn(y, w, n, &P, &N);
  if (P == 0) return NAN;
  bm_walk it;
  bm_walk_init(&it, s, y, w, order, n);
  double ap = 0;
  int64_t tp0 = 0;
  while (bm_walk_next(&it)) {
    if (it.tp > tp0) ap += (double)(it.tp - tp0) / (double)P * ((double)it.tp / (double)(it.tp + it.fp));
    tp0 = it.tp;
  }
  return ap;
}

size_t bm_roc_curve(const double *s, const uint8_t *y, const size_t *order, size_t n, double **fpr,
                    double **tpr) {
  int64_t P, N;
  bm_count_pn(y, NULL, n, &P, &N);
  double *x = bm_xmalloc(bm_mul_size(n + 1, sizeof *x));
  double *t = bm_xmalloc(bm_mul_size(n + 1, sizeof *t));
  size_t k = 0;
  x[k] = t[k] = 0;
  k++;
  bm_walk it;
  bm_walk_init(&it, s, y, NULL, order, n);
  while (bm_walk_next(&it)) {
    x[k] = (double)it.fp / (double)N;
    t[k] = (double)it.tp / (double)P;
    k++;
  }
  *fpr = x;
  *tpr = t;
  return k;
}

double bm_best_threshold(const double *s, const uint8_t *y, const size_t *order, size_t n,
                         bm_thr_metric m) {
  int64_t P, N;
  bm_count_pn(y, NULL, n, &P, &N);
  if (P == 0 || N == 0) return NAN;
  bm_walk it;
  bm_walk_init(&it, s, y, NULL, order, n);
  /* the best so far as the fraction num/den (F1) or the integer num (J) */
  __int128 bnum = 0, bden = 1;
  double best = NAN;
  int have = 0;
  while (bm_walk_next(&it)) {
    __int128 num, den;
    if (m == BM_THR_F1) {
      num = 2 * (__int128)it.tp; /* F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P) */
      den = (__int128)it.tp + it.fp + P;
    } else {
      num = (__int128)it.tp * N - (__int128)it.fp * P; /* J * P * N */
      den = 1;
    }
    if (!have || num * bden > bnum * den) { /* strictly better: ties keep the higher threshold */
      have = 1;
      bnum = num;
      bden = den;
      best = it.thr;
    }
  }
  return best;
}

double bm_ratio(double num, double den) { return den == 0 ? NAN : num / den; }
double bm_f1(const bm_counts *c) { return bm_ratio(2.0 * (double)c->tp, 2.0 * (double)c->tp + (double)c->fp + (double)c->fn); }
double bm_sensitivity(const bm_counts *c) { return bm_ratio((double)c->tp, (double)(c->tp + c->fn)); }
double bm_specificity(const bm_counts *c) { return bm_ratio((double)c->tn, (double)(c->tn + c->fp)); }

double bm_nanmean(const double *v, size_t n, size_t stride, size_t *used) {
  double sum = 0;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    double x = v[i * stride];
    if (isfinite(x)) {
      sum += x;
      k++;
    }
  }
  if (used) *used = k;
  return k ? sum / (double)k : NAN;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bm_percentile(double *v, size_t n, double q) {
  if (n == 0) return NAN;
  qsort(v, n, sizeof *v, cmp_double);
  double pos = q / 100.0 * (double)(n - 1);
  size_t lo = (size_t)floor(pos);
  if (lo >= n - 1) return v[n - 1];
  double t = pos - (double)lo, a = v[lo], b = v[lo + 1];
  /* numpy's lerp: from the nearer end, so that t = 1 gives b exactly */
  return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
}
