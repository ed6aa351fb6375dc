/* train_opts.h - bm-train's options, and the rules by which a checkpoint
 * keeps them: a resumed run takes every training option from its
 * checkpoint's config and refuses a command line that would change one. */
#ifndef BM_TRAIN_OPTS_H
#define BM_TRAIN_OPTS_H
#include <jansson.h>
#include "linhead.h"

/* the order of bm_mode_names; linear and finetune keep their numbers */
enum { BM_MODE_LINEAR, BM_MODE_FINETUNE, BM_MODE_FUSION, BM_MODE_REGULARIZED, BM_MODE_CONTRASTIVE,
       BM_NMODES };
extern const char *const bm_mode_names[BM_NMODES];
/* modes that train on "image" and "text" with both towers */
#define BM_MODE_MULTIMODAL(m) ((m) >= BM_MODE_FUSION)

enum { BM_SEL_LOSS, BM_SEL_ACC, BM_SEL_BAL, BM_SEL_AUC, BM_NSEL };
extern const char *const bm_sel_names[BM_NSEL];

/* where the text tower's input comes from (--text) */
enum { BM_TEXT_KEY, BM_TEXT_PROMPT, BM_TEXT_BOTH, BM_NTEXT };
extern const char *const bm_text_names[BM_NTEXT];

/* Options that a resumed run takes from its checkpoint; given[] says which
 * the command line set, to refuse a resume that would change them. The
 * names are the options' (--NAME) in messages. */
enum { O_FEAT, O_EPOCHS, O_BATCH, O_LR, O_WD, O_WARMUP, O_CLIP, O_SEED, O_FRACTION, O_POSW,
       O_SELECT, O_PATIENCE, O_LRENC, O_LRHEAD, O_UNLOCK, O_ACCUM, O_DROPOUT,
       /* the multimodal modes' */
       O_FLAYERS, O_FWIDTH, O_FHEADS, O_TEXT, O_NCTX, O_UNLOCK_TEXT, O_PDROP, O_NKEPT };
extern const char *const bm_kept_names[O_NKEPT];

typedef struct {
  const char *out, *train, *val, *resume, *init, *log, *model;
  char *val_from_ckpt;   /* owned: the --val path a resumed run goes on with */
  char *model_from_ckpt; /* owned: -m as the resumed run had it */
  bm_feat feat;
  long epochs, batch, warmup, seed, patience, stop_after, threads, unlock, accum;
  double lr, wd, clip, fraction, lr_enc, lr_head, dropout;
  int pos_weight, select, quiet, mode, freeze;
  /* the multimodal modes (0 or -1: the default, decided once the model is
   * known: bm_train_mode_defaults) */
  long fusion_layers, fusion_width, fusion_heads, n_ctx, unlock_text;
  int text, freeze_text, lock_image, lock_text, grad_checkpoint, allow_label_text;
  double patch_dropout;
  double beta1, beta2, eps; /* AdamW's: not options, the mode's */
  /* --device cpu|cuda[:N], --precision (bm_prec): where it ran, kept in the
   * checkpoint as information only (a run resumes on any device) */
  const char *device;
  int prec, prec_given;
  int given[O_NKEPT];
} bm_train_opts;

/* The checkpoint's "options" object. */
json_t *bm_train_options_json(const bm_train_opts *o);
/* The checkpoint's options (config of ck, at path o->resume) replace the
 * defaults; exits 2 when the command line asked for another value, 1 when
 * the config is not one bm-train wrote. */
void bm_train_resume_options(bm_train_opts *o, const json_t *config, bm_feat ckfeat);
/* a number of a config object, or exit 1 naming the checkpoint ck */
double bm_cfg_num(const json_t *obj, const char *key, const char *ck);
/* the index of s in names[n], or -1 */
int bm_name_index(const char *s, const char *const *names, int n);
#endif
