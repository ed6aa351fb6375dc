/* test_block_grad.c - the backward functions composed into one ViT pre-norm
 * block and one BERT post-norm layer, against PyTorch's autograd
 * (tests/fixtures/backward.bmr from tests/ref/make_backward_fixture.py):
 * the output, the input gradient and every parameter gradient within 1e-4
 * of the largest value of each tensor. The BERT layer runs twice: packed
 * (only the real tokens, as the text tower computes) and padded with a key
 * mask (every row, as HuggingFace computes). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "check.h"
#include "kernels.h"
#include "record.h"
#include "util.h"

#define TOL 1e-4

static float *get(const msgpack_object *rec, const char *key, size_t *numel) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1) bm_die("backward.bmr lacks %s %s", key, err);
  float *v = bm_xmalloc(bm_mul_size((size_t)t.numel + 1, sizeof(float)));
  bm_tensor_to_f32(&t, v);
  if (numel) *numel = (size_t)t.numel;
  return v;
}

static float *poisoned(size_t n) {
  float *p = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  for (size_t i = 0; i < n; i++) p[i] = NAN;
  return p;
}

/* Largest |a - b| relative to max(max |b|, floor). */
static double rel_err_floor(const float *a, const float *b, size_t n, double floor) {
  double scale = floor, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isnan(a[i]) ? INFINITY : fabs(a[i] - b[i]));
  return err / (scale > 0 ? scale : 1);
}

static double rel_err(const float *a, const float *b, size_t n) { return rel_err_floor(a, b, n, 0); }

static double max_abs(const float *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
  return m;
}

/* A parameter: its values, our gradient (zeroed) and torch's; floor: the
 * smallest scale its error is measured against (see bert_case). */
typedef struct {
  const char *name;
  float *w, *g, *want;
  size_t n;
  double floor;
} param;

static void param_load(param *p, const msgpack_object *rec, const char *name) {
  char key[256];
  snprintf(key, sizeof key, "d%s", name);
  p->name = name;
  p->w = get(rec, name, &p->n);
  p->want = get(rec, key, NULL);
  p->g = bm_xcalloc(p->n, sizeof(float));
  p->floor = 0;
}

static void param_free(param *p) { free(p->w), free(p->g), free(p->want); }

/* Worst relative error over the parameter gradients; names the worst. */
static double params_err(const param *p, int n, const char **worst) {
  double e = 0;
  *worst = "-";
  for (int i = 0; i < n; i++) {
    double r = rel_err_floor(p[i].g, p[i].want, p[i].n, p[i].floor);
    if (r >= e) e = r, *worst = p[i].name;
  }
  return e;
}

/* ---- ViT pre-norm block: x1 = x + proj(attn(ln1(x))); y = x1 + fc2(gelu(fc1(ln2(x1)))) ---- */
enum { V_N1W, V_N1B, V_QKVW, V_QKVB, V_PW, V_PB, V_N2W, V_N2B, V_F1W, V_F1B, V_F2W, V_F2B, V_NP };
static const char *vit_names[V_NP] = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                      "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                      "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};

