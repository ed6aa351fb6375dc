/* vit_train.c - the image tower's training forward and backward (vit_train.h). */
#include "vit_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "kernels.h"
#include "util.h"

enum { B_LN1W, B_LN1B, B_QKVW, B_QKVB, B_PROJW, B_PROJB, B_LN2W, B_LN2B, B_FC1W, B_FC1B, B_FC2W,
       B_FC2B, B_NT };
/* tensors before the blocks: patch W, patch b, cls, pos */
#define PRE 4

static void add(bm_vit_train *vt, const char *name, int ndim, const int64_t *shape, int decay) {
  bm_vt_tensor *t = &vt->t[vt->nt++];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  t->n = 1;
  for (int k = 0; k < ndim; k++) t->shape[k] = shape[k], t->n *= (size_t)shape[k];
  t->off = vt->np;
  t->decay = decay;
  vt->np += t->n;
}

static void add_block(bm_vit_train *vt, int l, int W, int M) {
  static const char *sfx[B_NT] = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                  "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                  "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
  int64_t sh[B_NT][2] = {{W}, {W}, {3 * W, W}, {3 * W}, {W, W}, {W}, {W}, {W}, {M, W}, {M}, {W, M}, {W}};
  for (int k = 0; k < B_NT; k++) {
    char n[96];
    snprintf(n, sizeof n, "visual.trunk.blocks.%d.%s", l, sfx[k]);
    int mat = k == B_QKVW || k == B_PROJW || k == B_FC1W || k == B_FC2W;
    add(vt, n, mat ? 2 : 1, sh[k], mat);
  }
}

/* Points v's tensors into p. */
static void bind(bm_vit_train *vt) {
  bm_vit *v = &vt->v;
  const float *p = vt->p;
  const bm_vt_tensor *t = vt->t;
  v->patch_w = p + t[0].off, v->patch_b = p + t[1].off, v->cls = p + t[2].off, v->pos = p + t[3].off;
  for (int l = 0; l < v->depth; l++) {
    const bm_vt_tensor *b = t + PRE + l * B_NT;
    bm_vit_block *k = &v->blocks[l];
    k->ln1_w = p + b[B_LN1W].off, k->ln1_b = p + b[B_LN1B].off;
    k->qkv_w = p + b[B_QKVW].off, k->qkv_b = p + b[B_QKVB].off;
    k->proj_w = p + b[B_PROJW].off, k->proj_b = p + b[B_PROJB].off;
    k->ln2_w = p + b[B_LN2W].off, k->ln2_b = p + b[B_LN2B].off;
    k->fc1_w = p + b[B_FC1W].off, k->fc1_b = p + b[B_FC1B].off;
    k->fc2_w = p + b[B_FC2W].off, k->fc2_b = p + b[B_FC2B].off;
  }
  int n = PRE + v->depth * B_NT;
  v->norm_w = p + t[n].off, v->norm_b = p + t[n + 1].off, v->head_w = p + t[n + 2].off;
}

static void put(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }

