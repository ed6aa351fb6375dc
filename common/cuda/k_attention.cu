/* k_attention.cu - fused multi-head self attention forward over packed
 * variable-length sequences (the peer of bm_attention, no key mask).
 *
 * Block = (query tile of QT, head, sequence); a thread owns one query: its
 * q (pre-scaled by 1/sqrt(head dim): exact for 16, 64) and its output accumulator live in
 * registers. Keys and values stream through shared memory in tiles of KT
 * (fp32, broadcast reads: every thread reads the same key row). Per tile
 * the running max is updated once and the accumulator rescaled once
 * (online softmax), so scores never reach memory and the pass is single.
 * Math is fp32 on CUDA cores; the tiles are small enough (16 KiB) that
 * many blocks share an SM. */
#include <stdlib.h>
#include <string.h>

#include "bmcuda_fwd.h"
#include "cuda_int.cuh"

#define QT 64 /* queries per block */
#define KT 32 /* keys per shared-memory tile */

template <typename T, int HD>
__global__ void __launch_bounds__(QT)
    k_attention(T *out, const T *qkv, const int *start, const int *len, int C) {
  __shared__ float Ks[KT][HD], Vs[KT][HD];
  int s = blockIdx.z, h = blockIdx.y, L = len[s];
  size_t st = (size_t)start[s], ld = 3 * (size_t)C;
  int q0 = blockIdx.x * QT;
  if (q0 >= L) return; /* the whole block: no barrier is skipped by part of it */
  int qi = q0 + threadIdx.x;
  bool active = qi < L;
  float q[HD], acc[HD], m = -INFINITY, l = 0.0f;
#pragma unroll
  for (int d = 0; d < HD; d++) {
    q[d] = active ? bm_ld(qkv, (st + qi) * ld + h * HD + d) * rsqrtf((float)HD) : 0.0f;
    acc[d] = 0.0f;
  }
  for (int k0 = 0; k0 < L; k0 += KT) {
    __syncthreads(); /* the previous tile is consumed */
    for (int e = threadIdx.x; e < KT * HD; e += QT) {
      int kk = e / HD, d = e % HD, key = k0 + kk;
      float kv = 0.0f, vv = 0.0f;
      if (key < L) {
        size_t base = (st + key) * ld + h * HD + d;
        kv = bm_ld(qkv, base + C);
        vv = bm_ld(qkv, base + 2 * (size_t)C);
      }
      Ks[kk][d] = kv;
      Vs[kk][d] = vv;
    }
    __syncthreads();
    if (!active) continue;
    int nk = min(KT, L - k0);
    float sc[KT], mx = m;
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
      float dot = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d++) dot = fmaf(q[d], Ks[kk][d], dot);
      sc[kk] = kk < nk ? dot : -INFINITY;
      mx = fmaxf(mx, sc[kk]);
    }
    float corr = expf(m - mx); /* 0 on the first tile (m = -inf, mx finite) */
    l *= corr;
#pragma unroll
    for (int d = 0; d < HD; d++) acc[d] *= corr;
#pragma unroll
    for (int kk = 0; kk < KT; kk++) {
      float p = expf(sc[kk] - mx);
      l += p;
#pragma unroll
      for (int d = 0; d < HD; d++) acc[d] = fmaf(p, Vs[kk][d], acc[d]);
    }
    m = mx;
  }
  if (!active) return;
  float inv = 1.0f / l;
#pragma unroll
  for (int d = 0; d < HD; d++) bm_st(out, (st + qi) * C + h * HD + d, acc[d] * inv);
}

template <typename T>
static void attention(bm_cuda *c, void *out, const void *qkv, const int *start, const int *len,
                      int nseq, int maxlen, int C, int heads) {
  int hd = C / heads;
  /* grid z is at most 65535: larger batches of sequences go in pieces */
  for (int s0 = 0; s0 < nseq; s0 += 65535) {
    int ns = nseq - s0 < 65535 ? nseq - s0 : 65535;
    dim3 grid((unsigned)((maxlen + QT - 1) / QT), (unsigned)heads, (unsigned)ns);
    if (hd == 64)
      k_attention<T, 64><<<grid, QT, 0, bm_cs(c)>>>((T *)out, (const T *)qkv, start + s0, len + s0, C);
    else if (hd == 32)
      k_attention<T, 32><<<grid, QT, 0, bm_cs(c)>>>((T *)out, (const T *)qkv, start + s0, len + s0, C);
    else
      k_attention<T, 16><<<grid, QT, 0, bm_cs(c)>>>((T *)out, (const T *)qkv, start + s0, len + s0, C);
    CU_LAUNCH("k_attention");
  }
}

extern "C" void bm_cuda_attention(bm_cuda *c, void *out, const void *qkv, bm_prec t,
                                  const int *start, const int *len, int nseq, int maxlen, int C,
                                  int heads) {
  if (nseq <= 0 || maxlen <= 0) return;
  const char *sw = getenv("BM_CUDA_ATTN");
  if (bm_cuda_flash_ok(t, C, heads) && !(sw && !strcmp(sw, "fused-fp32"))) {
    bm_cuda_flash_attention(c, out, NULL, qkv, t, start, len, nseq, maxlen, C, heads);
    return;
  }
  if (heads <= 0 || C % heads || (C / heads != 64 && C / heads != 32 && C / heads != 16))
    bm_die("bm_cuda_attention: head dim %d (width %d, %d heads); the kernel has 16, 32, 64",
           heads > 0 ? C / heads : 0, C, heads);
  BM_DISPATCH(t, attention, c, out, qkv, start, len, nseq, maxlen, C, heads);
}
