/* train_bert.cu - the text tower's training forward and backward on the GPU
 * (bmcuda_train.h), step for step bert_train.c's (post-LN BERT, packed
 * variable-length texts, prompt vectors as negative ids, unlock-last-N,
 * frozen, gradients accumulating), built the way train_ft.cu builds the
 * image tower.
 *
 * Memory: the fp32 parameters in bt's layout (P) and their compute-type
 * copy (Pc, the GEMM operands; fp32 uses P), the gradients over bt's
 * trained suffix (Gr, fp32). Per kept layer a slot of activations: the GEMM
 * inputs, qkv, the attention output, the MLP pre-activation and GELU in the
 * compute type; the LayerNorm inputs (the residual sums) and statistics and
 * the attention's log-sum-exp in fp32. The residual stream x is fp32.
 *
 * Inputs: ids, start, len come from the host. The forward checks them,
 * derives each token's position and text, and groups the tokens by word,
 * position and prompt row for the embedding backward
 * (train_bert_embed.cu), then sends it all in one copy from pinned memory
 * on the compute stream; an event keeps the next forward from rewriting
 * the pinned buffer before that copy ran. */
#include <stdlib.h>
#include <string.h>

#include "train_internal.cuh"

/* bert_train.c's tensor order (its enums are private; bm_cuda_bt_new checks
 * the names and offsets against them) */
enum { L_QW, L_KW, L_VW, L_QB, L_KB, L_VB, L_OW, L_OB, L_LN1W, L_LN1B, L_FC1W, L_FC1B, L_FC2W,
       L_FC2B, L_LN2W, L_LN2B, L_NT };
enum { E_WORD, E_POS, E_TYPE, E_LNW, E_LNB, PRE };

struct bt_slot {
  void *xin, *qkv, *att, *a1, *pre, *h; /* compute type */
  float *lse, *xm, *m1, *r1, *xm2, *m2, *r2;
};

struct bt_group { /* tokens grouped by destination row, device pointers into din */
  int nu;
  const int *row, *off, *tok;
};

struct bm_cuda_bt {
  bmct_ctx *c;
  int prec;
  size_t e;
  int W, D, heads, M, Hp, E, V, ctxlen, nctx, first, embed_trains, frozen;
  float eps;
  bm_bt_tensor *t;
  int nt;
  size_t np, goff;
  float *P, *Gr;
  void *Pc;
  bm_dev_list mem; /* everything but P, Pc, Gr */
  int cap_seq, cap_tok, nslot;
  bt_slot *L;
  float *e0, *em, *er, *x, *pooled, *raw;
  void *pooled_t, *ppre, *ph;
  /* backward scratch */
  float *d, *dr, *draw, *dpooled;
  void *dT, *draw_t, *dph, *datt, *dqkv, *dh, *ascratch;
  /* inputs: host (pinned) and device copies, the copy's event, sort scratch */
  int *hin, *din;
  size_t nin;
  cudaEvent_t copied;
  int *pairs;
  /* the last forward */
  int ready, N, nseq, maxlen, kept, has_ctx;
  const int *ids, *posi, *tseq, *start, *len; /* device */
  bt_group gw, gp, gc;
};

static float *pm(bm_cuda_bt *g, int i) { return g->P + g->t[i].off; }
static const void *wc(bm_cuda_bt *g, int i) { return (const char *)g->Pc + g->t[i].off * g->e; }
static float *gr(bm_cuda_bt *g, int i) {
  return g->Gr && g->t[i].off >= g->goff ? g->Gr + (g->t[i].off - g->goff) : NULL;
}
static void *dev(bm_cuda_bt *g, size_t bytes, const char *what) {
  return bm_dev_keep(&g->mem, bm_cuda_malloc(bytes ? bytes : 4, what));
}
static float *f32(bm_cuda_bt *g, size_t n, const char *what) { return (float *)dev(g, n * 4, what); }
static void *ct(bm_cuda_bt *g, size_t n, const char *what) { return dev(g, n * g->e, what); }

