/* train_vit.cu - the trainable image tower of vit_train.h on the GPU
 * (bmcuda_vit_train.h): forward to the embedding and/or every token, the
 * backward from either gradient, patch dropout.
 *
 * Deliberate duplication: block_fwd, block_bwd, the slot/activation layout
 * (layer_acts, acts_free, reserve) and the embedding tail of forward() are
 * copies of train_ft.cu's, which was verified on an H100 and is left
 * untouched until a GPU session has verified this module too. That session
 * rebuilds train_ft.cu as this tower + its linear head and deletes the
 * copies; until then a fix to one copy belongs in the other.
 *
 * Patch dropout reuses the forward kernels: the full token matrix is
 * assembled (bm_cuda_vit_tokens, the CPU's adds) and the kept rows gathered
 * (bm_cuda_gather_rows), so the tokens are the CPU's bits; the backward
 * scatters the kept rows' gradients back into the full layout and runs the
 * full-token backward (dropped patches get zero). */
#include <math.h>
#include <string.h>

#include "bmcuda_vit_train.h"
#include "train_internal.cuh"

enum { B_LN1W, B_LN1B, B_QKVW, B_QKVB, B_PROJW, B_PROJB, B_LN2W, B_LN2B, B_FC1W, B_FC1B, B_FC2W,
       B_FC2B, B_NT };
#define PRE 4

struct layer_acts {
  float *x, *xm, *m1, *r1, *m2, *r2;        /* fp32 */
  void *ln1, *qkv, *P, *att, *ln2, *pre, *h; /* compute type */
};

struct bm_cuda_vt {
  bmct_ctx *c;
  int prec;
  size_t e;
  int S, Pp, GG, W, D, H, M, E, first, embed_trains, frozen;
  float eps;
  size_t np, goff, ng;
  float *P, *Gr;
  void *Pc;
  bm_vt_tensor *t;
  int nt;
  float pd;
  uint64_t pd_seed, pd_step;
  /* activations for up to cap images of capT tokens */
  int cap, capT, nslot;
  int B, T, K, has_tokens; /* the last forward */
  layer_acts *L;
  int *keep, *hrows, *rows; /* host [cap*K], host and device [cap*T]: patch dropout */
  float *img, *x, *xfull, *patches, *pin, *pooled, *mf, *rf, *raw, *emb, *mt, *rt;
  float *draw, *dpooled, *dpin, *d, *dln, *dfull;
  void *cols, *dT, *datt, *dqkv, *dh, *dpatch, *ascratch;
};

static float *pm(bm_cuda_vt *g, int i) { return g->P + g->t[i].off; }
static void *wc(bm_cuda_vt *g, int i) { return (char *)g->Pc + g->t[i].off * g->e; }
static float *gr(bm_cuda_vt *g, int i) {
  return g->Gr && g->t[i].off >= g->goff ? g->Gr + (g->t[i].off - g->goff) : NULL;
}
static float *ff(size_t n, const char *what) { return (float *)bm_cuda_malloc((n ? n : 1) * 4, what); }

extern "C" bm_cuda_vt *bm_cuda_vt_new(const bm_vit_train *vt, bm_cuda *cu, int prec) {
  if (prec != BMCT_FP32 && prec != BMCT_BF16 && prec != BMCT_FP16)
    bm_die("internal error: bm_cuda_vt_new: precision %d", prec);
  bm_cuda_vt *g = (bm_cuda_vt *)bm_xcalloc(1, sizeof *g);
  const bm_vit *v = &vt->v;
  g->c = bmct_ctx_new(cu);
  g->prec = prec, g->e = bm_prec_size((bm_prec)prec);
  g->S = v->image_size, g->Pp = v->patch, g->GG = v->grid * v->grid;
  g->W = v->width, g->D = v->depth, g->H = v->heads, g->M = v->mlp, g->E = v->embed_dim, g->eps = v->eps;
  g->first = vt->first, g->embed_trains = vt->embed_trains, g->frozen = vt->frozen;
  g->np = vt->np, g->goff = vt->goff, g->ng = vt->np - vt->goff;
  g->nt = vt->nt;
  g->t = (bm_vt_tensor *)bm_xmalloc(sizeof(bm_vt_tensor) * (size_t)vt->nt);
  memcpy(g->t, vt->t, sizeof(bm_vt_tensor) * (size_t)vt->nt);
  g->pd = vt->patch_dropout, g->pd_seed = vt->pd_seed, g->pd_step = vt->pd_step;
  g->P = ff(g->np, "tower parameters");
  if (prec == BMCT_FP32) g->Pc = g->P;
  else g->Pc = bm_cuda_malloc(g->np * g->e, "compute-type tower weights");
  bm_cuda_vt_upload(g, vt);
  if (!g->frozen && g->ng) {
    g->Gr = ff(g->ng, "tower gradients");
    CK(cudaMemsetAsync(g->Gr, 0, g->ng * 4, g->c->st));
  }
  bmct_sync(g->c);
  return g;
}

