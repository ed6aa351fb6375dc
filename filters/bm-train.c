/* bm-train - training on record files.
 *
 *   bm-train --mode linear -o OUT.safetensors [OPTION]... TRAIN.bmr
 *
 * Mode linear: a linear head (W [C,D], b [C]) on frozen features of the
 * records ("img_emb", "txt_emb" or both), softmax cross-entropy or weighted
 * BCE, AdamW with cosine warm-up. The data set is read through an offset
 * index (recfile.h), one batch at a time; only the targets (C bytes a
 * record) stay in memory. Checkpoints at each epoch end: OUT (the best
 * epoch) and OUT.last.safetensors (the last, for --resume). man bm-train. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adamw.h"
#include "augment.h"
#include "backward.h"
#include "finetune.h"
#include "kernels.h"
#include "linhead.h"
#include "loss.h"
#include "model.h"
#include "recfile.h"
#include "record.h"
#include "scorereport.h"
#include "scoreset.h"
#include "util.h"
#include "weights.h"

enum { MODE_LINEAR, MODE_FINETUNE };
static const char *mode_names[] = {"linear", "finetune"};

static const char usage[] =
    "Usage: bm-train --mode linear -o OUT.safetensors [OPTION]... TRAIN.bmr\n"
    "       bm-train --mode finetune -m MODEL -o OUT.safetensors [OPTION]... TRAIN.bmr\n"
    "Train a linear head on the features of the records of TRAIN.bmr (a file, not a\n"
    "pipe), or (finetune) the image tower of MODEL and a head end to end on their\n"
    "\"image\" u8 [3,S,S] (or larger: random-resized-crop + flip). Task and classes\n"
    "come from its header. Writes OUT (the best epoch) and OUT.last.safetensors\n"
    "(the last epoch) at each epoch end.\n"
    "\n"
    "  -M, --mode linear|finetune  what to train (fusion, contrastive: later)\n"
    "  -o, --output FILE        the checkpoint (.safetensors)\n"
    "  -m, --model DIR|FILE     finetune: the model (hub folder, .bin, .safetensors)\n"
    "      --lr-encoder X       finetune: the tower's learning rate (default 1e-5)\n"
    "      --lr-head X          finetune: the head's learning rate (default 1e-3)\n"
    "      --unlock-last N      finetune: train only the last N blocks, the final norm\n"
    "                           and the projection (default: the whole tower)\n"
    "      --freeze-tower       finetune: train the head only, on the fixed tower\n"
    "      --features img|txt|both  img_emb (default), txt_emb, or both concatenated\n"
    "  -e, --epochs N           epochs (default 10)\n"
    "  -b, --batch N            batch size (default 64; finetune 16)\n"
    "      --lr X               linear: peak learning rate (default 1e-3)\n"
    "      --weight-decay X     AdamW decoupled weight decay of matrices, not of\n"
    "                           biases, norms, embeddings (default 0)\n"
    "      --warmup N           linear warm-up steps, then cosine decay (default 0)\n"
    "      --clip X             clip the gradients' global norm at X (default 0: off)\n"
    "      --accum N            step the optimizer every N batches (the last group of an\n"
    "                           epoch may be shorter) on the gradient of their mean\n"
    "                           loss: an effective batch of N x --batch (default 1)\n"
    "      --dropout P          drop each feature fed to the head with probability P\n"
    "                           while training, scaling the kept by 1/(1-P) (default 0)\n"
    "      --seed N             subset and shuffling seed (default 0)\n"
    "      --fraction F         train on a stratified seeded subset (0 < F <= 1)\n"
    "      --pos-weight none|inverse-freq  multilabel BCE weights (default inverse-freq)\n"
    "      --val FILE           evaluate each epoch; OUT keeps the best epoch\n"
    "      --select loss|accuracy|balanced_accuracy|auc_macro  (default: loss)\n"
    "      --patience N         stop after N epochs without improvement (needs --val)\n"
    "      --init FILE          start from head.weight/head.bias of FILE, not zeros\n"
    "      --resume CKPT        continue from OUT.last.safetensors of an earlier run\n"
    "      --stop-after N       end after epoch N of the schedule (resume later)\n"
    "  -j, --threads N          threads (default: OpenMP's)\n"
    "      --log FILE           JSON lines: one per step and one per epoch\n"
    "  -q, --quiet              no progress line or summary\n"
    "  -h, --help               this help\n"
    "\n"
    "Exit status: 0 ok, 1 bad input or a non-finite loss, 2 usage.\n";

enum { SEL_LOSS, SEL_ACC, SEL_BAL, SEL_AUC };
static const char *sel_names[] = {"loss", "accuracy", "balanced_accuracy", "auc_macro"};

/* Options that a resumed run takes from its checkpoint; given[] says which
 * the command line set, to refuse a resume that would change them. */
enum { O_FEAT, O_EPOCHS, O_BATCH, O_LR, O_WD, O_WARMUP, O_CLIP, O_SEED, O_FRACTION, O_POSW,
       O_SELECT, O_PATIENCE, O_LRENC, O_LRHEAD, O_UNLOCK, O_ACCUM, O_DROPOUT, O_NKEPT };
static const char *kept_names[] = {"features", "epochs", "batch", "lr", "weight_decay", "warmup",
                                   "clip", "seed", "fraction", "pos_weight", "select", "patience",
                                   "lr-encoder", "lr-head", "unlock-last", "accum", "dropout"};

typedef struct {
  const char *out, *train, *val, *resume, *init, *log, *model;
  char *val_from_ckpt; /* owned: the --val path a resumed run goes on with */
  char *model_from_ckpt; /* owned: finetune's -m as the resumed run had it */
  bm_feat feat;
  long epochs, batch, warmup, seed, patience, stop_after, threads, unlock, accum;
  double lr, wd, clip, fraction, lr_enc, lr_head, dropout;
  int pos_weight, select, quiet, mode, freeze;
  int given[O_NKEPT];
} options;

#define BETA1 0.9
#define BETA2 0.999
#define EPS 1e-8

/* One record file: its index, targets [n,C] and feature widths. */
typedef struct {
  bm_recfile *f;
  const char *name;
  long n;
  int C, multilabel;
  char **classes;
  uint8_t *y;
  int dims[2], D;
  const bm_model *model; /* finetune: records hold "image" u8 [3,S,S], D = 3*S*S */
  int augment;           /* finetune training set: larger images are cropped (augment.h) */
  uint8_t *crop;         /* [3,S,S] the crop of one image */
} dataset;

static void header_classes(dataset *ds) {
  const msgpack_object *h = bm_recfile_header(ds->f);
  if (!h) bm_die("%s: no header: task and classes come from it (bm-decode writes one)", ds->name);
  const msgpack_object *t = bm_map_get(h, "task");
  if (t && bm_obj_is_str(t, "multilabel")) ds->multilabel = 1;
  else if (!t || !bm_obj_is_str(t, "multiclass"))
    bm_die("%s: header \"task\" is not multiclass or multilabel", ds->name);
  ds->C = bm_header_classes(h, &ds->classes);
  if (ds->C < 1) bm_die("%s: header has no \"classes\" (a non-empty array of names)", ds->name);
  if (!ds->multilabel && ds->C < 2) bm_die("%s: multiclass needs at least 2 classes", ds->name);
  for (int k = 0; k < ds->C; k++)
    for (int j = 0; j < k; j++)
      if (!strcmp(ds->classes[j], ds->classes[k]))
        bm_die("%s: header \"classes\" names \"%s\" twice", ds->name, ds->classes[k]);
}

