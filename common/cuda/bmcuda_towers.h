/* bmcuda_towers.h - the image and text towers on the GPU: the same inputs
 * and outputs as bm_vit_forward / bm_bert_forward (vit.h, bert.h).
 *
 * Weights are uploaded once: LayerNorm parameters, biases, embeddings and
 * positions stay fp32 on the device; the GEMM weights get a copy in the
 * compute precision. Activations between GEMMs are in that precision; the
 * residual stream, LayerNorm math, softmax and the outputs are fp32.
 *
 * Two slots let a caller overlap its reading of the next batch with the
 * GPU's work on the current one: submit(slot) copies the inputs on the
 * copy stream, runs the forward on the compute stream once they are there,
 * copies the outputs back into the caller's host buffers and returns at
 * once; wait(slot) blocks until those outputs are written. Host buffers
 * should come from bm_cuda_host_alloc (pinned) for the copies to overlap;
 * a slot's buffers must not be touched between its submit and its wait. */
#ifndef BM_CUDA_TOWERS_H
#define BM_CUDA_TOWERS_H

#include "bert.h"
#include "bmcuda.h"
#include "vit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bm_cuda_vit bm_cuda_vit;
/* Uploads m's weights; batches of at most max_batch images. */
bm_cuda_vit *bm_cuda_vit_new(bm_cuda *c, const bm_vit *m, bm_prec t, int max_batch);
void bm_cuda_vit_free(bm_cuda_vit *g);
/* Attention by bm_cuda_attention (0, the default: the tensor-core flash
 * kernel in bf16 / fp16 with head dim 64, else the fp32 fused one;
 * BM_CUDA_ATTN=fused-fp32 forces the latter) or, batched = 1, by two
 * cuBLAS strided-batched GEMMs per head around a softmax (scores in memory,
 * fp32): the images' sequences all have T tokens, so the GEMMs batch over
 * images. The environment's BM_CUDA_ATTN=batched sets 1 at bm_cuda_vit_new;
 * the bench times both. */
void bm_cuda_vit_set_attention(bm_cuda_vit *g, int batched);
/* img[B,3,S,S] normalized -> emb[B,E] and, when tokens != NULL,
 * tokens[B,T,W] (fp32, host). */
void bm_cuda_vit_submit(bm_cuda_vit *g, int slot, const float *img, int B, float *emb,
                        float *tokens);
void bm_cuda_vit_wait(bm_cuda_vit *g, int slot);
void bm_cuda_vit_forward(bm_cuda_vit *g, const float *img, int B, float *emb, float *tokens);

typedef struct bm_cuda_bert bm_cuda_bert;
/* Uploads m's weights; at most max_seq texts and max_tok tokens a batch. */
bm_cuda_bert *bm_cuda_bert_new(bm_cuda *c, const bm_bert *m, bm_prec t, int max_seq,
                               int max_tok);
void bm_cuda_bert_free(bm_cuda_bert *g);
/* Learned prompt vectors ctx[nctx, W] (host fp32): a token id -k-1 < 0 takes
 * ctx row k in place of a word embedding. NULL / 0 removes them. */
void bm_cuda_bert_set_ctx(bm_cuda_bert *g, const float *ctx, int nctx);
/* As bm_bert_forward: ids packed (text s at start[s], len[s] ids) ->
 * emb[nseq,E] and, when tokens != NULL, tokens[N,W] (N = max start+len). */
void bm_cuda_bert_submit(bm_cuda_bert *g, int slot, const int32_t *ids, const int *start,
                         const int *len, int nseq, float *emb, float *tokens);
void bm_cuda_bert_wait(bm_cuda_bert *g, int slot);
void bm_cuda_bert_forward(bm_cuda_bert *g, const int32_t *ids, const int *start, const int *len,
                          int nseq, float *emb, float *tokens);

#ifdef __cplusplus
}
#endif
#endif