void bm_vit_train_init(bm_vit_train *vt, const bm_vit *src, int unlock, int frozen) {
  memset(vt, 0, sizeof *vt);
  vt->v = *src;
  bm_vit *v = &vt->v;
  v->blocks = bm_xcalloc((size_t)v->depth, sizeof(bm_vit_block));
  int W = v->width, M = v->mlp, P = v->patch, T = v->ntok, E = v->embed_dim, D = v->depth;
  vt->t = bm_xcalloc((size_t)(PRE + D * B_NT + 3), sizeof(bm_vt_tensor));
  add(vt, "visual.trunk.patch_embed.proj.weight", 4, (int64_t[]){W, 3, P, P}, 1);
  add(vt, "visual.trunk.patch_embed.proj.bias", 1, (int64_t[]){W}, 0);
  add(vt, "visual.trunk.cls_token", 3, (int64_t[]){1, 1, W}, 0);
  add(vt, "visual.trunk.pos_embed", 3, (int64_t[]){1, T, W}, 0);
  for (int l = 0; l < D; l++) add_block(vt, l, W, M);
  add(vt, "visual.trunk.norm.weight", 1, (int64_t[]){W}, 0);
  add(vt, "visual.trunk.norm.bias", 1, (int64_t[]){W}, 0);
  add(vt, "visual.head.proj.weight", 2, (int64_t[]){E, W}, 1);
  vt->p = bm_xmalloc(bm_mul_size(vt->np, sizeof(float)));
  const bm_vt_tensor *t = vt->t;
  put(vt->p + t[0].off, src->patch_w, t[0].n), put(vt->p + t[1].off, src->patch_b, t[1].n);
  put(vt->p + t[2].off, src->cls, t[2].n), put(vt->p + t[3].off, src->pos, t[3].n);
  for (int l = 0; l < D; l++) {
    const bm_vt_tensor *b = t + PRE + l * B_NT;
    const bm_vit_block *k = &src->blocks[l];
    const float *s[B_NT] = {k->ln1_w, k->ln1_b, k->qkv_w, k->qkv_b, k->proj_w, k->proj_b,
                            k->ln2_w, k->ln2_b, k->fc1_w, k->fc1_b, k->fc2_w, k->fc2_b};
    for (int i = 0; i < B_NT; i++) put(vt->p + b[i].off, s[i], b[i].n);
  }
  int n = PRE + D * B_NT;
  put(vt->p + t[n].off, src->norm_w, t[n].n), put(vt->p + t[n + 1].off, src->norm_b, t[n + 1].n);
  put(vt->p + t[n + 2].off, src->head_w, t[n + 2].n);
  bind(vt);

  vt->frozen = frozen;
  if (frozen) {
    vt->first = D, vt->goff = vt->np;
    return;
  }
  if (unlock < 0 || unlock >= D) vt->first = 0, vt->embed_trains = 1, vt->goff = 0;
  else vt->first = D - unlock, vt->goff = t[PRE + vt->first * B_NT].off;
  vt->g = bm_xcalloc(vt->np - vt->goff, sizeof(float));
}

void bm_vit_train_free(bm_vit_train *vt) {
  free(vt->v.blocks), free(vt->t), free(vt->p), free(vt->g);
  memset(vt, 0, sizeof *vt);
}

float *bm_vit_train_grad(const bm_vit_train *vt, int i) {
  if (!vt->g || vt->t[i].off < vt->goff) return NULL;
  return vt->g + (vt->t[i].off - vt->goff);
}

void bm_vit_train_zero_grad(bm_vit_train *vt) {
  if (vt->g) memset(vt->g, 0, (vt->np - vt->goff) * sizeof(float));
}

/* ---- patch dropout ---- */

int bm_vit_patch_keep_count(int GG, float p) {
  if (p <= 0.0f) return GG;
  /* p as the decimal it was written as (6 places), then torch's double
   * arithmetic int(GG * (1 - p)), so that e.g. p = 0.2 keeps 8 of 10 as
   * Python does, where the float 0.2f alone would give 7.99999 -> 7 */
  double pd = round((double)p * 1e6) / 1e6;
  int k = (int)((double)GG * (1.0 - pd));
  return k < 1 ? 1 : k > GG ? GG : k;
}

typedef struct {
  uint64_t h;
  int i;
} pd_score;

static int pd_cmp(const void *x, const void *y) {
  const pd_score *a = x, *b = y;
  if (a->h != b->h) return a->h < b->h ? -1 : 1;
  return (a->i > b->i) - (a->i < b->i);
}

static void put_le(unsigned char *d, uint64_t v, int n) {
  for (int k = 0; k < n; k++) d[k] = (unsigned char)(v >> (8 * k));
}

void bm_vit_patch_keep(int *keep, int GG, int K, uint64_t seed, uint64_t step, int b) {
  pd_score *sc = bm_xmalloc(sizeof *sc * (size_t)GG);
  unsigned char key[16]; /* little-endian bytes: the same hash on every machine */
  put_le(key, step, 8), put_le(key + 8, (uint32_t)b, 4);
  for (int i = 0; i < GG; i++) {
    put_le(key + 12, (uint32_t)i, 4);
    sc[i].h = bm_hash64(key, sizeof key, seed), sc[i].i = i;
  }
  /* the K smallest scores: a uniformly random K-subset */
  qsort(sc, (size_t)GG, sizeof *sc, pd_cmp);
  unsigned char *kept = bm_xcalloc((size_t)GG, 1);
  for (int j = 0; j < K; j++) kept[sc[j].i] = 1;
  for (int i = 0, j = 0; i < GG; i++)
    if (kept[i]) keep[j++] = i;
  free(kept), free(sc);
}

