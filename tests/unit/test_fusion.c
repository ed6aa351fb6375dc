/* test_fusion.c - the co-attention fusion module (fusion.h) and its
 * cross-attention kernel (bm_xattn_*, backward.h):
 *   - the kernel alone against central finite differences, rows outside its
 *     sequences untouched, the same bits at 1 and 2 threads;
 *   - the module's gradients w.r.t. xi, xt and a sample of every parameter
 *     tensor against finite differences, both combine modes, texts of 1..7
 *     tokens with a gap row between two texts;
 *   - PyTorch parity (tests/fixtures/fusion.bmr from
 *     tests/ref/make_fusion_fixture.py, float64 autograd): out, dxi, dxt and
 *     every parameter gradient, with the weights loaded by name through a
 *     .safetensors file and bm_fusion_load;
 *   - the forward's bits at 1 and 2 threads, reuse of grown activations,
 *     accumulation of parameter gradients, init, config and load errors.
 * Fresh random inputs each run (the seed is printed; BM_SEED=N replays it);
 * written outputs are poisoned with NaN before each run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backward.h"
#include "check.h"
#include "fusion.h"
#include "kernels.h"
#include "record.h"
#include "util.h"
#include "weights.h"

static bm_rng rng;

static float urand(float lo, float hi) { return lo + (hi - lo) * (float)bm_rng_uniform(&rng); }

static float *rnd(size_t n, float lo, float hi) {
  float *p = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = urand(lo, hi);
  return p;
}

static float *poisoned(size_t n) {
  float *p = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = NAN;
  return p;
}

/* Largest |a - b| relative to max |b|; NaN anywhere counts as infinite. */
static double rel_err(const float *a, const float *b, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isnan(a[i]) || isnan(b[i]) ? INFINITY : fabs(a[i] - b[i]));
  return err / (scale > 0 ? scale : 1);
}

static int all_finite(const float *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(a[i])) return 0;
  return 1;
}

static double loss(const float *out, const float *R, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += (double)out[i] * R[i];
  return s;
}

/* Derivative of loss() w.r.t. x[i] (f recomputes out): central differences
 * at steps h and h/2 combined by Richardson extrapolation, (4 D(h/2) - D(h))/3,
 * which cancels the h^2 term. The module is deep enough that a plain central
 * difference at h = 1e-2 is off by up to 4e-3 of the gradient, while a smaller
 * step drowns in float32 rounding. */
typedef void (*fwd_fn)(void *ctx);
static double central_at(fwd_fn f, void *ctx, float *x, size_t i, float h, const float *out,
                         const float *R, size_t nout) {
  float keep = x[i], hi = keep + h, lo = keep - h;
  x[i] = hi, f(ctx);
  double lh = loss(out, R, nout);
  x[i] = lo, f(ctx);
  double ll = loss(out, R, nout);
  x[i] = keep;
  return (lh - ll) / ((double)hi - (double)lo);
}
static double central(fwd_fn f, void *ctx, float *x, size_t i, const float *out, const float *R,
                      size_t nout) {
  float h = 1e-2f * fmaxf(1.0f, fabsf(x[i]));
  double d1 = central_at(f, ctx, x, i, h, out, R, nout), d2 = central_at(f, ctx, x, i, h / 2, out, R, nout);
  return (4 * d2 - d1) / 3;
}

/* Worst error of grad[idx] against finite differences of up to `count`
 * elements (all when n <= count), relative to max(max |grad|, floor). The
 * differences are off by about 1e-4 whatever the tensor (float32 rounding of
 * the loss); the floor keeps a tensor whose gradients are all small (a
 * cross-attention query bias: softmax ignores most of it) from turning that
 * noise into a large relative error. */
static double fd_tensor(fwd_fn f, void *ctx, float *x, const float *grad, size_t n, size_t count,
                        const float *out, const float *R, size_t nout, double floor) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(grad[i]));
  if (scale == 0) return INFINITY; /* an all-zero gradient proves nothing */
  scale = fmax(scale, floor);
  size_t m = n < count ? n : count;
  for (size_t c = 0; c < m; c++) {
    size_t i = n <= count ? c : (size_t)(bm_rng_next(&rng) % n);
    double d = fabs(central(f, ctx, x, i, out, R, nout) - grad[i]);
    if (!(d <= err)) err = d; /* NaN sticks, so a NaN fails */
  }
  return err / scale;
}

