/* adamw.h - AdamW with parameter groups, the cosine schedule with warm-up, and
 * gradient clipping by global norm. Each parameter tensor belongs to a group
 * with its own learning rate and weight decay (seed 000: encoders 1e-5, new
 * heads 1e-3; open_clip: no decay on norms, biases, embeddings, logit scale). */
#ifndef BM_ADAMW_H
#define BM_ADAMW_H

#include <stddef.h>

typedef struct {
  float *param, *grad;    /* [n] each: the tensor and its gradient */
  float *m, *v;           /* [n] each: moments, owned by the optimizer */
  size_t n;
  int group;
  const char *name;       /* for messages and checkpoints; not copied: it must
                           * live as long as the optimizer */
} bm_adamw_param;

typedef struct {
  double lr, weight_decay;
} bm_adamw_group;

typedef struct {
  double beta1, beta2, eps;
  long step;                       /* steps taken */
  bm_adamw_group *groups;
  int ngroups;
  bm_adamw_param *params;
  int nparams, cap;
} bm_adamw;

void bm_adamw_init(bm_adamw *opt, double beta1, double beta2, double eps);
int bm_adamw_add_group(bm_adamw *opt, double lr, double weight_decay); /* returns its index */
void bm_adamw_add_param(bm_adamw *opt, const char *name, float *param, float *grad, size_t n,
                        int group);
/* One step: every group's lr is multiplied by lr_scale (the schedule). */
void bm_adamw_step(bm_adamw *opt, double lr_scale);
void bm_adamw_zero_grad(bm_adamw *opt);
void bm_adamw_free(bm_adamw *opt);

/* The global L2 norm of all gradients; when max_norm > 0 and the norm exceeds
 * it, gradients are scaled by max_norm / (norm + 1e-6) (torch's
 * clip_grad_norm_). Returns the norm before clipping. */
double bm_clip_grad_norm(bm_adamw *opt, double max_norm);

/* Learning-rate factor at step (0-based): linear warm-up over warmup steps
 * to 1, then cosine decay to 0 at total steps (open_clip's cosine_lr). */
double bm_cosine_warmup(long step, long warmup, long total);

#endif
