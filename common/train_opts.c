/* train_opts.c - bm-train's options in and out of a checkpoint's config. */
#include "train_opts.h"

#include <string.h>

#include "cuda/bmcuda.h"
#include "util.h"

const char *const bm_mode_names[BM_NMODES] = {"linear", "finetune", "fusion", "regularized", "contrastive"};
const char *const bm_sel_names[BM_NSEL] = {"loss", "accuracy", "balanced_accuracy", "auc_macro"};
const char *const bm_text_names[BM_NTEXT] = {"key", "prompt", "both"};
const char *const bm_kept_names[O_NKEPT] = {
    "features", "epochs", "batch", "lr", "weight_decay", "warmup", "clip", "seed", "fraction",
    "pos_weight", "select", "patience", "lr-encoder", "lr-head", "unlock-last", "accum", "dropout",
    "fusion-layers", "fusion-width", "fusion-heads", "text", "n-ctx", "unlock-text-last", "patch-dropout"};

int bm_name_index(const char *s, const char *const *names, int n) {
  for (int i = 0; s && i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

json_t *bm_train_options_json(const bm_train_opts *o) {
  json_t *j = json_pack("{sssIsIsfsfsIsfsIsfsssssIss?ss?}", "features", bm_feat_name(o->feat), "epochs",
                        (json_int_t)o->epochs, "batch", (json_int_t)o->batch, "lr", o->lr, "weight_decay", o->wd,
                        "warmup", (json_int_t)o->warmup, "clip", o->clip, "seed", (json_int_t)o->seed,
                        "fraction", o->fraction, "pos_weight", o->pos_weight ? "inverse-freq" : "none", "select",
                        bm_sel_names[o->select], "patience", (json_int_t)o->patience, "init", o->init, "val", o->val);
  json_object_set_new(j, "accum", json_integer(o->accum));
  json_object_set_new(j, "dropout", json_real(o->dropout));
  if (o->device) /* information: not read back by a resume */
    json_object_update_new(j, json_pack("{ssss}", "device", o->device, "precision",
                                        bm_prec_name((bm_prec)o->prec)));
  if (o->mode != BM_MODE_LINEAR)
    json_object_update_new(j, json_pack("{sssfsfsIsb}", "model", o->model, "lr_encoder", o->lr_enc, "lr_head",
                                        o->lr_head, "unlock_last", (json_int_t)o->unlock, "freeze_tower", o->freeze));
  if (BM_MODE_MULTIMODAL(o->mode))
    json_object_update_new(
        j, json_pack("{sIsIsIsssIsIsbsbsbsf}", "fusion_layers", (json_int_t)o->fusion_layers, "fusion_width",
                     (json_int_t)o->fusion_width, "fusion_heads", (json_int_t)o->fusion_heads, "text",
                     bm_text_names[o->text], "n_ctx", (json_int_t)o->n_ctx, "unlock_text_last",
                     (json_int_t)o->unlock_text, "freeze_text", o->freeze_text, "lock_image", o->lock_image,
                     "lock_text", o->lock_text, "patch_dropout", o->patch_dropout));
  return j;
}

double bm_cfg_num(const json_t *obj, const char *key, const char *ck) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_number(v)) bm_die("%s: config option \"%s\" is missing or not a number", ck, key);
  return json_number_value(v);
}

static void take_option(bm_train_opts *o, int k, double saved, double *field_d, long *field_l, const char *ck) {
  double cur = field_d ? *field_d : (double)*field_l;
  if (o->given[k] && cur != saved)
    bm_usage_die("--%s %.17g differs from the checkpoint's %.17g (%s): a resumed run keeps its options",
                 bm_kept_names[k], cur, saved, ck);
  if (field_d) *field_d = saved;
  else *field_l = (long)saved;
}

static void take_string_option(bm_train_opts *o, int k, int saved, int *field, const char *const *names,
                               const char *ck) {
  if (o->given[k] && *field != saved)
    bm_usage_die("--%s %s differs from the checkpoint's %s (%s): a resumed run keeps its options",
                 bm_kept_names[k], names[*field], names[saved], ck);
  *field = saved;
}

/* a yes/no option: the command line may only repeat what the run did */
static void take_flag(int *field, const json_t *opts, const char *key, const char *flag, const char *ck) {
  int saved = json_is_true(json_object_get(opts, key));
  if (*field && !saved) bm_usage_die("%s: the run of %s did not use it; a resumed run keeps its options", flag, ck);
  *field = saved;
}