static void acts_free(bm_cuda_vt *g) {
  for (int i = 0; i < g->nslot; i++) {
    layer_acts *s = &g->L[i];
    bm_cuda_free(s->x), bm_cuda_free(s->xm), bm_cuda_free(s->m1), bm_cuda_free(s->r1);
    bm_cuda_free(s->m2), bm_cuda_free(s->r2), bm_cuda_free(s->ln1), bm_cuda_free(s->qkv);
    bm_cuda_free(s->P), bm_cuda_free(s->att), bm_cuda_free(s->ln2), bm_cuda_free(s->pre), bm_cuda_free(s->h);
  }
  free(g->L);
  g->L = NULL, g->nslot = 0;
  void *bufs[] = {g->rows, g->img, g->x, g->xfull, g->patches, g->pin, g->pooled, g->mf, g->rf, g->raw,
                  g->emb, g->mt, g->rt, g->draw, g->dpooled, g->dpin, g->d, g->dln, g->dfull, g->cols,
                  g->datt, g->dqkv, g->dh, g->dpatch, g->ascratch};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) bm_cuda_free(bufs[i]);
  if (g->dT != g->d) bm_cuda_free(g->dT);
  free(g->keep), free(g->hrows);
  g->rows = NULL, g->img = g->x = g->xfull = g->patches = g->pin = g->pooled = g->mf = g->rf = NULL;
  g->raw = g->emb = g->mt = g->rt = g->draw = g->dpooled = g->dpin = g->d = g->dln = g->dfull = NULL;
  g->cols = g->dT = g->datt = g->dqkv = g->dh = g->dpatch = g->ascratch = NULL;
  g->keep = g->hrows = NULL;
  g->cap = g->capT = 0, g->has_tokens = 0;
}

/* Buffers for B images of T tokens: the activations of every training block
 * (slot l - first) plus one scratch slot the frozen blocks below share. */
static void reserve(bm_cuda_vt *g, int B, int T) {
  if (B <= g->cap && T == g->capT) return;
  CK(cudaStreamSynchronize(g->c->st));
  acts_free(g);
  size_t N = (size_t)B * T, W = g->W, M = g->M, e = g->e, BG = (size_t)B * g->GG;
  size_t K = (size_t)3 * g->Pp * g->Pp, nP = (size_t)B * g->H * T * T;
  g->nslot = g->D - g->first + (g->first > 0);
  g->L = (layer_acts *)bm_xcalloc((size_t)g->nslot, sizeof *g->L);
  for (int i = 0; i < g->nslot; i++) {
    layer_acts *s = &g->L[i];
    s->x = ff(N * W, "activations"), s->xm = ff(N * W, "activations");
    s->m1 = ff(N, "activations"), s->r1 = ff(N, "activations"), s->m2 = ff(N, "activations"), s->r2 = ff(N, "activations");
    s->ln1 = bm_cuda_malloc(N * W * e, "activations"), s->qkv = bm_cuda_malloc(N * 3 * W * e, "activations");
    s->P = bm_cuda_malloc(nP * e, "attention probabilities"), s->att = bm_cuda_malloc(N * W * e, "activations");
    s->ln2 = bm_cuda_malloc(N * W * e, "activations"), s->pre = bm_cuda_malloc(N * M * e, "activations");
    s->h = bm_cuda_malloc(N * M * e, "activations");
  }
  size_t BE = (size_t)B * g->E, BW = (size_t)B * W, full = (size_t)B * (g->GG + 1) * W;
  int drop = T != g->GG + 1;
  g->img = ff((size_t)B * 3 * g->S * g->S, "images"), g->x = ff(N * W, "residual stream");
  g->patches = ff(BG * W, "patches"), g->cols = bm_cuda_malloc(BG * K * e, "im2col");
  g->pin = ff(BW, "pooled"), g->pooled = ff(BW, "pooled"), g->mf = ff(B, "norm"), g->rf = ff(B, "norm");
  g->raw = ff(BE, "embeddings"), g->emb = ff(BE, "embeddings");
  g->mt = ff(N, "token norm"), g->rt = ff(N, "token norm");
  if (drop) {
    g->xfull = ff(full, "all tokens (patch dropout)");
    g->rows = (int *)bm_cuda_malloc(N * sizeof(int), "kept rows");
    g->keep = (int *)bm_xmalloc(sizeof(int) * (size_t)B * (T - 1));
    g->hrows = (int *)bm_xmalloc(sizeof(int) * N);
  }
  if (!g->frozen) {
    g->draw = ff(BE, "gradients"), g->dpooled = ff(BW, "gradients"), g->dpin = ff(BW, "gradients");
    g->d = ff(N * W, "gradients"), g->dln = ff(N * W, "gradients");
    g->dT = g->prec == BMCT_FP32 ? (void *)g->d : bm_cuda_malloc(N * W * e, "gradients");
    g->datt = bm_cuda_malloc(N * W * e, "gradients"), g->dqkv = bm_cuda_malloc(N * 3 * W * e, "gradients");
    g->dh = bm_cuda_malloc(N * M * e, "gradients"), g->dpatch = bm_cuda_malloc(BG * W * e, "gradients");
    if (drop) g->dfull = ff(full, "gradients");
  }
  g->ascratch = bm_cuda_malloc(bmct_attention_scratch(g->prec, B, T, g->W, g->H), "attention scratch");
  g->cap = B, g->capT = T;
}

