/* train_fusion_attn.cu - the fusion module's attention (bmcuda_fusion.h):
 * self-attention within packed sequences of any lengths and
 * cross-attention from one packed set of rows to another, one kernel set
 * for both, with bw_attention.c / bw_xattn.c's arithmetic.
 *
 * Why new kernels: bmct_attention_* (train_attention.cu) take B sequences
 * of one length T, and the flash kernels (k_flash.cu) need bf16/fp16, head
 * dim 64 and queries and keys from the same rows of one qkv matrix. The
 * fusion needs variable text lengths, fp32, any head dim, and queries from
 * one stream with keys from the other. So these are plain kernels that
 * write each (sequence, head)'s scores to memory (fp32, the CPU's P layout)
 * and take the softmax in fp32: one warp per (query row, head) for the
 * forward and for dS and dq, one warp per (key row, head) for dk and dv.
 * No tensor cores, no tiling: the fusion's attention (2 layers, 16 x 12
 * heads x 197 x ~100 tokens) is small next to the towers, every output is
 * one warp's sum in a fixed order (no atomics: deterministic), and each
 * kernel is short enough to check by reading. */
#include <math.h>

#include "bmcuda_fusion.h"
#include "train_internal.cuh"

#define WARPS 8 /* warps a block */

/* q[r] (one head's hd values) into this warp's shared row, fp32 */
template <typename T>
__device__ __forceinline__ float *row_to_shared(float *sh, const T *x, int hd, int lane) {
  float *s = sh + (threadIdx.x >> 5) * hd;
  for (int d = lane; d < hd; d += 32) s[d] = ld(x[d]);
  __syncwarp();
  return s;
}

/* The (row, head) of this warp, its sequence s and place i in it; 0 when the
 * warp has no work (past the end, or a row in no sequence). */
__device__ __forceinline__ int task_of(int nrows, int heads, const int *seq, const int *start, int *r,
                                       int *h, int *s, int *i) {
  long long t = (long long)blockIdx.x * WARPS + (threadIdx.x >> 5);
  if (t >= (long long)nrows * heads) return 0;
  *r = (int)(t / heads), *h = (int)(t % heads), *s = seq[*r];
  if (*s < 0) return 0;
  *i = *r - start[*s];
  return 1;
}

/* P[i, :] = softmax(scale q_i . k_j), out_i = sum_j P[i, j] v_j */
template <typename T>
__global__ void __launch_bounds__(32 * WARPS)
fak_fwd(T *out, int ldo, float *P, const T *q, int ldq, const T *k, const T *v, int ldk, bm_fusion_attn a,
        float scale) {
  extern __shared__ float sh[]; /* [WARPS][hd] */
  int lane = threadIdx.x & 31, r, h, s, i;
  if (!task_of(a.nq, a.heads, a.qseq, a.qstart, &r, &h, &s, &i)) return;
  int hd = a.hd, Tq = a.qlen[s], Tk = a.klen[s];
  const float *qs = row_to_shared(sh, q + (size_t)r * ldq + (size_t)h * hd, hd, lane);
  float *Pr = P + a.poff[s] + ((size_t)h * Tq + i) * Tk;
  size_t kv0 = (size_t)a.kstart[s] * ldk + (size_t)h * hd;
  float m = -INFINITY;
  for (int j = lane; j < Tk; j += 32) {
    const T *kr = k + kv0 + (size_t)j * ldk;
    float acc = 0.0f;
    for (int d = 0; d < hd; d++) acc += qs[d] * ld(kr[d]);
    acc *= scale;
    Pr[j] = acc;
    m = fmaxf(m, acc);
  }
  m = warp_max(m);
  float z = 0.0f;
  for (int j = lane; j < Tk; j += 32) {
    float e = expf(Pr[j] - m);
    Pr[j] = e;
    z += e;
  }
  float inv = 1.0f / warp_sum(z);
  for (int j = lane; j < Tk; j += 32) Pr[j] *= inv;
  __syncwarp(); /* every lane reads the whole row below */
  T *o = out + (size_t)r * ldo + (size_t)h * hd;
  for (int d = lane; d < hd; d += 32) {
    float acc = 0.0f;
    for (int j = 0; j < Tk; j++) acc += Pr[j] * ld(v[kv0 + (size_t)j * ldk + d]);
    o[d] = st<T>(acc);
  }
}

