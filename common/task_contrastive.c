/* task_contrastive.c - bm-train --mode contrastive: both towers trained on
 * image-caption pairs with CLIP's symmetric InfoNCE loss (clip_loss.h) and
 * its learnable, log-parameterized logit scale, as open_clip trains:
 *
 *   img[B,E] = image tower(images)      (vit_train.h, patch dropout optional)
 *   txt[B,E] = text tower(captions)     (bert_train.h, "text" as text_batch.h packs it)
 *   loss = bm_clip_loss(img, txt, log_scale)
 *
 * one learning rate, AdamW groups as open_clip's training script makes
 * them: no weight decay on tensors of fewer than 2 dimensions or named
 * bn/ln/bias/logit_scale; decay on the rest, embeddings (cls, pos, word,
 * position, type) included, unlike the timm-style groups of finetune. The log scale is clamped to [0, ln 100] after every step.
 * The checkpoint is the whole model under open_clip's names with
 * logit_scale, its config and vocabulary: bm-embed-img -m and bm-embed-txt -m
 * read it as they read BiomedCLIP. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bert_train.h"
#include "clip_loss.h"
#include "cuda/bmcuda_opt.h"
#include "cuda/bmcuda_vit_train.h"
#include "text_batch.h"
#include "train_task.h"
#include "util.h"
#include "vit_train.h"

/* the patch dropout stream's seed, apart from the others of --seed */
#define PDROP_TAG 0x9D0A000000000000ULL

typedef struct clip {
  const bm_train_opts *o;
  const bm_trainset *ds;
  const bm_model *model;
  bm_vit_train vt;
  bm_vt_acts va;
  bm_bert_train bt;
  bm_bt_acts ba;
  bm_text_batch tb;
  bm_recslot slot;
  bm_adamw opt;
  int E, cap;
  float log_scale, glog_scale; /* the parameter and its gradient */
  float *X;                    /* [batch,3,S,S] normalized images */
  float *img, *txt, *dimg, *dtxt; /* [cap,E] */
  /* both towers' forwards into img, txt: on the CPU or (embed_cuda) the GPU */
  void (*embed)(struct clip *c, const bm_trainset *s, const long *idx, int B, uint64_t aug_seed);
  bm_cuda *cu; /* the GPU task: its device, precision and state (made at first use) */
  int prec;
  struct clip_gpu *gpu;
} clip;

static void reserve(clip *c, int B) {
  if (B <= c->cap) return;
  size_t n = bm_mul_size((size_t)B * (size_t)c->E, sizeof(float));
  free(c->img), free(c->txt), free(c->dimg), free(c->dtxt);
  c->img = bm_xmalloc(n), c->txt = bm_xmalloc(n), c->dimg = bm_xmalloc(n), c->dtxt = bm_xmalloc(n);
  c->cap = B;
}

/* Both towers' embeddings of records idx[0..B-1] of s into c->img, c->txt
 * (the training forwards: their activations stay for a backward), on the CPU. */
static void embed_cpu(clip *c, const bm_trainset *s, const long *idx, int B, uint64_t aug_seed) {
  reserve(c, B);
  bm_trainset_batch(s, c->o->feat, idx, B, &c->slot, aug_seed, c->X, NULL);
  bm_vit_train_forward(&c->vt, &c->va, c->X, B, c->img);
  const bm_model *m = c->model;
  bm_text_batch_read(&c->tb, s, idx, B, &c->slot, m->tok, BM_TEXT_KEY, 0, m->bert.context);
  bm_bert_train_forward(&c->bt, &c->ba, c->tb.ids, c->tb.start, c->tb.len, B, NULL, c->txt, NULL);
}

static double clip_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  clip *c = t->self;
  bm_adamw_zero_grad(&c->opt);
  /* each forward of the run drops its own patches (vit_train.h): the batch's
   * number, whatever the grouping or a resume */
  c->vt.pd_step = micro;
  c->embed(c, c->ds, idx, B, bm_sub_seed((uint64_t)c->o->seed, BM_AUG_TAG ^ (uint64_t)e));
  double loss = bm_clip_loss(c->img, c->txt, B, c->E, c->log_scale, c->vt.frozen ? NULL : c->dimg,
                             c->bt.frozen ? NULL : c->dtxt, &c->glog_scale);
  if (!c->vt.frozen) bm_vit_train_backward(&c->vt, &c->va, c->dimg, B);
  if (!c->bt.frozen) bm_bert_train_backward(&c->bt, &c->ba, c->dtxt, NULL, NULL);
  return loss;
}

