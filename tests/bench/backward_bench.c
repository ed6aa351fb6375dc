/* backward_bench.c - one ViT-B/16 block, training forward + backward, at a
 * batch of images, composed from backward.h exactly as test_block_grad.c
 * does. Prints one JSON line. Built and run by tests/bench/backward_bench.sh.
 *   backward_bench [BATCH [REPS [THREADS]]]   (16, 3, all cores) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "util.h"

static float *buf(size_t n, bm_rng *r, float amp) {
  float *p = bm_xmalloc(bm_mul_size(n, sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = amp * (float)(2 * bm_rng_uniform(r) - 1);
  return p;
}

int main(int argc, char **argv) {
  int B = argc > 1 ? atoi(argv[1]) : 16, reps = argc > 2 ? atoi(argv[2]) : 3;
  if (argc > 3) bm_set_threads(atoi(argv[3]));
  else bm_set_threads(0);
  if (B < 1 || reps < 1) bm_usage_die("usage: backward_bench [BATCH [REPS [THREADS]]]");
  int T = 197, C = 768, H = 12, M = 3072, N = B * T;
  size_t nc = (size_t)N * C, nm = (size_t)N * M;
  bm_rng r;
  bm_rng_seed(&r, 1);
  /* parameters and their gradients */
  float *g1 = buf(C, &r, 1), *b1 = buf(C, &r, 0.1f), *g2 = buf(C, &r, 1), *b2 = buf(C, &r, 0.1f);
  float *Wqkv = buf((size_t)3 * C * C, &r, 0.03f), *bqkv = buf(3 * (size_t)C, &r, 0.1f);
  float *Wp = buf((size_t)C * C, &r, 0.03f), *bp = buf(C, &r, 0.1f);
  float *W1 = buf((size_t)M * C, &r, 0.03f), *bf1 = buf(M, &r, 0.1f);
  float *W2 = buf((size_t)C * M, &r, 0.02f), *bf2 = buf(C, &r, 0.1f);
  float *dg1 = bm_xcalloc(C, 4), *db1 = bm_xcalloc(C, 4), *dg2 = bm_xcalloc(C, 4), *db2 = bm_xcalloc(C, 4);
  float *dWqkv = bm_xcalloc((size_t)3 * C * C, 4), *dbqkv = bm_xcalloc(3 * (size_t)C, 4);
  float *dWp = bm_xcalloc((size_t)C * C, 4), *dbp = bm_xcalloc(C, 4);
  float *dW1 = bm_xcalloc((size_t)M * C, 4), *dbf1 = bm_xcalloc(M, 4);
  float *dW2 = bm_xcalloc((size_t)C * M, 4), *dbf2 = bm_xcalloc(C, 4);
  /* activations kept for the backward */
  int *start = bm_xmalloc(sizeof(int) * (size_t)B), *len = bm_xmalloc(sizeof(int) * (size_t)B);
  for (int b = 0; b < B; b++) start[b] = b * T, len[b] = T;
  float *x = buf(nc, &r, 1), *dy = buf(nc, &r, 1);
  float *ln1 = bm_xmalloc(nc * 4), *m1 = bm_xmalloc((size_t)N * 4), *r1 = bm_xmalloc((size_t)N * 4);
  float *qkv = bm_xmalloc(nc * 12), *att = bm_xmalloc(nc * 4);
  float *P = bm_xmalloc(bm_attention_probs_size(len, B, H) * 4);
  float *x1 = bm_xmalloc(nc * 4), *ln2 = bm_xmalloc(nc * 4), *m2 = bm_xmalloc((size_t)N * 4);
  float *r2 = bm_xmalloc((size_t)N * 4), *pre = bm_xmalloc(nm * 4), *h = bm_xmalloc(nm * 4);
  float *out = bm_xmalloc(nc * 4), *d = bm_xmalloc(nc * 4), *dh = bm_xmalloc(nm * 4);
  float *dln = bm_xmalloc(nc * 4), *datt = bm_xmalloc(nc * 4), *dqkv = bm_xmalloc(nc * 12);
  float *scratch = bm_xmalloc(bm_attention_backward_scratch(T) * 4);
  double tf = 0, tb = 0;
  for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
    double t0 = bm_now();
    bm_layernorm_train(ln1, m1, r1, x, g1, b1, N, C, 1e-6f);
    bm_linear(qkv, ln1, Wqkv, bqkv, N, C, 3 * C);
    bm_attention_train(att, P, qkv, start, len, B, C, H, NULL);
    memcpy(x1, x, nc * 4);
    bm_linear_residual(x1, att, Wp, bp, N, C, C);
    bm_layernorm_train(ln2, m2, r2, x1, g2, b2, N, C, 1e-6f);
    bm_linear_gelu_train(pre, h, ln2, W1, bf1, N, C, M);
    memcpy(out, x1, nc * 4);
    bm_linear_residual(out, h, W2, bf2, N, M, C);
    double t1 = bm_now();
    memcpy(d, dy, nc * 4);
    bm_linear_backward(dh, dW2, dbf2, d, h, W2, N, M, C, 0);
    bm_gelu_backward(dh, dh, pre, nm);
    bm_linear_backward(dln, dW1, dbf1, dh, ln2, W1, N, C, M, 0);
    bm_layernorm_backward(d, dg2, db2, dln, x1, m2, r2, g2, N, C, 1);
    bm_linear_backward(datt, dWp, dbp, d, att, Wp, N, C, C, 0);
    bm_attention_backward(dqkv, datt, qkv, P, start, len, B, C, H, scratch);
    bm_linear_backward(dln, dWqkv, dbqkv, dqkv, ln1, Wqkv, N, C, 3 * C, 0);
    bm_layernorm_backward(d, dg1, db1, dln, x, m1, r1, g1, N, C, 1);
    double t2 = bm_now();
    if (rep > 0) tf += t1 - t0, tb += t2 - t1;
  }
  /* x, ln1, qkv (3), att, x1, ln2; P; pre, h; mean, rstd */
  size_t kept = (nc * 8 + bm_attention_probs_size(len, B, H) + nm * 2 + (size_t)N * 4) * 4;
  printf("{\"impl\": \"c\", \"batch\": %d, \"threads\": %d, \"fwd_s\": %.4f, \"bwd_s\": %.4f, "
         "\"step_s\": %.4f, \"kept_MB\": %.1f}\n",
         B, bm_threads(), tf / reps, tb / reps, (tf + tb) / reps, kept / 1e6);
  return 0;
}