/* x[b,0] = cls + pos[0]; x[b,1+j] = patches[b,keep[j]] + pos[1+keep[j]]:
 * the rows of bm_vit_tokens' output that are kept, with its adds (bits). */
static void tokens_keep(const bm_vit *v, const float *patches, const int *keep, int B, int K, float *x) {
  int T = 1 + K, W = v->width, GG = v->grid * v->grid;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    float *xi = x + (size_t)i * T * W;
    for (int c = 0; c < W; c++) xi[c] = v->cls[c] + v->pos[c];
    for (int j = 0; j < K; j++) {
      int p = keep[(size_t)i * K + j];
      const float *src = patches + ((size_t)i * GG + p) * W, *pos = v->pos + (size_t)(p + 1) * W;
      float *dst = xi + (size_t)(1 + j) * W;
      for (int c = 0; c < W; c++) dst[c] = src[c] + pos[c];
    }
  }
}

/* The backward of tokens_keep: dpatch[B*GG,W] written (dropped patches 0),
 * dcls, dpos added (images in order, as bm_vit_tokens_backward). */
static void tokens_keep_backward(float *dpatch, float *dcls, float *dpos, const float *dx, const int *keep,
                                 int B, int K, int GG, int W) {
  int T = 1 + K;
  size_t rb = sizeof(float) * (size_t)W;
  memset(dpatch, 0, rb * (size_t)B * GG);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < K; j++)
      memcpy(dpatch + ((size_t)b * GG + keep[(size_t)b * K + j]) * W, dx + ((size_t)b * T + 1 + j) * W, rb);
  for (int b = 0; b < B; b++) {
    const float *g = dx + (size_t)b * T * W;
    if (dcls)
      for (int c = 0; c < W; c++) dcls[c] += g[c];
    if (!dpos) continue;
    for (int c = 0; c < W; c++) dpos[c] += g[c];
    for (int j = 0; j < K; j++) {
      float *d = dpos + (size_t)(1 + keep[(size_t)b * K + j]) * W;
      const float *gj = g + (size_t)(1 + j) * W;
      for (int c = 0; c < W; c++) d[c] += gj[c];
    }
  }
}

/* ---- activations ---- */

static void slot_free(bm_vt_block_acts *s) {
  free(s->x), free(s->ln1), free(s->m1), free(s->r1), free(s->qkv), free(s->P), free(s->att);
  free(s->xm), free(s->ln2), free(s->m2), free(s->r2), free(s->pre), free(s->h);
}

void bm_vt_acts_free(bm_vt_acts *a) {
  for (int i = 0; i < a->nslot; i++) slot_free(&a->blk[i]);
  free(a->blk), free(a->x), free(a->xr), free(a->keep), free(a->mt), free(a->rt);
  free(a->cols), free(a->patches), free(a->pin), free(a->pooled);
  free(a->mf), free(a->rf), free(a->raw), free(a->emb), free(a->start), free(a->len);
  free(a->d), free(a->dln), free(a->datt), free(a->dqkv), free(a->dh), free(a->dpatch);
  free(a->dpin), free(a->dpooled), free(a->draw), free(a->bscratch);
  memset(a, 0, sizeof *a);
}

size_t bm_vt_acts_bytes(const bm_vt_acts *a) { return a->bytes; }

/* One layout serves the allocation and the sizing without it (dry). */
typedef struct {
  int dry;
  size_t bytes;
} sizer;

static void *take(sizer *z, size_t n, size_t el) {
  size_t b = bm_mul_size(n ? n : 1, el);
  z->bytes += b;
  return z->dry ? NULL : bm_xmalloc(b);
}
#define FB(n) ((float *)take(z, (n), sizeof(float)))

