/* train_attention.cu - attention for training with the probabilities kept
 * (bmcuda_train.h): q, k, v are permuted to [B*heads, T, hd] so that each
 * product is one strided-batched GEMM (as llm.c does); scores are fp32, the
 * probabilities P are stored in the compute type for the backward.
 * ViT-B at batch 256: P is 256*12*197^2 values, 238 MB a layer in bf16; the
 * fused (flash) forward of the inference path keeps none, but recomputing P
 * in the backward would cost a second QK^T per layer for 3% of the
 * activations' memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bmcuda_fwd.h"
#include "train_internal.cuh"

static size_t al(size_t b) { return (b + 255) & ~(size_t)255; }

/* bf16 / fp16 with head dim 64 go through the tensor-core flash kernels
 * (k_flash.cu): "P" then holds the fp32 log-sum-exp per (row, head) and P
 * itself is recomputed in the backward. BM_CUDA_ATTN=batched keeps the
 * batched-GEMM path below for comparison. */
static int use_flash(int prec, int C, int heads) {
  const char *sw = getenv("BM_CUDA_ATTN");
  return bm_cuda_flash_ok((bm_prec)prec, C, heads) && !(sw && !strcmp(sw, "batched"));
}

/* flash: the backward's scratch, then start/len of the B sequences */
__global__ void ctk_seqs(int *sl, int B, int T) {
  int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b < B) sl[b] = b * T, sl[B + b] = T;
}
static int *flash_seqs(bmct_ctx *c, void *scratch, int B, int T, int C, int heads) {
  int *sl = (int *)((char *)scratch + al(bm_cuda_flash_backward_scratch(B * T, C, heads)));
  ctk_seqs<<<nblocks((size_t)B, 256), 256, 0, c->st>>>(sl, B, T);
  CKL("attention sequences");
  return sl;
}

extern "C" size_t bmct_attention_scratch(int prec, int B, int T, int C, int heads) {
  if (use_flash(prec, C, heads)) return al(bm_cuda_flash_backward_scratch(B * T, C, heads)) + al(sizeof(int) * 2 * B);
  size_t e = bm_prec_size((bm_prec)prec), BTC = (size_t)B * T * C, BHTT = (size_t)B * heads * T * T;
  /* q, k, v; o / do; dq, dk, dv; S (fp32); dS */
  return 3 * al(BTC * e) + al(BTC * e) + 3 * al(BTC * e) + al(BHTT * 4) + al(BHTT * e);
}

struct attn_scratch {
  char *q, *k, *v, *o, *dq, *dk, *dv, *dS;
  float *S;
};
static attn_scratch carve(void *scratch, int prec, int B, int T, int C, int heads) {
  size_t e = bm_prec_size((bm_prec)prec), BTC = (size_t)B * T * C, BHTT = (size_t)B * heads * T * T;
  char *p = (char *)scratch;
  attn_scratch s;
  s.q = p, p += al(BTC * e);
  s.k = p, p += al(BTC * e);
  s.v = p, p += al(BTC * e);
  s.o = p, p += al(BTC * e);
  s.dq = p, p += al(BTC * e);
  s.dk = p, p += al(BTC * e);
  s.dv = p, p += al(BTC * e);
  s.S = (float *)p, p += al(BHTT * 4);
  s.dS = p;
  return s;
}

/* [B*T, ld] rows, head h's hd columns at col0 + h*hd  <->  [B*H, T, hd] */
template <typename T> __global__ void ctk_gather(T *dst, const T *src, int B, int Tn, int H, int hd, int ld, int col0) {
  size_t n = (size_t)B * H * Tn * hd, i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  int d = (int)(i % hd), t = (int)(i / hd % Tn), h = (int)(i / ((size_t)hd * Tn) % H);
  size_t b = i / ((size_t)hd * Tn * H);
  dst[i] = src[(b * Tn + t) * ld + col0 + h * hd + d];
}
template <typename T> __global__ void ctk_scatter(T *dst, const T *src, int B, int Tn, int H, int hd, int ld, int col0) {
  size_t n = (size_t)B * H * Tn * hd, i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= n) return;
  int d = (int)(i % hd), t = (int)(i / hd % Tn), h = (int)(i / ((size_t)hd * Tn) % H);
  size_t b = i / ((size_t)hd * Tn * H);
  dst[(b * Tn + t) * ld + col0 + h * hd + d] = src[i];
}

template <typename T> static void gather(bmct_ctx *c, void *dst, const void *src, int B, int Tn, int H, int hd, int ld, int col0) {
  size_t n = (size_t)B * H * Tn * hd;
  ctk_gather<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)dst, (const T *)src, B, Tn, H, hd, ld, col0);
  CKL("attention gather");
}
template <typename T> static void scatter(bmct_ctx *c, void *dst, const void *src, int B, int Tn, int H, int hd, int ld, int col0) {
  size_t n = (size_t)B * H * Tn * hd;
  ctk_scatter<T><<<nblocks(n, 256), 256, 0, c->st>>>((T *)dst, (const T *)src, B, Tn, H, hd, ld, col0);
  CKL("attention scatter");
}

/* P[row] = softmax(S[row]), one warp a row */
template <typename T> __global__ void ctk_softmax(T *P, const float *S, int rows, int n) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float *s = S + (size_t)row * n;
  float m = -INFINITY;
  for (int j = lane; j < n; j += 32) m = fmaxf(m, s[j]);
  m = warp_max(m);
  float z = 0;
  for (int j = lane; j < n; j += 32) z += expf(s[j] - m);
  float inv = 1.0f / warp_sum(z);
  for (int j = lane; j < n; j += 32) P[(size_t)row * n + j] = st<T>(expf(s[j] - m) * inv);
}

