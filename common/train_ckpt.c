/* train_ckpt.c - bm-train's config, moments and counters in checkpoints. */
#include "train_ckpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scorereport.h"
#include "util.h"

json_t *bm_val_json(const bm_val_result *v) {
  json_t *j = json_object();
  for (int k = 0; k < BM_NSEL; k++) json_object_set_new(j, bm_sel_names[k], bm_json_num(v->v[k]));
  if (v->has_recall) {
    json_object_set_new(j, "recall@1_i2t", bm_json_num(v->recall[0]));
    json_object_set_new(j, "recall@1_t2i", bm_json_num(v->recall[1]));
  }
  return j;
}

void bm_train_config(json_t *cfg, const bm_train_opts *o, const bm_trainset *ds, int D, json_t *feature_dims,
                     const bm_adamw *opt, const bm_train_state *st) {
  json_object_set_new(cfg, "producer", json_string("bm-train"));
  json_object_set_new(cfg, "mode", json_string(bm_mode_names[o->mode]));
  json_object_set_new(cfg, "features", json_string(bm_feat_name(o->feat)));
  json_object_set_new(cfg, "feature_dims", feature_dims);
  json_object_set_new(cfg, "task", json_string(ds->pairs ? "pairs" : ds->multilabel ? "multilabel" : "multiclass"));
  json_t *cls = json_array();
  for (int k = 0; k < ds->C; k++) json_array_append_new(cls, json_string(ds->classes[k]));
  json_object_set_new(cfg, "classes", cls);
  json_object_set_new(cfg, "D", json_integer(D));
  json_object_set_new(cfg, "C", json_integer(ds->C));
  json_object_set_new(cfg, "epoch", json_integer(st->epoch));
  json_object_set_new(cfg, "step", json_integer(st->step));
  json_object_set_new(cfg, "seed", json_integer(o->seed));
  json_object_set_new(cfg, "options", bm_train_options_json(o));
  json_object_set_new(cfg, "optimizer", json_pack("{sss[ff]sfss}", "name", "adamw", "betas", opt->beta1, opt->beta2,
                                                  "eps", opt->eps, "state", "optim.m.NAME, optim.v.NAME"));
  json_t *np = json_array();
  for (int k = 0; k < ds->C; k++) json_array_append_new(np, json_integer(st->npos[k]));
  json_object_set_new(cfg, "train", json_pack("{sssIsIso}", "file", ds->name, "records", (json_int_t)st->n_train,
                                              "used", (json_int_t)st->n_used, "positives", np));
  json_object_set_new(cfg, "best", json_pack("{sIssso}", "epoch", (json_int_t)st->best_epoch, "metric",
                                              bm_sel_names[o->select], "value", bm_json_num(st->best)));
  json_object_set_new(cfg, "bad_epochs", json_integer(st->bad_epochs));
  json_object_set_new(cfg, "finished", json_boolean(st->finished));
  if (st->has_val) json_object_set_new(cfg, "val", bm_val_json(&st->last_val));
}

char *bm_train_config_text(json_t *cfg) {
  char *text = json_dumps(cfg, JSON_COMPACT | JSON_REAL_PRECISION(17));
  if (!text) bm_die("out of memory writing a checkpoint's config");
  return text;
}

void bm_train_resume_state(const char *p, const bm_weights *ws, const json_t *c, long epochs, bm_adamw *opt,
                           bm_train_state *st) {
  for (int i = 0; i < 2 * opt->nparams; i++) { /* optim.m.NAME, optim.v.NAME of every parameter that trains */
    bm_adamw_param *q = &opt->params[i / 2];
    char name[160];
    snprintf(name, sizeof name, "optim.%c.%s", i % 2 ? 'v' : 'm', q->name);
    const bm_weight *w = bm_weights_get(ws, name);
    if (!w) bm_die("%s: cannot resume: tensor %s is missing", p, name);
    if (w->dtype != BM_W_F32 || (size_t)w->numel != q->n)
      bm_die("%s: cannot resume: tensor %s is %s with %lld values, expected f32 with %zu", p, name,
             bm_wdtype_name(w->dtype), (long long)w->numel, q->n);
    memcpy(i % 2 ? q->v : q->m, w->data, q->n * sizeof(float));
  }
  json_t *best = json_object_get(c, "best");
  st->epoch = (long)bm_cfg_num(c, "epoch", p);
  st->step = (long)bm_cfg_num(c, "step", p);
  st->bad_epochs = (long)bm_cfg_num(c, "bad_epochs", p);
  st->finished = json_is_true(json_object_get(c, "finished"));
  st->best_epoch = (long)bm_cfg_num(best, "epoch", p);
  json_t *bv = json_object_get(best, "value");
  st->best = json_is_number(bv) ? json_number_value(bv) : NAN;
  if (st->epoch < 1 || st->epoch > epochs || st->step < 0)
    bm_die("%s: config epoch %ld / step %ld do not fit a run of %ld epochs", p, st->epoch, st->step, epochs);
  opt->step = st->step;
}

static int fail(char *err, size_t n, const char *fmt, const char *path, const char *what) {
  snprintf(err, n, fmt, path, what);
  return -1;
}

