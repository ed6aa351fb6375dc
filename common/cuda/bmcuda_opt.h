/* bmcuda_opt.h - a CPU optimizer (adamw.h's bm_adamw) mirrored on the GPU,
 * for tasks whose parameters live in several device modules (the image and
 * text towers, the fusion module, a head, a logit scale). The CPU
 * bm_adamw stays the record of names, groups, learning rates, the step
 * count and (for checkpoints) the moments; the device holds the moments
 * while training. train_ft.cu's step does the same for one flat buffer.
 *
 * Typical use:
 *   bmct_opt *o = bmct_opt_new(c, &cpu_opt, prec);    moments uploaded (resume)
 *   bmct_opt_bind(o, k, w, wc, g)   for every parameter k of cpu_opt: where
 *                                    its master, compute copy and gradient live
 *   bmct_opt_grads(o, g, n)          each device gradient buffer, once: the
 *                                    global norm covers these
 *   per step: backward (gradients carry the loss scale), then
 *             bmct_opt_step(o, lr_scale, clip, &norm)
 *   checkpoint: bmct_opt_download(o, &cpu_opt)   moments and step back
 *
 * fp16 loss scaling lives here because the step decides on it: the task
 * multiplies its loss gradient by bmct_opt_loss_scale(o); a step that finds
 * inf/NaN gradients is skipped and halves the scale, 2000 good steps double
 * it (train_ft.cu's rule). Other precisions keep the scale at 1. */
#ifndef BM_CUDA_OPT_H
#define BM_CUDA_OPT_H

#include <stddef.h>

#include "adamw.h"
#include "bmcuda_train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bmct_opt bmct_opt;

/* Device moments for every parameter of cpu (its m, v uploaded), the
 * groups, betas, eps and step copied. cpu must outlive the result. */
bmct_opt *bmct_opt_new(bmct_ctx *c, const bm_adamw *cpu, int prec);
void bmct_opt_free(bmct_opt *o);
/* Parameter k of cpu: fp32 master w [n], compute-type copy wc (prec; NULL:
 * none, e.g. a tensor read in fp32 or prec fp32), gradient g [n] (fp32). */
void bmct_opt_bind(bmct_opt *o, int k, float *w, void *wc, const float *g);
/* A device gradient buffer of n floats that the global norm sums over
 * (every bound gradient must lie in one of them, each in one only). */
void bmct_opt_grads(bmct_opt *o, const float *g, size_t n);
/* The global gradient norm (unscaled), clipping to max_norm (<= 0: off;
 * torch's clip_grad_norm_ rule), one AdamW step of every parameter with its
 * group's lr times lr_scale; the compute copies refreshed. *norm (may be
 * NULL) gets the norm before clipping. Returns 1, or 0 when fp16 found
 * inf/NaN gradients (nothing updated, the step not counted). Dies when a
 * parameter was never bound. */
int bmct_opt_step(bmct_opt *o, double lr_scale, double max_norm, double *norm);
float bmct_opt_loss_scale(const bmct_opt *o);
/* Moments and the step count back into cpu (for a checkpoint). */
void bmct_opt_download(bmct_opt *o, bm_adamw *cpu);

#ifdef __cplusplus
}
#endif
#endif
