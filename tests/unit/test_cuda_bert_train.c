/* test_cuda_bert_train.c - the text tower's training on the GPU
 * (bm_cuda_bt, cuda/bmcuda_train.h) against the CPU's bert_train.c, on
 * small random BERTs, fp32 / bf16 / fp16:
 *   A  width 128, 2 heads (head dim 64: bf16 / fp16 take the flash kernels;
 *      once more with BM_CUDA_ATTN=fused-fp32, the plain ones), 2 layers,
 *      texts of up to 80 tokens (more than one 64-token flash tile);
 *   B  width 96, 4 heads (head dim 24: lanes past the head idle), 3 layers;
 *   C  width 160, 2 heads (head dim 80: four dims a lane), 1 layer.
 * Fresh random ids each batch, texts of length 1 and of the full context
 * among others, prompt vectors (negative ids) in the texts; GPU outputs are
 * NaN-poisoned before each run. Checked:
 *   - forward: emb and tokens vs bm_bert_train_forward;
 *   - backward with demb only, dtokens only and both: every parameter
 *     gradient and dctx, unlock all (gradients and dctx start from random
 *     values on both sides, so "+=" is checked, not "="), unlock-last-1
 *     with and without prompt vectors, unlock 0 (projection only), frozen
 *     with dctx (no parameter gradient, the prompts' through every layer),
 *     frozen without dctx (nothing done);
 *   - accumulation: two forward/backward pairs of different batches, and
 *     two backward calls (demb, then dtokens) of one forward;
 *   - the same bits on a second run where no atomics are involved (the
 *     plain attention path); download / upload of the parameters.
 * Tolerances (largest absolute error over the scale named):
 *   forward emb, tokens: fp32 1e-5, fp16 1e-2, bf16 2e-2 of the largest
 *     reference value of that output;
 *   gradients: fp32 1e-4, fp16 2e-2, bf16 5e-2 of max(the tensor's largest
 *     reference gradient, floor), the floor being 1e-3 (fp32) / 1e-2
 *     (bf16, fp16) of the largest gradient over all tensors: a gradient
 *     that is zero in exact arithmetic (the key bias: softmax ignores a
 *     shift) is rounding noise on both sides, measured against 3e-2
 *     (bf16) / 1e-2 (fp32, fp16) of the largest gradient (floor_frac);
 *     dctx: the same tolerances of its largest value.
 * The CPU runs on the GPU's parameters rounded to the compute type, so only
 * the rounding of activations and gradients and the summation order differ.
 * The errors are printed ("# ..." lines) so a failure shows its margin.
 * Without a GPU (or without nvcc) it prints one "# skip" line. BM_TEST_QUICK
 * (tests/gpu/run.sh, under compute-sanitizer) runs configuration B only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifndef BM_HAVE_CUDA
int main(void) {
  printf("# skip: test_cuda_bert_train: no GPU (built without CUDA)\n");
  CHECK_DONE();
}
#else

#include "bert_train.h"
#include "cuda/bmcuda_train.h"
#include "kernels.h"
#include "util.h"

static bm_rng rng;

static float uni(void) { return (float)(bm_rng_uniform(&rng) * 2 - 1); }
static float *rnd(size_t n, float scale) {
  float *x = bm_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = uni() * scale;
  return x;
}
static float *copyf(const float *x, size_t n) {
  float *y = bm_xmalloc(sizeof(float) * (n ? n : 1));
  memcpy(y, x, sizeof(float) * n);
  return y;
}
static float *dput(bmct_ctx *c, const float *h, size_t n) {
  float *d = bm_cuda_malloc(n * 4 + 4, "test");
  bmct_upload(c, d, h, n * 4);
  return d;
}
static float *dpoison(bmct_ctx *c, size_t n) {
  float *d = bm_cuda_malloc(n * 4 + 4, "test");
  bmct_poison(c, d, BM_PREC_FP32, n);
  return d;
}
static float *dget(bmct_ctx *c, const float *d, size_t n) {
  float *h = bm_xmalloc(sizeof(float) * (n ? n : 1));
  bmct_download(c, h, d, n * 4);
  return h;
}

/* largest |got - want| over max(largest |want|, floor); NaN counts infinite */
static double relerr(const float *got, const float *want, size_t n, double floor) {
  double scale = floor, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY);
  return err / (scale > 0 ? scale : 1);
}
static double tol_fwd(int p) { return p == BM_PREC_FP32 ? 1e-5 : p == BM_PREC_FP16 ? 1e-2 : 2e-2; }
static double tol_grad(int p) { return p == BM_PREC_FP32 ? 1e-4 : p == BM_PREC_FP16 ? 2e-2 : 5e-2; }
/* The key bias's gradient is zero in exact arithmetic: what is computed is
 * what is left of sums that cancel (the FlashAttention-2 backward's D from
 * the stored out; dqkv stored in the compute type before its column sum),
 * noise of the other gradients' size. In the CPU simulation (tests/gpu/sim,
 * seed 20261124) it reached 6.4e-4 of the largest gradient in bf16 (flash
 * and plain kernels alike) and 7.6e-8 in fp32, against 5e-4 and 1e-7 with
 * the general floors: it is measured against 3e-2 (bf16) / 1e-2 (fp32,
 * fp16) of the largest gradient instead. The q and v biases share its
 * column sum and keep the general floor. */
