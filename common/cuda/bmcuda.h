/* bmcuda.h - the GPU backend's C API (CUDA runtime + cuBLAS), callable from
 * the C filters. Implemented in the .cu files of common/cuda (extern "C") when the build
 * found nvcc (BM_HAVE_CUDA); otherwise common/cuda_stub.c makes
 * bm_cuda_open fail with "built without CUDA (no nvcc when it was built)"
 * and every other call is never reached.
 *
 * Errors: every CUDA / cuBLAS call is checked; a failure dies (exit 1) with
 * the call, its file:line and the runtime's message, as the CPU code does on
 * a bad input. Only opening the device reports instead of dying, so that
 * callers (and tests that skip without a GPU) can say what they want.
 *
 * Memory: device pointers are plain void* / float*; all work is queued on
 * the device's compute stream unless a function takes a stream. */
#ifndef BM_CUDA_H
#define BM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of activations and GEMM operands. Accumulation is fp32 in
 * every GEMM and every reduction; the residual stream is fp32. */
typedef enum { BM_PREC_FP32 = 0, BM_PREC_BF16 = 1, BM_PREC_FP16 = 2 } bm_prec;
size_t bm_prec_size(bm_prec t);
const char *bm_prec_name(bm_prec t);
/* "fp32" | "bf16" | "fp16" -> 0, anything else -> -1. */
int bm_prec_parse(const char *s, bm_prec *t);

typedef struct bm_cuda bm_cuda; /* a device, its streams and cuBLAS handles */
typedef enum { BM_STREAM_COMPUTE = 0, BM_STREAM_COPY = 1 } bm_stream_id;

/* 1 if spec names a GPU ("cuda" or "cuda:N"), 0 for "cpu"; -1 otherwise. */
int bm_device_is_cuda(const char *spec);
/* Number of usable GPUs, or -1 with the reason in err (no GPU, driver too
 * old, built without CUDA). */
int bm_cuda_device_count(char *err, size_t errlen);
/* Opens "cuda" (= cuda:0) or "cuda:N". NULL on failure, with a message that
 * names the device in err (bad spec, no GPU, bad index, driver too old). */
bm_cuda *bm_cuda_open(const char *spec, char *err, size_t errlen);
void bm_cuda_close(bm_cuda *c);
/* "cuda:0 (NVIDIA H100 80GB HBM3, sm_90)" */
const char *bm_cuda_describe(const bm_cuda *c);
/* The cudaStream_t of a stream, for kernels launched by the .cu files. */
void *bm_cuda_stream(bm_cuda *c, bm_stream_id s);

/* Device memory; dies naming `what` and the size when out of memory. */
void *bm_cuda_malloc(size_t bytes, const char *what);
void bm_cuda_free(void *p);
void bm_cuda_memset(bm_cuda *c, void *p, int byte, size_t bytes);
/* Page-locked host memory (for async copies). */
void *bm_cuda_host_alloc(size_t bytes, const char *what);
void bm_cuda_host_free(void *p);
/* Async copies on stream s (host memory should be pinned to overlap). */
void bm_cuda_h2d(bm_cuda *c, void *dst, const void *src, size_t bytes, bm_stream_id s);
void bm_cuda_d2h(bm_cuda *c, void *dst, const void *src, size_t bytes, bm_stream_id s);
void bm_cuda_d2d(bm_cuda *c, void *dst, const void *src, size_t bytes, bm_stream_id s);
void bm_cuda_sync(bm_cuda *c, bm_stream_id s);
/* Uploads n floats converted to t (a fresh device buffer; fp32 is a copy). */
void *bm_cuda_upload(bm_cuda *c, const float *src, size_t n, bm_prec t, const char *what);

/* Events: record on a stream, make another stream wait, time, sync. */
typedef struct bm_cuda_event bm_cuda_event;
bm_cuda_event *bm_cuda_event_new(void);
void bm_cuda_event_free(bm_cuda_event *e);
void bm_cuda_event_record(bm_cuda *c, bm_cuda_event *e, bm_stream_id s);
void bm_cuda_stream_wait(bm_cuda *c, bm_stream_id s, bm_cuda_event *e);
void bm_cuda_event_sync(bm_cuda_event *e);
float bm_cuda_event_ms(bm_cuda_event *from, bm_cuda_event *to);

/* nn.Linear on the GPU, on the compute stream:
 *   Y[N,out] = alpha * X[N,in] @ W[out,in]^T + beta * Y   (+ bias[out])
 * X and W are of type ab, Y of type yt (ab, or fp32), bias fp32 (may be
 * NULL). Accumulation is fp32; fp32 operands use no TF32, so fp32 results
 * match the CPU near 1e-5. beta = 1 with yt fp32 adds into the residual. */
void bm_cuda_gemm(bm_cuda *c, void *Y, bm_prec yt, const void *X, const void *W, bm_prec ab,
                  const float *bias, int N, int in, int out, float alpha, float beta);
/* Strided batched, row major: for b < batch,
 *   C_b[M,N] = alpha * A_b[M,K] @ op(B_b) + beta * C_b,
 * op(B) = B_b[N,K]^T when transB, else B_b[K,N]; lda/ldb/ldc are row
 * strides, sa/sb/sc the batch strides (elements). A, B of type ab, C of
 * type ct. */
void bm_cuda_gemm_batched(bm_cuda *c, void *C, bm_prec ct, const void *A, const void *B,
                          bm_prec ab, int M, int N, int K, int transB, int lda, int ldb,
                          int ldc, long long sa, long long sb, long long sc, int batch,
                          float alpha, float beta);

#ifdef __cplusplus
}
#endif
#endif
