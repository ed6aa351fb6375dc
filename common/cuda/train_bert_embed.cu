/* train_bert_embed.cu - the text tower's input-side backward kernels
 * (bmcuda_train.h): gradients of embedding rows and of the [CLS] pooling.
 *
 * Many tokens share a word, a position or a prompt vector, so their rows of
 * the table gradient are sums over tokens. Atomics would make those sums
 * order-dependent (different bits from run to run); instead the host, which
 * has the ids anyway, groups the tokens by destination row (bm_cuda_bt's
 * forward), and here one block owns one destination row and adds its
 * tokens in the group's order: deterministic, no conflicts, one pass. */
#include "train_internal.cuh"

__global__ void ctk_group_rows_add(float *dst, const float *src, const int *row, const int *off, const int *tok,
                                   int W) {
  int u = blockIdx.x, k0 = off[u], k1 = off[u + 1];
  float *d = dst + (size_t)row[u] * W;
  for (int j = threadIdx.x; j < W; j += blockDim.x) {
    float s = 0;
    for (int k = k0; k < k1; k++) s += src[(size_t)tok[k] * W + j];
    d[j] += s;
  }
}

extern "C" void bmct_group_rows_add(bmct_ctx *c, float *dst, const float *src, const int *row, const int *off,
                                    const int *tok, int nu, int W) {
  if (nu <= 0 || !dst) return;
  ctk_group_rows_add<<<(unsigned)nu, 128, 0, c->st>>>(dst, src, row, off, tok, W);
  CKL("group_rows_add");
}

__global__ void ctk_pool_first_bwd(float *d, const float *dp, const int *start, int W) {
  float *r = d + (size_t)start[blockIdx.x] * W;
  const float *g = dp + (size_t)blockIdx.x * W;
  for (int j = threadIdx.x; j < W; j += blockDim.x) r[j] += g[j];
}

extern "C" void bmct_pool_first_backward(bmct_ctx *c, float *d, const float *dp, const int *start, int nseq,
                                         int W) {
  if (nseq <= 0) return;
  ctk_pool_first_bwd<<<(unsigned)nseq, 128, 0, c->st>>>(d, dp, start, W);
  CKL("pool_first_backward");
}