/* open_clip clamps the parameter, not the value in the loss */
static void clip_after_step(bm_train_task *t) {
  clip *c = t->self;
  c->log_scale = bm_clip_clamp_log_scale(c->log_scale);
}

/* Recall@1 of rows a[n,E] retrieving rows b[n,E] (pair i is the match):
 * the share of i whose best b (the lowest index among ties) is b_i. The
 * similarities of 256 queries at a time, one GEMM. */
static double recall1(const float *a, const float *b, long n, int E) {
  enum { BLK = 256 };
  float *S = bm_xmalloc(bm_mul_size((size_t)BLK * (size_t)n, sizeof(float)));
  long hit = 0;
  for (long i0 = 0; i0 < n; i0 += BLK) {
    int m = (int)(n - i0 < BLK ? n - i0 : BLK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)n, E, 1.0f, a + (size_t)i0 * E, E, b, E, 0.0f, S,
                (int)n);
    for (int r = 0; r < m; r++) {
      const float *row = S + (size_t)r * n;
      long arg = 0;
      for (long j = 1; j < n; j++)
        if (row[j] > row[arg]) arg = j;
      hit += arg == i0 + r;
    }
  }
  free(S);
  return n ? (double)hit / (double)n : NAN;
}

/* Validation: the mean CLIP loss over batches of `batch` pairs in file order
 * (the loss depends on the batch: the same batches every epoch), and, when
 * the set is small enough for an n x n search (10000 pairs), Recall@1 image->text and
 * text->image over the whole set. No patch dropout, no augmentation. */
static bm_val_result clip_evaluate(bm_train_task *t, const bm_trainset *vs, int batch) {
  clip *c = t->self;
  float pd = c->vt.patch_dropout;
  c->vt.patch_dropout = 0;
  long n = vs->n;
  int E = c->E, full = n <= 10000;
  float *Ie = full ? bm_xmalloc(bm_mul_size((size_t)n * E, sizeof(float))) : NULL;
  float *Tx = full ? bm_xmalloc(bm_mul_size((size_t)n * E, sizeof(float))) : NULL;
  long *idx = bm_xmalloc(sizeof(long) * (size_t)batch);
  double total = 0;
  for (long at = 0; at < n; at += batch) {
    int B = (int)(n - at < batch ? n - at : batch);
    for (int j = 0; j < B; j++) idx[j] = at + j;
    c->embed(c, vs, idx, B, 0);
    total += bm_clip_loss(c->img, c->txt, B, E, c->log_scale, NULL, NULL, NULL) * B;
    if (full) {
      memcpy(Ie + (size_t)at * E, c->img, sizeof(float) * (size_t)B * E);
      memcpy(Tx + (size_t)at * E, c->txt, sizeof(float) * (size_t)B * E);
    }
  }
  c->vt.patch_dropout = pd;
  bm_val_result r = {.v = {n ? total / (double)n : NAN, NAN, NAN, NAN}};
  if (full) {
    r.has_recall = 1;
    r.recall[0] = recall1(Ie, Tx, n, E);
    r.recall[1] = recall1(Tx, Ie, n, E);
  }
  free(Ie), free(Tx), free(idx);
  return r;
}

static bm_weight f32(const char *name, int ndim, const int64_t *shape, size_t n, float *data) {
  bm_weight w = {.name = (char *)name, .dtype = BM_W_F32, .ndim = ndim, .numel = (int64_t)n, .data = data,
                 .nbytes = n * sizeof(float)};
  for (int d = 0; d < ndim; d++) w.shape[d] = shape[d];
  return w;
}

/* Every tensor of -m with both towers' replaced by the trained ones under
 * their open_clip names (a trained tensor the source lacks is added),
 * logit_scale, the config with the training's merged in, the vocabulary. */