#define FD_TOL 3e-3

/* ---- the cross-attention kernel alone ---- */
typedef struct {
  float *out, *P, *q, *kv;
  int *qs, *ql, *ks, *kl, nseq, C, heads;
} xa_ctx;
static void xa_fwd(void *p) {
  xa_ctx *c = p;
  bm_xattn_train(c->out, c->P, c->q, c->kv, c->qs, c->ql, c->ks, c->kl, c->nseq, c->C, c->heads);
}

/* in[r] = 1 when row r of n belongs to one of the sequences */
static unsigned char *covered(const int *start, const int *len, int nseq, int n) {
  unsigned char *in = bm_xcalloc((size_t)n, 1);
  for (int s = 0; s < nseq; s++)
    for (int r = start[s]; r < start[s] + len[s]; r++) in[r] = 1;
  return in;
}

static void test_xattn(void) {
  /* q sequences of 3, 1, 5 rows with gap rows 3 and 10; kv sequences of
   * 4, 6, 1 rows in another order with gap rows 0 and 12 */
  int qs[] = {0, 4, 5}, ql[] = {3, 1, 5}, ks[] = {8, 1, 7}, kl[] = {4, 6, 1};
  xa_ctx c = {.qs = qs, .ql = ql, .ks = ks, .kl = kl, .nseq = 3, .C = 12, .heads = 3};
  int Nq = 11, Nk = 13, C = c.C;
  unsigned char *qin = covered(qs, ql, 3, Nq), *kin = covered(ks, kl, 3, Nk);
  size_t nq = (size_t)Nq * C, nkv = (size_t)Nk * 2 * C, nP = bm_xattn_probs_size(ql, kl, 3, c.heads);
  c.q = rnd(nq, -1.5f, 1.5f), c.kv = rnd(nkv, -1.5f, 1.5f), c.out = poisoned(nq), c.P = poisoned(nP);
  float *R = rnd(nq, -1, 1);
  xa_fwd(&c);
  int ok = 1;
  for (int r = 0; r < Nq; r++)
    for (int i = 0; i < C; i++) ok &= qin[r] ? isfinite(c.out[r * C + i]) : isnan(c.out[r * C + i]);
  CHECK(ok && all_finite(c.P, nP), "xattn forward writes P and exactly the rows of its q sequences");
  for (int r = 0; r < Nq; r++) /* never written again: the loss sees 0 there */
    if (!qin[r]) memset(c.out + (size_t)r * C, 0, sizeof(float) * (size_t)C);
  float *dq = poisoned(nq), *dkv = poisoned(nkv);
  float *scratch = poisoned(bm_xattn_backward_scratch(ql, kl, 3));
  bm_xattn_backward(dq, dkv, R, c.q, c.kv, c.P, qs, ql, ks, kl, 3, C, c.heads, scratch);
  ok = 1;
  for (int r = 0; r < Nq; r++)
    for (int i = 0; i < C; i++) ok &= qin[r] ? isfinite(dq[r * C + i]) : isnan(dq[r * C + i]);
  for (int r = 0; r < Nk; r++)
    for (int i = 0; i < 2 * C; i++) ok &= kin[r] ? isfinite(dkv[r * 2 * C + i]) : isnan(dkv[r * 2 * C + i]);
  CHECK(ok, "xattn backward writes exactly the dq and dkv rows of its sequences");
  /* the untouched rows have zero gradient: compare them as 0 */
  for (int r = 0; r < Nq; r++)
    if (!qin[r]) memset(dq + (size_t)r * C, 0, sizeof(float) * (size_t)C);
  for (int r = 0; r < Nk; r++)
    if (!kin[r]) memset(dkv + (size_t)r * 2 * C, 0, sizeof(float) * 2 * (size_t)C);
  double eq = fd_tensor(xa_fwd, &c, c.q, dq, nq, nq, c.out, R, nq, 0);
  double ek = fd_tensor(xa_fwd, &c, c.kv, dkv, nkv, nkv, c.out, R, nq, 0);
  CHECK(eq < FD_TOL && ek < FD_TOL,
        "xattn backward (q lens 3,1,5 over kv lens 4,6,1, 3 heads): every dq and dkv element matches "
        "finite differences (rel %.2g, %.2g)", eq, ek);
  free(qin), free(kin);
  /* the same bits at 1 and 2 threads, forward and backward */
  float *o1 = poisoned(nq), *o2 = poisoned(nq), *P1 = poisoned(nP), *P2 = poisoned(nP);
  float *dq1 = poisoned(nq), *dq2 = poisoned(nq), *dk1 = poisoned(nkv), *dk2 = poisoned(nkv);
  for (int t = 1; t <= 2; t++) {
    bm_set_threads(t);
    float *s2 = poisoned(bm_xattn_backward_scratch(ql, kl, 3));
    bm_xattn_train(t == 1 ? o1 : o2, t == 1 ? P1 : P2, c.q, c.kv, qs, ql, ks, kl, 3, C, c.heads);
    bm_xattn_backward(t == 1 ? dq1 : dq2, t == 1 ? dk1 : dk2, R, c.q, c.kv, t == 1 ? P1 : P2, qs, ql, ks,
                      kl, 3, C, c.heads, s2);
    free(s2);
  }
  CHECK(!memcmp(o1, o2, nq * 4) && !memcmp(P1, P2, nP * 4) && !memcmp(dq1, dq2, nq * 4) &&
            !memcmp(dk1, dk2, nkv * 4),
        "xattn forward and backward give the same bits at 1 and 2 threads");
  free(c.q), free(c.kv), free(c.out), free(c.P), free(R), free(dq), free(dkv), free(scratch);
  free(o1), free(o2), free(P1), free(P2), free(dq1), free(dq2), free(dk1), free(dk2);
}