static double floor_frac(int p, const char *name) {
  if (strstr(name, "attention.self.key.bias")) return p == BM_PREC_BF16 ? 3e-2 : 1e-2;
  return p == BM_PREC_FP32 ? 1e-3 : 1e-2;
}

/* ---- a random tower ---- */

typedef struct {
  const char *name;
  int W, heads, D, M, V, ctx, Hp, E, nctx;
  int lens[8], nseq, lens2[8], nseq2;
} cfg;

typedef struct {
  bm_bert m;
  float *buf;
} tiny;

static void fill(float *x, size_t cnt, float scale, float bias) {
  for (size_t i = 0; i < cnt; i++) x[i] = bias + uni() * scale;
}

/* weights of variance 1/fan-in, LayerNorm gains near 1: activations of
 * order 1 through the layers, as in a trained model */
static void tiny_new(tiny *t, const cfg *k) {
  bm_bert *m = &t->m;
  memset(t, 0, sizeof *t);
  *m = (bm_bert){.vocab = k->V, .maxpos = k->ctx, .context = k->ctx, .width = k->W, .depth = k->D,
                 .heads = k->heads, .mlp = k->M, .proj_hidden = k->Hp, .embed_dim = k->E, .eps = 1e-12f,
                 .ntypes = 2};
  size_t W = k->W, M = k->M, n = (size_t)k->V * W + (size_t)k->ctx * W + 2 * W + 2 * W +
                                 (size_t)k->D * (4 * W * W + 3 * W + W + 2 * W + M * W + M + W * M + W + 2 * W) +
                                 (size_t)k->Hp * W + (size_t)k->E * k->Hp;
  float *p = t->buf = bm_xmalloc(sizeof(float) * n);
  size_t at = 0;
#define TAKE(cnt, scale, bias) (fill(p + at, (cnt), (scale), (bias)), at += (cnt), p + at - (cnt))
  m->layers = bm_xcalloc((size_t)k->D, sizeof(bm_bert_layer));
  float sw = sqrtf(3.0f / (float)W), sm = sqrtf(3.0f / (float)M), sh = sqrtf(3.0f / (float)k->Hp);
  m->word = TAKE((size_t)k->V * W, 0.8f, 0), m->pos = TAKE((size_t)k->ctx * W, 0.3f, 0);
  m->type = TAKE(2 * W, 0.2f, 0), m->emb_ln_w = TAKE(W, 0.2f, 1), m->emb_ln_b = TAKE(W, 0.1f, 0);
  for (int l = 0; l < k->D; l++) {
    bm_bert_layer *y = &m->layers[l];
    y->qkv_w = TAKE(3 * W * W, sw, 0), y->qkv_b = TAKE(3 * W, 0.1f, 0);
    y->o_w = TAKE(W * W, sw, 0), y->o_b = TAKE(W, 0.1f, 0);
    y->ln1_w = TAKE(W, 0.2f, 1), y->ln1_b = TAKE(W, 0.1f, 0);
    y->fc1_w = TAKE(M * W, sw, 0), y->fc1_b = TAKE(M, 0.1f, 0);
    y->fc2_w = TAKE(W * M, sm, 0), y->fc2_b = TAKE(W, 0.1f, 0);
    y->ln2_w = TAKE(W, 0.2f, 1), y->ln2_b = TAKE(W, 0.1f, 0);
  }
  m->proj0 = TAKE((size_t)k->Hp * W, sw, 0), m->proj2 = TAKE((size_t)k->E * k->Hp, sh, 0);
#undef TAKE
  if (at != n) bm_die("test: tiny model: %zu of %zu floats used", at, n);
}
static void tiny_free(tiny *t) {
  free(t->m.layers), free(t->buf);
}