static void vit_case(const msgpack_object *rec) {
  bm_tensor xt;
  char err[256];
  if (bm_rec_tensor(rec, "x", &xt, err, sizeof err) != 1 || xt.ndim != 3) bm_die("vit_block x: %s", err);
  int B = (int)xt.shape[0], T = (int)xt.shape[1], C = (int)xt.shape[2], heads = 3;
  param p[V_NP];
  for (int i = 0; i < V_NP; i++) param_load(&p[i], rec, vit_names[i]);
  int M = (int)p[V_F1B].n, N = B * T;
  size_t nc = (size_t)N * C;
  float *x = get(rec, "x", NULL), *dy = get(rec, "dy", NULL), *want_out = get(rec, "out", NULL);
  float *want_dx = get(rec, "dx", NULL);
  int *start = bm_xmalloc(sizeof(int) * (size_t)B), *len = bm_xmalloc(sizeof(int) * (size_t)B);
  for (int b = 0; b < B; b++) start[b] = b * T, len[b] = T;

  /* training forward, keeping what the backward reads */
  float *ln1 = poisoned(nc), *m1 = poisoned((size_t)N), *r1 = poisoned((size_t)N);
  float *qkv = poisoned(nc * 3), *att = poisoned(nc), *P = poisoned(bm_attention_probs_size(len, B, heads));
  float *x1 = poisoned(nc), *ln2 = poisoned(nc), *m2 = poisoned((size_t)N), *r2 = poisoned((size_t)N);
  float *pre = poisoned((size_t)N * M), *h = poisoned((size_t)N * M), *out = poisoned(nc);
  bm_layernorm_train(ln1, m1, r1, x, p[V_N1W].w, p[V_N1B].w, N, C, 1e-6f);
  bm_linear(qkv, ln1, p[V_QKVW].w, p[V_QKVB].w, N, C, 3 * C);
  bm_attention_train(att, P, qkv, start, len, B, C, heads, NULL);
  memcpy(x1, x, nc * sizeof(float));
  bm_linear_residual(x1, att, p[V_PW].w, p[V_PB].w, N, C, C);
  bm_layernorm_train(ln2, m2, r2, x1, p[V_N2W].w, p[V_N2B].w, N, C, 1e-6f);
  bm_linear_gelu_train(pre, h, ln2, p[V_F1W].w, p[V_F1B].w, N, C, M);
  memcpy(out, x1, nc * sizeof(float));
  bm_linear_residual(out, h, p[V_F2W].w, p[V_F2B].w, N, M, C);
  double eo = rel_err(out, want_out, nc);

  /* backward: d is the residual stream's gradient throughout */
  float *d = bm_xmalloc(nc * sizeof(float)), *dh = poisoned((size_t)N * M), *dln = poisoned(nc);
  float *datt = poisoned(nc), *dqkv = poisoned(nc * 3), *scratch = poisoned(bm_attention_backward_scratch(T));
  memcpy(d, dy, nc * sizeof(float));
  bm_linear_backward(dh, p[V_F2W].g, p[V_F2B].g, d, h, p[V_F2W].w, N, M, C, 0);
  bm_gelu_backward(dh, dh, pre, (size_t)N * M);
  bm_linear_backward(dln, p[V_F1W].g, p[V_F1B].g, dh, ln2, p[V_F1W].w, N, C, M, 0);
  bm_layernorm_backward(d, p[V_N2W].g, p[V_N2B].g, dln, x1, m2, r2, p[V_N2W].w, N, C, 1);
  bm_linear_backward(datt, p[V_PW].g, p[V_PB].g, d, att, p[V_PW].w, N, C, C, 0);
  bm_attention_backward(dqkv, datt, qkv, P, start, len, B, C, heads, scratch);
  bm_linear_backward(dln, p[V_QKVW].g, p[V_QKVB].g, dqkv, ln1, p[V_QKVW].w, N, C, 3 * C, 0);
  bm_layernorm_backward(d, p[V_N1W].g, p[V_N1B].g, dln, x, m1, r1, p[V_N1W].w, N, C, 1);
  double edx = rel_err(d, want_dx, nc);
  const char *worst;
  double ep = params_err(p, V_NP, &worst);
  CHECK(eo < TOL, "ViT block (timm, eps 1e-6) %d x %d tokens: output equals torch (rel %.2g)", B, T, eo);
  CHECK(edx < TOL, "ViT block: input gradient equals torch (rel %.2g)", edx);
  CHECK(ep < TOL, "ViT block: all 12 parameter gradients equal torch (worst rel %.2g in %s)", ep, worst);

  for (int i = 0; i < V_NP; i++) param_free(&p[i]);
  free(x), free(dy), free(want_out), free(want_dx), free(start), free(len);
  free(ln1), free(m1), free(r1), free(qkv), free(att), free(P), free(x1), free(ln2), free(m2), free(r2);
  free(pre), free(h), free(out), free(d), free(dh), free(dln), free(datt), free(dqkv), free(scratch);
}

/* ---- BERT post-norm layer: a = LN1(x + O(attn(x))); y = LN2(a + fc2(gelu(fc1(a)))) ---- */
enum { B_QW, B_QB, B_KW, B_KB, B_VW, B_VB, B_OW, B_OB, B_L1W, B_L1B, B_F1W, B_F1B, B_F2W, B_F2B,
       B_L2W, B_L2B, B_NP };