static void layout(const bm_vit *v, int first, int frozen, int ckpt, int B, int T, bm_vt_acts *a, sizer *z) {
  int D = v->depth;
  if (frozen) first = D;
  ckpt = ckpt && first < D;
  size_t N = (size_t)B * T, W = (size_t)v->width, M = (size_t)v->mlp, E = (size_t)v->embed_dim;
  size_t BG = (size_t)B * v->grid * v->grid, PP = (size_t)v->patch * v->patch, NW = N * W;
  size_t nP = (size_t)B * v->heads * T * T; /* bm_attention_probs_size for B sequences of T */
  int ntrain = D - first, scratch = ckpt ? 1 : first > 0;
  a->start = take(z, (size_t)B, sizeof(int)), a->len = take(z, (size_t)B, sizeof(int));
  a->keep = take(z, (size_t)B * (T - 1), sizeof(int));
  a->nslot = ntrain + scratch;
  a->blk = z->dry ? NULL : bm_xcalloc((size_t)(a->nslot ? a->nslot : 1), sizeof *a->blk);
  for (int i = 0; i < a->nslot; i++) {
    bm_vt_block_acts dummy = {0}, *s = z->dry ? &dummy : &a->blk[i];
    s->x = FB(NW);
    if (ckpt && i < ntrain) continue; /* the block's input alone */
    s->ln1 = FB(NW), s->m1 = FB(N), s->r1 = FB(N), s->qkv = FB(N * 3 * W), s->P = FB(nP), s->att = FB(NW);
    s->xm = FB(NW), s->ln2 = FB(NW), s->m2 = FB(N), s->r2 = FB(N), s->pre = FB(N * M), s->h = FB(N * M);
  }
  a->x = FB(NW), a->xr = ckpt ? FB(NW) : NULL, a->mt = FB(N), a->rt = FB(N);
  a->cols = FB(BG * 3 * PP), a->patches = FB(BG * W);
  a->pin = FB((size_t)B * W), a->pooled = FB((size_t)B * W), a->mf = FB(B), a->rf = FB(B);
  a->raw = FB((size_t)B * E), a->emb = FB((size_t)B * E);
  if (!frozen) {
    a->d = FB(NW), a->dln = FB(NW), a->datt = FB(NW), a->dqkv = FB(N * 3 * W);
    a->dh = FB(N * M), a->dpatch = FB(BG * W), a->dpin = FB((size_t)B * W);
    a->dpooled = FB((size_t)B * W), a->draw = FB((size_t)B * E);
    a->bscratch = FB(bm_attention_backward_scratch(T));
  }
  a->ckpt = ckpt;
}
#undef FB

size_t bm_vt_acts_plan(const bm_vit *v, int first, int frozen, int checkpoint, int B, int T) {
  bm_vt_acts a = {0};
  sizer z = {1, 0};
  layout(v, first, frozen, checkpoint, B, T, &a, &z);
  return z.bytes;
}

static void reserve(const bm_vit_train *vt, bm_vt_acts *a, int B, int T) {
  int ck = vt->checkpoint && vt->first < vt->v.depth;
  if (B <= a->cap && T == a->T && ck == a->ckpt) return;
  bm_vt_acts_free(a);
  sizer z = {0, 0};
  layout(&vt->v, vt->first, vt->frozen, vt->checkpoint, B, T, a, &z);
  a->bytes = z.bytes, a->cap = B, a->T = T, a->scratch_blk = -1;
}

/* One pre-norm block: x[N,W] -> x (in place), activations kept in s. The
 * same calls as vit.c's block_forward: the residual adds are GEMMs with
 * beta = 1 on a copy of the stream, so the bits agree. */
static void block_fwd(const bm_vit *v, const bm_vit_block *b, bm_vt_block_acts *s, float *x, int B, int N,
                      const int *start, const int *len) {
  int W = v->width, M = v->mlp;
  size_t NW = (size_t)N * W * sizeof(float);
  memcpy(s->x, x, NW);
  bm_layernorm_train(s->ln1, s->m1, s->r1, s->x, b->ln1_w, b->ln1_b, N, W, v->eps); /* ln1[N,W] */
  bm_linear(s->qkv, s->ln1, b->qkv_w, b->qkv_b, N, W, 3 * W);                         /* qkv[N,3W] */
  bm_attention_train(s->att, s->P, s->qkv, start, len, B, W, v->heads, NULL);         /* att[N,W] */
  bm_linear_residual(x, s->att, b->proj_w, b->proj_b, N, W, W);                      /* x += proj(att) */
  memcpy(s->xm, x, NW);
  bm_layernorm_train(s->ln2, s->m2, s->r2, s->xm, b->ln2_w, b->ln2_b, N, W, v->eps); /* ln2[N,W] */
  bm_linear_gelu_train(s->pre, s->h, s->ln2, b->fc1_w, b->fc1_b, N, W, M);           /* h[N,M] */
  bm_linear_residual(x, s->h, b->fc2_w, b->fc2_b, N, M, W);                          /* x += fc2(h) */
}

