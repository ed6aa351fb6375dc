/* train_fusion.cu - the co-attention fusion module on the GPU
 * (bmcuda_fusion.h): fusion.c's forward and backward, step for step, on
 * the kernels of bmcuda_train.h plus the attention of train_fusion_attn.cu.
 *
 * Memory: P (fp32 masters) and G (fp32 gradients) are flat buffers in
 * bm_fusion's layout; Pc is the compute-type copy of P (P itself for
 * fp32) that the GEMMs read. Activations follow fusion.c's
 * bm_fusion_stream_acts: the residual streams x, y, z and the LayerNorm
 * statistics fp32, the attention probabilities fp32, everything else in the
 * compute type.
 *
 * Rows of xt in no text: the input copy zeroes them, and the attention
 * outputs are zeroed before each attention (the kernels write only rows in
 * a sequence), so every activation there is finite, the backward's d stays
 * exactly 0 there (the attention backward buffers are zeroed first too) and
 * dxt gets 0 on them, as on the CPU. */
#include <limits.h>
#include <string.h>

#include "bmcuda_fusion.h"
#include "train_internal.cuh"

/* fusion.c's tensors of one stream in one layer, in p's order (checked by
 * name when a module is made) */
enum { K_LN1W, K_LN1B, K_QKVW, K_QKVB, K_PROJW, K_PROJB, K_LN2W, K_LN2B, K_CQW, K_CQB, K_CKVW,
       K_CKVB, K_CPROJW, K_CPROJB, K_LN3W, K_LN3B, K_FC1W, K_FC1B, K_FC2W, K_FC2B, K_NT };
