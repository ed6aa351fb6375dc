/* bmcuda_fusion.h - the co-attention fusion module of fusion.h on the GPU:
 * the same parameters, forward and backward (fusion.h's header comment is
 * the spec), on device pointers, for bm-train --mode fusion / regularized
 * with --device cuda.
 *
 * Arithmetic (as train_ft.cu): fp32 master parameters and gradients in
 * bm_fusion's layout (one flat buffer each, the same offsets as f->p and
 * f->g); for prec bf16 / fp16 a compute-type copy of every parameter feeds
 * the GEMMs (biases and LayerNorm gains are read in fp32). The residual
 * streams, LayerNorm statistics, the pooled rows, the attention
 * probabilities and every sum are fp32; the other activations and the
 * gradients flowing between GEMMs are stored in the compute type; GEMMs
 * accumulate in fp32 (fp32 runs use no TF32). Every sum has a fixed order
 * (no atomics): the same inputs give the same bits run after run.
 *
 * Gradient rules as fusion.h: parameter gradients ACCUMULATE (zero them per
 * step), input gradients are WRITTEN.
 *
 * Work is queued on the device's compute stream (bm_cuda_stream); the
 * functions do not wait for it except where they copy from the host (the
 * forward uploads the sequence bookkeeping, upload / download copy). Device
 * memory is grown, never shrunk, to the largest batch seen.
 *
 * Built only where nvcc exists (BM_HAVE_CUDA); no stub exists yet, since
 * only the GPU tests call it. */
#ifndef BM_CUDA_FUSION_H
#define BM_CUDA_FUSION_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "bmcuda.h"
#include "fusion.h"

typedef struct bm_cuda_fusion bm_cuda_fusion;

/* A device copy of f's configuration and parameters (f is not used
 * afterwards), gradients zeroed; prec is a bm_prec. cu must outlive it. */
bm_cuda_fusion *bm_cuda_fusion_new(const bm_fusion *f, bm_cuda *cu, int prec);
void bm_cuda_fusion_free(bm_cuda_fusion *g);
const bm_fusion_cfg *bm_cuda_fusion_cfg(const bm_cuda_fusion *g); /* mlp filled in */
int bm_cuda_fusion_prec(const bm_cuda_fusion *g);

/* out[B, bm_fusion_out_dim] (device fp32) from xi[B*Ti, Di] (device fp32)
 * and the texts in xt (device fp32 rows of Dt; text s at rows tstart[s] ..
 * tstart[s] + tlen[s] - 1, host arrays, tlen[s] >= 1, texts must not
 * overlap; xt must hold max(tstart + tlen) rows; rows in no text are
 * ignored, whatever they hold). The activations stay on the device for the
 * backward, so later work on the compute stream may overwrite xi and xt
 * (another stream must wait for this one first). out may be NULL (the
 * backward still works). Dies, saying why, on bad sequence bounds. */
void bm_cuda_fusion_forward(bm_cuda_fusion *g, const float *xi, int B, int Ti, const float *xt,
                            const int *tstart, const int *tlen, float *out);
/* From dout[B, outdim] (device fp32) = dL/d(out) of the last forward:
 * parameter gradients added; dxi[B*Ti, Di] and dxt[max(tstart + tlen), Dt]
 * (device fp32) written, rows of xt in no text get 0; either may be NULL.
 * May be called more than once after one forward (gradients add up).
 * fp16 has no loss scaling of its own: a caller scales dout (and divides
 * the gradients) as bm_cuda_ft does. */
void bm_cuda_fusion_backward(bm_cuda_fusion *g, const float *dout, float *dxi, float *dxt);
void bm_cuda_fusion_zero_grad(bm_cuda_fusion *g);

/* The flat device buffers (np floats each, bm_fusion's layout) and the
 * tensor table that names their pieces (offsets, sizes, decay flag; the
 * CPU bm_fusion's own table, copied): a GPU optimizer registers
 * params + t[i].off, grads + t[i].off, t[i].n. params_compute is the
 * compute-type copy (element size bm_prec_size(prec), same offsets) that
 * must be refreshed whenever params change (bmct_adamw's wc argument does
 * it, or bm_cuda_fusion_refresh); NULL for fp32, whose GEMMs read params. */
size_t bm_cuda_fusion_np(const bm_cuda_fusion *g);
float *bm_cuda_fusion_params(bm_cuda_fusion *g);
float *bm_cuda_fusion_grads(bm_cuda_fusion *g);
void *bm_cuda_fusion_params_compute(bm_cuda_fusion *g);
const bm_fusion_tensor *bm_cuda_fusion_tensors(const bm_cuda_fusion *g, int *nt);
/* Recomputes params_compute from params (after writing params directly). */
void bm_cuda_fusion_refresh(bm_cuda_fusion *g);

/* Synchronous copies between the device and a CPU bm_fusion of the same
 * configuration (dies otherwise): parameters into f->p (checkpoint),
 * gradients into f->g (tests, CPU accumulation), parameters from f->p
 * (resume; the compute-type copy is refreshed). */
void bm_cuda_fusion_download(bm_cuda_fusion *g, bm_fusion *f);
void bm_cuda_fusion_download_grads(bm_cuda_fusion *g, bm_fusion *f);
void bm_cuda_fusion_upload(bm_cuda_fusion *g, const bm_fusion *f);

/* ---- the attention kernels it is built from (k_fusion_attn.cu) ----
 * Multi-head attention between packed sets of rows, no mask: sequence s's
 * queries are rows qstart[s] .. +qlen[s]-1 of q (row stride ldq), its keys
 * and values rows kstart[s] .. +klen[s]-1 of k and v (row stride ldk, the
 * same for both); head h reads columns h*hd .. h*hd+hd-1 of each, scores
 * are q.k / sqrt(hd), softmax over the sequence's keys. Self-attention is
 * the case q, k, v = the q, k, v column blocks of one qkv matrix with the
 * same sequences. A bm_fusion_attn holds the sequences (device arrays)
 * and P's layout. Element type T of
 * q, k, v, out, dq, dk, dv is prec; P and dS are fp32. */
typedef struct {
  int nseq, heads, hd;
  int nq, nk;              /* rows of the query and key matrices */
  const int *qstart, *qlen, *kstart, *klen; /* device [nseq] */
  const int *qseq, *kseq;  /* device [nq], [nk]: each row's sequence, -1 for none */
  const long long *poff;   /* device [nseq]: sequence s's probabilities start (floats) */
  size_t nP;               /* floats of P: sum over s of heads * qlen * klen */
} bm_fusion_attn;
/* out (rows in no sequence untouched) and P [s][h][qlen][klen] (fp32). */
void bm_fusion_attn_fwd(bm_cuda *cu, int prec, const bm_fusion_attn *a, void *out, int ldo,
                        float *P, const void *q, int ldq, const void *k, const void *v, int ldk);
/* dq, dk, dv written on the rows of the sequences (others untouched; dq
 * or dk and dv may be NULL); dS: fp32 scratch of a->nP floats. */
void bm_fusion_attn_bwd(bm_cuda *cu, int prec, const bm_fusion_attn *a, void *dq, int lddq,
                        void *dk, void *dv, int lddk, float *dS, const void *dout, int lddo,
                        const float *P, const void *q, int ldq, const void *k, const void *v,
                        int ldk);

#ifdef __cplusplus
}
#endif
#endif