/* dst (compute type) = src (fp32), n elements */
static void cvt(bm_cuda_bt *g, void *dst, const float *src, size_t n) {
  if (g->prec == BMCT_FP32) CK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, g->c->st));
  else bm_cuda_convert(g->c->cu, dst, (bm_prec)g->prec, src, n);
}
/* y[N,W] fp32 in the GEMMs' type (y itself for fp32, else dT) with db += its
 * column sums (db may be NULL: a frozen bias) */
static const void *as_ct(bm_cuda_bt *g, const float *y, float *db, int N) {
  int fp32 = g->prec == BMCT_FP32;
  if (db) bmct_convert_colsum(g->c, g->prec, fp32 ? NULL : g->dT, db, y, N, g->W);
  else if (!fp32) bm_cuda_convert(g->c->cu, g->dT, (bm_prec)g->prec, y, (size_t)N * g->W);
  return fp32 ? (const void *)y : g->dT;
}
/* LayerNorm of x into yf (fp32, the residual stream) and yt (compute type,
 * the next GEMM's input) with the statistics, in one pass where the fast
 * kernel applies */
static void ln_both(bm_cuda_bt *g, float *yf, void *yt, float *mean, float *rstd, const float *x, int wi, int N) {
  const float *w = pm(g, wi), *b = pm(g, wi + 1);
  if (bm_cuda_layernorm_stats(g->c->cu, yf, yt, (bm_prec)g->prec, mean, rstd, x, w, b, N, g->W, g->eps)) return;
  bmct_layernorm_fwd(g->c, g->prec, 1, yf, mean, rstd, x, w, b, N, g->W, g->eps);
  cvt(g, yt, yf, (size_t)N * g->W);
}

