/* test_bert_train.c - the text tower's training forward and backward
 * (bert_train.h) with learned prompt vectors:
 *   - the training forward gives bm_bert_forward(_ctx)'s bits, for every
 *     freezing, with and without checkpointing;
 *   - PyTorch (tests/fixtures/bert_train.bmr from
 *     tests/ref/make_bert_train_fixture.py): emb, tokens, the gradient of
 *     every parameter and of ctx;
 *   - finite differences of loss = sum(emb*R1) + sum(tokens*R2) on every
 *     tensor and on ctx, texts of different lengths, unlock all / 1 / frozen;
 *   - checkpointed gradients equal the plain ones bit for bit, with fewer
 *     activation bytes; the same bits on a second run and, for the forward,
 *     on 1 and 2 threads (the gradients on 1 vs 2 threads are printed, not
 *     checked: backward.h promises thread-independent GEMM sums only per
 *     thread count). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "bert_train.h"
#include "check.h"
#include "kernels.h"
#include "model.h"
#include "record.h"
#include "util.h"

static float *get(const msgpack_object *rec, const char *key, size_t *numel) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1) return NULL;
  float *v = bm_xmalloc(bm_mul_size((size_t)t.numel + 1, sizeof(float)));
  bm_tensor_to_f32(&t, v);
  if (numel) *numel = (size_t)t.numel;
  return v;
}

static int *get_int(const msgpack_object *rec, const char *key, size_t *numel) {
  float *f = get(rec, key, numel);
  if (!f) return NULL;
  int *v = bm_xmalloc(sizeof(int) * (*numel + 1));
  for (size_t i = 0; i < *numel; i++) v[i] = (int)f[i];
  free(f);
  return v;
}

/* largest |a-b| over the scale max(largest |b|, floor) */
static double rel_err(const float *a, const float *b, size_t n, double floor) {
  double scale = floor, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isnan(a[i]) ? INFINITY : fabs(a[i] - b[i]));
  return err / scale;
}

static float *randn(bm_rng *r, size_t n, float sd) {
  float *v = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  for (size_t i = 0; i < n; i++) {
    double u = bm_rng_uniform(r) + 1e-12, w = bm_rng_uniform(r);
    v[i] = (float)(sd * sqrt(-2 * log(u)) * cos(6.283185307179586 * w));
  }
  return v;
}

