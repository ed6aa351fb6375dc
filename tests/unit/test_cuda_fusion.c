/* test_cuda_fusion.c - the GPU fusion module (common/cuda/bmcuda_fusion.h)
 * against the CPU's (fusion.h, itself checked against PyTorch by
 * test_fusion.c), in fp32, bf16 and fp16, on tiny configurations:
 *   Di 32, Dt 24, F 32, 2 layers, 4 heads (head dim 8), concat and mean;
 *   Di 20, Dt 12, F 18, 1 layer, 3 heads (head dim 6), MLP 36, mean (widths
 *     off the kernels' vector paths);
 *   Di 16, Dt 40, F 32, no layers (in-projections, pooling, norms only);
 *   Di 48, Dt 64, F 128, 1 layer, 2 heads (head dim 64, as ViT-B / BERT).
 * Parameters are redrawn larger than bm_fusion_init's (matrices uniform
 * +-2/sqrt(fan-in), LayerNorm gains 1 +- 0.3, biases +-0.2) so that every
 * softmax is far from uniform and every term shows. Each configuration and
 * precision runs three batches (3 x 5 image tokens, texts of 1..9 tokens;
 * 4 x 37, 1..70; 2 x 3, 1..4: growing and shrinking the device buffers,
 * more than 32 keys a row), texts of lengths 1, the maximum and random ones
 * packed in a shuffled order with gaps whose rows hold NaN (to be ignored).
 * GPU outputs are NaN-poisoned before each run. Checked per batch:
 *   forward out vs bm_fusion_forward; backward dxi, dxt (gap rows exactly
 *   0) and every parameter gradient vs bm_fusion_backward; a second
 *   backward (gradients add up to the CPU's two backwards, dxi and dxt are
 *   rewritten, not added); zero_grad then a backward with dxi = dxt = NULL
 *   (gradients as one backward); forward + backward again give the same
 *   bits. Per configuration: the tensor table matches the CPU's, download
 *   returns the parameters bit for bit, and after upload of changed
 *   parameters (resume) the forward follows them (the compute-type copy is
 *   refreshed).
 * Limits, as the largest |GPU - CPU| over the largest |CPU| of each compared
 * array (out, dxi, dxt, each gradient tensor on its own), and for the
 * parameter gradients also |GPU - CPU| / |CPU| in the 2-norm over all np:
 *   fp32: out, dxi, dxt and the whole gradient in norm 1e-5, each
 *     gradient tensor 1e-4 (no TF32: only summation order differs);
 *   bf16, fp16: out 2e-2, dxi and dxt 5e-2, each gradient tensor 2e-1 and
 *     the whole gradient 2e-2 in norm.
 * Why per tensor looser: a tensor whose gradient is a sum with much
 * cancellation (a cross-attention query's weight and bias, most over a text
 * of few tokens: the softmax over one key has no gradient at all) loses
 * relative accuracy to rounding, about 40 times the others'. A CPU
 * simulation of this module (tests/gpu/sim/run.sh, ten seeds) showed, fp32:
 * out 7e-7, dxi / dxt 1.1e-6, tensors 4.1e-6 (cross.q.bias), norm 1e-7;
 * bf16: out 1e-2, dxi / dxt 1.9e-2, tensors 8e-2, norm 1e-2 (the GPU rounds
 * inputs, weights and activations to 8 significant bits where the CPU keeps
 * fp32); fp16 about 8 times less. The fp32 runs check the arithmetic; the
 * 16-bit ones its plumbing (a wrong type, stride or copy errs by 1 or more).
 * A non-finite value always fails.
 * Fresh random inputs each run (the seed is printed; BM_SEED=N replays it).
 * BM_TEST_QUICK (compute-sanitizer runs) keeps three configurations and the
 * first two batches; BM_TEST_PREC=fp32|bf16|fp16 runs one precision.
 * Without a GPU (or without nvcc) one "# skip" line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

#ifndef BM_HAVE_CUDA
int main(void) {
  printf("# skip: test_cuda_fusion: no GPU (built without CUDA)\n");
  CHECK_DONE();
}
#else

#include "cuda/bmcuda_fusion.h"
#include "cuda/bmcuda_train.h"
#include "fusion.h"
#include "kernels.h"
#include "util.h"

static bm_rng rng;

static float urand(float a) { return (float)(bm_rng_uniform(&rng) * 2 - 1) * a; }
static float *rnd(size_t n, float a) {
  float *x = bm_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = urand(a);
  return x;
}
static float *nans(size_t n) {
  float *x = bm_xmalloc(sizeof(float) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) x[i] = NAN;
  return x;
}

/* largest |got - want| over the largest |want| (inf when either is not
 * finite: fmax would drop a NaN) */
