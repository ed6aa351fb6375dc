/* test_backward.c - every backward of backward.h against central finite
 * differences, on fresh random inputs (the seed is printed; BM_SEED=N replays
 * it), odd sizes, packed sequences of different lengths and masked keys.
 *
 * The loss is L = sum(out * R) in double for a fixed random R, so dL/dout = R
 * is the upstream gradient each backward gets. The forwards are float32:
 * with a step h = 1e-2 the central difference of L is off by about
 * 1e-7 |L| / h (rounding) plus h^2 |L'''| (truncation), so each gradient is
 * compared relative to its tensor's largest value, within 2e-3 (the worst
 * seen is printed). Parameter gradients are pre-filled with random values to
 * prove they accumulate; written outputs are poisoned with NaN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backward.h"
#include "check.h"
#include "kernels.h"
#include "util.h"

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

static float *copy(const float *x, size_t n) {
  float *p = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  memcpy(p, x, n * sizeof(float));
  return p;
}

/* Largest |a - b| relative to max |b|. */
static double rel_err(const float *a, const float *b, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isnan(a[i]) ? INFINITY : fabs(a[i] - b[i]));
  return err / (scale > 0 ? scale : 1);
}

/* ---- finite differences ---- */
typedef void (*forward_fn)(void *ctx);
typedef struct {
  const char *name;
  float *x;          /* the input, perturbed in place */
  size_t n;
  const float *grad; /* the analytic gradient to check */
} fd_input;

#define FD_MAX 160 /* elements checked per tensor (a random sample beyond) */

/* Worst relative error over the inputs; names the worst tensor in *worst_name. */
static double fd_check(forward_fn f, void *ctx, const float *out, const float *R, size_t nout,
                       fd_input *in, int nin, const char **worst_name) {
  double worst = 0;
  *worst_name = "-";
  for (int t = 0; t < nin; t++) {
    double scale = 0, err = 0;
    for (size_t i = 0; i < in[t].n; i++) scale = fmax(scale, fabs(in[t].grad[i]));
    size_t count = in[t].n < FD_MAX ? in[t].n : FD_MAX;
    for (size_t c = 0; c < count; c++) {
      size_t i = in[t].n <= FD_MAX ? c : (size_t)(bm_rng_next(&rng) % in[t].n);
      float keep = in[t].x[i];
      float h = 1e-2f * fmaxf(1.0f, fabsf(keep));
      float hi = keep + h, lo = keep - h;
      double l[2];
      for (int k = 0; k < 2; k++) {
        in[t].x[i] = k ? lo : hi;
        f(ctx);
        double s = 0;
        for (size_t j = 0; j < nout; j++) s += (double)out[j] * R[j];
        l[k] = s;
      }
      in[t].x[i] = keep;
      double fd = (l[0] - l[1]) / ((double)hi - (double)lo);
      err = fmax(err, fabs(fd - in[t].grad[i]));
    }
    double rel = err / (scale > 0 ? scale : 1);
    if (scale == 0) rel = INFINITY; /* an all-zero gradient proves nothing here */
    if (rel >= worst) worst = rel, *worst_name = in[t].name;
  }
  f(ctx); /* leave out as computed from the unperturbed inputs */
  return worst;
}

/* Pre-fill a parameter gradient with random values (to prove +=). */
static float *prefilled(size_t n, float **base) {
  *base = rnd(n, -1, 1);
  return copy(*base, n);
}
static void unfill(float *g, const float *base, size_t n) {
  for (size_t i = 0; i < n; i++) g[i] -= base[i];
}

#define TOL 2e-3

/* ---- linear ---- */
typedef struct {
  float *y, *x, *W, *b;
  int N, in, out;
} linear_ctx;
static void linear_fwd(void *p) {
  linear_ctx *c = p;
  bm_linear(c->y, c->x, c->W, c->b, c->N, c->in, c->out);
}

