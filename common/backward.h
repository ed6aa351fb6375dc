/* backward.h - the backward pass of every layer of the two towers, and the
 * training forwards that keep what those backwards need (llm.c style).
 *
 * Conventions (those of kernels.h): row-major float32, nn.Linear layout
 * W[out,in], OpenMP threads with OpenBLAS single-threaded per call
 * (bm_set_threads). Packed sequences: sequence s holds rows
 * start[s] .. start[s]+len[s]-1 of a [ntok, C] buffer.
 *
 * Gradient rules, the same everywhere:
 *   - parameter gradients (dW, db, dg, dtable, dpos, dcls) ACCUMULATE (+=), so
 *     several micro-batches add up before one optimizer step; zero them at the
 *     start of each step. Any of them may be NULL (frozen parameter).
 *   - input gradients (dx) are WRITTEN (=), or added (+=) where a function
 *     takes an `accumulate` flag; dx may be NULL where the input needs none.
 *   - every function gives the same bits for the same inputs and thread count:
 *     each output element is summed by one thread in a fixed order (outputs
 *     are partitioned, never reduced by racing threads). Most sums (bias,
 *     norm, embedding and positional gradients) are split by columns and so
 *     give the same bits for any thread count; GEMM sums follow OpenBLAS.
 *
 * Residual connections have no function: y = x + f(x) gives dx = dy + df's
 * input gradient, so the composition keeps one gradient buffer for the
 * residual stream and lets the branch's first layer add into it (the
 * `accumulate` flag of bm_linear_backward / bm_layernorm_backward), e.g. a
 * pre-norm ViT block, from d = dL/d(block output):
 *   fc2: dh = d W2          gelu: dh *= gelu'(pre)     fc1: dln = dh W1
 *   ln2: d += LN'(dln)      proj: datt = d Wp          attention: dqkv
 *   qkv: dln = dqkv Wqkv    ln1: d += LN'(dln)         (d is now dL/d(block input))
 * and a post-norm BERT layer a = LN1(x + attn(x)), y = LN2(a + mlp(a)):
 *   ln2: dr = LN2'(dy)      fc2, gelu          da = dr; fc1: da += dh1 W1
 *   ln1: dr = LN1'(da)      proj, attention    dx = dr; qkv: dx += dqkv Wqkv
 * (tests/unit/test_backward.c composes both and matches PyTorch). */
#ifndef BM_BACKWARD_H
#define BM_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

/* ---- linear (bw_linear.c) ---- */

/* Forward y[N,out] = x[N,in] W[out,in]^T + b: bm_linear (kernels.h); keep x.
 *   dx[N,in]   = (or += when accumulate) dy[N,out] W[out,in]
 *   dW[out,in] += dy^T x          db[out] += sum over rows of dy */
void bm_linear_backward(float *dx, float *dW, float *db, const float *dy, const float *x,
                        const float *W, int N, int in, int out, int accumulate);

/* Training forward of linear + GELU: keeps the pre-activation.
 *   pre[N,out] = x W^T + b        y[N,out] = GELU(pre) (erf form; the same
 *   bits as bm_linear_gelu's output)
 * The backward is bm_gelu_backward (dpre from dy and pre) then
 * bm_linear_backward with dpre. */
void bm_linear_gelu_train(float *pre, float *y, const float *x, const float *W, const float *b,
                          int N, int in, int out);
/* dx[n] = dy[n] * GELU'(pre[n]), GELU'(x) = Phi(x) + x phi(x) exactly;
 * dx may equal dy (in place). */
void bm_gelu_backward(float *dx, const float *dy, const float *pre, size_t n);

/* Patch embedding (bm_patch_embed, kernels.h) is a linear on the im2col
 * matrix cols[B*G*G, 3*P*P] that the forward fills: keep cols.
 *   dW[C, 3*P*P] += dy^T cols     db[C] += sum of dy[B*G*G, C]
 * No input gradient: the image is not learned. */