static void resume_multimodal(bm_train_opts *o, const json_t *opts, const char *p) {
  take_option(o, O_FLAYERS, bm_cfg_num(opts, "fusion_layers", p), NULL, &o->fusion_layers, p);
  take_option(o, O_FWIDTH, bm_cfg_num(opts, "fusion_width", p), NULL, &o->fusion_width, p);
  take_option(o, O_FHEADS, bm_cfg_num(opts, "fusion_heads", p), NULL, &o->fusion_heads, p);
  take_option(o, O_NCTX, bm_cfg_num(opts, "n_ctx", p), NULL, &o->n_ctx, p);
  take_option(o, O_UNLOCK_TEXT, bm_cfg_num(opts, "unlock_text_last", p), NULL, &o->unlock_text, p);
  take_option(o, O_PDROP, bm_cfg_num(opts, "patch_dropout", p), &o->patch_dropout, NULL, p);
  int tx = bm_name_index(json_string_value(json_object_get(opts, "text")), bm_text_names, BM_NTEXT);
  if (tx < 0) bm_die("%s: config option \"text\" is not key, prompt or both", p);
  take_string_option(o, O_TEXT, tx, &o->text, bm_text_names, p);
  take_flag(&o->freeze_text, opts, "freeze_text", "--freeze-text", p);
  take_flag(&o->lock_image, opts, "lock_image", "--lock-image", p);
  take_flag(&o->lock_text, opts, "lock_text", "--lock-text", p);
}

void bm_train_resume_options(bm_train_opts *o, const json_t *config, bm_feat ckfeat) {
  const char *p = o->resume;
  json_t *opts = json_object_get(config, "options");
  if (!json_is_object(opts)) bm_die("%s: config has no \"options\": not a checkpoint bm-train can resume", p);
  static const char *const feat_names[] = {"img", "txt", "both"};
  int f = (int)o->feat;
  take_string_option(o, O_FEAT, (int)ckfeat, &f, feat_names, p);
  o->feat = (bm_feat)f;
  take_option(o, O_EPOCHS, bm_cfg_num(opts, "epochs", p), NULL, &o->epochs, p);
  take_option(o, O_BATCH, bm_cfg_num(opts, "batch", p), NULL, &o->batch, p);
  take_option(o, O_LR, bm_cfg_num(opts, "lr", p), &o->lr, NULL, p);
  take_option(o, O_WD, bm_cfg_num(opts, "weight_decay", p), &o->wd, NULL, p);
  take_option(o, O_WARMUP, bm_cfg_num(opts, "warmup", p), NULL, &o->warmup, p);
  take_option(o, O_CLIP, bm_cfg_num(opts, "clip", p), &o->clip, NULL, p);
  json_t *sv = json_object_get(opts, "seed"); /* an integer: seeds above 2^53 do not fit a double */
  if (!json_is_integer(sv) || json_integer_value(sv) < 0) bm_die("%s: config option \"seed\" is not a seed", p);
  if (o->given[O_SEED] && o->seed != (long)json_integer_value(sv))
    bm_usage_die("--seed %ld differs from the checkpoint's %lld (%s): a resumed run keeps its options", o->seed,
                 (long long)json_integer_value(sv), p);
  o->seed = (long)json_integer_value(sv);
  take_option(o, O_FRACTION, bm_cfg_num(opts, "fraction", p), &o->fraction, NULL, p);
  take_option(o, O_PATIENCE, bm_cfg_num(opts, "patience", p), NULL, &o->patience, p);
  /* checkpoints from before --accum and --dropout trained without them */
  take_option(o, O_ACCUM, json_object_get(opts, "accum") ? bm_cfg_num(opts, "accum", p) : 1, NULL, &o->accum, p);
  take_option(o, O_DROPOUT, json_object_get(opts, "dropout") ? bm_cfg_num(opts, "dropout", p) : 0, &o->dropout,
              NULL, p);
  static const char *const pw_names[] = {"none", "inverse-freq"};
  int pw = bm_name_index(json_string_value(json_object_get(opts, "pos_weight")), pw_names, 2);
  int sel = bm_name_index(json_string_value(json_object_get(opts, "select")), bm_sel_names, BM_NSEL);
  if (pw < 0 || sel < 0) bm_die("%s: config options pos_weight/select are not valid", p);
  take_string_option(o, O_POSW, pw, &o->pos_weight, pw_names, p);
  take_string_option(o, O_SELECT, sel, &o->select, bm_sel_names, p);
  if (o->mode != BM_MODE_LINEAR) {
    take_option(o, O_LRENC, bm_cfg_num(opts, "lr_encoder", p), &o->lr_enc, NULL, p);
    take_option(o, O_LRHEAD, bm_cfg_num(opts, "lr_head", p), &o->lr_head, NULL, p);
    take_option(o, O_UNLOCK, bm_cfg_num(opts, "unlock_last", p), NULL, &o->unlock, p);
    int fz = json_is_true(json_object_get(opts, "freeze_tower"));
    if (o->freeze && !fz) bm_usage_die("--freeze-tower: the run of %s trained its tower; a resumed run keeps its options", p);
    o->freeze = fz;
    /* the towers go on from the checkpoint's weights; the model's name is kept for the record */
    const char *mname = json_string_value(json_object_get(opts, "model"));
    o->model = o->model_from_ckpt = bm_xstrdup(mname ? mname : p);
  }
  if (BM_MODE_MULTIMODAL(o->mode)) resume_multimodal(o, opts, p);
  /* the best epoch and early stopping go on with the same validation */
  const char *val = json_string_value(json_object_get(opts, "val"));
  if (val && !o->val) o->val = o->val_from_ckpt = bm_xstrdup(val);
  if (!val && o->val) bm_usage_die("--val: the run of %s had no validation set; it cannot get one now", p);
}
