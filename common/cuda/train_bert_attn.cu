/* train_bert_attn.cu - attention over packed variable-length texts for
 * training (bmcuda_train.h): the text tower packs its texts token after
 * token, so train_attention.cu's equal-length batches do not fit.
 *
 * bf16 / fp16 with head dim 64 (BERT-base) go to k_flash.cu, which already
 * takes packed sequences and keeps the log-sum-exp. Everything else (fp32,
 * the tests' small head dims) runs the plain kernels below: one warp per
 * (token, head), lane l owning dims l, l+32, ..; scores are dot products
 * reduced across the warp, the softmax is online. They keep the same lse as
 * the flash forward, so the backward is the same algorithm (FlashAttention-2:
 * P recomputed from q, k, lse; D = rowsum(dO * O)), split in two kernels that
 * each own what they write: one per query row (dq), one per key row (dk, dv,
 * summing over the text's queries). Nothing is accumulated with atomics, so
 * the results are the same bits every run. They are O(len^2 hd) per text and
 * head on CUDA cores: fine for fp32 checks and short texts, not meant to
 * compete with the tensor-core path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bmcuda_fwd.h"
#include "train_internal.cuh"

#define MAXKD 4 /* head dim up to 32 * MAXKD */

extern "C" int bmct_varlen_attention_flash(int prec, int C, int heads) {
  const char *sw = getenv("BM_CUDA_ATTN");
  return bm_cuda_flash_ok((bm_prec)prec, C, heads) &&
         !(sw && (!strcmp(sw, "fused-fp32") || !strcmp(sw, "batched")));
}

static size_t al(size_t b) { return (b + 255) & ~(size_t)255; }

/* enough for either path whatever BM_CUDA_ATTN says later: the switch is
 * read at each call */
extern "C" size_t bmct_varlen_attention_scratch(int prec, int ntok, int C, int heads) {
  size_t plain = al((size_t)ntok * heads * sizeof(float)); /* D */
  if (!bm_cuda_flash_ok((bm_prec)prec, C, heads)) return plain;
  size_t flash = bm_cuda_flash_backward_scratch(ntok, C, heads);
  return flash > plain ? flash : plain;
}

/* this lane's dims of head h of row r (stride rs, column offset col) as fp32 */
template <typename T, int KD>
__device__ __forceinline__ void load_head(float v[KD], const T *base, size_t r, size_t rs, int col, int hd, int lane) {
#pragma unroll
  for (int k = 0; k < KD; k++) {
    int d = lane + 32 * k;
    v[k] = d < hd ? ld(base[r * rs + col + d]) : 0.0f;
  }
}
template <int KD> __device__ __forceinline__ float dot(const float a[KD], const float b[KD]) {
  float s = 0;
#pragma unroll
  for (int k = 0; k < KD; k++) s += a[k] * b[k];
  return warp_sum(s);
}

template <typename T, int KD>
__global__ void ctk_vattn_fwd(T *out, float *lse, const T *qkv, const int *start, const int *len, const int *tseq,
                              int ntok, int C, int H, float scale) {
  int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (w >= ntok * H) return; /* whole warps leave together: the shuffles below see full warps */
  int i = w / H, h = w % H, hd = C / H, s = tseq[i], L = len[s];
  size_t st0 = (size_t)start[s], rs = 3 * (size_t)C;
  float q[KD], kk[KD], vv[KD], acc[KD], m = -INFINITY, l = 0;
  load_head<T, KD>(q, qkv, (size_t)i, rs, h * hd, hd, lane);
#pragma unroll
  for (int k = 0; k < KD; k++) acc[k] = 0;
  for (int j = 0; j < L; j++) {
    load_head<T, KD>(kk, qkv, st0 + j, rs, C + h * hd, hd, lane);
    load_head<T, KD>(vv, qkv, st0 + j, rs, 2 * C + h * hd, hd, lane);
    float sc = dot<KD>(q, kk) * scale, mn = fmaxf(m, sc), corr = expf(m - mn), p = expf(sc - mn);
    l = l * corr + p;
#pragma unroll
    for (int k = 0; k < KD; k++) acc[k] = acc[k] * corr + p * vv[k];
    m = mn;
  }
#pragma unroll
  for (int k = 0; k < KD; k++) {
    int d = lane + 32 * k;
    if (d < hd) out[(size_t)i * C + h * hd + d] = st<T>(acc[k] / l);
  }
  if (lane == 0) lse[(size_t)i * H + h] = m + logf(l);
}