static void test_linear(int accumulate) {
  linear_ctx c = {.N = 13, .in = 7, .out = 11};
  size_t nx = (size_t)c.N * c.in, nw = (size_t)c.out * c.in, ny = (size_t)c.N * c.out;
  c.x = rnd(nx, -2, 2), c.W = rnd(nw, -1, 1), c.b = rnd((size_t)c.out, -1, 1);
  c.y = poisoned(ny);
  float *R = rnd(ny, -1, 1), *dW0, *db0, *dx0 = NULL;
  float *dW = prefilled(nw, &dW0), *db = prefilled((size_t)c.out, &db0);
  float *dx = accumulate ? prefilled(nx, &dx0) : poisoned(nx);
  linear_fwd(&c);
  bm_linear_backward(dx, dW, db, R, c.x, c.W, c.N, c.in, c.out, accumulate);
  unfill(dW, dW0, nw), unfill(db, db0, (size_t)c.out);
  if (accumulate) unfill(dx, dx0, nx);
  fd_input in[] = {{"dx", c.x, nx, dx}, {"dW", c.W, nw, dW}, {"db", c.b, (size_t)c.out, db}};
  const char *w;
  double e = fd_check(linear_fwd, &c, c.y, R, ny, in, 3, &w);
  CHECK(e < TOL, "linear backward N=13 in=7 out=11, dx %s: dx, dW +=, db += match finite differences (worst rel %.2g in %s)",
        accumulate ? "+=" : "=", e, w);
  /* no input gradient, no bias: the others unchanged */
  float *dW2 = copy(dW0, nw);
  bm_linear_backward(NULL, dW2, NULL, R, c.x, c.W, c.N, c.in, c.out, 0);
  unfill(dW2, dW0, nw);
  CHECK(rel_err(dW2, dW, nw) < 1e-6, "linear backward with dx and db NULL gives the same dW");
  free(c.x), free(c.W), free(c.b), free(c.y), free(R), free(dW), free(db), free(dx);
  free(dW0), free(db0), free(dx0), free(dW2);
}

/* ---- linear + GELU ---- */
typedef struct {
  float *pre, *y, *x, *W, *b;
  int N, in, out;
} lgelu_ctx;
static void lgelu_fwd(void *p) {
  lgelu_ctx *c = p;
  bm_linear_gelu_train(c->pre, c->y, c->x, c->W, c->b, c->N, c->in, c->out);
}

static void test_linear_gelu(void) {
  lgelu_ctx c = {.N = 9, .in = 6, .out = 10};
  size_t nx = (size_t)c.N * c.in, nw = (size_t)c.out * c.in, ny = (size_t)c.N * c.out;
  c.x = rnd(nx, -2, 2), c.W = rnd(nw, -1, 1), c.b = rnd((size_t)c.out, -1, 1);
  c.pre = poisoned(ny), c.y = poisoned(ny);
  lgelu_fwd(&c);
  /* the training forward equals the inference one, bit for bit */
  float *y2 = poisoned(ny);
  bm_linear_gelu(y2, c.x, c.W, c.b, c.N, c.in, c.out);
  int same = memcmp(y2, c.y, ny * sizeof(float)) == 0;
  { /* and at a size where the vector loops and several threads run */
    int N = 301, in = 5, out = 517;
    size_t n = (size_t)N * out;
    float *x = rnd((size_t)N * in, -3, 3), *W = rnd((size_t)out * in, -1, 1), *b = rnd((size_t)out, -1, 1);
    float *pre = poisoned(n), *y = poisoned(n), *yi = poisoned(n);
    bm_linear_gelu_train(pre, y, x, W, b, N, in, out);
    bm_linear_gelu(yi, x, W, b, N, in, out);
    same &= memcmp(y, yi, n * sizeof(float)) == 0;
    free(x), free(W), free(b), free(pre), free(y), free(yi);
  }
  CHECK(same, "linear+GELU training forward equals bm_linear_gelu bit for bit");
  float *R = rnd(ny, -1, 1), *dpre = poisoned(ny), *dx = poisoned(nx), *dW0, *db0;
  float *dW = prefilled(nw, &dW0), *db = prefilled((size_t)c.out, &db0);
  bm_gelu_backward(dpre, R, c.pre, ny);
  bm_linear_backward(dx, dW, db, dpre, c.x, c.W, c.N, c.in, c.out, 0);
  unfill(dW, dW0, nw), unfill(db, db0, (size_t)c.out);
  fd_input in[] = {{"dx", c.x, nx, dx}, {"dW", c.W, nw, dW}, {"db", c.b, (size_t)c.out, db}};
  const char *w;
  double e = fd_check(lgelu_fwd, &c, c.y, R, ny, in, 3, &w);
  CHECK(e < TOL, "linear+GELU (erf) backward matches finite differences (worst rel %.2g in %s)", e, w);
  /* in place: dx may equal dy */
  float *inplace = copy(R, ny);
  bm_gelu_backward(inplace, inplace, c.pre, ny);
  CHECK(memcmp(inplace, dpre, ny * sizeof(float)) == 0, "GELU backward in place gives the same bits");
  /* GELU'(x) against the derivative of the exact GELU at a few points, in double */
  double gw = 0;
  for (int i = 0; i < 41; i++) {
    float x = -6.0f + 0.3f * (float)i, one = 1.0f, d;
    bm_gelu_backward(&d, &one, &x, 1);
    double want = 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * (double)x * x) / sqrt(2 * M_PI);
    gw = fmax(gw, fabs(d - want));
  }
  CHECK(gw < 1e-6, "GELU'(x) = Phi(x) + x phi(x) on [-6, 6] (worst abs %.2g)", gw);
  free(c.x), free(c.W), free(c.b), free(c.pre), free(c.y), free(y2), free(R), free(dpre);
  free(dx), free(dW), free(db), free(dW0), free(db0), free(inplace);
}