static double relerr(const float *got, const float *want, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++)
    err = fmax(err, isfinite(got[i]) && isfinite(want[i]) ? fabs((double)got[i] - want[i]) : INFINITY);
  return err / (scale > 0 ? scale : 1);
}

typedef struct {
  bmct_ctx *c;
  int prec;
  const char *tag; /* "fp32 Di32 ... batch 1" */
  double tol_out, tol_dx, tol_tensor, tol_l2; /* the limits (header comment) */
} ctx;

static float *down(bmct_ctx *c, const float *d, size_t n) {
  float *h = nans(n);
  bmct_download(c, h, d, n * 4);
  return h;
}
static void cmp_dev(ctx *t, const char *what, const float *d, const float *want, size_t n, double tol) {
  float *got = down(t->c, d, n);
  double e = relerr(got, want, n);
  CHECK(e <= tol, "%s %s: max error %.2e of the largest value (limit %.0e)", t->tag, what, e, tol);
  free(got);
}
/* every gradient of the GPU module vs want (f's layout): each tensor's
 * largest error against its own largest value, and the error of the whole
 * gradient vector in the 2-norm against the vector's norm */
static void cmp_grads(ctx *t, const char *what, bm_cuda_fusion *g, const bm_fusion *f, const float *want) {
  bm_fusion h = *f;
  h.g = nans(f->np);
  bm_cuda_fusion_download_grads(g, &h);
  double worst = 0, e2 = 0, w2 = 0;
  const char *wname = "";
  for (int i = 0; i < f->nt; i++) {
    const bm_fusion_tensor *k = &f->t[i];
    double e = relerr(h.g + k->off, want + k->off, k->n);
    if (!(e <= t->tol_tensor)) printf("# %s %s: %s off by %.2e of its largest value\n", t->tag, what, k->name, e);
    if (!(e <= worst)) worst = e, wname = k->name;
  }
  for (size_t i = 0; i < f->np; i++) {
    double d = (double)h.g[i] - want[i];
    e2 += d * d, w2 += (double)want[i] * want[i];
  }
  double l2 = sqrt(e2 / (w2 > 0 ? w2 : 1));
  CHECK(worst <= t->tol_tensor && l2 <= t->tol_l2,
        "%s %s: all %d gradient tensors within %.0e of their largest value (worst %.2e, %s), the whole vector "
        "within %.0e in norm (%.2e)",
        t->tag, what, f->nt, t->tol_tensor, worst, wname, t->tol_l2, l2);
  free(h.g);
}

/* Redraws f's parameters at sizes where everything matters. */
static void redraw(bm_fusion *f) {
  for (int i = 0; i < f->nt; i++) {
    const bm_fusion_tensor *k = &f->t[i];
    float *p = f->p + k->off;
    int gain = k->ndim == 1 && strstr(k->name, ".weight");
    for (size_t j = 0; j < k->n; j++)
      p[j] = k->ndim == 2 ? urand(2.0f / sqrtf((float)k->shape[1])) : gain ? 1.0f + urand(0.3f) : urand(0.2f);
  }
}

/* one batch: texts of 1, maxT and random lengths, shuffled, with gaps */
typedef struct {
  int B, Ti, Nt, *tstart, *tlen;
  float *xi, *xt, *dout;
  float *dxi, *dxt; /* device */
  float *dev_xi, *dev_xt, *dev_dout, *dev_out;
} batch;

static float *up(bmct_ctx *c, const float *h, size_t n) {
  float *d = bm_cuda_malloc(n * 4 + 4, "test");
  bmct_upload(c, d, h, n * 4);
  return d;
}