/* per query row i: D_i = dO_i . O_i (kept for the key kernel), and
 * dq_i = scale sum_j P_ij (dO_i . v_j - D_i) k_j */
template <typename T, int KD>
__global__ void ctk_vattn_bwd_q(T *dqkv, float *Dr, const T *dout, const T *qkv, const T *out, const float *lse,
                                const int *start, const int *len, const int *tseq, int ntok, int C, int H,
                                float scale) {
  int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (w >= ntok * H) return;
  int i = w / H, h = w % H, hd = C / H, s = tseq[i], L = len[s];
  size_t st0 = (size_t)start[s], rs = 3 * (size_t)C;
  float q[KD], dO[KD], o[KD], kk[KD], vv[KD], acc[KD];
  load_head<T, KD>(q, qkv, (size_t)i, rs, h * hd, hd, lane);
  load_head<T, KD>(dO, dout, (size_t)i, (size_t)C, h * hd, hd, lane);
  load_head<T, KD>(o, out, (size_t)i, (size_t)C, h * hd, hd, lane);
  float D = dot<KD>(dO, o), li = lse[(size_t)i * H + h];
  if (lane == 0) Dr[(size_t)i * H + h] = D;
#pragma unroll
  for (int k = 0; k < KD; k++) acc[k] = 0;
  for (int j = 0; j < L; j++) {
    load_head<T, KD>(kk, qkv, st0 + j, rs, C + h * hd, hd, lane);
    load_head<T, KD>(vv, qkv, st0 + j, rs, 2 * C + h * hd, hd, lane);
    float p = expf(dot<KD>(q, kk) * scale - li), ds = p * (dot<KD>(dO, vv) - D);
#pragma unroll
    for (int k = 0; k < KD; k++) acc[k] += ds * kk[k];
  }
#pragma unroll
  for (int k = 0; k < KD; k++) {
    int d = lane + 32 * k;
    if (d < hd) dqkv[(size_t)i * rs + h * hd + d] = st<T>(acc[k] * scale);
  }
}

/* per key row j: dv_j = sum_i P_ij dO_i, dk_j = scale sum_i P_ij (dO_i . v_j - D_i) q_i */
template <typename T, int KD>
__global__ void ctk_vattn_bwd_kv(T *dqkv, const float *Dr, const T *dout, const T *qkv, const float *lse,
                                 const int *start, const int *len, const int *tseq, int ntok, int C, int H,
                                 float scale) {
  int w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (w >= ntok * H) return;
  int j = w / H, h = w % H, hd = C / H, s = tseq[j], L = len[s];
  size_t st0 = (size_t)start[s], rs = 3 * (size_t)C;
  float kk[KD], vv[KD], q[KD], dO[KD], dk[KD], dv[KD];
  load_head<T, KD>(kk, qkv, (size_t)j, rs, C + h * hd, hd, lane);
  load_head<T, KD>(vv, qkv, (size_t)j, rs, 2 * C + h * hd, hd, lane);
#pragma unroll
  for (int k = 0; k < KD; k++) dk[k] = dv[k] = 0;
  for (int a = 0; a < L; a++) {
    size_t i = st0 + a;
    load_head<T, KD>(q, qkv, i, rs, h * hd, hd, lane);
    load_head<T, KD>(dO, dout, i, (size_t)C, h * hd, hd, lane);
    float p = expf(dot<KD>(q, kk) * scale - lse[i * H + h]), ds = p * (dot<KD>(dO, vv) - Dr[i * H + h]);
#pragma unroll
    for (int k = 0; k < KD; k++) dv[k] += p * dO[k], dk[k] += ds * q[k];
  }
#pragma unroll
  for (int k = 0; k < KD; k++) {
    int d = lane + 32 * k;
    if (d < hd) {
      dqkv[(size_t)j * rs + C + h * hd + d] = st<T>(dk[k] * scale);
      dqkv[(size_t)j * rs + 2 * C + h * hd + d] = st<T>(dv[k]);
    }
  }
}

