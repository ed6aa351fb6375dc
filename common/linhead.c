#include "linhead.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util.h"

static const char *feat_names[] = {"img", "txt", "both"};
static const char *feat_keys[] = {"img_emb", "txt_emb"};

const char *bm_feat_name(bm_feat f) { return feat_names[f]; }

int bm_feat_parse(const char *s, bm_feat *f) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, feat_names[i])) {
      *f = (bm_feat)i;
      return 0;
    }
  return -1;
}

int bm_linhead_features(const msgpack_object *rec, bm_feat f, int dims[2], float *dst,
                        size_t cap, const char **missing, char *err, size_t errlen) {
  int D = 0;
  for (int k = 0; k < 2; k++) {
    if ((f == BM_FEAT_IMG && k == 1) || (f == BM_FEAT_TXT && k == 0)) continue;
    const char *key = feat_keys[k];
    bm_tensor t;
    char why[256];
    int got = bm_rec_tensor(rec, key, &t, why, sizeof why);
    if (got == 0) {
      *missing = key;
      return 0;
    }
    if (got < 0) {
      snprintf(err, errlen, "\"%s\": %s", key, why);
      return -1;
    }
    if ((t.dtype != BM_F32 && t.dtype != BM_F16) || t.ndim != 1 || t.numel < 1) {
      snprintf(err, errlen, "\"%s\" is %s with %d dimensions, expected f32 [D]", key,
               bm_dtype_name(t.dtype), t.ndim);
      return -1;
    }
    if (dims[k] == 0 && t.numel <= (1 << 24)) dims[k] = (int)t.numel;
    if (t.numel != dims[k]) {
      snprintf(err, errlen, "\"%s\" has %lld values, expected %d (as the first record / the checkpoint)",
               key, (long long)t.numel, dims[k]);
      return -1;
    }
    if ((size_t)(D + dims[k]) > cap) {
      snprintf(err, errlen, "\"%s\": %d values do not fit the feature buffer (%zu)", key, dims[k], cap);
      return -1;
    }
    bm_tensor_to_f32(&t, dst + D);
    for (int i = 0; i < dims[k]; i++)
      if (!isfinite(dst[D + i])) {
        snprintf(err, errlen, "\"%s\"[%d] is %g: not a finite number", key, i, (double)dst[D + i]);
        return -1;
      }
    D += dims[k];
  }
  return D;
}

void bm_linhead_forward(const float *X, const float *W, const float *b, int B, int D, int C,
                        float *logits) {
#pragma omp parallel for schedule(static) if ((long)B * C * D > BM_LINEAR_PAR_MIN)
  for (int i = 0; i < B; i++) {
    const float *x = X + (size_t)i * (size_t)D;
    for (int c = 0; c < C; c++) {
      const float *w = W + (size_t)c * (size_t)D;
      double s = b[c];
      for (int d = 0; d < D; d++) s += (double)x[d] * w[d];
      logits[(size_t)i * (size_t)C + (size_t)c] = (float)s;
    }
  }
}

void bm_linhead_backward(const float *X, const float *dlogits, int B, int D, int C, float *dW,
                         float *db) {
#pragma omp parallel if ((long)B * C * D > BM_LINEAR_PAR_MIN)
  {
    /* each (c, d) sums over the batch in order; walking X row by row keeps
     * the loads contiguous without changing that order */
    double *acc = bm_xmalloc(sizeof(double) * (size_t)D);
#pragma omp for schedule(static)
    for (int c = 0; c < C; c++) {
      double sb = 0;
      memset(acc, 0, sizeof(double) * (size_t)D);
      for (int i = 0; i < B; i++) {
        double g = dlogits[(size_t)i * (size_t)C + (size_t)c];
        const float *x = X + (size_t)i * (size_t)D;
        sb += g;
        for (int d = 0; d < D; d++) acc[d] += g * x[d];
      }
      db[c] = (float)sb;
      for (int d = 0; d < D; d++) dW[(size_t)c * (size_t)D + (size_t)d] = (float)acc[d];
    }
    free(acc);
  }
}

