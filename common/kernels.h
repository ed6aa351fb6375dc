/* kernels.h - the CPU layer functions both towers are built from.
 *
 * Row-major float32 everywhere. A "linear" is PyTorch's nn.Linear:
 * y[N,out] = x[N,in] @ W[out,in]^T + b[out], with W exactly as stored in the
 * checkpoint (no transposed copy needed: cblas does the transpose).
 *
 * Threading: one pool, OpenMP's. OpenBLAS is told to use one thread and each
 * OpenMP thread calls it on its own slice of rows (or columns), so OpenBLAS's
 * own pthreads never spin against ours. bm_set_threads() sets both. */
#ifndef BM_KERNELS_H
#define BM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* Call first in main(), before reading any input. OpenBLAS picks its kernels
 * by CPU model, and releases that do not know a newer CPU (Debian 12's 0.3.21
 * on Emerald Rapids) fall back to SSE3 "Prescott" kernels, 5x slower. When
 * that happened on a CPU with AVX2 or AVX-512 and OPENBLAS_CORETYPE is unset,
 * this sets OPENBLAS_CORETYPE (Haswell, SkylakeX or Cooperlake) and re-executes the
 * program, since OpenBLAS reads it only when it loads. */
void bm_blas_init(char **argv);

/* n <= 0 keeps OpenMP's default (OMP_NUM_THREADS or the core count). */
void bm_set_threads(int n);
int bm_threads(void);

/* y[N,out] = x[N,in] @ W[out,in]^T (+ b[out] when b != NULL). */
void bm_linear(float *y, const float *x, const float *W, const float *b, int N, int in, int out);
/* y[N,out] = GELU(x @ W^T + b): the bias and the GELU run on each thread's
 * slice right after its GEMM, while the slice is still in cache. */
void bm_linear_gelu(float *y, const float *x, const float *W, const float *b, int N, int in,
                    int out);
/* y[N,out] += x[N,in] @ W[out,in]^T + b[out]: the residual add folded into
 * the GEMM (beta = 1). */
void bm_linear_residual(float *y, const float *x, const float *W, const float *b, int N, int in,
                        int out);

/* y[N,C] = (x - mean) / sqrt(var + eps) * g + b per row; y may equal x. */
void bm_layernorm(float *y, const float *x, const float *g, const float *b, int N, int C,
                  float eps);
/* Training forward of LayerNorm: as bm_layernorm, and keeps per row
 *   mean[N], rstd[N] = 1/sqrt(var + eps)   (eps 1e-6 ViT, 1e-12 BERT)
 * for bm_layernorm_backward. y[N,C] may not equal x (the backward needs x). */
void bm_layernorm_train(float *y, float *mean, float *rstd, const float *x, const float *g,
                        const float *b, int N, int C, float eps);
/* In place, erf form: 0.5 x (1 + erf(x / sqrt 2)). */
void bm_gelu(float *x, size_t n);
/* In place over one row of n. */
void bm_softmax(float *x, int n);
/* y[i] += x[i] */
void bm_add(float *y, const float *x, size_t n);
/* x /= max(|x|, 1e-12), each of N rows of C (F.normalize). */
void bm_l2_normalize(float *x, int N, int C);

/* Multi-head self attention over a batch of sequences packed one after the
 * other (sequence s holds rows start[s] .. start[s]+len[s]-1).
 *   qkv[ntok, 3C]: q in columns [0,C), k in [C,2C), v in [2C,3C);
 *                  head h uses columns h*hd .. h*hd+hd-1 of each (hd = C/heads)
 *   out[ntok, C]:  heads concatenated in the same column order
 *   key_keep[ntok] (may be NULL): 0 masks that key out for its sequence.
 * Scores are q.k / sqrt(hd); (sequence, head) pairs run in parallel.
 * scratch holds bm_attention_scratch(maxlen) floats. */
size_t bm_attention_scratch(int maxlen);
void bm_attention(float *out, const float *qkv, const int *start, const int *len, int nseq,
                  int C, int heads, const uint8_t *key_keep, float *scratch);

/* Convolution with kernel = stride = P, no padding, as im2col + GEMM.
 *   img[B, 3, S, S] normalized floats;  W[C, 3*P*P] (the conv weight
 *   [C,3,P,P] flattened);  cols[B*G*G, 3*P*P] scratch;  y[B*G*G, C]
 * Patch index is row*G + col with G = S/P, as timm flattens it. */
void bm_patch_embed(float *y, const float *img, const float *W, const float *b, float *cols,
                    int B, int S, int P, int C);

#endif
