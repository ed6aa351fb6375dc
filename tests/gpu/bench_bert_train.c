/* bench_bert_train.c - texts/s of the GPU text tower's training step
 * (bm_cuda_bt: zero_grad + forward + backward, no optimizer) at PubMedBERT's
 * size (width 768, 12 layers, 12 heads, MLP 3072, vocab 30522, projection
 * 640 -> 512), random weights built here (the speed does not depend on the
 * values):
 *   bench_bert_train [--batch B] [--len L] [--steps N] [--prec bf16|fp16|fp32]
 *                    [--mode full|prompts]
 * full: every layer trains, the gradient comes from emb; prompts: the tower
 * frozen, 8 prompt vectors after [CLS], the gradient runs through every layer
 * to them (CoOp). Texts of L tokens each. Prints "key value" lines;
 * model_tflops counts the layers' GEMMs only (3 x 2 x 85 M MAC a token:
 * forward + backward), not attention or the embeddings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/bmcuda_train.h"
#include "util.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *filled(bm_rng *r, size_t n, float scale, float base) {
  float *x = bm_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = base + (float)(bm_rng_uniform(r) * 2 - 1) * scale;
  return x;
}

static void pubmedbert(bm_bert *m, bm_rng *r) {
  memset(m, 0, sizeof *m);
  *m = (bm_bert){.vocab = 30522, .maxpos = 512, .context = 256, .width = 768, .depth = 12, .heads = 12,
                 .mlp = 3072, .proj_hidden = 640, .embed_dim = 512, .eps = 1e-12f, .ntypes = 2};
  size_t W = 768, M = 3072;
  m->word = filled(r, 30522 * W, 0.02f, 0), m->pos = filled(r, 512 * W, 0.02f, 0);
  m->type = filled(r, 2 * W, 0.02f, 0), m->emb_ln_w = filled(r, W, 0.02f, 1), m->emb_ln_b = filled(r, W, 0.02f, 0);
  m->layers = bm_xcalloc(12, sizeof(bm_bert_layer));
  for (int l = 0; l < 12; l++) {
    bm_bert_layer *b = &m->layers[l];
    b->qkv_w = filled(r, 3 * W * W, 0.02f, 0), b->qkv_b = filled(r, 3 * W, 0.02f, 0);
    b->o_w = filled(r, W * W, 0.02f, 0), b->o_b = filled(r, W, 0.02f, 0);
    b->ln1_w = filled(r, W, 0.02f, 1), b->ln1_b = filled(r, W, 0.02f, 0);
    b->fc1_w = filled(r, M * W, 0.02f, 0), b->fc1_b = filled(r, M, 0.02f, 0);
    b->fc2_w = filled(r, W * M, 0.02f, 0), b->fc2_b = filled(r, W, 0.02f, 0);
    b->ln2_w = filled(r, W, 0.02f, 1), b->ln2_b = filled(r, W, 0.02f, 0);
  }
  m->proj0 = filled(r, 640 * W, 0.02f, 0), m->proj2 = filled(r, 512 * 640, 0.02f, 0);
}

int main(int argc, char **argv) {
  int B = 256, L = 64, steps = 20, prec = BM_PREC_BF16, prompts = 0, nctx = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--len")) L = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--mode") && (!strcmp(argv[i + 1], "full") || !strcmp(argv[i + 1], "prompts")))
      prompts = !strcmp(argv[i + 1], "prompts");
    else if (!strcmp(argv[i], "--prec")) {
      bm_prec p;
      if (bm_prec_parse(argv[i + 1], &p)) bm_usage_die("bench_bert_train: bad --prec %s", argv[i + 1]);
      prec = p;
    } else bm_usage_die("usage: bench_bert_train [--batch B] [--len L] [--steps N] [--prec P] [--mode full|prompts]");
  }
  if (B < 1 || L < nctx + 2 || L > 256 || steps < 1) bm_usage_die("bench_bert_train: batch >= 1, len %d..256, steps >= 1", nctx + 2);
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) bm_die("bench_bert_train: %s", err);
  printf("device %s\n", bm_cuda_describe(cu));
  bm_rng r;
  bm_rng_seed(&r, 3);
  bm_bert m;
  pubmedbert(&m, &r);
  bm_bert_train bt;
  bm_bert_train_init(&bt, &m, -1, prompts);
  bmct_ctx *c = bmct_ctx_new(cu);
  int N = B * L, W = 768, E = 512;
  bm_cuda_bt *g = bm_cuda_bt_new(c, &bt, prec, B, N, prompts ? nctx : 0);
  int32_t *ids = bm_xmalloc(sizeof(int32_t) * (size_t)N);
  int *start = bm_xmalloc(sizeof(int) * (size_t)B), *len = bm_xmalloc(sizeof(int) * (size_t)B);
  for (int s = 0; s < B; s++) {
    start[s] = s * L, len[s] = L;
    for (int i = 0; i < L; i++)
      ids[s * L + i] = i == 0 ? 2 : i == L - 1 ? 3 : prompts && i <= nctx ? -i : 1000 + (int32_t)(bm_rng_next(&r) % 20000);
  }
  float *hd = filled(&r, (size_t)B * E, 0.05f, 0), *hc = filled(&r, (size_t)nctx * W, 0.02f, 0);
  float *demb = bm_cuda_malloc((size_t)B * E * 4, "demb"), *emb = bm_cuda_malloc((size_t)B * E * 4, "emb");
  float *ctx = bm_cuda_malloc((size_t)nctx * W * 4, "ctx"), *dctx = bm_cuda_malloc((size_t)nctx * W * 4, "dctx");
  bmct_upload(c, demb, hd, (size_t)B * E * 4), bmct_upload(c, ctx, hc, (size_t)nctx * W * 4);
  double t0 = 0;
  for (int s = 0; s < 3 + steps; s++) { /* 3 untimed steps first */
    if (s == 3) bmct_sync(c), t0 = now();
    bm_cuda_bt_zero_grad(g);
    if (prompts) bm_cuda_memset(cu, dctx, 0, sizeof(float) * (size_t)nctx * W);
    bm_cuda_bt_forward(g, ids, start, len, B, prompts ? ctx : NULL, emb, NULL);
    bm_cuda_bt_backward(g, demb, NULL, prompts ? dctx : NULL);
    if (s == 2 + steps) {
      bmct_sync(c);
      double dt = now() - t0;
      printf("prec %s\nmode %s\nbatch %d\nlen %d\nms_per_step %.1f\ntexts_per_s %.1f\nmodel_tflops %.1f\n",
             bm_prec_name(prec), prompts ? "prompts" : "full", B, L, 1e3 * dt / steps, B * (double)steps / dt,
             6.0 * 85e6 * N * steps / dt / 1e12);
    }
  }
  /* the gradient that comes out is finite */
  float *gh = bm_xmalloc(sizeof(float) * (size_t)nctx * W);
  const float *gd = prompts ? dctx : bm_cuda_bt_grads(g);
  bmct_download(c, gh, gd, sizeof(float) * (size_t)nctx * W);
  double sq = 0;
  for (int i = 0; i < nctx * W; i++) sq += (double)gh[i] * gh[i];
  if (!isfinite(sq)) bm_die("bench_bert_train: the gradient is not finite");
  printf("grad_sumsq %.4g\n", sq);
  bm_cuda_free(demb), bm_cuda_free(emb), bm_cuda_free(ctx), bm_cuda_free(dctx);
  free(ids), free(start), free(len), free(hd), free(hc), free(gh);
  bm_cuda_bt_free(g);
  bmct_ctx_free(c);
  bm_bert_train_free(&bt);
  bm_cuda_close(cu);
  return 0;
}
