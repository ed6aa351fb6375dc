/* task_fusion.c - bm-train --mode fusion and --mode regularized (seed 000,
 * approaches 2 and 3): both towers' tokens through the co-attention fusion
 * module (fusion.h), dropout on the fused vector, a linear head:
 *
 *   itok[B*T, Wv] = image tower tokens (vit_train.h, all T tokens)
 *   ttok[N, Wt]   = text tower's last hidden state (bert_train.h) of the
 *                   records' text, learned prompt vectors, or both
 *                   (text_batch.h; prompts: ctx [n_ctx, Wt] as negative ids)
 *   fused[B, K]   = fusion(itok, ttok)   K = 2F concat (fusion), F mean (regularized)
 *   logits[B, C]  = dropout(fused) W^T + b
 *
 * AdamW groups: the towers' matrices (lr_enc, wd), their other tensors
 * (lr_enc, no decay), the fusion's and head's matrices and the prompt
 * vectors (lr_head, wd), their norms and biases (lr_head, no decay). The
 * towers' projections (visual.head.proj, text.proj.*) get no gradient here
 * (the fusion reads tokens, not embeddings) and are not registered, so
 * weight decay does not wear them down. The checkpoint is the whole model
 * under open_clip names plus fusion.*, prompt.ctx, head.* and the config, so
 * bm-embed-img -m, bm-embed-txt -m and bm-fuse -m all read it. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "bert_train.h"
#include "cuda/bmcuda_fusion.h"
#include "cuda/bmcuda_opt.h"
#include "cuda/bmcuda_vit_train.h"
#include "fusion.h"
#include "linhead.h"
#include "text_batch.h"
#include "train_task.h"
#include "util.h"
#include "vit_train.h"

#define BM_PROMPT_TAG 0xC0C0000000000000ULL
#define BM_FUSION_TAG 0xF050000000000000ULL

typedef struct fusion_task {
  const bm_train_opts *o;
  const bm_trainset *ds;
  const bm_model *model;
  bm_vit_train vt;
  bm_vt_acts va;
  bm_bert_train bt;
  bm_bt_acts ba;
  bm_fusion fu;
  bm_fusion_acts fa;
  bm_text_batch tb;
  float *ctx, *gctx; /* [n_ctx, Wt] prompt vectors (NULL: --text key) */
  int n_ctx;
  int C, K, T;       /* classes, fused width, image tokens */
  float *W, *b, *gW, *gb;
  float *X, *Y;      /* [batch,3,S,S] normalized images, [batch,C] */
  bm_recslot slot, tslot;
  int cap, cap_tok;  /* images, text tokens the buffers below hold */
  float *itok, *ditok, *ttok, *dttok, *fused, *xf, *dfused, *logits, *dlogits;
  float dropout;
  uint64_t drop_seed;
  bm_adamw opt;
  bm_cuda *cu; /* the GPU task: its device, precision and state (made at first use) */
  int prec;
  struct fusion_gpu *gpu;
} fusion_task;

static void reserve(fusion_task *f, int B, int ntok) {
  int Wv = f->vt.v.width, Wt = f->bt.m.width;
  if (B > f->cap) {
    free(f->itok), free(f->ditok), free(f->fused), free(f->xf), free(f->dfused), free(f->logits), free(f->dlogits);
    size_t n = (size_t)B * (size_t)f->T * (size_t)Wv;
    f->itok = bm_xmalloc(bm_mul_size(n, sizeof(float)));
    f->ditok = bm_xmalloc(bm_mul_size(n, sizeof(float)));
    f->fused = bm_xmalloc(bm_mul_size((size_t)B * f->K, sizeof(float)));
    f->xf = bm_xmalloc(bm_mul_size((size_t)B * f->K, sizeof(float)));
    f->dfused = bm_xmalloc(bm_mul_size((size_t)B * f->K, sizeof(float)));
    f->logits = bm_xmalloc(bm_mul_size((size_t)B * f->C, sizeof(float)));
    f->dlogits = bm_xmalloc(bm_mul_size((size_t)B * f->C, sizeof(float)));
    f->cap = B;
  }
  if (ntok > f->cap_tok) {
    free(f->ttok), free(f->dttok);
    f->ttok = bm_xmalloc(bm_mul_size((size_t)ntok * Wt, sizeof(float)));
    f->dttok = bm_xmalloc(bm_mul_size((size_t)ntok * Wt, sizeof(float)));
    f->cap_tok = ntok;
  }
}

