/* clip_loss.h - CLIP's symmetric contrastive loss (InfoNCE), forward and
 * backward, as open_clip's ClipLoss on one process.
 *
 * img[B,E] and txt[B,E] are the towers' outputs, rows already L2-normalized;
 * pair i is (img_i, txt_i). With scale = exp(log_scale):
 *   logits[i,j] = scale * img_i . txt_j
 *   loss = ( CE(rows of logits, target i) + CE(rows of logits^T, target i) ) / 2
 * each CE a mean over the batch (F.cross_entropy's default).
 *
 * The forward uses exp(log_scale) as given, unclamped: open_clip clamps the
 * parameter itself after each optimizer step (bm_clip_clamp_log_scale), not
 * the value inside the loss, so the gradient is that of the unclamped scale. */
#ifndef BM_CLIP_LOSS_H
#define BM_CLIP_LOSS_H

/* open_clip's initial logit scale, log(1 / 0.07) (CLIP's temperature 0.07),
 * for training from scratch. Fine-tuning BiomedCLIP starts from the trained
 * value its checkpoint carries ("logit_scale", bm_model.logit_scale; NAN
 * when a checkpoint has none: then use this one). */
#define BM_CLIP_LOG_SCALE_INIT 2.6592600369327779 /* -log(0.07) */
/* The clamp's upper end, ln 100: the scale never exceeds 100. */
#define BM_CLIP_LOG_SCALE_MAX 4.6051701859880914

/* Returns the mean loss (double). Writes, each only when not NULL:
 *   dimg[B,E] = dloss/dimg, dtxt[B,E] = dloss/dtxt,
 *   *dlog_scale = dloss/dlog_scale.
 * Scratch: one B x B float matrix (B = 4096: 64 MiB), allocated here; dies
 * with a message when that fails. Logsumexps are max-subtracted and summed in
 * double; the B x B product and the two gradient products are float GEMMs
 * split over OpenMP threads (one OpenBLAS thread each). The result does not
 * depend on the thread count beyond the GEMMs' own rounding. B < 1 returns 0
 * and zero gradients. */
double bm_clip_loss(const float *img, const float *txt, int B, int E, float log_scale,
                    float *dimg, float *dtxt, float *dlog_scale);

/* open_clip's clamp of the parameter after each optimizer step:
 * ls clamped to [0, ln 100] (a NaN stays NaN, for the caller to notice). */
float bm_clip_clamp_log_scale(float ls);

#endif
