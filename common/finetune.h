/* finetune.h - the image tower and a linear classification head trained end
 * to end (bm-train --mode finetune, seed 000's approach 1):
 *
 *   emb[B,E] = tower(img)  (L2 normalized, vit_train.h)
 *   logits[B,C] = emb W^T + b           (W [C,E], b [C]: linhead.h's layout)
 *   loss = softmax cross-entropy, or BCE with logits and pos_weight
 *
 * AdamW groups (adamw.h): the tower's matrices (lr_enc, wd), the tower's
 * norms, biases, cls_token and pos_embed (lr_enc, no decay), head.weight
 * (lr_head, wd), head.bias (lr_head, no decay). */
#ifndef BM_FINETUNE_H
#define BM_FINETUNE_H

#include <stdint.h>

#include "adamw.h"
#include "vit_train.h"

typedef struct {
  bm_vit_train vt;
  bm_vt_acts acts;
  int C, E, multilabel;
  float *W, *b, *gW, *gb; /* [C,E], [C], gradients */
  const float *pw;        /* [C] BCE positive weights or NULL (not owned) */
  float *emb, *logits, *dlogits, *demb; /* [cap,E], [cap,C], [cap,C], [cap,E] */
  float *xemb;           /* [cap,E] the dropped emb the head reads (dropout > 0) */
  int cap;
  /* dropout on emb, training only (bm_dropout, site 0): the caller sets
   * drop_step to the batch's number before each bm_ft_grad */
  float dropout;
  uint64_t drop_seed, drop_step;
  bm_adamw opt;
} bm_ft;

/* W, b: the head's start ([C,E], [C], copied). */
void bm_ft_init(bm_ft *f, const bm_vit *tower, int unlock, int frozen, int C, int multilabel,
                const float *pos_weight, const float *W, const float *b, double lr_enc,
                double lr_head, double wd);
void bm_ft_free(bm_ft *f);

/* Zeroes the gradients, runs forward and backward on img[B,3,S,S]
 * (normalized) with targets Y[B,C]; returns the mean loss (gradients in the
 * optimizer's params). f->logits holds the batch's logits. With dropout > 0
 * the head reads emb dropped and scaled, and the tower's gradient goes back
 * through the same mask. */
double bm_ft_grad(bm_ft *f, const float *img, const float *Y, int B);
/* Logits of img[B,3,S,S] into f->logits with the inference forward. */
void bm_ft_logits(bm_ft *f, const float *img, int B);
double bm_ft_loss(const bm_ft *f, const float *logits, const float *Y, int B, float *dlogits);

#endif