/* The fused vectors of records idx[0..B-1] of set into f->fused (the texts
 * in f->tb, the images in f->X); needs the activations for a backward. */
static void forward(fusion_task *f, const bm_trainset *set, const long *idx, int B) {
  const bm_train_opts *o = f->o;
  bm_text_batch_read(&f->tb, set, idx, B, &f->tslot, f->model->tok, o->text, f->n_ctx, f->bt.m.context);
  reserve(f, B, f->tb.n_ids);
  bm_vit_train_forward_tokens(&f->vt, &f->va, f->X, B, NULL, f->itok);
  bm_bert_train_forward(&f->bt, &f->ba, f->tb.ids, f->tb.start, f->tb.len, B, f->ctx, NULL, f->ttok);
  bm_fusion_forward(&f->fu, &f->fa, f->itok, B, f->T, f->ttok, f->tb.start, f->tb.len, f->fused);
}

/* From f->fused [B,K] and the targets f->Y: dropout, the head, the loss
 * (returned), the head's gradient into f->gW, f->gb (overwritten) and
 * dfused (into f->dfused). */
static double head_grad(bm_train_task *t, int B, uint64_t micro) {
  fusion_task *f = t->self;
  int C = f->C, K = f->K;
  size_t n = (size_t)B * (size_t)K;
  const float *x = f->fused;
  if (f->dropout > 0) { /* each batch of the run its own mask, whatever the threads or a resume */
    bm_dropout(f->xf, f->fused, n, f->dropout, f->drop_seed, micro, 0);
    x = f->xf;
  }
  bm_linhead_forward(x, f->W, f->b, B, K, C, f->logits);
  double loss = bm_task_loss(t, f->logits, f->Y, B, f->dlogits);
  bm_linhead_backward(x, f->dlogits, B, K, C, f->gW, f->gb);
  /* dfused[B,K] = dlogits[B,C] W[C,K], summed in double in class order */
  for (int i = 0; i < B; i++)
    for (int k = 0; k < K; k++) {
      double s = 0;
      for (int c = 0; c < C; c++) s += (double)f->dlogits[(size_t)i * C + c] * f->W[(size_t)c * K + k];
      f->dfused[(size_t)i * K + k] = (float)s;
    }
  if (f->dropout > 0) bm_dropout_backward(f->dfused, f->dfused, n, f->dropout, f->drop_seed, micro, 0);
  return loss;
}

static double fusion_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  fusion_task *f = t->self;
  const bm_train_opts *o = f->o;
  bm_trainset_batch(f->ds, o->feat, idx, B, &f->slot, bm_sub_seed((uint64_t)o->seed, BM_AUG_TAG ^ (uint64_t)e),
                    f->X, f->Y);
  bm_adamw_zero_grad(&f->opt);
  forward(f, f->ds, idx, B);
  double loss = head_grad(t, B, micro);
  int img = !f->vt.frozen, txt = !f->bt.frozen || f->ctx;
  bm_fusion_backward(&f->fu, &f->fa, f->dfused, img ? f->ditok : NULL, txt ? f->dttok : NULL);
  if (img) bm_vit_train_backward_tokens(&f->vt, &f->va, NULL, f->ditok, B);
  if (txt) bm_bert_train_backward(&f->bt, &f->ba, NULL, f->dttok, f->gctx);
  return loss;
}

static void fusion_logits(bm_train_task *t, const bm_trainset *vs, const long *idx, int B, float *logits) {
  fusion_task *f = t->self;
  bm_trainset_batch(vs, f->o->feat, idx, B, &f->slot, 0, f->X, NULL);
  forward(f, vs, idx, B);
  bm_linhead_forward(f->fused, f->W, f->b, B, f->K, f->C, logits);
}

/* The fusion's configuration as the checkpoint's config has it (bm-fuse -m
 * reads it back: bm_fusion_cfg_from_json). */
static json_t *fusion_json(const bm_fusion_cfg *c) {
  return json_pack("{sisisisisisiss}", "img_dim", c->Di, "txt_dim", c->Dt, "width", c->F, "layers", c->layers,
                   "heads", c->heads, "mlp", c->mlp, "combine", c->combine == BM_FUSE_MEAN ? "mean" : "concat");
}

