/* test_cuda_vit_train.c - the GPU trainable image tower (bm_cuda_vt,
 * common/cuda/bmcuda_vit_train.h) against the CPU's (vit_train.h), on tiny
 * random ViTs drawn afresh each run (BM_SEED replays one), fresh random
 * images and output gradients, every GPU output poisoned (NaN) first:
 *   - two shapes: width 128 / 2 heads (head dim 64: bf16 and fp16 run the
 *     flash attention kernels) and width 48 / 3 heads (head dim 16: the
 *     batched attention), each in fp32, bf16 and fp16;
 *   - unlock all / unlock-last 1 / unlock 0 (final norm + projection only) /
 *     frozen: the embedding forward alone, then embedding + tokens; the
 *     backward from demb only, from dtokens only, from both: every
 *     parameter gradient, tensor by tensor (the frozen ones have none);
 *     accumulation over two forward/backward pairs (the second from images
 *     already on the device);
 *   - patch dropout 0.5 (unlock all and unlock-last 1): the kept sets equal
 *     the CPU's, the outputs and gradients agree, a new step draws new sets;
 *     switching it off restores the full token count;
 *   - the tensor table, parameter upload / download (bits), the forward of
 *     uploaded parameters.
 * Tolerances, as max |GPU - CPU| over the largest |CPU| value of the output
 * or of the parameter tensor: fp32 1e-5 forward, 1e-4 gradients (as
 * test_cuda_train's verified fine-tuning step: summation order in long
 * gradient sums); bf16 and fp16 2e-2 forward, 5e-2 gradients. For bf16 and
 * fp16 the CPU gets the GEMM weights and images rounded to that type first,
 * so only the GPU's rounding of its activations differs. Each check prints
 * its worst error, so a GPU session can see the margins.
 * Without a GPU (or without nvcc) it prints one "# skip" line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

#ifndef BM_HAVE_CUDA
int main(void) {
  printf("# skip: test_cuda_vit_train: no GPU (built without CUDA)\n");
  CHECK_DONE();
}
#else

#include "cuda/bmcuda_vit_train.h"
#include "kernels.h"
#include "util.h"
#include "vit_train.h"

static bm_rng rng;

typedef struct {
  int S, P, W, D, H, M, E;
} shape;

static float *rnd(size_t n, float scale) {
  float *x = bm_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = (float)(bm_rng_uniform(&rng) * 2 - 1) * scale;
  return x;
}
static float *nans(size_t n) {
  float *x = bm_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = NAN;
  return x;
}
/* x rounded in place to prec's values (through the device's conversion) */
static void round_to(bmct_ctx *c, int prec, float *x, size_t n) {
  if (prec == BM_PREC_FP32 || !n) return;
  void *d = bm_cuda_malloc(n * bm_prec_size(prec), "test");
  bmct_upload_as(c, d, prec, x, n);
  bmct_download_as(c, x, d, prec, n);
  bm_cuda_free(d);
}
static float *dev(bmct_ctx *c, const float *h, size_t n) {
  float *d = bm_cuda_malloc(n * 4 + 4, "test");
  bmct_upload(c, d, h, n * 4);
  return d;
}
static float *poisoned(bmct_ctx *c, size_t n) {
  float *d = bm_cuda_malloc(n * 4 + 4, "test");
  bmct_poison(c, d, BM_PREC_FP32, n);
  return d;
}
static float *down(bmct_ctx *c, const float *d, size_t n) {
  float *h = bm_xmalloc(sizeof(float) * (n ? n : 1));
  bmct_download(c, h, d, n * 4);
  return h;
}

static double relerr(const float *got, const float *want, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY);
  return err / (scale > 0 ? scale : 1);
}
static double tol_fwd(int prec) { return prec == BM_PREC_FP32 ? 1e-5 : 2e-2; }
static double tol_grad(int prec) { return prec == BM_PREC_FP32 ? 1e-4 : 5e-2; }

/* device d against the host reference */
static void cmpd(bmct_ctx *c, const char *ctx, const char *what, int prec, const float *d, const float *want, size_t n) {
  float *got = down(c, d, n);
  double e = relerr(got, want, n);
  CHECK(e <= tol_fwd(prec), "%s: %s: max error %.2e of the largest value (limit %.0e)", ctx, what, e, tol_fwd(prec));
  free(got);
}

