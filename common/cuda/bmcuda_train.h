/* bmcuda_train.h - training on the GPU: the backward of every image-tower
 * layer, the losses, AdamW with fp32 master weights, gradient clipping, fp16
 * loss scaling, and the fine-tuning step of finetune.h (tower + linear head
 * end to end) with the same semantics as the CPU's bm_ft.
 *
 * Conventions: those of backward.h (row-major, nn.Linear layout W[out,in];
 * parameter gradients ACCUMULATE, input gradients are written or added when
 * `accumulate` is set), on device pointers. `prec` names the storage type of
 * activations and weight copies (BMCT_FP32, BMCT_BF16, BMCT_FP16); all
 * arithmetic is fp32 (GEMMs accumulate in fp32, reductions in double), the
 * residual stream, parameter gradients, master weights and AdamW moments are
 * fp32. Every CUDA/cuBLAS call is checked; a failure ends the program with a
 * message naming the call (bm_die), as the CPU code does with malloc.
 *
 * The low-level functions run on the context's stream and do not synchronize;
 * those returning a number (losses, norms) synchronize.
 *
 * Built only where nvcc exists (BM_HAVE_CUDA); the rest of the project does
 * not include this header otherwise. */
#ifndef BM_CUDA_TRAIN_H
#define BM_CUDA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "bmcuda.h"
#include "bmcuda_fwd.h"
#include "bert_train.h"
#include "finetune.h"

/* prec: bm_prec's values (bmcuda.h) */
enum { BMCT_FP32 = BM_PREC_FP32, BMCT_BF16 = BM_PREC_BF16, BMCT_FP16 = BM_PREC_FP16 };

/* The device's compute stream and cuBLAS handle (bm_cuda_open, bmcuda.h)
 * plus reduction scratch. Device memory: bm_cuda_malloc / bm_cuda_free. */
typedef struct bmct_ctx bmct_ctx;
bmct_ctx *bmct_ctx_new(bm_cuda *cu);
void bmct_ctx_free(bmct_ctx *c);
void bmct_sync(bmct_ctx *c);
bm_cuda *bmct_ctx_cuda(bmct_ctx *c);

/* Copies on the compute stream that return when done. upload_as/download_as
 * convert float <-> prec elements (round to nearest even) on the device. */
void bmct_upload(bmct_ctx *c, void *dst, const void *src, size_t bytes);
void bmct_download(bmct_ctx *c, void *dst, const void *src, size_t bytes); /* synchronizes */
void bmct_upload_as(bmct_ctx *c, void *dst, int prec, const float *src, size_t n);
void bmct_download_as(bmct_ctx *c, float *dst, const void *src, int prec, size_t n);
/* Fills n elements of prec with NaN (poison before a run). */
void bmct_poison(bmct_ctx *c, void *p, int prec, size_t n);

/* Row-major GEMM C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, A and B of
 * prec, C of prec or fp32 (c_f32), fp32 accumulation, `batch` products at
 * element strides sA, sB, sC. */
void bmct_gemm(bmct_ctx *c, int prec, int c_f32, int ta, int tb, int M, int N, int K, float alpha,
               const void *A, int lda, long long sA, const void *B, int ldb, long long sB,
               float beta, void *C, int ldc, long long sC, int batch);

/* ---- backward kernels (backward.h's, on the device) ---- */

/* dy, x, W of prec; dx of prec, or fp32 when dx_f32; dW, db fp32 (+=).
 * dx (=, or += with accumulate), dW, db may be NULL. */
void bmct_linear_backward(bmct_ctx *c, int prec, void *dx, int dx_f32, float *dW, float *db,
                          const void *dy, const void *x, const void *W, int N, int in, int out,
                          int accumulate);
/* db[C] += column sums of y[N,C] (prec), summed in double, in a fixed order. */
void bmct_colsum(bmct_ctx *c, int prec, float *db, const void *y, int N, int C);
/* pre[N,C] (prec) += b (fp32, may be NULL), then h = GELU(pre) (erf form). */
void bmct_bias_gelu(bmct_ctx *c, int prec, void *pre, void *h, const float *b, int N, int C);
/* dx = dy * GELU'(pre), all prec, n elements; dx may equal dy. */
void bmct_gelu_backward(bmct_ctx *c, int prec, void *dx, const void *dy, const void *pre, size_t n);
/* The same on [N,C] with db[C] += the column sums of dx (as stored), in
 * one pass; db may be NULL. */