extern "C" void bm_cuda_vt_free(bm_cuda_vt *g) {
  if (!g) return;
  bmct_sync(g->c);
  acts_free(g);
  if (g->Pc != g->P) bm_cuda_free(g->Pc);
  bm_cuda_free(g->P), bm_cuda_free(g->Gr);
  bmct_ctx_free(g->c);
  free(g->t);
  free(g);
}

extern "C" bmct_ctx *bm_cuda_vt_ctx(bm_cuda_vt *g) { return g->c; }

extern "C" void bm_cuda_vt_set_patch_dropout(bm_cuda_vt *g, float p, uint64_t seed, uint64_t step) {
  if (!(p >= 0.0f && p < 1.0f)) bm_die("internal error: patch dropout %g outside [0,1)", (double)p);
  g->pd = p, g->pd_seed = seed, g->pd_step = step;
}

extern "C" int bm_cuda_vt_ntok(const bm_cuda_vt *g) { return 1 + bm_vit_patch_keep_count(g->GG, g->pd); }

extern "C" const int *bm_cuda_vt_keep(const bm_cuda_vt *g) {
  return g->B > 0 && g->K < g->GG ? g->keep : NULL;
}

/* One pre-norm block on g->x (fp32), activations into s (vit_train.c's
 * block_fwd). A copy of train_ft.cu's (see the top of this file). */
static void block_fwd(bm_cuda_vt *g, int l, layer_acts *s, int B) {
  bmct_ctx *c = g->c;
  int N = B * g->T, W = g->W, M = g->M, k0 = PRE + l * B_NT, p = g->prec;
  CK(cudaMemcpyAsync(s->x, g->x, (size_t)N * W * 4, cudaMemcpyDeviceToDevice, c->st));
  bmct_layernorm_fwd(c, p, 0, s->ln1, s->m1, s->r1, s->x, pm(g, k0 + B_LN1W), pm(g, k0 + B_LN1B), N, W, g->eps);
  /* nn.Linear GEMMs with the bias in cuBLASLt's epilogue (bm_cuda_gemm) */
  bm_cuda_gemm(c->cu, s->qkv, (bm_prec)p, s->ln1, wc(g, k0 + B_QKVW), (bm_prec)p, pm(g, k0 + B_QKVB), N, W, 3 * W,
               1.0f, 0.0f);
  bmct_attention_fwd(c, p, s->att, s->P, s->qkv, B, g->T, W, g->H, g->ascratch);
  /* x += att Wp^T + bp: the GEMM adds into the fp32 stream (beta 1) */
  bm_cuda_gemm(c->cu, g->x, BM_PREC_FP32, s->att, wc(g, k0 + B_PROJW), (bm_prec)p, pm(g, k0 + B_PROJB), N, W, W,
               1.0f, 1.0f);
  CK(cudaMemcpyAsync(s->xm, g->x, (size_t)N * W * 4, cudaMemcpyDeviceToDevice, c->st));
  bmct_layernorm_fwd(c, p, 0, s->ln2, s->m2, s->r2, s->xm, pm(g, k0 + B_LN2W), pm(g, k0 + B_LN2B), N, W, g->eps);
  /* pre = ln2 W1^T + b1 as stored (the backward's GELU input), h = GELU(pre) */
  bm_cuda_gemm(c->cu, s->pre, (bm_prec)p, s->ln2, wc(g, k0 + B_FC1W), (bm_prec)p, pm(g, k0 + B_FC1B), N, W, M,
               1.0f, 0.0f);
  bmct_bias_gelu(c, p, s->pre, s->h, NULL, N, M);
  bm_cuda_gemm(c->cu, g->x, BM_PREC_FP32, s->h, wc(g, k0 + B_FC2W), (bm_prec)p, pm(g, k0 + B_FC2B), N, M, W,
               1.0f, 1.0f);
}