/* Every tensor of the model, both towers' replaced by the trained ones under
 * their open_clip names; fusion.*, prompt.ctx, the head; the model's config
 * with the training's merged in. */
static void fusion_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  fusion_task *f = t->self;
  const bm_model *m = f->model;
  const bm_vit_train *vt = &f->vt;
  const bm_bert_train *bt = &f->bt;
  const bm_adamw *opt = moments ? &f->opt : NULL;
  json_t *cfg = bm_train_model_config(m, vt->v.heads, bt->m.heads);
  bm_train_config(cfg, f->o, f->ds, f->K, json_pack("[ii]", f->fu.cfg.Di, f->fu.cfg.Dt), &f->opt, st);
  json_object_set_new(cfg, "fusion", fusion_json(&f->fu.cfg));
  json_object_set_new(cfg, "text", json_string(bm_text_names[f->o->text]));
  json_object_set_new(cfg, "n_ctx", json_integer(f->n_ctx));
  char *text = bm_train_config_text(cfg);
  json_decref(cfg);
  int nmom = opt ? 2 * opt->nparams : 0;
  bm_weight *w = bm_xcalloc((size_t)m->ws.n + (size_t)f->fu.nt + 4 + (size_t)nmom, sizeof *w);
  char **mnames = bm_xcalloc((size_t)nmom + 1, sizeof *mnames);
  int nw = 0;
  for (int i = 0; i < m->ws.n; i++) {
    const bm_weight *src = &m->ws.w[i];
    if (!strncmp(src->name, "head.", 5) || !strncmp(src->name, "optim.", 6) || !strncmp(src->name, "loss.", 5) ||
        !strncmp(src->name, "fusion.", 7) || !strncmp(src->name, "prompt.", 7))
      continue; /* a resumed run's: ours replace them */
    w[nw] = *src;
    for (int k = 0; k < vt->nt; k++)
      if (!strcmp(vt->t[k].name, src->name)) {
        w[nw].dtype = BM_W_F32, w[nw].data = vt->p + vt->t[k].off, w[nw].nbytes = vt->t[k].n * sizeof(float);
        break;
      }
    for (int k = 0; k < bt->nt; k++)
      if (!strcmp(bt->t[k].name, src->name)) {
        w[nw].dtype = BM_W_F32, w[nw].data = bt->p + bt->t[k].off, w[nw].nbytes = bt->t[k].n * sizeof(float);
        break;
      }
    nw++;
  }
  for (int k = 0; k < f->fu.nt; k++) {
    bm_fusion_tensor *ft = &f->fu.t[k];
    bm_weight *d = &w[nw++];
    *d = (bm_weight){ft->name, BM_W_F32, ft->ndim, {0}, (int64_t)ft->n, f->fu.p + ft->off, ft->n * sizeof(float)};
    for (int j = 0; j < ft->ndim; j++) d->shape[j] = ft->shape[j];
  }
  int64_t C = f->C, K = f->K, Wt = bt->m.width;
  if (f->ctx)
    w[nw++] = (bm_weight){"prompt.ctx", BM_W_F32, 2, {f->n_ctx, Wt}, f->n_ctx * Wt, f->ctx,
                          (size_t)(f->n_ctx * Wt) * sizeof(float)};
  w[nw++] = (bm_weight){"head.weight", BM_W_F32, 2, {C, K}, C * K, f->W, (size_t)(C * K) * sizeof(float)};
  w[nw++] = (bm_weight){"head.bias", BM_W_F32, 1, {C}, C, f->b, (size_t)C * sizeof(float)};
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

static void gpu_free(fusion_task *f);

static void fusion_free(bm_train_task *t) {
  fusion_task *f = t->self;
  gpu_free(f);
  bm_recslot_free(&f->slot);
  bm_recslot_free(&f->tslot);
  bm_text_batch_free(&f->tb);
  bm_vit_train_free(&f->vt);
  bm_vt_acts_free(&f->va);
  bm_bert_train_free(&f->bt);
  bm_bt_acts_free(&f->ba);
  bm_fusion_free(&f->fu);
  bm_fusion_acts_free(&f->fa);
  bm_adamw_free(&f->opt);
  free(f->ctx), free(f->gctx), free(f->W), free(f->b), free(f->gW), free(f->gb), free(f->X), free(f->Y);
  free(f->itok), free(f->ditok), free(f->ttok), free(f->dttok), free(f->fused), free(f->xf), free(f->dfused);
  free(f->logits), free(f->dlogits);
  free(f);
}