/* the CPU tower's parameters rounded to the compute type (through the
 * device, its own rounding), so that both sides read the same weights */
static void round_params(bmct_ctx *c, int prec, bm_bert_train *bt) {
  if (prec == BM_PREC_FP32) return;
  void *d = bm_cuda_malloc(bt->np * bm_prec_size(prec) + 4, "test");
  bmct_upload_as(c, d, prec, bt->p, bt->np);
  bmct_download_as(c, bt->p, d, prec, bt->np);
  bm_cuda_free(d);
}

/* ---- a batch ---- */

typedef struct {
  int nseq, N, nctx, W, E;
  int32_t *ids;
  int *start, *len;
  float *ctx, *R1, *R2;     /* host: prompt vectors, demb, dtokens */
  float *dctx, *dR1, *dR2;  /* device copies */
} batch;

/* [CLS] (3), then words of [6, V) and, with prompts, prompt vectors (the
 * first text's right after [CLS], as CoOp), then [SEP] (4); length 1: [CLS] */
static batch make_batch(bmct_ctx *c, const bm_bert *m, const int *lens, int nseq, int nctx) {
  batch b = {.nseq = nseq, .nctx = nctx, .W = m->width, .E = m->embed_dim};
  b.start = bm_xmalloc(sizeof(int) * (size_t)nseq), b.len = bm_xmalloc(sizeof(int) * (size_t)nseq);
  for (int s = 0; s < nseq; s++) b.start[s] = b.N, b.len[s] = lens[s], b.N += lens[s];
  b.ids = bm_xmalloc(sizeof(int32_t) * (size_t)b.N);
  for (int s = 0; s < nseq; s++)
    for (int i = 0; i < lens[s]; i++) {
      int32_t id = 6 + (int32_t)(bm_rng_next(&rng) % (uint64_t)(m->vocab - 6));
      if (nctx && s == 0 && i >= 1 && i <= nctx) id = -i;
      else if (nctx && bm_rng_uniform(&rng) < 0.3) id = -1 - (int32_t)(bm_rng_next(&rng) % (uint64_t)nctx);
      b.ids[b.start[s] + i] = i == 0 ? 3 : i == lens[s] - 1 ? 4 : id;
    }
  b.ctx = nctx ? rnd((size_t)nctx * b.W, 0.7f) : NULL;
  b.R1 = rnd((size_t)nseq * b.E, 1), b.R2 = rnd((size_t)b.N * b.W, 1);
  b.dctx = nctx ? dput(c, b.ctx, (size_t)nctx * b.W) : NULL;
  b.dR1 = dput(c, b.R1, (size_t)nseq * b.E), b.dR2 = dput(c, b.R2, (size_t)b.N * b.W);
  return b;
}
static void batch_free(batch *b) {
  free(b->ids), free(b->start), free(b->len), free(b->ctx), free(b->R1), free(b->R2);
  bm_cuda_free(b->dctx), bm_cuda_free(b->dR1), bm_cuda_free(b->dR2);
}

/* ---- comparisons ---- */