/* bm_bert_train_init's layout, which the offsets below rely on */
static void check_layout(const bm_bert_train *bt) {
  static const char *sfx[L_NT] = {
      "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
      "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
      "attention.output.dense.weight", "attention.output.dense.bias",
      "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
      "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
      "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};
  const bm_bert *m = &bt->m;
  int ok = bt->nt == PRE + m->depth * L_NT + 2 && strstr(bt->t[E_WORD].name, "word_embeddings") &&
           strstr(bt->t[E_LNB].name, "embeddings.LayerNorm.bias") && strstr(bt->t[bt->nt - 1].name, "proj.2");
  for (int l = 0; ok && l < m->depth; l++) {
    const bm_bt_tensor *b = bt->t + PRE + l * L_NT;
    for (int k = 0; k < L_NT; k++) ok = ok && strstr(b[k].name, sfx[k]);
    /* q, k, v adjacent: one [3W,W] matrix and one [3W] bias */
    ok = ok && b[L_KW].off == b[L_QW].off + b[L_QW].n && b[L_VW].off == b[L_KW].off + b[L_KW].n &&
         b[L_KB].off == b[L_QB].off + b[L_QB].n && b[L_VB].off == b[L_KB].off + b[L_KB].n;
  }
  if (!ok) bm_die("internal error: bm_cuda_bt_new: the text tower's tensor table is not bert_train.c's");
}

extern "C" bm_cuda_bt *bm_cuda_bt_new(bmct_ctx *c, const bm_bert_train *bt, int prec, int max_seq, int max_tok,
                                      int n_ctx) {
  check_layout(bt);
  const bm_bert *m = &bt->m;
  if (max_seq < 1 || max_tok < 1 || n_ctx < 0)
    bm_die("bm_cuda_bt_new: capacity of %d texts / %d tokens / %d prompt vectors", max_seq, max_tok, n_ctx);
  bm_cuda_bt *g = (bm_cuda_bt *)bm_xcalloc(1, sizeof *g);
  g->c = c, g->prec = prec, g->e = bm_prec_size((bm_prec)prec);
  g->W = m->width, g->D = m->depth, g->heads = m->heads, g->M = m->mlp, g->Hp = m->proj_hidden;
  g->E = m->embed_dim, g->V = m->vocab, g->ctxlen = m->context < m->maxpos ? m->context : m->maxpos;
  g->nctx = n_ctx, g->eps = m->eps;
  g->first = bt->first, g->embed_trains = bt->embed_trains, g->frozen = bt->frozen;
  g->nt = bt->nt, g->np = bt->np, g->goff = bt->goff;
  g->t = (bm_bt_tensor *)bm_xmalloc(sizeof(bm_bt_tensor) * (size_t)bt->nt);
  memcpy(g->t, bt->t, sizeof(bm_bt_tensor) * (size_t)bt->nt);
  if (prec != BMCT_FP32 && prec != BMCT_BF16 && prec != BMCT_FP16) bm_die("bm_cuda_bt_new: precision %d", prec);
  /* the plain attention kernels hold a head's row in registers: at most 128 dims */
  if (g->heads < 1 || g->W % g->heads ||
      (g->W / g->heads > 128 && !bmct_varlen_attention_flash(prec, g->W, g->heads)))
    bm_die("bm_cuda_bt_new: width %d with %d heads: the head dim must divide it and be at most 128", g->W, g->heads);

  g->P = (float *)bm_cuda_malloc(g->np * 4, "text tower parameters");
  bmct_upload(c, g->P, bt->p, g->np * 4);
  if (prec == BMCT_FP32) g->Pc = g->P;
  else {
    g->Pc = bm_cuda_malloc(g->np * g->e, "text tower compute-type weights");
    bm_cuda_convert(c->cu, g->Pc, (bm_prec)prec, g->P, g->np);
  }
  if (!g->frozen) {
    g->Gr = (float *)bm_cuda_malloc((g->np - g->goff) * 4, "text tower gradients");
    CK(cudaMemsetAsync(g->Gr, 0, (g->np - g->goff) * 4, c->st));
  }

  /* activations: with prompt vectors every layer's (the gradient to them
   * crosses them all), else from the first that trains, plus one slot that
   * the layers below reuse (bert_train.c's reserve) */
  size_t N = (size_t)max_tok, S = (size_t)max_seq, W = g->W, M = g->M, Hp = g->Hp, E = g->E;
  int lo = n_ctx > 0 ? 0 : g->first;
  g->cap_seq = max_seq, g->cap_tok = max_tok;
  g->nslot = g->D - lo + (lo > 0);
  g->L = (bt_slot *)bm_xcalloc((size_t)g->nslot, sizeof *g->L);
  for (int i = 0; i < g->nslot; i++) {
    bt_slot *s = &g->L[i];
    s->xin = ct(g, N * W, "layer inputs"), s->qkv = ct(g, N * 3 * W, "qkv"), s->att = ct(g, N * W, "attention out");
    s->a1 = ct(g, N * W, "MLP inputs"), s->pre = ct(g, N * M, "MLP pre-activations"), s->h = ct(g, N * M, "GELU");
    s->lse = f32(g, N * g->heads, "attention log-sum-exp");
    s->xm = f32(g, N * W, "LayerNorm inputs"), s->xm2 = f32(g, N * W, "LayerNorm inputs");
    s->m1 = f32(g, N, "LayerNorm statistics"), s->r1 = f32(g, N, "LayerNorm statistics");
    s->m2 = f32(g, N, "LayerNorm statistics"), s->r2 = f32(g, N, "LayerNorm statistics");
  }
  g->e0 = f32(g, N * W, "embedding sum"), g->em = f32(g, N, "embedding LayerNorm"), g->er = f32(g, N, "embedding LayerNorm");
  g->x = f32(g, N * W, "residual stream");
  g->pooled = f32(g, S * W, "pooled"), g->pooled_t = ct(g, S * W, "pooled");
  g->ppre = ct(g, S * Hp, "projection hidden"), g->ph = ct(g, S * Hp, "projection hidden");
  g->raw = f32(g, S * E, "projection out");
  /* the backward's */
  g->d = f32(g, N * W, "gradients"), g->dr = f32(g, N * W, "gradients");
  g->draw = f32(g, S * E, "gradients"), g->dpooled = f32(g, S * W, "gradients");
  g->dT = prec == BMCT_FP32 ? NULL : ct(g, N * W, "gradients");
  g->draw_t = prec == BMCT_FP32 ? NULL : ct(g, S * E, "gradients");
  g->dph = ct(g, S * Hp, "gradients"), g->datt = ct(g, N * W, "gradients");
  g->dqkv = ct(g, N * 3 * W, "gradients"), g->dh = ct(g, N * M, "gradients");
  g->ascratch = dev(g, bmct_varlen_attention_scratch(prec, max_tok, g->W, g->heads), "attention scratch");
  /* ids, posi, tseq [N]; start, len [S]; three groups of at most N rows,
   * N + 1 offsets and N tokens each */
  g->nin = 12 * N + 2 * S + 3;
  g->hin = (int *)bm_cuda_host_alloc(g->nin * sizeof(int), "text tower inputs");
  g->din = (int *)dev(g, g->nin * sizeof(int), "text tower inputs");
  g->pairs = (int *)bm_xmalloc(2 * N * sizeof(int));
  CK(cudaEventCreateWithFlags(&g->copied, cudaEventDisableTiming));
  bmct_sync(c);
  return g;
}

extern "C" void bm_cuda_bt_free(bm_cuda_bt *g) {
  if (!g) return;
  bmct_sync(g->c);
  CK(cudaEventDestroy(g->copied));
  bm_cuda_host_free(g->hin);
  bm_dev_free_all(&g->mem);
  if (g->Pc != g->P) bm_cuda_free(g->Pc);
  bm_cuda_free(g->P), bm_cuda_free(g->Gr);
  free(g->L), free(g->t), free(g->pairs);
  free(g);
}

/* ---- inputs ---- */

static int cmp_pair(const void *a, const void *b) {
  const int *x = (const int *)a, *y = (const int *)b;
  return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] > y[1]) - (x[1] < y[1]);
}
/* n (row, token) pairs -> sorted, written at h[at..] as row[nu], off[nu+1],
 * tok[n]; returns the new end. *gi gets the host indices of the three. */