#define PRE 4 /* img_in W, b; txt_in W, b */
static const char *const k_suffix[K_NT] = {
    "ln1.weight", "ln1.bias", "self.qkv.weight", "self.qkv.bias", "self.proj.weight",
    "self.proj.bias", "ln2.weight", "ln2.bias", "cross.q.weight", "cross.q.bias",
    "cross.kv.weight", "cross.kv.bias", "cross.proj.weight", "cross.proj.bias", "ln3.weight",
    "ln3.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
static const char *const tail_name[4] = {"fusion.img_norm.weight", "fusion.img_norm.bias",
                                         "fusion.txt_norm.weight", "fusion.txt_norm.bias"};
static const char *const in_name[4] = {"fusion.img_in.weight", "fusion.img_in.bias",
                                       "fusion.txt_in.weight", "fusion.txt_in.bias"};

/* one stream in one layer (fusion.h's bm_fusion_stream_acts) */
struct sacts {
  float *x, *m1, *r1, *P1, *y, *m2, *r2, *P2, *z, *m3, *r3;  /* fp32 */
  void *ln1, *qkv, *att, *ln2, *cq, *ckv, *catt, *ln3, *pre, *hh; /* compute type */
};

struct bm_cuda_fusion {
  bmct_ctx *c;
  bm_cuda *cu;
  int prec;
  size_t e;
  bm_fusion_cfg cfg;
  int F, M, H, L, D[2];
  size_t np;
  bm_fusion_tensor *t;
  int nt;
  float *P, *G;
  void *Pc;
  /* the last forward */
  int fwd, B, N[2];
  bm_fusion_attn self[2], cross[2]; /* cross[s]: queries of s, keys/values of the other */
  /* what the buffers below were made for */
  int capN[2], capB;
  size_t capP1[2], capP2[2];
  bm_dev_list mem;
  sacts *la; /* [L*2]: layer l stream s at l*2 + s */
  int *ints; /* start[2][B], len[2][B], seq of each row [N0], [N1] */
  long long *poff; /* [4][B]: self img, self txt, cross img, cross txt */
  void *in[2];
  float *h[2], *pin[2], *pooled[2], *mf[2], *rf[2];
  float *d[2], *dln[2], *dpin[2], *dpooled[2], *dS;
  void *dT[2], *datt[2], *dqkv[2], *dcq[2], *dckv[2], *dh[2];
};

/* tensor indices */
static int lk(const bm_cuda_fusion *g, int l, int s, int k) { (void)g; return PRE + (l * 2 + s) * K_NT + k; }
static int tk(const bm_cuda_fusion *g, int i) { return PRE + g->L * 2 * K_NT + i; }
static float *pm(bm_cuda_fusion *g, int i) { return g->P + g->t[i].off; }
static float *gr(bm_cuda_fusion *g, int i) { return g->G + g->t[i].off; }
static void *wc(bm_cuda_fusion *g, int i) { return (char *)g->Pc + g->t[i].off * g->e; }

static void check_layout(const bm_fusion *f) {
  const bm_fusion_cfg *c = &f->cfg;
  int want = PRE + 2 * K_NT * c->layers + 4;
  if (f->nt != want) bm_die("internal error: GPU fusion: %d tensors, expected %d", f->nt, want);
  char n[128];
  for (int i = 0; i < f->nt; i++) {
    if (i < PRE) snprintf(n, sizeof n, "%s", in_name[i]);
    else if (i >= want - 4) snprintf(n, sizeof n, "%s", tail_name[i - (want - 4)]);
    else {
      int j = i - PRE, l = j / (2 * K_NT), s = j / K_NT % 2, k = j % K_NT;
      snprintf(n, sizeof n, "fusion.layers.%d.%s.%s", l, s ? "txt" : "img", k_suffix[k]);
    }
    if (strcmp(n, f->t[i].name))
      bm_die("internal error: GPU fusion: tensor %d is %s, expected %s", i, f->t[i].name, n);
  }
}

extern "C" bm_cuda_fusion *bm_cuda_fusion_new(const bm_fusion *f, bm_cuda *cu, int prec) {
  const char *why = bm_fusion_check_cfg(&f->cfg);
  if (why) bm_die("GPU fusion: %s", why);
  if (prec != BMCT_FP32 && prec != BMCT_BF16 && prec != BMCT_FP16) bm_die("GPU fusion: precision %d", prec);
  check_layout(f);
  bm_cuda_fusion *g = (bm_cuda_fusion *)bm_xcalloc(1, sizeof *g);
  g->c = bmct_ctx_new(cu);
  g->cu = cu;
  g->prec = prec, g->e = bm_prec_size((bm_prec)prec);
  g->cfg = f->cfg;
  g->F = f->cfg.F, g->M = f->cfg.mlp, g->H = f->cfg.heads, g->L = f->cfg.layers;
  g->D[0] = f->cfg.Di, g->D[1] = f->cfg.Dt;
  g->np = f->np, g->nt = f->nt;
  g->t = (bm_fusion_tensor *)bm_xmalloc(sizeof(bm_fusion_tensor) * (size_t)f->nt);
  memcpy(g->t, f->t, sizeof(bm_fusion_tensor) * (size_t)f->nt);
  g->P = (float *)bm_cuda_malloc(g->np * 4, "fusion parameters");
  g->G = (float *)bm_cuda_malloc(g->np * 4, "fusion gradients");
  g->Pc = prec == BMCT_FP32 ? (void *)g->P : bm_cuda_malloc(g->np * g->e, "fusion compute-type weights");
  bm_cuda_fusion_upload(g, f);
  bm_cuda_fusion_zero_grad(g);
  bmct_sync(g->c);
  return g;
}

static void acts_free(bm_cuda_fusion *g) {
  bm_dev_free_all(&g->mem);
  free(g->la);
  g->la = NULL;
  g->capN[0] = g->capN[1] = g->capB = 0;
  g->capP1[0] = g->capP1[1] = g->capP2[0] = g->capP2[1] = 0;
}

extern "C" void bm_cuda_fusion_free(bm_cuda_fusion *g) {
  if (!g) return;
  bmct_sync(g->c);
  acts_free(g);
  if (g->Pc != g->P) bm_cuda_free(g->Pc);
  bm_cuda_free(g->P), bm_cuda_free(g->G);
  bmct_ctx_free(g->c);
  free(g->t);
  free(g);
}

extern "C" const bm_fusion_cfg *bm_cuda_fusion_cfg(const bm_cuda_fusion *g) { return &g->cfg; }
extern "C" int bm_cuda_fusion_prec(const bm_cuda_fusion *g) { return g->prec; }
extern "C" size_t bm_cuda_fusion_np(const bm_cuda_fusion *g) { return g->np; }
extern "C" float *bm_cuda_fusion_params(bm_cuda_fusion *g) { return g->P; }
extern "C" float *bm_cuda_fusion_grads(bm_cuda_fusion *g) { return g->G; }
extern "C" void *bm_cuda_fusion_params_compute(bm_cuda_fusion *g) { return g->Pc == g->P ? NULL : g->Pc; }
extern "C" const bm_fusion_tensor *bm_cuda_fusion_tensors(const bm_cuda_fusion *g, int *nt) {
  *nt = g->nt;
  return g->t;
}
extern "C" void bm_cuda_fusion_refresh(bm_cuda_fusion *g) {
  if (g->Pc != g->P) bm_cuda_convert(g->cu, g->Pc, (bm_prec)g->prec, g->P, g->np);
}
extern "C" void bm_cuda_fusion_zero_grad(bm_cuda_fusion *g) { CK(cudaMemsetAsync(g->G, 0, g->np * 4, g->c->st)); }

static void same_cfg(const bm_cuda_fusion *g, const bm_fusion *f, const char *who) {
  const bm_fusion_cfg *a = &g->cfg, *b = &f->cfg;
  if (a->Di != b->Di || a->Dt != b->Dt || a->F != b->F || a->layers != b->layers || a->heads != b->heads ||
      a->mlp != b->mlp || a->combine != b->combine || g->np != f->np)
    bm_die("internal error: %s: the CPU fusion module's configuration differs from the GPU's", who);
}
extern "C" void bm_cuda_fusion_download(bm_cuda_fusion *g, bm_fusion *f) {
  same_cfg(g, f, "bm_cuda_fusion_download");
  bmct_download(g->c, f->p, g->P, g->np * 4);
}
extern "C" void bm_cuda_fusion_download_grads(bm_cuda_fusion *g, bm_fusion *f) {
  same_cfg(g, f, "bm_cuda_fusion_download_grads");
  bmct_download(g->c, f->g, g->G, g->np * 4);
}
extern "C" void bm_cuda_fusion_upload(bm_cuda_fusion *g, const bm_fusion *f) {
  same_cfg(g, f, "bm_cuda_fusion_upload");
  bmct_upload(g->c, g->P, f->p, g->np * 4);
  bm_cuda_fusion_refresh(g);
  bmct_sync(g->c);
}

/* ---- small kernels ---- */

/* dst (T) = src rows, or 0 on rows in no sequence (seq < 0) */
template <typename T> __global__ void fuk_in(T *dst, const float *src, const int *seq, int N, int D) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= (size_t)N * D) return;
  dst[i] = st<T>(seq[i / D] >= 0 ? src[i] : 0.0f);
}
/* out = [pooled_img, pooled_txt] or their mean */
__global__ void fuk_combine(float *out, const float *pi, const float *pt, int B, int F, int mean) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  int b = i / F, j = i % F;
  if (mean) out[i] = 0.5f * (pi[i] + pt[i]);
  else out[(size_t)b * 2 * F + j] = pi[i], out[(size_t)b * 2 * F + F + j] = pt[i];
}
__global__ void fuk_split(float *dpi, float *dpt, const float *dout, int B, int F, int mean) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  int b = i / F, j = i % F;
  if (mean) dpi[i] = dpt[i] = 0.5f * dout[i];
  else dpi[i] = dout[(size_t)b * 2 * F + j], dpt[i] = dout[(size_t)b * 2 * F + F + j];
}
/* d[rows[b]] = src[b] (rows of F) */
__global__ void fuk_scatter_rows(float *d, const float *src, const int *rows, int B, int F) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  d[(size_t)rows[i / F] * F + i % F] = src[i];
}

