/* task_finetune.c - bm-train --mode finetune: the image tower and a head
 * end to end (finetune.h), on the CPU or (--device cuda) on a GPU
 * (cuda/bmcuda_train.h). Its checkpoint is the whole model, so that
 * bm-embed-img -m and bm-fuse -m both read it; a GPU run's checkpoint is the
 * same file as a CPU run's, so either resumes the other. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bmcuda_train.h"
#include "finetune.h"
#include "kernels.h"
#include "train_prefetch.h"
#include "train_task.h"
#include "util.h"

typedef struct {
  const bm_train_opts *o;
  const bm_trainset *ds;
  const bm_model *model;
  bm_ft ft;
  float *X, *Y; /* [batch,3,S,S] normalized images, [batch,C]: validation, serial reads */
  bm_recslot slot;
  /* the next training batch read while this one computes (t->next's hint;
   * off with BM_TRAIN_PREFETCH=0): bX, bY the current batch, in X, Y or
   * the prefetcher's buffers (page-locked on a GPU) */
  int prefetch, has_next, nB;
  long ne, *nidx;
  bm_prefetch *pf;
  float *bX, *bY;
  /* --device cuda: the GPU copy of ft, made at the first batch (after
   * --resume filled ft's moments and step); ft itself is only refreshed
   * (synced) for a checkpoint */
  bm_cuda *cu;
  bm_cuda_ft *g;
  int prec, synced;
} finetune;

/* the crops of epoch e */
static uint64_t aug_seed(const finetune *f, long e) {
  return bm_sub_seed((uint64_t)f->o->seed, BM_AUG_TAG ^ (uint64_t)e);
}

/* training records idx[0..B-1] of epoch e into bX, bY: decoded, augmented;
 * then the worker starts on the batch the loop named next */
static void train_batch(finetune *f, const long *idx, int B, long e) {
  if (!f->prefetch) {
    bm_trainset_batch(f->ds, f->o->feat, idx, B, &f->slot, aug_seed(f, e), f->X, f->Y);
    f->bX = f->X, f->bY = f->Y;
    return;
  }
  /* on a GPU: page-locked, so that the copy to it is DMA, and read by -j
   * threads (the host's cores are otherwise idle; one core crops 256 images
   * slower than an H100 steps); on the CPU one reader, beside the step's threads */
  if (!f->pf)
    f->pf = bm_prefetch_new(f->ds, f->o->feat, (int)f->o->batch, f->cu ? bm_threads() : 1,
                            f->cu ? bm_cuda_host_alloc : NULL, f->cu ? bm_cuda_host_free : NULL);
  bm_prefetch_get(f->pf, idx, B, aug_seed(f, e), &f->bX, &f->bY);
  if (f->has_next) bm_prefetch_start(f->pf, f->nidx, f->nB, aug_seed(f, f->ne));
  f->has_next = 0;
}

static void finetune_next(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  finetune *f = t->self;
  (void)micro; /* the dropout's, not the read's */
  memcpy(f->nidx, idx, sizeof(long) * (size_t)B);
  f->nB = B, f->ne = e, f->has_next = 1;
}

static double finetune_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  finetune *f = t->self;
  train_batch(f, idx, B, e);
  /* the mask of each batch of the run: its number, not the thread count or
   * the group, seeds it; the same after --resume */
  f->ft.drop_step = micro;
  return bm_ft_grad(&f->ft, f->bX, f->bY, B); /* forward and backward */
}

static void finetune_logits(bm_train_task *t, const bm_trainset *vs, const long *idx, int B, float *logits) {
  finetune *f = t->self;
  bm_trainset_batch(vs, f->o->feat, idx, B, &f->slot, 0, f->X, NULL);
  bm_ft_logits(&f->ft, f->X, B);
  memcpy(logits, f->ft.logits, sizeof(float) * (size_t)B * (size_t)f->ft.C);
}

/* Every tensor of -m, the image tower's replaced by the trained ones under
 * their open_clip names, the text tower's copied through; the head; the
 * model's config with the training's merged in. */
