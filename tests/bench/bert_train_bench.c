/* bert_train_bench.c - the text tower's training step (bert_train.h) at
 * BERT-base width on random weights: forward + backward of TEXTS texts of LEN
 * tokens, everything training, plain and checkpointed. Prints one JSON line.
 * Built and run by tests/bench/bert_train_bench.sh.
 *   bert_train_bench [TEXTS [LEN [DEPTH [REPS [THREADS]]]]]   (32 64 12 3, all cores) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert_train.h"
#include "kernels.h"
#include "util.h"

static float *buf(size_t n, bm_rng *r, float amp, float base) {
  float *p = bm_xmalloc(bm_mul_size(n, sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = base + amp * (float)(2 * bm_rng_uniform(r) - 1);
  return p;
}

/* seconds of the forward and the backward, best of reps */
static void step(bm_bert_train *bt, bm_bt_acts *a, const int32_t *ids, const int *start, const int *len,
                 int S, const float *demb, int reps, double *fwd, double *bwd) {
  *fwd = *bwd = 1e30;
  for (int k = 0; k < reps; k++) {
    double t0 = bm_now();
    bm_bert_train_forward(bt, a, ids, start, len, S, NULL, NULL, NULL);
    double t1 = bm_now();
    bm_bert_train_backward(bt, a, demb, NULL, NULL);
    double t2 = bm_now();
    if (t1 - t0 < *fwd) *fwd = t1 - t0;
    if (t2 - t1 < *bwd) *bwd = t2 - t1;
  }
}

int main(int argc, char **argv) {
  bm_blas_init(argv);
  int S = argc > 1 ? atoi(argv[1]) : 32, L = argc > 2 ? atoi(argv[2]) : 64, D = argc > 3 ? atoi(argv[3]) : 12;
  int reps = argc > 4 ? atoi(argv[4]) : 3;
  bm_set_threads(argc > 5 ? atoi(argv[5]) : 0);
  if (S < 1 || L < 2 || L > 512 || D < 1 || reps < 1)
    bm_usage_die("usage: bert_train_bench [TEXTS [LEN [DEPTH [REPS [THREADS]]]]]");
  int W = 768, M = 3072, V = 1000, P = 512, H = 640, E = 512;
  bm_rng r;
  bm_rng_seed(&r, 1);
  bm_bert m = {.vocab = V, .maxpos = P, .context = 256 > L ? 256 : L, .width = W, .depth = D, .heads = 12,
               .mlp = M, .proj_hidden = H, .embed_dim = E, .eps = 1e-12f, .ntypes = 2};
  m.word = buf((size_t)V * W, &r, 0.5f, 0), m.pos = buf((size_t)P * W, &r, 0.5f, 0);
  m.type = buf((size_t)2 * W, &r, 0.5f, 0), m.emb_ln_w = buf(W, &r, 0.1f, 1), m.emb_ln_b = buf(W, &r, 0.1f, 0);
  bm_bert_layer *ls = bm_xcalloc((size_t)D, sizeof *ls);
  float amp = 0.04f; /* ~ 1/sqrt(768) */
  for (int l = 0; l < D; l++) {
    ls[l].qkv_w = buf((size_t)3 * W * W, &r, amp, 0), ls[l].qkv_b = buf(3 * (size_t)W, &r, 0.1f, 0);
    ls[l].o_w = buf((size_t)W * W, &r, amp, 0), ls[l].o_b = buf(W, &r, 0.1f, 0);
    ls[l].ln1_w = buf(W, &r, 0.1f, 1), ls[l].ln1_b = buf(W, &r, 0.1f, 0);
    ls[l].fc1_w = buf((size_t)M * W, &r, amp, 0), ls[l].fc1_b = buf(M, &r, 0.1f, 0);
    ls[l].fc2_w = buf((size_t)W * M, &r, 0.02f, 0), ls[l].fc2_b = buf(W, &r, 0.1f, 0);
    ls[l].ln2_w = buf(W, &r, 0.1f, 1), ls[l].ln2_b = buf(W, &r, 0.1f, 0);
  }
  m.layers = ls;
  m.proj0 = buf((size_t)H * W, &r, amp, 0), m.proj2 = buf((size_t)E * H, &r, 0.04f, 0);
  int N = S * L, *start = bm_xmalloc(sizeof(int) * (size_t)S), *len = bm_xmalloc(sizeof(int) * (size_t)S);
  int32_t *ids = bm_xmalloc(sizeof(int32_t) * (size_t)N);
  for (int s = 0; s < S; s++) start[s] = s * L, len[s] = L;
  for (int n = 0; n < N; n++) ids[n] = (int32_t)(bm_rng_next(&r) % (uint64_t)V);
  float *demb = buf((size_t)S * E, &r, 1, 0);
  bm_bert_train bt;
  bm_bert_train_init(&bt, &m, -1, 0);
  bm_bt_acts a = {0}, c = {0};
  double f0, b0, f1, b1;
  step(&bt, &a, ids, start, len, S, demb, reps, &f0, &b0);
  size_t ab = bm_bt_acts_bytes(&a);
  bm_bt_acts_free(&a);
  bt.checkpoint = 1;
  step(&bt, &c, ids, start, len, S, demb, reps, &f1, &b1);
  printf("{\"bench\": \"bert_train\", \"texts\": %d, \"len\": %d, \"depth\": %d, \"width\": %d, \"threads\": %d, "
         "\"fwd_s\": %.4f, \"bwd_s\": %.4f, \"step_s\": %.4f, \"texts_per_s\": %.1f, \"act_mib\": %.1f, "
         "\"ckpt_fwd_s\": %.4f, \"ckpt_bwd_s\": %.4f, \"ckpt_step_s\": %.4f, \"ckpt_act_mib\": %.1f}\n",
         S, L, D, W, bm_threads(), f0, b0, f0 + b0, S / (f0 + b0), ab / 1048576.0, f1, b1, f1 + b1,
         bm_bt_acts_bytes(&c) / 1048576.0);
  return 0;
}
