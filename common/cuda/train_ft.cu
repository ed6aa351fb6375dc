/* train_ft.cu - the fine-tuning step of finetune.h on the GPU
 * (bmcuda_train.h): the image tower + linear head, forward, backward and
 * AdamW, with the CPU's semantics (vit_train.c, finetune.c).
 *
 * Memory: one flat fp32 buffer of parameters laid out as the CPU's
 *   [ tower p (vit_train.h's order) | head.weight [C,E] | head.bias [C] ]
 * so that what trains is a suffix from goff, as on the CPU: the gradients and
 * the AdamW moments cover that suffix only. Pc is the compute-type copy of
 * the tower (GEMM operands; fp32 uses P itself), refreshed by the AdamW
 * kernel. The residual stream, LayerNorm statistics and the tail (final
 * norm, projection, L2 norm, head, loss) are fp32; the block activations are
 * stored in the compute type. */
#include <math.h>
#include <string.h>

#include "train_internal.cuh"


enum { B_LN1W, B_LN1B, B_QKVW, B_QKVB, B_PROJW, B_PROJB, B_LN2W, B_LN2B, B_FC1W, B_FC1B, B_FC2W,
       B_FC2B, B_NT };
#define PRE 4

struct layer_acts {
  float *x, *xm, *m1, *r1, *m2, *r2;        /* fp32 */
  void *ln1, *qkv, *P, *att, *ln2, *pre, *h; /* compute type */
};

struct prm {
  size_t off, n;
  int group;
};

struct bm_cuda_ft {
  bmct_ctx *c;
  int prec;
  size_t e;
  int S, Pp, G, GG, T, W, D, H, M, E, C, multilabel, first, embed_trains, frozen;
  float eps;
  size_t np, goff, ntot, ng;
  float *P, *Gr, *Mo, *Vo, *pw;
  void *Pc;
  size_t *toff;
  int nt;
  prm *prms;
  int nprm;
  double *glr, *gwd, b1, b2, aeps;
  long step;
  float dropout;
  uint64_t seed;
  float scale;
  int good;
  /* activations for up to cap images */
  int cap, nslot, lastB;
  layer_acts *L;
  float *img, *x, *patches, *pin, *pooled, *mf, *rf, *raw, *emb, *xemb, *logits, *dlogits, *Y;
  float *demb, *draw, *dpooled, *dpin, *d, *dln;
  void *cols, *dT, *datt, *dqkv, *dh, *dpatch, *ascratch;
};

static float *pm(bm_cuda_ft *g, int i) { return g->P + g->toff[i]; }
static void *wc(bm_cuda_ft *g, int i) { return (char *)g->Pc + g->toff[i] * g->e; }
static float *gr(bm_cuda_ft *g, int i) {
  return g->Gr && g->toff[i] >= g->goff ? g->Gr + (g->toff[i] - g->goff) : NULL;
}
static float *ff(size_t n, const char *what) { return (float *)bm_cuda_malloc(n * 4, what); }