/* Every gradient of the GPU tower (downloaded into h, poisoned first)
 * against the CPU tower's, tensor by tensor. */
static void grads_cmp(bm_cuda_vt *g, const bm_vit_train *cpu, bm_vit_train *h, const char *ctx, const char *what,
                      int prec) {
  size_t ng = cpu->np - cpu->goff;
  for (size_t i = 0; i < ng; i++) h->g[i] = NAN;
  bm_cuda_vt_download_grads(g, h);
  double worst = 0;
  const char *wname = "none";
  int ntrained = 0;
  for (int k = 0; k < cpu->nt; k++) {
    const float *want = bm_vit_train_grad(cpu, k), *got = bm_vit_train_grad(h, k);
    if (!want) continue;
    ntrained++;
    double e = relerr(got, want, cpu->t[k].n);
    if (!(e <= worst)) worst = e, wname = cpu->t[k].name;
  }
  CHECK(ntrained > 0 && worst <= tol_grad(prec),
        "%s: %s: all %d trained tensors' gradients within %.0e of each one's largest (worst %.2e, %s)", ctx, what,
        ntrained, tol_grad(prec), worst, wname);
}

/* Draws the next cnt parameters: base + U(+-spread), matrices rounded to prec. */
typedef struct {
  float *buf;
  size_t at;
  bmct_ctx *c;
  int prec;
} drawer;
static const float *take(drawer *z, size_t cnt, float base, float spread, int mat) {
  float *p = z->buf + z->at;
  for (size_t i = 0; i < cnt; i++) p[i] = base + (float)(bm_rng_uniform(&rng) * 2 - 1) * spread;
  if (mat) round_to(z->c, z->prec, p, cnt);
  z->at += cnt;
  return p;
}

/* A random ViT of shape s: one buffer, v's pointers into it. The GEMM
 * weights (patch embedding, block matrices) are rounded to prec's values. */
static float *make_vit(bm_vit *v, const shape *s, bmct_ctx *c, int prec) {
  int W = s->W, M = s->M, P = s->P, G = s->S / s->P, T = 1 + G * G, E = s->E, K = 3 * P * P;
  *v = (bm_vit){.image_size = s->S, .patch = P, .grid = G, .ntok = T, .width = W, .depth = s->D, .heads = s->H,
                .mlp = M, .embed_dim = E, .eps = 1e-6f};
  size_t per = (size_t)2 * W + (size_t)3 * W * W + 3 * W + (size_t)W * W + W + 2 * W + (size_t)M * W + M +
               (size_t)W * M + W;
  size_t n = (size_t)W * K + W + W + (size_t)T * W + per * s->D + 2 * W + (size_t)E * W;
  float *buf = bm_xmalloc(sizeof(float) * n);
  drawer z = {buf, 0, c, prec};
  /* matrices ~ U(+-sqrt(3/in)): unit-variance outputs; norms near 1 */
  v->patch_w = take(&z, (size_t)W * K, 0, sqrtf(3.0f / K), 1), v->patch_b = take(&z, W, 0, 0.2f, 0);
  v->cls = take(&z, W, 0, 0.5f, 0), v->pos = take(&z, (size_t)T * W, 0, 0.5f, 0);
  bm_vit_block *b = bm_xcalloc((size_t)s->D, sizeof *b);
  for (int l = 0; l < s->D; l++) {
    b[l].ln1_w = take(&z, W, 1, 0.3f, 0), b[l].ln1_b = take(&z, W, 0, 0.2f, 0);
    b[l].qkv_w = take(&z, (size_t)3 * W * W, 0, sqrtf(3.0f / W), 1), b[l].qkv_b = take(&z, 3 * W, 0, 0.2f, 0);
    b[l].proj_w = take(&z, (size_t)W * W, 0, sqrtf(3.0f / W), 1), b[l].proj_b = take(&z, W, 0, 0.2f, 0);
    b[l].ln2_w = take(&z, W, 1, 0.3f, 0), b[l].ln2_b = take(&z, W, 0, 0.2f, 0);
    b[l].fc1_w = take(&z, (size_t)M * W, 0, sqrtf(3.0f / W), 1), b[l].fc1_b = take(&z, M, 0, 0.2f, 0);
    b[l].fc2_w = take(&z, (size_t)W * M, 0, sqrtf(3.0f / M), 1), b[l].fc2_b = take(&z, W, 0, 0.2f, 0);
  }
  v->blocks = b;
  v->norm_w = take(&z, W, 1, 0.3f, 0), v->norm_b = take(&z, W, 0, 0.2f, 0);
  v->head_w = take(&z, (size_t)E * W, 0, sqrtf(3.0f / W), 0); /* the head is an fp32 GEMM on the GPU */
  if (z.at != n) bm_die("test: %zu of %zu parameters drawn", z.at, n);
  return buf;
}