void bm_linhead_prob(const float *logits, int C, int multilabel, float *prob) {
  if (multilabel) {
    for (int c = 0; c < C; c++) prob[c] = (float)(1 / (1 + exp(-(double)logits[c])));
    return;
  }
  double mx = logits[0], sum = 0;
  for (int c = 1; c < C; c++) mx = logits[c] > mx ? logits[c] : mx;
  for (int c = 0; c < C; c++) sum += exp((double)logits[c] - mx);
  for (int c = 0; c < C; c++) prob[c] = (float)(exp((double)logits[c] - mx) / sum);
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static const float *f32_tensor(const bm_weights *ws, const char *name, int ndim, const int64_t *shape,
                               char *err, size_t errlen) {
  const bm_weight *w = bm_weights_expect(ws, name, ndim, shape, err, errlen);
  if (!w) return NULL;
  if (w->dtype != BM_W_F32) {
    snprintf(err, errlen, "%s: tensor %s is %s, expected f32", ws->source, name, bm_wdtype_name(w->dtype));
    return NULL;
  }
  return w->data;
}

int bm_linhead_load(const char *path, bm_linhead *h, char *err, size_t errlen) {
  memset(h, 0, sizeof *h);
  if (bm_weights_load(path, &h->ws, err, errlen)) return -1;
  if (!h->ws.config_json)
    return fail(err, errlen, "%s: no \"config\" in the metadata: not a bm-train checkpoint", path);
  json_error_t je;
  h->config = json_loads(h->ws.config_json, 0, &je);
  if (!json_is_object(h->config))
    return fail(err, errlen, "%s: the \"config\" metadata is not a JSON object", path);
  const char *mode = json_string_value(json_object_get(h->config, "mode"));
  if (!mode) return fail(err, errlen, "%s: config has no \"mode\": not a bm-train checkpoint", path);
  /* a finetune checkpoint carries the same head on its tower's img_emb */
  if (strcmp(mode, "linear") && strcmp(mode, "finetune"))
    return fail(err, errlen, "%s: a checkpoint of mode \"%s\", not a linear head (--mode linear or finetune)", path,
                mode);
  const char *feat = json_string_value(json_object_get(h->config, "features"));
  if (!feat || bm_feat_parse(feat, &h->feat))
    return fail(err, errlen, "%s: config \"features\" is not img, txt or both", path);
  const char *task = json_string_value(json_object_get(h->config, "task"));
  if (!task || (strcmp(task, "multiclass") && strcmp(task, "multilabel")))
    return fail(err, errlen, "%s: config \"task\" is not multiclass or multilabel", path);
  h->multilabel = !strcmp(task, "multilabel");
  json_t *fd = json_object_get(h->config, "feature_dims"), *cls = json_object_get(h->config, "classes");
  int want = h->feat == BM_FEAT_BOTH ? 2 : 1;
  if (!json_is_array(fd) || (int)json_array_size(fd) != want)
    return fail(err, errlen, "%s: config \"feature_dims\" is not an array of %d widths", path, want);
  for (int i = 0, k = h->feat == BM_FEAT_TXT; i < want; i++, k++) {
    json_int_t v = json_integer_value(json_array_get(fd, (size_t)i));
    if (v < 1 || v > (1 << 24)) return fail(err, errlen, "%s: config \"feature_dims\" holds a bad width", path);
    h->dims[k] = (int)v;
    h->D += (int)v;
  }
  if (!json_is_array(cls) || json_array_size(cls) < 1 || json_array_size(cls) > (1 << 20))
    return fail(err, errlen, "%s: config \"classes\" is not a non-empty array of names", path);
  h->C = (int)json_array_size(cls);
  h->classes = bm_xcalloc((size_t)h->C + 1, sizeof *h->classes);
  for (int c = 0; c < h->C; c++) {
    const char *s = json_string_value(json_array_get(cls, (size_t)c));
    if (!s) return fail(err, errlen, "%s: config \"classes\"[%d] is not a string", path, c);
    h->classes[c] = bm_xstrdup(s);
  }
  int64_t ws[2] = {h->C, h->D};
  if (!(h->W = f32_tensor(&h->ws, "head.weight", 2, ws, err, errlen))) return -1;
  if (!(h->b = f32_tensor(&h->ws, "head.bias", 1, ws, err, errlen))) return -1;
  return 0;
}

void bm_linhead_free(bm_linhead *h) {
  if (h->classes) bm_free_strings(h->classes, h->C);
  if (h->config) json_decref(h->config);
  bm_weights_free(&h->ws);
  memset(h, 0, sizeof *h);
}