/* The target of record i, checked, as 0/1 bytes. */
static void read_target(const dataset *ds, long i, const msgpack_object *rec, float *tmp, uint8_t *y) {
  bm_tensor t;
  char err[256];
  int got = bm_rec_tensor(rec, "target", &t, err, sizeof err);
  if (got == 0) bm_die("%s: record %ld: no \"target\"", ds->name, i + 1);
  if (got < 0) bm_die("%s: record %ld: \"target\": %s", ds->name, i + 1, err);
  if (t.numel != ds->C)
    bm_die("%s: record %ld: \"target\" has %lld values, the header names %d classes", ds->name, i + 1,
           (long long)t.numel, ds->C);
  bm_tensor_to_f32(&t, tmp);
  int ones = 0;
  for (int k = 0; k < ds->C; k++) {
    if (tmp[k] != 0 && tmp[k] != 1)
      bm_die("%s: record %ld: \"target\"[%d] is %g: targets must be 0 or 1", ds->name, i + 1, k, (double)tmp[k]);
    y[k] = tmp[k] == 1;
    ones += y[k];
  }
  if (!ds->multilabel && ones != 1)
    bm_die("%s: record %ld: \"target\" has %d ones: a multiclass target is one-hot", ds->name, i + 1, ones);
}

/* The pixels of record i's "image", which must be u8 [3,S,S] at the
 * model's image size, or for a training set u8 [3,H,W] with H, W >= S
 * (random-resized-crop; *H, *W say which). */