static void finetune_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  finetune *f = t->self;
  const bm_model *m = f->model;
  const bm_vit_train *vt = &f->ft.vt;
  const bm_adamw *opt = moments ? &f->ft.opt : NULL;
  json_t *cfg = bm_train_model_config(m, vt->v.heads, 0);
  bm_train_config(cfg, f->o, f->ds, f->ft.E, json_pack("[i]", f->ft.E), &f->ft.opt, st); /* the head reads img_emb [E] */
  char *text = bm_train_config_text(cfg);
  json_decref(cfg);
  int nmom = opt ? 2 * opt->nparams : 0;
  bm_weight *w = bm_xcalloc((size_t)m->ws.n + 3 + (size_t)nmom, sizeof *w);
  char **mnames = bm_xcalloc((size_t)nmom + 1, sizeof *mnames);
  int nw = 0;
  for (int i = 0; i < m->ws.n; i++) {
    const bm_weight *src = &m->ws.w[i];
    if (!strncmp(src->name, "head.", 5) || !strncmp(src->name, "optim.", 6) || !strncmp(src->name, "loss.", 5))
      continue; /* an earlier run's head: ours replaces it */
    w[nw] = *src;
    for (int k = 0; k < vt->nt; k++)
      if (!strcmp(vt->t[k].name, src->name)) {
        w[nw].dtype = BM_W_F32;
        w[nw].data = vt->p + vt->t[k].off;
        w[nw].nbytes = vt->t[k].n * sizeof(float);
        break;
      }
    nw++;
  }
  int64_t C = f->ft.C, E = f->ft.E;
  w[nw++] = (bm_weight){"head.weight", BM_W_F32, 2, {C, E}, C * E, f->ft.W, (size_t)(C * E) * sizeof(float)};
  w[nw++] = (bm_weight){"head.bias", BM_W_F32, 1, {C}, C, f->ft.b, (size_t)C * sizeof(float)};
  if (t->pw) w[nw++] = (bm_weight){"loss.pos_weight", BM_W_F32, 1, {C}, C, (float *)t->pw, (size_t)C * sizeof(float)};
  if (opt) nw += bm_train_moment_weights(opt, w + nw, mnames);
  const char *keys[2] = {BM_ST_CONFIG, BM_ST_VOCAB}, *vals[2] = {text, m->ws.vocab};
  char err[512];
  if (bm_safetensors_write(path, w, nw, keys, vals, m->ws.vocab ? 2 : 1, err, sizeof err)) bm_die("%s", err);
  for (int i = 0; i < nmom; i++) free(mnames[i]);
  free(mnames);
  free(w);
  free(text);
}

/* ---- the GPU task: same data path, batches read and augmented here ---- */

static bm_cuda_ft *gpu(finetune *f) {
  if (!f->g) f->g = bm_cuda_ft_init(&f->ft, f->cu, f->prec);
  return f->g;
}

static double finetune_cuda_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  finetune *f = t->self;
  train_batch(f, idx, B, e); /* prefetched while the GPU ran the batch before (or read now) */
  f->synced = 0;
  return bm_cuda_ft_grad_acc(gpu(f), f->bX, f->bY, B, micro, 1.0, 1); /* = bm_cuda_ft_grad, async copies */
}

/* --accum: the group's gradient accumulates on the GPU */
static double finetune_cuda_grad_acc(bm_train_task *t, const long *idx, int B, long e, uint64_t micro, double w,
                                     int first) {
  finetune *f = t->self;
  train_batch(f, idx, B, e);
  f->synced = 0;
  return bm_cuda_ft_grad_acc(gpu(f), f->bX, f->bY, B, micro, w, first);
}

static int finetune_cuda_step(bm_train_task *t, double lr_scale, double clip, double *norm) {
  finetune *f = t->self;
  return bm_cuda_ft_step(gpu(f), lr_scale, clip, norm);
}

