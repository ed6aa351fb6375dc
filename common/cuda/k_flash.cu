/* k_flash.cu - flash attention on the tensor cores (bf16 / fp16, head dim
 * 64) over packed variable-length sequences: the forward (with the
 * log-sum-exp per row and head kept for training) and the FlashAttention-2
 * backward that recomputes the probabilities from q, k and that LSE.
 *
 * Products are mma.sync m16n8k16 with fp32 accumulation, operands brought
 * from shared memory by ldmatrix (.trans where the operand is stored the
 * other way round). Tiles are 64 x 64; shared rows are padded to 72
 * elements (144 bytes) so the 8 rows an ldmatrix reads fall in distinct
 * banks. The softmax is online and in fp32, in base 2 (scores pre-scaled by
 * log2(e) / sqrt(64)). */
#include <math.h>
#include <type_traits>

#include "bmcuda_fwd.h"
#include "cuda_int.cuh"

#define FT 64      /* queries / keys per tile */
#define HD 64      /* head dim */
#define LDS (HD + 8)
#define LOG2E 1.4426950408889634f
#define LN2 0.6931471805599453f

template <typename T>
__device__ __forceinline__ void mma(float c[4], const unsigned a[4], unsigned b0, unsigned b1) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldsm4(unsigned r[4], const void *p) {
  unsigned s = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
}
__device__ __forceinline__ void ldsm4t(unsigned r[4], const void *p) {
  unsigned s = (unsigned)__cvta_generic_to_shared(p);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
}
/* two floats as one register of the operand type, x in the low half */
template <typename T> __device__ __forceinline__ unsigned pack2(float x, float y);
template <> __device__ __forceinline__ unsigned pack2<__nv_bfloat16>(float x, float y) {
  __nv_bfloat162 v = __floats2bfloat162_rn(x, y);
  return *(unsigned *)&v;
}
template <> __device__ __forceinline__ unsigned pack2<__half>(float x, float y) {
  __half2 v = __floats2half2_rn(x, y);
  return *(unsigned *)&v;
}

/* 64 rows of 64 elements (row r at src + r*ld) into shared; rows >= n are 0 */
template <typename T>
__device__ __forceinline__ void load_tile(T (*dst)[LDS], const T *src, size_t ld, int n) {
  for (int e = threadIdx.x; e < FT * HD / 8; e += blockDim.x) {
    int r = e >> 3, ch = e & 7;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < n) v = *(const uint4 *)(src + r * ld + ch * 8);
    *(uint4 *)&dst[r][ch * 8] = v;
  }
}

/* load_tile without the registers: cp.async, zero-filled past n; the caller
 * commits and waits */
template <typename T>
__device__ __forceinline__ void load_tile_async(T (*dst)[LDS], const T *src, size_t ld, int n) {
  for (int e = threadIdx.x; e < FT * HD / 8; e += blockDim.x) {
    int r = e >> 3, ch = e & 7;
    const T *g = r < n ? src + r * ld + ch * 8 : src; /* any valid address: 0 bytes are read */
    unsigned sa = (unsigned)__cvta_generic_to_shared(&dst[r][ch * 8]);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa), "l"(g), "r"(r < n ? 16 : 0)
                 : "memory");
  }
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* acc[8][4] += A(16 x 64, fragments a[4][4]) * B, with B[k][n] = S[n0+n][k]
 * (S row-major [n][k], 64 n): the score-like products q k^T. Columns
 * from the first 16-group wholly past n are left as they were. */
template <typename T>
__device__ __forceinline__ void mm_abt(float acc[8][4], const unsigned a[4][4], T (*S)[LDS], int n, int lane) {
#pragma unroll
  for (int kk = 0; kk < 4; kk++)
#pragma unroll
    for (int np = 0; np < 4; np++) {
      if (np * 16 >= n) break; /* rows of S past n are padding (warp-uniform) */
      unsigned b[4];
      ldsm4(b, &S[np * 16 + (lane & 7) + (lane >> 4) * 8][kk * 16 + ((lane >> 3) & 1) * 8]);
      mma<T>(acc[2 * np], a[kk], b[0], b[1]);
      mma<T>(acc[2 * np + 1], a[kk], b[2], b[3]);
    }
}
/* acc[8][4] += A(16 x 64 in accumulator layout p[8][4]) * S (row-major
 * [k][n], 64 x 64): the products P v; the k past n (p zero) are skipped. */