static float *images(bmct_ctx *c, int prec, int B, int S) {
  float *x = rnd((size_t)B * 3 * S * S, 2.0f);
  round_to(c, prec, x, (size_t)B * 3 * S * S); /* the GPU's im2col rounds them so */
  return x;
}

/* The tensor table and the buffers a GPU optimizer would use */
static void t_table(bm_cuda_vt *g, const bm_vit_train *cpu, int prec, const char *ctx) {
  int nt = -1, same = 1;
  const bm_vt_tensor *t = bm_cuda_vt_tensors(g, &nt);
  same = nt == cpu->nt && bm_cuda_vt_np(g) == cpu->np && bm_cuda_vt_goff(g) == cpu->goff;
  for (int k = 0; same && k < nt; k++)
    same = !strcmp(t[k].name, cpu->t[k].name) && t[k].off == cpu->t[k].off && t[k].n == cpu->t[k].n &&
           t[k].decay == cpu->t[k].decay;
  CHECK(same, "%s: tensor table, np %zu and goff %zu as the CPU tower's", ctx, bm_cuda_vt_np(g), bm_cuda_vt_goff(g));
  CHECK((bm_cuda_vt_grads(g) == NULL) == (cpu->g == NULL) && bm_cuda_vt_params(g) != NULL &&
            ((bm_cuda_vt_params_compute(g) == (void *)bm_cuda_vt_params(g)) == (prec == BM_PREC_FP32)),
        "%s: gradient buffer exactly when the CPU has one; a separate compute-type copy unless fp32", ctx);
}

/* One tower (unlock, frozen) in one precision: forwards, the three
 * backwards, accumulation. */
