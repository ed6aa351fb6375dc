/* test_linhead.c - the linear head's forward and backward: the forward
 * against a double-precision dot product, the gradients of both losses
 * against central finite differences of the loss, and the bits unchanged by
 * the thread count. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "linhead.h"
#include "loss.h"
#include "util.h"

enum { B = 7, D = 13, C = 5 };

static double loss_of(const float *X, const float *W, const float *b, const float *Y, const float *pw, int ml) {
  float L[B * C];
  bm_linhead_forward(X, W, b, B, D, C, L);
  return ml ? bm_bce_logits(L, Y, pw, B, C, NULL) : bm_softmax_xent(L, Y, B, C, NULL);
}

int main(void) {
  bm_rng rng;
  uint64_t seed = (uint64_t)time(NULL);
  printf("# seed %llu\n", (unsigned long long)seed);
  bm_rng_seed(&rng, seed);
  float X[B * D], W[C * D], b[C], Y[B * C], pw[C], L[B * C], dL[B * C], dW[C * D], db[C];
  for (int i = 0; i < B * D; i++) X[i] = (float)(bm_rng_uniform(&rng) * 4 - 2);
  for (int i = 0; i < C * D; i++) W[i] = (float)(bm_rng_uniform(&rng) - 0.5);
  for (int i = 0; i < C; i++) b[i] = (float)(bm_rng_uniform(&rng) - 0.5), pw[i] = (float)(0.5 + 3 * bm_rng_uniform(&rng));

  bm_linhead_forward(X, W, b, B, D, C, L);
  double worst = 0;
  for (int i = 0; i < B; i++)
    for (int c = 0; c < C; c++) {
      double s = b[c];
      for (int d = 0; d < D; d++) s += (double)X[i * D + d] * W[c * D + d];
      worst = fmax(worst, fabs(s - L[i * C + c]));
    }
  CHECK(worst < 1e-6, "forward = x W^T + b (worst %.2g)", worst);

  for (int ml = 0; ml < 2; ml++) {
    memset(Y, 0, sizeof Y);
    for (int i = 0; i < B; i++)
      for (int c = 0; c < C; c++)
        if (ml) Y[i * C + c] = bm_rng_uniform(&rng) < 0.4;
    if (!ml)
      for (int i = 0; i < B; i++) Y[i * C + (int)(bm_rng_next(&rng) % C)] = 1;
    bm_linhead_forward(X, W, b, B, D, C, L);
    if (ml) bm_bce_logits(L, Y, pw, B, C, dL);
    else bm_softmax_xent(L, Y, B, C, dL);
    memset(dW, 0xff, sizeof dW); /* poisoned: backward must overwrite */
    memset(db, 0xff, sizeof db);
    bm_linhead_backward(X, dL, B, D, C, dW, db);
    double err = 0, scale = 0;
    const float h = 1e-2f;
    for (int k = 0; k < C * D + C; k++) {
      float *p = k < C * D ? &W[k] : &b[k - C * D];
      float keep = *p;
      *p = keep + h;
      double up = loss_of(X, W, b, Y, pw, ml);
      *p = keep - h;
      double down = loss_of(X, W, b, Y, pw, ml);
      *p = keep;
      double fd = (up - down) / (2 * (double)h), an = k < C * D ? dW[k] : db[k - C * D];
      err = fmax(err, fabs(fd - an));
      scale = fmax(scale, fabs(fd));
    }
    CHECK(scale > 1e-3 && err < 2e-3 * scale, "%s: backward = finite differences (worst %.2g of %.2g)",
          ml ? "BCE with pos_weight" : "softmax cross-entropy", err, scale);
  }

  { /* big enough for the parallel loops */
    enum { BB = 256, DD = 1024, CC = 40 };
    CHECK((long)BB * DD * CC > BM_LINEAR_PAR_MIN, "the thread test runs the parallel path");
    float *x = malloc(sizeof(float) * BB * DD), *w = malloc(sizeof(float) * CC * DD), *bb = malloc(sizeof(float) * CC);
    float *g = malloc(sizeof(float) * BB * CC), *l[2], *gw[2], *gb[2];
    for (int i = 0; i < BB * DD; i++) x[i] = (float)(bm_rng_uniform(&rng) - 0.5);
    for (int i = 0; i < CC * DD; i++) w[i] = (float)(bm_rng_uniform(&rng) - 0.5);
    for (int i = 0; i < CC; i++) bb[i] = (float)bm_rng_uniform(&rng);
    for (int i = 0; i < BB * CC; i++) g[i] = (float)(bm_rng_uniform(&rng) - 0.5);
    for (int t = 0; t < 2; t++) {
      omp_set_num_threads(t ? 3 : 1);
      l[t] = malloc(sizeof(float) * BB * CC), gw[t] = malloc(sizeof(float) * CC * DD), gb[t] = malloc(sizeof(float) * CC);
      bm_linhead_forward(x, w, bb, BB, DD, CC, l[t]);
      bm_linhead_backward(x, g, BB, DD, CC, gw[t], gb[t]);
    }
    CHECK(!memcmp(l[0], l[1], sizeof(float) * BB * CC) && !memcmp(gw[0], gw[1], sizeof(float) * CC * DD) &&
              !memcmp(gb[0], gb[1], sizeof(float) * CC),
          "the same bits with 1 and 3 threads");
    for (int t = 0; t < 2; t++) free(l[t]), free(gw[t]), free(gb[t]);
    free(x), free(w), free(bb), free(g);
  }

  float prob[C];
  bm_linhead_prob(L, C, 0, prob);
  double sum = 0;
  for (int c = 0; c < C; c++) sum += prob[c];
  CHECK(fabs(sum - 1) < 1e-6, "softmax prob sums to 1");
  bm_linhead_prob(L, C, 1, prob);
  CHECK(fabs(prob[2] - 1 / (1 + exp(-(double)L[2]))) < 1e-7, "sigmoid prob");
  CHECK_DONE();
}
