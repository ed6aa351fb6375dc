/* task_linear.c - bm-train --mode linear: a linear head on frozen features
 * (linhead.h), with dropout on its input. */
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "train_task.h"
#include "util.h"

typedef struct {
  const bm_train_opts *o;
  const bm_trainset *ds;
  int C, D;
  float *W, *b, *gW, *gb;
  float *X, *Y, *L, *dL; /* [batch,D], [batch,C] x 3 */
  bm_recslot slot;
  uint64_t drop_seed;
  bm_adamw opt;
} linear;

static double linear_grad(bm_train_task *t, const long *idx, int B, long e, uint64_t micro) {
  linear *h = t->self;
  const bm_train_opts *o = h->o;
  bm_trainset_batch(h->ds, o->feat, idx, B, &h->slot, bm_sub_seed((uint64_t)o->seed, BM_AUG_TAG ^ (uint64_t)e), h->X,
                    h->Y);
  /* the features are constants: only the head sees the dropped inputs */
  bm_dropout(h->X, h->X, (size_t)B * (size_t)h->D, (float)o->dropout, h->drop_seed, micro, 0);
  bm_linhead_forward(h->X, h->W, h->b, B, h->D, h->C, h->L);
  double loss = bm_task_loss(t, h->L, h->Y, B, h->dL);
  bm_linhead_backward(h->X, h->dL, B, h->D, h->C, h->gW, h->gb);
  return loss;
}

static void linear_logits(bm_train_task *t, const bm_trainset *vs, const long *idx, int B, float *logits) {
  linear *h = t->self;
  bm_trainset_batch(vs, h->o->feat, idx, B, &h->slot, 0, h->X, NULL);
  bm_linhead_forward(h->X, h->W, h->b, B, h->D, h->C, logits);
}

/* head, moments (always: the file is small) and the positive weights */
static void linear_save(bm_train_task *t, const char *path, int moments, const bm_train_state *st) {
  (void)moments;
  linear *h = t->self;
  json_t *cfg = json_object(), *fd = json_array();
  for (int k = 0; k < 2; k++)
    if (h->ds->dims[k]) json_array_append_new(fd, json_integer(h->ds->dims[k]));
  bm_train_config(cfg, h->o, h->ds, h->D, fd, &h->opt, st);
  char *text = bm_train_config_text(cfg);
  json_decref(cfg);
  const bm_adamw_param *pw = &h->opt.params[0], *pb = &h->opt.params[1];
  int64_t C = h->C, D = h->D;
  bm_weight w[7] = {
      {"head.weight", BM_W_F32, 2, {C, D}, C * D, h->W, 0},
      {"head.bias", BM_W_F32, 1, {C}, C, h->b, 0},
      {"optim.m.head.weight", BM_W_F32, 2, {C, D}, C * D, pw->m, 0},
      {"optim.v.head.weight", BM_W_F32, 2, {C, D}, C * D, pw->v, 0},
      {"optim.m.head.bias", BM_W_F32, 1, {C}, C, pb->m, 0},
      {"optim.v.head.bias", BM_W_F32, 1, {C}, C, pb->v, 0},
      {"loss.pos_weight", BM_W_F32, 1, {C}, C, (float *)t->pw, 0},
  };
  int nw = t->pw ? 7 : 6;
  for (int i = 0; i < nw; i++) w[i].nbytes = (size_t)w[i].numel * sizeof(float);
  const char *keys[1] = {BM_ST_CONFIG}, *vals[1] = {text};
  char err[512];
  if (bm_safetensors_write(path, w, nw, keys, vals, 1, err, sizeof err)) bm_die("%s", err);
  free(text);
}

static void linear_free(bm_train_task *t) {
  linear *h = t->self;
  bm_recslot_free(&h->slot);
  free(h->W), free(h->b), free(h->gW), free(h->gb);
  free(h->X), free(h->Y), free(h->L), free(h->dL);
  bm_adamw_free(&h->opt);
  free(h);
}

void bm_task_linear(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const float *pw,
                    const bm_linhead *ck) {
  linear *h = bm_xcalloc(1, sizeof *h);
  h->o = o, h->ds = ds, h->C = ds->C, h->D = ds->D;
  size_t CD = (size_t)h->C * (size_t)h->D, B = (size_t)o->batch;
  h->W = bm_xcalloc(CD, sizeof(float));
  h->b = bm_xcalloc((size_t)h->C, sizeof(float));
  h->gW = bm_xcalloc(CD, sizeof(float));
  h->gb = bm_xcalloc((size_t)h->C, sizeof(float));
  h->X = bm_xmalloc(bm_mul_size(B * (size_t)h->D, sizeof(float)));
  h->Y = bm_xmalloc(bm_mul_size(B * (size_t)h->C, sizeof(float)));
  h->L = bm_xmalloc(bm_mul_size(B * (size_t)h->C, sizeof(float)));
  h->dL = bm_xmalloc(bm_mul_size(B * (size_t)h->C, sizeof(float)));
  bm_recslot_init(&h->slot);
  h->drop_seed = bm_sub_seed((uint64_t)o->seed, BM_DROP_TAG);
  bm_adamw_init(&h->opt, o->beta1, o->beta2, o->eps);
  int gw = bm_adamw_add_group(&h->opt, o->lr, o->wd), gb = bm_adamw_add_group(&h->opt, o->lr, 0); /* no decay on biases */
  bm_adamw_add_param(&h->opt, "head.weight", h->W, h->gW, CD, gw);
  bm_adamw_add_param(&h->opt, "head.bias", h->b, h->gb, (size_t)h->C, gb);
  if (o->init) bm_train_init_head(o->init, h->C, h->D, h->W, h->b);
  if (ck) { /* the width was checked against the data (bm_linhead_load, resume_fits) */
    memcpy(h->W, ck->W, sizeof(float) * CD);
    memcpy(h->b, ck->b, sizeof(float) * (size_t)h->C);
  }
  *t = (bm_train_task){.self = h, .opt = &h->opt, .log_lr = o->lr, .grad = linear_grad, .logits = linear_logits,
                 .save = linear_save, .free = linear_free, .C = ds->C, .multilabel = ds->multilabel, .pw = pw};
}