void bmct_gelu_backward_db(bmct_ctx *c, int prec, void *dx, float *db, const void *dy, const void *pre,
                           int N, int C);
/* yt (prec; NULL: none) = y fp32 [N,C] and db[C] += its column sums, one pass. */
void bmct_convert_colsum(bmct_ctx *c, int prec, void *yt, float *db, const float *y, int N, int C);
/* Training LayerNorm: x fp32 [N,C] -> y (prec, or fp32 when y_f32), mean, rstd [N]. */
void bmct_layernorm_fwd(bmct_ctx *c, int prec, int y_f32, void *y, float *mean, float *rstd,
                        const float *x, const float *g, const float *b, int N, int C, float eps);
/* dx (fp32, = or +=), dg, db (fp32 +=, may be NULL) from dy fp32 and the forward's x, mean, rstd. */
void bmct_layernorm_backward(bmct_ctx *c, float *dx, float *dg, float *db, const float *dy,
                             const float *x, const float *mean, const float *rstd, const float *g,
                             int N, int C, int accumulate);
/* dx[N,n] = y * (dy - sum(y*dy)), all prec. */
void bmct_softmax_backward(bmct_ctx *c, int prec, void *dx, const void *dy, const void *y, int N,
                           int n);
/* y = x / max(|x|, 1e-12) rows of C, and its backward (fp32, sums in double). */
void bmct_l2norm_fwd(bmct_ctx *c, float *y, const float *x, int N, int C);
void bmct_l2norm_backward(bmct_ctx *c, float *dx, const float *dy, const float *x, int N, int C);

/* Attention over B sequences of T tokens (ViT: no padding mask).
 * qkv[B*T,3C], out[B*T,C], P[B*heads,T,T] (the probabilities, kept for the
 * backward; the layout differs from the CPU's packed one only in name: with
 * equal lengths both are [b][h][T][T]), all prec; scratch of
 * bmct_attention_scratch bytes. dqkv[B*T,3C] is written. bf16 / fp16 with
 * head dim 64 (unless BM_CUDA_ATTN=batched) run flash attention instead: P
 * then receives the fp32 log-sum-exp [B*T, heads] (fewer bytes than the
 * probabilities) and the backward recomputes the probabilities from it and
 * reads the forward's out. */
size_t bmct_attention_scratch(int prec, int B, int T, int C, int heads);
void bmct_attention_fwd(bmct_ctx *c, int prec, void *out, void *P, const void *qkv, int B, int T,
                        int C, int heads, void *scratch);
void bmct_attention_backward(bmct_ctx *c, int prec, void *dqkv, const void *dout, const void *qkv,
                             const void *out, const void *P, int B, int T, int C, int heads,
                             void *scratch);

/* The forward pieces that keep nothing (im2col, bias adds, conversions, ViT
 * token assembly) are bmcuda_fwd.h's, on the same stream.
 * Patch embedding backward, from the im2col matrix cols[B*G*G, 3PP] (prec)
 * of bm_cuda_im2col: dW[C,3PP] += dpatch^T cols, db[C] += column sums of dpatch. */
void bmct_patch_embed_backward(bmct_ctx *c, int prec, float *dW, float *db, const void *dpatch,
                               const void *cols, int B, int S, int P, int C);
/* Backward of bm_cuda_vit_tokens from dx[B*T,W] fp32: dpatch[B*GG,W] (prec,
 * written), dcls[W] and dpos[T,W] (fp32 +=, may be NULL). */
void bmct_vit_tokens_backward(bmct_ctx *c, int prec, void *dpatch, float *dcls, float *dpos,
                              const float *dx, int B, int GG, int W);

/* bm_dropout's mask bit for bit (fp32): y may equal x; backward is the same call. */
void bmct_dropout(bmct_ctx *c, float *y, const float *x, size_t n, float p, uint64_t seed,
                  uint64_t step, uint64_t site);

/* ---- losses, optimizer ---- */

/* Mean softmax cross-entropy (multilabel 0) or BCE with logits and
 * pos_weight (multilabel 1, pos_weight [C] device or NULL), loss.h's
 * semantics; dlogits (may be NULL) gets d(mean)/d(logits) * scale. All fp32
 * device pointers; synchronizes and returns the mean loss. */
