/* test_metrics.c - the metric primitives on cases small enough to work out
 * by hand, and the blocked retrieval counts against a brute-force loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics.h"
#include "retrieval.h"
#include "util.h"

static double auc_of(const double *s, const uint8_t *y, const uint32_t *w, size_t n) {
  size_t ord[64];
  bm_order_desc(s, n, ord);
  return bm_auc(s, y, w, ord, n);
}

static void test_ranking(void) {
  /* sklearn's documented examples: AUC 0.75, AP 0.8333... */
  double s[] = {0.1, 0.4, 0.35, 0.8};
  uint8_t y[] = {0, 0, 1, 1};
  size_t ord[4];
  bm_order_desc(s, 4, ord);
  CHECK(ord[0] == 3 && ord[3] == 0, "order is by decreasing score");
  CHECK(fabs(bm_auc(s, y, NULL, ord, 4) - 0.75) < 1e-15, "AUROC of the textbook example is 0.75");
  CHECK(fabs(bm_ap(s, y, NULL, ord, 4) - 5.0 / 6.0) < 1e-15, "average precision of the textbook example is 5/6");
  /* a tie between a positive and a negative counts one half */
  double t[] = {0.5, 0.5, 0.9};
  uint8_t ty[] = {1, 0, 1};
  CHECK(fabs(auc_of(t, ty, NULL, 3) - 0.75) < 1e-15, "a tied positive/negative pair counts 1/2");
  double all[] = {0.3, 0.3, 0.3, 0.3};
  CHECK(fabs(auc_of(all, y, NULL, 4) - 0.5) < 1e-15, "all scores tied: AUROC 0.5");
  uint8_t ones[] = {1, 1, 1, 1}, zeros[] = {0, 0, 0, 0};
  CHECK(isnan(auc_of(s, ones, NULL, 4)) && isnan(auc_of(s, zeros, NULL, 4)), "one target value: AUROC undefined (NAN)");
  bm_order_desc(s, 4, ord);
  CHECK(isnan(bm_ap(s, zeros, NULL, ord, 4)) && bm_ap(s, ones, NULL, ord, 4) == 1.0, "AP: undefined without positives, 1 with only positives");
  /* weights are repeated samples */
  uint32_t w[] = {2, 0, 1, 3};
  double rs[] = {0.1, 0.1, 0.35, 0.8, 0.8, 0.8};
  uint8_t ry[] = {0, 0, 1, 1, 1, 1};
  CHECK(fabs(auc_of(s, y, w, 4) - auc_of(rs, ry, NULL, 6)) < 1e-15, "a weight counts as that many copies");
}

static void test_threshold(void) {
  double s[] = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4};
  uint8_t y[] = {1, 0, 1, 1, 0, 0};
  size_t ord[6];
  bm_order_desc(s, 6, ord);
  /* F1 at >=0.9: 2/4; >=0.7: 4/6; >=0.6: 6/7; >=0.5: 6/8 */
  CHECK(bm_best_threshold(s, y, ord, 6, BM_THR_F1) == 0.6, "F1 is best at 0.6 (6/7)");
  /* J at >=0.9: 1/3; >=0.6: 1 - 1/3 = 2/3 is the maximum */
  CHECK(bm_best_threshold(s, y, ord, 6, BM_THR_YOUDEN) == 0.6, "Youden's J is best at 0.6");
  double e[] = {0.9, 0.8, 0.7, 0.6};
  uint8_t ey[] = {1, 0, 1, 0};
  bm_order_desc(e, 4, ord);
  /* J: 0.9 -> 1/2, 0.8 -> 0, 0.7 -> 1/2, 0.6 -> 0: equal maxima keep the higher */
  CHECK(bm_best_threshold(e, ey, ord, 4, BM_THR_YOUDEN) == 0.9, "equal maxima keep the higher threshold");
  uint8_t z[] = {0, 0, 0, 0};
  CHECK(isnan(bm_best_threshold(e, z, ord, 4, BM_THR_F1)), "no positives: no threshold");
}

static void test_small(void) {
  bm_counts c = {.tp = 0, .fp = 0, .fn = 0, .tn = 5};
  CHECK(isnan(bm_f1(&c)) && isnan(bm_sensitivity(&c)) && bm_specificity(&c) == 1.0, "0/0 is undefined, not 0");
  double v[] = {3, NAN, 1, 2, INFINITY};
  size_t used;
  CHECK(bm_nanmean(v, 5, 1, &used) == 2 && used == 3, "the mean leaves out undefined values");
  double p[] = {4, 1, 3, 2, 5};
  CHECK(bm_percentile(p, 5, 50) == 3 && bm_percentile(p, 5, 2.5) == 1.1 && bm_percentile(p, 5, 100) == 5,
        "percentiles interpolate linearly (numpy's default)");
}

/* Brute force: every score by a plain double loop (exact on quarter values). */
static void test_retrieval(size_t n, const size_t *blocks, size_t nblocks) {
  bm_rng r;
  bm_rng_seed(&r, 42 + n);
  size_t d = 6;
  float *img = malloc(n * d * sizeof *img), *txt = malloc(n * d * sizeof *txt);
  for (size_t i = 0; i < n * d; i++) {
    img[i] = (float)((int)(bm_rng_uniform(&r) * 5) - 2) / 4;
    txt[i] = (float)((int)(bm_rng_uniform(&r) * 5) - 2) / 4;
  }
  memcpy(txt + 7 * d, txt + 3 * d, d * sizeof *txt); /* a duplicated caption */
  int64_t *got = malloc(4 * n * sizeof *got), *want = calloc(4 * n, sizeof *want);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) {
      if (i == j) continue;
      double sij = 0, sii = 0, sjj = 0;
      for (size_t k = 0; k < d; k++) {
        sij += (double)img[i * d + k] * txt[j * d + k];
        sii += (double)img[i * d + k] * txt[i * d + k];
        sjj += (double)img[j * d + k] * txt[j * d + k];
      }
      want[i] += sij > sii;
      want[n + i] += sij == sii;
      want[2 * n + j] += sij > sjj;
      want[3 * n + j] += sij == sjj;
    }
  for (size_t b = 0; b < nblocks; b++) {
      for (size_t i = 0; i < 4 * n; i++) got[i] = -7; /* poison */
      bm_retrieval_opts o = {.block = blocks[b], .quiet = 1};
      bm_retrieval_counts(img, txt, n, d, &o, got, got + n, got + 2 * n, got + 3 * n);
      CHECK(memcmp(got, want, 4 * n * sizeof *got) == 0, "retrieval counts equal brute force (n %zu, block %zu)",
            n, blocks[b]);
    }
  free(img);
  free(txt);
  free(got);
  free(want);
}

static void test_recall(void) {
  int64_t better[] = {0, 0, 3, 9}, tied[] = {0, 2, 0, 0};
  CHECK(bm_recall_at(better, tied, 4, 1, 1) == 0.25 && bm_recall_at(better, tied, 4, 0, 1) == 0.5,
        "R@1: a tie counts against the true pair only when pessimistic");
  CHECK(bm_recall_at(better, tied, 4, 1, 4) == 0.75 && bm_recall_at(better, tied, 4, 1, 10) == 1.0, "R@k counts rank <= k");
}

int main(void) {
  test_ranking();
  test_threshold();
  test_small();
  static const size_t small[] = {1, 5, 53, 64}, large[] = {300, 129}; /* 300^2: threads count */
  test_retrieval(53, small, 4);
  test_retrieval(300, large, 2);
  test_recall();
  CHECK_DONE();
}