/* ---- activations ---- */

static void *dev(bm_cuda_fusion *g, size_t bytes) {
  return bm_dev_keep(&g->mem, bm_cuda_malloc(bytes ? bytes : 4, "fusion activations"));
}
static float *devf(bm_cuda_fusion *g, size_t n) { return (float *)dev(g, n * 4); }
static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

/* Buffers for N[s] rows, B sequences and the attention probabilities of
 * P1 (self) and P2 (cross) floats per stream; kept when they are big
 * enough, else all made again at the larger of old and new sizes. */
static void reserve(bm_cuda_fusion *g, const int N[2], int B, const size_t P1[2], const size_t P2[2]) {
  int fits = g->la && B <= g->capB;
  for (int s = 0; s < 2; s++) fits = fits && N[s] <= g->capN[s] && P1[s] <= g->capP1[s] && P2[s] <= g->capP2[s];
  if (fits) return;
  int cN[2], cB = B > g->capB ? B : g->capB;
  size_t c1[2], c2[2];
  for (int s = 0; s < 2; s++) {
    cN[s] = N[s] > g->capN[s] ? N[s] : g->capN[s];
    c1[s] = zmax(P1[s], g->capP1[s]), c2[s] = zmax(P2[s], g->capP2[s]);
  }
  bmct_sync(g->c);
  acts_free(g);
  size_t F = g->F, M = g->M, e = g->e;
  g->la = (sacts *)bm_xcalloc((size_t)(2 * g->L + 1), sizeof(sacts));
  for (int l = 0; l < g->L; l++)
    for (int s = 0; s < 2; s++) {
      sacts *a = &g->la[2 * l + s];
      size_t n = (size_t)cN[s], no = (size_t)cN[1 - s];
      a->x = devf(g, n * F), a->m1 = devf(g, n), a->r1 = devf(g, n), a->P1 = devf(g, c1[s]);
      a->y = devf(g, n * F), a->m2 = devf(g, n), a->r2 = devf(g, n), a->P2 = devf(g, c2[s]);
      a->z = devf(g, n * F), a->m3 = devf(g, n), a->r3 = devf(g, n);
      a->ln1 = dev(g, n * F * e), a->qkv = dev(g, n * 3 * F * e), a->att = dev(g, n * F * e);
      a->ln2 = dev(g, n * F * e), a->cq = dev(g, n * F * e), a->ckv = dev(g, no * 2 * F * e);
      a->catt = dev(g, n * F * e), a->ln3 = dev(g, n * F * e), a->pre = dev(g, n * M * e);
      a->hh = dev(g, n * M * e);
    }
  size_t mp = 1;
  for (int s = 0; s < 2; s++) {
    size_t n = (size_t)cN[s], no = (size_t)cN[1 - s], b = (size_t)cB;
    g->in[s] = dev(g, n * g->D[s] * e), g->h[s] = devf(g, n * F);
    g->pin[s] = devf(g, b * F), g->pooled[s] = devf(g, b * F), g->mf[s] = devf(g, b), g->rf[s] = devf(g, b);
    g->d[s] = devf(g, n * F), g->dln[s] = devf(g, n * F), g->dpin[s] = devf(g, b * F);
    g->dpooled[s] = devf(g, b * F);
    g->dT[s] = g->prec == BMCT_FP32 ? (void *)g->d[s] : dev(g, n * F * e);
    g->datt[s] = dev(g, n * F * e), g->dqkv[s] = dev(g, n * 3 * F * e), g->dcq[s] = dev(g, n * F * e);
    g->dckv[s] = dev(g, no * 2 * F * e), g->dh[s] = dev(g, n * M * e);
    mp = zmax(mp, zmax(c1[s], c2[s]));
  }
  g->dS = devf(g, mp);
  g->ints = (int *)dev(g, sizeof(int) * ((size_t)4 * cB + (size_t)cN[0] + (size_t)cN[1]));
  g->poff = (long long *)dev(g, sizeof(long long) * 4 * (size_t)cB);
  for (int s = 0; s < 2; s++) g->capN[s] = cN[s], g->capP1[s] = c1[s], g->capP2[s] = c2[s];
  g->capB = cB;
}