double bmct_loss(bmct_ctx *c, int multilabel, const float *logits, const float *target,
                 const float *pos_weight, int B, int C, float *dlogits, float scale);

/* One AdamW update of n elements, adamw.h's arithmetic: w *= 1 - lr wd;
 * moments; w -= lr/bc1 m / (sqrt(v)/sqrt(bc2) + eps), with the gradient
 * g * gscale (the clip or unscale factor, 1 for none). `step` counts from 1.
 * wc (prec, may be NULL) gets the updated weight in the compute type. */
void bmct_adamw(bmct_ctx *c, float *w, void *wc, int prec, const float *g, float *m, float *v,
                size_t n, double lr, double wd, double beta1, double beta2, double eps, long step,
                float gscale);
/* Sum of squares of n fp32 values in double (fixed order; NaN/inf propagate). */
double bmct_sumsq(bmct_ctx *c, const float *g, size_t n);
void bmct_scale(bmct_ctx *c, float *g, size_t n, float s);

/* ---- the fine-tuning step (finetune.h on the GPU) ----
 * Typical use (bm-train --device cuda --mode finetune):
 *   bm_ft f; bm_ft_init(&f, ...);  (and a resume filling f's params/moments)
 *   bm_cuda *cu = bm_cuda_open("cuda:0", err, sizeof err);   (NULL: say err, exit 1)
 *   bm_cuda_ft *g = bm_cuda_ft_init(&f, cu, BM_PREC_BF16);
 *   per batch:  loss = bm_cuda_ft_grad(g, img, Y, B, batch_no);
 *               bm_cuda_ft_step(g, lr_scale, clip, &norm);
 *   evaluation: bm_cuda_ft_logits(g, img, B, logits);
 *   checkpoint: bm_cuda_ft_download(g, &f); then the CPU code saves f.
 *   bm_cuda_ft_free(g); bm_cuda_close(cu);
 * The GPU copy starts from f's parameters, moments, optimizer step, groups
 * (lr, weight decay, betas, eps), unlock/frozen choice, pos_weight, dropout
 * and its seed; f is not used afterwards until download. */
typedef struct bm_cuda_ft bm_cuda_ft;

/* cu: an open device (bm_cuda_open); it must outlive the returned state. */
bm_cuda_ft *bm_cuda_ft_init(const bm_ft *f, bm_cuda *cu, int prec);
void bm_cuda_ft_free(bm_cuda_ft *g);
/* Zeroes the gradients, forward + backward of img[B,3,S,S] (normalized,
 * host) with targets Y[B,C] (host); returns the mean loss. drop_step is
 * bm_ft's drop_step (the batch number seeding the dropout mask). With fp16
 * the loss is scaled by the current loss scale inside (the return value is
 * not). */
double bm_cuda_ft_grad(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step);
/* Gradient accumulation (bm-train --accum) and the pipelined feed: like
 * bm_cuda_ft_grad, but the gradient of the batch's mean loss times weight
 * (0 < weight <= 1) is ADDED to the gradients, which are zeroed first only
 * when first is set. The batches k of a group of n records, each with
 * weight B_k / n, leave the gradient of the group's mean loss (as the CPU's
 * double accumulator, to float rounding) for bm_cuda_ft_step, whose norm
 * and clipping then see the group's gradient; with fp16 every batch carries
 * the same loss scale (it changes only in bm_cuda_ft_step). img and Y are
 * copied to the device asynchronously (page-locked from bm_cuda_host_alloc:
 * DMA; either way done when it returns). (weight 1, first 1) gives
 * bm_cuda_ft_grad's gradients bit for bit. Returns the batch's mean loss,
 * unweighted. */
double bm_cuda_ft_grad_acc(bm_cuda_ft *g, const float *img, const float *Y, int B, uint64_t drop_step,
                           double weight, int first);
/* Clips the gradients to max_norm (<= 0: no clipping; torch's rule as
 * bm_clip_grad_norm), then one AdamW step with every group's lr times
 * lr_scale, refreshing the compute-type weight copies. *norm (may be NULL)
 * gets the gradient norm before clipping. Returns 1 when the step was taken;
 * 0 when fp16 found inf/NaN gradients (no update, loss scale halved; the
 * scale, 1024 at first, doubles after 2000 good steps). */