static void clip_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  clip *c = t->self;
  const bm_model *m = c->model;
  const bm_vit_train *vt = &c->vt;
  const bm_bert_train *bt = &c->bt;
  const bm_adamw *opt = moments ? &c->opt : NULL;
  json_t *cfg = bm_train_model_config(m, vt->v.heads, bt->m.heads);
  bm_train_config(cfg, c->o, c->ds, c->E, json_pack("[i]", c->E), &c->opt, st);
  char *text = bm_train_config_text(cfg);
  json_decref(cfg);
  int nmom = opt ? 2 * opt->nparams : 0, ntr = vt->nt + bt->nt;
  bm_weight *w = bm_xcalloc((size_t)m->ws.n + (size_t)ntr + 1 + (size_t)nmom, sizeof *w);
  char *done = bm_xcalloc((size_t)ntr, 1); /* trained tensors written */
  char **mnames = bm_xcalloc((size_t)nmom + 1, sizeof *mnames);
  int nw = 0;
  for (int i = 0; i < m->ws.n; i++) {
    const bm_weight *src = &m->ws.w[i];
    if (!strncmp(src->name, "head.", 5) || !strncmp(src->name, "optim.", 6) || !strncmp(src->name, "loss.", 5) ||
        !strcmp(src->name, "logit_scale"))
      continue; /* an earlier run's; ours replace them */
    w[nw] = *src;
    for (int k = 0; k < ntr; k++) {
      const char *name = k < vt->nt ? vt->t[k].name : bt->t[k - vt->nt].name;
      if (done[k] || strcmp(name, src->name)) continue;
      size_t off = k < vt->nt ? vt->t[k].off : bt->t[k - vt->nt].off, n = k < vt->nt ? vt->t[k].n : bt->t[k - vt->nt].n;
      w[nw].dtype = BM_W_F32;
      w[nw].data = (k < vt->nt ? vt->p : bt->p) + off;
      w[nw].nbytes = n * sizeof(float);
      done[k] = 1;
      break;
    }
    nw++;
  }
  for (int k = 0; k < ntr; k++) /* a source that stored a tower tensor another way (packed, renamed) */
    if (!done[k]) {
      if (k < vt->nt) w[nw++] = f32(vt->t[k].name, vt->t[k].ndim, vt->t[k].shape, vt->t[k].n, vt->p + vt->t[k].off);
      else {
        const bm_bt_tensor *q = &bt->t[k - vt->nt];
        w[nw++] = f32(q->name, q->ndim, q->shape, q->n, bt->p + q->off);
      }
    }
  w[nw++] = f32("logit_scale", 0, NULL, 1, &c->log_scale); /* open_clip's 0-d parameter */
  if (opt) nw += bm_train_moment_weights(opt, w + nw, mnames);
  const char *keys[2] = {BM_ST_CONFIG, BM_ST_VOCAB}, *vals[2] = {text, m->ws.vocab};
  char err[512];
  if (bm_safetensors_write(path, w, nw, keys, vals, m->ws.vocab ? 2 : 1, err, sizeof err)) bm_die("%s", err);
  for (int i = 0; i < nmom; i++) free(mnames[i]);
  free(mnames), free(done), free(w), free(text);
}

static void gpu_free(clip *c);

static void clip_free(bm_train_task *t) {
  clip *c = t->self;
  gpu_free(c);
  bm_vit_train_free(&c->vt);
  bm_vt_acts_free(&c->va);
  bm_bert_train_free(&c->bt);
  bm_bt_acts_free(&c->ba);
  bm_text_batch_free(&c->tb);
  bm_recslot_free(&c->slot);
  bm_adamw_free(&c->opt);
  free(c->X), free(c->img), free(c->txt), free(c->dimg), free(c->dtxt);
  free(c);
}

/* open_clip's main.py: exclude = p.ndim < 2 or "bn"/"ln"/"bias"/"logit_scale" in the name */
static int open_clip_decays(const char *name, int ndim) {
  return ndim >= 2 && !strstr(name, "bn") && !strstr(name, "ln") && !strstr(name, "bias") && !strstr(name, "logit_scale");
}

