/* fusion.c - the co-attention fusion module: parameters, forward, backward
 * (fusion.h), composed from backward.h's layers. */
#include "fusion.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "util.h"

/* Tensors of one stream in one layer, in p's order. */
enum { K_LN1W, K_LN1B, K_QKVW, K_QKVB, K_PROJW, K_PROJB, K_LN2W, K_LN2B, K_CQW, K_CQB, K_CKVW,
       K_CKVB, K_CPROJW, K_CPROJB, K_LN3W, K_LN3B, K_FC1W, K_FC1B, K_FC2W, K_FC2B, K_NT };
#define PRE 4 /* img_in W, b; txt_in W, b */

static const char *const stream_name[2] = {"img", "txt"};

int bm_fusion_out_dim(const bm_fusion_cfg *c) { return c->combine == BM_FUSE_MEAN ? c->F : 2 * c->F; }

const char *bm_fusion_check_cfg(const bm_fusion_cfg *c) {
  if (c->Di <= 0 || c->Dt <= 0) return "the input widths Di and Dt must be positive";
  if (c->F <= 0) return "the fusion width F must be positive";
  if (c->layers < 0) return "the number of layers must not be negative";
  if (c->heads <= 0) return "the number of heads must be positive";
  if (c->F % c->heads) return "the fusion width F must be a multiple of the number of heads";
  if (c->combine != BM_FUSE_CONCAT && c->combine != BM_FUSE_MEAN)
    return "combine must be BM_FUSE_CONCAT or BM_FUSE_MEAN";
  if ((int64_t)c->F * 4 > (1 << 24) || c->Di > (1 << 24) || c->Dt > (1 << 24) || c->mlp > (1 << 24))
    return "a width is implausibly large";
  return NULL;
}