extern "C" bm_cuda_ft *bm_cuda_ft_init(const bm_ft *f, bm_cuda *cu, int prec) {
  bm_cuda_ft *g = (bm_cuda_ft *)bm_xcalloc(1, sizeof *g);
  const bm_vit_train *vt = &f->vt;
  const bm_vit *v = &vt->v;
  g->c = bmct_ctx_new(cu);
  g->prec = prec, g->e = bm_prec_size((bm_prec)prec);
  g->S = v->image_size, g->Pp = v->patch, g->G = v->grid, g->GG = v->grid * v->grid, g->T = v->ntok;
  g->W = v->width, g->D = v->depth, g->H = v->heads, g->M = v->mlp, g->E = v->embed_dim, g->C = f->C;
  g->eps = v->eps, g->multilabel = f->multilabel;
  g->first = vt->first, g->embed_trains = vt->embed_trains, g->frozen = vt->frozen;
  size_t CE = (size_t)f->C * f->E;
  g->np = vt->np, g->goff = vt->goff, g->ntot = vt->np + CE + f->C, g->ng = g->ntot - g->goff;
  g->nt = vt->nt;
  g->toff = (size_t *)bm_xmalloc(sizeof(size_t) * (size_t)vt->nt);
  for (int i = 0; i < vt->nt; i++) g->toff[i] = vt->t[i].off;

  bmct_ctx *c = g->c;
  g->P = ff(g->ntot, "parameters");
  bmct_upload(c, g->P, vt->p, g->np * 4);
  bmct_upload(c, g->P + g->np, f->W, CE * 4);
  bmct_upload(c, g->P + g->np + CE, f->b, (size_t)f->C * 4);
  if (prec == BMCT_FP32) g->Pc = g->P;
  else {
    g->Pc = bm_cuda_malloc(g->np * g->e, "compute-type weights");
    bm_cuda_convert(cu, g->Pc, (bm_prec)prec, g->P, g->np);
  }
  g->Gr = ff(g->ng, "gradients"), g->Mo = ff(g->ng, "AdamW m"), g->Vo = ff(g->ng, "AdamW v");
  CK(cudaMemsetAsync(g->Gr, 0, g->ng * 4, c->st));
  CK(cudaMemsetAsync(g->Mo, 0, g->ng * 4, c->st));
  CK(cudaMemsetAsync(g->Vo, 0, g->ng * 4, c->st));

  /* the optimizer's parameters: where each lives in the flat buffer */
  const bm_adamw *o = &f->opt;
  g->prms = (prm *)bm_xmalloc(sizeof(prm) * (size_t)(o->nparams ? o->nparams : 1));
  for (int k = 0; k < o->nparams; k++) {
    const bm_adamw_param *q = &o->params[k];
    size_t off;
    if (q->param >= vt->p && q->param < vt->p + vt->np) off = (size_t)(q->param - vt->p);
    else if (q->param == f->W) off = g->np;
    else if (q->param == f->b) off = g->np + CE;
    else bm_die("internal error: GPU fine-tuning: parameter %s is not the model's", q->name);
    if (off < g->goff || off + q->n > g->ntot)
      bm_die("internal error: GPU fine-tuning: parameter %s outside the trained suffix", q->name);
    g->prms[k] = prm{off, q->n, q->group};
    bmct_upload(c, g->Mo + (off - g->goff), q->m, q->n * 4);
    bmct_upload(c, g->Vo + (off - g->goff), q->v, q->n * 4);
  }
  g->nprm = o->nparams;
  g->glr = (double *)bm_xmalloc(sizeof(double) * 2 * (size_t)(o->ngroups ? o->ngroups : 1));
  g->gwd = g->glr + o->ngroups;
  for (int k = 0; k < o->ngroups; k++) g->glr[k] = o->groups[k].lr, g->gwd[k] = o->groups[k].weight_decay;
  g->b1 = o->beta1, g->b2 = o->beta2, g->aeps = o->eps, g->step = o->step;
  if (f->pw) {
    g->pw = ff((size_t)f->C, "pos_weight");
    bmct_upload(c, g->pw, f->pw, (size_t)f->C * 4);
  }
  g->dropout = f->dropout, g->seed = f->drop_seed;
  g->scale = prec == BMCT_FP16 ? 1024.0f : 1.0f; /* torch starts at 65536 and skips steps down to what fits; 1024 rarely overflows */
  bmct_sync(c);
  return g;
}

static void acts_free(bm_cuda_ft *g) {
  for (int i = 0; i < g->nslot; i++) {
    layer_acts *s = &g->L[i];
    bm_cuda_free(s->x), bm_cuda_free(s->xm), bm_cuda_free(s->m1), bm_cuda_free(s->r1);
    bm_cuda_free(s->m2), bm_cuda_free(s->r2), bm_cuda_free(s->ln1), bm_cuda_free(s->qkv);
    bm_cuda_free(s->P), bm_cuda_free(s->att), bm_cuda_free(s->ln2), bm_cuda_free(s->pre), bm_cuda_free(s->h);
  }
  free(g->L);
  g->L = NULL, g->nslot = 0;
  void *bufs[] = {g->img, g->x, g->patches, g->pin, g->pooled, g->mf, g->rf, g->raw, g->emb, g->xemb,
                  g->logits, g->dlogits, g->Y, g->demb, g->draw, g->dpooled, g->dpin, g->d, g->dln,
                  g->cols, g->datt, g->dqkv, g->dh, g->dpatch, g->ascratch};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) bm_cuda_free(bufs[i]);
  if (g->dT != g->d) bm_cuda_free(g->dT);
  g->cap = 0;
}