/* ---- forward ---- */

static void copy_f32(bm_cuda_fusion *g, float *dst, const float *src, size_t n) {
  CK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, g->c->st));
}

/* Y[N,out] (fp32 residual += when beta 1, or yt) = X Wc^T + b */
static void linear(bm_cuda_fusion *g, void *Y, int y_f32, const void *X, int wi, int bi, int N, int in, int out,
                   float beta) {
  bm_cuda_gemm(g->cu, Y, y_f32 ? BM_PREC_FP32 : (bm_prec)g->prec, X, wc(g, wi), (bm_prec)g->prec, pm(g, bi), N, in,
               out, 1.0f, beta);
}

/* Checks the sequences, makes room, fills the device bookkeeping and g's
 * attention descriptions, B and N. */
static void sequences(bm_cuda_fusion *g, int B, int Ti, const int *tstart, const int *tlen) {
  int H = g->H, hd = g->F / g->H;
  if (B < 1 || Ti < 1) bm_die("GPU fusion: batch %d of %d image tokens: need at least one of each", B, Ti);
  if ((long long)B * Ti > INT_MAX / 4) bm_die("GPU fusion: %d images of %d tokens is too many rows", B, Ti);
  long long nt = 0;
  for (int s = 0; s < B; s++) {
    if (tlen[s] < 1 || tstart[s] < 0 || (long long)tstart[s] + tlen[s] > INT_MAX / 4)
      bm_die("GPU fusion: text %d has %d tokens at row %d: need at least one ([CLS])", s, tlen[s], tstart[s]);
    if (tstart[s] + tlen[s] > nt) nt = tstart[s] + tlen[s];
  }
  int N[2] = {B * Ti, (int)nt};
  size_t P1[2] = {0, 0}, P2[2] = {0, 0};
  long long *ho = (long long *)bm_xmalloc(sizeof(long long) * 4 * (size_t)B);
  for (int s = 0; s < B; s++) {
    size_t ti = (size_t)Ti, tt = (size_t)tlen[s];
    ho[s] = (long long)P1[0], ho[B + s] = (long long)P1[1];
    ho[2 * B + s] = (long long)P2[0], ho[3 * B + s] = (long long)P2[1];
    P1[0] += (size_t)H * ti * ti, P1[1] += (size_t)H * tt * tt;
    P2[0] += (size_t)H * ti * tt, P2[1] += (size_t)H * tt * ti;
  }
  reserve(g, N, B, P1, P2);
  /* start[0], len[0], start[1], len[1], seq[0], seq[1] */
  size_t ni = (size_t)4 * B + (size_t)N[0] + (size_t)N[1];
  int *hi = (int *)bm_xmalloc(sizeof(int) * ni);
  int *st0 = hi, *ln0 = hi + B, *st1 = hi + 2 * B, *ln1 = hi + 3 * B, *sq0 = hi + 4 * B, *sq1 = sq0 + N[0];
  for (int s = 0; s < B; s++) st0[s] = s * Ti, ln0[s] = Ti, st1[s] = tstart[s], ln1[s] = tlen[s];
  for (int r = 0; r < N[0]; r++) sq0[r] = r / Ti;
  for (int r = 0; r < N[1]; r++) sq1[r] = -1;
  for (int s = 0; s < B; s++)
    for (int r = tstart[s]; r < tstart[s] + tlen[s]; r++) {
      if (sq1[r] >= 0)
        bm_die("GPU fusion: texts %d and %d overlap at row %d (each row belongs to one text)", sq1[r], s, r);
      sq1[r] = s;
    }
  bmct_upload(g->c, g->ints, hi, sizeof(int) * ni);
  bmct_upload(g->c, g->poff, ho, sizeof(long long) * 4 * (size_t)B);
  free(hi), free(ho);
  const int *start[2] = {g->ints, g->ints + 2 * B}, *len[2] = {g->ints + B, g->ints + 3 * B};
  const int *seq[2] = {g->ints + 4 * B, g->ints + 4 * B + N[0]};
  for (int s = 0; s < 2; s++) {
    int o = 1 - s;
    g->self[s] = bm_fusion_attn{B, H, hd, N[s], N[s], start[s], len[s], start[s], len[s], seq[s], seq[s],
                                g->poff + (size_t)s * B, P1[s]};
    g->cross[s] = bm_fusion_attn{B, H, hd, N[s], N[o], start[s], len[s], start[o], len[o], seq[s], seq[o],
                                 g->poff + (size_t)(2 + s) * B, P2[s]};
  }
  g->B = B, g->N[0] = N[0], g->N[1] = N[1];
}