/* ---- layernorm ---- */
typedef struct {
  float *y, *mean, *rstd, *x, *g, *b, eps;
  int N, C;
} ln_ctx;
static void ln_fwd(void *p) {
  ln_ctx *c = p;
  bm_layernorm_train(c->y, c->mean, c->rstd, c->x, c->g, c->b, c->N, c->C, c->eps);
}

static void test_layernorm(float eps, int accumulate) {
  ln_ctx c = {.N = 11, .C = 37, .eps = eps};
  size_t n = (size_t)c.N * c.C;
  c.x = rnd(n, -2, 2), c.g = rnd((size_t)c.C, 0.5f, 1.5f), c.b = rnd((size_t)c.C, -1, 1);
  for (int i = 0; i < c.N; i++) /* rows with their own offset and spread */
    for (int j = 0; j < c.C; j++) c.x[(size_t)i * c.C + j] = c.x[(size_t)i * c.C + j] * (0.5f + i * 0.2f) + (float)i - 5;
  c.y = poisoned(n), c.mean = poisoned((size_t)c.N), c.rstd = poisoned((size_t)c.N);
  ln_fwd(&c);
  float *y2 = poisoned(n);
  bm_layernorm(y2, c.x, c.g, c.b, c.N, c.C, eps);
  /* the same arithmetic gives 0; sums in another order up to 1e-6 on rows
   * whose mean is ten times their spread */
  double ef = rel_err(c.y, y2, n);
  CHECK(ef < 1e-5, "layernorm training forward equals bm_layernorm (eps %g, rel %.2g)", eps, ef);
  float *R = rnd(n, -1, 1), *dg0, *db0, *dx0 = NULL;
  float *dg = prefilled((size_t)c.C, &dg0), *db = prefilled((size_t)c.C, &db0);
  float *dx = accumulate ? prefilled(n, &dx0) : poisoned(n);
  bm_layernorm_backward(dx, dg, db, R, c.x, c.mean, c.rstd, c.g, c.N, c.C, accumulate);
  unfill(dg, dg0, (size_t)c.C), unfill(db, db0, (size_t)c.C);
  if (accumulate) unfill(dx, dx0, n);
  fd_input in[] = {{"dx", c.x, n, dx}, {"dg", c.g, (size_t)c.C, dg}, {"db", c.b, (size_t)c.C, db}};
  const char *w;
  double e = fd_check(ln_fwd, &c, c.y, R, n, in, 3, &w);
  CHECK(e < TOL, "layernorm backward N=11 C=37 eps %g, dx %s: matches finite differences (worst rel %.2g in %s)",
        eps, accumulate ? "+=" : "=", e, w);
  free(c.x), free(c.g), free(c.b), free(c.y), free(c.mean), free(c.rstd), free(y2), free(R);
  free(dg), free(db), free(dx), free(dg0), free(db0), free(dx0);
}

/* ---- softmax rows ---- */
typedef struct {
  float *y, *x;
  int N, n;
} sm_ctx;
static void sm_fwd(void *p) {
  sm_ctx *c = p;
  memcpy(c->y, c->x, sizeof(float) * (size_t)c->N * c->n);
  for (int i = 0; i < c->N; i++) bm_softmax(c->y + (size_t)i * c->n, c->n);
}