static void reserve(bm_cuda_ft *g, int B) {
  if (B <= g->cap) return;
  CK(cudaStreamSynchronize(g->c->st));
  acts_free(g);
  size_t N = (size_t)B * g->T, W = g->W, M = g->M, e = g->e, BG = (size_t)B * g->GG;
  size_t K = (size_t)3 * g->Pp * g->Pp, nP = (size_t)B * g->H * g->T * g->T;
  g->nslot = g->D - g->first + 1;
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
  size_t BE = (size_t)B * g->E, BC = (size_t)B * g->C, BW = (size_t)B * W;
  g->img = ff((size_t)B * 3 * g->S * g->S, "images"), g->x = ff(N * W, "residual stream");
  g->patches = ff(BG * W, "patches"), g->cols = bm_cuda_malloc(BG * K * e, "im2col");
  g->pin = ff(BW, "pooled"), g->pooled = ff(BW, "pooled"), g->mf = ff(B, "norm"), g->rf = ff(B, "norm");
  g->raw = ff(BE, "embeddings"), g->emb = ff(BE, "embeddings"), g->xemb = ff(BE, "embeddings");
  g->logits = ff(BC, "logits"), g->dlogits = ff(BC, "logits"), g->Y = ff(BC, "targets");
  g->demb = ff(BE, "gradients"), g->draw = ff(BE, "gradients"), g->dpooled = ff(BW, "gradients");
  g->dpin = ff(BW, "gradients"), g->d = ff(N * W, "gradients"), g->dln = ff(N * W, "gradients");
  g->dT = g->prec == BMCT_FP32 ? (void *)g->d : bm_cuda_malloc(N * W * e, "gradients");
  g->datt = bm_cuda_malloc(N * W * e, "gradients"), g->dqkv = bm_cuda_malloc(N * 3 * W * e, "gradients");
  g->dh = bm_cuda_malloc(N * M * e, "gradients"), g->dpatch = bm_cuda_malloc(BG * W * e, "gradients");
  g->ascratch = bm_cuda_malloc(bmct_attention_scratch(g->prec, B, g->T, g->W, g->H), "attention scratch");
  g->cap = B;
}

extern "C" void bm_cuda_ft_free(bm_cuda_ft *g) {
  if (!g) return;
  bmct_sync(g->c);
  acts_free(g);
  if (g->Pc != g->P) bm_cuda_free(g->Pc);
  bm_cuda_free(g->P), bm_cuda_free(g->Gr), bm_cuda_free(g->Mo), bm_cuda_free(g->Vo), bm_cuda_free(g->pw);
  bmct_ctx_free(g->c);
  free(g->toff), free(g->prms), free(g->glr);
  free(g);
}