static void add(bm_fusion *f, const char *name, int ndim, int64_t d0, int64_t d1) {
  bm_fusion_tensor *t = &f->t[f->nt++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  t->shape[0] = d0, t->shape[1] = d1;
  t->n = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
  t->off = f->np;
  t->decay = ndim == 2;
  f->np += t->n;
}

/* The tensor list and buffers for c (mlp filled in), p and g zeroed. */
static void layout(bm_fusion *f, const bm_fusion_cfg *c) {
  const char *why = bm_fusion_check_cfg(c);
  if (why) bm_die("fusion: %s", why);
  memset(f, 0, sizeof *f);
  f->cfg = *c;
  if (f->cfg.mlp <= 0) f->cfg.mlp = 4 * c->F;
  int F = c->F, M = f->cfg.mlp;
  f->t = bm_xcalloc((size_t)(PRE + 2 * K_NT * c->layers + 4), sizeof *f->t);
  add(f, "fusion.img_in.weight", 2, F, c->Di), add(f, "fusion.img_in.bias", 1, F, 0);
  add(f, "fusion.txt_in.weight", 2, F, c->Dt), add(f, "fusion.txt_in.bias", 1, F, 0);
  static const char *sfx[K_NT] = {
      "ln1.weight", "ln1.bias", "self.qkv.weight", "self.qkv.bias", "self.proj.weight",
      "self.proj.bias", "ln2.weight", "ln2.bias", "cross.q.weight", "cross.q.bias",
      "cross.kv.weight", "cross.kv.bias", "cross.proj.weight", "cross.proj.bias", "ln3.weight",
      "ln3.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
  int64_t rows[K_NT] = {F, F, 3 * F, 3 * F, F, F, F, F, F, F, 2 * F, 2 * F, F, F, F, F, M, M, F, F};
  int64_t cols[K_NT] = {0, 0, F, 0, F, 0, 0, 0, F, 0, F, 0, F, 0, 0, 0, F, 0, M, 0};
  for (int l = 0; l < c->layers; l++)
    for (int s = 0; s < 2; s++)
      for (int k = 0; k < K_NT; k++) {
        char n[96];
        snprintf(n, sizeof n, "fusion.layers.%d.%s.%s", l, stream_name[s], sfx[k]);
        add(f, n, cols[k] ? 2 : 1, rows[k], cols[k]);
      }
  add(f, "fusion.img_norm.weight", 1, F, 0), add(f, "fusion.img_norm.bias", 1, F, 0);
  add(f, "fusion.txt_norm.weight", 1, F, 0), add(f, "fusion.txt_norm.bias", 1, F, 0);
  f->p = bm_xcalloc(f->np, sizeof(float));
  f->g = bm_xcalloc(f->np, sizeof(float));
}

static int is_ln_gain(const char *name) {
  size_t n = strlen(name);
  return n > 7 && !strcmp(name + n - 7, ".weight") &&
         (strstr(name, ".ln1.") || strstr(name, ".ln2.") || strstr(name, ".ln3.") ||
          strstr(name, "_norm."));
}

/* Standard normal truncated to [-2, 2] by rejection (Box-Muller). */
static double trunc_normal(bm_rng *r) {
  for (;;) {
    double u1 = bm_rng_uniform(r), u2 = bm_rng_uniform(r);
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
    if (fabs(z) <= 2.0) return z;
  }
}

void bm_fusion_init(bm_fusion *f, const bm_fusion_cfg *c, uint64_t seed) {
  layout(f, c);
  bm_rng r;
  bm_rng_seed(&r, seed);
  for (int i = 0; i < f->nt; i++) {
    float *p = f->p + f->t[i].off;
    if (f->t[i].ndim == 2)
      for (size_t j = 0; j < f->t[i].n; j++) p[j] = (float)(0.02 * trunc_normal(&r));
    else if (is_ln_gain(f->t[i].name))
      for (size_t j = 0; j < f->t[i].n; j++) p[j] = 1.0f;
    /* biases stay 0 */
  }
}

int bm_fusion_load(bm_fusion *f, const bm_fusion_cfg *c, const bm_weights *w, char *err,
                   size_t errlen) {
  const char *why = bm_fusion_check_cfg(c);
  if (why) {
    snprintf(err, errlen, "%s: fusion: %s", w->source ? w->source : "checkpoint", why);
    return -1;
  }
  layout(f, c);
  for (int i = 0; i < f->nt; i++) {
    const bm_fusion_tensor *t = &f->t[i];
    const bm_weight *x = bm_weights_expect(w, t->name, t->ndim, t->shape, err, errlen);
    float *v = x ? bm_weight_to_f32(x) : NULL;
    if (x && !v)
      snprintf(err, errlen, "%s: tensor %s is %s, not a float type", w->source ? w->source : "checkpoint",
               t->name, bm_wdtype_name(x->dtype));
    if (!v) {
      bm_fusion_free(f);
      return -1;
    }
    memcpy(f->p + t->off, v, t->n * sizeof(float));
    free(v);
  }
  return 0;
}

void bm_fusion_free(bm_fusion *f) {
  free(f->p), free(f->g), free(f->t);
  memset(f, 0, sizeof *f);
}

void bm_fusion_zero_grad(bm_fusion *f) { memset(f->g, 0, f->np * sizeof(float)); }

void bm_fusion_add_params(bm_fusion *f, bm_adamw *opt, int group_decay, int group_nodecay) {
  for (int i = 0; i < f->nt; i++) {
    bm_fusion_tensor *t = &f->t[i];
    bm_adamw_add_param(opt, t->name, f->p + t->off, f->g + t->off, t->n,
                       t->decay ? group_decay : group_nodecay);
  }
}

int bm_fusion_find(const bm_fusion *f, const char *name) {
  for (int i = 0; i < f->nt; i++)
    if (!strcmp(f->t[i].name, name)) return i;
  return -1;
}

/* ---- activations ---- */

static void stream_acts_free(bm_fusion_stream_acts *s) {
  float *all[] = {s->x,  s->ln1, s->m1, s->r1,   s->qkv, s->P1, s->att, s->y,  s->ln2, s->m2, s->r2,
                  s->cq, s->ckv, s->P2, s->catt, s->z,   s->ln3, s->m3, s->r3, s->pre, s->hh};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

void bm_fusion_acts_free(bm_fusion_acts *a) {
  for (int i = 0; i < 2 * a->L; i++) stream_acts_free(&a->la[i]);
  free(a->la);
  for (int s = 0; s < 2; s++) {
    float *all[] = {a->in[s],  a->h[s],   a->pin[s], a->pooled[s], a->mf[s],   a->rf[s],
                    a->d[s],   a->dln[s], a->datt[s], a->dqkv[s],  a->dcq[s],  a->dckv[s],
                    a->dh[s],  a->dpin[s], a->dpooled[s]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(a->start[s]), free(a->len[s]);
  }
  free(a->scratch);
  memset(a, 0, sizeof *a);
}

static float *fbuf(size_t n) { return bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float))); }
static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* Grows a to hold rows[s] rows per stream, B sequences and the given
 * probability sizes; keeps the larger of old and new for each. */
static void reserve(const bm_fusion *f, bm_fusion_acts *a, const size_t rows[2], size_t B,
                    const size_t P1[2], const size_t P2[2]) {
  const bm_fusion_cfg *c = &f->cfg;
  int fits = a->la && a->L == c->layers && B <= a->cap_B;
  for (int s = 0; s < 2; s++)
    fits = fits && rows[s] <= a->cap_rows[s] && P1[s] <= a->cap_P1[s] && P2[s] <= a->cap_P2[s];
  if (fits) return;
  size_t cr[2], cB = zmax(B, a->cap_B), c1[2], c2[2];
  for (int s = 0; s < 2; s++) {
    int keep = a->L == c->layers;
    cr[s] = zmax(rows[s], keep ? a->cap_rows[s] : 0);
    c1[s] = zmax(P1[s], keep ? a->cap_P1[s] : 0);
    c2[s] = zmax(P2[s], keep ? a->cap_P2[s] : 0);
  }
  bm_fusion_acts_free(a);
  size_t F = (size_t)c->F, M = (size_t)f->cfg.mlp, D[2] = {(size_t)c->Di, (size_t)c->Dt};
  a->L = c->layers;
  a->la = bm_xcalloc((size_t)(2 * a->L) + 1, sizeof *a->la);
  for (int l = 0; l < a->L; l++)
    for (int s = 0; s < 2; s++) {
      bm_fusion_stream_acts *x = &a->la[2 * l + s];
      size_t N = cr[s], No = cr[1 - s];
      x->x = fbuf(N * F), x->ln1 = fbuf(N * F), x->m1 = fbuf(N), x->r1 = fbuf(N);
      x->qkv = fbuf(N * 3 * F), x->P1 = fbuf(c1[s]), x->att = fbuf(N * F), x->y = fbuf(N * F);
      x->ln2 = fbuf(N * F), x->m2 = fbuf(N), x->r2 = fbuf(N);
      x->cq = fbuf(N * F), x->ckv = fbuf(No * 2 * F), x->P2 = fbuf(c2[s]), x->catt = fbuf(N * F);
      x->z = fbuf(N * F), x->ln3 = fbuf(N * F), x->m3 = fbuf(N), x->r3 = fbuf(N);
      x->pre = fbuf(N * M), x->hh = fbuf(N * M);
    }
  for (int s = 0; s < 2; s++) {
    size_t N = cr[s], No = cr[1 - s];
    a->in[s] = fbuf(N * D[s]), a->h[s] = fbuf(N * F);
    a->pin[s] = fbuf(cB * F), a->pooled[s] = fbuf(cB * F), a->mf[s] = fbuf(cB), a->rf[s] = fbuf(cB);
    a->start[s] = bm_xmalloc(sizeof(int) * cB), a->len[s] = bm_xmalloc(sizeof(int) * cB);
    a->d[s] = fbuf(N * F), a->dln[s] = fbuf(N * F), a->datt[s] = fbuf(N * F);
    a->dqkv[s] = fbuf(N * 3 * F), a->dcq[s] = fbuf(N * F), a->dckv[s] = fbuf(No * 2 * F);
    a->dh[s] = fbuf(N * M), a->dpin[s] = fbuf(cB * F), a->dpooled[s] = fbuf(cB * F);
    a->cap_rows[s] = cr[s], a->cap_P1[s] = c1[s], a->cap_P2[s] = c2[s];
  }
  a->cap_B = cB;
}

/* Pointers to the parameters (base = f->p) or gradients (base = f->g) of
 * layer l, stream s. */
static float *lt(const bm_fusion *f, const float *base, int l, int s, int k) {
  return (float *)base + f->t[PRE + (l * 2 + s) * K_NT + k].off;
}
static float *tail(const bm_fusion *f, const float *base, int i) { /* i: 0..3 after the layers */
  return (float *)base + f->t[PRE + f->cfg.layers * 2 * K_NT + i].off;
}

void bm_fusion_forward(bm_fusion *f, bm_fusion_acts *a, const float *xi, int B, int Ti,
                       const float *xt, const int *tstart, const int *tlen, float *out) {
  const bm_fusion_cfg *c = &f->cfg;
  int F = c->F, M = c->mlp, H = c->heads, L = c->layers;
  if (B < 1 || Ti < 1) bm_die("fusion: batch %d of %d image tokens: need at least one of each", B, Ti);
  int Nt = 0, maxt = 0;
  for (int s = 0; s < B; s++) {
    if (tlen[s] < 1 || tstart[s] < 0)
      bm_die("fusion: text %d has %d tokens at row %d: need at least one ([CLS])", s, tlen[s], tstart[s]);
    if (tstart[s] + tlen[s] > Nt) Nt = tstart[s] + tlen[s];
    if (tlen[s] > maxt) maxt = tlen[s];
  }
  int N[2] = {B * Ti, Nt}, D[2] = {c->Di, c->Dt};
  int *ilen = bm_xmalloc(sizeof(int) * (size_t)B);
  for (int s = 0; s < B; s++) ilen[s] = Ti;
  size_t rows[2] = {(size_t)N[0], (size_t)N[1]};
  size_t P1[2] = {(size_t)B * H * Ti * Ti, bm_attention_probs_size(tlen, B, H)};
  size_t P2[2] = {bm_xattn_probs_size(ilen, tlen, B, H), bm_xattn_probs_size(tlen, ilen, B, H)};
  free(ilen);
  reserve(f, a, rows, (size_t)B, P1, P2);
  a->B = B, a->N[0] = N[0], a->N[1] = N[1];
  for (int s = 0; s < B; s++) {
    a->start[0][s] = s * Ti, a->len[0][s] = Ti;
    a->start[1][s] = tstart[s], a->len[1][s] = tlen[s];
  }
  /* the inputs, with text rows in no sequence zeroed so that nothing
   * non-finite there can reach a gradient */
  memcpy(a->in[0], xi, sizeof(float) * (size_t)N[0] * D[0]);
  memset(a->in[1], 0, sizeof(float) * (size_t)N[1] * D[1]);
  for (int s = 0; s < B; s++)
    memcpy(a->in[1] + (size_t)tstart[s] * D[1], xt + (size_t)tstart[s] * D[1],
           sizeof(float) * (size_t)tlen[s] * D[1]);

  size_t row_bytes = sizeof(float) * (size_t)F;
  for (int s = 0; s < 2; s++) {
    float *x0 = L ? a->la[s].x : a->h[s];
    bm_linear(x0, a->in[s], f->p + f->t[2 * s].off, f->p + f->t[2 * s + 1].off, N[s], D[s], F);
  }
  for (int l = 0; l < L; l++) {
    /* self-attention of both streams first: the cross-attention reads both LN2s */
    for (int s = 0; s < 2; s++) {
      bm_fusion_stream_acts *x = &a->la[2 * l + s];
#define P(k) lt(f, f->p, l, s, k)
      bm_layernorm_train(x->ln1, x->m1, x->r1, x->x, P(K_LN1W), P(K_LN1B), N[s], F, BM_FUSION_EPS);
      bm_linear(x->qkv, x->ln1, P(K_QKVW), P(K_QKVB), N[s], F, 3 * F);
      /* the attention writes only rows in a sequence: text rows in none must
       * hold zeros, not stale memory, or a NaN there reaches the gradients */
      memset(x->att, 0, row_bytes * N[s]);
      bm_attention_train(x->att, x->P1, x->qkv, a->start[s], a->len[s], B, F, H, NULL);
      memcpy(x->y, x->x, row_bytes * N[s]);
      bm_linear_residual(x->y, x->att, P(K_PROJW), P(K_PROJB), N[s], F, F);            /* y = x + proj */
      bm_layernorm_train(x->ln2, x->m2, x->r2, x->y, P(K_LN2W), P(K_LN2B), N[s], F, BM_FUSION_EPS);
    }
    for (int s = 0; s < 2; s++) {
      int o = 1 - s;
      bm_fusion_stream_acts *x = &a->la[2 * l + s], *xo = &a->la[2 * l + o];
      bm_linear(x->cq, x->ln2, P(K_CQW), P(K_CQB), N[s], F, F);                         /* q from n_s */
      bm_linear(x->ckv, xo->ln2, P(K_CKVW), P(K_CKVB), N[o], F, 2 * F);                 /* kv from n_o */
      memset(x->catt, 0, row_bytes * N[s]);
      bm_xattn_train(x->catt, x->P2, x->cq, x->ckv, a->start[s], a->len[s], a->start[o], a->len[o],
                     B, F, H);
      memcpy(x->z, x->y, row_bytes * N[s]);
      bm_linear_residual(x->z, x->catt, P(K_CPROJW), P(K_CPROJB), N[s], F, F);          /* z = y + cross */
      bm_layernorm_train(x->ln3, x->m3, x->r3, x->z, P(K_LN3W), P(K_LN3B), N[s], F, BM_FUSION_EPS);
      bm_linear_gelu_train(x->pre, x->hh, x->ln3, P(K_FC1W), P(K_FC1B), N[s], F, M);
      float *next = l + 1 < L ? a->la[2 * (l + 1) + s].x : a->h[s];
      memcpy(next, x->z, row_bytes * N[s]);
      bm_linear_residual(next, x->hh, P(K_FC2W), P(K_FC2B), N[s], M, F);                /* h = z + mlp */
#undef P
    }
  }
  /* pooled_s = LNf_s(token 0 of each sequence) */
  for (int s = 0; s < 2; s++) {
    for (int b = 0; b < B; b++)
      memcpy(a->pin[s] + (size_t)b * F, a->h[s] + (size_t)a->start[s][b] * F, row_bytes);
    bm_layernorm_train(a->pooled[s], a->mf[s], a->rf[s], a->pin[s], tail(f, f->p, 2 * s),
                       tail(f, f->p, 2 * s + 1), B, F, BM_FUSION_EPS);
  }
  if (!out) return;
  for (int b = 0; b < B; b++) {
    const float *pi = a->pooled[0] + (size_t)b * F, *pt = a->pooled[1] + (size_t)b * F;
    if (c->combine == BM_FUSE_MEAN) {
      for (int j = 0; j < F; j++) out[(size_t)b * F + j] = 0.5f * (pi[j] + pt[j]);
    } else {
      memcpy(out + (size_t)b * 2 * F, pi, row_bytes);
      memcpy(out + (size_t)b * 2 * F + F, pt, row_bytes);
    }
  }
}

void bm_fusion_backward(bm_fusion *f, bm_fusion_acts *a, const float *dout, float *dxi, float *dxt) {
  const bm_fusion_cfg *c = &f->cfg;
  int F = c->F, M = c->mlp, H = c->heads, L = c->layers, B = a->B, *N = a->N, D[2] = {c->Di, c->Dt};
  if (!a->la) bm_die("fusion: backward without a forward");
  /* scratch for both attention kernels at the current thread count */
  int maxlen = 0;
  for (int s = 0; s < 2; s++)
    for (int b = 0; b < B; b++) maxlen = a->len[s][b] > maxlen ? a->len[s][b] : maxlen;
  size_t need = zmax(bm_attention_backward_scratch(maxlen),
                     bm_xattn_backward_scratch(a->len[0], a->len[1], B));
  if (need > a->cap_scratch) free(a->scratch), a->scratch = fbuf(need), a->cap_scratch = need;

  for (int b = 0; b < B; b++)
    for (int j = 0; j < F; j++) {
      if (c->combine == BM_FUSE_MEAN) {
        a->dpooled[0][(size_t)b * F + j] = a->dpooled[1][(size_t)b * F + j] = 0.5f * dout[(size_t)b * F + j];
      } else {
        a->dpooled[0][(size_t)b * F + j] = dout[(size_t)b * 2 * F + j];
        a->dpooled[1][(size_t)b * F + j] = dout[(size_t)b * 2 * F + F + j];
      }
    }
  for (int s = 0; s < 2; s++) {
    bm_layernorm_backward(a->dpin[s], tail(f, f->g, 2 * s), tail(f, f->g, 2 * s + 1), a->dpooled[s],
                          a->pin[s], a->mf[s], a->rf[s], tail(f, f->p, 2 * s), B, F, 0);
    bm_pool_token0_backward(a->d[s], a->dpin[s], a->start[s], B, N[s], F); /* d = dL/dh */
  }
  size_t row_bytes = sizeof(float) * (size_t)F;
  for (int l = L - 1; l >= 0; l--) {
#define P(k) lt(f, f->p, l, s, k)
#define G(k) lt(f, f->g, l, s, k)
    for (int s = 0; s < 2; s++) { /* MLP: d = dL/dh -> dL/dz */
      bm_fusion_stream_acts *x = &a->la[2 * l + s];
      bm_linear_backward(a->dh[s], G(K_FC2W), G(K_FC2B), a->d[s], x->hh, P(K_FC2W), N[s], M, F, 0);
      bm_gelu_backward(a->dh[s], a->dh[s], x->pre, (size_t)N[s] * M);
      bm_linear_backward(a->dln[s], G(K_FC1W), G(K_FC1B), a->dh[s], x->ln3, P(K_FC1W), N[s], F, M, 0);
      bm_layernorm_backward(a->d[s], G(K_LN3W), G(K_LN3B), a->dln[s], x->z, x->m3, x->r3, P(K_LN3W),
                            N[s], F, 1);
    }
    for (int s = 0; s < 2; s++) { /* cross-attention of s: dq of n_s, dkv of n_o */
      int o = 1 - s;
      bm_fusion_stream_acts *x = &a->la[2 * l + s];
      bm_linear_backward(a->datt[s], G(K_CPROJW), G(K_CPROJB), a->d[s], x->catt, P(K_CPROJW), N[s], F,
                         F, 0);
      /* rows in no sequence (text gaps) are not written by the kernel */
      memset(a->dcq[s], 0, row_bytes * N[s]);
      memset(a->dckv[s], 0, 2 * row_bytes * N[o]);
      bm_xattn_backward(a->dcq[s], a->dckv[s], a->datt[s], x->cq, x->ckv, x->P2, a->start[s],
                        a->len[s], a->start[o], a->len[o], B, F, H, a->scratch);
    }
    for (int s = 0; s < 2; s++) { /* n_s feeds s's queries and o's keys/values: d += LN2'(dn) */
      int o = 1 - s;
      bm_fusion_stream_acts *x = &a->la[2 * l + s];
      bm_linear_backward(a->dln[s], G(K_CQW), G(K_CQB), a->dcq[s], x->ln2, P(K_CQW), N[s], F, F, 0);
      bm_linear_backward(a->dln[s], lt(f, f->g, l, o, K_CKVW), lt(f, f->g, l, o, K_CKVB), a->dckv[o],
                         x->ln2, lt(f, f->p, l, o, K_CKVW), N[s], F, 2 * F, 1);
      bm_layernorm_backward(a->d[s], G(K_LN2W), G(K_LN2B), a->dln[s], x->y, x->m2, x->r2, P(K_LN2W),
                            N[s], F, 1);
    }
    for (int s = 0; s < 2; s++) { /* self-attention: d = dL/dy -> dL/dx */
      bm_fusion_stream_acts *x = &a->la[2 * l + s];
      bm_linear_backward(a->datt[s], G(K_PROJW), G(K_PROJB), a->d[s], x->att, P(K_PROJW), N[s], F, F, 0);
      memset(a->dqkv[s], 0, 3 * row_bytes * N[s]);
      bm_attention_backward(a->dqkv[s], a->datt[s], x->qkv, x->P1, a->start[s], a->len[s], B, F, H,
                            a->scratch);
      bm_linear_backward(a->dln[s], G(K_QKVW), G(K_QKVB), a->dqkv[s], x->ln1, P(K_QKVW), N[s], F,
                         3 * F, 0);
      bm_layernorm_backward(a->d[s], G(K_LN1W), G(K_LN1B), a->dln[s], x->x, x->m1, x->r1, P(K_LN1W),
                            N[s], F, 1);
    }
#undef P
#undef G
  }
  float *dx[2] = {dxi, dxt};
  for (int s = 0; s < 2; s++)
    bm_linear_backward(dx[s], f->g + f->t[2 * s].off, f->g + f->t[2 * s + 1].off, a->d[s], a->in[s],
                       f->p + f->t[2 * s].off, N[s], D[s], F, 0);
}