static const uint8_t *record_image(const dataset *ds, long i, const msgpack_object *rec, int *H, int *W) {
  bm_tensor t;
  char err[256];
  int S = ds->model->vit.image_size;
  int got = bm_rec_tensor(rec, "image", &t, err, sizeof err);
  if (got == 0) bm_die("%s: record %ld: no \"image\" (--mode finetune trains on images, as bm-decode writes them)", ds->name, i + 1);
  if (got < 0) bm_die("%s: record %ld: \"image\": %s", ds->name, i + 1, err);
  int larger = ds->augment && t.dtype == BM_U8 && t.ndim == 3 && t.shape[0] == 3 && t.shape[1] >= S &&
               t.shape[2] >= S && t.shape[1] <= 1 << 15 && t.shape[2] <= 1 << 15;
  if (!larger && (t.dtype != BM_U8 || t.ndim != 3 || t.shape[0] != 3 || t.shape[1] != S || t.shape[2] != S)) {
    char shape[128] = "";
    for (int k = 0; k < t.ndim; k++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", k ? "," : "", (long long)t.shape[k]);
    bm_die("%s: record %ld: \"image\" is %s [%s]; the model takes u8 [3,%d,%d]%s: decode with bm-decode --size %d",
           ds->name, i + 1, bm_dtype_name(t.dtype), shape, S, S,
           ds->augment ? " (or larger, cropped at random)" : " (validation images are not cropped)", S);
  }
  *H = (int)t.shape[1], *W = (int)t.shape[2];
  return t.data;
}

/* Index the file and check every record once (target, features or image)
 * before any training, so that bad input stops us before anything is
 * written. model: finetune (records hold images), NULL: linear. */
static void load_set(const char *path, bm_feat feat, const int *dims, const bm_model *model, int augment,
                     dataset *ds) {
  memset(ds, 0, sizeof *ds);
  ds->model = model;
  ds->augment = augment;
  ds->f = bm_recfile_open(path);
  ds->name = bm_recfile_name(ds->f);
  ds->n = bm_recfile_count(ds->f);
  header_classes(ds);
  if (ds->n == 0) bm_die("%s: no records to train or evaluate on", ds->name);
  if (dims) memcpy(ds->dims, dims, sizeof ds->dims);
  ds->y = bm_xmalloc(bm_mul_size((size_t)ds->n, (size_t)ds->C));
  if (model) ds->crop = bm_xmalloc(bm_mul_size((size_t)3 * model->vit.image_size, (size_t)model->vit.image_size));
  float *tmp = bm_xmalloc(sizeof(float) * (size_t)ds->C);
  size_t cap = 1 << 20; /* widths up to 2^20 values */
  float *x = bm_xmalloc(cap * sizeof(float));
  bm_recslot slot;
  bm_recslot_init(&slot);
  for (long i = 0; i < ds->n; i++) {
    const msgpack_object *rec = bm_recfile_read(ds->f, i, &slot);
    read_target(ds, i, rec, tmp, ds->y + (size_t)i * (size_t)ds->C);
    if (model) {
      int H, W;
      record_image(ds, i, rec, &H, &W);
      ds->D = 3 * model->vit.image_size * model->vit.image_size;
      continue;
    }
    const char *missing = NULL;
    char err[256];
    int D = bm_linhead_features(rec, feat, ds->dims, x, cap, &missing, err, sizeof err);
    if (D == 0)
      bm_die("%s: record %ld: no \"%s\" (--features %s needs it)", ds->name, i + 1, missing, bm_feat_name(feat));
    if (D < 0) bm_die("%s: record %ld: %s", ds->name, i + 1, err);
    ds->D = D;
  }
  bm_recslot_free(&slot);
  free(x);
  free(tmp);
}

static void free_set(dataset *ds) {
  bm_recfile_close(ds->f);
  bm_free_strings(ds->classes, ds->C);
  free(ds->y);
  free(ds->crop);
}

/* The seed of one purpose (subset, epoch e), so that each draws its own
 * stream from --seed. */
static uint64_t sub_seed(uint64_t seed, uint64_t tag) { return seed ^ (0x9E3779B97F4A7C15ULL * (tag + 1)); }
#define SUBSET_TAG 0xFFFFFFFFULL
#define HEAD_TAG 0xFFFFFFFEULL
#define AUG_TAG 0xA06E000000000000ULL
#define DROP_TAG 0xD509000000000000ULL
/* open_clip's training RandomResizedCrop scale (0.9, 1.0) */
#define CROP_SCALE_MIN 0.9

static int cmp_long(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

/* The stratified subset (man bm-train, FEW-SHOT SUBSETS): indices into the
 * file, ascending. */
static long *select_subset(const dataset *ds, double F, uint64_t seed, long *m) {
  long n = ds->n;
  int C = ds->C;
  long *idx = bm_xmalloc(sizeof(long) * (size_t)n);
  if (F >= 1) {
    for (long i = 0; i < n; i++) idx[i] = i;
    *m = n;
    return idx;
  }
  long *npos = bm_xcalloc((size_t)C, sizeof(long));
  for (long i = 0; i < n; i++)
    for (int k = 0; k < C; k++) npos[k] += ds->y[(size_t)i * (size_t)C + (size_t)k];
  /* each record's stratum: its class (multiclass); its rarest positive
   * class, or C for no positive (multilabel) */
  int *stratum = bm_xmalloc(sizeof(int) * (size_t)n);
  long *size = bm_xcalloc((size_t)C + 1, sizeof(long));
  for (long i = 0; i < n; i++) {
    int s = C;
    for (int k = 0; k < C; k++)
      if (ds->y[(size_t)i * (size_t)C + (size_t)k] && (s == C || npos[k] < npos[s])) s = k;
    stratum[i] = s;
    size[s]++;
  }
  long *order = bm_xmalloc(sizeof(long) * (size_t)n);
  bm_permutation(order, n, sub_seed(seed, SUBSET_TAG));
  long *taken = bm_xcalloc((size_t)C + 1, sizeof(long));
  uint8_t *in = bm_xcalloc((size_t)n, 1);
  long cnt = 0;
  for (long j = 0; j < n; j++) {
    long i = order[j];
    int s = stratum[i];
    long want = (long)floor(F * (double)size[s] + 0.5);
    if (want < 1) want = 1;
    if (taken[s] < want) taken[s]++, in[i] = 1, cnt++;
  }
  if (ds->multilabel) /* a class with positives keeps at least one */
    for (int k = 0; k < C; k++) {
      long have = 0, first = -1;
      for (long j = 0; j < n; j++) {
        long i = order[j];
        if (!ds->y[(size_t)i * (size_t)C + (size_t)k]) continue;
        if (first < 0) first = i;
        have += in[i];
      }
      if (first >= 0 && !have) in[first] = 1, cnt++;
    }
  *m = 0;
  for (long i = 0; i < n; i++)
    if (in[i]) idx[(*m)++] = i;
  qsort(idx, (size_t)*m, sizeof *idx, cmp_long);
  free(in);
  free(taken);
  free(order);
  free(size);
  free(stratum);
  free(npos);
  return idx;
}

/* A batch: features X [B,D] (or images) and targets Y [B,C] of records
 * idx[0..B-1]; aug_seed draws the crops of larger training images. */
static void read_batch(const dataset *ds, bm_feat feat, const long *idx, int B, bm_recslot *slot,
                       uint64_t aug_seed, float *X, float *Y) {
  for (int j = 0; j < B; j++) {
    const msgpack_object *rec = bm_recfile_read(ds->f, idx[j], slot);
    const uint8_t *y = ds->y + (size_t)idx[j] * (size_t)ds->C;
    for (int k = 0; k < ds->C; k++) Y[(size_t)j * (size_t)ds->C + (size_t)k] = y[k];
    if (ds->model) { /* normalized image [3,S,S] */
      int S = ds->model->vit.image_size, H, W;
      const uint8_t *px = record_image(ds, idx[j], rec, &H, &W);
      if (H != S || W != S) { /* a crop of its own for each record and epoch */
        uint64_t k = (uint64_t)idx[j];
        if (bm_random_resized_crop(px, H, W, S, CROP_SCALE_MIN, bm_hash64(&k, sizeof k, aug_seed), ds->crop))
          bm_die("%s: record %ld: out of memory cropping the image", ds->name, idx[j] + 1);
        px = ds->crop;
      }
      bm_model_normalize_image(ds->model, px, S, X + (size_t)j * (size_t)ds->D);
      continue;
    }
    const char *missing = NULL;
    char err[256];
    int dims[2] = {ds->dims[0], ds->dims[1]};
    int D = bm_linhead_features(rec, feat, dims, X + (size_t)j * (size_t)ds->D, (size_t)ds->D, &missing,
                               err, sizeof err);
    if (D != ds->D) /* the file was checked when indexed: it changed under us */
      bm_die("%s: record %ld: %s", ds->name, idx[j] + 1, D == 0 ? "lost its features since it was indexed" : err);
  }
}

typedef struct {
  int C, D, multilabel;
  float *W, *b, *gW, *gb, *pw; /* pw: [C] or NULL */
  bm_adamw opt;
  bm_ft *ft; /* finetune: the tower and the head (W, b point into it); NULL: linear */
} head;

/* logits[B,C] of a batch X (features, or normalized images for finetune) */
static void head_logits(const head *h, const float *X, int B, float *logits) {
  if (!h->ft) {
    bm_linhead_forward(X, h->W, h->b, B, h->D, h->C, logits);
    return;
  }
  bm_ft_logits(h->ft, X, B);
  memcpy(logits, h->ft->logits, sizeof(float) * (size_t)B * (size_t)h->C);
}

static double batch_loss(const head *h, const float *logits, const float *Y, int B, float *dlogits) {
  return h->multilabel ? bm_bce_logits(logits, Y, h->pw, B, h->C, dlogits)
                       : bm_softmax_xent(logits, Y, B, h->C, dlogits);
}

/* Loss and the bm-score figures on the validation set (metrics.h through
 * bm_report_classify: the same numbers bm-score prints). */
typedef struct {
  double v[4];
} val_result;

static val_result evaluate(const head *h, const dataset *vs, bm_feat feat, int batch) {
  size_t n = (size_t)vs->n, C = (size_t)h->C;
  float *X = bm_xmalloc(bm_mul_size((size_t)batch * (size_t)h->D, sizeof(float)));
  float *Y = bm_xmalloc(bm_mul_size((size_t)batch, C * sizeof(float)));
  float *L = bm_xmalloc(bm_mul_size((size_t)batch, C * sizeof(float)));
  float *P = bm_xmalloc(C * sizeof(float));
  long *idx = bm_xmalloc(sizeof(long) * (size_t)batch);
  bm_scoreset s = {.task = h->multilabel ? BM_TASK_MULTILABEL : BM_TASK_MULTICLASS, .n = n, .c = h->C,
                   .classes = vs->classes, .name = (char *)vs->name};
  s.p = bm_xmalloc(bm_mul_size(n * C, sizeof(double)));
  s.y = bm_xmalloc(bm_mul_size(n, C));
  s.top = bm_xmalloc(bm_mul_size(n, sizeof(int32_t)));
  bm_recslot slot;
  bm_recslot_init(&slot);
  double total = 0;
  for (size_t at = 0; at < n; at += (size_t)batch) {
    int B = (int)(n - at < (size_t)batch ? n - at : (size_t)batch);
    for (int j = 0; j < B; j++) idx[j] = (long)at + j;
    read_batch(vs, feat, idx, B, &slot, 0, X, Y);
    head_logits(h, X, B, L);
    total += batch_loss(h, L, Y, B, NULL) * B;
    for (int j = 0; j < B; j++) {
      const float *l = L + (size_t)j * C;
      size_t i = at + (size_t)j;
      bm_linhead_prob(l, h->C, h->multilabel, P);
      int32_t top = 0;
      for (size_t k = 0; k < C; k++) {
        s.p[k * n + i] = P[k];
        s.y[k * n + i] = vs->y[i * C + k];
        if (l[k] > l[top]) top = (int32_t)k;
      }
      s.top[i] = top;
    }
  }
  bm_report_opts ro = {.default_thr = 0.5, .thr_metric = "fixed"};
  json_t *notes = json_array();
  json_t *rep = bm_report_classify(&s, &ro, notes);
  val_result r = {{total / (double)n}};
  for (int k = 1; k < 4; k++) {
    json_t *v = json_object_get(rep, sel_names[k]);
    r.v[k] = json_is_number(v) ? json_number_value(v) : NAN;
  }
  json_decref(rep);
  json_decref(notes);
  bm_recslot_free(&slot);
  free(s.p), free(s.y), free(s.top), free(X), free(Y), free(L), free(P), free(idx);
  return r;
}

/* Is a better than b for this metric? NAN is worse than anything. */
static int better(int sel, double a, double b) {
  if (isnan(a)) return 0;
  if (isnan(b)) return 1;
  return sel == SEL_LOSS ? a < b : a > b;
}

/* What a checkpoint carries beyond the tensors. */
typedef struct {
  long epoch, step, best_epoch, bad_epochs, n_train, n_used;
  double best;
  const long *npos; /* [C] positives per class in the records trained on */
  int finished;
  val_result last_val;
  int has_val;
} train_state;

static json_t *options_json(const options *o) {
  json_t *j = json_pack("{sssIsIsfsfsIsfsIsfsssssIss?ss?}", "features", bm_feat_name(o->feat), "epochs",
                        (json_int_t)o->epochs, "batch", (json_int_t)o->batch, "lr", o->lr, "weight_decay", o->wd,
                        "warmup", (json_int_t)o->warmup, "clip", o->clip, "seed", (json_int_t)o->seed,
                        "fraction", o->fraction, "pos_weight", o->pos_weight ? "inverse-freq" : "none", "select",
                        sel_names[o->select], "patience", (json_int_t)o->patience, "init", o->init, "val", o->val);
  json_object_set_new(j, "accum", json_integer(o->accum));
  json_object_set_new(j, "dropout", json_real(o->dropout));
  if (o->mode == MODE_FINETUNE)
    json_object_update_new(j, json_pack("{sssfsfsIsb}", "model", o->model, "lr_encoder", o->lr_enc, "lr_head",
                                        o->lr_head, "unlock_last", (json_int_t)o->unlock, "freeze_tower", o->freeze));
  return j;
}

static json_t *val_json(const val_result *v) {
  json_t *j = json_object();
  for (int k = 0; k < 4; k++) json_object_set_new(j, sel_names[k], bm_json_num(v->v[k]));
  return j;
}

/* The checkpoint's config, into cfg (a new object, or the model's config
 * for finetune, so that the model loader finds its model_cfg there too). */
static void train_config(json_t *cfg, const options *o, const dataset *ds, const head *h, const train_state *st) {
  json_object_set_new(cfg, "producer", json_string("bm-train"));
  json_object_set_new(cfg, "mode", json_string(o->mode == MODE_FINETUNE ? "finetune" : "linear"));
  json_object_set_new(cfg, "features", json_string(bm_feat_name(o->feat)));
  json_t *fd = json_array();
  if (h->ft) json_array_append_new(fd, json_integer(h->ft->E)); /* the head reads img_emb [E] */
  for (int k = 0; k < 2 && !h->ft; k++)
    if (ds->dims[k]) json_array_append_new(fd, json_integer(ds->dims[k]));
  json_object_set_new(cfg, "feature_dims", fd);
  json_object_set_new(cfg, "task", json_string(h->multilabel ? "multilabel" : "multiclass"));
  json_t *cls = json_array();
  for (int k = 0; k < h->C; k++) json_array_append_new(cls, json_string(ds->classes[k]));
  json_object_set_new(cfg, "classes", cls);
  json_object_set_new(cfg, "D", json_integer(h->ft ? h->ft->E : h->D));
  json_object_set_new(cfg, "C", json_integer(h->C));
  json_object_set_new(cfg, "epoch", json_integer(st->epoch));
  json_object_set_new(cfg, "step", json_integer(st->step));
  json_object_set_new(cfg, "seed", json_integer(o->seed));
  json_object_set_new(cfg, "options", options_json(o));
  json_object_set_new(cfg, "optimizer", json_pack("{sss[ff]sfss}", "name", "adamw", "betas", BETA1, BETA2,
                                                  "eps", EPS, "state", "optim.m.NAME, optim.v.NAME"));
  json_t *np = json_array();
  for (int k = 0; k < h->C; k++) json_array_append_new(np, json_integer(st->npos[k]));
  json_object_set_new(cfg, "train", json_pack("{sssIsIso}", "file", ds->name, "records", (json_int_t)st->n_train,
                                              "used", (json_int_t)st->n_used, "positives", np));
  json_object_set_new(cfg, "best", json_pack("{sIssso}", "epoch", (json_int_t)st->best_epoch, "metric",
                                              sel_names[o->select], "value", bm_json_num(st->best)));
  json_object_set_new(cfg, "bad_epochs", json_integer(st->bad_epochs));
  json_object_set_new(cfg, "finished", json_boolean(st->finished));
  if (st->has_val) json_object_set_new(cfg, "val", val_json(&st->last_val));
}

static void save(const char *path, const options *o, const dataset *ds, const head *h, const train_state *st) {
  json_t *cfg = json_object();
  train_config(cfg, o, ds, h, st);
  char *text = json_dumps(cfg, JSON_COMPACT | JSON_REAL_PRECISION(17));
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
      {"loss.pos_weight", BM_W_F32, 1, {C}, C, h->pw, 0},
  };
  int nw = h->pw ? 7 : 6;
  for (int i = 0; i < nw; i++) w[i].nbytes = (size_t)w[i].numel * sizeof(float);
  const char *keys[1] = {BM_ST_CONFIG}, *vals[1] = {text};
  char err[512];
  if (bm_safetensors_write(path, w, nw, keys, vals, 1, err, sizeof err)) bm_die("%s", err);
  free(text);
}

/* Finetune: the whole model (every tensor of -m, the image tower's replaced
 * by the trained ones under their open_clip names, the text tower's copied
 * through), the head, and the model's config with the training's merged in
 * (so bm-embed-img -m and bm-fuse -m both read it). */
static void save_finetune(const char *path, const options *o, const dataset *ds, const head *h, const bm_adamw *opt,
                          const train_state *st) {
  const bm_model *m = ds->model;
  const bm_vit_train *vt = &h->ft->vt;
  json_t *cfg = NULL;
  if (m->ws.config_json) cfg = json_loads(m->ws.config_json, 0, NULL);
  if (!json_is_object(cfg)) json_decref(cfg), cfg = json_object();
  /* what the loader would otherwise guess: heads and the image normalization */
  json_t *bc = json_object_get(cfg, "bm_cfg");
  if (!json_is_object(bc)) json_object_set_new(cfg, "bm_cfg", bc = json_object());
  json_object_set_new(bc, "vision_heads", json_integer(vt->v.heads));
  if (!json_is_object(json_object_get(cfg, "preprocess_cfg")))
    json_object_set_new(cfg, "preprocess_cfg", json_pack("{s[fff]s[fff]}", "mean", (double)m->mean[0], (double)m->mean[1],
                                                         (double)m->mean[2], "std", (double)m->std[0], (double)m->std[1],
                                                         (double)m->std[2]));
  train_config(cfg, o, ds, h, st);
  char *text = json_dumps(cfg, JSON_COMPACT | JSON_REAL_PRECISION(17));
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
    for (int t = 0; t < vt->nt; t++)
      if (!strcmp(vt->t[t].name, src->name)) {
        w[nw].dtype = BM_W_F32;
        w[nw].data = vt->p + vt->t[t].off;
        w[nw].nbytes = vt->t[t].n * sizeof(float);
        break;
      }
    nw++;
  }
  int64_t C = h->C, E = h->ft->E;
  w[nw++] = (bm_weight){"head.weight", BM_W_F32, 2, {C, E}, C * E, h->W, (size_t)(C * E) * sizeof(float)};
  w[nw++] = (bm_weight){"head.bias", BM_W_F32, 1, {C}, C, h->b, (size_t)C * sizeof(float)};
  if (h->pw) w[nw++] = (bm_weight){"loss.pos_weight", BM_W_F32, 1, {C}, C, h->pw, (size_t)C * sizeof(float)};
  for (int i = 0; i < nmom; i++) { /* optim.m.NAME, optim.v.NAME flat [n] */
    const bm_adamw_param *q = &opt->params[i / 2];
    size_t len = strlen(q->name) + 16;
    mnames[i] = bm_xmalloc(len);
    snprintf(mnames[i], len, "optim.%c.%s", i % 2 ? 'v' : 'm', q->name);
    w[nw++] = (bm_weight){mnames[i], BM_W_F32, 1, {(int64_t)q->n}, (int64_t)q->n, i % 2 ? q->v : q->m,
                          q->n * sizeof(float)};
  }
  const char *keys[2] = {BM_ST_CONFIG, BM_ST_VOCAB}, *vals[2] = {text, m->ws.vocab};
  char err[512];
  if (bm_safetensors_write(path, w, nw, keys, vals, m->ws.vocab ? 2 : 1, err, sizeof err)) bm_die("%s", err);
  for (int i = 0; i < nmom; i++) free(mnames[i]);
  free(mnames);
  free(w);
  free(text);
}

