/* vit_ext_bench.c - the image tower's training step (vit_train.h) with and
 * without gradient checkpointing, on random weights of ViT-B/16's width and
 * a few blocks: step times, the activation bytes measured after a forward
 * and those bm_vt_acts_plan gives, and the plan for the full 12 blocks.
 *   vit_ext_bench [BATCH [DEPTH [REPS [PATCH_DROPOUT]]]]   (JSON lines) */
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "util.h"
#include "vit_train.h"

static float *rnd(bm_rng *r, size_t n, float s) {
  float *x = bm_xmalloc(bm_mul_size(n, sizeof(float)));
  for (size_t i = 0; i < n; i++) x[i] = s * (float)(2.0 * bm_rng_uniform(r) - 1.0);
  return x;
}

static float *ones(size_t n) {
  float *x = bm_xmalloc(bm_mul_size(n, sizeof(float)));
  for (size_t i = 0; i < n; i++) x[i] = 1.0f;
  return x;
}

int main(int argc, char **argv) {
  int B = argc > 1 ? atoi(argv[1]) : 4, D = argc > 2 ? atoi(argv[2]) : 2, reps = argc > 3 ? atoi(argv[3]) : 2;
  float pd = argc > 4 ? (float)atof(argv[4]) : 0.0f;
  if (B < 1 || D < 1 || reps < 1 || pd < 0 || pd >= 1) bm_usage_die("vit_ext_bench [BATCH [DEPTH [REPS [P]]]]");
  bm_vit v = {.image_size = 224, .patch = 16, .grid = 14, .ntok = 197, .width = 768, .depth = D, .heads = 12,
              .mlp = 3072, .embed_dim = 512, .eps = 1e-6f};
  size_t W = 768, M = 3072, T = 197, PP3 = 3 * 16 * 16;
  bm_rng r;
  bm_rng_seed(&r, 1);
  v.patch_w = rnd(&r, W * PP3, 0.02f), v.patch_b = rnd(&r, W, 0.02f), v.cls = rnd(&r, W, 0.02f);
  v.pos = rnd(&r, T * W, 0.02f), v.norm_w = ones(W), v.norm_b = rnd(&r, W, 0.02f), v.head_w = rnd(&r, 512 * W, 0.02f);
  v.blocks = bm_xcalloc((size_t)D, sizeof *v.blocks);
  for (int l = 0; l < D; l++) {
    bm_vit_block *k = &v.blocks[l];
    k->ln1_w = ones(W), k->ln1_b = rnd(&r, W, 0.02f), k->qkv_w = rnd(&r, 3 * W * W, 0.02f);
    k->qkv_b = rnd(&r, 3 * W, 0.02f), k->proj_w = rnd(&r, W * W, 0.02f), k->proj_b = rnd(&r, W, 0.02f);
    k->ln2_w = ones(W), k->ln2_b = rnd(&r, W, 0.02f), k->fc1_w = rnd(&r, M * W, 0.02f);
    k->fc1_b = rnd(&r, M, 0.02f), k->fc2_w = rnd(&r, W * M, 0.02f), k->fc2_b = rnd(&r, W, 0.02f);
  }
  float *img = rnd(&r, (size_t)B * 3 * 224 * 224, 2.0f), *demb = rnd(&r, (size_t)B * 512, 1.0f);
  bm_vit v12 = v;
  v12.depth = 12;
  int Tk = 1 + bm_vit_patch_keep_count(196, pd);
  for (int ck = 0; ck < 2; ck++) {
    bm_vit_train vt;
    bm_vit_train_init(&vt, &v, -1, 0);
    vt.checkpoint = ck, vt.patch_dropout = pd;
    bm_vt_acts a = {0};
    double fwd = 0, bwd = 0;
    for (int i = 0; i <= reps; i++) { /* the first is a warm-up */
      double t0 = bm_now();
      bm_vit_train_forward(&vt, &a, img, B, NULL);
      double t1 = bm_now();
      bm_vit_train_backward(&vt, &a, demb, B);
      double t2 = bm_now();
      if (i) fwd += t1 - t0, bwd += t2 - t1;
    }
    printf("{\"checkpoint\": %d, \"batch\": %d, \"depth\": %d, \"patch_dropout\": %g, \"fwd_s\": %.4f, \"bwd_s\": %.4f, "
           "\"acts_bytes\": %zu, \"plan_bytes\": %zu, \"plan_bytes_depth12\": %zu}\n",
           ck, B, D, pd, fwd / reps, bwd / reps, bm_vt_acts_bytes(&a), bm_vt_acts_plan(&v, 0, 0, ck, B, Tk),
           bm_vt_acts_plan(&v12, 0, 0, ck, B, Tk));
    bm_vt_acts_free(&a);
    bm_vit_train_free(&vt);
  }
  return 0;
}