/* a tower's projection: the fusion reads tokens, so it gets no gradient */
static int unused_proj(const char *name) {
  return strstr(name, "visual.head.proj") || !strncmp(name, "text.proj.", 10);
}

void bm_task_fusion(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                    const float *pw, const bm_linhead *ck) {
  fusion_task *f = bm_xcalloc(1, sizeof *f);
  f->o = o, f->ds = ds, f->model = model;
  bm_vit_train_init(&f->vt, &model->vit, o->unlock > INT_MAX ? -1 : (int)o->unlock, o->freeze);
  bm_bert_train_init(&f->bt, &model->bert, o->unlock_text > INT_MAX ? -1 : (int)o->unlock_text, o->freeze_text);
  f->vt.checkpoint = f->bt.checkpoint = o->grad_checkpoint;
  f->T = model->vit.ntok;
  bm_fusion_cfg fc = {.Di = model->vit.width, .Dt = model->bert.width, .F = (int)o->fusion_width,
                      .layers = (int)o->fusion_layers, .heads = (int)o->fusion_heads, .mlp = 0,
                      .combine = o->mode == BM_MODE_REGULARIZED ? BM_FUSE_MEAN : BM_FUSE_CONCAT};
  const char *why = bm_fusion_check_cfg(&fc);
  if (why) bm_usage_die("--mode %s: the fusion: %s", bm_mode_names[o->mode], why);
  char err[1024];
  if (ck) {
    if (bm_fusion_load(&f->fu, &fc, &ck->ws, err, sizeof err)) bm_die("--resume: %s", err);
  } else {
    bm_fusion_init(&f->fu, &fc, bm_sub_seed((uint64_t)o->seed, BM_FUSION_TAG));
  }
  f->C = ds->C, f->K = bm_fusion_out_dim(&f->fu.cfg);
  int C = f->C, K = f->K, Wt = model->bert.width;
  size_t CK = (size_t)C * (size_t)K;
  if (o->text != BM_TEXT_KEY) {
    f->n_ctx = (int)o->n_ctx;
    size_t n = (size_t)f->n_ctx * (size_t)Wt;
    f->ctx = bm_xmalloc(n * sizeof(float)), f->gctx = bm_xcalloc(n, sizeof(float));
    if (ck) {
      int64_t shape[2] = {f->n_ctx, Wt};
      const bm_weight *w = bm_weights_expect(&ck->ws, "prompt.ctx", 2, shape, err, sizeof err);
      if (!w || w->dtype != BM_W_F32) bm_die("--resume %s: %s", o->resume, w ? "prompt.ctx is not f32" : err);
      memcpy(f->ctx, w->data, n * sizeof(float));
    } else { /* CoOp's start: normal, std 0.02, seeded (Box-Muller) */
      bm_rng r;
      bm_rng_seed(&r, bm_sub_seed((uint64_t)o->seed, BM_PROMPT_TAG));
      for (size_t i = 0; i < n; i++) {
        double u1 = 1 - bm_rng_uniform(&r), u2 = bm_rng_uniform(&r);
        f->ctx[i] = (float)(0.02 * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
      }
    }
  }
  /* the head: torch's nn.Linear start, uniform in +-1/sqrt(K), seeded */
  f->W = bm_xmalloc(CK * sizeof(float)), f->b = bm_xmalloc((size_t)C * sizeof(float));
  f->gW = bm_xcalloc(CK, sizeof(float)), f->gb = bm_xcalloc((size_t)C, sizeof(float));
  if (ck) { /* the width was checked (head.weight [C, K]) */
    if (!ck->W || ck->D != K) bm_die("--resume %s: head.weight is not [%d, %d]", o->resume, C, K);
    memcpy(f->W, ck->W, CK * sizeof(float)), memcpy(f->b, ck->b, (size_t)C * sizeof(float));
  } else {
    bm_rng r;
    bm_rng_seed(&r, bm_sub_seed((uint64_t)o->seed, BM_HEAD_TAG));
    float a = 1.0f / sqrtf((float)K);
    for (size_t i = 0; i < CK; i++) f->W[i] = a * (float)(2 * bm_rng_uniform(&r) - 1);
    for (int k = 0; k < C; k++) f->b[k] = a * (float)(2 * bm_rng_uniform(&r) - 1);
  }
  bm_adamw_init(&f->opt, o->beta1, o->beta2, o->eps);
  int ed = bm_adamw_add_group(&f->opt, o->lr_enc, o->wd), en = bm_adamw_add_group(&f->opt, o->lr_enc, 0);
  int hd = bm_adamw_add_group(&f->opt, o->lr_head, o->wd), hn = bm_adamw_add_group(&f->opt, o->lr_head, 0);
  for (int i = 0; i < f->vt.nt; i++) {
    float *g = bm_vit_train_grad(&f->vt, i);
    const bm_vt_tensor *vtt = &f->vt.t[i];
    if (g && !unused_proj(vtt->name)) bm_adamw_add_param(&f->opt, vtt->name, f->vt.p + vtt->off, g, vtt->n, vtt->decay ? ed : en);
  }
  for (int i = 0; i < f->bt.nt; i++) {
    float *g = bm_bert_train_grad(&f->bt, i);
    const bm_bt_tensor *btt = &f->bt.t[i];
    if (g && !unused_proj(btt->name)) bm_adamw_add_param(&f->opt, btt->name, f->bt.p + btt->off, g, btt->n, btt->decay ? ed : en);
  }
  bm_fusion_add_params(&f->fu, &f->opt, hd, hn);
  if (f->ctx) bm_adamw_add_param(&f->opt, "prompt.ctx", f->ctx, f->gctx, (size_t)f->n_ctx * (size_t)Wt, hd);
  bm_adamw_add_param(&f->opt, "head.weight", f->W, f->gW, CK, hd);
  bm_adamw_add_param(&f->opt, "head.bias", f->b, f->gb, (size_t)C, hn);
  f->dropout = (float)o->dropout, f->drop_seed = bm_sub_seed((uint64_t)o->seed, BM_DROP_TAG);
  size_t B = (size_t)o->batch;
  f->X = bm_xmalloc(bm_mul_size(B * (size_t)ds->D, sizeof(float)));
  f->Y = bm_xmalloc(bm_mul_size(B * (size_t)C, sizeof(float)));
  bm_recslot_init(&f->slot);
  bm_recslot_init(&f->tslot);
  bm_text_batch_init(&f->tb);
  *t = (bm_train_task){.self = f, .opt = &f->opt, .log_lr = o->lr_head, .grad = fusion_grad,
                       .logits = fusion_logits, .save = fusion_save, .free = fusion_free, .C = C,
                       .multilabel = ds->multilabel, .pw = pw};
}

/* ---- the GPU task: the towers, the fusion module and AdamW on the
 * device. The fused vectors [B,K] come back to the CPU for the dropout, the
 * head and the loss (fusion_grad's code: the same masks and sums), whose
 * gradient goes back up; the head's weights live on the device for the
 * optimizer and are brought back after each step. */

typedef struct fusion_gpu {
  bm_cuda_vt *vt;
  bm_cuda_bt *bt;
  bm_cuda_fusion *fu;
  bmct_ctx *x;                 /* the towers' stream (every module's) */
  bmct_opt *opt;               /* f->opt's parameters, bound to device tensors */
  float *itok, *ditok;         /* [cap*T, Wv] image tokens and their gradient */
  float *ttok, *dttok;         /* [cap_tok, Wt] text tokens and their gradient */
  float *fused, *dfused;       /* [cap, K] */
  float *ctx, *gctx;           /* [n_ctx, Wt] prompt vectors, their gradient (NULL: none) */
  float *W, *b, *gW, *gb;      /* the head [C,K], [C] and its gradient */
  float *hgW, *hgb;            /* [C,K], [C] host: the group's head gradient so far */
  int cap, cap_tok, synced;
} fusion_gpu;

static float *dev_floats(size_t n, const char *what) { return bm_cuda_malloc((n ? n : 1) * sizeof(float), what); }

/* Made at the first batch, after a resumed run's moments reached f->opt. */
static fusion_gpu *gpu(fusion_task *f) {
  if (f->gpu) return f->gpu;
  fusion_gpu *g = f->gpu = bm_xcalloc(1, sizeof *g);
  int B = (int)f->o->batch, C = f->C, K = f->K, Wt = f->bt.m.width;
  size_t CK = (size_t)C * (size_t)K, es = bm_prec_size((bm_prec)f->prec);
  g->vt = bm_cuda_vt_new(&f->vt, f->cu, f->prec);
  g->x = bm_cuda_vt_ctx(g->vt);
  g->bt = bm_cuda_bt_new(g->x, &f->bt, f->prec, B, B * f->bt.m.context, f->n_ctx);
  g->fu = bm_cuda_fusion_new(&f->fu, f->cu, f->prec);
  g->W = dev_floats(CK, "head weight"), g->b = dev_floats((size_t)C, "head bias");
  g->gW = dev_floats(CK, "head weight gradient"), g->gb = dev_floats((size_t)C, "head bias gradient");
  bmct_upload(g->x, g->W, f->W, CK * sizeof(float));
  bmct_upload(g->x, g->b, f->b, (size_t)C * sizeof(float));
  g->hgW = bm_xmalloc(CK * sizeof(float)), g->hgb = bm_xmalloc((size_t)C * sizeof(float));
  size_t nctx = (size_t)f->n_ctx * (size_t)Wt;
  if (f->ctx) {
    g->ctx = dev_floats(nctx, "prompt vectors"), g->gctx = dev_floats(nctx, "prompt vector gradients");
    bmct_upload(g->x, g->ctx, f->ctx, nctx * sizeof(float));
  }
  /* f->opt's parameters in the order bm_task_fusion added them */
  g->opt = bmct_opt_new(g->x, &f->opt, f->prec);
  int k = 0, bnt, fnt;
  size_t voff = bm_cuda_vt_goff(g->vt), bnp, boff;
  float *vP = bm_cuda_vt_params(g->vt), *vG = bm_cuda_vt_grads(g->vt);
  char *vC = bm_cuda_vt_params_compute(g->vt);
  for (int i = 0; i < f->vt.nt; i++) {
    const bm_vt_tensor *q = &f->vt.t[i];
    if (bm_vit_train_grad(&f->vt, i) && !unused_proj(q->name))
      bmct_opt_bind(g->opt, k++, vP + q->off, vC + q->off * es, vG + (q->off - voff));
  }
  bm_cuda_bt_tensors(g->bt, &bnt, &bnp, &boff);
  float *bP = bm_cuda_bt_params(g->bt);
  char *bC = bm_cuda_bt_params_compute(g->bt);
  for (int i = 0; i < f->bt.nt; i++) {
    const bm_bt_tensor *q = &f->bt.t[i];
    if (bm_bert_train_grad(&f->bt, i) && !unused_proj(q->name))
      bmct_opt_bind(g->opt, k++, bP + q->off, bC + q->off * es, bm_cuda_bt_grad(g->bt, i));
  }
  const bm_fusion_tensor *ft = bm_cuda_fusion_tensors(g->fu, &fnt);
  float *fP = bm_cuda_fusion_params(g->fu), *fG = bm_cuda_fusion_grads(g->fu);
  char *fC = bm_cuda_fusion_params_compute(g->fu); /* NULL in fp32 */
  for (int i = 0; i < fnt; i++)
    bmct_opt_bind(g->opt, k++, fP + ft[i].off, fC ? fC + ft[i].off * es : NULL, fG + ft[i].off);
  if (f->ctx) bmct_opt_bind(g->opt, k++, g->ctx, NULL, g->gctx);
  bmct_opt_bind(g->opt, k++, g->W, NULL, g->gW);
  bmct_opt_bind(g->opt, k++, g->b, NULL, g->gb);
  if (k != f->opt.nparams) bm_die("internal error: GPU fusion: %d of %d parameters bound", k, f->opt.nparams);
  /* the global norm: every gradient buffer once (the towers' unused
   * projections hold zeros there, as on the CPU they count nothing) */
  if (vG && f->vt.np > voff) bmct_opt_grads(g->opt, vG, f->vt.np - voff);
  if (bm_cuda_bt_grads(g->bt) && bnp > boff) bmct_opt_grads(g->opt, bm_cuda_bt_grads(g->bt), bnp - boff);
  bmct_opt_grads(g->opt, fG, bm_cuda_fusion_np(g->fu));
  if (f->ctx) bmct_opt_grads(g->opt, g->gctx, nctx);
  bmct_opt_grads(g->opt, g->gW, CK);
  bmct_opt_grads(g->opt, g->gb, (size_t)C);
  g->synced = 1;
  return g;
}

static void gpu_free(fusion_task *f) {
  fusion_gpu *g = f->gpu;
  if (!g) return;
  bmct_opt_free(g->opt);
  bm_cuda_fusion_free(g->fu);
  bm_cuda_bt_free(g->bt);
  float *bufs[] = {g->itok, g->ditok, g->ttok, g->dttok, g->fused, g->dfused, g->ctx, g->gctx,
                   g->W, g->b, g->gW, g->gb};
  for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) bm_cuda_free(bufs[i]);
  bm_cuda_vt_free(g->vt); /* last: the others ran on its context */
  free(g->hgW), free(g->hgb), free(g);
  f->gpu = NULL;
}