template <typename T>
__device__ __forceinline__ void mm_pb(float acc[8][4], const float p[8][4], T (*S)[LDS], int n, int lane) {
#pragma unroll
  for (int kk = 0; kk < 4; kk++) {
    if (kk * 16 >= n) break; /* p is 0 there: padding rows of S */
    unsigned a[4] = {pack2<T>(p[2 * kk][0], p[2 * kk][1]), pack2<T>(p[2 * kk][2], p[2 * kk][3]),
                     pack2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                     pack2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < 4; dp++) {
      unsigned b[4];
      ldsm4t(b, &S[kk * 16 + (lane & 15)][dp * 16 + (lane >> 4) * 8]);
      mma<T>(acc[2 * dp], a, b[0], b[1]);
      mma<T>(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}
/* the A fragments of rows r0..r0+15 of a row-major shared tile */
template <typename T>
__device__ __forceinline__ void frag_a(unsigned a[4][4], T (*S)[LDS], int r0, int lane) {
#pragma unroll
  for (int kk = 0; kk < 4; kk++) ldsm4(a[kk], &S[r0 + (lane & 15)][kk * 16 + (lane >> 4) * 8]);
}

/* Block = (64 queries, head, sequence), 4 warps of 16 queries. A thread
 * holds rows g and g+8 of its warp's 16 (g = lane / 4), columns 2(lane%4)
 * and +1 of every 8. */
template <typename T>
__global__ void __launch_bounds__(128)
    k_flash_fwd(T *out, float *lse, const T *qkv, const int *start, const int *len, int C, int H, float sl2) {
  __shared__ __align__(16) T Qs[FT][LDS], Ks[2][FT][LDS], Vs[2][FT][LDS];
  int s = blockIdx.z, h = blockIdx.y, L = len[s], q0 = blockIdx.x * FT;
  if (q0 >= L) return; /* the whole block */
  size_t st = (size_t)start[s], ld = 3 * (size_t)C;
  const T *base = qkv + st * ld + h * HD;
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  bool busy = q0 + w * 16 < L; /* a warp with no real query only helps load */
  /* K, V tiles double-buffered: the next one is in flight during this one's products */
  load_tile_async(Qs, base + q0 * ld, ld, L - q0);
  load_tile_async(Ks[0], base + C, ld, L);
  load_tile_async(Vs[0], base + 2 * (size_t)C, ld, L);
  cp_commit();
  unsigned qa[4][4];
  float o[8][4], m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
#pragma unroll
  for (int j = 0; j < 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  for (int k0 = 0, t = 0; k0 < L; k0 += FT, t ^= 1) {
    if (k0 + FT < L) {
      load_tile_async(Ks[t ^ 1], base + C + (k0 + FT) * ld, ld, L - k0 - FT);
      load_tile_async(Vs[t ^ 1], base + 2 * (size_t)C + (k0 + FT) * ld, ld, L - k0 - FT);
    }
    cp_commit();
    cp_wait<1>();
    __syncthreads();
    if (k0 == 0) frag_a(qa, Qs, w * 16, lane);
    int nk = L - k0;
    if (busy) {
      float sc[8][4];
#pragma unroll
      for (int j = 0; j < 8; j++) sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
      mm_abt<T>(sc, qa, Ks[t], nk, lane);
      float mx0 = m0, mx1 = m1;
#pragma unroll
      for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          int key = j * 8 + 2 * tq + (e & 1);
          float v = key < nk ? sc[j][e] * sl2 : -INFINITY;
          sc[j][e] = v;
          if (e < 2) mx0 = fmaxf(mx0, v);
          else mx1 = fmaxf(mx1, v);
        }
      /* key 0 of the tile is real: every row's max is finite from here */
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
      float c0 = exp2f(m0 - mx0), c1 = exp2f(m1 - mx1); /* 0 on the first tile */
      m0 = mx0, m1 = mx1;
      float r0 = 0.0f, r1 = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; j++) {
        sc[j][0] = exp2f(sc[j][0] - mx0), sc[j][1] = exp2f(sc[j][1] - mx0);
        sc[j][2] = exp2f(sc[j][2] - mx1), sc[j][3] = exp2f(sc[j][3] - mx1);
        r0 += sc[j][0] + sc[j][1], r1 += sc[j][2] + sc[j][3];
        o[j][0] *= c0, o[j][1] *= c0, o[j][2] *= c1, o[j][3] *= c1;
      }
      l0 = l0 * c0 + r0, l1 = l1 * c1 + r1; /* this thread's columns; summed over the quad at the end */
      mm_pb<T>(o, sc, Vs[t], nk, lane);
    }
    __syncthreads(); /* buffer t is consumed: the next prefetch may overwrite it */
  }
  if (!busy) return;
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1), l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1), l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  float i0 = 1.0f / l0, i1 = 1.0f / l1;
  int ra = q0 + w * 16 + g, rb = ra + 8;
  T *ob = out + st * C + h * HD;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    int col = j * 8 + 2 * tq;
    if (ra < L) *(unsigned *)(ob + (size_t)ra * C + col) = pack2<T>(o[j][0] * i0, o[j][1] * i0);
    if (rb < L) *(unsigned *)(ob + (size_t)rb * C + col) = pack2<T>(o[j][2] * i1, o[j][3] * i1);
  }
  if (lse && tq == 0) {
    if (ra < L) lse[(st + ra) * H + h] = (m0 + log2f(l0)) * LN2;
    if (rb < L) lse[(st + rb) * H + h] = (m1 + log2f(l1)) * LN2;
  }
}