static void finetune_cuda_logits(bm_train_task *t, const bm_trainset *vs, const long *idx, int B, float *logits) {
  finetune *f = t->self;
  bm_trainset_batch(vs, f->o->feat, idx, B, &f->slot, 0, f->X, NULL);
  bm_cuda_ft_logits(gpu(f), f->X, B, logits);
}

/* parameters, moments and step back into ft once per epoch end, then the
 * CPU's writer */
static void finetune_cuda_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  finetune *f = t->self;
  if (f->g && !f->synced) bm_cuda_ft_download(f->g, &f->ft), f->synced = 1;
  finetune_save(t, path, moments, st);
}

static void finetune_free(bm_train_task *t) {
  finetune *f = t->self;
  bm_recslot_free(&f->slot);
  bm_prefetch_free(f->pf); /* waits for a batch in flight (early stopping) */
  free(f->nidx);
  bm_cuda_ft_free(f->g);
  bm_ft_free(&f->ft);
  free(f->X), free(f->Y);
  free(f);
}

void bm_task_finetune(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                      const float *pw, const bm_linhead *ck) {
  finetune *f = bm_xcalloc(1, sizeof *f);
  f->o = o, f->ds = ds, f->model = model;
  int C = ds->C, E = model->vit.embed_dim;
  size_t CE = (size_t)C * (size_t)E, B = (size_t)o->batch;
  /* torch's nn.Linear start: uniform in +-1/sqrt(E), seeded */
  float *W = bm_xmalloc(CE * sizeof(float)), *b = bm_xmalloc((size_t)C * sizeof(float));
  bm_rng r;
  bm_rng_seed(&r, bm_sub_seed((uint64_t)o->seed, BM_HEAD_TAG));
  float a = 1.0f / sqrtf((float)E);
  for (size_t i = 0; i < CE; i++) W[i] = a * (float)(2 * bm_rng_uniform(&r) - 1);
  for (int k = 0; k < C; k++) b[k] = a * (float)(2 * bm_rng_uniform(&r) - 1);
  if (o->init) bm_train_init_head(o->init, C, E, W, b);
  bm_ft_init(&f->ft, &model->vit, o->unlock > INT_MAX ? -1 : (int)o->unlock, o->freeze, C, ds->multilabel, pw, W, b,
             o->lr_enc, o->lr_head, o->wd);
  free(W), free(b);
  if (ck) { /* the width was checked against the tower (resume_fits) */
    memcpy(f->ft.W, ck->W, sizeof(float) * CE);
    memcpy(f->ft.b, ck->b, sizeof(float) * (size_t)C);
  }
  f->ft.dropout = (float)o->dropout, f->ft.drop_seed = bm_sub_seed((uint64_t)o->seed, BM_DROP_TAG);
  f->X = bm_xmalloc(bm_mul_size(B * (size_t)ds->D, sizeof(float)));
  f->Y = bm_xmalloc(bm_mul_size(B * (size_t)C, sizeof(float)));
  bm_recslot_init(&f->slot);
  f->prefetch = bm_prefetch_enabled();
  f->nidx = bm_xmalloc(sizeof(long) * B);
  *t = (bm_train_task){.self = f, .opt = &f->ft.opt, .log_lr = o->lr_head, .grad = finetune_grad,
                 .logits = finetune_logits, .save = finetune_save, .free = finetune_free, .C = C,
                 .multilabel = ds->multilabel, .pw = pw, .next = f->prefetch ? finetune_next : NULL};
}

void bm_task_finetune_cuda(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                           const float *pw, const bm_linhead *ck, bm_cuda *cu, int prec) {
  bm_task_finetune(t, o, ds, model, pw, ck);
  finetune *f = t->self;
  f->cu = cu, f->prec = prec;
  t->grad = finetune_cuda_grad, t->step = finetune_cuda_step, t->logits = finetune_cuda_logits;
  t->grad_acc = finetune_cuda_grad_acc;
  t->save = finetune_cuda_save;
}