void bm_task_contrastive(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model) {
  clip *c = bm_xcalloc(1, sizeof *c);
  c->o = o, c->ds = ds, c->model = model, c->E = model->embed_dim;
  bm_vit_train_init(&c->vt, &model->vit, -1, o->lock_image);
  bm_bert_train_init(&c->bt, &model->bert, -1, o->lock_text);
  c->vt.checkpoint = c->bt.checkpoint = o->grad_checkpoint;
  c->vt.patch_dropout = (float)o->patch_dropout;
  c->vt.pd_seed = bm_sub_seed((uint64_t)o->seed, PDROP_TAG);
  /* fine-tuning goes on from the checkpoint's scale (a resumed run's too) */
  c->log_scale = isfinite(model->logit_scale) ? model->logit_scale : (float)BM_CLIP_LOG_SCALE_INIT;
  bm_adamw_init(&c->opt, o->beta1, o->beta2, o->eps);
  int gd = bm_adamw_add_group(&c->opt, o->lr, o->wd), gn = bm_adamw_add_group(&c->opt, o->lr, 0);
  for (int i = 0; i < c->vt.nt; i++) {
    float *g = bm_vit_train_grad(&c->vt, i);
    const bm_vt_tensor *q = &c->vt.t[i];
    if (g) bm_adamw_add_param(&c->opt, q->name, c->vt.p + q->off, g, q->n, open_clip_decays(q->name, q->ndim) ? gd : gn);
  }
  for (int i = 0; i < c->bt.nt; i++) {
    float *g = bm_bert_train_grad(&c->bt, i);
    const bm_bt_tensor *q = &c->bt.t[i];
    if (g) bm_adamw_add_param(&c->opt, q->name, c->bt.p + q->off, g, q->n, open_clip_decays(q->name, q->ndim) ? gd : gn);
  }
  bm_adamw_add_param(&c->opt, "logit_scale", &c->log_scale, &c->glog_scale, 1, gn);
  c->X = bm_xmalloc(bm_mul_size((size_t)o->batch * (size_t)ds->D, sizeof(float)));
  c->embed = embed_cpu;
  bm_text_batch_init(&c->tb);
  bm_recslot_init(&c->slot);
  *t = (bm_train_task){.self = c, .opt = &c->opt, .log_lr = o->lr, .grad = clip_grad, .after_step = clip_after_step,
                       .evaluate = clip_evaluate, .save = clip_save, .free = clip_free};
}

/* ---- the GPU task: both towers and AdamW on the device. The loss stays
 * the CPU's bm_clip_loss on the downloaded [B,E] embeddings (a B x B
 * product: microseconds, and one implementation of its numerics); its
 * gradients go back up for the towers' backwards. The logit scale lives on
 * the device for AdamW and is brought back after each step for the clamp
 * and the next loss. */

typedef struct clip_gpu {
  bm_cuda_vt *vt;
  bm_cuda_bt *bt;
  bmct_ctx *x;             /* the towers' stream */
  bmct_opt *opt;           /* c->opt's parameters, bound to device tensors */
  float *img, *txt, *dimg, *dtxt; /* device [batch,E] */
  float *ls, *gls;         /* device [1]: the log scale and its gradient */
  double gls_sum;          /* the group's scale gradient so far (--accum) */
  int synced;              /* c->vt, c->bt, c->opt hold the device's state */
} clip_gpu;