static void batch_make(batch *b, bmct_ctx *c, const bm_fusion_cfg *cfg, int B, int Ti, int maxT) {
  memset(b, 0, sizeof *b);
  b->B = B, b->Ti = Ti;
  b->tstart = bm_xmalloc(sizeof(int) * B), b->tlen = bm_xmalloc(sizeof(int) * B);
  int *order = bm_xmalloc(sizeof(int) * B);
  for (int s = 0; s < B; s++) {
    b->tlen[s] = s == 0 ? 1 : s == 1 ? maxT : 1 + (int)(bm_rng_uniform(&rng) * maxT);
    order[s] = s;
  }
  for (int s = B - 1; s > 0; s--) { /* shuffle the order the texts are packed in */
    int k = (int)(bm_rng_uniform(&rng) * (s + 1)), x = order[s];
    order[s] = order[k], order[k] = x;
  }
  int pos = 0;
  for (int k = 0; k < B; k++) {
    pos += (int)(bm_rng_uniform(&rng) * 3); /* gaps of 0..2 rows, the first maybe too */
    b->tstart[order[k]] = pos;
    pos += b->tlen[order[k]];
  }
  b->Nt = pos;
  int Dt = cfg->Dt, Di = cfg->Di, K = bm_fusion_out_dim(cfg);
  b->xi = rnd((size_t)B * Ti * Di, 1.5f);
  b->xt = nans((size_t)b->Nt * Dt); /* rows in no text stay NaN */
  for (int s = 0; s < B; s++)
    for (size_t i = (size_t)b->tstart[s] * Dt; i < (size_t)(b->tstart[s] + b->tlen[s]) * Dt; i++) b->xt[i] = urand(1.5f);
  b->dout = rnd((size_t)B * K, 1.0f);
  b->dev_xi = up(c, b->xi, (size_t)B * Ti * Di);
  b->dev_xt = up(c, b->xt, (size_t)b->Nt * Dt);
  b->dev_dout = up(c, b->dout, (size_t)B * K);
  b->dev_out = bm_cuda_malloc((size_t)B * K * 4, "test");
  b->dxi = bm_cuda_malloc((size_t)B * Ti * Di * 4, "test");
  b->dxt = bm_cuda_malloc((size_t)b->Nt * Dt * 4 + 4, "test");
  free(order);
}
static void batch_free(batch *b) {
  free(b->tstart), free(b->tlen), free(b->xi), free(b->xt), free(b->dout);
  bm_cuda_free(b->dev_xi), bm_cuda_free(b->dev_xt), bm_cuda_free(b->dev_dout), bm_cuda_free(b->dev_out);
  bm_cuda_free(b->dxi), bm_cuda_free(b->dxt);
}
static void poison(ctx *t, batch *b, const bm_fusion_cfg *cfg) {
  bmct_poison(t->c, b->dev_out, BMCT_FP32, (size_t)b->B * bm_fusion_out_dim(cfg));
  bmct_poison(t->c, b->dxi, BMCT_FP32, (size_t)b->B * b->Ti * cfg->Di);
  bmct_poison(t->c, b->dxt, BMCT_FP32, (size_t)b->Nt * cfg->Dt);
}

/* dxt: rows in no text exactly 0 */
static int gaps_zero(ctx *t, batch *b, int Dt) {
  float *h = down(t->c, b->dxt, (size_t)b->Nt * Dt);
  char *in = bm_xcalloc((size_t)b->Nt + 1, 1);
  for (int s = 0; s < b->B; s++) memset(in + b->tstart[s], 1, (size_t)b->tlen[s]);
  int ok = 1;
  for (int r = 0; r < b->Nt; r++)
    for (int j = 0; j < Dt && !in[r]; j++) ok &= h[(size_t)r * Dt + j] == 0.0f;
  free(h), free(in);
  return ok;
}