static size_t put_group(int *h, size_t at, int *pairs, int n, int gi[4]) {
  qsort(pairs, (size_t)n, 2 * sizeof(int), cmp_pair);
  int nu = 0;
  for (int k = 0; k < n; k++) nu += !k || pairs[2 * k] != pairs[2 * k - 2];
  int *row = h + at, *off = row + nu, *tok = off + nu + 1, u = 0;
  for (int k = 0; k < n; k++) {
    if (!k || pairs[2 * k] != pairs[2 * k - 2]) row[u] = pairs[2 * k], off[u++] = k;
    tok[k] = pairs[2 * k + 1];
  }
  off[nu] = n;
  gi[0] = nu, gi[1] = (int)at, gi[2] = (int)at + nu, gi[3] = (int)at + 2 * nu + 1;
  return at + 2 * (size_t)nu + 1 + (size_t)n;
}
static bt_group dgroup(const bm_cuda_bt *g, const int gi[4]) {
  bt_group r = {gi[0], g->din + gi[1], g->din + gi[2], g->din + gi[3]};
  return r;
}

/* Checks the batch (dies naming the text and token), fills hin and sends it. */
static void send_inputs(bm_cuda_bt *g, const int32_t *ids, const int *start, const int *len, int nseq, int has_ctx) {
  int N = 0, maxlen = 0;
  if (nseq < 1 || nseq > g->cap_seq) bm_die("bm_cuda_bt_forward: %d texts (1 to %d)", nseq, g->cap_seq);
  for (int s = 0; s < nseq; s++) {
    if (len[s] < 1 || len[s] > g->ctxlen)
      bm_die("bm_cuda_bt_forward: text %d has %d tokens (1 to %d)", s, len[s], g->ctxlen);
    if (start[s] < 0 || start[s] > g->cap_tok - len[s])
      bm_die("bm_cuda_bt_forward: text %d at token %d (+%d) is past the capacity of %d tokens", s, start[s],
             len[s], g->cap_tok);
    N = start[s] + len[s] > N ? start[s] + len[s] : N;
    maxlen = len[s] > maxlen ? len[s] : maxlen;
  }
  CK(cudaEventSynchronize(g->copied)); /* the previous forward's copy has left hin */
  int *h = g->hin, *posi = h + N, *tseq = posi + N, *st = tseq + N, *ln = st + nseq;
  /* every token in exactly one text: the attention and the table gradients
   * would otherwise read rows no text wrote */
  for (int i = 0; i < N; i++) tseq[i] = -1;
  for (int s = 0; s < nseq; s++)
    for (int i = 0; i < len[s]; i++) {
      int n = start[s] + i, id = ids[n];
      if (tseq[n] >= 0) bm_die("bm_cuda_bt_forward: texts %d and %d overlap at token %d", tseq[n], s, n);
      if (id >= g->V || (id < 0 && (!has_ctx || -(int64_t)id - 1 >= g->nctx)))
        bm_die("bm_cuda_bt_forward: text %d token %d: id %d is outside the vocabulary (%d) and the %d prompt "
               "vectors", s, i, id, g->V, has_ctx ? g->nctx : 0);
      h[n] = id, posi[n] = i, tseq[n] = s;
    }
  for (int i = 0; i < N; i++)
    if (tseq[i] < 0) bm_die("bm_cuda_bt_forward: token %d of %d is in no text (texts must be packed)", i, N);
  memcpy(st, start, sizeof(int) * (size_t)nseq);
  memcpy(ln, len, sizeof(int) * (size_t)nseq);
  size_t at = 3 * (size_t)N + 2 * (size_t)nseq;
  int gw[4], gp[4], gc[4], n = 0;
  for (int i = 0; i < N; i++)
    if (h[i] >= 0) g->pairs[2 * n] = h[i], g->pairs[2 * n + 1] = i, n++;
  at = put_group(h, at, g->pairs, n, gw);
  for (int i = 0; i < N; i++) g->pairs[2 * i] = posi[i], g->pairs[2 * i + 1] = i;
  at = put_group(h, at, g->pairs, N, gp);
  n = 0;
  for (int i = 0; i < N; i++)
    if (h[i] < 0) g->pairs[2 * n] = -1 - h[i], g->pairs[2 * n + 1] = i, n++;
  at = put_group(h, at, g->pairs, n, gc);
  CK(cudaMemcpyAsync(g->din, h, at * sizeof(int), cudaMemcpyHostToDevice, g->c->st));
  CK(cudaEventRecord(g->copied, g->c->st));
  g->N = N, g->nseq = nseq, g->maxlen = maxlen;
  g->ids = g->din, g->posi = g->din + N, g->tseq = g->din + 2 * N;
  g->start = g->din + 3 * N, g->len = g->start + nseq;
  g->gw = dgroup(g, gw), g->gp = dgroup(g, gp), g->gc = dgroup(g, gc);
}