/* GPU forward of b with poisoned outputs vs the CPU's emb, tokens */
static void check_forward(bmct_ctx *c, bm_cuda_bt *g, const batch *b, int use_ctx, const float *emb,
                          const float *tok, int prec, const char *what) {
  size_t nE = (size_t)b->nseq * b->E, nT = (size_t)b->N * b->W;
  float *de = dpoison(c, nE), *dt = dpoison(c, nT);
  bm_cuda_bt_forward(g, b->ids, b->start, b->len, b->nseq, use_ctx ? b->dctx : NULL, de, dt);
  float *he = dget(c, de, nE), *ht = dget(c, dt, nT);
  double ee = relerr(he, emb, nE, 0), te = relerr(ht, tok, nT, 0);
  CHECK(ee <= tol_fwd(prec) && te <= tol_fwd(prec), "%s %s: forward emb and tokens of %d texts, %d tokens (errors %.2g, %.2g; limit %.0e)",
        bm_prec_name(prec), what, b->nseq, b->N, ee, te, tol_fwd(prec));
  bm_cuda_free(de), bm_cuda_free(dt);
  free(he), free(ht);
}

/* every trained tensor's gradient: GPU minus base vs CPU minus base
 * (base: what both started from, or NULL for zero) */
static void check_grads(bmct_ctx *c, bm_cuda_bt *g, const bm_bert_train *cpu, const float *base, int prec,
                        const char *what) {
  size_t ng = cpu->np - cpu->goff;
  float *got = dget(c, bm_cuda_bt_grads(g), ng), *want = copyf(cpu->g, ng);
  if (base)
    for (size_t i = 0; i < ng; i++) got[i] -= base[i], want[i] -= base[i];
  double gmax = 0, worst = 0;
  for (size_t i = 0; i < ng; i++) gmax = fmax(gmax, fabs(want[i]));
  char wname[96] = "";
  int n = 0;
  for (int i = 0; i < cpu->nt; i++) {
    const bm_bt_tensor *t = &cpu->t[i];
    if (t->off < cpu->goff) continue;
    double r = relerr(got + (t->off - cpu->goff), want + (t->off - cpu->goff), t->n,
                      floor_frac(prec, t->name) * gmax);
    if (!(r <= worst)) worst = isnan(r) ? INFINITY : r, snprintf(wname, sizeof wname, "%s", t->name);
    n++;
  }
  CHECK(gmax > 0 && worst <= tol_grad(prec), "%s %s: gradients of %d tensors (worst %.2g, %s; limit %.0e)",
        bm_prec_name(prec), what, n, worst, wname, tol_grad(prec));
  free(got), free(want);
}
static void check_dctx(bmct_ctx *c, const float *dd, const float *want, const float *base, size_t n, int prec,
                       const char *what) {
  float *got = dget(c, dd, n), *w = copyf(want, n);
  for (size_t i = 0; base && i < n; i++) got[i] -= base[i], w[i] -= base[i];
  double r = relerr(got, w, n, 0), wmax = 0;
  for (size_t i = 0; i < n; i++) wmax = fmax(wmax, fabs(w[i]));
  CHECK(wmax > 0 && r <= tol_grad(prec), "%s %s: prompt vectors' gradient (error %.2g; limit %.0e)", bm_prec_name(prec),
        what, r, tol_grad(prec));
  free(got), free(w);
}

/* ---- cases ---- */

static int cap_seq(const cfg *k) { return k->nseq > k->nseq2 ? k->nseq : k->nseq2; }
static int cap_tok(const cfg *k) {
  int a = 0, b = 0;
  for (int s = 0; s < k->nseq; s++) a += k->lens[s];
  for (int s = 0; s < k->nseq2; s++) b += k->lens2[s];
  return a > b ? a : b;
}

/* One forward/backward on CPU and GPU towers of (unlock, frozen): gradients
 * and dctx start from the same random values on both sides; mode 1: demb,
 * 2: dtokens, 3: both. */