/* D[n, h] = sum over the head's columns of dO * O: a warp per (row, head),
 * two columns a lane (coalesced 128-byte rows) */
template <typename T>
__global__ void k_flash_rowdot(float *D, const T *dout, const T *out, int N, int C, int H) {
  size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  if (i >= (size_t)N * H) return; /* whole warps */
  size_t n = i / H, h = i % H, o = n * C + h * HD + 2 * lane;
  float acc = bm_ld(dout, o) * bm_ld(out, o) + bm_ld(dout, o + 1) * bm_ld(out, o + 1);
  for (int k = 16; k > 0; k >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, k);
  if (lane == 0) D[i] = acc;
}

/* dqkv[n, 0:C] = dq[n, :] (fp32, already scaled) in the compute type */
template <typename T>
__global__ void k_flash_dq_out(T *dqkv, const float *dq, int N, int C) {
  size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
  if (i >= (size_t)N * C) return;
  size_t n = i / C, c = i % C;
  bm_st(dqkv, n * 3 * C + c, dq[i]);
}

/* Block = (64 keys, head, sequence), 4 warps of 16 keys; the loop runs over
 * the sequence's query tiles. A warp keeps its keys' dK, dV in registers
 * and works on transposed scores S^T = K Q^T so that P^T, dP^T, dS^T come
 * out in the A layout for dV += P^T dO and dK += dS^T Q. dQ needs every
 * warp's keys: dS^T goes through shared memory and each warp adds its 16
 * queries' share into the fp32 dq with atomics. */
#define BWD_SMEM (7 * FT * LDS * 2 + 4 * FT * 4)
/* 2 blocks an SM (~210 registers). 3 (capped at 168, a little spilled)
 * measured the same on the H100: 2025 vs 2023 samples/s a training step. */
