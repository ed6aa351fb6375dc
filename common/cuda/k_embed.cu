/* k_embed.cu - the towers' inputs: BERT's embedding sum, the ViT's im2col
 * and token assembly (class token + patches + positions). */
#include <assert.h>

#include "bmcuda_fwd.h"
#include "cuda_int.cuh"

__global__ void k_bert_embed(float *x, const int32_t *ids, const int *posi, const float *word,
                             int vocab, const float *ctx, int nctx, const float *type,
                             const float *pos, int W) {
  size_t n = blockIdx.x;
  int id = ids[n];
  assert(id < vocab && (id >= 0 || (ctx && -id - 1 < nctx)));
  const float *e = id >= 0 ? word + (size_t)id * W : ctx + (size_t)(-id - 1) * W;
  const float *p = pos + (size_t)posi[n] * W;
  for (int j = threadIdx.x; j < W; j += blockDim.x) x[n * W + j] = (e[j] + type[j]) + p[j];
}

template <typename T>
__global__ void k_im2col(T *cols, const float *img, int S, int P, int G, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  int K = 3 * P * P;
  size_t row = i / K; /* b*G*G + patch */
  int k = (int)(i % K), ch = k / (P * P), dy = k / P % P, dx = k % P;
  int GG = G * G, b = (int)(row / GG), p = (int)(row % GG), gy = p / G, gx = p % G;
  bm_st(cols, i, img[(((size_t)b * 3 + ch) * S + gy * P + dy) * S + gx * P + dx]);
}
template <typename T>
static void im2col(bm_cuda *c, void *cols, const float *img, int B, int S, int P) {
  int G = S / P;
  size_t n = (size_t)B * G * G * 3 * P * P;
  k_im2col<T><<<bm_blocks(n, 256), 256, 0, bm_cs(c)>>>((T *)cols, img, S, P, G, n);
  CU_LAUNCH("k_im2col");
}

__global__ void k_vit_tokens(float *x, const float *patches, const float *cls, const float *pos,
                             int T, int W) {
  int b = blockIdx.x / T, t = blockIdx.x % T;
  const float *src = t ? patches + ((size_t)b * (T - 1) + t - 1) * W : cls;
  const float *p = pos + (size_t)t * W;
  float *d = x + (size_t)blockIdx.x * W;
  for (int j = threadIdx.x; j < W; j += blockDim.x) d[j] = src[j] + p[j];
}

extern "C" {
void bm_cuda_bert_embed(bm_cuda *c, float *x, const int32_t *ids, const int *posi,
                        const float *word, int vocab, const float *ctx, int nctx,
                        const float *type, const float *pos, int N, int W) {
  if (N <= 0) return;
  k_bert_embed<<<N, 256, 0, bm_cs(c)>>>(x, ids, posi, word, vocab, ctx, nctx, type, pos, W);
  CU_LAUNCH("k_bert_embed");
}
void bm_cuda_im2col(bm_cuda *c, void *cols, bm_prec t, const float *img, int B, int S, int P) {
  if (B <= 0) return;
  BM_DISPATCH(t, im2col, c, cols, img, B, S, P);
}
void bm_cuda_vit_tokens(bm_cuda *c, float *x, const float *patches, const float *cls,
                        const float *pos, int B, int T, int W) {
  if (B <= 0) return;
  k_vit_tokens<<<B * T, 256, 0, bm_cs(c)>>>(x, patches, cls, pos, T, W);
  CU_LAUNCH("k_vit_tokens");
}
}
