/* bmcuda_vit_train.h - the trainable image tower of vit_train.h on the GPU,
 * for tasks that put their own loss on top: an embedding gradient
 * (contrastive) or a gradient on every token (fusion), or both.
 *
 * The same semantics as vit_train.h: the same parameter order and trained
 * suffix (unlock / frozen / first / embed_trains as the CPU tower it was made
 * from), the embedding = L2(head(LN(token 0))), the tokens = the final
 * LayerNorm of every token (fp32), patch dropout with bm_vit_patch_keep's
 * kept sets (the CLS token first, then the kept patches in ascending order),
 * gradients ACCUMULATED into one fp32 buffer over p[goff..np) as vt->g.
 * Not here: gradient checkpointing (every training block keeps its
 * activations).
 *
 * Memory: fp32 master parameters P[np], their compute-type copy Pc (GEMM
 * operands; fp32 uses P itself), gradients G[np - goff] (NULL when frozen).
 * A GPU optimizer updates P (and Pc with bmct_adamw's wc) through the
 * pointers and the tensor table below; after any other change of P call
 * bm_cuda_vt_refresh. Activations are stored in the compute type, the
 * residual stream, LayerNorm statistics and the tail (final norm, head, L2)
 * in fp32.
 *
 * fp16: nothing scales the gradients here. Multiply demb / dtokens by the
 * loss scale (they are linear in it) and divide the gradients afterwards.
 *
 * All work is queued on the compute stream of cu (the context's); only the
 * uploads wait for it (host images, patch dropout's kept rows, parameters).
 * emb / tokens / demb / dtokens are the caller's device buffers (fp32); the
 * tower reads demb / dtokens during the backward call's queued work only.
 * Every CUDA call is checked (bm_die on failure). Built only with nvcc
 * (BM_HAVE_CUDA). */
#ifndef BM_CUDA_VIT_TRAIN_H
#define BM_CUDA_VIT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "bmcuda_train.h"
#include "vit_train.h"

typedef struct bm_cuda_vt bm_cuda_vt;

/* A device copy of vt's parameters, its freezing and its patch-dropout
 * settings (patch_dropout, pd_seed, pd_step); prec: BM_PREC_*. cu must
 * outlive the result. vt is not used afterwards. */
bm_cuda_vt *bm_cuda_vt_new(const bm_vit_train *vt, bm_cuda *cu, int prec);
void bm_cuda_vt_free(bm_cuda_vt *g);
/* The training context the tower's work runs on (for bmct_* calls around it). */
bmct_ctx *bm_cuda_vt_ctx(bm_cuda_vt *g);

/* Patch dropout for the following forwards, as vt's fields: p in [0,1), the
 * kept set of image b being bm_vit_patch_keep(seed, step, b). */
void bm_cuda_vt_set_patch_dropout(bm_cuda_vt *g, float p, uint64_t seed, uint64_t step);
/* Tokens per image the next forward gives: 1 + K (K = every patch without
 * patch dropout). */
int bm_cuda_vt_ntok(const bm_cuda_vt *g);
/* The kept patches of the last forward, [B*K] host ints (image b's at b*K,
 * ascending), or NULL when it dropped none. */
const int *bm_cuda_vt_keep(const bm_cuda_vt *g);

/* img[B,3,S,S] normalized fp32, on the host (forward) or the device
 * (forward_dev) -> emb[B,E] and tokens[B*T',W] (device fp32, T' =
 * bm_cuda_vt_ntok; either may be NULL), keeping what the backward needs.
 * Returns T'. */
int bm_cuda_vt_forward(bm_cuda_vt *g, const float *img, int B, float *emb, float *tokens);
int bm_cuda_vt_forward_dev(bm_cuda_vt *g, const float *img, int B, float *emb, float *tokens);
/* Parameter gradients of the last forward added to the gradient buffer from
 * demb[B,E] and/or dtokens[B*T',W] (device fp32, either NULL; dtokens needs
 * a forward that gave tokens). Nothing when frozen. */
void bm_cuda_vt_backward(bm_cuda_vt *g, const float *demb, const float *dtokens, int B);
void bm_cuda_vt_zero_grad(bm_cuda_vt *g);

/* Device buffers and the layout a GPU optimizer needs: P[np] fp32, Pc[np]
 * of the compute type (== P for fp32), G[np - goff] (NULL when frozen), and
 * vt's tensor table (names, shapes, offsets into P, decay flags). */
float *bm_cuda_vt_params(bm_cuda_vt *g);
void *bm_cuda_vt_params_compute(bm_cuda_vt *g);
float *bm_cuda_vt_grads(bm_cuda_vt *g);
size_t bm_cuda_vt_np(const bm_cuda_vt *g);
size_t bm_cuda_vt_goff(const bm_cuda_vt *g);
const bm_vt_tensor *bm_cuda_vt_tensors(const bm_cuda_vt *g, int *nt);
/* Pc = P converted (after P changed other than through bmct_adamw's wc). */
void bm_cuda_vt_refresh(bm_cuda_vt *g);

/* Synchronous copies between the device tower and a CPU tower of the same
 * shape and freezing: parameters into vt->p (checkpoints), gradients into
 * vt->g (tests, CPU-side accumulation), parameters from vt->p (resume;
 * refreshes Pc). */
void bm_cuda_vt_download(bm_cuda_vt *g, bm_vit_train *vt);
void bm_cuda_vt_download_grads(bm_cuda_vt *g, bm_vit_train *vt);
void bm_cuda_vt_upload(bm_cuda_vt *g, const bm_vit_train *vt);

#ifdef __cplusplus
}
#endif
#endif