/* One pre-norm block on g->x (fp32), activations into s (vit_train.c's block_fwd). */
static void block_fwd(bm_cuda_ft *g, int l, layer_acts *s, int B) {
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

/* img (host) -> g->logits; the input the head read is returned. async_in:
 * the images' copy is only queued (the caller synchronizes before img may
 * change: a loss download does), which page-locked img lets run as DMA */
static const float *forward(bm_cuda_ft *g, const float *img, int B, int train, uint64_t drop_step, int async_in) {
  reserve(g, B);
  bmct_ctx *c = g->c;
  int T = g->T, W = g->W, E = g->E, C = g->C, p = g->prec, K = 3 * g->Pp * g->Pp, BG = B * g->GG;
  int n = PRE + g->D * B_NT;
  if (async_in) CK(cudaMemcpyAsync(g->img, img, (size_t)B * 3 * g->S * g->S * 4, cudaMemcpyHostToDevice, c->st));
  else bmct_upload(c, g->img, img, (size_t)B * 3 * g->S * g->S * 4);
  /* patches = cols Wp^T + bp (fp32), x = tokens + pos */
  bm_cuda_im2col(c->cu, g->cols, (bm_prec)p, g->img, B, g->S, g->Pp);
  bm_cuda_gemm(c->cu, g->patches, BM_PREC_FP32, g->cols, wc(g, 0), (bm_prec)p, pm(g, 1), BG, K, W, 1.0f, 0.0f);
  bm_cuda_vit_tokens(c->cu, g->x, g->patches, pm(g, 2), pm(g, 3), B, T, W);
  for (int l = 0; l < g->D; l++) block_fwd(g, l, &g->L[l >= g->first ? l - g->first : g->nslot - 1], B);
  /* pin = token 0 of each image; pooled = LN(pin); raw = pooled head^T; emb = raw / |raw| */
  CK(cudaMemcpy2DAsync(g->pin, (size_t)W * 4, g->x, (size_t)T * W * 4, (size_t)W * 4, B, cudaMemcpyDeviceToDevice, c->st));
  bmct_layernorm_fwd(c, p, 1, g->pooled, g->mf, g->rf, g->pin, pm(g, n), pm(g, n + 1), B, W, g->eps);
  bmct_gemm(c, BMCT_FP32, 1, 0, 1, B, E, W, 1.0f, g->pooled, W, 0, pm(g, n + 2), W, 0, 0.0f, g->raw, E, 0, 1);
  bmct_l2norm_fwd(c, g->emb, g->raw, B, E);
  const float *xin = g->emb;
  if (train && g->dropout > 0) {
    bmct_dropout(c, g->xemb, g->emb, (size_t)B * E, g->dropout, g->seed, drop_step, 0);
    xin = g->xemb;
  }
  const float *Wh = g->P + g->np, *bh = Wh + (size_t)C * E;
  bm_cuda_gemm(c->cu, g->logits, BM_PREC_FP32, xin, Wh, BM_PREC_FP32, bh, B, E, C, 1.0f, 0.0f);
  g->lastB = B;
  return xin;
}

/* g->d = dL/d(block l's output) -> dL/d(its input); vit_train.c's block_bwd */
static void block_bwd(bm_cuda_ft *g, int l, int B, int need_dx) {
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

/* Forward and backward of one batch, its parameter gradients times lscale
 * (the loss scale, times a micro-batch's weight) added to g->Gr, zeroed
 * first when zero; async_in: the copies in are only queued (bmct_loss
 * synchronizes before this returns). bm_cuda_ft_grad is (g->scale, 1, 0). */
static double grad_core(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step, float lscale,
                        int zero, int async_in) {
  bmct_ctx *c = g->c;
  const float *xin = forward(g, img, B, 1, drop_step, async_in);
  int W = g->W, E = g->E, C = g->C, T = g->T, D = g->D, N = B * T, n = PRE + D * B_NT;
  if (zero) CK(cudaMemsetAsync(g->Gr, 0, g->ng * 4, c->st));
  if (async_in) CK(cudaMemcpyAsync(g->Y, Y, (size_t)B * C * 4, cudaMemcpyHostToDevice, c->st));
  else bmct_upload(c, g->Y, Y, (size_t)B * C * 4);
  double loss = bmct_loss(c, g->multilabel, g->logits, g->Y, g->pw, B, C, g->dlogits, lscale);
  /* head: gW += dlogits^T xin, gb += column sums */
  float *gW = g->Gr + (g->np - g->goff), *gb = gW + (size_t)C * E;
  const float *Wh = g->P + g->np;
  bmct_gemm(c, BMCT_FP32, 1, 1, 0, C, E, B, 1.0f, g->dlogits, C, 0, xin, E, 0, 1.0f, gW, E, 0, 1);
  bmct_colsum(c, BMCT_FP32, gb, g->dlogits, B, C);
  if (g->frozen) return loss;
  bmct_gemm(c, BMCT_FP32, 1, 0, 0, B, E, C, 1.0f, g->dlogits, C, 0, Wh, E, 0, 0.0f, g->demb, E, 0, 1);
  if (g->dropout > 0) bmct_dropout(c, g->demb, g->demb, (size_t)B * E, g->dropout, g->seed, drop_step, 0);
  bmct_l2norm_backward(c, g->draw, g->demb, g->raw, B, E);
  bmct_gemm(c, BMCT_FP32, 1, 0, 0, B, W, E, 1.0f, g->draw, E, 0, pm(g, n + 2), W, 0, 0.0f, g->dpooled, W, 0, 1);
  bmct_gemm(c, BMCT_FP32, 1, 1, 0, E, W, B, 1.0f, g->draw, E, 0, g->pooled, W, 0, 1.0f, gr(g, n + 2), W, 0, 1);
  bmct_layernorm_backward(c, g->dpin, gr(g, n), gr(g, n + 1), g->dpooled, g->pin, g->mf, g->rf, pm(g, n), B, W, 0);
  if (g->first == D) return loss;
  /* d = 0 but token 0 of each image = dpin */
  CK(cudaMemsetAsync(g->d, 0, (size_t)N * W * 4, c->st));
  CK(cudaMemcpy2DAsync(g->d, (size_t)T * W * 4, g->dpin, (size_t)W * 4, (size_t)W * 4, B, cudaMemcpyDeviceToDevice, c->st));
  for (int l = D - 1; l >= g->first; l--) block_bwd(g, l, B, l > g->first || g->embed_trains);
  if (!g->embed_trains) return loss;
  bmct_vit_tokens_backward(c, g->prec, g->dpatch, gr(g, 2), gr(g, 3), g->d, B, g->GG, W);
  bmct_patch_embed_backward(c, g->prec, gr(g, 0), gr(g, 1), g->dpatch, g->cols, B, g->S, g->Pp, W);
  return loss;
}

extern "C" double bm_cuda_ft_grad(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step) {
  return grad_core(g, img, Y, B, drop_step, g->scale, 1, 0);
}

extern "C" double bm_cuda_ft_grad_acc(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step,
                                      double weight, int first) {
  if (!(weight > 0 && weight <= 1)) bm_die("internal error: micro-batch weight %g", weight);
  /* weight 1: the loss scale itself (x * 1.0f == x), so that
   * (1, first) gives bm_cuda_ft_grad's bits */
  return grad_core(g, img, Y, B, drop_step, g->scale * (float)weight, first, 1);
}

extern "C" int bm_cuda_ft_step(bm_cuda_ft *g, double lr_scale, double max_norm, double *norm) {
  bmct_ctx *c = g->c;
  double sq = bmct_sumsq(c, g->Gr, g->ng);
  double nrm = sqrt(sq) / g->scale; /* the gradients carry the loss scale */
  if (norm) *norm = nrm;
  if (g->prec == BMCT_FP16 && !isfinite(sq)) {
    g->scale = g->scale > 1.0f ? g->scale / 2 : 1.0f;
    g->good = 0;
    return 0;
  }
  /* torch's clip_grad_norm_ (bm_clip_grad_norm): g *= max_norm / (norm + 1e-6) */
  float gs = 1.0f;
  if (max_norm > 0 && nrm > max_norm) gs = (float)(max_norm / (nrm + 1e-6));
  if (g->scale != 1.0f) gs = gs * (1.0f / g->scale);
  g->step++;
  for (int k = 0; k < g->nprm; k++) {
    const prm *q = &g->prms[k];
    void *w16 = g->Pc != g->P && q->off < g->np ? (char *)g->Pc + q->off * g->e : NULL;
    size_t o = q->off - g->goff;
    bmct_adamw(c, g->P + q->off, w16, g->prec, g->Gr + o, g->Mo + o, g->Vo + o, q->n, g->glr[q->group] * lr_scale,
               g->gwd[q->group], g->b1, g->b2, g->aeps, g->step, gs);
  }
  if (g->prec == BMCT_FP16 && ++g->good >= 2000) g->scale *= 2, g->good = 0;
  return 1;
}

extern "C" void bm_cuda_ft_last_logits(bm_cuda_ft *g, float *logits, int B) {
  if (B > g->lastB) bm_die("internal error: %d logits asked, %d computed", B, g->lastB);
  bmct_download(g->c, logits, g->logits, (size_t)B * g->C * 4);
}

extern "C" void bm_cuda_ft_logits(bm_cuda_ft *g, const float *img, int B, float *logits) {
  forward(g, img, B, 0, 0, 0);
  bm_cuda_ft_last_logits(g, logits, B);
}

extern "C" void bm_cuda_ft_download(bm_cuda_ft *g, bm_ft *f) {
  bmct_ctx *c = g->c;
  size_t CE = (size_t)g->C * g->E;
  bmct_download(c, f->vt.p, g->P, g->np * 4);
  bmct_download(c, f->W, g->P + g->np, CE * 4);
  bmct_download(c, f->b, g->P + g->np + CE, (size_t)g->C * 4);
  for (int k = 0; k < g->nprm && k < f->opt.nparams; k++) {
    size_t o = g->prms[k].off - g->goff;
    bmct_download(c, f->opt.params[k].m, g->Mo + o, g->prms[k].n * 4);
    bmct_download(c, f->opt.params[k].v, g->Vo + o, g->prms[k].n * 4);
  }
  f->opt.step = g->step;
}

extern "C" void bm_cuda_ft_download_grads(bm_cuda_ft *g, bm_ft *f) {
  bmct_ctx *c = g->c;
  size_t CE = (size_t)g->C * g->E;
  if (f->vt.g) bmct_download(c, f->vt.g, g->Gr, (g->np - g->goff) * 4);
  bmct_download(c, f->gW, g->Gr + (g->np - g->goff), CE * 4);
  bmct_download(c, f->gb, g->Gr + (g->np - g->goff) + CE, (size_t)g->C * 4);
  if (g->scale != 1.0f) {
    float s = 1.0f / g->scale;
    for (size_t i = 0; f->vt.g && i < g->np - g->goff; i++) f->vt.g[i] *= s;
    for (size_t i = 0; i < CE; i++) f->gW[i] *= s;
    for (int i = 0; i < g->C; i++) f->gb[i] *= s;
  }
}

extern "C" float bm_cuda_ft_loss_scale(const bm_cuda_ft *g) { return g->scale; }
