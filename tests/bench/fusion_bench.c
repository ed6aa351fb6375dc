/* fusion_bench.c - the co-attention fusion module (fusion.h), forward +
 * backward at a batch of image/text pairs. Prints one JSON line. Built and
 * run by tests/bench/fusion_bench.sh.
 *   fusion_bench [BATCH [REPS [THREADS [F [LAYERS]]]]]  (16, 3, all cores, 768, 2)
 * Image tokens: 197 of width 768 (ViT-B/16 224); texts of width 768 and
 * 16..64 tokens (the same lengths as fusion_bench.py). */
#include <stdio.h>
#include <stdlib.h>

#include "fusion.h"
#include "kernels.h"
#include "util.h"

static float *buf(size_t n, bm_rng *r, float amp) {
  float *p = bm_xmalloc(bm_mul_size(n, sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = amp * (float)(2 * bm_rng_uniform(r) - 1);
  return p;
}

int main(int argc, char **argv) {
  int B = argc > 1 ? atoi(argv[1]) : 16, reps = argc > 2 ? atoi(argv[2]) : 3;
  bm_set_threads(argc > 3 ? atoi(argv[3]) : 0);
  int F = argc > 4 ? atoi(argv[4]) : 768, L = argc > 5 ? atoi(argv[5]) : 2;
  if (B < 1 || reps < 1) bm_usage_die("usage: fusion_bench [BATCH [REPS [THREADS [F [LAYERS]]]]]");
  bm_fusion_cfg cfg = {.Di = 768, .Dt = 768, .F = F, .layers = L, .heads = F / 64 > 0 ? F / 64 : 1,
                       .mlp = 4 * F, .combine = BM_FUSE_CONCAT};
  const char *why = bm_fusion_check_cfg(&cfg);
  if (why) bm_usage_die("fusion_bench: %s", why);
  int Ti = 197, *ts = bm_xmalloc(sizeof(int) * (size_t)B), *tl = bm_xmalloc(sizeof(int) * (size_t)B), Nt = 0;
  for (int b = 0; b < B; b++) ts[b] = Nt, tl[b] = 16 + (b * 37) % 49, Nt += tl[b];
  bm_rng r;
  bm_rng_seed(&r, 1);
  bm_fusion f;
  bm_fusion_init(&f, &cfg, 1);
  bm_fusion_acts a = {0};
  float *xi = buf((size_t)B * Ti * cfg.Di, &r, 1), *xt = buf((size_t)Nt * cfg.Dt, &r, 1);
  float *dxi = bm_xmalloc((size_t)B * Ti * cfg.Di * 4), *dxt = bm_xmalloc((size_t)Nt * cfg.Dt * 4);
  int od = bm_fusion_out_dim(&cfg);
  float *out = bm_xmalloc((size_t)B * od * 4), *dout = buf((size_t)B * od, &r, 1);
  double tf = 0, tb = 0;
  for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up (and allocates) */
    double t0 = bm_now();
    bm_fusion_forward(&f, &a, xi, B, Ti, xt, ts, tl, out);
    double t1 = bm_now();
    bm_fusion_backward(&f, &a, dout, dxi, dxt);
    double t2 = bm_now();
    if (rep) tf += t1 - t0, tb += t2 - t1;
  }
  printf("{\"impl\": \"C\", \"batch\": %d, \"threads\": %d, \"F\": %d, \"layers\": %d, \"fwd_s\": %.4f, "
         "\"bwd_s\": %.4f, \"step_s\": %.4f}\n",
         B, bm_threads(), F, L, tf / reps, tb / reps, (tf + tb) / reps);
  bm_fusion_acts_free(&a);
  bm_fusion_free(&f);
  free(xi), free(xt), free(dxi), free(dxt), free(out), free(dout), free(ts), free(tl);
  return 0;
}