/* ---- resuming ---- */
static double cfg_num(const json_t *o, const char *key, const char *ck) {
  json_t *v = json_object_get(o, key);
  if (!json_is_number(v)) bm_die("%s: config option \"%s\" is missing or not a number", ck, key);
  return json_number_value(v);
}

static void take_option(options *o, int k, double saved, double *field_d, long *field_l, const char *ck) {
  double cur = field_d ? *field_d : (double)*field_l;
  if (o->given[k] && cur != saved)
    bm_usage_die("--%s %.17g differs from the checkpoint's %.17g (%s): a resumed run keeps its options",
                 kept_names[k], cur, saved, ck);
  if (field_d) *field_d = saved;
  else *field_l = (long)saved;
}

static void take_string_option(options *o, int k, int saved, int *field, const char **names, const char *ck) {
  if (o->given[k] && *field != saved)
    bm_usage_die("--%s %s differs from the checkpoint's %s (%s): a resumed run keeps its options",
                 kept_names[k], names[*field], names[saved], ck);
  *field = saved;
}

static int index_of(const char *s, const char **names, int n) {
  for (int i = 0; s && i < n; i++)
    if (!strcmp(s, names[i])) return i;
  return -1;
}

/* The checkpoint's options replace the defaults; the data must be what it
 * was trained on (task, classes, feature widths). */