/* Made at the first batch, after a resumed run's moments reached c->opt. */
static clip_gpu *gpu(clip *c) {
  if (c->gpu) return c->gpu;
  clip_gpu *g = c->gpu = bm_xcalloc(1, sizeof *g);
  int B = (int)c->o->batch, E = c->E;
  g->vt = bm_cuda_vt_new(&c->vt, c->cu, c->prec);
  g->x = bm_cuda_vt_ctx(g->vt);
  g->bt = bm_cuda_bt_new(g->x, &c->bt, c->prec, B, B * c->model->bert.context, 0);
  size_t n = (size_t)B * (size_t)E * sizeof(float);
  g->img = bm_cuda_malloc(n, "image embeddings"), g->txt = bm_cuda_malloc(n, "text embeddings");
  g->dimg = bm_cuda_malloc(n, "image embedding gradients"), g->dtxt = bm_cuda_malloc(n, "text embedding gradients");
  g->ls = bm_cuda_malloc(sizeof(float), "logit scale"), g->gls = bm_cuda_malloc(sizeof(float), "logit scale gradient");
  bmct_upload(g->x, g->ls, &c->log_scale, sizeof(float));
  /* c->opt's parameters in the order bm_task_contrastive added them */
  g->opt = bmct_opt_new(g->x, &c->opt, c->prec);
  size_t es = bm_prec_size((bm_prec)c->prec), voff = bm_cuda_vt_goff(g->vt), bnp, boff;
  int k = 0, bnt;
  float *vP = bm_cuda_vt_params(g->vt), *vG = bm_cuda_vt_grads(g->vt);
  char *vC = bm_cuda_vt_params_compute(g->vt);
  for (int i = 0; i < c->vt.nt; i++) {
    const bm_vt_tensor *q = &c->vt.t[i];
    if (bm_vit_train_grad(&c->vt, i)) bmct_opt_bind(g->opt, k++, vP + q->off, vC + q->off * es, vG + (q->off - voff));
  }
  bm_cuda_bt_tensors(g->bt, &bnt, &bnp, &boff);
  float *bP = bm_cuda_bt_params(g->bt);
  char *bC = bm_cuda_bt_params_compute(g->bt);
  for (int i = 0; i < c->bt.nt; i++) {
    const bm_bt_tensor *q = &c->bt.t[i];
    if (bm_bert_train_grad(&c->bt, i)) bmct_opt_bind(g->opt, k++, bP + q->off, bC + q->off * es, bm_cuda_bt_grad(g->bt, i));
  }
  bmct_opt_bind(g->opt, k++, g->ls, NULL, g->gls);
  if (k != c->opt.nparams) bm_die("internal error: GPU contrastive: %d of %d parameters bound", k, c->opt.nparams);
  if (vG && c->vt.np > voff) bmct_opt_grads(g->opt, vG, c->vt.np - voff);
  if (bm_cuda_bt_grads(g->bt) && bnp > boff) bmct_opt_grads(g->opt, bm_cuda_bt_grads(g->bt), bnp - boff);
  bmct_opt_grads(g->opt, g->gls, 1);
  g->synced = 1;
  return g;
}

static void gpu_free(clip *c) {
  clip_gpu *g = c->gpu;
  if (!g) return;
  bmct_opt_free(g->opt);
  bm_cuda_bt_free(g->bt);
  float *bufs[] = {g->img, g->txt, g->dimg, g->dtxt, g->ls, g->gls};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) bm_cuda_free(bufs[i]);
  bm_cuda_vt_free(g->vt); /* last: the others ran on its context */
  free(g);
  c->gpu = NULL;
}

/* embed_cpu's contract on the GPU: the same records, crops and token ids;
 * the embeddings downloaded into c->img, c->txt, the activations kept on
 * the device. Patch dropout as c->vt says (clip_evaluate turns it off). */
static void embed_cuda(clip *c, const bm_trainset *s, const long *idx, int B, uint64_t aug_seed) {
  clip_gpu *g = gpu(c);
  reserve(c, B);
  size_t n = (size_t)B * (size_t)c->E * sizeof(float);
  bm_trainset_batch(s, c->o->feat, idx, B, &c->slot, aug_seed, c->X, NULL);
  bm_cuda_vt_set_patch_dropout(g->vt, c->vt.patch_dropout, c->vt.pd_seed, c->vt.pd_step);
  bm_cuda_vt_forward(g->vt, c->X, B, g->img, NULL);
  const bm_model *m = c->model;
  bm_text_batch_read(&c->tb, s, idx, B, &c->slot, m->tok, BM_TEXT_KEY, 0, m->bert.context);
  bm_cuda_bt_forward(g->bt, c->tb.ids, c->tb.start, c->tb.len, B, NULL, g->txt, NULL);
  bmct_download(g->x, c->img, g->img, n);
  bmct_download(g->x, c->txt, g->txt, n);
}