/* dS[row] = P * (dP - sum(P * dP)), dP fp32 */
template <typename T> __global__ void ctk_softmax_bwd(T *dS, const float *dP, const T *P, int rows, int n) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;
  size_t o = (size_t)row * n;
  float s = 0;
  for (int j = lane; j < n; j += 32) s += ld(P[o + j]) * dP[o + j];
  s = warp_sum(s);
  for (int j = lane; j < n; j += 32) dS[o + j] = st<T>(ld(P[o + j]) * (dP[o + j] - s));
}

/* q, k, v of qkv[B*T,3C] into the scratch's [B*H,T,hd] */
template <typename T> static void gather_qkv(bmct_ctx *c, attn_scratch *s, const void *qkv, int B, int Tn, int C, int H) {
  int hd = C / H;
  gather<T>(c, s->q, qkv, B, Tn, H, hd, 3 * C, 0);
  gather<T>(c, s->k, qkv, B, Tn, H, hd, 3 * C, C);
  gather<T>(c, s->v, qkv, B, Tn, H, hd, 3 * C, 2 * C);
}

template <typename T>
static void fwd(bmct_ctx *c, int prec, void *out, void *P, const void *qkv, int B, int Tn, int C, int H, void *scratch) {
  int hd = C / H, BH = B * H;
  float scale = 1.0f / sqrtf((float)hd);
  attn_scratch s = carve(scratch, prec, B, Tn, C, H);
  gather_qkv<T>(c, &s, qkv, B, Tn, C, H);
  long long sq = (long long)Tn * hd, sp = (long long)Tn * Tn;
  /* S = scale q k^T (fp32) */
  bmct_gemm(c, prec, 1, 0, 1, Tn, Tn, hd, scale, s.q, hd, sq, s.k, hd, sq, 0.0f, s.S, Tn, sp, BH);
  ctk_softmax<T><<<nblocks((size_t)BH * Tn, 8), 256, 0, c->st>>>((T *)P, s.S, BH * Tn, Tn);
  CKL("attention softmax");
  /* o = P v */
  bmct_gemm(c, prec, 0, 0, 0, Tn, hd, Tn, 1.0f, P, Tn, sp, s.v, hd, sq, 0.0f, s.o, hd, sq, BH);
  scatter<T>(c, out, s.o, B, Tn, H, hd, C, 0);
}

template <typename T>
static void bwd(bmct_ctx *c, int prec, void *dqkv, const void *dout, const void *qkv, const void *P, int B, int Tn,
                int C, int H, void *scratch) {
  int hd = C / H, BH = B * H;
  float scale = 1.0f / sqrtf((float)hd);
  attn_scratch s = carve(scratch, prec, B, Tn, C, H);
  gather_qkv<T>(c, &s, qkv, B, Tn, C, H);
  gather<T>(c, s.o, dout, B, Tn, H, hd, C, 0); /* dO */
  long long sq = (long long)Tn * hd, sp = (long long)Tn * Tn;
  /* dP = dO v^T (fp32, in S) */
  bmct_gemm(c, prec, 1, 0, 1, Tn, Tn, hd, 1.0f, s.o, hd, sq, s.v, hd, sq, 0.0f, s.S, Tn, sp, BH);
  /* dv = P^T dO */
  bmct_gemm(c, prec, 0, 1, 0, Tn, hd, Tn, 1.0f, P, Tn, sp, s.o, hd, sq, 0.0f, s.dv, hd, sq, BH);
  ctk_softmax_bwd<T><<<nblocks((size_t)BH * Tn, 8), 256, 0, c->st>>>((T *)s.dS, s.S, (const T *)P, BH * Tn, Tn);
  CKL("attention softmax backward");
  /* scores were scale q k^T: dq = scale dS k, dk = scale dS^T q */
  bmct_gemm(c, prec, 0, 0, 0, Tn, hd, Tn, scale, s.dS, Tn, sp, s.k, hd, sq, 0.0f, s.dq, hd, sq, BH);
  bmct_gemm(c, prec, 0, 1, 0, Tn, hd, Tn, scale, s.dS, Tn, sp, s.q, hd, sq, 0.0f, s.dk, hd, sq, BH);
  scatter<T>(c, dqkv, s.dq, B, Tn, H, hd, 3 * C, 0);
  scatter<T>(c, dqkv, s.dk, B, Tn, H, hd, 3 * C, C);
  scatter<T>(c, dqkv, s.dv, B, Tn, H, hd, 3 * C, 2 * C);
}

extern "C" void bmct_attention_fwd(bmct_ctx *c, int prec, void *out, void *P, const void *qkv, int B, int T,
                                   int C, int heads, void *scratch) {
  if (use_flash(prec, C, heads)) {
    int *sl = flash_seqs(c, scratch, B, T, C, heads);
    bm_cuda_flash_attention(c->cu, out, (float *)P, qkv, (bm_prec)prec, sl, sl + B, B, T, C, heads);
    return;
  }
  BMCT_DISPATCH(prec, E, fwd<E>(c, prec, out, P, qkv, B, T, C, heads, scratch));
}

extern "C" void bmct_attention_backward(bmct_ctx *c, int prec, void *dqkv, const void *dout, const void *qkv,
                                        const void *out, const void *P, int B, int T, int C, int heads,
                                        void *scratch) {
  if (use_flash(prec, C, heads)) {
    int *sl = flash_seqs(c, scratch, B, T, C, heads);
    bm_cuda_flash_attention_backward(c->cu, dqkv, dout, qkv, out, (const float *)P, (bm_prec)prec, sl, sl + B, B,
                                     T, B * T, C, heads, scratch);
    return;
  }
  BMCT_DISPATCH(prec, E, bwd<E>(c, prec, dqkv, dout, qkv, P, B, T, C, heads, scratch));
}