extern "C" void bm_cuda_fusion_forward(bm_cuda_fusion *g, const float *xi, int B, int Ti, const float *xt,
                                       const int *tstart, const int *tlen, float *out) {
  bmct_ctx *c = g->c;
  int F = g->F, M = g->M, L = g->L, p = g->prec, *N = g->N;
  g->fwd = 0;
  sequences(g, B, Ti, tstart, tlen);
  const float *x[2] = {xi, xt};
  for (int s = 0; s < 2; s++) {
    size_t n = (size_t)N[s] * g->D[s];
    BMCT_DISPATCH(p, T, fuk_in<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)g->in[s], x[s], g->self[s].qseq, N[s],
                                                                       g->D[s]));
    CKL("fusion input");
    linear(g, L ? g->la[s].x : g->h[s], 1, g->in[s], 2 * s, 2 * s + 1, N[s], g->D[s], F, 0.0f);
  }
  size_t Fb = (size_t)F * g->e;
  for (int l = 0; l < L; l++) {
    /* self-attention of both streams first: the cross-attention reads both LN2s */
    for (int s = 0; s < 2; s++) {
      sacts *a = &g->la[2 * l + s];
      bmct_layernorm_fwd(c, p, 0, a->ln1, a->m1, a->r1, a->x, pm(g, lk(g, l, s, K_LN1W)), pm(g, lk(g, l, s, K_LN1B)),
                         N[s], F, BM_FUSION_EPS);
      linear(g, a->qkv, 0, a->ln1, lk(g, l, s, K_QKVW), lk(g, l, s, K_QKVB), N[s], F, 3 * F, 0.0f);
      CK(cudaMemsetAsync(a->att, 0, (size_t)N[s] * Fb, c->st));
      char *qkv = (char *)a->qkv;
      bm_fusion_attn_fwd(g->cu, p, &g->self[s], a->att, F, a->P1, qkv, 3 * F, qkv + Fb, qkv + 2 * Fb, 3 * F);
      copy_f32(g, a->y, a->x, (size_t)N[s] * F);
      linear(g, a->y, 1, a->att, lk(g, l, s, K_PROJW), lk(g, l, s, K_PROJB), N[s], F, F, 1.0f); /* y = x + proj */
      bmct_layernorm_fwd(c, p, 0, a->ln2, a->m2, a->r2, a->y, pm(g, lk(g, l, s, K_LN2W)), pm(g, lk(g, l, s, K_LN2B)),
                         N[s], F, BM_FUSION_EPS);
    }
    for (int s = 0; s < 2; s++) {
      int o = 1 - s;
      sacts *a = &g->la[2 * l + s], *ao = &g->la[2 * l + o];
      linear(g, a->cq, 0, a->ln2, lk(g, l, s, K_CQW), lk(g, l, s, K_CQB), N[s], F, F, 0.0f);        /* q from n_s */
      linear(g, a->ckv, 0, ao->ln2, lk(g, l, s, K_CKVW), lk(g, l, s, K_CKVB), N[o], F, 2 * F, 0.0f); /* kv from n_o */
      CK(cudaMemsetAsync(a->catt, 0, (size_t)N[s] * Fb, c->st));
      char *kv = (char *)a->ckv;
      bm_fusion_attn_fwd(g->cu, p, &g->cross[s], a->catt, F, a->P2, a->cq, F, kv, kv + Fb, 2 * F);
      copy_f32(g, a->z, a->y, (size_t)N[s] * F);
      linear(g, a->z, 1, a->catt, lk(g, l, s, K_CPROJW), lk(g, l, s, K_CPROJB), N[s], F, F, 1.0f); /* z = y + cross */
      bmct_layernorm_fwd(c, p, 0, a->ln3, a->m3, a->r3, a->z, pm(g, lk(g, l, s, K_LN3W)), pm(g, lk(g, l, s, K_LN3B)),
                         N[s], F, BM_FUSION_EPS);
      linear(g, a->pre, 0, a->ln3, lk(g, l, s, K_FC1W), lk(g, l, s, K_FC1B), N[s], F, M, 0.0f);
      bmct_bias_gelu(c, p, a->pre, a->hh, NULL, N[s], M);
      float *next = l + 1 < L ? g->la[2 * (l + 1) + s].x : g->h[s];
      copy_f32(g, next, a->z, (size_t)N[s] * F);
      linear(g, next, 1, a->hh, lk(g, l, s, K_FC2W), lk(g, l, s, K_FC2B), N[s], M, F, 1.0f); /* h = z + mlp */
    }
  }
  /* pooled_s = LNf_s(token 0 of each sequence) */
  for (int s = 0; s < 2; s++) {
    bm_cuda_gather_rows(g->cu, g->pin[s], g->h[s], g->self[s].qstart, B, F);
    bmct_layernorm_fwd(c, p, 1, g->pooled[s], g->mf[s], g->rf[s], g->pin[s], pm(g, tk(g, 2 * s)), pm(g, tk(g, 2 * s + 1)),
                       B, F, BM_FUSION_EPS);
  }
  g->fwd = 1;
  if (!out) return;
  fuk_combine<<<nblocks((size_t)B * F, 256), 256, 0, c->st>>>(out, g->pooled[0], g->pooled[1], B, F,
                                                              g->cfg.combine == BM_FUSE_MEAN);
  CKL("fusion combine");
}