static void test_softmax(void) {
  sm_ctx c = {.N = 5, .n = 19};
  size_t n = (size_t)c.N * c.n;
  c.x = rnd(n, -3, 3), c.y = poisoned(n);
  sm_fwd(&c);
  float *R = rnd(n, -1, 1), *dx = poisoned(n);
  bm_softmax_backward(dx, R, c.y, c.N, c.n);
  fd_input in[] = {{"dx", c.x, n, dx}};
  const char *w;
  double e = fd_check(sm_fwd, &c, c.y, R, n, in, 1, &w);
  CHECK(e < TOL, "softmax backward over 5 rows of 19 matches finite differences (worst rel %.2g)", e);
  free(c.x), free(c.y), free(R), free(dx);
}

/* ---- L2 normalize ---- */
typedef struct {
  float *y, *x;
  int N, C;
} l2_ctx;
static void l2_fwd(void *p) {
  l2_ctx *c = p;
  memcpy(c->y, c->x, sizeof(float) * (size_t)c->N * c->C);
  bm_l2_normalize(c->y, c->N, c->C);
}

static void test_l2(void) {
  l2_ctx c = {.N = 4, .C = 23};
  size_t n = (size_t)c.N * c.C;
  c.x = rnd(n, -2, 2), c.y = poisoned(n);
  for (size_t j = 0; j < (size_t)c.C; j++) c.x[j] *= 0.25f; /* a shorter vector too */
  l2_fwd(&c);
  float *R = rnd(n, -1, 1), *dx = poisoned(n);
  bm_l2_normalize_backward(dx, R, c.x, c.N, c.C);
  fd_input in[] = {{"dx", c.x, n, dx}};
  const char *w;
  double e = fd_check(l2_fwd, &c, c.y, R, n, in, 1, &w);
  CHECK(e < TOL, "L2 normalize backward matches finite differences (worst rel %.2g)", e);
  /* below the clamp the map is x / 1e-12, a constant scale */
  float z[3] = {1e-14f, -2e-14f, 0}, dz[3], dyz[3] = {0.5f, -1, 2};
  bm_l2_normalize_backward(dz, dyz, z, 1, 3);
  CHECK(fabs(dz[0] - 5e11) < 1e5 && fabs(dz[2] - 2e12) < 1e6, "L2 normalize backward under the 1e-12 clamp is dy / 1e-12");
  free(c.x), free(c.y), free(R), free(dx);
}

/* ---- attention ---- */
typedef struct {
  float *out, *P, *qkv;
  const int *start, *len;
  const uint8_t *keep;
  int nseq, C, heads;
} att_ctx;
static void att_fwd(void *p) {
  att_ctx *c = p;
  bm_attention_train(c->out, c->P, c->qkv, c->start, c->len, c->nseq, c->C, c->heads, c->keep);
}