static void gpu_reserve(fusion_task *f, fusion_gpu *g, int B, int ntok) {
  int Wv = f->vt.v.width, Wt = f->bt.m.width;
  if (B > g->cap) {
    bm_cuda_free(g->itok), bm_cuda_free(g->ditok), bm_cuda_free(g->fused), bm_cuda_free(g->dfused);
    size_t n = (size_t)B * (size_t)f->T * (size_t)Wv;
    g->itok = dev_floats(n, "image tokens"), g->ditok = dev_floats(n, "image token gradients");
    g->fused = dev_floats((size_t)B * f->K, "fused"), g->dfused = dev_floats((size_t)B * f->K, "fused gradients");
    g->cap = B;
  }
  if (ntok > g->cap_tok) {
    bm_cuda_free(g->ttok), bm_cuda_free(g->dttok);
    g->ttok = dev_floats((size_t)ntok * Wt, "text tokens"), g->dttok = dev_floats((size_t)ntok * Wt, "text token gradients");
    g->cap_tok = ntok;
  }
}

/* forward()'s contract on the GPU: the fused vectors of records idx[0..B-1]
 * (images in f->X) into f->fused on the host, the activations kept on the
 * device. */
static void forward_cuda(fusion_task *f, const bm_trainset *set, const long *idx, int B) {
  fusion_gpu *g = gpu(f);
  const bm_train_opts *o = f->o;
  bm_text_batch_read(&f->tb, set, idx, B, &f->tslot, f->model->tok, o->text, f->n_ctx, f->bt.m.context);
  reserve(f, B, f->tb.n_ids);
  gpu_reserve(f, g, B, f->tb.n_ids);
  int T = bm_cuda_vt_forward(g->vt, f->X, B, NULL, g->itok);
  if (T != f->T) bm_die("internal error: GPU fusion: %d image tokens, %d expected", T, f->T);
  bm_cuda_bt_forward(g->bt, f->tb.ids, f->tb.start, f->tb.len, B, g->ctx, NULL, g->ttok);
  bm_cuda_fusion_forward(g->fu, g->itok, B, f->T, g->ttok, f->tb.start, f->tb.len, g->fused);
  bmct_download(g->x, f->fused, g->fused, (size_t)B * (size_t)f->K * sizeof(float));
}