static void case_grads(bmct_ctx *c, const cfg *k, const bm_bert *m, int prec, const batch *b, int unlock,
                       int frozen, int use_ctx, int want_dctx, int mode, const char *what) {
  bm_bert_train cpu;
  bm_bt_acts a = {0};
  bm_bert_train_init(&cpu, m, unlock, frozen);
  bm_cuda_bt *g = bm_cuda_bt_new(c, &cpu, prec, cap_seq(k), cap_tok(k), use_ctx ? k->nctx : 0);
  size_t ng = cpu.np - cpu.goff, nC = (size_t)k->nctx * k->W;
  /* small starting values: "=" instead of "+=" shows, and the rounding of
   * base + gradient stays far below the gradients' */
  float *G0 = NULL, *D0 = rnd(nC, 1e-2f), *dctx = copyf(D0, nC), *ddctx = want_dctx ? dput(c, D0, nC) : NULL;
  if (!frozen) {
    G0 = rnd(ng, 1e-2f);
    memcpy(cpu.g, G0, ng * 4);
    bmct_upload(c, bm_cuda_bt_grads(g), G0, ng * 4);
  }
  CHECK(frozen ? !bm_cuda_bt_grads(g) : bm_cuda_bt_grads(g) != NULL, "%s %s: gradient buffer %s", bm_prec_name(prec),
        what, frozen ? "absent (frozen)" : "present");
  size_t nE = (size_t)b->nseq * b->E, nT = (size_t)b->N * b->W;
  float *emb = bm_xmalloc(nE * 4), *tok = bm_xmalloc(nT * 4);
  bm_bert_train_forward(&cpu, &a, b->ids, b->start, b->len, b->nseq, use_ctx ? b->ctx : NULL, emb, tok);
  bm_bert_train_backward(&cpu, &a, mode & 1 ? b->R1 : NULL, mode & 2 ? b->R2 : NULL, want_dctx ? dctx : NULL);
  check_forward(c, g, b, use_ctx, emb, tok, prec, what);
  bm_cuda_bt_backward(g, mode & 1 ? b->dR1 : NULL, mode & 2 ? b->dR2 : NULL, ddctx);
  if (!frozen) check_grads(c, g, &cpu, G0, prec, what);
  if (want_dctx) check_dctx(c, ddctx, dctx, D0, nC, prec, what);
  bm_cuda_bt_free(g);
  bm_bt_acts_free(&a);
  bm_bert_train_free(&cpu);
  free(G0), free(D0), free(dctx), free(emb), free(tok);
  bm_cuda_free(ddctx);
}

/* Gradients accumulate over two forward/backward pairs (different batches
 * and token counts) and over two backward calls of one forward. */
static void case_accumulate(bmct_ctx *c, const cfg *k, const bm_bert *m, int prec, const batch *b1, const batch *b2) {
  bm_bert_train cpu;
  bm_bt_acts a = {0};
  bm_bert_train_init(&cpu, m, -1, 0);
  bm_cuda_bt *g = bm_cuda_bt_new(c, &cpu, prec, cap_seq(k), cap_tok(k), k->nctx);
  size_t nC = (size_t)k->nctx * k->W;
  float *dctx = bm_xcalloc(nC, 4), *ddctx = dpoison(c, nC);
  bmct_upload(c, ddctx, dctx, nC * 4);
  bm_bert_train_zero_grad(&cpu);
  bm_cuda_bt_zero_grad(g);
  const batch *bs[2] = {b1, b2};
  for (int i = 0; i < 2; i++) {
    const batch *b = bs[i];
    bm_bert_train_forward(&cpu, &a, b->ids, b->start, b->len, b->nseq, b->ctx, NULL, NULL);
    bm_bert_train_backward(&cpu, &a, b->R1, b->R2, dctx);
    bm_cuda_bt_forward(g, b->ids, b->start, b->len, b->nseq, b->dctx, NULL, NULL);
    bm_cuda_bt_backward(g, b->dR1, b->dR2, ddctx);
  }
  check_grads(c, g, &cpu, NULL, prec, "accumulated over 2 batches");
  check_dctx(c, ddctx, dctx, NULL, nC, prec, "accumulated over 2 batches");
  /* one forward, backward of demb then of dtokens = one backward of both */
  memset(dctx, 0, nC * 4);
  bmct_upload(c, ddctx, dctx, nC * 4);
  bm_bert_train_zero_grad(&cpu);
  bm_cuda_bt_zero_grad(g);
  bm_bert_train_forward(&cpu, &a, b1->ids, b1->start, b1->len, b1->nseq, b1->ctx, NULL, NULL);
  bm_bert_train_backward(&cpu, &a, b1->R1, b1->R2, dctx);
  bm_cuda_bt_forward(g, b1->ids, b1->start, b1->len, b1->nseq, b1->dctx, NULL, NULL);
  bm_cuda_bt_backward(g, b1->dR1, NULL, ddctx);
  bm_cuda_bt_backward(g, NULL, b1->dR2, ddctx);
  check_grads(c, g, &cpu, NULL, prec, "backward of demb then of dtokens vs of both");
  check_dctx(c, ddctx, dctx, NULL, nC, prec, "backward of demb then of dtokens vs of both");
  bm_cuda_bt_free(g);
  bm_bt_acts_free(&a);
  bm_bert_train_free(&cpu);
  free(dctx);
  bm_cuda_free(ddctx);
}