/* ---- forward ---- */

/* One post-norm layer on g->x (bert_train.c's layer_fwd):
 *   xm = x + O(att(qkv(x)));  a1 = LN1(xm);  xm2 = a1 + fc2(GELU(fc1(a1)));  x = LN2(xm2) */
static void layer_fwd(bm_cuda_bt *g, int l, bt_slot *s) {
  bmct_ctx *c = g->c;
  bm_cuda *cu = c->cu;
  bm_prec p = (bm_prec)g->prec;
  int N = g->N, W = g->W, M = g->M, k0 = PRE + l * L_NT;
  size_t NW = (size_t)N * W;
  cvt(g, s->xin, g->x, NW);
  bm_cuda_gemm(cu, s->qkv, p, s->xin, wc(g, k0 + L_QW), p, pm(g, k0 + L_QB), N, W, 3 * W, 1.0f, 0.0f);
  bmct_varlen_attention_fwd(c, g->prec, s->att, s->lse, s->qkv, g->start, g->len, g->tseq, g->nseq, g->maxlen, N,
                            W, g->heads);
  /* the residual sums in fp32: the GEMM adds into a copy of the stream (beta 1) */
  CK(cudaMemcpyAsync(s->xm, g->x, NW * 4, cudaMemcpyDeviceToDevice, c->st));
  bm_cuda_gemm(cu, s->xm, BM_PREC_FP32, s->att, wc(g, k0 + L_OW), p, pm(g, k0 + L_OB), N, W, W, 1.0f, 1.0f);
  ln_both(g, g->x, s->a1, s->m1, s->r1, s->xm, k0 + L_LN1W, N);
  bm_cuda_gemm(cu, s->pre, p, s->a1, wc(g, k0 + L_FC1W), p, pm(g, k0 + L_FC1B), N, W, M, 1.0f, 0.0f);
  bmct_bias_gelu(c, g->prec, s->pre, s->h, NULL, N, M);
  CK(cudaMemcpyAsync(s->xm2, g->x, NW * 4, cudaMemcpyDeviceToDevice, c->st));
  bm_cuda_gemm(cu, s->xm2, BM_PREC_FP32, s->h, wc(g, k0 + L_FC2W), p, pm(g, k0 + L_FC2B), N, M, W, 1.0f, 1.0f);
  bmct_layernorm_fwd(c, g->prec, 1, g->x, s->m2, s->r2, s->xm2, pm(g, k0 + L_LN2W), pm(g, k0 + L_LN2B), N, W, g->eps);
}