/* ---- the module ---- */
typedef struct {
  bm_fusion *f;
  bm_fusion_acts *a;
  float *xi, *xt, *out;
  int B, Ti, *ts, *tl;
} fu_ctx;
static void fu_fwd(void *p) {
  fu_ctx *c = p;
  bm_fusion_forward(c->f, c->a, c->xi, c->B, c->Ti, c->xt, c->ts, c->tl, c->out);
}

/* Every parameter random (gains around 1), so that every path matters. */
static void randomize(bm_fusion *f) {
  for (int i = 0; i < f->nt; i++) {
    const bm_fusion_tensor *t = &f->t[i];
    float *p = f->p + t->off;
    int gain = t->ndim == 1 && strstr(t->name, "weight");
    float s = t->ndim == 2 ? 1.7f / sqrtf((float)t->shape[1]) : 0.3f;
    for (size_t j = 0; j < t->n; j++) p[j] = (gain ? 1.0f : 0.0f) + urand(-s, s);
  }
}

static void test_module_fd(int combine, int layers) {
  bm_fusion_cfg cfg = {.Di = 7, .Dt = 5, .F = 8, .layers = layers, .heads = 2, .mlp = 12, .combine = combine};
  const char *mode = combine ? (layers ? "mean" : "mean, 0 layers") : (layers ? "concat" : "concat, 0 layers");
  bm_fusion f;
  bm_fusion_init(&f, &cfg, 1);
  randomize(&f);
  bm_fusion_acts a = {0};
  /* 4 images of 3 tokens; texts of 1, 3, 7, 2 tokens, row 4 in no text */
  int ts[] = {0, 1, 5, 12}, tl[] = {1, 3, 7, 2}, B = 4, Ti = 3, Nt = 14;
  size_t ni = (size_t)B * Ti * cfg.Di, nt = (size_t)Nt * cfg.Dt, no = (size_t)B * bm_fusion_out_dim(&cfg);
  fu_ctx c = {.f = &f, .a = &a, .B = B, .Ti = Ti, .ts = ts, .tl = tl};
  c.xi = rnd(ni, -2, 2), c.xt = rnd(nt, -2, 2), c.out = poisoned(no);
  float *R = rnd(no, -1, 1), *dxi = poisoned(ni), *dxt = poisoned(nt);
  fu_fwd(&c);
  CHECK(all_finite(c.out, no), "fusion forward (%s) writes a finite out[%d,%d]",
        mode, B, bm_fusion_out_dim(&cfg));
  bm_fusion_zero_grad(&f);
  bm_fusion_backward(&f, &a, R, dxi, dxt);
  int gap0 = 1;
  for (int i = 0; i < cfg.Dt; i++) gap0 &= dxt[4 * cfg.Dt + i] == 0.0f;
  CHECK(gap0 && all_finite(dxt, nt) && all_finite(dxi, ni),
        "fusion backward (%s): dxi, dxt written, the text gap row's gradient is 0", mode);
  double ei = fd_tensor(fu_fwd, &c, c.xi, dxi, ni, 60, c.out, R, no, 0);
  double et = fd_tensor(fu_fwd, &c, c.xt, dxt, nt, 60, c.out, R, no, 0);
  CHECK(ei < FD_TOL && et < FD_TOL, "fusion (%s) dxi, dxt match finite differences (rel %.2g, %.2g)",
        mode, ei, et);
  double worst = 0;
  const char *wn = "-";
  float *g = bm_xmalloc(f.np * sizeof(float));
  memcpy(g, f.g, f.np * sizeof(float));
  double floor = 0; /* a tenth of the largest parameter gradient */
  for (size_t i = 0; i < f.np; i++) floor = fmax(floor, 0.1 * fabs(g[i]));
  for (int i = 0; i < f.nt; i++) {
    const bm_fusion_tensor *t = &f.t[i];
    double e = fd_tensor(fu_fwd, &c, f.p + t->off, g + t->off, t->n, 6, c.out, R, no, floor);
    if (e >= worst) worst = e, wn = t->name;
  }
  CHECK(worst < FD_TOL && f.nt == 8 + 40 * layers,
        "fusion (%s): all %d parameter tensors' gradients match finite differences "
        "(6 elements each; worst rel %.2g in %s; floor %.2g)", mode, f.nt, worst, wn, floor);
  free(g), free(c.xi), free(c.xt), free(c.out), free(R), free(dxi), free(dxt);
  bm_fusion_acts_free(&a);
  bm_fusion_free(&f);
}