static void t_batch(ctx *t, bm_fusion *f, bm_cuda_fusion *g, batch *b) {
  const bm_fusion_cfg *cfg = &f->cfg;
  int B = b->B, Ti = b->Ti, K = bm_fusion_out_dim(cfg), Di = cfg->Di, Dt = cfg->Dt, gaps = b->Nt;
  for (int s = 0; s < B; s++) gaps -= b->tlen[s];
  size_t ni = (size_t)B * Ti * Di, nt = (size_t)b->Nt * Dt;
  /* the CPU: one backward (g1), then a second one adding to it (g2) */
  bm_fusion_acts a = {0};
  float *out = nans((size_t)B * K), *dxi = nans(ni), *dxt = nans(nt);
  bm_fusion_zero_grad(f);
  bm_fusion_forward(f, &a, b->xi, B, Ti, b->xt, b->tstart, b->tlen, out);
  bm_fusion_backward(f, &a, b->dout, dxi, dxt);
  float *g1 = bm_xmalloc(sizeof(float) * f->np);
  memcpy(g1, f->g, sizeof(float) * f->np);
  bm_fusion_backward(f, &a, b->dout, NULL, NULL);
  float *g2 = f->g;
  printf("# %s: %d images of %d tokens, texts of", t->tag, B, Ti);
  for (int s = 0; s < B; s++) printf(" %d@%d", b->tlen[s], b->tstart[s]);
  printf(" (%d gap rows)\n", gaps);

  poison(t, b, cfg);
  bm_cuda_fusion_zero_grad(g);
  bm_cuda_fusion_forward(g, b->dev_xi, B, Ti, b->dev_xt, b->tstart, b->tlen, b->dev_out);
  bm_cuda_fusion_backward(g, b->dev_dout, b->dxi, b->dxt);
  cmp_dev(t, "forward out", b->dev_out, out, (size_t)B * K, t->tol_out);
  cmp_dev(t, "backward dxi", b->dxi, dxi, ni, t->tol_dx);
  cmp_dev(t, "backward dxt", b->dxt, dxt, nt, t->tol_dx);
  CHECK(gaps_zero(t, b, Dt), "%s backward dxt: the %d rows in no text are 0", t->tag, gaps);
  cmp_grads(t, "parameter gradients, one backward", g, f, g1);
  /* a copy of the first results, for the repeat below */
  float *o1 = down(t->c, b->dev_out, (size_t)B * K), *gr1 = nans(f->np);
  bmct_download(t->c, gr1, bm_cuda_fusion_grads(g), f->np * 4);
  float *dxi1 = down(t->c, b->dxi, ni);

  /* a second backward: gradients add, dxi / dxt are written again */
  poison(t, b, cfg);
  bm_cuda_fusion_backward(g, b->dev_dout, b->dxi, b->dxt);
  cmp_dev(t, "second backward dxi (written, not added)", b->dxi, dxi, ni, t->tol_dx);
  cmp_dev(t, "second backward dxt (written, not added)", b->dxt, dxt, nt, t->tol_dx);
  cmp_grads(t, "parameter gradients, two backwards (+=)", g, f, g2);
  /* zero_grad, then a backward without input gradients */
  bm_cuda_fusion_zero_grad(g);
  bm_cuda_fusion_backward(g, b->dev_dout, NULL, NULL);
  cmp_grads(t, "parameter gradients after zero_grad, dxi = dxt = NULL", g, f, g1);

  /* the same inputs again: the same bits */
  poison(t, b, cfg);
  bm_cuda_fusion_zero_grad(g);
  bm_cuda_fusion_forward(g, b->dev_xi, B, Ti, b->dev_xt, b->tstart, b->tlen, b->dev_out);
  bm_cuda_fusion_backward(g, b->dev_dout, b->dxi, b->dxt);
  float *o2 = down(t->c, b->dev_out, (size_t)B * K), *gr2 = nans(f->np), *dxi2 = down(t->c, b->dxi, ni);
  bmct_download(t->c, gr2, bm_cuda_fusion_grads(g), f->np * 4);
  CHECK(!memcmp(o1, o2, sizeof(float) * B * K) && !memcmp(gr1, gr2, sizeof(float) * f->np) &&
            !memcmp(dxi1, dxi2, sizeof(float) * ni),
        "%s: a second forward + backward gives the same bits (out, gradients, dxi)", t->tag);
  free(o1), free(o2), free(gr1), free(gr2), free(dxi1), free(dxi2);
  free(out), free(dxi), free(dxt), free(g1);
  bm_fusion_acts_free(&a);
}

/* the tensor table, download, and upload (resume) with changed parameters */
static void t_params(ctx *t, bm_fusion *f, bm_cuda_fusion *g, batch *b) {
  int nt;
  const bm_fusion_tensor *tt = bm_cuda_fusion_tensors(g, &nt);
  int same = nt == f->nt && bm_cuda_fusion_np(g) == f->np;
  for (int i = 0; same && i < nt; i++)
    same = !strcmp(tt[i].name, f->t[i].name) && tt[i].off == f->t[i].off && tt[i].n == f->t[i].n &&
           tt[i].decay == f->t[i].decay;
  CHECK(same, "%s: the tensor table is the CPU's (%d tensors, %zu parameters)", t->tag, nt, f->np);
  CHECK((bm_cuda_fusion_params_compute(g) == NULL) == (t->prec == BM_PREC_FP32),
        "%s: a compute-type copy exists exactly when the precision is not fp32", t->tag);
  bm_fusion h = *f;
  h.p = nans(f->np);
  bm_cuda_fusion_download(g, &h);
  CHECK(!memcmp(h.p, f->p, sizeof(float) * f->np), "%s: download returns the parameters bit for bit", t->tag);
  /* resume: changed parameters in, then the forward follows them */
  for (size_t i = 0; i < f->np; i++) f->p[i] = f->p[i] * 0.9f + urand(0.02f);
  bm_cuda_fusion_upload(g, f);
  bm_cuda_fusion_download(g, &h);
  CHECK(!memcmp(h.p, f->p, sizeof(float) * f->np), "%s: upload then download, bit for bit", t->tag);
  int K = bm_fusion_out_dim(&f->cfg);
  float *out = nans((size_t)b->B * K);
  bm_fusion_acts a = {0};
  bm_fusion_forward(f, &a, b->xi, b->B, b->Ti, b->xt, b->tstart, b->tlen, out);
  poison(t, b, &f->cfg);
  bm_cuda_fusion_forward(g, b->dev_xi, b->B, b->Ti, b->dev_xt, b->tstart, b->tlen, b->dev_out);
  cmp_dev(t, "forward after upload of new parameters", b->dev_out, out, (size_t)b->B * K, t->tol_out);
  free(h.p), free(out);
  bm_fusion_acts_free(&a);
}