/* dP[i, j] = dO_i . v_j; dS[i, :] = P (dP - sum_j P dP); dq_i = scale sum_j dS[i, j] k_j */
template <typename T>
__global__ void __launch_bounds__(32 * WARPS)
fak_bwd_q(T *dq, int lddq, float *dS, const T *dout, int lddo, const float *P, const T *k, const T *v, int ldk,
          bm_fusion_attn a, float scale) {
  extern __shared__ float sh[]; /* [WARPS][hd] */
  int lane = threadIdx.x & 31, r, h, s, i;
  if (!task_of(a.nq, a.heads, a.qseq, a.qstart, &r, &h, &s, &i)) return;
  int hd = a.hd, Tq = a.qlen[s], Tk = a.klen[s];
  const float *dos = row_to_shared(sh, dout + (size_t)r * lddo + (size_t)h * hd, hd, lane);
  size_t po = a.poff[s] + ((size_t)h * Tq + i) * Tk;
  const float *Pr = P + po;
  float *dSr = dS + po;
  size_t kv0 = (size_t)a.kstart[s] * ldk + (size_t)h * hd;
  float dot = 0.0f;
  for (int j = lane; j < Tk; j += 32) {
    const T *vr = v + kv0 + (size_t)j * ldk;
    float acc = 0.0f;
    for (int d = 0; d < hd; d++) acc += dos[d] * ld(vr[d]);
    dSr[j] = acc;
    dot += Pr[j] * acc;
  }
  dot = warp_sum(dot);
  for (int j = lane; j < Tk; j += 32) dSr[j] = Pr[j] * (dSr[j] - dot);
  __syncwarp(); /* every lane reads the whole row below */
  if (!dq) return;
  T *o = dq + (size_t)r * lddq + (size_t)h * hd;
  for (int d = lane; d < hd; d += 32) {
    float acc = 0.0f;
    for (int j = 0; j < Tk; j++) acc += dSr[j] * ld(k[kv0 + (size_t)j * ldk + d]);
    o[d] = st<T>(scale * acc);
  }
}

/* dk_j = scale sum_i dS[i, j] q_i, dv_j = sum_i P[i, j] dO_i (column j of
 * the sequence's P and dS) */
template <typename T>
__global__ void __launch_bounds__(32 * WARPS)
fak_bwd_kv(T *dk, T *dv, int lddk, const float *dS, const float *P, const T *q, int ldq, const T *dout, int lddo,
           bm_fusion_attn a, float scale) {
  int lane = threadIdx.x & 31, r, h, s, j;
  if (!task_of(a.nk, a.heads, a.kseq, a.kstart, &r, &h, &s, &j)) return;
  int hd = a.hd, Tq = a.qlen[s], Tk = a.klen[s];
  size_t po = a.poff[s] + (size_t)h * Tq * Tk + j;
  const T *qb = q + (size_t)a.qstart[s] * ldq + (size_t)h * hd;
  const T *ob = dout + (size_t)a.qstart[s] * lddo + (size_t)h * hd;
  for (int d = lane; d < hd; d += 32) {
    float ak = 0.0f, av = 0.0f;
    for (int i = 0; i < Tq; i++) {
      size_t pi = po + (size_t)i * Tk;
      ak += dS[pi] * ld(qb[(size_t)i * ldq + d]);
      av += P[pi] * ld(ob[(size_t)i * lddo + d]);
    }
    size_t o = (size_t)r * lddk + (size_t)h * hd + d;
    if (dk) dk[o] = st<T>(scale * ak);
    if (dv) dv[o] = st<T>(av);
  }
}

static unsigned blocks_for(int rows, int heads) {
  long long n = ((long long)rows * heads + WARPS - 1) / WARPS;
  if (n > 0x7fffffffLL) bm_die("fusion attention: %d rows x %d heads is too many", rows, heads);
  return (unsigned)(n ? n : 1);
}
static size_t shared_for(int hd) {
  size_t b = (size_t)WARPS * hd * sizeof(float);
  if (b > 48 * 1024) bm_die("fusion attention: head dim %d is over the GPU kernels' 1536", hd);
  return b;
}

extern "C" void bm_fusion_attn_fwd(bm_cuda *cu, int prec, const bm_fusion_attn *a, void *out, int ldo, float *P,
                                   const void *q, int ldq, const void *k, const void *v, int ldk) {
  if (a->nq <= 0 || a->nseq <= 0) return;
  float scale = 1.0f / sqrtf((float)a->hd);
  BMCT_DISPATCH(prec, T,
                fak_fwd<T><<<blocks_for(a->nq, a->heads), 32 * WARPS, shared_for(a->hd), bm_cs(cu)>>>(
                    (T *)out, ldo, P, (const T *)q, ldq, (const T *)k, (const T *)v, ldk, *a, scale));
  CKL("fusion attention forward");
}

extern "C" void bm_fusion_attn_bwd(bm_cuda *cu, int prec, const bm_fusion_attn *a, void *dq, int lddq, void *dk,
                                   void *dv, int lddk, float *dS, const void *dout, int lddo, const float *P,
                                   const void *q, int ldq, const void *k, const void *v, int ldk) {
  if (a->nq <= 0 || a->nseq <= 0) return;
  float scale = 1.0f / sqrtf((float)a->hd);
  BMCT_DISPATCH(prec, T, {
    fak_bwd_q<T><<<blocks_for(a->nq, a->heads), 32 * WARPS, shared_for(a->hd), bm_cs(cu)>>>(
        (T *)dq, lddq, dS, (const T *)dout, lddo, P, (const T *)k, (const T *)v, ldk, *a, scale);
    CKL("fusion attention backward (dS, dq)");
    if (dk || dv) {
      fak_bwd_kv<T><<<blocks_for(a->nk, a->heads), 32 * WARPS, 0, bm_cs(cu)>>>(
          (T *)dk, (T *)dv, lddk, dS, P, (const T *)q, ldq, (const T *)dout, lddo, *a, scale);
      CKL("fusion attention backward (dk, dv)");
    }
  });
}