/* Rows of xt in no text, with stale NaN in the attention output buffers
 * (a reused bm_fusion_acts): nothing may reach out or a gradient. */
static void test_module_stale_gap(void) {
  bm_fusion_cfg cfg = {.Di = 6, .Dt = 5, .F = 8, .layers = 2, .heads = 2, .mlp = 12, .combine = BM_FUSE_CONCAT};
  bm_fusion f;
  bm_fusion_init(&f, &cfg, 3);
  randomize(&f);
  bm_fusion_acts a = {0};
  int ts[] = {2, 6}, tl[] = {3, 1}, B = 2, Ti = 3, Nt = 7; /* rows 0, 1, 5 in no text */
  size_t ni = (size_t)B * Ti * cfg.Di, nt = (size_t)Nt * cfg.Dt, no = (size_t)B * bm_fusion_out_dim(&cfg);
  float *xi = rnd(ni, -2, 2), *xt = rnd(nt, -2, 2), *out = poisoned(no), *R = rnd(no, -1, 1);
  float *dxi = poisoned(ni), *dxt = poisoned(nt);
  bm_fusion_forward(&f, &a, xi, B, Ti, xt, ts, tl, out);
  for (int i = 0; i < 2 * cfg.layers; i++)
    for (size_t j = 0; j < a.cap_rows[i % 2] * (size_t)cfg.F; j++) a.la[i].att[j] = a.la[i].catt[j] = NAN;
  bm_fusion_forward(&f, &a, xi, B, Ti, xt, ts, tl, out); /* the same sizes: the buffers are reused */
  bm_fusion_zero_grad(&f);
  bm_fusion_backward(&f, &a, R, dxi, dxt);
  int gaps = 1;
  for (int i = 0; i < cfg.Dt; i++) gaps &= dxt[i] == 0.0f && dxt[cfg.Dt + i] == 0.0f && dxt[5 * cfg.Dt + i] == 0.0f;
  CHECK(all_finite(out, no) && all_finite(f.g, f.np) && all_finite(dxi, ni) && all_finite(dxt, nt) && gaps,
        "fusion: stale NaN in reused attention buffers reaches neither out nor any gradient; text gap rows get 0");
  free(xi), free(xt), free(out), free(R), free(dxi), free(dxt);
  bm_fusion_acts_free(&a);
  bm_fusion_free(&f);
}

