/* train_loop.h - bm-train's epoch loop, behind a "task": what one mode
 * trains. The loop owns the schedule (cosine with warm-up), gradient
 * accumulation (--accum), clipping, the JSON-lines log, the progress line,
 * validation and the best-epoch selection, early stopping, and the two
 * checkpoints of every epoch end (OUT: the best; OUT.last: the last, with
 * the optimizer's moments, for --resume). A task owns its parameters
 * (registered in an AdamW, adamw.h), its forward and backward, and what it
 * writes in a checkpoint. A new mode is a new task (task_*.c). */
#ifndef BM_TRAIN_LOOP_H
#define BM_TRAIN_LOOP_H
#include <stdint.h>
#include "adamw.h"
#include "recfile.h"
#include "train_ckpt.h"
#include "train_data.h"
#include "train_opts.h"

typedef struct bm_train_task bm_train_task;
struct bm_train_task {
  void *self;      /* the mode's state */
  bm_adamw *opt;   /* every tensor that trains, with its gradient */
  double log_lr;   /* the "lr" of the log at schedule factor 1 */
  /* Forward and backward on training records idx[0..B-1] of epoch e
   * (0-based); micro numbers the batch in the run (e * batches an epoch +
   * its place), to seed its dropout masks whatever the threads, the
   * grouping or a resume. Returns the batch's mean loss (not finite: the
   * loop stops the run) with its gradient in opt's params, overwritten. */
  double (*grad)(bm_train_task *t, const long *idx, int B, long e, uint64_t micro);
  /* Classification: the logits [B,C] of records idx[0..B-1] of vs with the
   * inference forward (no dropout, no augmentation). */
  void (*logits)(bm_train_task *t, const bm_trainset *vs, const long *idx, int B, float *logits);
  /* Validation of the whole of vs: NULL for the classification one (the
   * mean loss on logits and bm-score's figures, bm_train_evaluate). */
  bm_val_result (*evaluate)(bm_train_task *t, const bm_trainset *vs, int batch);
  /* NULL, or called after every optimizer step (contrastive: the logit
   * scale's clamp) */
  void (*after_step)(bm_train_task *t);
  /* Writes a checkpoint at path; moments: with the optimizer's moments. */
  void (*save)(bm_train_task *t, const char *path, int moments, const bm_train_state *st);
  void (*free)(bm_train_task *t);
  /* NULL: the loop clips opt's gradients and takes an AdamW step itself.
   * Otherwise (the parameters live elsewhere, e.g. on a GPU) the task clips
   * at clip (<= 0: off) and steps with every lr times lr_scale; *norm gets
   * the norm before clipping. Returns 0 when it skipped the step (fp16 loss
   * scaling found inf/NaN gradients), 1 otherwise. */
  int (*step)(bm_train_task *t, double lr_scale, double clip, double *norm);
  /* NULL, or told before each grad (or grad_acc) which batch the loop asks
   * for after it, as grad's arguments would name it (records idx[0..B-1] of
   * epoch e, number micro; idx valid during the call only), so that the
   * task can read it while the current one computes (train_prefetch.h).
   * Not called before a run's last batch; the batch it names may never be
   * asked for (early stopping). */
  void (*next)(bm_train_task *t, const long *idx, int B, long e, uint64_t micro);
  /* NULL, or --accum for a task with its own step (its gradients live
   * elsewhere): grad's batch, with the gradient of its mean loss times w
   * ADDED to the task's gradient, zeroed before when first (a group's first
   * batch). The loop passes w = B / the group's records, which leaves the
   * gradient of the group's mean loss for step. Returns the batch's mean
   * loss (unweighted). A task with step and no grad_acc cannot --accum. */
  double (*grad_acc)(bm_train_task *t, const long *idx, int B, long e, uint64_t micro, double w, int first);
  /* classification: the loss of the logits (softmax cross-entropy or BCE) */
  int C, multilabel;
  const float *pw; /* [C] BCE positive weights or NULL */
};

/* The mean loss of logits [B,C] against Y [B,C]; dlogits may be NULL. */
double bm_task_loss(const bm_train_task *t, const float *logits, const float *Y, int B, float *dlogits);
/* The loss and bm-score's figures of t's logits on the whole of vs. */
bm_val_result bm_train_evaluate(bm_train_task *t, const bm_trainset *vs, int batch);

/* Trains t on records idx[0..m-1] of ds from st (a resumed run's counters,
 * or zeros with best = NAN) to o->epochs (or --stop-after), validating on
 * vs (NULL: none) at each epoch end, writing OUT and lastp. */
void bm_train_run(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const long *idx, long m,
                  const bm_trainset *vs, bm_train_state *st, const char *lastp);
#endif