static void resume_options(options *o, const bm_linhead *ck) {
  const char *p = o->resume;
  json_t *opts = json_object_get(ck->config, "options");
  if (!json_is_object(opts)) bm_die("%s: config has no \"options\": not a checkpoint bm-train can resume", p);
  static const char *feat_names[] = {"img", "txt", "both"};
  int f = (int)o->feat;
  take_string_option(o, O_FEAT, (int)ck->feat, &f, feat_names, p);
  o->feat = (bm_feat)f;
  take_option(o, O_EPOCHS, cfg_num(opts, "epochs", p), NULL, &o->epochs, p);
  take_option(o, O_BATCH, cfg_num(opts, "batch", p), NULL, &o->batch, p);
  take_option(o, O_LR, cfg_num(opts, "lr", p), &o->lr, NULL, p);
  take_option(o, O_WD, cfg_num(opts, "weight_decay", p), &o->wd, NULL, p);
  take_option(o, O_WARMUP, cfg_num(opts, "warmup", p), NULL, &o->warmup, p);
  take_option(o, O_CLIP, cfg_num(opts, "clip", p), &o->clip, NULL, p);
  json_t *sv = json_object_get(opts, "seed"); /* an integer: seeds above 2^53 do not fit a double */
  if (!json_is_integer(sv) || json_integer_value(sv) < 0) bm_die("%s: config option \"seed\" is not a seed", p);
  if (o->given[O_SEED] && o->seed != (long)json_integer_value(sv))
    bm_usage_die("--seed %ld differs from the checkpoint's %lld (%s): a resumed run keeps its options", o->seed,
                 (long long)json_integer_value(sv), p);
  o->seed = (long)json_integer_value(sv);
  take_option(o, O_FRACTION, cfg_num(opts, "fraction", p), &o->fraction, NULL, p);
  take_option(o, O_PATIENCE, cfg_num(opts, "patience", p), NULL, &o->patience, p);
  /* checkpoints from before --accum and --dropout trained without them */
  take_option(o, O_ACCUM, json_object_get(opts, "accum") ? cfg_num(opts, "accum", p) : 1, NULL, &o->accum, p);
  take_option(o, O_DROPOUT, json_object_get(opts, "dropout") ? cfg_num(opts, "dropout", p) : 0, &o->dropout, NULL, p);
  static const char *pw_names[] = {"none", "inverse-freq"};
  int pw = index_of(json_string_value(json_object_get(opts, "pos_weight")), pw_names, 2);
  int sel = index_of(json_string_value(json_object_get(opts, "select")), sel_names, 4);
  if (pw < 0 || sel < 0) bm_die("%s: config options pos_weight/select are not valid", p);
  take_string_option(o, O_POSW, pw, &o->pos_weight, pw_names, p);
  take_string_option(o, O_SELECT, sel, &o->select, sel_names, p);
  if (o->mode == MODE_FINETUNE) {
    take_option(o, O_LRENC, cfg_num(opts, "lr_encoder", p), &o->lr_enc, NULL, p);
    take_option(o, O_LRHEAD, cfg_num(opts, "lr_head", p), &o->lr_head, NULL, p);
    take_option(o, O_UNLOCK, cfg_num(opts, "unlock_last", p), NULL, &o->unlock, p);
    int fz = json_is_true(json_object_get(opts, "freeze_tower"));
    if (o->freeze && !fz) bm_usage_die("--freeze-tower: the run of %s trained its tower; a resumed run keeps its options", p);
    o->freeze = fz;
    /* the tower goes on from the checkpoint's weights; the model's name is kept for the record */
    const char *mname = json_string_value(json_object_get(opts, "model"));
    o->model = o->model_from_ckpt = bm_xstrdup(mname ? mname : p);
  }
  /* the best epoch and early stopping go on with the same validation */
  const char *val = json_string_value(json_object_get(opts, "val"));
  if (val && !o->val) o->val = o->val_from_ckpt = bm_xstrdup(val);
  if (!val && o->val) bm_usage_die("--val: the run of %s had no validation set; it cannot get one now", p);
}

/* The training data must be what the checkpoint was trained on. */
static void resume_fits(const char *p, const bm_linhead *ck, const dataset *ds) {
  if (ck->C != ds->C)
    bm_die("%s: the checkpoint has %d classes, %s names %d: not the data it was trained on", p, ck->C, ds->name, ds->C);
  for (int k = 0; k < ds->C; k++)
    if (strcmp(ck->classes[k], ds->classes[k]))
      bm_die("%s: class %d is \"%s\" in the checkpoint, \"%s\" in %s", p, k, ck->classes[k], ds->classes[k], ds->name);
  if (ck->multilabel != ds->multilabel)
    bm_die("%s: a %s checkpoint, but %s is %s", p, ck->multilabel ? "multilabel" : "multiclass", ds->name,
           ds->multilabel ? "multilabel" : "multiclass");
  if (ds->model && ck->D != ds->model->vit.embed_dim)
    bm_die("%s: a head on %d features, the checkpoint's tower makes %d", p, ck->D, ds->model->vit.embed_dim);
  if (!ds->model && (ck->dims[0] != ds->dims[0] || ck->dims[1] != ds->dims[1]))
    bm_die("%s: features of width %d+%d in the checkpoint, %d+%d in %s (img_emb+txt_emb)", p, ck->dims[0],
           ck->dims[1], ds->dims[0], ds->dims[1], ds->name);
}

/* The tensors and counters of a checkpoint into h and st. */
static void resume_state(const options *o, const bm_linhead *ck, head *h, bm_adamw *opt, train_state *st) {
  const char *p = o->resume;
  /* the head's width is checked against the data by bm_linhead_load's config and resume_fits */
  memcpy(h->W, ck->W, sizeof(float) * (size_t)h->C * (size_t)ck->D);
  memcpy(h->b, ck->b, sizeof(float) * (size_t)h->C);
  for (int i = 0; i < 2 * opt->nparams; i++) { /* optim.m.NAME, optim.v.NAME of every parameter that trains */
    bm_adamw_param *q = &opt->params[i / 2];
    char name[160];
    snprintf(name, sizeof name, "optim.%c.%s", i % 2 ? 'v' : 'm', q->name);
    const bm_weight *w = bm_weights_get(&ck->ws, name);
    if (!w) bm_die("%s: cannot resume: tensor %s is missing", p, name);
    if (w->dtype != BM_W_F32 || (size_t)w->numel != q->n)
      bm_die("%s: cannot resume: tensor %s is %s with %lld values, expected f32 with %zu", p, name,
             bm_wdtype_name(w->dtype), (long long)w->numel, q->n);
    memcpy(i % 2 ? q->v : q->m, w->data, q->n * sizeof(float));
  }
  json_t *c = ck->config, *best = json_object_get(c, "best");
  st->epoch = (long)cfg_num(c, "epoch", p);
  st->step = (long)cfg_num(c, "step", p);
  st->bad_epochs = (long)cfg_num(c, "bad_epochs", p);
  st->finished = json_is_true(json_object_get(c, "finished"));
  st->best_epoch = (long)cfg_num(best, "epoch", p);
  json_t *bv = json_object_get(best, "value");
  st->best = json_is_number(bv) ? json_number_value(bv) : NAN;
  if (st->epoch < 1 || st->epoch > o->epochs || st->step < 0)
    bm_die("%s: config epoch %ld / step %ld do not fit a run of %ld epochs", p, st->epoch, st->step, o->epochs);
  opt->step = st->step;
}

static void log_line(FILE *lf, json_t *j, const char *path) {
  if (!lf) {
    json_decref(j);
    return;
  }
  char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
  json_decref(j);
  if (fprintf(lf, "%s\n", s) < 0 || fflush(lf)) bm_die("%s: cannot write the log: %s", path, strerror(errno));
  free(s);
}