extern "C" void bm_cuda_bt_forward(bm_cuda_bt *g, const int32_t *ids, const int *start, const int *len, int nseq,
                                   const float *ctx, float *emb, float *tokens) {
  bmct_ctx *c = g->c;
  bm_cuda *cu = c->cu;
  bm_prec p = (bm_prec)g->prec;
  if (ctx && !g->nctx) bm_die("bm_cuda_bt_forward: prompt vectors given, but the tower was made for none");
  send_inputs(g, ids, start, len, nseq, ctx != NULL);
  int N = g->N, W = g->W, D = g->D, Hp = g->Hp, E = g->E, n = PRE + D * L_NT;
  int lo = ctx ? 0 : g->first;
  g->kept = lo, g->has_ctx = ctx != NULL;
  bm_cuda_bert_embed(cu, g->e0, g->ids, g->posi, pm(g, E_WORD), g->V, ctx, g->nctx, pm(g, E_TYPE), pm(g, E_POS), N, W);
  bmct_layernorm_fwd(c, g->prec, 1, g->x, g->em, g->er, g->e0, pm(g, E_LNW), pm(g, E_LNB), N, W, g->eps);
  for (int l = 0; l < D; l++) layer_fwd(g, l, &g->L[l >= lo ? l - lo : g->nslot - 1]);
  if (tokens) CK(cudaMemcpyAsync(tokens, g->x, (size_t)N * W * 4, cudaMemcpyDeviceToDevice, c->st));
  /* [CLS] -> proj.0 -> GELU -> proj.2 -> L2 normalize (no biases) */
  bm_cuda_gather_rows(cu, g->pooled, g->x, g->start, nseq, W);
  cvt(g, g->pooled_t, g->pooled, (size_t)nseq * W);
  bm_cuda_gemm(cu, g->ppre, p, g->pooled_t, wc(g, n), p, NULL, nseq, W, Hp, 1.0f, 0.0f);
  bmct_bias_gelu(c, g->prec, g->ppre, g->ph, NULL, nseq, Hp);
  bm_cuda_gemm(cu, g->raw, BM_PREC_FP32, g->ph, wc(g, n + 1), p, NULL, nseq, Hp, E, 1.0f, 0.0f);
  if (emb) bmct_l2norm_fwd(c, emb, g->raw, nseq, E);
  g->ready = 1;
}

/* ---- backward ---- */