static void t_config(bm_cuda *cu, bmct_ctx *c, const char *name, bm_fusion_cfg cfg, int quick) {
  static const int shapes[3][3] = {{3, 5, 9}, {4, 37, 70}, {2, 3, 4}}; /* B, Ti, longest text */
  int precs[3] = {BM_PREC_FP32, BM_PREC_BF16, BM_PREC_FP16};
  const char *only = getenv("BM_TEST_PREC"); /* one precision, when debugging */
  for (int k = 0; k < 3; k++) {
    if (only && strcmp(only, bm_prec_name(precs[k]))) continue;
    bm_fusion f;
    bm_fusion_init(&f, &cfg, (uint64_t)(bm_rng_uniform(&rng) * 1e9));
    redraw(&f);
    bm_cuda_fusion *g = bm_cuda_fusion_new(&f, cu, precs[k]);
    int lo = precs[k] != BM_PREC_FP32;
    ctx t = {c, precs[k], NULL, lo ? 2e-2 : 1e-5, lo ? 5e-2 : 1e-5, lo ? 2e-1 : 1e-4, lo ? 2e-2 : 1e-5};
    char tag[160];
    batch b;
    for (int r = 0; r < (quick ? 2 : 3); r++) {
      snprintf(tag, sizeof tag, "%s %s batch %d", bm_prec_name(precs[k]), name, r + 1);
      t.tag = tag;
      batch_make(&b, c, &cfg, shapes[r][0], shapes[r][1], shapes[r][2]);
      t_batch(&t, &f, g, &b);
      if (r == 0) {
        snprintf(tag, sizeof tag, "%s %s", bm_prec_name(precs[k]), name);
        t_params(&t, &f, g, &b);
      }
      batch_free(&b);
    }
    bm_cuda_fusion_free(g);
    bm_fusion_free(&f);
  }
}

int main(void) {
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) {
    printf("# skip: test_cuda_fusion: no GPU (%s)\n", err);
    return 0;
  }
  bm_set_threads(2);
  const char *env = getenv("BM_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
  printf("# seed %llu (BM_SEED=%llu replays it)\n", (unsigned long long)seed, (unsigned long long)seed);
  bm_rng_seed(&rng, seed);
  int quick = getenv("BM_TEST_QUICK") != NULL;
  bmct_ctx *c = bmct_ctx_new(cu);
  /* Di, Dt, F, layers, heads, mlp, combine */
  t_config(cu, c, "Di32 Dt24 F32 L2 H4 concat", (bm_fusion_cfg){32, 24, 32, 2, 4, 0, BM_FUSE_CONCAT}, quick);
  if (!quick) t_config(cu, c, "Di32 Dt24 F32 L2 H4 mean", (bm_fusion_cfg){32, 24, 32, 2, 4, 0, BM_FUSE_MEAN}, quick);
  t_config(cu, c, "Di20 Dt12 F18 L1 H3 M36 mean", (bm_fusion_cfg){20, 12, 18, 1, 3, 36, BM_FUSE_MEAN}, quick);
  if (!quick) t_config(cu, c, "Di16 Dt40 F32 L0 concat", (bm_fusion_cfg){16, 40, 32, 0, 4, 0, BM_FUSE_CONCAT}, quick);
  t_config(cu, c, "Di48 Dt64 F128 L1 H2 concat", (bm_fusion_cfg){48, 64, 128, 1, 2, 0, BM_FUSE_CONCAT}, quick);
  if (quick) printf("# skip: the mean and no-layer configurations and batch 3 (BM_TEST_QUICK)\n");
  bmct_ctx_free(c);
  bm_cuda_close(cu);
  CHECK_DONE();
}
#endif
