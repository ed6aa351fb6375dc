/* metrics.h - classification metrics as scikit-learn 1.2 defines them.
 *
 * Scores are doubles, labels are 0/1 bytes. The ranking metrics (AUROC,
 * average precision, ROC curves, threshold search) walk the samples in
 * decreasing score order one tie group at a time, so tied scores form one
 * threshold: AUROC counts a tied positive/negative pair as one half, and
 * average precision takes one step per distinct score, as sklearn does.
 * Counts are exact integers; a ratio whose denominator is zero is NAN
 * ("undefined"), never 0 or 0.5: callers report it as null. */
#ifndef BM_METRICS_H
#define BM_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Indices 0..n-1 sorted by decreasing s (ties in index order). */
void bm_order_desc(const double *s, size_t n, size_t *order);

/* One pass over the tie groups of a score vector in decreasing order.
 * w (may be NULL) gives each sample a weight, the number of times a
 * bootstrap resample drew it. */
typedef struct {
  const double *s;
  const uint8_t *y;
  const uint32_t *w;
  size_t n, pos;
  const size_t *order;
  int64_t tp, fp; /* cumulative counts with score >= thr */
  double thr;     /* the current group's score */
} bm_walk;

void bm_walk_init(bm_walk *it, const double *s, const uint8_t *y, const uint32_t *w,
                  const size_t *order, size_t n);
/* Advance over the next tie group: 1, or 0 at the end. */
int bm_walk_next(bm_walk *it);
/* Positives and negatives (weighted) of the whole vector. */
void bm_count_pn(const uint8_t *y, const uint32_t *w, size_t n, int64_t *pos, int64_t *neg);

/* AUROC: NAN when the labels hold one value only. */
double bm_auc(const double *s, const uint8_t *y, const uint32_t *w, const size_t *order, size_t n);
/* Average precision, sum over distinct thresholds of (R_k - R_k-1) * P_k:
 * NAN when there are no positives. */
double bm_ap(const double *s, const uint8_t *y, const uint32_t *w, const size_t *order, size_t n);

/* The ROC curve's vertices, one per tie group, starting at (0,0):
 * *npts points in fpr[], tpr[] (malloc'd). n_pos and n_neg must be > 0. */
size_t bm_roc_curve(const double *s, const uint8_t *y, const size_t *order, size_t n,
                    double **fpr, double **tpr);

/* Threshold choice on a validation vector: the score t among the observed
 * scores that maximizes F1 (2TP/(2TP+FP+FN)) or Youden's J (TPR - FPR) of
 * the rule "positive when score >= t", compared exactly in integers; of
 * equal maxima the highest t wins (the fewest positive calls). NAN when the
 * labels hold one value only. */
typedef enum { BM_THR_F1, BM_THR_YOUDEN } bm_thr_metric;
double bm_best_threshold(const double *s, const uint8_t *y, const size_t *order, size_t n,
                         bm_thr_metric m);

/* Counts of a binary decision. */
typedef struct {
  int64_t tp, fp, fn, tn;
} bm_counts;
double bm_ratio(double num, double den); /* NAN when den == 0 */
double bm_f1(const bm_counts *c);          /* 2TP/(2TP+FP+FN), NAN when 0/0 */
double bm_sensitivity(const bm_counts *c); /* TP/(TP+FN) */
double bm_specificity(const bm_counts *c); /* TN/(TN+FP) */

/* Mean of the finite values of v (stride apart); NAN when none. *used gets
 * how many were finite (may be NULL). */
double bm_nanmean(const double *v, size_t n, size_t stride, size_t *used);
/* Percentile q in [0,100] of v (sorted in place), linear interpolation
 * between closest ranks (numpy's default "linear"). NAN when n == 0. */
double bm_percentile(double *v, size_t n, double q);

#endif
