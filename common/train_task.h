/* train_task.h - the tasks (train_loop.h) of bm-train's modes. Each fills
 * t with its state, its parameters registered in an AdamW with o's betas,
 * and its callbacks. ds: the training set (kept, not owned); pw: [C] BCE
 * positive weights or NULL (kept, not owned); ck: the checkpoint a resumed
 * run goes on from (its head's tensors are copied) or NULL; --init o->init
 * starts the head from a file. */
#ifndef BM_TRAIN_TASK_H
#define BM_TRAIN_TASK_H
#include "cuda/bmcuda.h"
#include "model.h"
#include "train_loop.h"

/* linear: head.weight [C,D] and head.bias [C] on the records' features;
 * starts from zeros */
void bm_task_linear(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const float *pw,
                    const bm_linhead *ck);
/* finetune: model's image tower and a head end to end (finetune.h); the
 * head starts as torch's nn.Linear, seeded */
void bm_task_finetune(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                      const float *pw, const bm_linhead *ck);
/* contrastive: both towers of model and its logit scale on image-caption
 * pairs (CLIP's loss, clip_loss.h); --lock-image / --lock-text freeze a
 * tower. A resumed run's model is its checkpoint (towers and scale). */
void bm_task_contrastive(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model);
/* The same on a GPU (--device cuda): both towers and AdamW there, the loss
 * on the CPU; --accum accumulates on the device. */
void bm_task_contrastive_cuda(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                              bm_cuda *cu, int prec);
/* fusion, regularized: both towers' tokens, the co-attention fusion
 * (fusion.h: concatenated or averaged pooled streams), dropout and a head
 * end to end; --text prompt|both adds learned prompt vectors "prompt.ctx".
 * ck: fusion.*, prompt.ctx and the head are copied from its tensors. */
void bm_task_fusion(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                    const float *pw, const bm_linhead *ck);
/* The same on a GPU (--device cuda): towers, fusion and AdamW there, the
 * dropout, head and loss on the CPU; --accum accumulates on the device. */
void bm_task_fusion_cuda(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                         const float *pw, const bm_linhead *ck, bm_cuda *cu, int prec);
/* finetune on the open GPU cu (kept, not owned) in prec (bm_prec): grad,
 * step and logits run there; the parameters come back to the CPU for each
 * checkpoint. The GPU copy is made at the first batch, so that a --resume
 * filling t->opt before bm_train_run is uploaded. --accum accumulates on the
 * GPU (grad_acc). Both finetune tasks read the next batch while one computes
 * (train_prefetch.h; BM_TRAIN_PREFETCH=0: serially). */
void bm_task_finetune_cuda(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                           const float *pw, const bm_linhead *ck, bm_cuda *cu, int prec);
#endif
