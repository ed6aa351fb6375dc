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
#include "fusion.h"
#include "linhead.h"
#include "text_batch.h"
#include "train_task.h"
#include "util.h"
#include "vit_train.h"

#define BM_PROMPT_TAG 0xC0C0000000000000ULL
#define BM_FUSION_TAG 0xF050000000000000ULL

typedef struct {
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

static double fusion_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  fusion_task *f = t->self;
  const bm_train_opts *o = f->o;
  bm_trainset_batch(f->ds, o->feat, idx, B, &f->slot, bm_sub_seed((uint64_t)o->seed, BM_AUG_TAG ^ (uint64_t)e),
                    f->X, f->Y);
  bm_adamw_zero_grad(&f->opt);
  forward(f, f->ds, idx, B);
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

static void fusion_free(bm_train_task *t) {
  fusion_task *f = t->self;
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