int bm_cuda_ft_step(bm_cuda_ft *g, double lr_scale, double max_norm, double *norm);
/* The logits of the last bm_cuda_ft_grad ([B,C], host). */
void bm_cuda_ft_last_logits(bm_cuda_ft *g, float *logits, int B);
/* Inference logits of img[B,3,S,S] (no dropout) into logits[B,C] (host). */
void bm_cuda_ft_logits(bm_cuda_ft *g, const float *img, int B, float *logits);
/* Parameters, AdamW moments and step count back into f (the CPU checkpoint
 * code then saves them), synchronously. */
void bm_cuda_ft_download(bm_cuda_ft *g, bm_ft *f);
/* The current gradients into f's gradient buffers (tests, CPU accumulation),
 * divided by the fp16 loss scale. */
void bm_cuda_ft_download_grads(bm_cuda_ft *g, bm_ft *f);
float bm_cuda_ft_loss_scale(const bm_cuda_ft *g);

/* ---- attention over packed variable-length texts, for training ----
 * qkv[ntok,3C] (prec) holds the texts token after token: text s is rows
 * start[s] .. start[s]+len[s]-1, and every row belongs to one text (tseq[i]
 * = its text; start, len, tseq device ints). Each token attends to its own
 * text only, so the texts' padding never enters. The forward writes out
 * [ntok,C] (prec) and lse [ntok,heads] (fp32: the natural log-sum-exp of
 * each row's scaled scores); the backward recomputes the probabilities from
 * q, k and lse (FlashAttention-2) and writes dqkv[ntok,3C] (prec) whole.
 * bf16 / fp16 with head dim 64 run k_flash.cu's tensor-core kernels; the
 * rest (fp32, other head dims up to 128, or BM_CUDA_ATTN=fused-fp32 /
 * batched, read at each call) run plain fp32 kernels (one warp a row and
 * head; no atomics, so the same bits every run; the flash backward adds dq
 * with atomics). The scratch suffices for either. maxlen >= every len. */
int bmct_varlen_attention_flash(int prec, int C, int heads);
size_t bmct_varlen_attention_scratch(int prec, int ntok, int C, int heads);
void bmct_varlen_attention_fwd(bmct_ctx *c, int prec, void *out, float *lse, const void *qkv,
                               const int *start, const int *len, const int *tseq, int nseq,
                               int maxlen, int ntok, int C, int heads);
void bmct_varlen_attention_backward(bmct_ctx *c, int prec, void *dqkv, const void *dout,
                                    const void *qkv, const void *out, const float *lse,
                                    const int *start, const int *len, const int *tseq, int nseq,
                                    int maxlen, int ntok, int C, int heads, void *scratch);

/* Embedding-table gradients without atomics: rows grouped on the host.
 * For u < nu: dst[row[u]] += sum of src[tok[k]] for k in off[u] .. off[u+1]-1
 * (rows of W fp32; the row[] distinct; the sum in tok's order), so each
 * destination row is written by one block, in a fixed order. */
void bmct_group_rows_add(bmct_ctx *c, float *dst, const float *src, const int *row, const int *off,
                         const int *tok, int nu, int W);
/* d[start[s]] += dp[s] for s < nseq (rows of W fp32; distinct starts): the
 * backward of taking each text's first token ([CLS]). */
void bmct_pool_first_backward(bmct_ctx *c, float *d, const float *dp, const int *start, int nseq,
                              int W);