/* img (device) -> g->emb and tokens (may be NULL), as bm_vit_train_forward_tokens */
static int forward(bm_cuda_vt *g, const float *img, int B, float *emb, float *tokens) {
  if (B <= 0) bm_die("internal error: bm_cuda_vt_forward: %d images", B);
  bmct_ctx *c = g->c;
  int GG = g->GG, K = bm_vit_patch_keep_count(GG, g->pd), T = 1 + K, W = g->W, E = g->E, p = g->prec;
  int Kc = 3 * g->Pp * g->Pp, BG = B * GG, N = B * T, n = PRE + g->D * B_NT;
  reserve(g, B, T);
  g->B = B, g->T = T, g->K = K;
  /* patches = cols Wp^T + bp (fp32), x = tokens + pos */
  bm_cuda_im2col(c->cu, g->cols, (bm_prec)p, img, B, g->S, g->Pp);
  bm_cuda_gemm(c->cu, g->patches, BM_PREC_FP32, g->cols, wc(g, 0), (bm_prec)p, pm(g, 1), BG, Kc, W, 1.0f, 0.0f);
  if (K == GG) bm_cuda_vit_tokens(c->cu, g->x, g->patches, pm(g, 2), pm(g, 3), B, T, W);
  else {
    /* image b's rows: its CLS token, then its kept patches (vit_train.c's tokens_keep) */
    for (int b = 0; b < B; b++) {
      int *kb = g->keep + (size_t)b * K, *rb = g->hrows + (size_t)b * T;
      bm_vit_patch_keep(kb, GG, K, g->pd_seed, g->pd_step, b);
      rb[0] = b * (GG + 1);
      for (int j = 0; j < K; j++) rb[1 + j] = b * (GG + 1) + 1 + kb[j];
    }
    bmct_upload(c, g->rows, g->hrows, sizeof(int) * (size_t)N);
    bm_cuda_vit_tokens(c->cu, g->xfull, g->patches, pm(g, 2), pm(g, 3), B, GG + 1, W);
    bm_cuda_gather_rows(c->cu, g->x, g->xfull, g->rows, N, W);
  }
  for (int l = 0; l < g->D; l++) block_fwd(g, l, &g->L[l >= g->first ? l - g->first : g->nslot - 1], B);
  /* pin = token 0 of each image; pooled = LN(pin); raw = pooled head^T; emb = raw / |raw| */
  CK(cudaMemcpy2DAsync(g->pin, (size_t)W * 4, g->x, (size_t)T * W * 4, (size_t)W * 4, B, cudaMemcpyDeviceToDevice,
                       c->st));
  bmct_layernorm_fwd(c, p, 1, g->pooled, g->mf, g->rf, g->pin, pm(g, n), pm(g, n + 1), B, W, g->eps);
  bmct_gemm(c, BMCT_FP32, 1, 0, 1, B, E, W, 1.0f, g->pooled, W, 0, pm(g, n + 2), W, 0, 0.0f, g->raw, E, 0, 1);
  bmct_l2norm_fwd(c, g->emb, g->raw, B, E);
  if (emb) CK(cudaMemcpyAsync(emb, g->emb, (size_t)B * E * 4, cudaMemcpyDeviceToDevice, c->st));
  /* tokens = the final LayerNorm of every token, statistics kept (fp32) */
  g->has_tokens = tokens != NULL;
  if (tokens) bmct_layernorm_fwd(c, p, 1, tokens, g->mt, g->rt, g->x, pm(g, n), pm(g, n + 1), N, W, g->eps);
  return T;
}

extern "C" int bm_cuda_vt_forward_dev(bm_cuda_vt *g, const float *img, int B, float *emb, float *tokens) {
  return forward(g, img, B, emb, tokens);
}