/* One batch: its loss gradient times w ADDED to the device gradients,
 * zeroed first when `first` (train_loop.h's grad_acc); fp16: times the
 * optimizer's loss scale too. */
static double fusion_cuda_grad_acc(bm_train_task *t, const long *idx, int B, long e, uint64_t micro, double w,
                                   int first) {
  fusion_task *f = t->self;
  fusion_gpu *g = gpu(f);
  const bm_train_opts *o = f->o;
  int C = f->C, K = f->K;
  size_t CK = (size_t)C * (size_t)K, n = (size_t)B * (size_t)K;
  bm_trainset_batch(f->ds, o->feat, idx, B, &f->slot, bm_sub_seed((uint64_t)o->seed, BM_AUG_TAG ^ (uint64_t)e),
                    f->X, f->Y);
  if (first) {
    if (!f->vt.frozen) bm_cuda_vt_zero_grad(g->vt);
    if (!f->bt.frozen) bm_cuda_bt_zero_grad(g->bt);
    bm_cuda_fusion_zero_grad(g->fu);
    if (g->gctx) bm_cuda_memset(f->cu, g->gctx, 0, (size_t)f->n_ctx * f->bt.m.width * sizeof(float));
    memset(g->hgW, 0, CK * sizeof(float)), memset(g->hgb, 0, (size_t)C * sizeof(float));
  }
  forward_cuda(f, f->ds, idx, B);
  double loss = head_grad(t, B, micro); /* on the host, as on the CPU */
  float s = (float)w * bmct_opt_loss_scale(g->opt);
  for (size_t i = 0; i < CK; i++) g->hgW[i] += s * f->gW[i];
  for (int c = 0; c < C; c++) g->hgb[c] += s * f->gb[c];
  bmct_upload(g->x, g->gW, g->hgW, CK * sizeof(float));
  bmct_upload(g->x, g->gb, g->hgb, (size_t)C * sizeof(float));
  for (size_t i = 0; i < n; i++) f->dfused[i] *= s;
  bmct_upload(g->x, g->dfused, f->dfused, n * sizeof(float));
  /* the device's backward: fusion, then each tower from its tokens' gradient */
  int img = !f->vt.frozen, txt = !f->bt.frozen || f->ctx;
  bm_cuda_fusion_backward(g->fu, g->dfused, img ? g->ditok : NULL, txt ? g->dttok : NULL);
  if (img) bm_cuda_vt_backward(g->vt, NULL, g->ditok, B);
  if (txt) bm_cuda_bt_backward(g->bt, NULL, g->dttok, g->gctx);
  g->synced = 0;
  return loss;
}