void bm_vit_train_forward_tokens(bm_vit_train *vt, bm_vt_acts *a, const float *img, int B, float *emb,
                                 float *tokens) {
  const bm_vit *v = &vt->v;
  int W = v->width, E = v->embed_dim, D = v->depth, GG = v->grid * v->grid;
  int K = bm_vit_patch_keep_count(GG, vt->patch_dropout), T = 1 + K, N = B * T;
  reserve(vt, a, B, T);
  a->B = B, a->scratch_blk = -1;
  for (int i = 0; i < B; i++) a->start[i] = i * T, a->len[i] = T;
  /* patches[B*GG, W] = conv(img), cols kept for the patch embedding's backward */
  bm_patch_embed(a->patches, img, v->patch_w, v->patch_b, a->cols, B, v->image_size, v->patch, W);
  if (K == GG) bm_vit_tokens(v, a->patches, B, a->x); /* x[B*T, W] */
  else {
    for (int b = 0; b < B; b++) bm_vit_patch_keep(a->keep + (size_t)b * K, GG, K, vt->pd_seed, vt->pd_step, b);
    tokens_keep(v, a->patches, a->keep, B, K, a->x);
  }
  for (int l = 0; l < D; l++) {
    /* frozen blocks below the first that trains reuse the scratch slot, and
     * with checkpointing every block runs there after its input is kept */
    bm_vt_block_acts *s = &a->blk[a->nslot - 1];
    if (l >= vt->first && a->ckpt) memcpy(a->blk[l - vt->first].x, a->x, sizeof(float) * (size_t)N * W);
    else if (l >= vt->first) s = &a->blk[l - vt->first];
    block_fwd(v, &v->blocks[l], s, a->x, B, N, a->start, a->len);
    if (s == &a->blk[a->nslot - 1]) a->scratch_blk = l;
  }
  /* pin[B,W] = token 0; pooled = LN(pin); raw[B,E] = pooled head^T; emb = raw / |raw| */
  for (int i = 0; i < B; i++)
    memcpy(a->pin + (size_t)i * W, a->x + (size_t)i * T * W, sizeof(float) * (size_t)W);
  bm_layernorm_train(a->pooled, a->mf, a->rf, a->pin, v->norm_w, v->norm_b, B, W, v->eps);
  bm_linear(a->raw, a->pooled, v->head_w, NULL, B, W, E);
  memcpy(a->emb, a->raw, sizeof(float) * (size_t)B * E);
  bm_l2_normalize(a->emb, B, E);
  if (emb) memcpy(emb, a->emb, sizeof(float) * (size_t)B * E);
  /* tokens[N,W] = LN(x) of every token (its row 0s are pooled's bits) */
  a->has_tokens = tokens != NULL;
  if (tokens) bm_layernorm_train(tokens, a->mt, a->rt, a->x, v->norm_w, v->norm_b, N, W, v->eps);
}

void bm_vit_train_forward(bm_vit_train *vt, bm_vt_acts *a, const float *img, int B, float *emb) {
  bm_vit_train_forward_tokens(vt, a, img, B, emb, NULL);
}

/* d[N,W] = dL/d(block output) -> dL/d(block input) (in place) through block
 * l whose activations s holds; parameter gradients added; need_dx = 0 skips
 * LN1's input gradient (nothing below trains). */