static void test_attention(int masked) {
  /* three sequences of different lengths, a gap row (6) between the first two */
  int start[3] = {0, 7, 10}, len[3] = {6, 3, 9}, ntok = 19, C = 12, heads = 3;
  uint8_t keep[19];
  for (int i = 0; i < ntok; i++) keep[i] = 1;
  if (masked) keep[2] = keep[5] = keep[9] = keep[13] = keep[17] = keep[18] = 0;
  att_ctx c = {.start = start, .len = len, .keep = masked ? keep : NULL, .nseq = 3, .C = C, .heads = heads};
  size_t nqkv = (size_t)ntok * 3 * C, nout = (size_t)ntok * C;
  c.qkv = rnd(nqkv, -2, 2);
  c.out = poisoned(nout);
  c.P = poisoned(bm_attention_probs_size(len, 3, heads));
  for (int j = 0; j < C; j++) c.out[6 * C + j] = 0; /* the gap row is nobody's output */
  att_fwd(&c);
  float *out2 = copy(c.out, nout), *scratch = poisoned(bm_attention_scratch(9));
  bm_attention(out2, c.qkv, start, len, 3, C, heads, c.keep, scratch);
  CHECK(memcmp(out2, c.out, nout * sizeof(float)) == 0, "attention training forward equals bm_attention bit for bit%s",
        masked ? " (masked keys)" : "");
  float *R = rnd(nout, -1, 1), *dqkv = poisoned(nqkv);
  for (int j = 0; j < C; j++) R[6 * C + j] = 0;
  float *bs = poisoned(bm_attention_backward_scratch(9));
  bm_attention_backward(dqkv, R, c.qkv, c.P, start, len, 3, C, heads, bs);
  int gap_untouched = 1, masked_zero = 1, others_finite = 1;
  for (int i = 0; i < ntok; i++)
    for (int j = 0; j < 3 * C; j++) {
      float d = dqkv[(size_t)i * 3 * C + j];
      if (i == 6) gap_untouched &= isnan(d);
      else if (!keep[i] && j >= C) masked_zero &= d == 0.0f;
      else others_finite &= isfinite(d) && d != 0.0f;
    }
  CHECK(gap_untouched && others_finite, "attention backward writes every row of every sequence and no other");
  if (masked) CHECK(masked_zero, "masked keys get exactly zero k and v gradients");
  for (int j = 0; j < 3 * C; j++) dqkv[6 * 3 * C + j] = 0; /* the gap row has no gradient */
  fd_input in[] = {{"dqkv", c.qkv, nqkv, dqkv}};
  const char *w;
  double e = fd_check(att_fwd, &c, c.out, R, nout, in, 1, &w);
  CHECK(e < TOL, "attention backward, 3 packed sequences of 6, 3, 9 tokens, 3 heads%s: matches finite differences (worst rel %.2g)",
        masked ? ", 6 masked keys" : "", e);
  free(c.qkv), free(c.out), free(c.P), free(out2), free(scratch), free(R), free(dqkv), free(bs);
}

/* ---- patch embedding ---- */
typedef struct {
  float *y, *img, *W, *b, *cols;
  int B, S, P, C;
} pe_ctx;
static void pe_fwd(void *p) {
  pe_ctx *c = p;
  bm_patch_embed(c->y, c->img, c->W, c->b, c->cols, c->B, c->S, c->P, c->C);
}

static void test_patch_embed(void) {
  pe_ctx c = {.B = 2, .S = 12, .P = 4, .C = 5};
  int G = c.S / c.P, K = 3 * c.P * c.P;
  size_t nimg = (size_t)c.B * 3 * c.S * c.S, nw = (size_t)c.C * K, ny = (size_t)c.B * G * G * c.C;
  c.img = rnd(nimg, -2, 2), c.W = rnd(nw, -1, 1), c.b = rnd((size_t)c.C, -1, 1);
  c.cols = poisoned((size_t)c.B * G * G * K), c.y = poisoned(ny);
  pe_fwd(&c);
  float *R = rnd(ny, -1, 1), *dW0, *db0;
  float *dW = prefilled(nw, &dW0), *db = prefilled((size_t)c.C, &db0);
  bm_patch_embed_backward(dW, db, R, c.cols, c.B, c.S, c.P, c.C);
  unfill(dW, dW0, nw), unfill(db, db0, (size_t)c.C);
  fd_input in[] = {{"dW", c.W, nw, dW}, {"db", c.b, (size_t)c.C, db}};
  const char *w;
  double e = fd_check(pe_fwd, &c, c.y, R, ny, in, 2, &w);
  CHECK(e < TOL, "patch embedding backward (2 images 12x12, patch 4) matches finite differences (worst rel %.2g in %s)", e, w);
  free(c.img), free(c.W), free(c.b), free(c.cols), free(c.y), free(R), free(dW), free(db), free(dW0), free(db0);
}

/* ---- embeddings, token assembly, pooling ---- */
typedef struct {
  float *y, *table;
  const int *ids;
  int ntok, C;
} emb_ctx;
static void emb_fwd(void *p) {
  emb_ctx *c = p;
  for (int t = 0; t < c->ntok; t++)
    memcpy(c->y + (size_t)t * c->C, c->table + (size_t)c->ids[t] * c->C, sizeof(float) * (size_t)c->C);
}