static void fmt_eta(double s, char *buf, size_t n) {
  if (!isfinite(s) || s < 0) s = 0;
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
  else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

static void parse_args(int argc, char **argv, options *o) {
  enum { FEAT = 256, LR, WD, WARMUP, CLIP, SEED, FRAC, POSW, VAL, SEL, PAT, INIT, RESUME, STOP, LOG, LRENC, LRHEAD,
         UNLOCK, FREEZE, ACCUM, DROPOUT };
  static const struct option longs[] = {
      {"mode", required_argument, 0, 'M'},      {"output", required_argument, 0, 'o'},
      {"features", required_argument, 0, FEAT}, {"epochs", required_argument, 0, 'e'},
      {"batch", required_argument, 0, 'b'},     {"lr", required_argument, 0, LR},
      {"weight-decay", required_argument, 0, WD}, {"warmup", required_argument, 0, WARMUP},
      {"clip", required_argument, 0, CLIP},     {"seed", required_argument, 0, SEED},
      {"fraction", required_argument, 0, FRAC}, {"pos-weight", required_argument, 0, POSW},
      {"val", required_argument, 0, VAL},       {"select", required_argument, 0, SEL},
      {"patience", required_argument, 0, PAT},  {"init", required_argument, 0, INIT},
      {"resume", required_argument, 0, RESUME}, {"stop-after", required_argument, 0, STOP},
      {"threads", required_argument, 0, 'j'},   {"log", required_argument, 0, LOG},
      {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
      {"model", required_argument, 0, 'm'},     {"lr-encoder", required_argument, 0, LRENC},
      {"lr-head", required_argument, 0, LRHEAD}, {"unlock-last", required_argument, 0, UNLOCK},
      {"freeze-tower", no_argument, 0, FREEZE}, {"accum", required_argument, 0, ACCUM},
      {"dropout", required_argument, 0, DROPOUT},
      {0, 0, 0, 0}};
  const char *mode = NULL;
  int c, ft_opt = 0, lr_given = 0;
  while ((c = getopt_long(argc, argv, "M:m:o:e:b:j:qh", longs, NULL)) != -1) {
    const char *name = NULL;
    for (int i = 0; longs[i].name; i++)
      if (longs[i].val == c) name = longs[i].name;
    switch (c) {
    case 'M': mode = optarg; break;
    case 'o': o->out = optarg; break;
    case FEAT:
      if (bm_feat_parse(optarg, &o->feat)) bm_usage_die("--features %s: expected img, txt or both", optarg);
      o->given[O_FEAT] = 1;
      break;
    case 'm': o->model = optarg, ft_opt = 1; break;
    case FREEZE: o->freeze = 1, ft_opt = 1; break;
    case 'e': case 'b': case WARMUP: case SEED: case PAT: case STOP: case 'j': case UNLOCK: case ACCUM: {
      long v, lo = c == WARMUP || c == SEED || c == PAT || c == UNLOCK ? 0 : 1;
      long hi = c == SEED ? LONG_MAX : c == 'j' ? 1024 : c == 'b' || c == ACCUM ? 1 << 20 : 1L << 40;
      if (bm_parse_long(optarg, lo, hi, &v)) bm_usage_die("--%s %s: expected a whole number >= %ld", name, optarg, lo);
      if (c == 'e') o->epochs = v, o->given[O_EPOCHS] = 1;
      if (c == 'b') o->batch = v, o->given[O_BATCH] = 1;
      if (c == WARMUP) o->warmup = v, o->given[O_WARMUP] = 1;
      if (c == SEED) o->seed = v, o->given[O_SEED] = 1;
      if (c == PAT) o->patience = v, o->given[O_PATIENCE] = 1;
      if (c == STOP) o->stop_after = v;
      if (c == 'j') o->threads = v;
      if (c == UNLOCK) o->unlock = v, ft_opt = 1, o->given[O_UNLOCK] = 1;
      if (c == ACCUM) o->accum = v, o->given[O_ACCUM] = 1;
      break;
    }
    case LR: case WD: case CLIP: case FRAC: case LRENC: case LRHEAD: {
      double v;
      int is_lr = c == LR || c == LRENC || c == LRHEAD;
      if (bm_parse_double(optarg, &v) || !isfinite(v) || v < 0 || (is_lr && v == 0) ||
          (c == FRAC && (v <= 0 || v > 1)))
        bm_usage_die("--%s %s: expected a %s", name, optarg,
                     c == FRAC ? "fraction in (0, 1]" : is_lr ? "positive number" : "number >= 0");
      if (c == LR) o->lr = v, o->given[O_LR] = 1, lr_given = 1;
      if (c == LRENC) o->lr_enc = v, ft_opt = 1, o->given[O_LRENC] = 1;
      if (c == LRHEAD) o->lr_head = v, ft_opt = 1, o->given[O_LRHEAD] = 1;
      if (c == WD) o->wd = v, o->given[O_WD] = 1;
      if (c == CLIP) o->clip = v, o->given[O_CLIP] = 1;
      if (c == FRAC) o->fraction = v, o->given[O_FRACTION] = 1;
      break;
    }
    case DROPOUT: { /* P = 1 would drop everything and scale by infinity */
      double v;
      if (bm_parse_double(optarg, &v) || !(v >= 0 && v < 1))
        bm_usage_die("--dropout %s: expected a probability in [0, 1)", optarg);
      o->dropout = v, o->given[O_DROPOUT] = 1;
      break;
    }
    case POSW:
      if (!strcmp(optarg, "none")) o->pos_weight = 0;
      else if (!strcmp(optarg, "inverse-freq")) o->pos_weight = 1;
      else bm_usage_die("--pos-weight %s: expected none or inverse-freq", optarg);
      o->given[O_POSW] = 1;
      break;
    case SEL:
      o->select = index_of(optarg, sel_names, 4);
      if (o->select < 0) bm_usage_die("--select %s: expected loss, accuracy, balanced_accuracy or auc_macro", optarg);
      o->given[O_SELECT] = 1;
      break;
    case VAL: o->val = optarg; break;
    case INIT: o->init = optarg; break;
    case RESUME: o->resume = optarg; break;
    case LOG: o->log = optarg; break;
    case 'q': o->quiet = 1; break;
    case 'h': fputs(usage, stdout); exit(0);
    default: bm_usage_die("unknown option (see --help)");
    }
  }
  if (!mode) bm_usage_die("--mode is required: linear or finetune (fusion and contrastive come later)");
  if (!strcmp(mode, "finetune")) o->mode = MODE_FINETUNE;
  else if (strcmp(mode, "linear")) {
    if (!strcmp(mode, "fusion") || !strcmp(mode, "regularized") || !strcmp(mode, "contrastive"))
      bm_usage_die("--mode %s: not yet: only linear and finetune for now", mode);
    bm_usage_die("--mode %s: expected linear or finetune", mode);
  }
  if (o->mode == MODE_LINEAR && ft_opt)
    bm_usage_die("-m, --lr-encoder, --lr-head, --unlock-last and --freeze-tower are for --mode finetune");
  if (o->mode == MODE_FINETUNE) {
    if (!o->model && !o->resume) bm_usage_die("--mode finetune needs -m MODEL (the model whose image tower it trains)");
    if (o->model && o->resume) bm_usage_die("-m and --resume: a resumed run goes on from the tower of its checkpoint");
    if (lr_given) bm_usage_die("--lr: --mode finetune takes --lr-encoder (the tower) and --lr-head (the head)");
    if (o->freeze && o->given[O_UNLOCK]) bm_usage_die("--freeze-tower and --unlock-last: choose one");
    if (o->feat != BM_FEAT_IMG) bm_usage_die("--features: --mode finetune trains on images (its head reads img_emb)");
  }
  if (!o->out) bm_usage_die("-o OUT.safetensors is required");
  if (argc - optind != 1) bm_usage_die("one training file (see --help)");
  o->train = argv[optind];
  if (o->patience && !o->val) bm_usage_die("--patience needs --val (it stops on the validation metric)");
  if (o->given[O_SELECT] && !o->val) bm_usage_die("--select needs --val");
  if (o->init && o->resume) bm_usage_die("--init and --resume: a resumed run continues from its checkpoint");
}

static char *last_path(const char *out) {
  size_t n = strlen(out);
  const char *ext = ".safetensors";
  size_t e = strlen(ext);
  size_t stem = n > e && !strcmp(out + n - e, ext) ? n - e : n;
  char *p = bm_xmalloc(stem + 32);
  memcpy(p, out, stem);
  strcpy(p + stem, ".last.safetensors");
  return p;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  bm_blas_init(argv);
  options o = {.epochs = 10, .batch = 64, .lr = 1e-3, .fraction = 1, .pos_weight = 1, .lr_enc = 1e-5,
               .lr_head = 1e-3, .unlock = -1, .accum = 1};
  parse_args(argc, argv, &o);
  /* a ViT-B/16 image keeps ~140 MB of activations: 64 of them would not fit
   * the workstations this runs on */
  if (o.mode == MODE_FINETUNE && !o.given[O_BATCH]) o.batch = 16;
  if (o.threads) bm_set_threads((int)o.threads);
  char *lastp = last_path(o.out);
  if (!strcmp(lastp, o.out) || (o.resume && !strcmp(o.resume, o.out)))
    bm_usage_die("-o %s: resume from %s, not from the best checkpoint", o.out, lastp);

  char *dir = bm_xstrdup(o.out); /* find out now, not after the first epoch */
  if (access(dirname(dir), W_OK)) bm_die("-o %s: cannot write in %s: %s", o.out, dir, strerror(errno));
  free(dir);
  bm_linhead ck = {0};
  char err[1024];
  if (o.resume) {
    if (bm_linhead_load(o.resume, &ck, err, sizeof err)) bm_die("--resume: %s", err);
    const char *ckmode = json_string_value(json_object_get(ck.config, "mode")), *want = mode_names[o.mode];
    if (!ckmode || strcmp(ckmode, want))
      bm_die("--resume: %s: a checkpoint of mode \"%s\", not %s", o.resume, ckmode ? ckmode : "?",
             o.mode == MODE_LINEAR ? "a linear head" : "a finetune run");
    resume_options(&o, &ck);
    long done = (long)cfg_num(ck.config, "epoch", o.resume);
    if (json_is_true(json_object_get(ck.config, "finished")) || done >= o.epochs) {
      if (!o.quiet) bm_warn("%s: the run is complete (epoch %ld of %ld): nothing to do", o.resume, done, o.epochs);
      bm_linhead_free(&ck);
      free(lastp);
      free(o.val_from_ckpt);
      free(o.model_from_ckpt);
      return 0;
    }
  }
  bm_model model = {0};
  /* a resumed finetune goes on from the tower of its checkpoint */
  if (o.mode == MODE_FINETUNE && bm_model_load(&model, o.resume ? o.resume : o.model, BM_LOAD_VISION, err, sizeof err))
    bm_die("%s: %s", o.resume ? "--resume" : "-m", err);
  const bm_model *mp = o.mode == MODE_FINETUNE ? &model : NULL;
  dataset ds, vs = {0};
  load_set(o.train, o.feat, o.resume ? ck.dims : NULL, mp, 1, &ds);
  if (o.resume) resume_fits(o.resume, &ck, &ds);
  if (o.val) {
    load_set(o.val, o.feat, ds.dims, mp, 0, &vs);
    if (vs.C != ds.C || vs.multilabel != ds.multilabel)
      bm_die("%s: %s with %d classes, %s: %s with %d", vs.name, vs.multilabel ? "multilabel" : "multiclass", vs.C,
             ds.name, ds.multilabel ? "multilabel" : "multiclass", ds.C);
    for (int k = 0; k < ds.C; k++)
      if (strcmp(vs.classes[k], ds.classes[k]))
        bm_die("%s: class %d is \"%s\", in %s \"%s\"", vs.name, k, vs.classes[k], ds.name, ds.classes[k]);
  }
  long m;
  long *idx = select_subset(&ds, o.fraction, (uint64_t)o.seed, &m);

  head h = {.C = ds.C, .D = ds.D, .multilabel = ds.multilabel};
  int HD = mp ? model.vit.embed_dim : h.D; /* the head's input width */
  size_t CD = (size_t)h.C * (size_t)HD;
  h.W = bm_xcalloc(CD, sizeof(float));
  h.b = bm_xcalloc((size_t)h.C, sizeof(float));
  h.gW = bm_xcalloc(CD, sizeof(float));
  h.gb = bm_xcalloc((size_t)h.C, sizeof(float));
  bm_adamw_init(&h.opt, BETA1, BETA2, EPS);
  if (!mp) {
    int gw = bm_adamw_add_group(&h.opt, o.lr, o.wd), gb = bm_adamw_add_group(&h.opt, o.lr, 0); /* no decay on biases */
    bm_adamw_add_param(&h.opt, "head.weight", h.W, h.gW, CD, gw);
    bm_adamw_add_param(&h.opt, "head.bias", h.b, h.gb, (size_t)h.C, gb);
  } else { /* torch's nn.Linear start: uniform in +-1/sqrt(E), seeded */
    bm_rng r;
    bm_rng_seed(&r, sub_seed((uint64_t)o.seed, HEAD_TAG));
    float a = 1.0f / sqrtf((float)HD);
    for (size_t i = 0; i < CD; i++) h.W[i] = a * (float)(2 * bm_rng_uniform(&r) - 1);
    for (int k = 0; k < h.C; k++) h.b[k] = a * (float)(2 * bm_rng_uniform(&r) - 1);
  }
  long *npos = bm_xcalloc((size_t)h.C, sizeof(long));
  for (long j = 0; j < m; j++)
    for (int k = 0; k < h.C; k++) npos[k] += ds.y[(size_t)idx[j] * (size_t)h.C + (size_t)k];
  if (ds.multilabel && o.pos_weight) {
    h.pw = bm_xmalloc(sizeof(float) * (size_t)h.C);
    bm_pos_weight_inverse_freq(npos, m, h.C, h.pw);
    for (int k = 0; k < h.C; k++)
      if (!npos[k]) bm_warn("%s: class \"%s\" has no positive record in the training set: weight 1", ds.name, ds.classes[k]);
  }
  if (o.init) {
    bm_weights iw;
    if (bm_weights_load(o.init, &iw, err, sizeof err)) bm_die("--init: %s", err);
    int64_t shape[2] = {h.C, HD};
    const bm_weight *w = bm_weights_expect(&iw, "head.weight", 2, shape, err, sizeof err);
    const bm_weight *b = w ? bm_weights_expect(&iw, "head.bias", 1, shape, err, sizeof err) : NULL;
    if (!w || !b) bm_die("--init: %s", err);
    float *fw = bm_weight_to_f32(w), *fb = bm_weight_to_f32(b);
    if (!fw || !fb) bm_die("--init %s: head.weight and head.bias must be floats", o.init);
    memcpy(h.W, fw, CD * sizeof(float));
    memcpy(h.b, fb, (size_t)h.C * sizeof(float));
    free(fw), free(fb);
    bm_weights_free(&iw);
  }
  bm_ft ft;
  if (mp) { /* the tower and the head train together; the head lives in ft */
    bm_ft_init(&ft, &model.vit, o.unlock > INT_MAX ? -1 : (int)o.unlock, o.freeze, h.C, h.multilabel,
               h.pw, h.W, h.b, o.lr_enc, o.lr_head, o.wd);
    free(h.W), free(h.b), free(h.gW), free(h.gb);
    h.W = ft.W, h.b = ft.b, h.gW = h.gb = NULL, h.ft = &ft;
  }
  bm_adamw *opt = mp ? &ft.opt : &h.opt;
  train_state st = {.best = NAN, .n_train = ds.n, .n_used = m, .npos = npos};
  if (o.resume) {
    resume_state(&o, &ck, &h, opt, &st);
    bm_linhead_free(&ck);
  }

  FILE *lf = NULL;
  if (o.log && !(lf = fopen(o.log, o.resume ? "a" : "w"))) bm_die("cannot open %s: %s", o.log, strerror(errno));
  /* an optimizer step every N batches of an epoch (groups never cross epochs,
   * so a run resumes at any epoch end) */
  long B = o.batch, N = o.accum, spe = (m + B - 1) / B, gpe = (spe + N - 1) / N, total = o.epochs * gpe;
  float *X = bm_xmalloc(bm_mul_size((size_t)B * (size_t)h.D, sizeof(float)));
  float *Y = bm_xmalloc(bm_mul_size((size_t)B * (size_t)h.C, sizeof(float)));
  float *L = bm_xmalloc(bm_mul_size((size_t)B * (size_t)h.C, sizeof(float)));
  float *dL = bm_xmalloc(bm_mul_size((size_t)B * (size_t)h.C, sizeof(float)));
  long *perm = bm_xmalloc(sizeof(long) * (size_t)m), *bidx = bm_xmalloc(sizeof(long) * (size_t)B);
  /* --accum: sum of bs * (mean gradient) per micro-batch, in double so that
   * a group's gradient is its samples' mean to float rounding whatever N */
  double **acc = NULL;
  if (N > 1) {
    acc = bm_xcalloc((size_t)opt->nparams, sizeof *acc);
    for (int i = 0; i < opt->nparams; i++) acc[i] = bm_xcalloc(opt->params[i].n, sizeof(double));
  }
  uint64_t drop_seed = sub_seed((uint64_t)o.seed, DROP_TAG);
  if (mp) ft.dropout = (float)o.dropout, ft.drop_seed = drop_seed;
  bm_recslot slot;
  bm_recslot_init(&slot);
  bm_progress prog;
  bm_progress_init(&prog, o.quiet);
  double t0 = bm_now();
  long steps_here = 0, end = o.stop_after && o.stop_after < o.epochs ? o.stop_after : o.epochs;
  for (long e = st.epoch; e < end; e++) {
    bm_permutation(perm, m, sub_seed((uint64_t)o.seed, (uint64_t)e));
    double sum = 0;
    for (long g = 0; g < gpe; g++) {
      double ts = bm_now(), gsum = 0, loss = 0;
      long s1 = (g + 1) * N < spe ? (g + 1) * N : spe, gn = 0;
      for (long s = g * N; s < s1; s++) {
        int bs = (int)(m - s * B < B ? m - s * B : B);
        for (int j = 0; j < bs; j++) bidx[j] = idx[perm[s * B + j]];
        read_batch(&ds, o.feat, bidx, bs, &slot, sub_seed((uint64_t)o.seed, AUG_TAG ^ (uint64_t)e), X, Y);
        /* the mask of each batch of the run: its number, not the thread
         * count or the group, seeds it; the same after --resume */
        uint64_t micro = (uint64_t)(e * spe + s);
        if (mp) {
          ft.drop_step = micro;
          loss = bm_ft_grad(&ft, X, Y, bs); /* forward and backward */
        } else {
          /* the features are constants: only the head sees the dropped inputs */
          bm_dropout(X, X, (size_t)bs * (size_t)h.D, (float)o.dropout, drop_seed, micro, 0);
          bm_linhead_forward(X, h.W, h.b, bs, h.D, h.C, L);
          loss = batch_loss(&h, L, Y, bs, dL);
        }
        if (!isfinite(loss)) {
          bm_progress_done(&prog);
          if (e > 0)
            bm_die("loss is %s at step %ld (epoch %ld, step %ld of the epoch): stopped; %s holds epoch %ld, the last "
                   "good one", isnan(loss) ? "nan" : "inf", st.step + 1, e + 1, g + 1, lastp, e);
          bm_die("loss is %s at step %ld (epoch 1, step %ld of the epoch): stopped; no checkpoint was written",
                 isnan(loss) ? "nan" : "inf", st.step + 1, g + 1);
        }
        if (!mp) bm_linhead_backward(X, dL, bs, h.D, h.C, h.gW, h.gb);
        for (int i = 0; acc && i < opt->nparams; i++) {
          const float *gr = opt->params[i].grad;
          double *a = acc[i];
          for (size_t k = 0; k < opt->params[i].n; k++) a[k] += (double)bs * gr[k];
        }
        gsum += loss * bs, gn += bs;
      }
      if (acc) /* the gradient of the group's mean loss */
        for (int i = 0; i < opt->nparams; i++) {
          float *gr = opt->params[i].grad;
          double *a = acc[i];
          for (size_t k = 0; k < opt->params[i].n; k++) gr[k] = (float)(a[k] / (double)gn), a[k] = 0;
        }
      if (s1 - g * N > 1) loss = gsum / (double)gn; /* one batch: its loss as it was */
      double gnorm = bm_clip_grad_norm(opt, o.clip);
      double f = bm_cosine_warmup(st.step, o.warmup, total);
      bm_adamw_step(opt, f);
      st.step++, steps_here++;
      sum += gsum;
      double now = bm_now();
      char eta[32];
      fmt_eta((now - t0) / (double)steps_here * (double)(end * gpe - st.step), eta, sizeof eta);
      bm_progress_update(&prog, "epoch %ld/%ld step %ld/%ld loss %.4f ETA %s", e + 1, o.epochs, st.step, total,
                         loss, eta);
      log_line(lf, json_pack("{sIsIsfsfsfsf}", "step", (json_int_t)st.step, "epoch", (json_int_t)(e + 1), "loss",
                             loss, "lr", (mp ? o.lr_head : o.lr) * f, "grad_norm", gnorm, "samples_per_s",
                             gn / (now - ts > 1e-9 ? now - ts : 1e-9)),
               o.log);
    }
    st.epoch = e + 1;
    int improved;
    json_t *ej = json_pack("{sIsIsf}", "epoch", (json_int_t)st.epoch, "step", (json_int_t)st.step, "train_loss",
                           sum / (double)m);
    if (o.val) {
      st.last_val = evaluate(&h, &vs, o.feat, (int)B);
      st.has_val = 1;
      double v = st.last_val.v[o.select];
      improved = st.best_epoch == 0 || better(o.select, v, st.best);
      if (improved) st.best = v, st.best_epoch = st.epoch, st.bad_epochs = 0;
      else st.bad_epochs++;
      json_object_set_new(ej, "val", val_json(&st.last_val));
    } else {
      improved = 1; /* nothing to select on: OUT is the last epoch */
      st.best_epoch = st.epoch;
    }
    if (st.epoch == o.epochs || (o.patience && st.bad_epochs >= o.patience)) st.finished = 1;
    json_object_set_new(ej, "best_epoch", json_integer(st.best_epoch));
    if (mp) {
      if (improved) save_finetune(o.out, &o, &ds, &h, NULL, &st);
      save_finetune(lastp, &o, &ds, &h, opt, &st); /* with the moments, for --resume */
    } else {
      if (improved) save(o.out, &o, &ds, &h, &st);
      save(lastp, &o, &ds, &h, &st);
    }
    log_line(lf, ej, o.log);
    if (st.finished && st.epoch < o.epochs) {
      bm_progress_done(&prog);
      if (!o.quiet) bm_warn("no improvement of %s for %ld epochs: stopped after epoch %ld", sel_names[o.select],
                            st.bad_epochs, st.epoch);
      break;
    }
  }
  bm_progress_done(&prog);
  if (!o.quiet) {
    char b[64] = "";
    if (o.val) snprintf(b, sizeof b, " (%s %.6g)", sel_names[o.select], st.best);
    bm_warn("%ld of %ld epochs, %ld steps on %ld of %ld records; best epoch %ld%s in %s, last in %s", st.epoch,
            o.epochs, st.step, m, ds.n, st.best_epoch, b, o.out, lastp);
  }
  if (lf && fclose(lf)) bm_die("%s: %s", o.log, strerror(errno));
  bm_recslot_free(&slot);
  free(X), free(Y), free(L), free(dL), free(perm), free(bidx), free(idx), free(lastp), free(npos);
  for (int i = 0; acc && i < opt->nparams; i++) free(acc[i]);
  free(acc);
  if (mp) bm_ft_free(&ft);
  else free(h.W), free(h.b), free(h.gW), free(h.gb);
  free(h.pw);
  bm_adamw_free(&h.opt);
  bm_model_free(&model);
  free_set(&ds);
  if (o.val) free_set(&vs);
  free(o.val_from_ckpt);
  free(o.model_from_ckpt);
  return 0;
}
