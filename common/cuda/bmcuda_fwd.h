/* bmcuda_fwd.h - the GPU forward kernels the towers are built from, each the
 * peer of a CPU function in kernels.h / vit.c / bert.c. All pointers are
 * device pointers; all work is queued on the compute stream. "t" is the
 * element type of the buffers marked T; the residual stream, LayerNorm
 * statistics and every reduction are fp32. */
#ifndef BM_CUDA_FWD_H
#define BM_CUDA_FWD_H

#include "bmcuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per row of C: y = (x - mean) / sqrt(var + eps) * g + b (bm_layernorm).
 * x fp32 [N,C]; yf fp32 (may be NULL, may equal x) and/or yt T (may be
 * NULL) receive y. */
void bm_cuda_layernorm(bm_cuda *c, float *yf, void *yt, bm_prec t, const float *x,
                       const float *g, const float *b, int N, int C, float eps);
/* The same, one warp a row, also writing each row's mean and
 * 1/sqrt(var + eps) (fp32 [N]) for the backward. Returns 0 (and does
 * nothing) unless C is a multiple of 8, at most 1024, rows 16-byte aligned. */
int bm_cuda_layernorm_stats(bm_cuda *c, float *yf, void *yt, bm_prec t, float *mean,
                             float *rstd, const float *x, const float *g, const float *b, int N,
                             int C, float eps);
/* y[N,C] (T) = GELU(y + b) in place, erf form; b fp32 [C] or NULL. */
void bm_cuda_bias_gelu(bm_cuda *c, void *y, bm_prec t, const float *b, int N, int C);
/* y[N,C] (T) += b[C] (fp32). */
void bm_cuda_add_bias(bm_cuda *c, void *y, bm_prec t, const float *b, int N, int C);
/* dst (T) = src (fp32), n elements. */
void bm_cuda_convert(bm_cuda *c, void *dst, bm_prec t, const float *src, size_t n);
/* Rows of n, in place (bm_softmax on each of N rows). */
void bm_cuda_softmax(bm_cuda *c, float *x, int N, int n);
/* y (T) = softmax of each row of x (fp32), N rows of n. */
void bm_cuda_softmax_to(bm_cuda *c, void *y, bm_prec t, const float *x, int N, int n);
/* Rows of C divided by max(|row|, 1e-12) (bm_l2_normalize). */
void bm_cuda_l2_normalize(bm_cuda *c, float *x, int N, int C);
/* dst[i] = src[rows[i]] for i < n, rows of C fp32; rows is a device array. */
void bm_cuda_gather_rows(bm_cuda *c, float *dst, const float *src, const int *rows, int n, int C);

/* BERT embeddings before their LayerNorm, for N packed tokens:
 *   x[n] = (E(ids[n]) + type[0]) + pos[posi[n]]
 * E(id) = word[id] for id >= 0, and the learned prompt vector
 * ctx[-id - 1] for id < 0 (a row of ctx[nctx, W]; ctx may be NULL when no
 * id is negative). posi[n] is the token's place in its text. A bad id dies
 * with the device's assert message. */
void bm_cuda_bert_embed(bm_cuda *c, float *x, const int32_t *ids, const int *posi,
                        const float *word, int vocab, const float *ctx, int nctx,
                        const float *type, const float *pos, int N, int W);
/* im2col for a conv with kernel = stride = P (bm_patch_embed):
 * img fp32 [B,3,S,S] -> cols T [B*G*G, 3*P*P], patch row*G + col. */
void bm_cuda_im2col(bm_cuda *c, void *cols, bm_prec t, const float *img, int B, int S, int P);
/* x[b,0] = cls + pos[0]; x[b,1+p] = patches[b*GG+p] + pos[1+p]
 * (bm_vit_tokens): patches fp32 [B*GG, W] -> x fp32 [B*T, W], T = 1 + GG. */
void bm_cuda_vit_tokens(bm_cuda *c, float *x, const float *patches, const float *cls,
                        const float *pos, int B, int T, int W);
/* Multi-head self attention over packed sequences (bm_attention, no key
 * mask): qkv T [ntok, 3C], out T [ntok, C]; start/len device int [nseq];
 * maxlen >= every len; head dim C/heads 16, 32 or 64. One pass over the keys
 * with an online softmax (flash style); scores never reach memory. */
void bm_cuda_attention(bm_cuda *c, void *out, const void *qkv, bm_prec t, const int *start,
                       const int *len, int nseq, int maxlen, int C, int heads);
/* bm_cuda_attention uses the tensor-core kernels below where they apply
 * (bm_cuda_flash_ok) unless BM_CUDA_ATTN=fused-fp32 asks for the fp32 one. */
int bm_cuda_flash_ok(bm_prec t, int C, int heads);
/* Flash attention on the tensor cores: bf16 / fp16, head dim 64, the same
 * arguments as bm_cuda_attention; lse fp32 [ntok, heads] (may be NULL)
 * receives each row's natural log-sum-exp of the scaled scores, for the
 * backward. */
void bm_cuda_flash_attention(bm_cuda *c, void *out, float *lse, const void *qkv, bm_prec t,
                             const int *start, const int *len, int nseq, int maxlen, int C,
                             int heads);
/* Its backward (FlashAttention-2: P recomputed from q, k and lse): dqkv T
 * [ntok, 3C] is written whole (rows outside every sequence excepted) from
 * dout T [ntok, C], qkv, out (the forward's) and lse; ntok covers every
 * start + len; scratch of bm_cuda_flash_backward_scratch bytes. */
size_t bm_cuda_flash_backward_scratch(int ntok, int C, int heads);
void bm_cuda_flash_attention_backward(bm_cuda *c, void *dqkv, const void *dout, const void *qkv,
                                      const void *out, const float *lse, bm_prec t,
                                      const int *start, const int *len, int nseq, int maxlen,
                                      int ntok, int C, int heads, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