template <typename T>
__global__ void __launch_bounds__(128, 2)
    k_flash_bwd(float *dq, T *dqkv, const T *dout, const T *qkv, const float *lse, const float *D,
                const int *start, const int *len, int C, int H, float scale, float sl2) {
  /* dynamic (64 KiB): K, V, S and two buffers of Q, dO, lse, D so that the
   * next query tile is in flight (cp.async) during this one's products */
  extern __shared__ __align__(16) unsigned char fsm[];
  T(*Ks)[LDS] = (T(*)[LDS])fsm, (*Vs)[LDS] = Ks + FT, (*Ss)[LDS] = Vs + FT;
  T(*Qb)[LDS] = Ss + FT, (*Ob)[LDS] = Qb + 2 * FT;
  float *Lb = (float *)(Ob + 2 * FT), *Db = Lb + 2 * FT;
  int s = blockIdx.z, h = blockIdx.y, L = len[s], k0 = blockIdx.x * FT;
  if (k0 >= L) return;
  size_t st = (size_t)start[s], ld = 3 * (size_t)C;
  const T *base = qkv + st * ld + h * HD;
  int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
  load_tile_async(Ks, base + C + k0 * ld, ld, L - k0);
  load_tile_async(Vs, base + 2 * (size_t)C + k0 * ld, ld, L - k0);
  auto prefetch = [&](int q0, int b) {
    load_tile_async(Qb + b * FT, base + q0 * ld, ld, L - q0);
    load_tile_async(Ob + b * FT, dout + (st + q0) * C + h * HD, (size_t)C, L - q0);
    if (threadIdx.x < FT) {
      int q = q0 + threadIdx.x;
      Lb[b * FT + threadIdx.x] = q < L ? lse[(st + q) * H + h] * LOG2E : 0.0f;
      Db[b * FT + threadIdx.x] = q < L ? D[(st + q) * H + h] : 0.0f;
    }
  };
  prefetch(0, 0);
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  unsigned ka[4][4], va[4][4];
  frag_a(ka, Ks, w * 16, lane);
  frag_a(va, Vs, w * 16, lane);
  bool kva = k0 + w * 16 + g < L, kvb = k0 + w * 16 + g + 8 < L;
  bool kbusy = k0 + w * 16 < L; /* a warp with no real key writes zeros for dS */
  int nkt = L - k0;
  float dk[8][4], dv[8][4];
#pragma unroll
  for (int j = 0; j < 8; j++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.0f;
  for (int q0 = 0, t = 0; q0 < L; q0 += FT, t ^= 1) {
    __syncthreads(); /* buffer t^1 and S of the previous tile are consumed */
    if (q0 + FT < L) prefetch(q0 + FT, t ^ 1);
    cp_commit();
    cp_wait<1>();
    __syncthreads();
    T(*Qs)[LDS] = Qb + t * FT, (*Os)[LDS] = Ob + t * FT;
    const float *Ls = Lb + t * FT, *Ds = Db + t * FT;
    float p[8][4], dp[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) p[j][e] = dp[j][e] = 0.0f;
    int nq = L - q0;
    if (kbusy) {
      mm_abt<T>(p, ka, Qs, nq, lane);  /* S^T */
      mm_abt<T>(dp, va, Os, nq, lane); /* dP^T = v dO^T */
    }
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int q = j * 8 + 2 * tq + (e & 1);
        bool ok = q < nq && (e < 2 ? kva : kvb);
        p[j][e] = ok ? exp2f(p[j][e] * sl2 - Ls[q]) : 0.0f;
      }
    if (kbusy) mm_pb<T>(dv, p, Os, nq, lane); /* dV += P^T dO */
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
      for (int e = 0; e < 4; e++) p[j][e] *= dp[j][e] - Ds[j * 8 + 2 * tq + (e & 1)]; /* dS^T */
    if (kbusy) mm_pb<T>(dk, p, Qs, nq, lane); /* dK += dS^T q (scaled at the end) */
#pragma unroll
    for (int j = 0; j < 8; j++) {
      *(unsigned *)&Ss[w * 16 + g][j * 8 + 2 * tq] = pack2<T>(p[j][0], p[j][1]);
      *(unsigned *)&Ss[w * 16 + g + 8][j * 8 + 2 * tq] = pack2<T>(p[j][2], p[j][3]);
    }
    __syncthreads();
    /* dQ rows w*16.. of this tile: A = dS (stored transposed as Ss[key][q]), B = K */
    if (w * 16 >= nq) continue; /* no real query here; the loop's barrier is reached by the others */
    float dqa[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++) dqa[j][0] = dqa[j][1] = dqa[j][2] = dqa[j][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
      if (kk * 16 >= nkt) break; /* dS is zero for padding keys */
      unsigned a[4];
      ldsm4t(a, &Ss[kk * 16 + (lane & 7) + (lane >> 4) * 8][w * 16 + ((lane >> 3) & 1) * 8]);
#pragma unroll
      for (int dpp = 0; dpp < 4; dpp++) {
        unsigned b[4];
        ldsm4t(b, &Ks[kk * 16 + (lane & 15)][dpp * 16 + (lane >> 4) * 8]);
        mma<T>(dqa[2 * dpp], a, b[0], b[1]);
        mma<T>(dqa[2 * dpp + 1], a, b[2], b[3]);
      }
    }
    int ra = q0 + w * 16 + g, rb = ra + 8;
#pragma unroll
    for (int j = 0; j < 8; j++) {
      int col = h * HD + j * 8 + 2 * tq;
#if __CUDA_ARCH__ >= 900
      if (ra < L) atomicAdd((float2 *)(dq + (st + ra) * C + col), make_float2(dqa[j][0] * scale, dqa[j][1] * scale));
      if (rb < L) atomicAdd((float2 *)(dq + (st + rb) * C + col), make_float2(dqa[j][2] * scale, dqa[j][3] * scale));
#else
      if (ra < L) {
        atomicAdd(dq + (st + ra) * C + col, dqa[j][0] * scale);
        atomicAdd(dq + (st + ra) * C + col + 1, dqa[j][1] * scale);
      }
      if (rb < L) {
        atomicAdd(dq + (st + rb) * C + col, dqa[j][2] * scale);
        atomicAdd(dq + (st + rb) * C + col + 1, dqa[j][3] * scale);
      }
#endif
    }
  }
  T *kb = dqkv + st * ld + C + h * HD;
  int ra = k0 + w * 16 + g, rb = ra + 8;
#pragma unroll
  for (int j = 0; j < 8; j++) {
    int col = j * 8 + 2 * tq;
    if (ra < L) {
      *(unsigned *)(kb + ra * ld + col) = pack2<T>(dk[j][0] * scale, dk[j][1] * scale);
      *(unsigned *)(kb + C + ra * ld + col) = pack2<T>(dv[j][0], dv[j][1]);
    }
    if (rb < L) {
      *(unsigned *)(kb + rb * ld + col) = pack2<T>(dk[j][2] * scale, dk[j][3] * scale);
      *(unsigned *)(kb + C + rb * ld + col) = pack2<T>(dv[j][2], dv[j][3]);
    }
  }
}

