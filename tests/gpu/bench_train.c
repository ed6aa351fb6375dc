/* bench_train.c - samples/s of the GPU fine-tuning step (bm_cuda_ft_grad +
 * bm_cuda_ft_step) of a full-size ViT-B/16 224 + linear head, random
 * weights built here (no checkpoint needed: the speed does not depend on the
 * values), and the measured bf16 GEMM peak for the MFU.
 *   bench_train [--batch B] [--steps N] [--prec bf16|fp16|fp32] [--classes C]
 * Prints "key value" lines; tests/gpu/bench_train.sh puts them in a table.
 * MFU = 3 x 35.1 GFLOP (ViT-B/16 224 forward, 17.56 GMAC) x samples/s / peak. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/bmcuda_train.h"
#include "finetune.h"
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

/* ViT-B/16 224 with random weights (timm's init scale: 0.02) */
static void vit_b16(bm_vit *v, bm_rng *r) {
  memset(v, 0, sizeof *v);
  v->image_size = 224, v->patch = 16, v->grid = 14, v->ntok = 197;
  v->width = 768, v->depth = 12, v->heads = 12, v->mlp = 3072, v->embed_dim = 512, v->eps = 1e-6f;
  size_t W = 768, M = 3072;
  v->patch_w = filled(r, W * 768, 0.02f, 0), v->patch_b = filled(r, W, 0.02f, 0);
  v->cls = filled(r, W, 0.02f, 0), v->pos = filled(r, 197 * W, 0.02f, 0);
  v->blocks = bm_xcalloc(12, sizeof(bm_vit_block));
  for (int l = 0; l < 12; l++) {
    bm_vit_block *b = &v->blocks[l];
    b->ln1_w = filled(r, W, 0.02f, 1), b->ln1_b = filled(r, W, 0.02f, 0);
    b->qkv_w = filled(r, 3 * W * W, 0.02f, 0), b->qkv_b = filled(r, 3 * W, 0.02f, 0);
    b->proj_w = filled(r, W * W, 0.02f, 0), b->proj_b = filled(r, W, 0.02f, 0);
    b->ln2_w = filled(r, W, 0.02f, 1), b->ln2_b = filled(r, W, 0.02f, 0);
    b->fc1_w = filled(r, M * W, 0.02f, 0), b->fc1_b = filled(r, M, 0.02f, 0);
    b->fc2_w = filled(r, W * M, 0.02f, 0), b->fc2_b = filled(r, W, 0.02f, 0);
  }
  v->norm_w = filled(r, W, 0.02f, 1), v->norm_b = filled(r, W, 0.02f, 0);
  v->head_w = filled(r, 512 * W, 0.02f, 0);
}

int main(int argc, char **argv) {
  int B = 128, steps = 20, C = 14, prec = BM_PREC_BF16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--classes")) C = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--prec")) {
      bm_prec p;
      if (bm_prec_parse(argv[i + 1], &p)) bm_usage_die("bench_train: bad --prec %s", argv[i + 1]);
      prec = p;
    } else bm_usage_die("usage: bench_train [--batch B] [--steps N] [--prec P] [--classes C]");
  }
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) bm_die("bench_train: %s", err);
  printf("device %s\n", bm_cuda_describe(cu));

  /* the bf16 peak: 8192^3 GEMMs, median of 20 timed with events */
  {
    bmct_ctx *c = bmct_ctx_new(cu);
    size_t n = (size_t)8192 * 8192;
    bm_rng r;
    bm_rng_seed(&r, 1);
    float *h = filled(&r, n, 1, 0);
    void *A = bm_cuda_malloc(n * 2, "A"), *Bm = bm_cuda_malloc(n * 2, "B"), *Cm = bm_cuda_malloc(n * 2, "C");
    bmct_upload_as(c, A, BM_PREC_BF16, h, n), bmct_upload_as(c, Bm, BM_PREC_BF16, h, n);
    free(h);
    bm_cuda_event *e0 = bm_cuda_event_new(), *e1 = bm_cuda_event_new();
    float ms[20];
    for (int k = 0; k < 25; k++) {
      bm_cuda_event_record(cu, e0, BM_STREAM_COMPUTE);
      bmct_gemm(c, BM_PREC_BF16, 0, 0, 1, 8192, 8192, 8192, 1.0f, A, 8192, 0, Bm, 8192, 0, 0.0f, Cm, 8192, 0, 1);
      bm_cuda_event_record(cu, e1, BM_STREAM_COMPUTE);
      bm_cuda_event_sync(e1);
      if (k >= 5) ms[k - 5] = bm_cuda_event_ms(e0, e1);
    }
    for (int i = 0; i < 20; i++) /* insertion sort for the median */
      for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) { float t = ms[j]; ms[j] = ms[j - 1]; ms[j - 1] = t; }
    double med = 0.5 * (ms[9] + ms[10]);
    printf("bf16_gemm_tflops %.1f\n", 2.0 * 8192 * 8192 * 8192 / (med * 1e-3) / 1e12);
    bm_cuda_free(A), bm_cuda_free(Bm), bm_cuda_free(Cm);
    bm_cuda_event_free(e0), bm_cuda_event_free(e1);
    bmct_ctx_free(c);
  }

  bm_rng r;
  bm_rng_seed(&r, 2);
  bm_vit v;
  vit_b16(&v, &r);
  int E = 512;
  float *W = filled(&r, (size_t)C * E, 0.05f, 0), *b = filled(&r, C, 0.0f, 0);
  bm_ft f;
  bm_ft_init(&f, &v, -1, 0, C, 0, NULL, W, b, 1e-5, 1e-3, 0.1);
  bm_cuda_ft *g = bm_cuda_ft_init(&f, cu, prec);
  size_t ni = (size_t)B * 3 * 224 * 224;
  float *img = filled(&r, ni, 2.0f, 0), *Y = bm_xcalloc((size_t)B * C, sizeof(float));
  for (int i = 0; i < B; i++) Y[(size_t)i * C + i % C] = 1;
  double loss = 0;
  for (int s = 0; s < 3; s++) loss = bm_cuda_ft_grad(g, img, Y, B, (uint64_t)s), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  double t0 = now();
  for (int s = 0; s < steps; s++) loss = bm_cuda_ft_grad(g, img, Y, B, (uint64_t)s), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  double dt = now() - t0;
  if (!isfinite(loss)) bm_die("bench_train: the loss is %f", loss);
  printf("prec %s\nbatch %d\nms_per_step %.1f\nsamples_per_s %.1f\nmodel_tflops %.1f\nloss %.4f\n",
         bm_prec_name(prec), B, 1e3 * dt / steps, B * steps / dt, 3 * 35.1e9 * B * steps / dt / 1e12, loss);
  bm_cuda_ft_free(g);
  bm_ft_free(&f);
  bm_cuda_close(cu);
  return 0;
}