/* ---- backward ---- */

/* dT = d in the compute type (d itself for fp32) with db += its column sums */
static void *to_compute(bm_cuda_fusion *g, int s, float *db) {
  int n = g->N[s];
  bmct_convert_colsum(g->c, g->prec, g->dT[s] != g->d[s] ? g->dT[s] : NULL, db, g->d[s], n, g->F);
  return g->dT[s];
}

extern "C" void bm_cuda_fusion_backward(bm_cuda_fusion *g, const float *dout, float *dxi, float *dxt) {
  if (!g->fwd) bm_die("internal error: GPU fusion: backward without a forward");
  bmct_ctx *c = g->c;
  int F = g->F, M = g->M, L = g->L, B = g->B, p = g->prec, *N = g->N;
  size_t Fb = (size_t)F * g->e;
  fuk_split<<<nblocks((size_t)B * F, 256), 256, 0, c->st>>>(g->dpooled[0], g->dpooled[1], dout, B, F,
                                                            g->cfg.combine == BM_FUSE_MEAN);
  CKL("fusion split");
  for (int s = 0; s < 2; s++) {
    bmct_layernorm_backward(c, g->dpin[s], gr(g, tk(g, 2 * s)), gr(g, tk(g, 2 * s + 1)), g->dpooled[s], g->pin[s],
                            g->mf[s], g->rf[s], pm(g, tk(g, 2 * s)), B, F, 0);
    /* d = dL/dh: 0 but on token 0 of each sequence */
    CK(cudaMemsetAsync(g->d[s], 0, (size_t)N[s] * F * 4, c->st));
    fuk_scatter_rows<<<nblocks((size_t)B * F, 256), 256, 0, c->st>>>(g->d[s], g->dpin[s], g->self[s].qstart, B, F);
    CKL("fusion pool backward");
  }
  for (int l = L - 1; l >= 0; l--) {
#define P_(k) pm(g, lk(g, l, s, k))
#define W_(k) wc(g, lk(g, l, s, k))
#define G_(k) gr(g, lk(g, l, s, k))
    for (int s = 0; s < 2; s++) { /* MLP: d = dL/dh -> dL/dz */
      sacts *a = &g->la[2 * l + s];
      void *dT = to_compute(g, s, G_(K_FC2B));
      bmct_linear_backward(c, p, g->dh[s], 0, G_(K_FC2W), NULL, dT, a->hh, W_(K_FC2W), N[s], M, F, 0);
      bmct_gelu_backward_db(c, p, g->dh[s], G_(K_FC1B), g->dh[s], a->pre, N[s], M);
      bmct_linear_backward(c, p, g->dln[s], 1, G_(K_FC1W), NULL, g->dh[s], a->ln3, W_(K_FC1W), N[s], F, M, 0);
      bmct_layernorm_backward(c, g->d[s], G_(K_LN3W), G_(K_LN3B), g->dln[s], a->z, a->m3, a->r3, P_(K_LN3W), N[s], F,
                              1);
    }
    for (int s = 0; s < 2; s++) { /* cross-attention of s: dq of n_s, dkv of n_o */
      int o = 1 - s;
      sacts *a = &g->la[2 * l + s];
      void *dT = to_compute(g, s, G_(K_CPROJB));
      bmct_linear_backward(c, p, g->datt[s], 0, G_(K_CPROJW), NULL, dT, a->catt, W_(K_CPROJW), N[s], F, F, 0);
      /* rows in no sequence are not written by the kernels */
      CK(cudaMemsetAsync(g->dcq[s], 0, (size_t)N[s] * Fb, c->st));
      CK(cudaMemsetAsync(g->dckv[s], 0, (size_t)N[o] * 2 * Fb, c->st));
      char *kv = (char *)a->ckv, *dkv = (char *)g->dckv[s];
      bm_fusion_attn_bwd(g->cu, p, &g->cross[s], g->dcq[s], F, dkv, dkv + Fb, 2 * F, g->dS, g->datt[s], F, a->P2,
                         a->cq, F, kv, kv + Fb, 2 * F);
    }
    for (int s = 0; s < 2; s++) { /* n_s feeds s's queries and o's keys/values: d += LN2'(dn) */
      int o = 1 - s;
      sacts *a = &g->la[2 * l + s];
      bmct_linear_backward(c, p, g->dln[s], 1, G_(K_CQW), G_(K_CQB), g->dcq[s], a->ln2, W_(K_CQW), N[s], F, F, 0);
      bmct_linear_backward(c, p, g->dln[s], 1, gr(g, lk(g, l, o, K_CKVW)), gr(g, lk(g, l, o, K_CKVB)), g->dckv[o],
                           a->ln2, wc(g, lk(g, l, o, K_CKVW)), N[s], F, 2 * F, 1);
      bmct_layernorm_backward(c, g->d[s], G_(K_LN2W), G_(K_LN2B), g->dln[s], a->y, a->m2, a->r2, P_(K_LN2W), N[s], F,
                              1);
    }
    for (int s = 0; s < 2; s++) { /* self-attention: d = dL/dy -> dL/dx */
      sacts *a = &g->la[2 * l + s];
      void *dT = to_compute(g, s, G_(K_PROJB));
      bmct_linear_backward(c, p, g->datt[s], 0, G_(K_PROJW), NULL, dT, a->att, W_(K_PROJW), N[s], F, F, 0);
      CK(cudaMemsetAsync(g->dqkv[s], 0, (size_t)N[s] * 3 * Fb, c->st));
      char *qkv = (char *)a->qkv, *dqkv = (char *)g->dqkv[s];
      bm_fusion_attn_bwd(g->cu, p, &g->self[s], dqkv, 3 * F, dqkv + Fb, dqkv + 2 * Fb, 3 * F, g->dS, g->datt[s], F,
                         a->P1, qkv, 3 * F, qkv + Fb, qkv + 2 * Fb, 3 * F);
      bmct_linear_backward(c, p, g->dln[s], 1, G_(K_QKVW), G_(K_QKVB), g->dqkv[s], a->ln1, W_(K_QKVW), N[s], F, 3 * F,
                           0);
      bmct_layernorm_backward(c, g->d[s], G_(K_LN1W), G_(K_LN1B), g->dln[s], a->x, a->m1, a->r1, P_(K_LN1W), N[s], F,
                              1);
    }
#undef P_
#undef W_
#undef G_
  }
  float *dx[2] = {dxi, dxt};
  for (int s = 0; s < 2; s++) {
    void *dT = to_compute(g, s, gr(g, 2 * s + 1));
    bmct_linear_backward(c, p, dx[s], 1, gr(g, 2 * s), NULL, dT, g->in[s], wc(g, 2 * s), N[s], g->D[s], F, 0);
  }
}