extern "C" int bm_cuda_vt_forward(bm_cuda_vt *g, const float *img, int B, float *emb, float *tokens) {
  if (B <= 0) bm_die("internal error: bm_cuda_vt_forward: %d images", B);
  reserve(g, B, bm_cuda_vt_ntok(g));
  bmct_upload(g->c, g->img, img, (size_t)B * 3 * g->S * g->S * 4);
  return forward(g, g->img, B, emb, tokens);
}

/* g->d = dL/d(block l's output) -> dL/d(its input); vit_train.c's
 * block_bwd. A copy of train_ft.cu's (see the top of this file). */
static void block_bwd(bm_cuda_vt *g, int l, int B, int need_dx) {
  bmct_ctx *c = g->c;
  layer_acts *s = &g->L[l - g->first];
  int N = B * g->T, W = g->W, M = g->M, k0 = PRE + l * B_NT, p = g->prec;
#define GR(k) gr(g, k0 + (k))
  /* fc2: dT = d in the GEMM type and its bias gradient from the fp32 d, one pass */
  bmct_convert_colsum(c, p, g->dT != g->d ? g->dT : NULL, GR(B_FC2B), g->d, N, W);
  bmct_linear_backward(c, p, g->dh, 0, GR(B_FC2W), NULL, g->dT, s->h, wc(g, k0 + B_FC2W), N, M, W, 0);
  /* GELU backward with fc1's bias gradient in the same pass */
  bmct_gelu_backward_db(c, p, g->dh, GR(B_FC1B), g->dh, s->pre, N, M);
  bmct_linear_backward(c, p, g->dln, 1, GR(B_FC1W), NULL, g->dh, s->ln2, wc(g, k0 + B_FC1W), N, W, M, 0);
  bmct_layernorm_backward(c, g->d, GR(B_LN2W), GR(B_LN2B), g->dln, s->xm, s->m2, s->r2, pm(g, k0 + B_LN2W), N, W, 1);
  bmct_convert_colsum(c, p, g->dT != g->d ? g->dT : NULL, GR(B_PROJB), g->d, N, W);
  bmct_linear_backward(c, p, g->datt, 0, GR(B_PROJW), NULL, g->dT, s->att, wc(g, k0 + B_PROJW), N, W, W, 0);
  bmct_attention_backward(c, p, g->dqkv, g->datt, s->qkv, s->att, s->P, B, g->T, W, g->H, g->ascratch);
  bmct_linear_backward(c, p, g->dln, 1, GR(B_QKVW), GR(B_QKVB), g->dqkv, s->ln1, wc(g, k0 + B_QKVW), N, W, 3 * W, 0);
  bmct_layernorm_backward(c, need_dx ? g->d : NULL, GR(B_LN1W), GR(B_LN1B), g->dln, s->x, s->m1, s->r1,
                          pm(g, k0 + B_LN1W), N, W, 1);
#undef GR
}

/* dst[rows[i]] = src[i], rows of C (the kept tokens back into all tokens) */
__global__ void vtk_scatter_rows(float *dst, const float *src, const int *rows, int C) {
  float *d = dst + (size_t)rows[blockIdx.x] * C;
  const float *s = src + (size_t)blockIdx.x * C;
  for (int j = threadIdx.x; j < C; j += blockDim.x) d[j] = s[j];
}