static void block_bwd(bm_vit_train *vt, bm_vt_acts *a, int l, const bm_vt_block_acts *s, int B, int N,
                      int need_dx) {
  const bm_vit *v = &vt->v;
  const bm_vit_block *b = &v->blocks[l];
  int W = v->width, M = v->mlp, k0 = PRE + l * B_NT;
#define G(k) bm_vit_train_grad(vt, k0 + (k))
  bm_linear_backward(a->dh, G(B_FC2W), G(B_FC2B), a->d, s->h, b->fc2_w, N, M, W, 0);   /* dh[N,M] */
  bm_gelu_backward(a->dh, a->dh, s->pre, (size_t)N * M);                              /* dpre */
  bm_linear_backward(a->dln, G(B_FC1W), G(B_FC1B), a->dh, s->ln2, b->fc1_w, N, W, M, 0); /* dln2 */
  bm_layernorm_backward(a->d, G(B_LN2W), G(B_LN2B), a->dln, s->xm, s->m2, s->r2, b->ln2_w, N, W, 1);
  bm_linear_backward(a->datt, G(B_PROJW), G(B_PROJB), a->d, s->att, b->proj_w, N, W, W, 0);
  bm_attention_backward(a->dqkv, a->datt, s->qkv, s->P, a->start, a->len, B, W, v->heads, a->bscratch);
  bm_linear_backward(a->dln, G(B_QKVW), G(B_QKVB), a->dqkv, s->ln1, b->qkv_w, N, W, 3 * W, 0);
  bm_layernorm_backward(need_dx ? a->d : NULL, G(B_LN1W), G(B_LN1B), a->dln, s->x, s->m1, s->r1, b->ln1_w,
                        N, W, 1);
#undef G
}

void bm_vit_train_backward_tokens(bm_vit_train *vt, bm_vt_acts *a, const float *demb, const float *dtokens,
                                  int B) {
  if (vt->frozen || (!demb && !dtokens)) return;
  if (B != a->B) bm_die("bm_vit_train_backward: %d images, the forward had %d", B, a->B);
  if (dtokens && !a->has_tokens) bm_die("bm_vit_train_backward: token gradients, but the forward gave no tokens");
  const bm_vit *v = &vt->v;
  int T = a->T, K = T - 1, W = v->width, E = v->embed_dim, N = B * T, D = v->depth, n = PRE + D * B_NT;
  int GG = v->grid * v->grid;
  float *gnw = bm_vit_train_grad(vt, n), *gnb = bm_vit_train_grad(vt, n + 1);
  if (demb) {
    bm_l2_normalize_backward(a->draw, demb, a->raw, B, E);                                    /* draw[B,E] */
    bm_linear_backward(a->dpooled, bm_vit_train_grad(vt, n + 2), NULL, a->draw, a->pooled, v->head_w, B, W, E, 0);
    bm_layernorm_backward(a->dpin, gnw, gnb, a->dpooled, a->pin, a->mf, a->rf, v->norm_w, B, W, 0); /* dpin */
  }
  if (vt->first == D) { /* no block trains: the final norm's parameters alone */
    if (dtokens) bm_layernorm_backward(NULL, gnw, gnb, dtokens, a->x, a->mt, a->rt, v->norm_w, N, W, 0);
    return;
  }
  if (demb) bm_pool_token0_backward(a->d, a->dpin, a->start, B, N, W);                        /* d[N,W] */
  else memset(a->d, 0, sizeof(float) * (size_t)N * W);
  if (dtokens) bm_layernorm_backward(a->d, gnw, gnb, dtokens, a->x, a->mt, a->rt, v->norm_w, N, W, 1);
  bm_vt_block_acts *scr = &a->blk[a->nslot - 1];
  for (int l = D - 1; l >= vt->first; l--) {
    const bm_vt_block_acts *s = &a->blk[l - vt->first];
    if (a->ckpt) { /* recompute block l from its kept input (the top one is still there) */
      if (a->scratch_blk != l) {
        memcpy(a->xr, s->x, sizeof(float) * (size_t)N * W);
        block_fwd(v, &v->blocks[l], scr, a->xr, B, N, a->start, a->len);
        a->scratch_blk = l;
      }
      s = scr;
    }
    block_bwd(vt, a, l, s, B, N, l > vt->first || vt->embed_trains);
  }
  if (!vt->embed_trains) return;
  if (K == GG) bm_vit_tokens_backward(a->dpatch, bm_vit_train_grad(vt, 2), bm_vit_train_grad(vt, 3), a->d, B, GG, W);
  else tokens_keep_backward(a->dpatch, bm_vit_train_grad(vt, 2), bm_vit_train_grad(vt, 3), a->d, a->keep, B, K, GG, W);
  bm_patch_embed_backward(bm_vit_train_grad(vt, 0), bm_vit_train_grad(vt, 1), a->dpatch, a->cols, B,
                          v->image_size, v->patch, W);
}

void bm_vit_train_backward(bm_vit_train *vt, bm_vt_acts *a, const float *demb, int B) {
  bm_vit_train_backward_tokens(vt, a, demb, NULL, B);
}
