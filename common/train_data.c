/* train_data.c - bm-train's record files, checked once, read by batch. */
#include "train_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "label_text.h"
#include "record.h"
#include "util.h"

/* open_clip's training RandomResizedCrop scale (0.9, 1.0) */
#define CROP_SCALE_MIN 0.9

static void header_classes(bm_trainset *ds, int allow_pairs) {
  const msgpack_object *h = bm_recfile_header(ds->f);
  if (!h) bm_die("%s: no header: task and classes come from it (bm-decode writes one)", ds->name);
  const msgpack_object *t = bm_map_get(h, "task");
  if (allow_pairs && t && bm_obj_is_str(t, "pairs")) { /* captions, no classes */
    ds->pairs = 1;
    return;
  }
  if (t && bm_obj_is_str(t, "multilabel")) ds->multilabel = 1;
  else if (!t || !bm_obj_is_str(t, "multiclass"))
    bm_die("%s: header \"task\" is not multiclass or multilabel%s", ds->name, allow_pairs ? " (or pairs)" : "");
  ds->C = bm_header_classes(h, &ds->classes);
  if (ds->C < 1) bm_die("%s: header has no \"classes\" (a non-empty array of names)", ds->name);
  if (!ds->multilabel && ds->C < 2) bm_die("%s: multiclass needs at least 2 classes", ds->name);
  for (int k = 0; k < ds->C; k++)
    for (int j = 0; j < k; j++)
      if (!strcmp(ds->classes[j], ds->classes[k]))
        bm_die("%s: header \"classes\" names \"%s\" twice", ds->name, ds->classes[k]);
}