static void t_tower(bm_cuda *cu, bmct_ctx *c, const bm_vit *v, const shape *s, int prec, int unlock, int frozen) {
  int B = 3, S = s->S, E = s->E, W = s->W, T = v->ntok;
  char ctx[160];
  snprintf(ctx, sizeof ctx, "%s W%d/H%d %s", bm_prec_name(prec), s->W, s->H,
           frozen ? "frozen" : unlock < 0 ? "unlock all" : unlock == 0 ? "unlock 0 (norm + proj)" : "unlock-last 1");
  bm_vit_train cpu, h;
  bm_vit_train_init(&cpu, v, unlock, frozen);
  bm_vit_train_init(&h, v, unlock, frozen);
  bm_vt_acts a = {0};
  bm_cuda_vt *g = bm_cuda_vt_new(&cpu, cu, prec);
  t_table(g, &cpu, prec, ctx);
  size_t nE = (size_t)B * E, nT = (size_t)B * T * W;
  float *img = images(c, prec, B, S), *emb = nans(nE), *tok = nans(nT);
  float *demb = rnd(nE, 1), *dtok = rnd(nT, 1), *demb_d = dev(c, demb, nE), *dtok_d = dev(c, dtok, nT);
  float *emb_d = poisoned(c, nE), *tok_d = poisoned(c, nT);

  /* the embedding alone, and its backward */
  bm_vit_train_forward(&cpu, &a, img, B, emb);
  int Tg = bm_cuda_vt_forward(g, img, B, emb_d, NULL);
  CHECK(Tg == T && bm_cuda_vt_keep(g) == NULL, "%s: %d tokens an image, no patch dropped", ctx, Tg);
  cmpd(c, ctx, "embedding forward (no tokens asked)", prec, emb_d, emb, nE);
  if (!frozen) {
    bm_vit_train_zero_grad(&cpu);
    bm_cuda_vt_zero_grad(g);
    bm_vit_train_backward(&cpu, &a, demb, B);
    bm_cuda_vt_backward(g, demb_d, NULL, B);
    grads_cmp(g, &cpu, &h, ctx, "backward from demb only", prec);
  } else {
    bm_cuda_vt_backward(g, demb_d, NULL, B); /* does nothing */
    CHECK(bm_cuda_vt_grads(g) == NULL, "%s: no gradients, and the backward is a no-op", ctx);
  }

  /* embedding + tokens */
  bmct_poison(c, emb_d, BM_PREC_FP32, nE);
  bm_vit_train_forward_tokens(&cpu, &a, img, B, emb, tok);
  bm_cuda_vt_forward(g, img, B, emb_d, tok_d);
  cmpd(c, ctx, "embedding forward (with tokens)", prec, emb_d, emb, nE);
  cmpd(c, ctx, "tokens forward (final norm of every token)", prec, tok_d, tok, nT);
  if (!frozen) {
    const char *what[3] = {"backward from demb only (forward with tokens)", "backward from dtokens only",
                           "backward from demb and dtokens"};
    for (int mode = 0; mode < 3; mode++) {
      bm_vit_train_zero_grad(&cpu);
      bm_cuda_vt_zero_grad(g);
      bm_vit_train_backward_tokens(&cpu, &a, mode != 1 ? demb : NULL, mode != 0 ? dtok : NULL, B);
      bm_cuda_vt_backward(g, mode != 1 ? demb_d : NULL, mode != 0 ? dtok_d : NULL, B);
      grads_cmp(g, &cpu, &h, ctx, what[mode], prec);
    }
    /* accumulation: a second forward (images already on the device) and
     * backward add to the first's gradients */
    bm_vit_train_zero_grad(&cpu);
    bm_cuda_vt_zero_grad(g);
    bm_vit_train_backward_tokens(&cpu, &a, demb, dtok, B);
    bm_cuda_vt_backward(g, demb_d, dtok_d, B);
    float *img2 = images(c, prec, B, S), *img2_d = dev(c, img2, (size_t)B * 3 * S * S);
    float *demb2 = rnd(nE, 1), *dtok2 = rnd(nT, 1);
    bmct_upload(c, demb_d, demb2, nE * 4), bmct_upload(c, dtok_d, dtok2, nT * 4);
    bmct_poison(c, tok_d, BM_PREC_FP32, nT);
    bm_vit_train_forward_tokens(&cpu, &a, img2, B, emb, tok);
    bm_cuda_vt_forward_dev(g, img2_d, B, emb_d, tok_d);
    cmpd(c, ctx, "tokens forward of device images", prec, tok_d, tok, nT);
    bm_vit_train_backward_tokens(&cpu, &a, demb2, dtok2, B);
    bm_cuda_vt_backward(g, demb_d, dtok_d, B);
    grads_cmp(g, &cpu, &h, ctx, "gradients accumulated over two forward/backward pairs", prec);
    free(img2), free(demb2), free(dtok2), bm_cuda_free(img2_d);
  }
  bm_cuda_vt_free(g);
  bm_vt_acts_free(&a);
  bm_vit_train_free(&cpu), bm_vit_train_free(&h);
  free(img), free(emb), free(tok), free(demb), free(dtok);
  bm_cuda_free(demb_d), bm_cuda_free(dtok_d), bm_cuda_free(emb_d), bm_cuda_free(tok_d);
}