extern "C" int bm_cuda_flash_ok(bm_prec t, int C, int heads) {
  return (t == BM_PREC_BF16 || t == BM_PREC_FP16) && heads > 0 && C % heads == 0 && C / heads == HD;
}

static void check_ok(const char *who, bm_prec t, int C, int heads) {
  if (!bm_cuda_flash_ok(t, C, heads))
    bm_die("%s: needs bf16 or fp16 and head dim %d (got %s, width %d, %d heads)", who, HD,
           bm_prec_name(t), C, heads);
}

template <typename T>
static void fwd(bm_cuda *c, void *out, float *lse, const void *qkv, const int *start, const int *len,
                int nseq, int maxlen, int C, int heads) {
  float sl2 = LOG2E / sqrtf((float)HD);
  for (int s0 = 0; s0 < nseq; s0 += 65535) { /* grid z is at most 65535 */
    int ns = nseq - s0 < 65535 ? nseq - s0 : 65535;
    dim3 grid((unsigned)((maxlen + FT - 1) / FT), (unsigned)heads, (unsigned)ns);
    k_flash_fwd<T><<<grid, 128, 0, bm_cs(c)>>>((T *)out, lse, (const T *)qkv, start + s0, len + s0, C, heads, sl2);
    CU_LAUNCH("k_flash_fwd");
  }
}

