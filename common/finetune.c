/* finetune.c - tower + linear head trained end to end (finetune.h). */
#include "finetune.h"

#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "linhead.h"
#include "loss.h"
#include "util.h"

void bm_ft_init(bm_ft *f, const bm_vit *tower, int unlock, int frozen, int C, int multilabel,
                const float *pos_weight, const float *W, const float *b, double lr_enc,
                double lr_head, double wd) {
  memset(f, 0, sizeof *f);
  bm_vit_train_init(&f->vt, tower, unlock, frozen);
  f->C = C, f->E = tower->embed_dim, f->multilabel = multilabel, f->pw = pos_weight;
  size_t CE = (size_t)C * (size_t)f->E;
  f->W = bm_xmalloc(CE * sizeof(float)), f->b = bm_xmalloc((size_t)C * sizeof(float));
  memcpy(f->W, W, CE * sizeof(float)), memcpy(f->b, b, (size_t)C * sizeof(float));
  f->gW = bm_xcalloc(CE, sizeof(float)), f->gb = bm_xcalloc((size_t)C, sizeof(float));
  bm_adamw_init(&f->opt, 0.9, 0.999, 1e-8);
  int ed = bm_adamw_add_group(&f->opt, lr_enc, wd), en = bm_adamw_add_group(&f->opt, lr_enc, 0);
  int hd = bm_adamw_add_group(&f->opt, lr_head, wd), hn = bm_adamw_add_group(&f->opt, lr_head, 0);
  for (int i = 0; i < f->vt.nt; i++) {
    float *g = bm_vit_train_grad(&f->vt, i);
    const bm_vt_tensor *t = &f->vt.t[i];
    if (g) bm_adamw_add_param(&f->opt, t->name, f->vt.p + t->off, g, t->n, t->decay ? ed : en);
  }
  bm_adamw_add_param(&f->opt, "head.weight", f->W, f->gW, CE, hd);
  bm_adamw_add_param(&f->opt, "head.bias", f->b, f->gb, (size_t)C, hn);
}

void bm_ft_free(bm_ft *f) {
  bm_vit_train_free(&f->vt);
  bm_vt_acts_free(&f->acts);
  bm_adamw_free(&f->opt);
  free(f->W), free(f->b), free(f->gW), free(f->gb);
  free(f->emb), free(f->logits), free(f->dlogits), free(f->demb), free(f->xemb);
  memset(f, 0, sizeof *f);
}

static void reserve(bm_ft *f, int B) {
  if (B <= f->cap) return;
  free(f->emb), free(f->logits), free(f->dlogits), free(f->demb), free(f->xemb);
  f->emb = bm_xmalloc(bm_mul_size((size_t)B * f->E, sizeof(float)));
  f->xemb = bm_xmalloc(bm_mul_size((size_t)B * f->E, sizeof(float)));
  f->demb = bm_xmalloc(bm_mul_size((size_t)B * f->E, sizeof(float)));
  f->logits = bm_xmalloc(bm_mul_size((size_t)B * f->C, sizeof(float)));
  f->dlogits = bm_xmalloc(bm_mul_size((size_t)B * f->C, sizeof(float)));
  f->cap = B;
}

double bm_ft_loss(const bm_ft *f, const float *logits, const float *Y, int B, float *dlogits) {
  return f->multilabel ? bm_bce_logits(logits, Y, f->pw, B, f->C, dlogits)
                       : bm_softmax_xent(logits, Y, B, f->C, dlogits);
}

double bm_ft_grad(bm_ft *f, const float *img, const float *Y, int B) {
  reserve(f, B);
  int C = f->C, E = f->E;
  bm_adamw_zero_grad(&f->opt);
  bm_vit_train_forward(&f->vt, &f->acts, img, B, f->emb);
  size_t n = (size_t)B * (size_t)E;
  const float *x = f->emb;
  if (f->dropout > 0) {
    bm_dropout(f->xemb, f->emb, n, f->dropout, f->drop_seed, f->drop_step, 0);
    x = f->xemb;
  }
  bm_linhead_forward(x, f->W, f->b, B, E, C, f->logits);
  double loss = bm_ft_loss(f, f->logits, Y, B, f->dlogits);
  bm_linhead_backward(x, f->dlogits, B, E, C, f->gW, f->gb);
  if (f->vt.frozen) return loss;
  /* demb[B,E] = dlogits[B,C] W[C,E], summed in double in class order */
  for (int i = 0; i < B; i++)
    for (int e = 0; e < E; e++) {
      double s = 0;
      for (int c = 0; c < C; c++) s += (double)f->dlogits[(size_t)i * C + c] * f->W[(size_t)c * E + e];
      f->demb[(size_t)i * E + e] = (float)s;
    }
  if (f->dropout > 0) bm_dropout_backward(f->demb, f->demb, n, f->dropout, f->drop_seed, f->drop_step, 0);
  bm_vit_train_backward(&f->vt, &f->acts, f->demb, B);
  return loss;
}

void bm_ft_logits(bm_ft *f, const float *img, int B) {
  reserve(f, B);
  bm_vit_train_forward(&f->vt, &f->acts, img, B, f->emb);
  bm_linhead_forward(f->emb, f->W, f->b, B, f->E, f->C, f->logits);
}