void bm_patch_embed_backward(float *dW, float *db, const float *dy, const float *cols, int B,
                             int S, int P, int C);

/* ---- normalization (bw_norm.c) ---- */

/* The training forward, bm_layernorm_train, is in kernels.h beside
 * bm_layernorm: one row function serves both, so their bits agree. */
/* dx[N,C] = (or += when accumulate) d/dx;  dg[C] += sum dy*xhat;  db[C] += sum dy
 * from dy[N,C], the forward's input x[N,C], mean[N], rstd[N], gain g[C]. */
void bm_layernorm_backward(float *dx, float *dg, float *db, const float *dy, const float *x,
                           const float *mean, const float *rstd, const float *g, int N, int C,
                           int accumulate);

/* Softmax over each of N rows of n (forward bm_softmax, in place, kernels.h):
 * dx[N,n] = y * (dy - sum(y*dy)) from the forward's output y[N,n]. */
void bm_softmax_backward(float *dx, const float *dy, const float *y, int N, int n);

/* y = x / max(|x|, 1e-12) per row (bm_l2_normalize, in place: keep a copy of
 * its input x[N,C]). dx[N,C] = (dy - y (y.dy)) / |x|, or dy / 1e-12 when
 * |x| <= 1e-12 (the clamp is constant there). */
void bm_l2_normalize_backward(float *dx, const float *dy, const float *x, int N, int C);

/* ---- attention (bw_attention.c) ---- */

/* The softmax probabilities are KEPT, not recomputed: for ViT-B at batch 16
 * they are 16*12*197^2 floats = 30 MB a layer (360 MB for 12 layers), about
 * 15% of the activations the backward keeps anyway (qkv, fc1 pre-activation
 * and output, inputs of each linear and norm), while recomputing them costs a
 * second QK^T GEMM and softmax per layer in the backward. For long texts
 * (256 tokens, small batches) the same holds. A caller short of memory can
 * call bm_attention_train again in its backward to refill P for one layer.
 *
 * P holds, for each sequence s and head h, a [len[s], len[s]] block at
 * float offset heads * sum_{r<s} len[r]^2 + h * len[s]^2. */
size_t bm_attention_probs_size(const int *len, int nseq, int heads);
/* Per-thread scratch (floats) for bm_attention_backward: threads * maxlen^2,
 * for the thread count at the time of the call (size it after bm_set_threads). */
size_t bm_attention_backward_scratch(int maxlen);
/* Training forward: exactly bm_attention (kernels.h: qkv[ntok,3C] with q, k, v
 * in column blocks, heads of hd = C/heads columns, scores q.k/sqrt(hd),
 * key_keep[ntok] may be NULL, 0 masks a key for its sequence with the most
 * negative float as HuggingFace does), out[ntok,C], and keeps P (above). */
void bm_attention_train(float *out, float *P, const float *qkv, const int *start, const int *len,
                        int nseq, int C, int heads, const uint8_t *key_keep);
/* dqkv[ntok,3C] = d/dqkv from dout[ntok,C], the forward's qkv and P. Rows of
 * each sequence are written (=); rows outside every sequence are untouched.
 * Masked keys get exactly zero k and v gradients (their probabilities are 0).
 * scratch: bm_attention_backward_scratch(maxlen) floats. */
void bm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *P,
                           const int *start, const int *len, int nseq, int C, int heads,
                           float *scratch);

/* ---- embeddings, pooling, dropout (bw_embed.c) ---- */

/* Lookup y[t] = table[ids[t]] (BERT word / token-type embeddings):
 * dtable[V,C] += dy[t] into row ids[t] for each of ntok tokens, tokens added
 * in order 0..ntok-1 (threads split the columns: same bits for any thread
 * count, repeated ids included). */
void bm_embedding_backward(float *dtable, const float *dy, const int *ids, int ntok, int C);