/* The plain attention path has no atomics: a second run gives the same
 * gradients bit for bit. */
static void case_bits(bmct_ctx *c, const cfg *k, const bm_bert *m, int prec, const batch *b) {
  bm_bert_train cpu;
  bm_bert_train_init(&cpu, m, -1, 0);
  bm_cuda_bt *g = bm_cuda_bt_new(c, &cpu, prec, cap_seq(k), cap_tok(k), k->nctx);
  size_t ng = cpu.np - cpu.goff, nC = (size_t)k->nctx * k->W;
  float *run[2], *dc[2], *ddctx = dpoison(c, nC);
  for (int r = 0; r < 2; r++) {
    float *z = bm_xcalloc(nC, 4);
    bmct_upload(c, ddctx, z, nC * 4);
    free(z);
    bm_cuda_bt_zero_grad(g);
    bm_cuda_bt_forward(g, b->ids, b->start, b->len, b->nseq, b->dctx, NULL, NULL);
    bm_cuda_bt_backward(g, b->dR1, b->dR2, ddctx);
    run[r] = dget(c, bm_cuda_bt_grads(g), ng), dc[r] = dget(c, ddctx, nC);
  }
  CHECK(!memcmp(run[0], run[1], ng * 4) && !memcmp(dc[0], dc[1], nC * 4),
        "%s %s: a second run gives the same gradient bits (no atomics off the flash path)", bm_prec_name(prec), k->name);
  for (int r = 0; r < 2; r++) free(run[r]), free(dc[r]);
  bm_cuda_bt_free(g);
  bm_bert_train_free(&cpu);
  bm_cuda_free(ddctx);
}

/* download gives the parameters back; upload of changed ones is what the
 * next forward computes with (the compute copy refreshed) */
static void case_updown(bmct_ctx *c, const cfg *k, const bm_bert *m, int prec, const batch *b) {
  bm_bert_train cpu, back;
  bm_bt_acts a = {0};
  bm_bert_train_init(&cpu, m, 1, 0);
  bm_bert_train_init(&back, m, 1, 0);
  bm_cuda_bt *g = bm_cuda_bt_new(c, &cpu, prec, cap_seq(k), cap_tok(k), k->nctx);
  for (size_t i = 0; i < back.np; i++) back.p[i] = NAN;
  bm_cuda_bt_download(g, &back);
  CHECK(!memcmp(back.p, cpu.p, cpu.np * 4), "%s %s: download gives the %zu parameters back bit for bit", bm_prec_name(prec),
        k->name, cpu.np);
  /* change every parameter, keeping it on the compute type's grid */
  for (size_t i = 0; i < cpu.np; i++) cpu.p[i] *= 0.5f;
  bm_cuda_bt_upload(g, &cpu);
  size_t nE = (size_t)b->nseq * b->E, nT = (size_t)b->N * b->W;
  float *emb = bm_xmalloc(nE * 4), *tok = bm_xmalloc(nT * 4);
  bm_bert_train_forward(&cpu, &a, b->ids, b->start, b->len, b->nseq, b->ctx, emb, tok);
  check_forward(c, g, b, 1, emb, tok, prec, "after upload of changed parameters");
  bm_cuda_bt_free(g);
  bm_bt_acts_free(&a);
  bm_bert_train_free(&cpu), bm_bert_train_free(&back);
  free(emb), free(tok);
}