/* Thread independence, reuse of grown activations, accumulation. */
static void test_module_bits(void) {
  bm_fusion_cfg cfg = {.Di = 20, .Dt = 12, .F = 24, .layers = 2, .heads = 3, .mlp = 0, .combine = BM_FUSE_CONCAT};
  bm_fusion f;
  bm_fusion_init(&f, &cfg, 7);
  CHECK(f.cfg.mlp == 96, "mlp <= 0 means 4F (%d)", f.cfg.mlp);
  randomize(&f);
  int B = 5, Ti = 17, ts[] = {0, 9, 10, 14, 33}, tl[] = {9, 1, 4, 19, 6}, Nt = 39;
  size_t ni = (size_t)B * Ti * cfg.Di, nt = (size_t)Nt * cfg.Dt, no = (size_t)B * 2 * cfg.F;
  float *xi = rnd(ni, -2, 2), *xt = rnd(nt, -2, 2), *R = rnd(no, -1, 1);
  float *out[2] = {poisoned(no), poisoned(no)}, *g[2], *dxi[2] = {poisoned(ni), poisoned(ni)};
  float *dxt[2] = {poisoned(nt), poisoned(nt)};
  for (int t = 0; t < 2; t++) {
    bm_set_threads(t + 1);
    bm_fusion_acts a = {0};
    bm_fusion_zero_grad(&f);
    bm_fusion_forward(&f, &a, xi, B, Ti, xt, ts, tl, out[t]);
    bm_fusion_backward(&f, &a, R, dxi[t], dxt[t]);
    g[t] = bm_xmalloc(f.np * sizeof(float));
    memcpy(g[t], f.g, f.np * sizeof(float));
    bm_fusion_acts_free(&a);
  }
  CHECK(all_finite(out[0], no) && !memcmp(out[0], out[1], no * sizeof(float)),
        "fusion forward gives the same bits at 1 and 2 threads (B=%d, Ti=%d, texts 9,1,4,19,6)", B, Ti);
  int bw_same = !memcmp(g[0], g[1], f.np * 4) && !memcmp(dxi[0], dxi[1], ni * 4) && !memcmp(dxt[0], dxt[1], nt * 4);
  printf("# backward at 1 and 2 threads: %s (GEMM sums follow OpenBLAS)\n",
         bw_same ? "the same bits" : "different bits");
  /* a second backward adds the same gradient again */
  bm_fusion_acts a = {0};
  bm_fusion_zero_grad(&f);
  bm_fusion_forward(&f, &a, xi, B, Ti, xt, ts, tl, out[0]);
  bm_fusion_backward(&f, &a, R, NULL, NULL);
  memcpy(g[0], f.g, f.np * sizeof(float));
  bm_fusion_backward(&f, &a, R, NULL, dxt[1]);
  for (size_t i = 0; i < f.np; i++) g[0][i] *= 2;
  CHECK(rel_err(f.g, g[0], f.np) < 1e-6, "parameter gradients accumulate over backwards (rel %.2g)",
        rel_err(f.g, g[0], f.np));
  /* a smaller batch in the grown activations equals a fresh run */
  float *o_small = poisoned((size_t)2 * 2 * cfg.F), *o_fresh = poisoned((size_t)2 * 2 * cfg.F);
  int ts2[] = {0, 9}, tl2[] = {9, 1};
  bm_fusion_forward(&f, &a, xi, 2, Ti, xt, ts2, tl2, o_small);
  bm_fusion_acts fresh = {0};
  bm_fusion_forward(&f, &fresh, xi, 2, Ti, xt, ts2, tl2, o_fresh);
  CHECK(!memcmp(o_small, o_fresh, sizeof(float) * 4 * cfg.F) && !memcmp(o_small, out[0], sizeof(float) * 4 * cfg.F),
        "a smaller batch in grown activations gives a fresh run's bits (and the big batch's first rows)");
  /* a bigger text in the same acts (grows the text buffers only) */
  int ts3[] = {0, 1}, tl3[] = {1, 38};
  float *o3 = poisoned((size_t)2 * 2 * cfg.F), *o3f = poisoned((size_t)2 * 2 * cfg.F);
  bm_fusion_acts small = {0};
  bm_fusion_forward(&f, &small, xi, 1, Ti, xt, ts3, tl3, o3); /* one pair first: then grow */
  bm_fusion_forward(&f, &small, xi, 2, Ti, xt, ts3, tl3, o3);
  bm_fusion_forward(&f, &fresh, xi, 2, Ti, xt, ts3, tl3, o3f);
  CHECK(!memcmp(o3, o3f, sizeof(float) * 4 * cfg.F), "activations grown from a smaller batch give the same bits");
  bm_fusion_acts_free(&a), bm_fusion_acts_free(&fresh), bm_fusion_acts_free(&small);
  free(o_small), free(o_fresh), free(o3), free(o3f);
  for (int t = 0; t < 2; t++) free(out[t]), free(g[t]), free(dxi[t]), free(dxt[t]);
  free(xi), free(xt), free(R);
  bm_fusion_free(&f);
}