static const char *bert_names[B_NP] = {
    "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
    "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
    "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};

/* One run over N rows in nseq sequences; x, dy [N,C] in; out, dx [N,C] and
 * the parameter gradients (zeroed first) out. */
static void bert_run(param *p, int C, int M, int heads, int N, const int *start, const int *len,
                     int nseq, const uint8_t *keep, const float *x, const float *dy, float *out,
                     float *dx) {
  size_t nc = (size_t)N * C;
  for (int i = 0; i < B_NP; i++) memset(p[i].g, 0, p[i].n * sizeof(float));
  /* q, k, v weights stacked into one [3C, C] linear, as the tower loads them */
  float *Wqkv = bm_xmalloc(sizeof(float) * 3 * (size_t)C * C), *bqkv = bm_xmalloc(sizeof(float) * 3 * (size_t)C);
  float *dWqkv = bm_xcalloc(3 * (size_t)C * C, sizeof(float)), *dbqkv = bm_xcalloc(3 * (size_t)C, sizeof(float));
  for (int k = 0; k < 3; k++) {
    memcpy(Wqkv + (size_t)k * C * C, p[B_QW + 2 * k].w, sizeof(float) * (size_t)C * C);
    memcpy(bqkv + (size_t)k * C, p[B_QB + 2 * k].w, sizeof(float) * (size_t)C);
  }
  int maxlen = 0;
  for (int s = 0; s < nseq; s++) maxlen = len[s] > maxlen ? len[s] : maxlen;

  float *qkv = poisoned(nc * 3), *att = poisoned(nc), *P = poisoned(bm_attention_probs_size(len, nseq, heads));
  float *r1 = poisoned(nc), *a = poisoned(nc), *m1 = poisoned((size_t)N), *s1 = poisoned((size_t)N);
  float *pre = poisoned((size_t)N * M), *h = poisoned((size_t)N * M), *r2 = poisoned(nc);
  float *m2 = poisoned((size_t)N), *s2 = poisoned((size_t)N);
  bm_linear(qkv, x, Wqkv, bqkv, N, C, 3 * C);
  bm_attention_train(att, P, qkv, start, len, nseq, C, heads, keep);
  memcpy(r1, x, nc * sizeof(float));
  bm_linear_residual(r1, att, p[B_OW].w, p[B_OB].w, N, C, C);
  bm_layernorm_train(a, m1, s1, r1, p[B_L1W].w, p[B_L1B].w, N, C, 1e-12f);
  bm_linear_gelu_train(pre, h, a, p[B_F1W].w, p[B_F1B].w, N, C, M);
  memcpy(r2, a, nc * sizeof(float));
  bm_linear_residual(r2, h, p[B_F2W].w, p[B_F2B].w, N, M, C);
  bm_layernorm_train(out, m2, s2, r2, p[B_L2W].w, p[B_L2B].w, N, C, 1e-12f);

  float *dr = poisoned(nc), *dh = poisoned((size_t)N * M), *da = poisoned(nc), *datt = poisoned(nc);
  float *dqkv = poisoned(nc * 3), *scratch = poisoned(bm_attention_backward_scratch(maxlen));
  bm_layernorm_backward(dr, p[B_L2W].g, p[B_L2B].g, dy, r2, m2, s2, p[B_L2W].w, N, C, 0);
  bm_linear_backward(dh, p[B_F2W].g, p[B_F2B].g, dr, h, p[B_F2W].w, N, M, C, 0);
  bm_gelu_backward(dh, dh, pre, (size_t)N * M);
  memcpy(da, dr, nc * sizeof(float)); /* the residual around the MLP */
  bm_linear_backward(da, p[B_F1W].g, p[B_F1B].g, dh, a, p[B_F1W].w, N, C, M, 1);
  bm_layernorm_backward(dr, p[B_L1W].g, p[B_L1B].g, da, r1, m1, s1, p[B_L1W].w, N, C, 0);
  bm_linear_backward(datt, p[B_OW].g, p[B_OB].g, dr, att, p[B_OW].w, N, C, C, 0);
  bm_attention_backward(dqkv, datt, qkv, P, start, len, nseq, C, heads, scratch);
  memcpy(dx, dr, nc * sizeof(float)); /* the residual around the attention */
  bm_linear_backward(dx, dWqkv, dbqkv, dqkv, x, Wqkv, N, C, 3 * C, 1);
  for (int k = 0; k < 3; k++) {
    memcpy(p[B_QW + 2 * k].g, dWqkv + (size_t)k * C * C, sizeof(float) * (size_t)C * C);
    memcpy(p[B_QB + 2 * k].g, dbqkv + (size_t)k * C, sizeof(float) * (size_t)C);
  }
  free(Wqkv), free(bqkv), free(dWqkv), free(dbqkv), free(qkv), free(att), free(P), free(r1), free(a);
  free(m1), free(s1), free(pre), free(h), free(r2), free(m2), free(s2), free(dr), free(dh), free(da);
  free(datt), free(dqkv), free(scratch);
}

static void bert_case(const msgpack_object *rec) {
  bm_tensor xt;
  char err[256];
  if (bm_rec_tensor(rec, "x", &xt, err, sizeof err) != 1 || xt.ndim != 3) bm_die("bert_layer x: %s", err);
  int B = (int)xt.shape[0], L = (int)xt.shape[1], C = (int)xt.shape[2], heads = 3;
  param p[B_NP];
  for (int i = 0; i < B_NP; i++) param_load(&p[i], rec, bert_names[i]);
  int M = (int)p[B_F1B].n;
  /* The key bias shifts every score of a query row by the same q.b, which
   * the softmax ignores: its gradient is zero but for rounding (torch's is
   * 5e-7), so it is measured against the key weight gradient's scale. */
  p[B_KB].floor = max_abs(p[B_KW].want, p[B_KW].n);
  size_t nc = (size_t)B * L * C, nmask;
  float *x = get(rec, "x", NULL), *dy = get(rec, "dy", NULL), *want_out = get(rec, "out", NULL);
  float *want_dx = get(rec, "dx", NULL), *maskf = get(rec, "mask", &nmask), *lenf = get(rec, "len", NULL);
  uint8_t *keep = bm_xmalloc(nmask);
  for (size_t i = 0; i < nmask; i++) keep[i] = maskf[i] != 0.0f;
  int *start = bm_xmalloc(sizeof(int) * (size_t)B), *len = bm_xmalloc(sizeof(int) * (size_t)B);
  const char *worst;

  /* padded: every row, padding keys masked */
  for (int b = 0; b < B; b++) start[b] = b * L, len[b] = L;
  float *out = poisoned(nc), *dx = poisoned(nc);
  bert_run(p, C, M, heads, B * L, start, len, B, keep, x, dy, out, dx);
  double eo = rel_err(out, want_out, nc), edx = rel_err(dx, want_dx, nc), ep = params_err(p, B_NP, &worst);
  CHECK(eo < TOL && edx < TOL, "BERT layer (eps 1e-12) padded to %d with key mask: output and input gradient equal torch (rel %.2g, %.2g)",
        L, eo, edx);
  CHECK(ep < TOL, "BERT layer padded: all 16 parameter gradients equal torch (worst rel %.2g in %s)", ep, worst);
  double kb = max_abs(p[B_KB].g, p[B_KB].n) / p[B_KB].floor;
  CHECK(kb < 1e-5, "BERT layer: the key bias gradient is zero up to rounding (%.2g of the key weight's)", kb);

  /* packed: the real tokens only, no mask; torch's dy is zero on padding */
  int N = 0;
  for (int b = 0; b < B; b++) start[b] = N, len[b] = (int)lenf[b], N += len[b];
  float *px = poisoned((size_t)N * C), *pdy = poisoned((size_t)N * C), *pout = poisoned((size_t)N * C);
  float *pdx = poisoned((size_t)N * C), *wout = poisoned((size_t)N * C), *wdx = poisoned((size_t)N * C);
  size_t row = sizeof(float) * (size_t)C;
  for (int b = 0; b < B; b++)
    for (int i = 0; i < len[b]; i++) {
      size_t src = ((size_t)b * L + i) * C, dst = ((size_t)start[b] + i) * C;
      memcpy(px + dst, x + src, row), memcpy(pdy + dst, dy + src, row);
      memcpy(wout + dst, want_out + src, row), memcpy(wdx + dst, want_dx + src, row);
    }
  bert_run(p, C, M, heads, N, start, len, B, NULL, px, pdy, pout, pdx);
  eo = rel_err(pout, wout, (size_t)N * C), edx = rel_err(pdx, wdx, (size_t)N * C), ep = params_err(p, B_NP, &worst);
  CHECK(eo < TOL && edx < TOL, "BERT layer packed (%d, %d, %d tokens): output and input gradient equal torch (rel %.2g, %.2g)",
        len[0], len[1], len[2], eo, edx);
  CHECK(ep < TOL, "BERT layer packed: all 16 parameter gradients equal torch (worst rel %.2g in %s)", ep, worst);

  for (int i = 0; i < B_NP; i++) param_free(&p[i]);
  free(x), free(dy), free(want_out), free(want_dx), free(maskf), free(lenf), free(keep), free(start);
  free(len), free(out), free(dx), free(px), free(pdy), free(pout), free(pdx), free(wout), free(wdx);
}

int main(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096];
  snprintf(path, sizeof path, "%s/fixtures/backward.bmr", dir ? dir : "tests");
  bm_set_threads(2);
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *rec;
  int cases = 0;
  while (bm_reader_next(r, &rec) == 1) {
    cases++;
    if (bm_obj_is_str(bm_map_get(rec, "case"), "vit_block")) vit_case(rec);
    else if (bm_obj_is_str(bm_map_get(rec, "case"), "bert_layer")) bert_case(rec);
  }
  CHECK(cases == 2 && !bm_reader_error(r), "both reference cases read (%d)", cases);
  bm_reader_close(r);
  CHECK_DONE();
}