/* The target of record i, checked, as 0/1 bytes. */
static void read_target(const bm_trainset *ds, long i, const msgpack_object *rec, float *tmp, uint8_t *y) {
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
 * (random-resized-crop; *H, *W say which). NULL: err says why. */
static const uint8_t *record_image_try(const bm_trainset *ds, long i, const msgpack_object *rec, int *H, int *W,
                                       char *err, size_t errn) {
  bm_tensor t;
  char terr[256];
  int S = ds->model->vit.image_size;
  int got = bm_rec_tensor(rec, "image", &t, terr, sizeof terr);
  if (got == 0) {
    snprintf(err, errn, "%s: record %ld: no \"image\" (%s trains on images, as bm-decode writes them)", ds->name,
             i + 1, ds->mode);
    return NULL;
  }
  if (got < 0) {
    snprintf(err, errn, "%s: record %ld: \"image\": %s", ds->name, i + 1, terr);
    return NULL;
  }
  int larger = ds->augment && t.dtype == BM_U8 && t.ndim == 3 && t.shape[0] == 3 && t.shape[1] >= S &&
               t.shape[2] >= S && t.shape[1] <= 1 << 15 && t.shape[2] <= 1 << 15;
  if (!larger && (t.dtype != BM_U8 || t.ndim != 3 || t.shape[0] != 3 || t.shape[1] != S || t.shape[2] != S)) {
    char shape[128] = "";
    for (int k = 0; k < t.ndim; k++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", k ? "," : "", (long long)t.shape[k]);
    snprintf(err, errn,
             "%s: record %ld: \"image\" is %s [%s]; the model takes u8 [3,%d,%d]%s: decode with bm-decode --size %d",
             ds->name, i + 1, bm_dtype_name(t.dtype), shape, S, S,
             ds->augment ? " (or larger, cropped at random)" : " (validation images are not cropped)", S);
    return NULL;
  }
  *H = (int)t.shape[1], *W = (int)t.shape[2];
  return t.data;
}

/* Record i's "text" must be a string; one that names a class of the
 * header is the leakage the paper warns of: refused unless allowed. */
static void check_text(bm_trainset *ds, long i, const msgpack_object *rec) {
  const msgpack_object *t = bm_map_get(rec, "text");
  if (!t) bm_die("%s: record %ld: no \"text\" (%s reads it; bm-decode --text writes it)", ds->name, i + 1, ds->mode);
  if (t->type != MSGPACK_OBJECT_STR) bm_die("%s: record %ld: \"text\" is not a string", ds->name, i + 1);
  if (!ds->C) return;
  int k = bm_text_names_class(t->via.str.ptr, t->via.str.size, (const char *const *)ds->classes, ds->C);
  if (k < 0) return;
  if (ds->need & BM_ALLOW_LABEL_TEXT) {
    ds->label_text++;
    return;
  }
  char snip[96];
  bm_text_snippet(t->via.str.ptr, t->via.str.size, snip, sizeof snip);
  bm_die("%s: record %ld: \"text\" names the class \"%s\": \"%s\"; a model trained on it reads the label from the "
         "text (leakage); --allow-label-text trains on it anyway",
         ds->name, i + 1, ds->classes[k], snip);
}

void bm_trainset_load(const char *path, int need, bm_feat feat, const int *dims, const bm_model *model,
                      int augment, int allow_pairs, const char *mode, bm_trainset *ds) {
  memset(ds, 0, sizeof *ds);
  ds->model = model;
  ds->augment = augment;
  ds->need = need;
  ds->mode = mode;
  ds->f = bm_recfile_open(path);
  ds->name = bm_recfile_name(ds->f);
  ds->n = bm_recfile_count(ds->f);
  header_classes(ds, allow_pairs);
  if (ds->n == 0) bm_die("%s: no records to train or evaluate on", ds->name);
  if (dims) memcpy(ds->dims, dims, sizeof ds->dims);
  int targets = (need & BM_NEED_TARGET) && !ds->pairs;
  if (targets) ds->y = bm_xmalloc(bm_mul_size((size_t)ds->n, (size_t)ds->C));
  if (need & BM_NEED_IMAGE) {
    int S = model->vit.image_size;
    ds->crop = bm_xmalloc(bm_mul_size((size_t)3 * S, (size_t)S));
    ds->D = 3 * S * S;
  }
  float *tmp = bm_xmalloc(sizeof(float) * (size_t)(ds->C ? ds->C : 1));
  size_t cap = need & BM_NEED_FEATURES ? 1 << 20 : 1; /* widths up to 2^20 values */
  float *x = bm_xmalloc(cap * sizeof(float));
  bm_recslot slot;
  bm_recslot_init(&slot);
  for (long i = 0; i < ds->n; i++) {
    const msgpack_object *rec = bm_recfile_read(ds->f, i, &slot);
    if (targets) read_target(ds, i, rec, tmp, ds->y + (size_t)i * (size_t)ds->C);
    if (need & BM_NEED_IMAGE) {
      int H, W;
      char err[1024];
      if (!record_image_try(ds, i, rec, &H, &W, err, sizeof err)) bm_die("%s", err);
    }
    if (need & BM_NEED_TEXT) check_text(ds, i, rec);
    if (!(need & BM_NEED_FEATURES)) continue;
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

void bm_trainset_free(bm_trainset *ds) {
  bm_recfile_close(ds->f);
  bm_free_strings(ds->classes, ds->C);
  free(ds->y);
  free(ds->crop);
}

static int cmp_long(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

long *bm_trainset_subset(const bm_trainset *ds, double F, uint64_t seed, long *m) {
  long n = ds->n;
  int C = ds->C;
  long *idx = bm_xmalloc(sizeof(long) * (size_t)n);
  if (F >= 1) {
    for (long i = 0; i < n; i++) idx[i] = i;
    *m = n;
    return idx;
  }
  long *npos = bm_xcalloc((size_t)C + 1, sizeof(long));
  for (long i = 0; ds->y && i < n; i++)
    for (int k = 0; k < C; k++) npos[k] += ds->y[(size_t)i * (size_t)C + (size_t)k];
  /* each record's stratum: its class (multiclass); its rarest positive
   * class, or C for no positive (multilabel, and pairs: one stratum) */
  int *stratum = bm_xmalloc(sizeof(int) * (size_t)n);
  long *size = bm_xcalloc((size_t)C + 1, sizeof(long));
  for (long i = 0; i < n; i++) {
    int s = C;
    for (int k = 0; ds->y && k < C; k++)
      if (ds->y[(size_t)i * (size_t)C + (size_t)k] && (s == C || npos[k] < npos[s])) s = k;
    stratum[i] = s;
    size[s]++;
  }
  long *order = bm_xmalloc(sizeof(long) * (size_t)n);
  bm_permutation(order, n, bm_sub_seed(seed, BM_SUBSET_TAG));
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

long *bm_trainset_positives(const bm_trainset *ds, const long *idx, long m) {
  long *npos = bm_xcalloc((size_t)ds->C + 1, sizeof(long));
  for (long j = 0; ds->y && j < m; j++)
    for (int k = 0; k < ds->C; k++) npos[k] += ds->y[(size_t)idx[j] * (size_t)ds->C + (size_t)k];
  return npos;
}

int bm_trainset_batch_try(const bm_trainset *ds, bm_feat feat, const long *idx, int B, bm_recslot *slot,
                          uint8_t *crop, uint64_t aug_seed, float *X, float *Y, char *err, size_t errn) {
  for (int j = 0; j < B; j++) {
    const msgpack_object *rec = bm_recfile_read_try(ds->f, idx[j], slot, err, errn);
    if (!rec) return -1;
    if (Y) {
      const uint8_t *y = ds->y + (size_t)idx[j] * (size_t)ds->C;
      for (int k = 0; k < ds->C; k++) Y[(size_t)j * (size_t)ds->C + (size_t)k] = y[k];
    }
    if (ds->need & BM_NEED_IMAGE) { /* normalized image [3,S,S] */
      int S = ds->model->vit.image_size, H, W;
      const uint8_t *px = record_image_try(ds, idx[j], rec, &H, &W, err, errn);
      if (!px) return -1;
      if (H != S || W != S) { /* a crop of its own for each record and epoch */
        uint64_t k = (uint64_t)idx[j];
        if (bm_random_resized_crop(px, H, W, S, CROP_SCALE_MIN, bm_hash64(&k, sizeof k, aug_seed), crop)) {
          snprintf(err, errn, "%s: record %ld: out of memory cropping the image", ds->name, idx[j] + 1);
          return -1;
        }
        px = crop;
      }
      bm_model_normalize_image(ds->model, px, S, X + (size_t)j * (size_t)ds->D);
      continue;
    }
    const char *missing = NULL;
    char ferr[256];
    int dims[2] = {ds->dims[0], ds->dims[1]};
    int D = bm_linhead_features(rec, feat, dims, X + (size_t)j * (size_t)ds->D, (size_t)ds->D, &missing,
                               ferr, sizeof ferr);
    if (D != ds->D) { /* the file was checked when indexed: it changed under us */
      snprintf(err, errn, "%s: record %ld: %s", ds->name, idx[j] + 1,
               D == 0 ? "lost its features since it was indexed" : ferr);
      return -1;
    }
  }
  return 0;
}

void bm_trainset_batch(const bm_trainset *ds, bm_feat feat, const long *idx, int B, bm_recslot *slot,
                       uint64_t aug_seed, float *X, float *Y) {
  char err[1024];
  if (bm_trainset_batch_try(ds, feat, idx, B, slot, ds->crop, aug_seed, X, Y, err, sizeof err)) bm_die("%s", err);
}