/* g->d = dL/d(layer l's output) -> dL/d(its input) when need_dx (bert_train.c's layer_bwd) */
static void layer_bwd(bm_cuda_bt *g, int l, const bt_slot *s, int need_dx) {
  bmct_ctx *c = g->c;
  int N = g->N, W = g->W, M = g->M, k0 = PRE + l * L_NT, p = g->prec;
#define G(k) gr(g, k0 + (k))
  bmct_layernorm_backward(c, g->dr, G(L_LN2W), G(L_LN2B), g->d, s->xm2, s->m2, s->r2, pm(g, k0 + L_LN2W), N, W, 0);
  const void *dy = as_ct(g, g->dr, G(L_FC2B), N); /* dL/d(fc2 out) */
  bmct_linear_backward(c, p, g->dh, 0, G(L_FC2W), NULL, dy, s->h, wc(g, k0 + L_FC2W), N, M, W, 0);
  bmct_gelu_backward_db(c, p, g->dh, G(L_FC1B), g->dh, s->pre, N, M);
  /* dr (the residual's share of da1) += dpre W1 */
  bmct_linear_backward(c, p, g->dr, 1, G(L_FC1W), NULL, g->dh, s->a1, wc(g, k0 + L_FC1W), N, W, M, 1);
  bmct_layernorm_backward(c, g->d, G(L_LN1W), G(L_LN1B), g->dr, s->xm, s->m1, s->r1, pm(g, k0 + L_LN1W), N, W, 0);
  dy = as_ct(g, g->d, G(L_OB), N); /* dL/d(attention.output.dense out) */
  bmct_linear_backward(c, p, g->datt, 0, G(L_OW), NULL, dy, s->att, wc(g, k0 + L_OW), N, W, W, 0);
  bmct_varlen_attention_backward(c, p, g->dqkv, g->datt, s->qkv, s->att, s->lse, g->start, g->len, g->tseq, g->nseq,
                                 g->maxlen, N, W, g->heads, g->ascratch);
  /* d (the residual's share) += dqkv Wqkv: the query gradient runs on over key and value */
  bmct_linear_backward(c, p, need_dx ? g->d : NULL, 1, G(L_QW), G(L_QB), g->dqkv, s->xin, wc(g, k0 + L_QW), N, W,
                       3 * W, 1);
#undef G
}

extern "C" void bm_cuda_bt_backward(bm_cuda_bt *g, const float *demb, const float *dtokens, float *dctx) {
  if (!demb && !dtokens) return;
  if (!g->ready) bm_die("bm_cuda_bt_backward: no forward before it");
  if (dctx && !g->has_ctx) bm_die("bm_cuda_bt_backward: dctx asked for, but the forward had no ctx");
  if (g->frozen && !dctx) return;
  bmct_ctx *c = g->c;
  int N = g->N, S = g->nseq, W = g->W, D = g->D, Hp = g->Hp, E = g->E, p = g->prec;
  int n = PRE + D * L_NT, below = dctx || g->embed_trains;
  int stop = below ? 0 : g->first; /* the lowest layer the gradient must reach */
  if (stop < g->kept && stop < D) bm_die("internal error: bm_cuda_bt_backward: layer %d's activations not kept", stop);
  if (demb) {
    bmct_l2norm_backward(c, g->draw, demb, g->raw, S, E);
    const void *dy = g->draw;
    if (p != BMCT_FP32) bm_cuda_convert(c->cu, g->draw_t, (bm_prec)p, g->draw, (size_t)S * E), dy = g->draw_t;
    bmct_linear_backward(c, p, g->dph, 0, gr(g, n + 1), NULL, dy, g->ph, wc(g, n + 1), S, Hp, E, 0);
    bmct_gelu_backward(c, p, g->dph, g->dph, g->ppre, (size_t)S * Hp);
    bmct_linear_backward(c, p, stop < D ? g->dpooled : NULL, 1, gr(g, n), NULL, g->dph, g->pooled_t, wc(g, n), S,
                         W, Hp, 0);
  }
  if (stop == D) return; /* only the projection trains */
  size_t NW = (size_t)N * W;
  if (dtokens) CK(cudaMemcpyAsync(g->d, dtokens, NW * 4, cudaMemcpyDeviceToDevice, c->st));
  else CK(cudaMemsetAsync(g->d, 0, NW * 4, c->st));
  if (demb) bmct_pool_first_backward(c, g->d, g->dpooled, g->start, S, W);
  for (int l = D - 1; l >= stop; l--) layer_bwd(g, l, &g->L[l - g->kept], l > stop || below);
  if (!below) return;
  /* dr = dL/d(embedding sum), through the embedding LayerNorm */
  bmct_layernorm_backward(c, g->dr, gr(g, E_LNW), gr(g, E_LNB), g->d, g->e0, g->em, g->er, pm(g, E_LNW), N, W, 0);
  if (g->embed_trains) {
    bmct_colsum(c, BMCT_FP32, gr(g, E_TYPE), g->dr, N, W); /* type 0 at every token */
    bmct_group_rows_add(c, gr(g, E_POS), g->dr, g->gp.row, g->gp.off, g->gp.tok, g->gp.nu, W);
    bmct_group_rows_add(c, gr(g, E_WORD), g->dr, g->gw.row, g->gw.off, g->gw.tok, g->gw.nu, W);
  }
  if (dctx) bmct_group_rows_add(c, dctx, g->dr, g->gc.row, g->gc.off, g->gc.tok, g->gc.nu, W);
}