static void test_init_cfg(void) {
  bm_fusion_cfg cfg = {.Di = 40, .Dt = 30, .F = 32, .layers = 1, .heads = 4, .mlp = 64, .combine = BM_FUSE_MEAN};
  CHECK(bm_fusion_out_dim(&cfg) == 32, "out dim mean = F");
  cfg.combine = BM_FUSE_CONCAT;
  CHECK(bm_fusion_out_dim(&cfg) == 64, "out dim concat = 2F");
  CHECK(bm_fusion_check_cfg(&cfg) == NULL, "a good config passes the check");
  bm_fusion_cfg bad = cfg;
  bad.heads = 5;
  const char *why = bm_fusion_check_cfg(&bad);
  CHECK(why && strstr(why, "heads"), "F %% heads != 0 is refused: %s", why ? why : "(null)");
  bad = cfg, bad.Dt = 0;
  CHECK(bm_fusion_check_cfg(&bad) != NULL, "Dt 0 is refused");
  bad = cfg, bad.combine = 2;
  CHECK(bm_fusion_check_cfg(&bad) != NULL, "an unknown combine is refused");
  bm_fusion f, f2, f3;
  bm_fusion_init(&f, &cfg, 42), bm_fusion_init(&f2, &cfg, 42), bm_fusion_init(&f3, &cfg, 43);
  CHECK(f.nt == 4 + 2 * 20 + 4 && f.np == f2.np, "init: %d tensors, %zu parameters", f.nt, f.np);
  CHECK(!memcmp(f.p, f2.p, f.np * 4) && memcmp(f.p, f3.p, f.np * 4),
        "init is seeded: same seed same bits, another seed other values");
  double s2 = 0, mx = 0;
  size_t nm = 0;
  int ln_ok = 1, bias_ok = 1, g0 = 1, dec_ok = 1;
  for (int i = 0; i < f.nt; i++) {
    const bm_fusion_tensor *t = &f.t[i];
    const float *p = f.p + t->off;
    dec_ok &= t->decay == (t->ndim == 2);
    for (size_t j = 0; j < t->n; j++) {
      if (t->ndim == 2) s2 += (double)p[j] * p[j], mx = fmax(mx, fabs(p[j])), nm++;
      else if (strstr(t->name, "bias")) bias_ok &= p[j] == 0.0f;
      else ln_ok &= p[j] == 1.0f;
    }
  }
  for (size_t j = 0; j < f.np; j++) g0 &= f.g[j] == 0.0f;
  /* std of a normal truncated at 2 std: 0.02 * 0.8796 */
  double sd = sqrt(s2 / (double)nm);
  CHECK(fabs(sd - 0.02 * 0.8796) < 0.0005 && mx <= 0.04 + 1e-7,
        "init: matrices trunc-normal std 0.02 at +-2 std (sample std %.5f, max %.4f over %zu)", sd, mx, nm);
  CHECK(ln_ok && bias_ok && g0 && dec_ok, "init: LayerNorm gains 1, biases 0, g zeroed; decay on matrices only");
  bm_adamw opt;
  bm_adamw_init(&opt, 0.9, 0.999, 1e-8);
  int gd = bm_adamw_add_group(&opt, 1e-3, 0.1), gn = bm_adamw_add_group(&opt, 1e-3, 0);
  bm_fusion_add_params(&f, &opt, gd, gn);
  int nd = 0, ok = opt.nparams == f.nt;
  size_t tot = 0;
  for (int i = 0; i < opt.nparams; i++) {
    nd += opt.params[i].group == gd, tot += opt.params[i].n;
    ok &= opt.params[i].param == f.p + f.t[i].off && opt.params[i].grad == f.g + f.t[i].off;
  }
  CHECK(ok && tot == f.np && nd == 2 + 2 * 7 && nd + 0 < opt.nparams,
        "add_params: %d tensors, %d with decay, covering all %zu parameters", opt.nparams, nd, tot);
  bm_adamw_free(&opt);
  bm_fusion_free(&f), bm_fusion_free(&f2), bm_fusion_free(&f3);
}