static void test_embedding(void) {
  int V = 7, ntok = 23, C = 13, ids[23];
  for (int t = 0; t < ntok; t++) ids[t] = (int)(bm_rng_next(&rng) % 5); /* repeats; rows 5, 6 unused */
  emb_ctx c = {.ids = ids, .ntok = ntok, .C = C};
  size_t nt = (size_t)V * C, ny = (size_t)ntok * C;
  c.table = rnd(nt, -1, 1), c.y = poisoned(ny);
  emb_fwd(&c);
  float *R = rnd(ny, -1, 1), *d0, *d = prefilled(nt, &d0), *serial = copy(d0, nt);
  bm_embedding_backward(d, R, ids, ntok, C);
  for (int t = 0; t < ntok; t++)
    for (int j = 0; j < C; j++) serial[(size_t)ids[t] * C + j] += R[(size_t)t * C + j];
  CHECK(memcmp(d, serial, nt * sizeof(float)) == 0, "embedding backward equals the serial scatter-add in token order, bit for bit");
  unfill(d, d0, nt);
  fd_input in[] = {{"dtable", c.table, nt, d}};
  const char *w;
  double e = fd_check(emb_fwd, &c, c.y, R, ny, in, 1, &w);
  CHECK(e < TOL, "embedding lookup backward with repeated ids matches finite differences (worst rel %.2g)", e);
  free(c.table), free(c.y), free(R), free(d), free(d0), free(serial);
}

typedef struct {
  float *x, *tok, *pos;
  const int *start, *len;
  int nseq, C, ntok;
} pos_ctx;
static void pos_fwd(void *p) {
  pos_ctx *c = p;
  memcpy(c->x, c->tok, sizeof(float) * (size_t)c->ntok * c->C);
  for (int s = 0; s < c->nseq; s++)
    for (int i = 0; i < c->len[s]; i++)
      for (int j = 0; j < c->C; j++) c->x[((size_t)c->start[s] + i) * c->C + j] += c->pos[(size_t)i * c->C + j];
}

static void test_pos_embed(void) {
  int start[3] = {0, 5, 13}, len[3] = {5, 8, 2}, C = 9, maxlen = 10;
  pos_ctx c = {.start = start, .len = len, .nseq = 3, .C = C, .ntok = 15};
  size_t nx = (size_t)c.ntok * C, np = (size_t)maxlen * C;
  c.tok = rnd(nx, -1, 1), c.pos = rnd(np, -1, 1), c.x = poisoned(nx);
  pos_fwd(&c);
  float *R = rnd(nx, -1, 1), *d0, *d = prefilled(np, &d0);
  bm_pos_embed_backward(d, R, start, len, 3, C);
  unfill(d, d0, np);
  int tail_zero = 1; /* positions 8, 9 are in no sequence */
  for (size_t j = 8 * (size_t)C; j < np; j++) tail_zero &= d[j] == 0.0f;
  fd_input in[] = {{"dpos", c.pos, np, d}};
  const char *w;
  double e = fd_check(pos_fwd, &c, c.x, R, nx, in, 1, &w);
  CHECK(e < TOL && tail_zero, "positional embedding backward over sequences of 5, 8, 2 matches finite differences (worst rel %.2g)", e);
  free(c.tok), free(c.pos), free(c.x), free(R), free(d), free(d0);
}

typedef struct {
  float *x, *patch, *cls, *pos;
  int B, GG, C;
} vt_ctx;
static void vt_fwd(void *p) { /* as vit.c assembles its tokens */
  vt_ctx *c = p;
  int T = c->GG + 1;
  for (int b = 0; b < c->B; b++)
    for (int t = 0; t < T; t++)
      for (int j = 0; j < c->C; j++) {
        float v = t == 0 ? c->cls[j] : c->patch[((size_t)b * c->GG + t - 1) * c->C + j];
        c->x[((size_t)b * T + t) * c->C + j] = v + c->pos[(size_t)t * c->C + j];
      }
}

static void test_vit_tokens(void) {
  vt_ctx c = {.B = 3, .GG = 4, .C = 7};
  int T = c.GG + 1;
  size_t nx = (size_t)c.B * T * c.C, npatch = (size_t)c.B * c.GG * c.C, npos = (size_t)T * c.C;
  c.patch = rnd(npatch, -1, 1), c.cls = rnd((size_t)c.C, -1, 1), c.pos = rnd(npos, -1, 1);
  c.x = poisoned(nx);
  vt_fwd(&c);
  float *R = rnd(nx, -1, 1), *dpatch = poisoned(npatch), *dc0, *dp0;
  float *dcls = prefilled((size_t)c.C, &dc0), *dpos = prefilled(npos, &dp0);
  bm_vit_tokens_backward(dpatch, dcls, dpos, R, c.B, c.GG, c.C);
  unfill(dcls, dc0, (size_t)c.C), unfill(dpos, dp0, npos);
  fd_input in[] = {{"dpatch", c.patch, npatch, dpatch}, {"dcls", c.cls, (size_t)c.C, dcls}, {"dpos", c.pos, npos, dpos}};
  const char *w;
  double e = fd_check(vt_fwd, &c, c.x, R, nx, in, 3, &w);
  CHECK(e < TOL, "ViT cls + positional embedding backward matches finite differences (worst rel %.2g in %s)", e, w);
  free(c.patch), free(c.cls), free(c.pos), free(c.x), free(R), free(dpatch), free(dcls), free(dpos), free(dc0), free(dp0);
}