extern "C" void bm_cuda_vt_backward(bm_cuda_vt *g, const float *demb, const float *dtokens, int B) {
  if (g->frozen || (!demb && !dtokens)) return;
  if (B != g->B) bm_die("bm_cuda_vt_backward: %d images, the forward had %d", B, g->B);
  if (dtokens && !g->has_tokens) bm_die("bm_cuda_vt_backward: token gradients, but the forward gave no tokens");
  bmct_ctx *c = g->c;
  int W = g->W, E = g->E, T = g->T, D = g->D, GG = g->GG, N = B * T, n = PRE + D * B_NT, p = g->prec;
  float *gnw = gr(g, n), *gnb = gr(g, n + 1);
  if (demb) { /* L2 normalize, head, final norm of token 0 */
    bmct_l2norm_backward(c, g->draw, demb, g->raw, B, E);
    bmct_gemm(c, BMCT_FP32, 1, 0, 0, B, W, E, 1.0f, g->draw, E, 0, pm(g, n + 2), W, 0, 0.0f, g->dpooled, W, 0, 1);
    bmct_gemm(c, BMCT_FP32, 1, 1, 0, E, W, B, 1.0f, g->draw, E, 0, g->pooled, W, 0, 1.0f, gr(g, n + 2), W, 0, 1);
    bmct_layernorm_backward(c, g->dpin, gnw, gnb, g->dpooled, g->pin, g->mf, g->rf, pm(g, n), B, W, 0);
  }
  if (g->first == D) { /* no block trains: the final norm's parameters alone */
    if (dtokens) bmct_layernorm_backward(c, NULL, gnw, gnb, dtokens, g->x, g->mt, g->rt, pm(g, n), N, W, 0);
    return;
  }
  /* d = dL/d(last block's output): token 0's from the embedding, every token's from dtokens */
  CK(cudaMemsetAsync(g->d, 0, (size_t)N * W * 4, c->st));
  if (demb)
    CK(cudaMemcpy2DAsync(g->d, (size_t)T * W * 4, g->dpin, (size_t)W * 4, (size_t)W * 4, B, cudaMemcpyDeviceToDevice,
                         c->st));
  if (dtokens) bmct_layernorm_backward(c, g->d, gnw, gnb, dtokens, g->x, g->mt, g->rt, pm(g, n), N, W, 1);
  for (int l = D - 1; l >= g->first; l--) block_bwd(g, l, B, l > g->first || g->embed_trains);
  if (!g->embed_trains) return;
  const float *dx = g->d;
  if (g->K < GG) { /* the kept rows back in place, zero for the dropped patches */
    CK(cudaMemsetAsync(g->dfull, 0, (size_t)B * (GG + 1) * W * 4, c->st));
    vtk_scatter_rows<<<N, 256, 0, c->st>>>(g->dfull, g->d, g->rows, W);
    CKL("scatter_rows");
    dx = g->dfull;
  }
  bmct_vit_tokens_backward(c, p, g->dpatch, gr(g, 2), gr(g, 3), dx, B, GG, W);
  bmct_patch_embed_backward(c, p, gr(g, 0), gr(g, 1), g->dpatch, g->cols, B, g->S, g->Pp, W);
}

extern "C" void bm_cuda_vt_zero_grad(bm_cuda_vt *g) {
  if (g->Gr) CK(cudaMemsetAsync(g->Gr, 0, g->ng * 4, g->c->st));
}

extern "C" float *bm_cuda_vt_params(bm_cuda_vt *g) { return g->P; }
extern "C" void *bm_cuda_vt_params_compute(bm_cuda_vt *g) { return g->Pc; }
extern "C" float *bm_cuda_vt_grads(bm_cuda_vt *g) { return g->Gr; }
extern "C" size_t bm_cuda_vt_np(const bm_cuda_vt *g) { return g->np; }
extern "C" size_t bm_cuda_vt_goff(const bm_cuda_vt *g) { return g->goff; }
extern "C" const bm_vt_tensor *bm_cuda_vt_tensors(const bm_cuda_vt *g, int *nt) {
  if (nt) *nt = g->nt;
  return g->t;
}

extern "C" void bm_cuda_vt_refresh(bm_cuda_vt *g) {
  if (g->Pc != g->P) bm_cuda_convert(g->c->cu, g->Pc, (bm_prec)g->prec, g->P, g->np);
}

static void same_shape(const bm_cuda_vt *g, const bm_vit_train *vt, const char *what) {
  if (vt->np != g->np || vt->goff != g->goff || vt->nt != g->nt)
    bm_die("internal error: %s: a tower of %zu parameters (trained from %zu), the GPU's has %zu (from %zu)", what,
           vt->np, vt->goff, g->np, g->goff);
}

extern "C" void bm_cuda_vt_download(bm_cuda_vt *g, bm_vit_train *vt) {
  same_shape(g, vt, "bm_cuda_vt_download");
  bmct_download(g->c, vt->p, g->P, g->np * 4);
}

extern "C" void bm_cuda_vt_download_grads(bm_cuda_vt *g, bm_vit_train *vt) {
  same_shape(g, vt, "bm_cuda_vt_download_grads");
  if (g->Gr && vt->g) bmct_download(g->c, vt->g, g->Gr, g->ng * 4);
}

extern "C" void bm_cuda_vt_upload(bm_cuda_vt *g, const bm_vit_train *vt) {
  same_shape(g, vt, "bm_cuda_vt_upload");
  bmct_upload(g->c, g->P, vt->p, g->np * 4);
  bm_cuda_vt_refresh(g);
}
