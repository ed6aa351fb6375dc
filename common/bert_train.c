/* bert_train.c - the text tower's training forward and backward (bert_train.h). */
#include "bert_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "util.h"

/* tensors of one layer, in p's order; query, key, value adjacent so that the
 * three weights (and the three biases) are bert.c's one [3W,W] matrix */
enum { L_QW, L_KW, L_VW, L_QB, L_KB, L_VB, L_OW, L_OB, L_LN1W, L_LN1B, L_FC1W, L_FC1B, L_FC2W,
       L_FC2B, L_LN2W, L_LN2B, L_NT };
/* tensors before the layers: word, position, type, LayerNorm weight, bias */
enum { E_WORD, E_POS, E_TYPE, E_LNW, E_LNB, PRE };

static void add(bm_bert_train *bt, const char *name, int ndim, int64_t d0, int64_t d1, int decay) {
  bm_bt_tensor *t = &bt->t[bt->nt++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  t->shape[0] = d0, t->shape[1] = ndim > 1 ? d1 : 0;
  t->n = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
  t->off = bt->np;
  t->decay = decay;
  bt->np += t->n;
}

static void add_layer(bm_bert_train *bt, int l, int W, int M) {
  static const char *sfx[L_NT] = {
      "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
      "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
      "attention.output.dense.weight", "attention.output.dense.bias",
      "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
      "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
      "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};
  int64_t sh[L_NT][2] = {{W, W}, {W, W}, {W, W}, {W}, {W}, {W}, {W, W}, {W},
                         {W}, {W}, {M, W}, {M}, {W, M}, {W}, {W}, {W}};
  for (int k = 0; k < L_NT; k++) {
    char n[96];
    snprintf(n, sizeof n, "text.transformer.encoder.layer.%d.%s", l, sfx[k]);
    int mat = k == L_QW || k == L_KW || k == L_VW || k == L_OW || k == L_FC1W || k == L_FC2W;
    add(bt, n, mat ? 2 : 1, sh[k][0], sh[k][1], mat);
  }
}

/* Points m's tensors into p. */
static void bind(bm_bert_train *bt) {
  bm_bert *m = &bt->m;
  const float *p = bt->p;
  const bm_bt_tensor *t = bt->t;
  m->word = p + t[E_WORD].off, m->pos = p + t[E_POS].off, m->type = p + t[E_TYPE].off;
  m->emb_ln_w = p + t[E_LNW].off, m->emb_ln_b = p + t[E_LNB].off;
  for (int l = 0; l < m->depth; l++) {
    const bm_bt_tensor *b = t + PRE + l * L_NT;
    bm_bert_layer *k = &m->layers[l];
    k->qkv_w = p + b[L_QW].off, k->qkv_b = p + b[L_QB].off;
    k->o_w = p + b[L_OW].off, k->o_b = p + b[L_OB].off;
    k->ln1_w = p + b[L_LN1W].off, k->ln1_b = p + b[L_LN1B].off;
    k->fc1_w = p + b[L_FC1W].off, k->fc1_b = p + b[L_FC1B].off;
    k->fc2_w = p + b[L_FC2W].off, k->fc2_b = p + b[L_FC2B].off;
    k->ln2_w = p + b[L_LN2W].off, k->ln2_b = p + b[L_LN2B].off;
  }
  int n = PRE + m->depth * L_NT;
  m->proj0 = p + t[n].off, m->proj2 = p + t[n + 1].off;
}

static void put(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }

void bm_bert_train_init(bm_bert_train *bt, const bm_bert *src, int unlock, int frozen) {
  memset(bt, 0, sizeof *bt);
  bt->m = *src;
  bm_bert *m = &bt->m;
  if (m->ntypes < 1) m->ntypes = 1;
  m->layers = bm_xcalloc((size_t)m->depth, sizeof(bm_bert_layer));
  int W = m->width, M = m->mlp, D = m->depth, H = m->proj_hidden, E = m->embed_dim;
  bt->t = bm_xcalloc((size_t)(PRE + D * L_NT + 2), sizeof(bm_bt_tensor));
  add(bt, "text.transformer.embeddings.word_embeddings.weight", 2, m->vocab, W, 0);
  add(bt, "text.transformer.embeddings.position_embeddings.weight", 2, m->maxpos, W, 0);
  add(bt, "text.transformer.embeddings.token_type_embeddings.weight", 2, m->ntypes, W, 0);
  add(bt, "text.transformer.embeddings.LayerNorm.weight", 1, W, 0, 0);
  add(bt, "text.transformer.embeddings.LayerNorm.bias", 1, W, 0, 0);
  for (int l = 0; l < D; l++) add_layer(bt, l, W, M);
  add(bt, "text.proj.0.weight", 2, H, W, 1);
  add(bt, "text.proj.2.weight", 2, E, H, 1);
  bt->p = bm_xmalloc(bm_mul_size(bt->np, sizeof(float)));
  const bm_bt_tensor *t = bt->t;
  float *p = bt->p;
  put(p + t[E_WORD].off, src->word, t[E_WORD].n), put(p + t[E_POS].off, src->pos, t[E_POS].n);
  put(p + t[E_TYPE].off, src->type, t[E_TYPE].n);
  put(p + t[E_LNW].off, src->emb_ln_w, t[E_LNW].n), put(p + t[E_LNB].off, src->emb_ln_b, t[E_LNB].n);
  size_t WW = (size_t)W * W;
  for (int l = 0; l < D; l++) {
    const bm_bt_tensor *b = t + PRE + l * L_NT;
    const bm_bert_layer *k = &src->layers[l];
    /* bm_bert's stacked qkv [3W,W] / [3W] is the three tensors in order */
    put(p + b[L_QW].off, k->qkv_w, 3 * WW), put(p + b[L_QB].off, k->qkv_b, 3 * (size_t)W);
    const float *s[L_NT] = {[L_OW] = k->o_w, [L_OB] = k->o_b, [L_LN1W] = k->ln1_w, [L_LN1B] = k->ln1_b,
                            [L_FC1W] = k->fc1_w, [L_FC1B] = k->fc1_b, [L_FC2W] = k->fc2_w,
                            [L_FC2B] = k->fc2_b, [L_LN2W] = k->ln2_w, [L_LN2B] = k->ln2_b};
    for (int i = L_OW; i < L_NT; i++) put(p + b[i].off, s[i], b[i].n);
  }
  int n = PRE + D * L_NT;
  put(p + t[n].off, src->proj0, t[n].n), put(p + t[n + 1].off, src->proj2, t[n + 1].n);
  bind(bt);

  bt->frozen = frozen;
  if (frozen) {
    bt->first = D, bt->goff = bt->np;
    return;
  }
  if (unlock < 0 || unlock >= D) bt->first = 0, bt->embed_trains = 1, bt->goff = 0;
  else bt->first = D - unlock, bt->goff = t[unlock ? PRE + bt->first * L_NT : n].off;
  bt->g = bm_xcalloc(bt->np - bt->goff, sizeof(float));
}

void bm_bert_train_free(bm_bert_train *bt) {
  free(bt->m.layers), free(bt->t), free(bt->p), free(bt->g);
  memset(bt, 0, sizeof *bt);
}

float *bm_bert_train_grad(const bm_bert_train *bt, int i) {
  if (!bt->g || bt->t[i].off < bt->goff) return NULL;
  return bt->g + (bt->t[i].off - bt->goff);
}

void bm_bert_train_zero_grad(bm_bert_train *bt) {
  if (bt->g) memset(bt->g, 0, (bt->np - bt->goff) * sizeof(float));
}

void bm_bert_train_add_params(bm_bert_train *bt, bm_adamw *opt, int group_decay, int group_nodecay) {
  for (int i = 0; i < bt->nt; i++) {
    float *g = bm_bert_train_grad(bt, i);
    const bm_bt_tensor *t = &bt->t[i];
    if (g) bm_adamw_add_param(opt, t->name, bt->p + t->off, g, t->n, t->decay ? group_decay : group_nodecay);
  }
}

/* ---- activations ---- */

static float *fbuf(size_t n, size_t *bytes) {
  if (bytes) *bytes += n * sizeof(float);
  return bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
}

static void la_free(bm_bt_layer_acts *s) {
  free(s->qkv), free(s->P), free(s->att), free(s->xm), free(s->a1), free(s->m1), free(s->r1);
  free(s->pre), free(s->h), free(s->xm2), free(s->m2), free(s->r2);
}

static void scratch_free(bm_bt_acts *a) {
  free(a->d), free(a->dr), free(a->dqkv), free(a->dh), free(a->datt), free(a->dph), free(a->draw);
  free(a->dpooled), free(a->bscratch), free(a->dcomp), free(a->icomp);
  a->d = a->dr = a->dqkv = a->dh = a->datt = a->dph = a->draw = a->dpooled = a->bscratch = a->dcomp = NULL;
  a->icomp = NULL;
}

void bm_bt_acts_free(bm_bt_acts *a) {
  for (int i = 0; i < a->nslot; i++) la_free(&a->la[i]);
  if (a->xin) /* depth + 1 entries: NULL below lo and at depth */
    for (int l = a->lo; a->xin[l]; l++) free(a->xin[l]);
  free(a->la), free(a->xin), free(a->e0), free(a->em), free(a->er), free(a->x);
  free(a->pooled), free(a->ppre), free(a->ph), free(a->raw), free(a->emb);
  scratch_free(a);
  memset(a, 0, sizeof *a);
}

size_t bm_bt_acts_bytes(const bm_bt_acts *a) { return a->bytes; }

size_t bm_bt_acts_bytes_for(const bm_bert *m, int N, int nseq, size_t nP, int lo, int checkpoint) {
  size_t n = (size_t)N, W = (size_t)m->width, M = (size_t)m->mlp, D = (size_t)m->depth;
  size_t S = (size_t)nseq, H = (size_t)m->proj_hidden, E = (size_t)m->embed_dim;
  size_t nslot = checkpoint ? 1 : D - (size_t)lo + (lo > 0);
  size_t slot = n * 3 * W + nP + 4 * n * W + 2 * n * M + 4 * n;
  size_t f = nslot * slot + (D - (size_t)lo) * n * W + 2 * n * W + 2 * n + S * (W + 2 * H + 2 * E);
  return f * sizeof(float);
}

/* Buffers for N tokens, S texts, nP attention probabilities, inputs kept
 * from layer lo up; kept when they already suffice. */
static void reserve(const bm_bert_train *bt, bm_bt_acts *a, int N, int S, size_t nP, int lo) {
  const bm_bert *m = &bt->m;
  int ck = bt->checkpoint, D = m->depth;
  if (a->la && N <= a->cap_tok && S <= a->cap_seq && nP <= a->cap_P && lo >= a->lo && ck == a->checkpoint)
    return;
  int cN = N > a->cap_tok ? N : a->cap_tok, cS = S > a->cap_seq ? S : a->cap_seq;
  size_t cP = nP > a->cap_P ? nP : a->cap_P;
  if (a->la && ck == a->checkpoint && a->lo < lo) lo = a->lo;
  bm_bt_acts_free(a);
  size_t Nn = (size_t)cN, W = (size_t)m->width, M = (size_t)m->mlp, H = (size_t)m->proj_hidden;
  size_t E = (size_t)m->embed_dim, *by = &a->bytes;
  a->cap_tok = cN, a->cap_seq = cS, a->cap_P = cP, a->lo = lo, a->checkpoint = ck;
  /* full activation sets: one per kept layer plus one for the layers below
   * lo; checkpointing: one, refilled for each layer in the backward */
  a->nslot = ck ? 1 : D - lo + (lo > 0);
  a->la = bm_xcalloc((size_t)a->nslot, sizeof *a->la);
  for (int i = 0; i < a->nslot; i++) {
    bm_bt_layer_acts *s = &a->la[i];
    s->qkv = fbuf(Nn * 3 * W, by), s->P = fbuf(cP, by), s->att = fbuf(Nn * W, by);
    s->xm = fbuf(Nn * W, by), s->a1 = fbuf(Nn * W, by), s->m1 = fbuf(Nn, by), s->r1 = fbuf(Nn, by);
    s->pre = fbuf(Nn * M, by), s->h = fbuf(Nn * M, by), s->xm2 = fbuf(Nn * W, by);
    s->m2 = fbuf(Nn, by), s->r2 = fbuf(Nn, by);
  }
  a->xin = bm_xcalloc((size_t)D + 1, sizeof(float *));
  for (int l = lo; l < D; l++) a->xin[l] = fbuf(Nn * W, by);
  a->e0 = fbuf(Nn * W, by), a->em = fbuf(Nn, by), a->er = fbuf(Nn, by), a->x = fbuf(Nn * W, by);
  a->pooled = fbuf((size_t)cS * W, by), a->ppre = fbuf((size_t)cS * H, by), a->ph = fbuf((size_t)cS * H, by);
  a->raw = fbuf((size_t)cS * E, by), a->emb = fbuf((size_t)cS * E, by);
}

/* The backward's scratch, allocated at its first use (a frozen tower that
 * is never asked for dctx needs none). */
static void reserve_scratch(const bm_bert_train *bt, bm_bt_acts *a) {
  if (a->d) return;
  const bm_bert *m = &bt->m;
  size_t N = (size_t)a->cap_tok, S = (size_t)a->cap_seq, W = (size_t)m->width, M = (size_t)m->mlp;
  a->d = fbuf(N * W, NULL), a->dr = fbuf(N * W, NULL), a->dqkv = fbuf(N * 3 * W, NULL);
  a->dh = fbuf(N * M, NULL), a->datt = fbuf(N * W, NULL), a->dph = fbuf(S * (size_t)m->proj_hidden, NULL);
  a->draw = fbuf(S * (size_t)m->embed_dim, NULL), a->dpooled = fbuf(S * W, NULL);
  a->bscratch = fbuf(bm_attention_backward_scratch(m->context), NULL), a->dcomp = fbuf(N * W, NULL);
  a->icomp = bm_xmalloc(sizeof(int) * (N ? N : 1));
}

/* One post-norm layer, x[N,W] -> y[N,W] (y may equal x): the same calls as
 * bert.c's layer_forward, with the residual adds on copies of the stream, so
 * the bits agree. */
static void layer_fwd(const bm_bert *m, const bm_bert_layer *l, bm_bt_layer_acts *s, const float *x,
                      float *y, int N, const int *start, const int *len, int nseq) {
  int W = m->width, M = m->mlp;
  size_t NW = (size_t)N * W * sizeof(float);
  bm_linear(s->qkv, x, l->qkv_w, l->qkv_b, N, W, 3 * W);                          /* qkv[N,3W] */
  bm_attention_train(s->att, s->P, s->qkv, start, len, nseq, W, m->heads, NULL);  /* att[N,W] */
  memcpy(s->xm, x, NW);
  bm_linear_residual(s->xm, s->att, l->o_w, l->o_b, N, W, W);                     /* xm = x + O(att) */
  bm_layernorm_train(s->a1, s->m1, s->r1, s->xm, l->ln1_w, l->ln1_b, N, W, m->eps);
  bm_linear_gelu_train(s->pre, s->h, s->a1, l->fc1_w, l->fc1_b, N, W, M);         /* h[N,M] */
  memcpy(s->xm2, s->a1, NW);
  bm_linear_residual(s->xm2, s->h, l->fc2_w, l->fc2_b, N, M, W);                  /* xm2 = a1 + fc2(h) */
  bm_layernorm_train(y, s->m2, s->r2, s->xm2, l->ln2_w, l->ln2_b, N, W, m->eps);
}

void bm_bert_train_forward(bm_bert_train *bt, bm_bt_acts *a, const int32_t *ids, const int *start,
                           const int *len, int nseq, const float *ctx, float *emb, float *tokens) {
  const bm_bert *m = &bt->m;
  int N = 0, W = m->width, D = m->depth, H = m->proj_hidden, E = m->embed_dim;
  for (int s = 0; s < nseq; s++) {
    if (len[s] < 1 || len[s] > m->context)
      bm_die("bm_bert_train_forward: text %d has %d tokens (1 to %d)", s, len[s], m->context);
    N = start[s] + len[s] > N ? start[s] + len[s] : N;
  }
  /* with prompt vectors every layer's activations are kept: the gradient
   * to them runs through all layers, frozen or not */
  int lo = ctx ? 0 : bt->first;
  reserve(bt, a, N, nseq, bm_attention_probs_size(len, nseq, m->heads), lo);
  a->N = N, a->nseq = nseq, a->kept = lo, a->has_ctx = ctx != NULL;
  a->ids = ids, a->start = start, a->len = len;
  bm_bert_embed_sum(m, ids, start, len, nseq, ctx, a->e0);
  bm_layernorm_train(a->x, a->em, a->er, a->e0, m->emb_ln_w, m->emb_ln_b, N, W, m->eps);
  size_t NW = (size_t)N * W * sizeof(float);
  for (int l = 0; l < D; l++) {
    const float *in = a->x;
    bm_bt_layer_acts *s = &a->la[0];
    if (l >= lo) {
      memcpy(a->xin[l], a->x, NW);
      in = a->xin[l];
      if (!a->checkpoint) s = &a->la[l - lo];
    } else if (!a->checkpoint) {
      s = &a->la[a->nslot - 1];
    }
    layer_fwd(m, &m->layers[l], s, in, a->x, N, start, len, nseq);
  }
  if (tokens) memcpy(tokens, a->x, NW);
  for (int s = 0; s < nseq; s++)
    memcpy(a->pooled + (size_t)s * W, a->x + (size_t)start[s] * W, sizeof(float) * (size_t)W);
  bm_linear_gelu_train(a->ppre, a->ph, a->pooled, m->proj0, NULL, nseq, W, H); /* ph[S,H] */
  bm_linear(a->raw, a->ph, m->proj2, NULL, nseq, H, E);                         /* raw[S,E] */
  memcpy(a->emb, a->raw, sizeof(float) * (size_t)nseq * E);
  bm_l2_normalize(a->emb, nseq, E);
  if (emb) memcpy(emb, a->emb, sizeof(float) * (size_t)nseq * E);
}

/* a->d[N,W] = dL/d(layer l's output) -> dL/d(its input) (in place) when
 * need_dx; parameter gradients added (NULL for frozen tensors). */
static void layer_bwd(bm_bert_train *bt, bm_bt_acts *a, int l, const bm_bt_layer_acts *s, int need_dx) {
  const bm_bert *m = &bt->m;
  const bm_bert_layer *b = &m->layers[l];
  int N = a->N, W = m->width, M = m->mlp, k0 = PRE + l * L_NT;
#define G(k) bm_bert_train_grad(bt, k0 + (k))
  bm_layernorm_backward(a->dr, G(L_LN2W), G(L_LN2B), a->d, s->xm2, s->m2, s->r2, b->ln2_w, N, W, 0);
  bm_linear_backward(a->dh, G(L_FC2W), G(L_FC2B), a->dr, s->h, b->fc2_w, N, M, W, 0);      /* dh[N,M] */
  bm_gelu_backward(a->dh, a->dh, s->pre, (size_t)N * M);                                   /* dpre */
  bm_linear_backward(a->dr, G(L_FC1W), G(L_FC1B), a->dh, s->a1, b->fc1_w, N, W, M, 1);     /* dr = da1 */
  bm_layernorm_backward(a->d, G(L_LN1W), G(L_LN1B), a->dr, s->xm, s->m1, s->r1, b->ln1_w, N, W, 0);
  bm_linear_backward(a->datt, G(L_OW), G(L_OB), a->d, s->att, b->o_w, N, W, W, 0);         /* datt */
  bm_attention_backward(a->dqkv, a->datt, s->qkv, s->P, a->start, a->len, a->nseq, W, m->heads,
                        a->bscratch);
  /* the query gradient's buffer runs on over key and value: the [3W,W] matrix */
  bm_linear_backward(need_dx ? a->d : NULL, G(L_QW), G(L_QB), a->dqkv, a->xin[l], b->qkv_w, N, W,
                     3 * W, 1);
#undef G
}

void bm_bert_train_backward(bm_bert_train *bt, bm_bt_acts *a, const float *demb, const float *dtokens,
                            float *dctx) {
  if (!demb && !dtokens) return;
  if (dctx && !a->has_ctx) bm_die("bm_bert_train_backward: dctx asked for, but the forward had no ctx");
  if (bt->frozen && !dctx) return;
  const bm_bert *m = &bt->m;
  int N = a->N, S = a->nseq, W = m->width, D = m->depth, H = m->proj_hidden, E = m->embed_dim;
  int n = PRE + D * L_NT, below = dctx || bt->embed_trains;
  /* the lowest layer the gradient must reach */
  int stop = below ? 0 : bt->first;
  reserve_scratch(bt, a);
  if (demb) {
    bm_l2_normalize_backward(a->draw, demb, a->raw, S, E);                                  /* draw[S,E] */
    bm_linear_backward(a->dph, bm_bert_train_grad(bt, n + 1), NULL, a->draw, a->ph, m->proj2, S, H, E, 0);
    bm_gelu_backward(a->dph, a->dph, a->ppre, (size_t)S * H);                               /* dppre */
    bm_linear_backward(stop < D ? a->dpooled : NULL, bm_bert_train_grad(bt, n), NULL, a->dph, a->pooled,
                       m->proj0, S, W, H, 0);                                                /* dpooled */
  }
  if (stop == D) return; /* only the projection trains */
  if (demb) {
    bm_pool_token0_backward(a->d, a->dpooled, a->start, S, N, W);                           /* d[N,W] */
    if (dtokens) bm_add(a->d, dtokens, (size_t)N * W);
  } else {
    memcpy(a->d, dtokens, sizeof(float) * (size_t)N * W);
  }
  for (int l = D - 1; l >= stop; l--) {
    const bm_bt_layer_acts *s = &a->la[0];
    if (a->checkpoint) /* refill the one activation set from the kept input; the output is not needed */
      layer_fwd(m, &m->layers[l], &a->la[0], a->xin[l], a->dr, N, a->start, a->len, S);
    else
      s = &a->la[l - a->kept];
    layer_bwd(bt, a, l, s, l > stop || below);
  }
  if (!below) return;
  /* dr[N,W] = dL/d(embedding sum), through the embedding LayerNorm */
  bm_layernorm_backward(a->dr, bm_bert_train_grad(bt, E_LNW), bm_bert_train_grad(bt, E_LNB), a->d, a->e0,
                        a->em, a->er, m->emb_ln_w, N, W, 0);
  /* the tokens of the word table, then those of ctx, gathered in token order */
  int nw = 0, nc = 0;
  if (bt->embed_trains) {
    for (int s = 0; s < S; s++)
      for (int i = 0; i < a->len[s]; i++) {
        int t = a->start[s] + i;
        memcpy(a->dcomp + (size_t)nw * W, a->dr + (size_t)t * W, sizeof(float) * (size_t)W);
        a->icomp[nw++] = 0;
      }
    bm_embedding_backward(bm_bert_train_grad(bt, E_TYPE), a->dcomp, a->icomp, nw, W); /* type 0: all */
    bm_pos_embed_backward(bm_bert_train_grad(bt, E_POS), a->dr, a->start, a->len, S, W);
    nw = 0;
    for (int s = 0; s < S; s++)
      for (int i = 0; i < a->len[s]; i++) {
        int t = a->start[s] + i;
        if (a->ids[t] < 0) continue;
        memcpy(a->dcomp + (size_t)nw * W, a->dr + (size_t)t * W, sizeof(float) * (size_t)W);
        a->icomp[nw++] = a->ids[t];
      }
    bm_embedding_backward(bm_bert_train_grad(bt, E_WORD), a->dcomp, a->icomp, nw, W);
  }
  if (dctx) {
    for (int s = 0; s < S; s++)
      for (int i = 0; i < a->len[s]; i++) {
        int t = a->start[s] + i;
        if (a->ids[t] >= 0) continue;
        memcpy(a->dcomp + (size_t)nc * W, a->dr + (size_t)t * W, sizeof(float) * (size_t)W);
        a->icomp[nc++] = -1 - a->ids[t];
      }
    bm_embedding_backward(dctx, a->dcomp, a->icomp, nc, W);
  }
}