static int kd_of(int C, int heads) {
  int hd = heads > 0 && C % heads == 0 ? C / heads : 0;
  if (hd < 1 || hd > 32 * MAXKD)
    bm_die("attention: width %d with %d heads: head dim must divide it and be 1 to %d", C, heads, 32 * MAXKD);
  return hd <= 32 ? 1 : hd <= 64 ? 2 : 4;
}

/* 8 warps a block, one warp per (row, head) */
#define WARPS 8
#define LAUNCH(kern, ...)                                                                                   \
  do {                                                                                                      \
    unsigned nb = nblocks((size_t)ntok * heads, WARPS);                                                     \
    switch (kd_of(C, heads)) {                                                                              \
    case 1: BMCT_DISPATCH(prec, T, kern<T, 1><<<nb, 32 * WARPS, 0, c->st>>>(__VA_ARGS__)); break;            \
    case 2: BMCT_DISPATCH(prec, T, kern<T, 2><<<nb, 32 * WARPS, 0, c->st>>>(__VA_ARGS__)); break;            \
    default: BMCT_DISPATCH(prec, T, kern<T, 4><<<nb, 32 * WARPS, 0, c->st>>>(__VA_ARGS__)); break;           \
    }                                                                                                       \
    CKL(#kern);                                                                                             \
  } while (0)

extern "C" void bmct_varlen_attention_fwd(bmct_ctx *c, int prec, void *out, float *lse, const void *qkv,
                                          const int *start, const int *len, const int *tseq, int nseq,
                                          int maxlen, int ntok, int C, int heads) {
  if (nseq <= 0 || ntok <= 0) return;
  if (bmct_varlen_attention_flash(prec, C, heads)) {
    bm_cuda_flash_attention(c->cu, out, lse, qkv, (bm_prec)prec, start, len, nseq, maxlen, C, heads);
    return;
  }
  float scale = 1.0f / sqrtf((float)(C / heads));
  LAUNCH(ctk_vattn_fwd, (T *)out, lse, (const T *)qkv, start, len, tseq, ntok, C, heads, scale);
}

extern "C" void bmct_varlen_attention_backward(bmct_ctx *c, int prec, void *dqkv, const void *dout,
                                               const void *qkv, const void *out, const float *lse,
                                               const int *start, const int *len, const int *tseq, int nseq,
                                               int maxlen, int ntok, int C, int heads, void *scratch) {
  if (nseq <= 0 || ntok <= 0) return;
  if (bmct_varlen_attention_flash(prec, C, heads)) {
    bm_cuda_flash_attention_backward(c->cu, dqkv, dout, qkv, out, lse, (bm_prec)prec, start, len, nseq, maxlen,
                                     ntok, C, heads, scratch);
    return;
  }
  float scale = 1.0f / sqrtf((float)(C / heads)), *Dr = (float *)scratch;
  /* the key kernel reads every query row's D: stream order puts it after the query kernel */
  LAUNCH(ctk_vattn_bwd_q, (T *)dqkv, Dr, (const T *)dout, (const T *)qkv, (const T *)out, lse, start, len, tseq,
         ntok, C, heads, scale);
  LAUNCH(ctk_vattn_bwd_kv, (T *)dqkv, Dr, (const T *)dout, (const T *)qkv, lse, start, len, tseq, ntok, C, heads,
         scale);
}