/* Patch dropout 0.5: kept sets, outputs and gradients as the CPU's. */
static void t_patch_dropout(bm_cuda *cu, bmct_ctx *c, const bm_vit *v, const shape *s, int prec, int unlock) {
  int B = 3, S = s->S, E = s->E, W = s->W, GG = v->grid * v->grid;
  float pd = 0.5f;
  int K = bm_vit_patch_keep_count(GG, pd), T = 1 + K;
  char ctx[160];
  snprintf(ctx, sizeof ctx, "%s W%d/H%d %s, patch dropout %.1f (%d of %d patches kept)", bm_prec_name(prec), s->W,
           s->H, unlock < 0 ? "unlock all" : "unlock-last 1", pd, K, GG);
  bm_vit_train cpu, h;
  bm_vit_train_init(&cpu, v, unlock, 0);
  bm_vit_train_init(&h, v, unlock, 0);
  uint64_t seed = bm_rng_next(&rng);
  cpu.patch_dropout = pd, cpu.pd_seed = seed, cpu.pd_step = 5;
  bm_vt_acts a = {0};
  bm_cuda_vt *g = bm_cuda_vt_new(&cpu, cu, prec); /* takes vt's patch-dropout settings */
  size_t nE = (size_t)B * E, nT = (size_t)B * T * W;
  float *emb = nans(nE), *tok = nans(nT), *emb_d = poisoned(c, nE), *tok_d = poisoned(c, nT);
  float *demb = rnd(nE, 1), *dtok = rnd(nT, 1), *demb_d = dev(c, demb, nE), *dtok_d = dev(c, dtok, nT);
  int *keep1 = bm_xmalloc(sizeof(int) * (size_t)B * K);
  for (int step = 5; step <= 6; step++) {
    float *img = images(c, prec, B, S);
    bmct_poison(c, emb_d, BM_PREC_FP32, nE), bmct_poison(c, tok_d, BM_PREC_FP32, nT);
    cpu.pd_step = (uint64_t)step;
    if (step == 6) bm_cuda_vt_set_patch_dropout(g, pd, seed, (uint64_t)step);
    CHECK(bm_cuda_vt_ntok(g) == T, "%s step %d: %d tokens an image announced (%d)", ctx, step, T, bm_cuda_vt_ntok(g));
    bm_vit_train_forward_tokens(&cpu, &a, img, B, emb, tok);
    int Tg = bm_cuda_vt_forward(g, img, B, emb_d, tok_d);
    const int *kg = bm_cuda_vt_keep(g);
    CHECK(Tg == T && kg && !memcmp(kg, a.keep, sizeof(int) * (size_t)B * K),
          "%s step %d: the kept patches of every image are the CPU's (bm_vit_patch_keep)", ctx, step);
    if (step == 5 && kg) memcpy(keep1, kg, sizeof(int) * (size_t)B * K);
    if (step == 6)
      CHECK(kg && memcmp(kg, keep1, sizeof(int) * (size_t)B * K), "%s: step 6 keeps other patches than step 5", ctx);
    cmpd(c, ctx, "embedding forward", prec, emb_d, emb, nE);
    cmpd(c, ctx, "tokens forward (CLS then the kept patches)", prec, tok_d, tok, nT);
    bm_vit_train_zero_grad(&cpu);
    bm_cuda_vt_zero_grad(g);
    bm_vit_train_backward_tokens(&cpu, &a, demb, dtok, B);
    bm_cuda_vt_backward(g, demb_d, dtok_d, B);
    grads_cmp(g, &cpu, &h, ctx, step == 5 ? "backward from demb and dtokens" : "backward, second step", prec);
    free(img);
  }
  /* off again: every token, the full-size buffers */
  cpu.patch_dropout = 0;
  bm_cuda_vt_set_patch_dropout(g, 0, seed, 7);
  float *img = images(c, prec, B, S), *emb_full = nans(nE);
  bm_vit_train_forward(&cpu, &a, img, B, emb_full);
  bmct_poison(c, emb_d, BM_PREC_FP32, nE);
  int Tg = bm_cuda_vt_forward(g, img, B, emb_d, NULL);
  CHECK(Tg == v->ntok && bm_cuda_vt_keep(g) == NULL, "%s: dropout off again: %d tokens an image", ctx, Tg);
  cmpd(c, ctx, "embedding forward with patch dropout off again", prec, emb_d, emb_full, nE);
  bm_cuda_vt_free(g);
  bm_vt_acts_free(&a);
  bm_vit_train_free(&cpu), bm_vit_train_free(&h);
  free(emb), free(tok), free(demb), free(dtok), free(keep1), free(img), free(emb_full);
  bm_cuda_free(emb_d), bm_cuda_free(tok_d), bm_cuda_free(demb_d), bm_cuda_free(dtok_d);
}