extern "C" void bm_cuda_flash_attention(bm_cuda *c, void *out, float *lse, const void *qkv, bm_prec t,
                                        const int *start, const int *len, int nseq, int maxlen, int C,
                                        int heads) {
  if (nseq <= 0 || maxlen <= 0) return;
  check_ok("bm_cuda_flash_attention", t, C, heads);
  if (t == BM_PREC_BF16) fwd<__nv_bfloat16>(c, out, lse, qkv, start, len, nseq, maxlen, C, heads);
  else fwd<__half>(c, out, lse, qkv, start, len, nseq, maxlen, C, heads);
}

static size_t al256(size_t b) { return (b + 255) & ~(size_t)255; }
extern "C" size_t bm_cuda_flash_backward_scratch(int ntok, int C, int heads) {
  return al256((size_t)ntok * C * 4) + al256((size_t)ntok * heads * 4);
}

template <typename T>
static void bwd(bm_cuda *c, void *dqkv, const void *dout, const void *qkv, const void *out, const float *lse,
                const int *start, const int *len, int nseq, int maxlen, int ntok, int C, int heads, void *scratch) {
  float *dq = (float *)scratch, *D = (float *)((char *)scratch + al256((size_t)ntok * C * 4));
  float scale = 1.0f / sqrtf((float)HD);
  CU(cudaFuncSetAttribute(k_flash_bwd<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, BWD_SMEM));
  CU(cudaMemsetAsync(dq, 0, (size_t)ntok * C * 4, bm_cs(c)));
  k_flash_rowdot<T><<<bm_blocks((size_t)ntok * heads * 32, 256), 256, 0, bm_cs(c)>>>(D, (const T *)dout, (const T *)out,
                                                                               ntok, C, heads);
  CU_LAUNCH("k_flash_rowdot");
  for (int s0 = 0; s0 < nseq; s0 += 65535) {
    int ns = nseq - s0 < 65535 ? nseq - s0 : 65535;
    dim3 grid((unsigned)((maxlen + FT - 1) / FT), (unsigned)heads, (unsigned)ns);
    k_flash_bwd<T><<<grid, 128, BWD_SMEM, bm_cs(c)>>>(dq, (T *)dqkv, (const T *)dout, (const T *)qkv, lse, D,
                                                         start + s0, len + s0, C, heads, scale, scale * LOG2E);
    CU_LAUNCH("k_flash_bwd");
  }
  k_flash_dq_out<T><<<bm_blocks((size_t)ntok * C, 256), 256, 0, bm_cs(c)>>>((T *)dqkv, dq, ntok, C);
  CU_LAUNCH("k_flash_dq_out");
}

extern "C" void bm_cuda_flash_attention_backward(bm_cuda *c, void *dqkv, const void *dout, const void *qkv,
                                                 const void *out, const float *lse, bm_prec t, const int *start,
                                                 const int *len, int nseq, int maxlen, int ntok, int C, int heads,
                                                 void *scratch) {
  if (nseq <= 0 || maxlen <= 0 || ntok <= 0) return;
  check_ok("bm_cuda_flash_attention_backward", t, C, heads);
  if (t == BM_PREC_BF16)
    bwd<__nv_bfloat16>(c, dqkv, dout, qkv, out, lse, start, len, nseq, maxlen, ntok, C, heads, scratch);
  else bwd<__half>(c, dqkv, dout, qkv, out, lse, start, len, nseq, maxlen, ntok, C, heads, scratch);
}