/* ---- PyTorch parity ---- */
static float *get(const msgpack_object *rec, const char *key, size_t *numel, bm_tensor *tt) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1) bm_die("fusion.bmr lacks %s %s", key, err);
  float *v = bm_xmalloc(bm_mul_size((size_t)t.numel + 1, sizeof(float)));
  bm_tensor_to_f32(&t, v);
  if (numel) *numel = (size_t)t.numel;
  if (tt) *tt = t;
  return v;
}
static int *get_i32(const msgpack_object *rec, const char *key) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1 || t.dtype != BM_I32) bm_die("fusion.bmr: %s %s", key, err);
  int *v = bm_xmalloc(sizeof(int) * (size_t)(t.numel + 1));
  memcpy(v, t.data, sizeof(int) * (size_t)t.numel);
  return v;
}
static int get_int(const msgpack_object *rec, const char *key) {
  double d;
  if (bm_obj_number(bm_map_get(rec, key), &d)) bm_die("fusion.bmr lacks %s", key);
  return (int)d;
}

#define PARITY_TOL 1e-5

static void parity_case(const msgpack_object *rec, const char *tmpdir) {
  char name[32], err[512];
  bm_obj_str(bm_map_get(rec, "case"), name, sizeof name);
  bm_fusion_cfg cfg = {get_int(rec, "Di"), get_int(rec, "Dt"), get_int(rec, "F"), get_int(rec, "layers"),
                       get_int(rec, "heads"), get_int(rec, "mlp"), get_int(rec, "combine")};
  int B = get_int(rec, "B"), Ti = get_int(rec, "Ti");
  const msgpack_object *names = bm_map_get(rec, "names");
  if (!names || names->type != MSGPACK_OBJECT_ARRAY) bm_die("fusion.bmr lacks names");
  int n = (int)names->via.array.size;
  /* the torch state dict as a .safetensors checkpoint */
  bm_weight *w = bm_xcalloc((size_t)n, sizeof *w);
  for (int i = 0; i < n; i++) {
    w[i].name = bm_obj_strdup(&names->via.array.ptr[i]);
    bm_tensor t;
    size_t k;
    w[i].data = get(rec, w[i].name, &k, &t);
    w[i].dtype = BM_W_F32, w[i].ndim = t.ndim, w[i].numel = t.numel, w[i].nbytes = k * sizeof(float);
    for (int d = 0; d < t.ndim; d++) w[i].shape[d] = t.shape[d];
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/test_fusion_%d_%s.safetensors", tmpdir, (int)getpid(), name);
  if (bm_safetensors_write(path, w, n, NULL, NULL, 0, err, sizeof err)) bm_die("%s", err);
  bm_weights ws;
  if (bm_weights_load(path, &ws, err, sizeof err)) bm_die("%s", err);
  unlink(path);
  bm_fusion f;
  int rc = bm_fusion_load(&f, &cfg, &ws, err, sizeof err);
  CHECK(rc == 0 && f.nt == n, "%s: the torch state dict (%d tensors) loads by name through a .safetensors (%s)",
        name, n, rc ? err : "ok");
  if (rc) bm_die("cannot go on");

  size_t ni, nt, no;
  float *xi = get(rec, "xi", &ni, NULL), *xt = get(rec, "xt", &nt, NULL), *R = get(rec, "R", &no, NULL);
  float *want_out = get(rec, "out", NULL, NULL), *want_dxi = get(rec, "dxi", NULL, NULL);
  float *want_dxt = get(rec, "dxt", NULL, NULL);
  int *ts = get_i32(rec, "tstart"), *tl = get_i32(rec, "tlen");
  float *out = poisoned(no), *dxi = poisoned(ni), *dxt = poisoned(nt);
  for (size_t i = 0; i < f.np; i++) f.g[i] = NAN; /* zero_grad must clear it */
  bm_fusion_zero_grad(&f);
  bm_fusion_acts a = {0};
  bm_fusion_forward(&f, &a, xi, B, Ti, xt, ts, tl, out);
  bm_fusion_backward(&f, &a, R, dxi, dxt);
  double eo = rel_err(out, want_out, no), ei = rel_err(dxi, want_dxi, ni), et = rel_err(dxt, want_dxt, nt);
  CHECK(no == (size_t)B * bm_fusion_out_dim(&cfg) && eo < PARITY_TOL,
        "%s: out[%d,%d] equals torch (max rel %.2g)", name, B, bm_fusion_out_dim(&cfg), eo);
  CHECK(ei < PARITY_TOL && et < PARITY_TOL, "%s: dxi, dxt equal torch (max rel %.2g, %.2g)", name, ei, et);
  double worst = 0;
  const char *wn = "-";
  for (int i = 0; i < n; i++) {
    char dn[128];
    snprintf(dn, sizeof dn, "d%s", w[i].name);
    float *want = get(rec, dn, NULL, NULL);
    int k = bm_fusion_find(&f, w[i].name);
    double e = k < 0 ? INFINITY : rel_err(f.g + f.t[k].off, want, f.t[k].n);
    if (e >= worst) worst = e, wn = f.t[k < 0 ? 0 : k].name;
    free(want);
  }
  CHECK(worst < PARITY_TOL, "%s: all %d parameter gradients equal torch (worst max rel %.2g in %s)", name, n,
        worst, wn);
  bm_fusion_acts_free(&a);
  bm_fusion_free(&f);

  /* load errors name the tensor */
  const char *victim = "fusion.layers.1.txt.cross.kv.weight";
  bm_weight *vw = (bm_weight *)bm_weights_get(&ws, victim);
  int64_t keep0 = vw->shape[0];
  vw->shape[0] = keep0 / 2;
  rc = bm_fusion_load(&f, &cfg, &ws, err, sizeof err);
  CHECK(rc == -1 && strstr(err, victim) && strstr(err, "shape"), "%s: a misshapen tensor is refused by name: %s",
        name, err);
  vw->shape[0] = keep0;
  vw->name[0] = 'X';
  rc = bm_fusion_load(&f, &cfg, &ws, err, sizeof err);
  CHECK(rc == -1 && strstr(err, victim) && strstr(err, "missing"), "%s: a missing tensor is refused by name: %s",
        name, err);
  vw->name[0] = 'f';
  bm_fusion_cfg wrong = cfg;
  wrong.mlp = cfg.mlp + 1;
  rc = bm_fusion_load(&f, &wrong, &ws, err, sizeof err);
  CHECK(rc == -1 && strstr(err, "mlp.fc1"), "%s: a config that does not fit the checkpoint is refused: %s", name, err);
  bm_weights_free(&ws);
  for (int i = 0; i < n; i++) free(w[i].name), free(w[i].data);
  free(w), free(xi), free(xt), free(R), free(want_out), free(want_dxi), free(want_dxt), free(ts), free(tl);
  free(out), free(dxi), free(dxt);
}

static void test_parity(void) {
  const char *dir = getenv("BM_TESTS"), *tmp = getenv("TMPDIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/fixtures/fusion.bmr", dir ? dir : "tests");
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *rec;
  int cases = 0;
  while (bm_reader_next(r, &rec) == 1) {
    cases++;
    parity_case(rec, tmp ? tmp : "/tmp");
  }
  CHECK(cases == 2 && !bm_reader_error(r), "both reference cases (concat, mean) read (%d)", cases);
  bm_reader_close(r);
}

int main(void) {
  const char *env = getenv("BM_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
  printf("# seed %llu (BM_SEED=%llu replays it)\n", (unsigned long long)seed, (unsigned long long)seed);
  bm_rng_seed(&rng, seed);
  /* finite differences run thousands of tiny forwards: one thread, so a
   * busy machine's OpenMP barriers do not dominate (threads are tested on
   * their own below) */
  bm_set_threads(1);
  test_xattn();
  bm_set_threads(1);
  test_module_fd(BM_FUSE_CONCAT, 2);
  test_module_fd(BM_FUSE_MEAN, 2);
  test_module_fd(BM_FUSE_CONCAT, 0); /* projections, pooling and norms alone */
  test_module_stale_gap();
  test_module_bits();
  bm_set_threads(2);
  test_init_cfg();
  test_parity();
  CHECK_DONE();
}