/* One batch: its loss gradient times w ADDED to the device gradients,
 * zeroed first when `first` (train_loop.h's grad_acc). fp16: the loss
 * gradients carry the optimizer's loss scale, which its step takes off. */
static double clip_cuda_grad_acc(bm_train_task *t, const long *idx, int B, long e, uint64_t micro, double w,
                                 int first) {
  clip *c = t->self;
  clip_gpu *g = gpu(c);
  if (first) {
    if (!c->vt.frozen) bm_cuda_vt_zero_grad(g->vt);
    if (!c->bt.frozen) bm_cuda_bt_zero_grad(g->bt);
    g->gls_sum = 0;
  }
  c->vt.pd_step = micro;
  embed_cuda(c, c->ds, idx, B, bm_sub_seed((uint64_t)c->o->seed, BM_AUG_TAG ^ (uint64_t)e));
  float glog = 0;
  double loss = bm_clip_loss(c->img, c->txt, B, c->E, c->log_scale, c->vt.frozen ? NULL : c->dimg,
                             c->bt.frozen ? NULL : c->dtxt, &glog);
  float s = (float)w * bmct_opt_loss_scale(g->opt);
  size_t n = (size_t)B * (size_t)c->E;
  if (!c->vt.frozen) {
    for (size_t i = 0; i < n; i++) c->dimg[i] *= s;
    bmct_upload(g->x, g->dimg, c->dimg, n * sizeof(float));
    bm_cuda_vt_backward(g->vt, g->dimg, NULL, B);
  }
  if (!c->bt.frozen) {
    for (size_t i = 0; i < n; i++) c->dtxt[i] *= s;
    bmct_upload(g->x, g->dtxt, c->dtxt, n * sizeof(float));
    bm_cuda_bt_backward(g->bt, g->dtxt, NULL, NULL);
  }
  g->gls_sum += (double)s * glog;
  float gls = (float)g->gls_sum;
  bmct_upload(g->x, g->gls, &gls, sizeof(float));
  g->synced = 0;
  return loss;
}

static double clip_cuda_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  return clip_cuda_grad_acc(t, idx, B, e, micro, 1.0, 1);
}

static int clip_cuda_step(bm_train_task *t, double lr_scale, double clip_norm, double *norm) {
  clip *c = t->self;
  return bmct_opt_step(gpu(c)->opt, lr_scale, clip_norm, norm);
}

/* clip_after_step's clamp, on the device's value; the host keeps a copy
 * for the next loss */
static void clip_cuda_after_step(bm_train_task *t) {
  clip *c = t->self;
  clip_gpu *g = gpu(c);
  bmct_download(g->x, &c->log_scale, g->ls, sizeof(float));
  c->log_scale = bm_clip_clamp_log_scale(c->log_scale);
  bmct_upload(g->x, g->ls, &c->log_scale, sizeof(float));
}

/* the towers, moments and step back into c once per epoch end, then the
 * CPU's writer */
static void clip_cuda_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  clip *c = t->self;
  clip_gpu *g = c->gpu;
  if (g && !g->synced) {
    bm_cuda_vt_download(g->vt, &c->vt);
    bm_cuda_bt_download(g->bt, &c->bt);
    bmct_opt_download(g->opt, &c->opt);
    g->synced = 1;
  }
  clip_save(t, path, moments, st);
}

void bm_task_contrastive_cuda(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                              bm_cuda *cu, int prec) {
  bm_task_contrastive(t, o, ds, model);
  clip *c = t->self;
  c->cu = cu, c->prec = prec, c->embed = embed_cuda;
  t->grad = clip_cuda_grad, t->grad_acc = clip_cuda_grad_acc, t->step = clip_cuda_step;
  t->after_step = clip_cuda_after_step, t->save = clip_cuda_save;
  if (o->grad_checkpoint && !o->quiet) /* the GPU towers (train_vit.cu, train_bert.cu) keep every activation */
    bm_warn("--grad-checkpoint: the GPU keeps every activation (ignored on --device %s)", o->device);
}