/* Parameters down and up (bits), and the forward of uploaded ones. */
static void t_params(bm_cuda *cu, bmct_ctx *c, const bm_vit *v, const shape *s, int prec) {
  int B = 2, E = s->E;
  char ctx[96];
  snprintf(ctx, sizeof ctx, "%s W%d/H%d parameters", bm_prec_name(prec), s->W, s->H);
  bm_vit_train cpu, h;
  bm_vit_train_init(&cpu, v, 1, 0);
  bm_vit_train_init(&h, v, 1, 0);
  bm_cuda_vt *g = bm_cuda_vt_new(&cpu, cu, prec);
  for (size_t i = 0; i < h.np; i++) h.p[i] = NAN;
  bm_cuda_vt_download(g, &h);
  CHECK(!memcmp(h.p, cpu.p, sizeof(float) * cpu.np), "%s: download gives the initial parameters bit for bit", ctx);
  /* a resumed run: other parameters uploaded, the compute copy follows */
  for (size_t i = 0; i < cpu.np; i++) cpu.p[i] *= 1.0f + (float)(bm_rng_uniform(&rng) - 0.5) * 0.1f;
  for (int k = 0; k < cpu.nt; k++) {
    const char *nm = cpu.t[k].name;
    if (strstr(nm, "weight") && cpu.t[k].ndim >= 2 && !strstr(nm, "head")) round_to(c, prec, cpu.p + cpu.t[k].off, cpu.t[k].n);
  }
  bm_cuda_vt_upload(g, &cpu);
  for (size_t i = 0; i < h.np; i++) h.p[i] = NAN;
  bm_cuda_vt_download(g, &h);
  CHECK(!memcmp(h.p, cpu.p, sizeof(float) * cpu.np), "%s: upload then download: the same bits", ctx);
  bm_vt_acts a = {0};
  float *img = images(c, prec, B, s->S), *emb = nans((size_t)B * E), *emb_d = poisoned(c, (size_t)B * E);
  bm_vit_train_forward(&cpu, &a, img, B, emb);
  bm_cuda_vt_forward(g, img, B, emb_d, NULL);
  cmpd(c, ctx, "embedding forward after an upload (compute-type copy refreshed)", prec, emb_d, emb, (size_t)B * E);
  bm_cuda_vt_free(g);
  bm_vt_acts_free(&a);
  bm_vit_train_free(&cpu), bm_vit_train_free(&h);
  free(img), free(emb), bm_cuda_free(emb_d);
}

int main(void) {
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) {
    printf("# skip: test_cuda_vit_train: no GPU (%s)\n", err);
    return 0;
  }
  const char *env = getenv("BM_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
  printf("# seed %llu (BM_SEED=%llu replays it)\n", (unsigned long long)seed, (unsigned long long)seed);
  bm_rng_seed(&rng, seed);
  bm_set_threads(2);
  bmct_ctx *c = bmct_ctx_new(cu);
  shape shapes[2] = {{.S = 32, .P = 8, .W = 128, .D = 3, .H = 2, .M = 256, .E = 40},
                     {.S = 24, .P = 8, .W = 48, .D = 2, .H = 3, .M = 96, .E = 24}};
  int precs[3] = {BM_PREC_FP32, BM_PREC_BF16, BM_PREC_FP16};
  /* under compute-sanitizer (tests/gpu/run.sh sets BM_TEST_QUICK) two of
   * the six: the flash path (width 128, bf16) and the batched one (width 48,
   * fp32) still run every kernel of the tower */
  int quick = getenv("BM_TEST_QUICK") != NULL;
  if (quick) printf("# skip: 4 of the 6 shape/precision pairs (BM_TEST_QUICK)\n");
  for (int si = 0; si < 2; si++)
    for (int k = 0; k < 3; k++) {
      if (quick && !(si == 0 ? precs[k] == BM_PREC_BF16 : precs[k] == BM_PREC_FP32)) continue;
      bm_vit v;
      float *buf = make_vit(&v, &shapes[si], c, precs[k]);
      t_tower(cu, c, &v, &shapes[si], precs[k], -1, 0);
      t_tower(cu, c, &v, &shapes[si], precs[k], 1, 0);
      t_tower(cu, c, &v, &shapes[si], precs[k], 0, 0);
      t_tower(cu, c, &v, &shapes[si], precs[k], -1, 1);
      t_patch_dropout(cu, c, &v, &shapes[si], precs[k], -1);
      if (si == 0) t_patch_dropout(cu, c, &v, &shapes[si], precs[k], 1);
      t_params(cu, c, &v, &shapes[si], precs[k]);
      free(v.blocks), free(buf);
    }
  bmct_ctx_free(c);
  bm_cuda_close(cu);
  CHECK_DONE();
}
#endif