typedef struct {
  float *pooled, *x;
  const int *start;
  int nseq, C;
} pool_ctx;
static void pool_fwd(void *p) {
  pool_ctx *c = p;
  for (int s = 0; s < c->nseq; s++)
    memcpy(c->pooled + (size_t)s * c->C, c->x + (size_t)c->start[s] * c->C, sizeof(float) * (size_t)c->C);
}

static void test_pool(void) {
  int start[3] = {0, 4, 5}, ntok = 11, C = 6;
  pool_ctx c = {.start = start, .nseq = 3, .C = C};
  c.x = rnd((size_t)ntok * C, -1, 1), c.pooled = poisoned((size_t)3 * C);
  pool_fwd(&c);
  float *R = rnd((size_t)3 * C, -1, 1), *dx = poisoned((size_t)ntok * C);
  bm_pool_token0_backward(dx, R, start, 3, ntok, C);
  fd_input in[] = {{"dx", c.x, (size_t)ntok * C, dx}};
  const char *w;
  double e = fd_check(pool_fwd, &c, c.pooled, R, (size_t)3 * C, in, 1, &w);
  CHECK(e < TOL, "token-0 pooling backward scatters into each sequence's first row (worst rel %.2g)", e);
  free(c.x), free(c.pooled), free(R), free(dx);
}

/* ---- dropout ---- */
static void test_dropout(void) {
  size_t n = 200003;
  float p = 0.3f, *x = rnd(n, 0.5f, 1.5f), *y = poisoned(n), *y2 = poisoned(n);
  bm_set_threads(1);
  bm_dropout(y, x, n, p, 42, 7, 3);
  bm_set_threads(3);
  bm_dropout(y2, x, n, p, 42, 7, 3);
  bm_set_threads(2);
  CHECK(memcmp(y, y2, n * sizeof(float)) == 0, "dropout mask is the same for 1 and 3 threads");
  size_t kept = 0;
  int scaled = 1;
  for (size_t i = 0; i < n; i++) {
    if (y[i] != 0.0f) kept++, scaled &= y[i] == x[i] * (1.0f / (1.0f - p));
  }
  double frac = (double)kept / n, sd = sqrt(p * (1 - p) / n);
  CHECK(fabs(frac - (1 - p)) < 5 * sd && scaled, "dropout p=0.3 keeps %.4f of elements (expected 0.7 +- %.4f), scaled by 1/(1-p)", frac, 5 * sd);
  bm_dropout(y2, x, n, p, 42, 8, 3);
  size_t same = 0;
  for (size_t i = 0; i < n; i++) same += (y[i] != 0.0f) == (y2[i] != 0.0f);
  double agree = (double)same / n; /* independent masks agree on p^2 + (1-p)^2 = 0.58 */
  CHECK(fabs(agree - 0.58) < 0.01, "another step draws an independent mask (agreement %.3f)", agree);
  float *dy = rnd(n, -1, 1), *dx = poisoned(n);
  bm_dropout_backward(dx, dy, n, p, 42, 7, 3);
  int ok = 1;
  for (size_t i = 0; i < n; i++) ok &= y[i] == 0.0f ? dx[i] == 0.0f : dx[i] == dy[i] * (1.0f / (1.0f - p));
  CHECK(ok, "dropout backward passes the gradient through the same mask and scale");
  bm_dropout(y2, x, n, 0.0f, 42, 7, 3);
  CHECK(memcmp(y2, x, n * sizeof(float)) == 0, "dropout p=0 is the identity");
  free(x), free(y), free(y2), free(dy), free(dx);
}