/* ---- access ---- */

extern "C" void bm_cuda_bt_zero_grad(bm_cuda_bt *g) {
  if (g->Gr) CK(cudaMemsetAsync(g->Gr, 0, (g->np - g->goff) * 4, g->c->st));
}
extern "C" const bm_bt_tensor *bm_cuda_bt_tensors(const bm_cuda_bt *g, int *nt, size_t *np, size_t *goff) {
  if (nt) *nt = g->nt;
  if (np) *np = g->np;
  if (goff) *goff = g->goff;
  return g->t;
}
extern "C" float *bm_cuda_bt_params(bm_cuda_bt *g) { return g->P; }
extern "C" void *bm_cuda_bt_params_compute(bm_cuda_bt *g) { return g->Pc; }
extern "C" float *bm_cuda_bt_grads(bm_cuda_bt *g) { return g->Gr; }
extern "C" float *bm_cuda_bt_grad(bm_cuda_bt *g, int i) { return i >= 0 && i < g->nt ? gr(g, i) : NULL; }
extern "C" int bm_cuda_bt_prec(const bm_cuda_bt *g) { return g->prec; }
extern "C" void bm_cuda_bt_refresh_compute(bm_cuda_bt *g) {
  if (g->Pc != g->P) bm_cuda_convert(g->c->cu, g->Pc, (bm_prec)g->prec, g->P, g->np);
}

static void same_tower(const bm_cuda_bt *g, const bm_bert_train *bt, const char *who) {
  if (bt->np != g->np || bt->goff != g->goff || bt->nt != g->nt)
    bm_die("%s: the CPU text tower (%zu parameters from %zu trained) is not the GPU one's (%zu from %zu)", who,
           bt->np, bt->goff, g->np, g->goff);
}
extern "C" void bm_cuda_bt_download(bm_cuda_bt *g, bm_bert_train *bt) {
  same_tower(g, bt, "bm_cuda_bt_download");
  bmct_download(g->c, bt->p, g->P, g->np * 4);
}
extern "C" void bm_cuda_bt_upload(bm_cuda_bt *g, const bm_bert_train *bt) {
  same_tower(g, bt, "bm_cuda_bt_upload");
  bmct_upload(g->c, g->P, bt->p, g->np * 4);
  bm_cuda_bt_refresh_compute(g);
  bmct_sync(g->c);
}
extern "C" void bm_cuda_bt_download_grads(bm_cuda_bt *g, bm_bert_train *bt) {
  same_tower(g, bt, "bm_cuda_bt_download_grads");
  if (g->Gr && bt->g) bmct_download(g->c, bt->g, g->Gr, (g->np - g->goff) * 4);
}