/* Positional embedding added to packed sequences, x[start[s]+i] += pos[i]
 * (BERT positions 0..len-1; ViT's pos_embed with start = s*T, len = T):
 * dpos[maxlen,C] += dx[start[s]+i] for every s, i < len[s], s in order.
 * The gradient of the embedded input is dx itself (the add passes it on). */
void bm_pos_embed_backward(float *dpos, const float *dx, const int *start, const int *len,
                           int nseq, int C);

/* ViT token assembly x[b,0] = cls + pos[0], x[b,1+p] = patches[b,p] + pos[1+p]
 * over B images of T = GG+1 tokens, from dx[B*T, C]:
 *   dpatch[B*GG, C] = dx of the patch tokens (written; the patch embedding's dy)
 *   dcls[C] += sum_b dx[b,0]          dpos[T,C] += sum_b dx[b,t]
 * any of the three may be NULL. */
void bm_vit_tokens_backward(float *dpatch, float *dcls, float *dpos, const float *dx, int B,
                            int GG, int C);

/* Pooling of token 0 ([CLS]) of each sequence, pooled[s] = x[start[s]]:
 * dx[ntok,C] = 0 except rows start[s] = dpooled[s] (written). */
void bm_pool_token0_backward(float *dx, const float *dpooled, const int *start, int nseq,
                             int ntok, int C);

/* Inverted dropout with a counter-based mask: element i of dropout site
 * `site` (the caller numbers its sites, e.g. layer*4 + which) at optimizer
 * step `step` is kept when hash(seed, step, site, i) >= p, so the mask does
 * not depend on threads or call order and the backward recomputes it instead
 * of storing it. y[n] = keep ? x / (1-p) : 0 (y may equal x; p = 0 copies).
 * The backward is the same map on the gradient. */
void bm_dropout(float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t step,
                uint64_t site);
void bm_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                         uint64_t step, uint64_t site);

/* ---- cross-attention (bw_xattn.c) ---- */

/* Multi-head attention of one packed set of rows over another: the queries of
 * sequence s (rows qstart[s] .. +qlen[s] of q[*, C]) attend only to the keys
 * and values of kv sequence s (rows kstart[s] .. +klen[s] of kv[*, 2C], k in
 * columns [0,C), v in [C,2C)); heads of hd = C/heads columns, scores
 * q.k/sqrt(hd), no mask. out[*, C] rows of each q sequence are written.
 * P keeps, for sequence s and head h, a [qlen[s], klen[s]] block at float
 * offset heads * sum_{r<s} qlen[r]*klen[r] + h * qlen[s]*klen[s].
 * Every length must be >= 1. (sequence, head) pairs run in parallel, each
 * owning its block of P and its columns of out: the same bits for any
 * thread count. */
size_t bm_xattn_probs_size(const int *qlen, const int *klen, int nseq, int heads);
/* Per-thread scratch (floats) for bm_xattn_backward: threads * max
 * qlen[s]*klen[s], for the thread count at the time of the call. */
size_t bm_xattn_backward_scratch(const int *qlen, const int *klen, int nseq);
void bm_xattn_train(float *out, float *P, const float *q, const float *kv, const int *qstart,
                    const int *qlen, const int *kstart, const int *klen, int nseq, int C, int heads);
/* dq[*, C] and dkv[*, 2C] = d/dq, d/dkv from dout[*, C], the forward's q, kv
 * and P. Rows of each q sequence of dq and of each kv sequence of dkv are
 * written (=); other rows are untouched. The kv sequences must not overlap
 * (each job writes its kv rows without a sum over sequences). Either of dq,
 * dkv may be NULL. scratch: bm_xattn_backward_scratch floats. */
void bm_xattn_backward(float *dq, float *dkv, const float *dout, const float *q, const float *kv,
                       const float *P, const int *qstart, const int *qlen, const int *kstart,
                       const int *klen, int nseq, int C, int heads, float *scratch);

#endif