/* ---- determinism ---- */
static void test_determinism(void) {
  int N = 389, in = 96, out = 160; /* large enough for every parallel path */
  size_t nx = (size_t)N * in, nw = (size_t)out * in, ny = (size_t)N * out;
  float *x = rnd(nx, -1, 1), *W = rnd(nw, -1, 1), *dy = rnd(ny, -1, 1);
  float *g = rnd((size_t)out, 0.5f, 1.5f), *mean = poisoned((size_t)N), *rstd = poisoned((size_t)N);
  float *yl = poisoned(ny), *bl = rnd((size_t)out, -1, 1);
  bm_layernorm_train(yl, mean, rstd, dy, g, bl, N, out, 1e-6f);
  float *res[3][5];
  int threads[3] = {3, 3, 1};
  int ids[389];
  for (int t = 0; t < N; t++) ids[t] = (int)(bm_rng_next(&rng) % 17);
  for (int r = 0; r < 3; r++) {
    bm_set_threads(threads[r]);
    float *dx = poisoned(nx), *dW = calloc(nw, 4), *db = calloc((size_t)out, 4);
    float *lx = poisoned(ny), *lg = calloc((size_t)out * 2, 4), *emb = calloc((size_t)17 * out, 4);
    bm_linear_backward(dx, dW, db, dy, x, W, N, in, out, 0);
    bm_layernorm_backward(lx, lg, lg + out, yl, dy, mean, rstd, g, N, out, 0);
    bm_embedding_backward(emb, dy, ids, N, out);
    res[r][0] = dx, res[r][1] = dW, res[r][2] = db, res[r][3] = lg, res[r][4] = emb;
    free(lx);
  }
  bm_set_threads(2);
  size_t sizes[5] = {nx, nw, (size_t)out, (size_t)out * 2, (size_t)17 * out};
  int same = 1, across = 1;
  for (int k = 0; k < 5; k++) same &= memcmp(res[0][k], res[1][k], sizes[k] * 4) == 0;
  for (int k = 2; k < 5; k++) across &= memcmp(res[0][k], res[2][k], sizes[k] * 4) == 0;
  CHECK(same, "linear, layernorm and embedding backward give the same bits run twice on 3 threads");
  CHECK(across, "bias, norm and embedding gradients give the same bits on 1 and 3 threads");
  for (int r = 0; r < 3; r++)
    for (int k = 0; k < 5; k++) free(res[r][k]);
  free(x), free(W), free(dy), free(g), free(mean), free(rstd), free(yl), free(bl);

  /* attention on ViT-like packed sequences: same bits twice on 3 threads */
  int start[5] = {0, 31, 62, 93, 124}, len[5] = {31, 31, 31, 31, 31}, C = 64, heads = 4;
  size_t nqkv = (size_t)155 * 3 * C, nout = (size_t)155 * C;
  float *qkv = rnd(nqkv, -1, 1), *dout = rnd(nout, -1, 1), *o = poisoned(nout);
  float *P = poisoned(bm_attention_probs_size(len, 5, heads));
  bm_set_threads(3);
  float *s = poisoned(bm_attention_backward_scratch(31)), *d1 = poisoned(nqkv), *d2 = poisoned(nqkv);
  bm_attention_train(o, P, qkv, start, len, 5, C, heads, NULL);
  bm_attention_backward(d1, dout, qkv, P, start, len, 5, C, heads, s);
  bm_attention_backward(d2, dout, qkv, P, start, len, 5, C, heads, s);
  bm_set_threads(2);
  CHECK(memcmp(d1, d2, nqkv * 4) == 0, "attention backward gives the same bits run twice on 3 threads");
  free(qkv), free(dout), free(o), free(P), free(s), free(d1), free(d2);
}

int main(void) {
  const char *env = getenv("BM_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
  printf("# seed %llu (BM_SEED=%llu replays it)\n", (unsigned long long)seed, (unsigned long long)seed);
  bm_rng_seed(&rng, seed);
  bm_set_threads(2);
  test_linear(0);
  test_linear(1);
  test_linear_gelu();
  test_layernorm(1e-6f, 0);
  test_layernorm(1e-12f, 1);
  test_softmax();
  test_l2();
  test_attention(0);
  test_attention(1);
  test_patch_embed();
  test_embedding();
  test_pos_embed();
  test_vit_tokens();
  test_pool();
  test_dropout();
  test_determinism();
  CHECK_DONE();
}