int bm_train_ckpt_load(const char *path, bm_linhead *h, char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  if (bm_weights_load(path, &h->ws, err, errlen)) return -1;
  json_t *cfg = h->ws.config_json ? json_loads(h->ws.config_json, 0, NULL) : NULL;
  const char *mode = json_string_value(json_object_get(cfg, "mode"));
  int m = bm_name_index(mode, bm_mode_names, BM_NMODES);
  if (m < 0 || !BM_MODE_MULTIMODAL(m)) { /* linear, finetune, or not ours: as bm-fuse reads them */
    json_decref(cfg);
    bm_weights_free(&h->ws);
    return bm_linhead_load(path, h, err, errlen);
  }
  h->config = cfg;
  const char *feat = json_string_value(json_object_get(cfg, "features"));
  if (!feat || bm_feat_parse(feat, &h->feat) || h->feat != BM_FEAT_IMG)
    return fail(err, errlen, "%s: config \"features\" is not img (mode %s)", path, mode);
  const char *task = json_string_value(json_object_get(cfg, "task"));
  int pairs = task && !strcmp(task, "pairs");
  if (!task || (!pairs && strcmp(task, "multiclass") && strcmp(task, "multilabel")))
    return fail(err, errlen, "%s: config \"task\" is not multiclass, multilabel or pairs (mode %s)", path, mode);
  h->multilabel = !strcmp(task, "multilabel");
  json_t *cls = json_object_get(cfg, "classes");
  if (!json_is_array(cls) || json_array_size(cls) > (1 << 20) || (!pairs && json_array_size(cls) < 1))
    return fail(err, errlen, "%s: config \"classes\" is not %s", path, pairs ? "an array" : "a non-empty array of names");
  h->C = (int)json_array_size(cls);
  h->classes = bm_xcalloc((size_t)h->C + 1, sizeof *h->classes);
  for (int c = 0; c < h->C; c++) {
    const char *s = json_string_value(json_array_get(cls, (size_t)c));
    if (!s) return fail(err, errlen, "%s: config \"classes\" holds %s", path, "a value that is not a string");
    h->classes[c] = bm_xstrdup(s);
  }
  const bm_weight *w = bm_weights_get(&h->ws, "head.weight"), *b = bm_weights_get(&h->ws, "head.bias");
  if (w && b && w->dtype == BM_W_F32 && b->dtype == BM_W_F32 && w->ndim == 2 && w->shape[0] == h->C &&
      b->numel == h->C) {
    h->W = w->data, h->b = b->data;
    h->D = (int)w->shape[1];
  }
  return 0;
}

void bm_train_init_head(const char *path, int C, int D, float *W, float *b) {
  bm_weights iw;
  char err[1024];
  if (bm_weights_load(path, &iw, err, sizeof err)) bm_die("--init: %s", err);
  int64_t shape[2] = {C, D};
  const bm_weight *w = bm_weights_expect(&iw, "head.weight", 2, shape, err, sizeof err);
  const bm_weight *bw = w ? bm_weights_expect(&iw, "head.bias", 1, shape, err, sizeof err) : NULL;
  if (!w || !bw) bm_die("--init: %s", err);
  float *fw = bm_weight_to_f32(w), *fb = bm_weight_to_f32(bw);
  if (!fw || !fb) bm_die("--init %s: head.weight and head.bias must be floats", path);
  memcpy(W, fw, (size_t)C * (size_t)D * sizeof(float));
  memcpy(b, fb, (size_t)C * sizeof(float));
  free(fw), free(fb);
  bm_weights_free(&iw);
}

char *bm_train_last_path(const char *out) {
  size_t n = strlen(out);
  const char *ext = ".safetensors";
  size_t e = strlen(ext);
  size_t stem = n > e && !strcmp(out + n - e, ext) ? n - e : n;
  char *p = bm_xmalloc(stem + 32);
  memcpy(p, out, stem);
  strcpy(p + stem, ".last.safetensors");
  return p;
}

json_t *bm_train_model_config(const bm_model *m, int vision_heads, int text_heads) {
  json_t *cfg = NULL;
  if (m->ws.config_json) cfg = json_loads(m->ws.config_json, 0, NULL);
  if (!json_is_object(cfg)) json_decref(cfg), cfg = json_object();
  json_t *bc = json_object_get(cfg, "bm_cfg");
  if (!json_is_object(bc)) json_object_set_new(cfg, "bm_cfg", bc = json_object());
  json_object_set_new(bc, "vision_heads", json_integer(vision_heads));
  if (text_heads > 0) json_object_set_new(bc, "text_heads", json_integer(text_heads));
  if (!json_is_object(json_object_get(cfg, "preprocess_cfg")))
    json_object_set_new(cfg, "preprocess_cfg", json_pack("{s[fff]s[fff]}", "mean", (double)m->mean[0], (double)m->mean[1],
                                                         (double)m->mean[2], "std", (double)m->std[0], (double)m->std[1],
                                                         (double)m->std[2]));
  return cfg;
}

int bm_train_moment_weights(const bm_adamw *opt, bm_weight *w, char **names) {
  int n = 2 * opt->nparams;
  for (int i = 0; i < n; i++) {
    const bm_adamw_param *q = &opt->params[i / 2];
    size_t len = strlen(q->name) + 16;
    names[i] = bm_xmalloc(len);
    snprintf(names[i], len, "optim.%c.%s", i % 2 ? 'v' : 'm', q->name);
    w[i] = (bm_weight){names[i], BM_W_F32, 1, {(int64_t)q->n}, (int64_t)q->n, i % 2 ? q->v : q->m, q->n * sizeof(float)};
  }
  return n;
}