static void poison(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* A batch of texts: ids packed, prompt vectors among them. */
typedef struct {
  int nseq, N, nctx, W, E;
  int32_t *ids;
  int *start, *len;
  float *ctx, *R1, *R2;
} batch;

static void batch_free(batch *b) {
  free(b->ids), free(b->start), free(b->len), free(b->ctx), free(b->R1), free(b->R2);
}

/* texts of lengths lens[]: [CLS] then prompts and words at random (the
 * first text with prompt vectors right after [CLS], as CoOp), then [SEP] */
static batch make_batch(const bm_bert *m, bm_rng *r, const int *lens, int nseq, int nctx) {
  batch b = {.nseq = nseq, .nctx = nctx, .W = m->width, .E = m->embed_dim};
  b.start = bm_xmalloc(sizeof(int) * (size_t)nseq), b.len = bm_xmalloc(sizeof(int) * (size_t)nseq);
  for (int s = 0; s < nseq; s++) b.start[s] = b.N, b.len[s] = lens[s], b.N += lens[s];
  b.ids = bm_xmalloc(sizeof(int32_t) * (size_t)b.N);
  for (int s = 0; s < nseq; s++)
    for (int i = 0; i < lens[s]; i++) {
      int32_t id = 6 + (int32_t)(bm_rng_next(r) % (uint64_t)(m->vocab - 6));
      if (nctx && s == 0 && i >= 1 && i <= nctx) id = -i;
      else if (nctx && bm_rng_uniform(r) < 0.3) id = -1 - (int32_t)(bm_rng_next(r) % (uint64_t)nctx);
      b.ids[b.start[s] + i] = i == 0 ? 3 : i == lens[s] - 1 ? 4 : id;
    }
  b.ctx = nctx ? randn(r, (size_t)nctx * b.W, 0.7f) : NULL;
  b.R1 = randn(r, (size_t)nseq * b.E, 1), b.R2 = randn(r, (size_t)b.N * b.W, 1);
  return b;
}

static double loss_of(const batch *b, const float *emb, const float *tok) {
  double l = 0;
  for (size_t i = 0; i < (size_t)b->nseq * b->E; i++) l += (double)emb[i] * b->R1[i];
  for (size_t i = 0; i < (size_t)b->N * b->W; i++) l += (double)tok[i] * b->R2[i];
  return l;
}

static double loss_at(bm_bert_train *bt, bm_bt_acts *a, const batch *b, float *emb, float *tok) {
  bm_bert_train_forward(bt, a, b->ids, b->start, b->len, b->nseq, b->ctx, emb, tok);
  return loss_of(b, emb, tok);
}

/* forward + backward of the batch's loss: gradients zeroed first; dctx
 * (may be NULL) written */
static void grads(bm_bert_train *bt, bm_bt_acts *a, const batch *b, float *emb, float *tok, float *dctx) {
  bm_bert_train_zero_grad(bt);
  if (dctx) memset(dctx, 0, sizeof(float) * (size_t)b->nctx * b->W);
  bm_bert_train_forward(bt, a, b->ids, b->start, b->len, b->nseq, b->ctx, emb, tok);
  bm_bert_train_backward(bt, a, b->R1, b->R2, dctx);
}

static void torch_case(const bm_model *mod, const msgpack_object *rec) {
  const bm_bert *m = &mod->bert;
  size_t n, nseq, nl, nctx, nR1, nR2;
  int *ids = get_int(rec, "ids", &n), *start = get_int(rec, "start", &nseq), *len = get_int(rec, "len", &nl);
  float *ctx = get(rec, "ctx", &nctx), *R1 = get(rec, "R1", &nR1), *R2 = get(rec, "R2", &nR2);
  float *wemb = get(rec, "emb", NULL), *wtok = get(rec, "tokens", NULL), *wdctx = get(rec, "dctx", NULL);
  if (!ids || !start || !len || !ctx || !R1 || !R2 || !wemb || !wtok || !wdctx || nseq != nl)
    bm_die("bert_train.bmr: a key is missing");
  int S = (int)nseq, N = (int)n, W = m->width, E = m->embed_dim;
  int32_t *id32 = bm_xmalloc(sizeof(int32_t) * n);
  for (size_t i = 0; i < n; i++) id32[i] = ids[i];
  bm_bert_train bt;
  bm_bt_acts a = {0};
  bm_bert_train_init(&bt, m, -1, 0);
  float *emb = bm_xmalloc(sizeof(float) * (size_t)S * E), *tok = bm_xmalloc(sizeof(float) * n * W);
  float *dctx = bm_xmalloc(sizeof(float) * nctx);
  poison(emb, (size_t)S * E), poison(tok, n * W), memset(dctx, 0, sizeof(float) * nctx);
  bm_bert_train_forward(&bt, &a, id32, start, len, S, ctx, emb, tok);
  double ee = rel_err(emb, wemb, (size_t)S * E, 0), te = rel_err(tok, wtok, n * W, 0);
  CHECK(ee < 1e-5 && te < 1e-5, "PyTorch: emb and tokens of %d texts (%d tokens, prompt vectors among them) (rel %.2g, %.2g)",
        S, N, ee, te);
  bm_bert_train_backward(&bt, &a, R1, R2, dctx);
  /* a gradient that is zero in exact arithmetic (the key bias: softmax is
   * shift invariant) is float noise in both: measure against a floor of
   * 1e-3 of the largest gradient */
  double gmax = 0;
  for (int i = 0; i < bt.nt; i++) {
    char key[128];
    snprintf(key, sizeof key, "d%s", bt.t[i].name);
    size_t k;
    float *w = get(rec, key, &k);
    for (size_t j = 0; w && j < k; j++) gmax = fmax(gmax, fabs(w[j]));
    free(w);
  }
  double worst = 0, worst_nk = 0; /* all, all but the key biases */
  char wname[96] = "";
  int ncmp = 0;
  for (int i = 0; i < bt.nt; i++) {
    char key[128];
    snprintf(key, sizeof key, "d%s", bt.t[i].name);
    size_t k = 0;
    float *w = get(rec, key, &k);
    const float *g = bm_bert_train_grad(&bt, i);
    double r = w && g && k == bt.t[i].n ? rel_err(g, w, k, 1e-3 * gmax) : INFINITY;
    if (r > worst || isnan(r)) worst = isnan(r) ? INFINITY : r, snprintf(wname, sizeof wname, "%s", bt.t[i].name);
    if (!strstr(bt.t[i].name, "key.bias")) worst_nk = fmax(worst_nk, isnan(r) ? INFINITY : r);
    ncmp++;
    free(w);
  }
  CHECK(ncmp == bt.nt && worst < 1e-4, "PyTorch: the gradients of all %d tensors (worst rel %.2g, %s)", ncmp, worst,
        wname);
  double ce = rel_err(dctx, wdctx, nctx, 0);
  CHECK(ce < 1e-4, "PyTorch: the prompt vectors' gradient (rel %.2g)", ce);
  printf("# PyTorch parity: emb %.2g tokens %.2g, gradients worst %.2g (%s; %.2g without the key biases), dctx %.2g\n",
         ee, te, worst, wname, worst_nk, ce);
  bm_bt_acts_free(&a);
  bm_bert_train_free(&bt);
  free(ids), free(start), free(len), free(ctx), free(R1), free(R2), free(wemb), free(wtok), free(wdctx);
  free(id32), free(emb), free(tok), free(dctx);
}

/* emb and tokens of the training forward equal bm_bert_forward(_ctx)'s bits */
static void bits_case(const bm_bert *m, bm_rng *r) {
  static const int lens[] = {12, 6, 5, 9}, lens0[] = {7, 3};
  batch b = make_batch(m, r, lens, 4, 4), b0 = make_batch(m, r, lens0, 2, 0);
  size_t nE = (size_t)b.nseq * b.E, nT = (size_t)b.N * b.W, nE0 = (size_t)b0.nseq * b0.E, nT0 = (size_t)b0.N * b0.W;
  float *e = bm_xmalloc(nE * 4), *t = bm_xmalloc(nT * 4), *e0 = bm_xmalloc(nE0 * 4), *t0 = bm_xmalloc(nT0 * 4);
  float *ea = bm_xmalloc(nE * 4), *ta = bm_xmalloc(nT * 4);
  bm_bert_acts ia = {0};
  poison(e, nE), poison(t, nT), poison(e0, nE0), poison(t0, nT0);
  bm_bert_forward_ctx(m, &ia, b.ids, b.start, b.len, b.nseq, b.ctx, e, t);
  bm_bert_forward(m, &ia, b0.ids, b0.start, b0.len, b0.nseq, e0, t0);
  int finite = 1;
  for (size_t i = 0; i < nT; i++) finite &= isfinite(t[i]);
  CHECK(finite, "bm_bert_forward_ctx: finite tokens");
  static const struct { int unlock, frozen, ck; } cf[] = {{-1, 0, 0}, {1, 0, 0}, {0, 0, 0}, {-1, 1, 0}, {-1, 0, 1}, {1, 0, 1}};
  for (size_t c = 0; c < sizeof cf / sizeof cf[0]; c++) {
    bm_bert_train bt;
    bm_bt_acts a = {0};
    bm_bert_train_init(&bt, m, cf[c].unlock, cf[c].frozen);
    bt.checkpoint = cf[c].ck;
    int same = 1;
    /* a small batch first, then a bigger one: the buffers grow */
    poison(ea, nE), poison(ta, nT);
    bm_bert_train_forward(&bt, &a, b0.ids, b0.start, b0.len, b0.nseq, NULL, ea, ta);
    same &= !memcmp(ea, e0, nE0 * 4) && !memcmp(ta, t0, nT0 * 4);
    poison(ea, nE), poison(ta, nT);
    bm_bert_train_forward(&bt, &a, b.ids, b.start, b.len, b.nseq, b.ctx, ea, ta);
    same &= !memcmp(ea, e, nE * 4) && !memcmp(ta, t, nT * 4);
    poison(ea, nE), poison(ta, nT);
    bm_bert_train_forward(&bt, &a, b0.ids, b0.start, b0.len, b0.nseq, NULL, ea, NULL);
    same &= !memcmp(ea, e0, nE0 * 4);
    /* the inference forward on the trainable copy's views */
    bm_bert_forward_ctx(&bt.m, &ia, b.ids, b.start, b.len, b.nseq, b.ctx, ea, ta);
    same &= !memcmp(ea, e, nE * 4) && !memcmp(ta, t, nT * 4);
    CHECK(same, "unlock %d%s%s: the training forward gives bm_bert_forward(_ctx)'s bits, with and without prompts",
          cf[c].unlock, cf[c].frozen ? " frozen" : "", cf[c].ck ? " checkpointed" : "");
    bm_bt_acts_free(&a);
    bm_bert_train_free(&bt);
  }
  { /* 1 thread and 2 threads */
    bm_bert_train bt;
    bm_bt_acts a = {0};
    bm_bert_train_init(&bt, m, -1, 0);
    bm_set_threads(1);
    bm_bert_train_forward(&bt, &a, b.ids, b.start, b.len, b.nseq, b.ctx, ea, ta);
    bm_set_threads(2);
    CHECK(!memcmp(ea, e, nE * 4) && !memcmp(ta, t, nT * 4), "the forward gives the same bits on 1 and 2 threads");
    bm_bt_acts_free(&a);
    bm_bert_train_free(&bt);
  }
  bm_bert_acts_free(&ia);
  batch_free(&b), batch_free(&b0);
  free(e), free(t), free(e0), free(t0), free(ea), free(ta);
}

/* finite differences of the loss: the element of largest gradient of every
 * tensor that trains, and of every prompt vector */
static double fd_worst(bm_bert_train *bt, bm_bt_acts *a, batch *b, const float *dctx, int *nfd) {
  size_t nE = (size_t)b->nseq * b->E, nT = (size_t)b->N * b->W;
  float *e = bm_xmalloc(nE * 4), *t = bm_xmalloc(nT * 4);
  double worst = 0;
  int nt = bt->nt + (dctx ? b->nctx : 0);
  for (int i = 0; i < nt; i++) {
    const float *g;
    float *p;
    size_t n;
    if (i < bt->nt) {
      if (!(g = bm_bert_train_grad(bt, i))) continue;
      p = bt->p + bt->t[i].off, n = bt->t[i].n;
    } else {
      int k = i - bt->nt;
      g = dctx + (size_t)k * b->W, p = b->ctx + (size_t)k * b->W, n = (size_t)b->W;
    }
    size_t j = 0;
    for (size_t q = 1; q < n; q++)
      if (fabsf(g[q]) > fabsf(g[j])) j = q;
    float keep = p[j], h = 1e-2f;
    p[j] = keep + h;
    double lp = loss_at(bt, a, b, e, t);
    p[j] = keep - h;
    double lm = loss_at(bt, a, b, e, t);
    p[j] = keep;
    double fd = (lp - lm) / (2.0 * (double)h), r = fabs(fd - g[j]) / fmax(fabs(g[j]), 1e-1);
    worst = r <= worst ? worst : isnan(r) ? INFINITY : r;
    ++*nfd;
  }
  free(e), free(t);
  return worst;
}

static int bits_eq(const float *a, const float *b, size_t n) { return a && b && !memcmp(a, b, n * sizeof(float)); }

static void grad_case(const bm_bert *m, bm_rng *r) {
  static const int lens[] = {11, 4, 8};
  batch b = make_batch(m, r, lens, 3, 3);
  size_t nE = (size_t)b.nseq * b.E, nT = (size_t)b.N * b.W, nC = (size_t)b.nctx * b.W;
  float *e = bm_xmalloc(nE * 4), *t = bm_xmalloc(nT * 4), *e2 = bm_xmalloc(nE * 4), *t2 = bm_xmalloc(nT * 4);
  float *dA = bm_xmalloc(nC * 4), *dc = bm_xmalloc(nC * 4);
  int D = m->depth;

  /* A: everything trains */
  bm_bert_train A;
  bm_bt_acts aA = {0};
  bm_bert_train_init(&A, m, -1, 0);
  grads(&A, &aA, &b, e, t, dA);
  int nfd = 0;
  double w = fd_worst(&A, &aA, &b, dA, &nfd);
  CHECK(nfd == A.nt + b.nctx && w < 2e-2, "unlock all: finite differences on %d tensors and %d prompt vectors (worst rel %.2g)",
        A.nt, b.nctx, w);
  printf("# finite differences, unlock all: worst rel %.2g over %d\n", w, nfd);
  size_t ng = A.np - A.goff;
  float *gA = bm_xmalloc(ng * 4);
  memcpy(gA, A.g, ng * 4);
  /* the same run again: the same bits */
  grads(&A, &aA, &b, e2, t2, dc);
  CHECK(bits_eq(A.g, gA, ng) && bits_eq(dc, dA, nC), "unlock all: a second run gives the same gradient bits");
  bm_set_threads(1);
  grads(&A, &aA, &b, e2, t2, dc);
  bm_set_threads(2);
  printf("# gradients on 1 thread %s those on 2 bit for bit\n", bits_eq(A.g, gA, ng) && bits_eq(dc, dA, nC) ? "equal" : "differ from");
  /* gradients accumulate: two backwards of one forward give twice (to
   * rounding: a GEMM with beta = 1 adds its partial sums onto what is there) */
  bm_bert_train_backward(&A, &aA, b.R1, b.R2, dc);
  float *g2 = bm_xmalloc(ng * 4), *c2 = bm_xmalloc(nC * 4);
  for (size_t i = 0; i < ng; i++) g2[i] = 2 * gA[i];
  for (size_t i = 0; i < nC; i++) c2[i] = 2 * dA[i];
  double ae = rel_err(A.g, g2, ng, 0), ce = rel_err(dc, c2, nC, 0);
  CHECK(ae < 1e-5 && ce < 1e-5, "parameter and prompt gradients accumulate over backwards (rel %.2g, %.2g)", ae, ce);
  free(g2), free(c2);

  { /* checkpointing: the same bits, fewer bytes */
    bm_bert_train C;
    bm_bt_acts aC = {0};
    bm_bert_train_init(&C, m, -1, 0);
    C.checkpoint = 1;
    grads(&C, &aC, &b, e2, t2, dc);
    CHECK(bits_eq(e2, e, nE) && bits_eq(t2, t, nT) && bits_eq(C.g, gA, ng) && bits_eq(dc, dA, nC),
          "checkpointed: the same emb, tokens, parameter and prompt gradients bit for bit");
    size_t pb = bm_bt_acts_bytes(&aA), cb = bm_bt_acts_bytes(&aC);
    size_t nP = bm_attention_probs_size(b.len, b.nseq, m->heads);
    CHECK(cb < pb && pb == bm_bt_acts_bytes_for(m, b.N, b.nseq, nP, 0, 0) &&
              cb == bm_bt_acts_bytes_for(m, b.N, b.nseq, nP, 0, 1),
          "activation bytes: %zu checkpointed < %zu plain, as bm_bt_acts_bytes_for says", cb, pb);
    bm_bt_acts_free(&aC);
    bm_bert_train_free(&C);
  }

  { /* unlock 1: the last layer and the projection, the same bits as in A */
    bm_bert_train U;
    bm_bt_acts aU = {0};
    bm_bert_train_init(&U, m, 1, 0);
    int layout = U.first == D - 1 && !U.embed_trains;
    for (int i = 0; i < U.nt; i++) {
      int trains = strstr(U.t[i].name, "text.proj.") || U.t[i].off >= A.t[5 + (D - 1) * 16].off;
      layout &= !!bm_bert_train_grad(&U, i) == trains;
    }
    CHECK(layout, "unlock 1: the last layer and the projection have gradients, the rest none");
    size_t nu = U.np - U.goff;
    grads(&U, &aU, &b, e2, t2, NULL);
    CHECK(bits_eq(U.g, gA + U.goff, nu), "unlock 1: their gradients equal unlock all's bit for bit (no dctx)");
    grads(&U, &aU, &b, e2, t2, dc);
    CHECK(bits_eq(U.g, gA + U.goff, nu) && bits_eq(dc, dA, nC),
          "unlock 1 + dctx: the prompt gradient runs through the frozen layers, unlock all's bits");
    nfd = 0;
    w = fd_worst(&U, &aU, &b, dc, &nfd);
    CHECK(nfd == 18 + b.nctx && w < 2e-2, "unlock 1: finite differences on %d tensors and prompts (worst rel %.2g)", nfd, w);
    U.checkpoint = 1;
    bm_bt_acts_free(&aU);
    grads(&U, &aU, &b, e2, t2, dc);
    CHECK(bits_eq(U.g, gA + U.goff, nu) && bits_eq(dc, dA, nC), "unlock 1 checkpointed: the same bits");
    {
      /* without prompts the forward keeps only the trained layer */
      batch b0 = b;
      b0.ids = bm_xmalloc(sizeof(int32_t) * (size_t)b.N), b0.ctx = NULL;
      for (int i = 0; i < b.N; i++) b0.ids[i] = b.ids[i] < 0 ? 7 : b.ids[i];
      bm_bt_acts aP = {0}, aQ = {0};
      U.checkpoint = 0;
      grads(&U, &aP, &b0, e2, t2, NULL);
      float *gu = bm_xmalloc(nu * 4);
      memcpy(gu, U.g, nu * 4);
      U.checkpoint = 1;
      grads(&U, &aQ, &b0, e2, t2, NULL);
      size_t nP = bm_attention_probs_size(b.len, b.nseq, m->heads);
      CHECK(bits_eq(U.g, gu, nu) && bm_bt_acts_bytes(&aP) == bm_bt_acts_bytes_for(m, b.N, b.nseq, nP, D - 1, 0) &&
                bm_bt_acts_bytes(&aQ) < bm_bt_acts_bytes(&aP),
            "unlock 1 without prompts: keeps layer %d up only (%zu bytes, %zu checkpointed), same bits", D - 1,
            bm_bt_acts_bytes(&aP), bm_bt_acts_bytes(&aQ));
      free(gu), free(b0.ids);
      bm_bt_acts_free(&aP), bm_bt_acts_free(&aQ);
    }
    bm_bt_acts_free(&aU);
    bm_bert_train_free(&U);
  }

  { /* unlock 0: the projection only */
    bm_bert_train P;
    bm_bt_acts aP = {0};
    bm_bert_train_init(&P, m, 0, 0);
    grads(&P, &aP, &b, e2, t2, NULL);
    size_t np = P.np - P.goff;
    CHECK(P.goff == P.t[P.nt - 2].off && bits_eq(P.g, gA + P.goff, np), "unlock 0: the projection's gradients, unlock all's bits");
    bm_bt_acts_free(&aP);
    bm_bert_train_free(&P);
  }

  { /* frozen: no parameter gradient, but the prompts' */
    bm_bert_train F;
    bm_bt_acts aF = {0};
    bm_bert_train_init(&F, m, -1, 1);
    int none = !F.g;
    for (int i = 0; i < F.nt; i++) none &= !bm_bert_train_grad(&F, i);
    grads(&F, &aF, &b, e2, t2, dc);
    CHECK(none && bits_eq(dc, dA, nC), "frozen + dctx: no parameter gradient, the prompt gradient of unlock all");
    nfd = 0;
    w = fd_worst(&F, &aF, &b, dc, &nfd);
    CHECK(nfd == b.nctx && w < 2e-2, "frozen: finite differences on the %d prompt vectors (worst rel %.2g)", nfd, w);
    grads(&F, &aF, &b, e2, t2, NULL); /* nothing to do, nothing done */
    CHECK(!F.g, "frozen without dctx: the backward is a no-op");
    bm_bt_acts_free(&aF);
    bm_bert_train_free(&F);
  }

  { /* the optimizer sees what trains, matrices with decay */
    bm_adamw opt;
    bm_adamw_init(&opt, 0.9, 0.999, 1e-8);
    int gd = bm_adamw_add_group(&opt, 1e-3, 0.1), gn = bm_adamw_add_group(&opt, 1e-3, 0);
    bm_bert_train_add_params(&A, &opt, gd, gn);
    int ndec = 0;
    for (int i = 0; i < A.nt; i++) ndec += A.t[i].decay;
    CHECK(opt.nparams == A.nt && ndec == 6 * D + 2, "add_params: %d tensors, %d with weight decay", opt.nparams, ndec);
    bm_adamw_free(&opt);
  }
  bm_bt_acts_free(&aA);
  bm_bert_train_free(&A);
  batch_free(&b);
  free(e), free(t), free(e2), free(t2), free(dA), free(dc), free(gA);
}

/* What the activations of a BERT-base text tower take at 32 texts x 64 tokens. */
static void bytes_report(void) {
  bm_bert m = {.vocab = 30522, .maxpos = 512, .context = 256, .width = 768, .depth = 12, .heads = 12,
               .mlp = 3072, .proj_hidden = 640, .embed_dim = 512, .eps = 1e-12f};
  int S = 32, L = 64, len[32];
  for (int s = 0; s < S; s++) len[s] = L;
  size_t nP = bm_attention_probs_size(len, S, m.heads);
  double MB = 1 << 20;
  size_t full = bm_bt_acts_bytes_for(&m, S * L, S, nP, 0, 0), ck = bm_bt_acts_bytes_for(&m, S * L, S, nP, 0, 1);
  size_t u1 = bm_bt_acts_bytes_for(&m, S * L, S, nP, 11, 0);
  printf("# BERT-base, %d texts x %d tokens: activations %.1f MiB, checkpointed %.1f MiB (%.1fx less); unlock 1 %.1f MiB\n",
         S, L, full / MB, ck / MB, (double)full / ck, u1 / MB);
  CHECK(ck * 4 < full, "checkpointing cuts BERT-base activations more than 4x (%.1f -> %.1f MiB)", full / MB, ck / MB);
}

int main(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096], err[1024];
  bm_set_threads(2);
  snprintf(path, sizeof path, "%s/fixtures/tiny-model", dir ? dir : "tests");
  bm_model m;
  if (bm_model_load(&m, path, BM_LOAD_TEXT, err, sizeof err)) bm_die("%s", err);
  bm_rng r;
  bm_rng_seed(&r, 20261123);
  bits_case(&m.bert, &r);
  grad_case(&m.bert, &r);
  bytes_report();
  snprintf(path, sizeof path, "%s/fixtures/bert_train.bmr", dir ? dir : "tests");
  bm_reader *rd = bm_reader_open(path);
  const msgpack_object *rec;
  int cases = 0;
  while (bm_reader_next(rd, &rec) == 1)
    if (bm_obj_is_str(bm_map_get(rec, "case"), "prompts")) torch_case(&m, rec), cases++;
  CHECK(cases == 1 && !bm_reader_error(rd), "the reference case read (%d)", cases);
  bm_reader_close(rd);
  bm_model_free(&m);
  CHECK_DONE();
}