static void run_cfg(bmct_ctx *c, const cfg *k, int prec, int quick) {
  tiny t;
  tiny_new(&t, k);
  /* the reference weights: the random ones rounded to the compute type */
  bm_bert_train ref;
  bm_bert_train_init(&ref, &t.m, -1, 0);
  round_params(c, prec, &ref);
  const bm_bert *m = &ref.m;
  int flash = bmct_varlen_attention_flash(prec, k->W, k->heads);
  printf("# %s %s: width %d, %d heads, %d layers; attention: %s\n", bm_prec_name(prec), k->name, k->W, k->heads, k->D,
         flash ? "flash (tensor cores)" : "plain kernels");
  batch b = make_batch(c, m, k->lens, k->nseq, k->nctx), b2 = make_batch(c, m, k->lens2, k->nseq2, k->nctx);
  batch b0 = make_batch(c, m, k->lens2, k->nseq2, 0);
  static const char *mname[4] = {"", "demb only", "dtokens only", "demb + dtokens"};
  char what[160];
  for (int mode = 1; mode <= 3; mode++) {
    snprintf(what, sizeof what, "%s unlock all, prompts, %s", k->name, mname[mode]);
    case_grads(c, k, m, prec, &b, -1, 0, 1, 1, mode, what);
  }
  snprintf(what, sizeof what, "%s unlock-last-1, no prompts", k->name);
  case_grads(c, k, m, prec, &b0, 1, 0, 0, 0, 3, what);
  snprintf(what, sizeof what, "%s unlock-last-1, prompts and dctx", k->name);
  case_grads(c, k, m, prec, &b2, 1, 0, 1, 1, 3, what);
  snprintf(what, sizeof what, "%s unlock-last-1, prompts, no dctx", k->name);
  case_grads(c, k, m, prec, &b, 1, 0, 1, 0, 3, what);
  snprintf(what, sizeof what, "%s unlock 0 (projection), demb", k->name);
  case_grads(c, k, m, prec, &b0, 0, 0, 0, 0, 1, what);
  snprintf(what, sizeof what, "%s frozen with dctx", k->name);
  case_grads(c, k, m, prec, &b, -1, 1, 1, 1, 3, what);
  snprintf(what, sizeof what, "%s frozen without dctx", k->name);
  case_grads(c, k, m, prec, &b2, -1, 1, 1, 0, 3, what);
  if (!quick) {
    case_accumulate(c, k, m, prec, &b, &b2);
    if (!flash) case_bits(c, k, m, prec, &b);
    case_updown(c, k, m, prec, &b2);
  }
  batch_free(&b), batch_free(&b2), batch_free(&b0);
  bm_bert_train_free(&ref);
  tiny_free(&t);
}

int main(void) {
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) {
    printf("# skip: test_cuda_bert_train: no GPU (%s)\n", err);
    return 0;
  }
  bm_set_threads(2);
  bm_rng_seed(&rng, 20261124);
  bmct_ctx *c = bmct_ctx_new(cu);
  /* lengths: 1 and the full context among them; the second batch differs in
   * count and total */
  static const cfg A = {"A", 128, 2, 2, 256, 60, 80, 96, 48, 5, {1, 80, 17, 65, 2, 40, 64}, 7, {33, 80, 1, 9}, 4};
  static const cfg B = {"B", 96, 4, 3, 192, 50, 24, 40, 32, 4, {1, 24, 7, 13, 3, 24, 9}, 7, {5, 1, 24, 2, 11}, 5};
  static const cfg C = {"C", 160, 2, 1, 320, 40, 20, 64, 24, 3, {20, 1, 6, 13}, 4, {2, 20, 9}, 3};
  int quick = getenv("BM_TEST_QUICK") != NULL;
  const int precs[3] = {BM_PREC_FP32, BM_PREC_BF16, BM_PREC_FP16};
  for (int i = 0; i < 3; i++) {
    run_cfg(c, &B, precs[i], quick);
    if (quick) continue;
    run_cfg(c, &A, precs[i], 0);
    run_cfg(c, &C, precs[i], 0);
  }
  if (quick) {
    printf("# skip: configurations A and C, accumulation, bits and upload cases (BM_TEST_QUICK)\n");
  } else { /* head dim 64 in bf16 through the plain kernels instead of flash */
    setenv("BM_CUDA_ATTN", "fused-fp32", 1);
    run_cfg(c, &A, BM_PREC_BF16, 0);
    unsetenv("BM_CUDA_ATTN");
  }
  bmct_ctx_free(c);
  bm_cuda_close(cu);
  CHECK_DONE();
}
#endif