static double fusion_cuda_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  return fusion_cuda_grad_acc(t, idx, B, e, micro, 1.0, 1);
}

/* the head's new weights back for the next batch's host part */
static int fusion_cuda_step(bm_train_task *t, double lr_scale, double clip, double *norm) {
  fusion_task *f = t->self;
  fusion_gpu *g = gpu(f);
  int took = bmct_opt_step(g->opt, lr_scale, clip, norm);
  if (took) {
    bmct_download(g->x, f->W, g->W, (size_t)f->C * (size_t)f->K * sizeof(float));
    bmct_download(g->x, f->b, g->b, (size_t)f->C * sizeof(float));
  }
  return took;
}

static void fusion_cuda_logits(bm_train_task *t, const bm_trainset *vs, const long *idx, int B, float *logits) {
  fusion_task *f = t->self;
  bm_trainset_batch(vs, f->o->feat, idx, B, &f->slot, 0, f->X, NULL);
  forward_cuda(f, vs, idx, B);
  bm_linhead_forward(f->fused, f->W, f->b, B, f->K, f->C, logits);
}

/* the towers, fusion, prompts, moments and step back into f once per epoch
 * end (the head is already there), then the CPU's writer */
static void fusion_cuda_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  fusion_task *f = t->self;
  fusion_gpu *g = f->gpu;
  if (g && !g->synced) {
    bm_cuda_vt_download(g->vt, &f->vt);
    bm_cuda_bt_download(g->bt, &f->bt);
    bm_cuda_fusion_download(g->fu, &f->fu);
    if (f->ctx) bmct_download(g->x, f->ctx, g->ctx, (size_t)f->n_ctx * f->bt.m.width * sizeof(float));
    bmct_opt_download(g->opt, &f->opt);
    g->synced = 1;
  }
  fusion_save(t, path, moments, st);
}

void bm_task_fusion_cuda(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const bm_model *model,
                         const float *pw, const bm_linhead *ck, bm_cuda *cu, int prec) {
  bm_task_fusion(t, o, ds, model, pw, ck);
  fusion_task *f = t->self;
  f->cu = cu, f->prec = prec;
  t->grad = fusion_cuda_grad, t->grad_acc = fusion_cuda_grad_acc, t->step = fusion_cuda_step;
  t->logits = fusion_cuda_logits, t->save = fusion_cuda_save;
  if (o->grad_checkpoint && !o->quiet) /* the GPU towers (train_vit.cu, train_bert.cu) keep every activation */
    bm_warn("--grad-checkpoint: the GPU keeps every activation (ignored on --device %s)", o->device);
}
