/* train_ckpt.h - what every bm-train checkpoint carries besides a mode's
 * tensors: the config (data, options, counters, best epoch, the last
 * validation), the optimizer's moments ("optim.m.NAME", "optim.v.NAME"),
 * and reading them back for --resume. man bm-train, CHECKPOINTS. */
#ifndef BM_TRAIN_CKPT_H
#define BM_TRAIN_CKPT_H
#include <jansson.h>
#include "adamw.h"
#include "model.h"
#include "train_data.h"
#include "train_opts.h"
#include "weights.h"

/* Loss and the bm-score figures of a validation, indexed by BM_SEL_*. */
typedef struct {
  double v[BM_NSEL];
  int has_recall;   /* image-caption pairs: */
  double recall[2]; /* Recall@1 image->text, text->image */
} bm_val_result;

/* The run's counters, kept in each checkpoint. */
typedef struct {
  long epoch, step, best_epoch, bad_epochs, n_train, n_used;
  double best;
  const long *npos; /* [C] positives per class in the records trained on */
  int finished;
  bm_val_result last_val;
  int has_val;
} bm_train_state;

json_t *bm_val_json(const bm_val_result *v);
/* The training's keys into cfg (a new object, or a model's config so that
 * the model loader finds its model_cfg there too). D: the head's input
 * width; feature_dims: the widths the head reads (stolen). */
void bm_train_config(json_t *cfg, const bm_train_opts *o, const bm_trainset *ds, int D, json_t *feature_dims,
                     const bm_adamw *opt, const bm_train_state *st);
/* A checkpoint's config that holds a whole model: the model's own config (or
 * a new object) with what the loader would otherwise guess, the towers'
 * head counts (bm_cfg.vision_heads; bm_cfg.text_heads when text_heads > 0)
 * and the image normalization (preprocess_cfg). The caller owns it. */
json_t *bm_train_model_config(const bm_model *m, int vision_heads, int text_heads);
/* The AdamW moments of every parameter of opt as checkpoint tensors
 * optim.m.NAME and optim.v.NAME (flat [n]: what bm_train_resume_state
 * reads), appended at w; names[2 * nparams] get the malloc'd names, for the
 * caller to free after writing. Returns how many tensors it appended. */
int bm_train_moment_weights(const bm_adamw *opt, bm_weight *w, char **names);
/* cfg as the "config" metadata string (malloc'd) */
char *bm_train_config_text(json_t *cfg);
/* The counters of config and the moments in ws of every parameter of opt
 * (the checkpoint at path p), into opt and st. */
void bm_train_resume_state(const char *p, const bm_weights *ws, const json_t *config, long epochs, bm_adamw *opt,
                           bm_train_state *st);
/* The checkpoint of path for --resume, into h: a linear or finetune one
 * as bm_linhead_load reads it; one of the multimodal modes with its config
 * (features img, task multiclass, multilabel or pairs, classes: none for
 * pairs) and tensors, h->W and h->b pointing at head.weight and head.bias
 * when it has them (else NULL; D = 0). 0 ok; -1 with a message in err. */
int bm_train_ckpt_load(const char *path, bm_linhead *h, char *err, size_t errlen);
/* head.weight [C,D] and head.bias [C] of the safetensors file path (--init) */
void bm_train_init_head(const char *path, int C, int D, float *W, float *b);
/* OUT.last.safetensors of OUT (malloc'd) */
char *bm_train_last_path(const char *out);
#endif
