/* loss.h - classification losses, forward and backward.
 * Means are over the batch (and classes for BCE), as PyTorch's defaults. */
#ifndef BM_LOSS_H
#define BM_LOSS_H

/* Softmax cross-entropy.
 * logits [B,C], target [B,C] (one-hot or any distribution summing to 1).
 * Returns the mean loss; dlogits [B,C] (may be NULL) gets d(mean)/d(logits). */
double bm_softmax_xent(const float *logits, const float *target, int B, int C, float *dlogits);

/* Binary cross-entropy with logits and per-class positive weights
 * (torch.nn.BCEWithLogitsLoss(pos_weight=w)):
 *   l = -(w_c y log s(x) + (1 - y) log(1 - s(x))), mean over B*C.
 * pos_weight [C] may be NULL (all ones). dlogits [B,C] may be NULL. */
double bm_bce_logits(const float *logits, const float *target, const float *pos_weight, int B,
                     int C, float *dlogits);

/* Seed 000's class weighting, "inverse frequency of its positive samples":
 * w_c = n_neg_c / n_pos_c over the training set, the PyTorch idiom for
 * BCEWithLogitsLoss(pos_weight), which balances the positive and negative
 * terms of each class. A class without positives gets weight 1 (nothing to
 * weight) and is reported by the caller. n_pos [C], n [1]: counts. */
void bm_pos_weight_inverse_freq(const long *n_pos, long n, int C, float *pos_weight);

#endif