/* ---- the text tower's training (bert_train.h on the GPU) ----
 * Typical use (bm-train --device cuda --mode contrastive / fusion):
 *   bm_bert_train bt; bm_bert_train_init(&bt, &model.bert, unlock, frozen);
 *   bmct_ctx *c = bmct_ctx_new(cu);
 *   bm_cuda_bt *g = bm_cuda_bt_new(c, &bt, BM_PREC_BF16, max_texts, max_tokens, n_ctx);
 *   per batch: bm_cuda_bt_zero_grad(g);
 *              bm_cuda_bt_forward(g, ids, start, len, nseq, dctx_or_NULL, demb, NULL);
 *              (loss on the device) bm_cuda_bt_backward(g, demb_grad, NULL, dctx);
 *              AdamW: bmct_adamw on bm_cuda_bt_params / _params_compute / _grads
 *              at each trained tensor's offset (bm_cuda_bt_tensors).
 *   checkpoint: bm_cuda_bt_download(g, &bt); then the CPU code saves bt.
 * Parameters: bt's layout (the fp32 masters, [np]) and a copy in the compute
 * type for the GEMMs ([np], the same offsets; fp32 uses the masters), so that
 * bmct_adamw(.., wc = compute copy + off, ..) keeps both in step. Gradients:
 * fp32 [np - goff] over the suffix that trains, as bt->g; they ACCUMULATE.
 * Activations in the compute type where train_ft.cu keeps them so (GEMM
 * inputs, attention out, MLP pre-activation and GELU); the residual stream,
 * LayerNorm inputs and statistics, the embedding sum, the projection's
 * output and every gradient that crosses a LayerNorm are fp32. No
 * checkpointing (bt->checkpoint is ignored): every kept layer's activations
 * stay on the device. All pointers below are device pointers unless said. */
typedef struct bm_cuda_bt bm_cuda_bt;

/* Uploads bt's parameters; activations for up to max_seq texts and max_tok
 * packed tokens; n_ctx prompt vectors at most (0: a forward never gets ctx;
 * > 0: every layer's activations are kept, as the CPU does with ctx). */
bm_cuda_bt *bm_cuda_bt_new(bmct_ctx *c, const bm_bert_train *bt, int prec, int max_seq, int max_tok,
                           int n_ctx);
void bm_cuda_bt_free(bm_cuda_bt *g);
/* bm_bert_train_forward: ids, start, len on the HOST (packed as
 * bm_bert_forward takes them: every token of [0, N) in exactly one text;
 * they are copied, so the caller may reuse them at once); ctx [n_ctx, W]
 * fp32 on the device or NULL (negative ids = its rows). emb [nseq, E] and
 * tokens [N, W] (fp32, device, either may be NULL) are written, queued on
 * the stream. The activations the backward needs are kept. */
void bm_cuda_bt_forward(bm_cuda_bt *g, const int32_t *ids, const int *start, const int *len, int nseq,
                        const float *ctx, float *emb, float *tokens);
/* bm_bert_train_backward of the last forward: demb [nseq, E] and/or dtokens
 * [N, W] (device fp32, either may be NULL; both: the gradients add);
 * parameter gradients added to the gradient buffer; dctx [n_ctx, W] (device
 * fp32) ADDED to when not NULL (the forward must have had ctx; the gradient
 * then runs through frozen layers too), otherwise the backward stops at the
 * lowest layer that trains. May be called more than once per forward. */
void bm_cuda_bt_backward(bm_cuda_bt *g, const float *demb, const float *dtokens, float *dctx);
void bm_cuda_bt_zero_grad(bm_cuda_bt *g);
/* The tensor table (bt's: names, shapes, offsets, decay), np and goff. */
const bm_bt_tensor *bm_cuda_bt_tensors(const bm_cuda_bt *g, int *nt, size_t *np, size_t *goff);
float *bm_cuda_bt_params(bm_cuda_bt *g);          /* fp32 [np] */
void *bm_cuda_bt_params_compute(bm_cuda_bt *g);   /* prec [np]; the masters for fp32 */
float *bm_cuda_bt_grads(bm_cuda_bt *g);           /* fp32 [np - goff]; NULL when frozen */
float *bm_cuda_bt_grad(bm_cuda_bt *g, int i);     /* tensor i's, NULL when it does not train */
int bm_cuda_bt_prec(const bm_cuda_bt *g);
/* After the fp32 masters changed by other means than bmct_adamw with wc:
 * the compute copy made again from them. */
void bm_cuda_bt_refresh_compute(bm_cuda_bt *g);
/* Synchronous copies to and from a CPU tower of the same shape and
 * freezing: parameters (checkpoints; upload: resume, compute copy refreshed)
 * and gradients (tests). */
void bm_cuda_bt_download(bm_cuda_bt *g, bm_bert_train *bt);
void bm_cuda_bt_upload(bm_cuda_bt *g, const bm_bert_train *bt);
void bm_cuda_bt_download_grads(bm_cuda_bt *g, bm_bert_train *bt);

#ifdef __cplusplus
}
#endif
#endif
