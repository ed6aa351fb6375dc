/* train_internal.cuh (simulation) - stands in for common/cuda's file of the
 * same name when tests/gpu/sim/run.sh builds train_fusion*.cu as C++ for
 * the CPU: the CUDA syntax, types and intrinsics those files use, the
 * checked-call macros as no-ops, bf16 / fp16 with the device's rounding. */
#ifndef SIM_INTERNAL
#define SIM_INTERNAL
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <functional>
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
extern dim3 threadIdx, blockIdx, blockDim, gridDim;
typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaSuccess = 0 };
enum cudaMemcpyKind { cudaMemcpyDeviceToDevice, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost };
static inline const char *cudaGetErrorString(int) { return "sim"; }
static inline int cudaGetLastError() { return 0; }
static inline int cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return 0; }
static inline int cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) { memcpy(d, s, n); return 0; }
static inline int cudaMemcpy2DAsync(void *d, size_t dp, const void *s, size_t sp, size_t w, size_t h, cudaMemcpyKind,
                                    cudaStream_t) {
  for (size_t r = 0; r < h; r++) memcpy((char *)d + r * dp, (const char *)s + r * sp, w);
  return 0;
}
typedef int cudaEvent_t;
enum { cudaEventDisableTiming = 2 };
static inline int cudaEventCreateWithFlags(cudaEvent_t *e, int) { *e = 1; return 0; }
static inline int cudaEventDestroy(cudaEvent_t) { return 0; }
static inline int cudaEventRecord(cudaEvent_t, cudaStream_t) { return 0; }
static inline int cudaEventSynchronize(cudaEvent_t) { return 0; }
static inline int cudaStreamSynchronize(cudaStream_t) { return 0; }
struct __nv_bfloat16 { uint16_t b; };
struct __half { _Float16 h; };
static inline float __bfloat162float(__nv_bfloat16 x) { uint32_t u = (uint32_t)x.b << 16; float f; memcpy(&f, &u, 4); return f; }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
  u += 0x7fff + ((u >> 16) & 1);
  return __nv_bfloat16{(uint16_t)(u >> 16)};
}
static inline float __half2float(__half x) { return (float)x.h; }
static inline __half __float2half_rn(float f) { return __half{(_Float16)f}; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
extern "C" {
#include "bmcuda_train.h"
void *bm_xmalloc(size_t n);
void *bm_xcalloc(size_t n, size_t size);
void bm_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
}
#define CK(call) (void)(call)
#define CKL(what) (void)0
struct bmct_ctx { bm_cuda *cu; cudaStream_t st; };
static inline cudaStream_t bm_cs(bm_cuda *) { return nullptr; }
inline float ld(float x) { return x; }
inline float ld(__nv_bfloat16 x) { return __bfloat162float(x); }
inline float ld(__half x) { return __half2float(x); }
template <typename T> T st(float x);
template <> inline float st<float>(float x) { return x; }
template <> inline __nv_bfloat16 st<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <> inline __half st<__half>(float x) { return __float2half_rn(x); }
#define BMCT_DISPATCH(prec, T, ...)                                       \
  do {                                                                    \
    switch (prec) {                                                       \
    case BMCT_FP32: { typedef float T; __VA_ARGS__; } break;              \
    case BMCT_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; } break;      \
    case BMCT_FP16: { typedef __half T; __VA_ARGS__; } break;             \
    default: bm_die("internal error: precision %d", (int)(prec));         \
    }                                                                     \
  } while (0)
/* lanes as coroutines */
void sim_yield();
extern int sim_lane;
extern double sim_slot[32];
template <typename V> V __shfl_xor_sync(unsigned, V v, int o) {
  sim_slot[sim_lane] = (double)v; sim_yield();
  V r = (V)sim_slot[sim_lane ^ o]; sim_yield();
  return r;
}
static inline void __syncwarp() { sim_yield(); }
inline float warp_sum(float v) { for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }
inline float warp_max(float v) { for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }
static inline unsigned nblocks(size_t n, int per) { return (unsigned)((n + per - 1) / per); }
void sim_launch(dim3 grid, dim3 block, size_t shmem, std::function<void()> body);
extern float sh[];
struct bm_dev_list { void **p; int n, cap; };
static inline void *bm_dev_keep(bm_dev_list *l, void *d) {
  if (l->n == l->cap) { l->cap = l->cap ? 2 * l->cap : 64; l->p = (void **)realloc(l->p, sizeof(void *) * (size_t)l->cap); }
  return l->p[l->n++] = d;
}
static inline void bm_dev_free_all(bm_dev_list *l) {
  for (int i = 0; i < l->n; i++) bm_cuda_free(l->p[i]);
  free(l->p); l->p = NULL, l->n = l->cap = 0;
}
#endif
