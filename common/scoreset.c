#include "scoreset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "util.h"

static const char *task_names[] = {"auto", "multiclass", "multilabel", "retrieval"};

const char *bm_task_name(bm_task t) { return task_names[t]; }

int bm_task_parse(const char *s, bm_task *t) {
  for (int i = 1; i < 4; i++)
    if (strcmp(s, task_names[i]) == 0) {
      *t = (bm_task)i;
      return 0;
    }
  return -1;
}

/* A growing array of fixed-size rows. */
typedef struct {
  void *data;
  size_t rows, cap, row_bytes;
} rows_buf;

static void *rows_push(rows_buf *b) {
  if (b->rows == b->cap) {
    b->cap = b->cap ? b->cap * 2 : 1024;
    b->data = bm_xrealloc(b->data, bm_mul_size(b->cap, b->row_bytes));
  }
  return (char *)b->data + b->rows++ * b->row_bytes;
}

/* The tensor under key as n float32 values into dst (n == -1: any length,
 * returned). Dies naming the record on a malformed tensor, a wrong length
 * or a non-finite value. Returns 0 when the key is absent. */
static int64_t get_vec(bm_reader *r, const msgpack_object *rec, const char *key, int64_t n,
                       float **dst, size_t *cap, const char *what) {
  bm_tensor t;
  char err[256], where[512];
  int got = bm_rec_tensor(rec, key, &t, err, sizeof err);
  if (got == 0) return 0;
  bm_reader_where(r, where, sizeof where);
  if (got < 0) bm_die("%s: %s", where, err);
  if (n >= 0 && t.numel != n) bm_die("%s: \"%s\" has %lld values, expected %lld (%s)", where, key, (long long)t.numel, (long long)n, what);
  if (t.numel == 0) bm_die("%s: \"%s\" is empty", where, key);
  if ((size_t)t.numel > *cap) {
    *cap = (size_t)t.numel;
    *dst = bm_xrealloc(*dst, bm_mul_size(*cap, sizeof(float)));
  }
  bm_tensor_to_f32(&t, *dst);
  for (int64_t i = 0; i < t.numel; i++)
    if (!isfinite((*dst)[i])) bm_die("%s: \"%s\"[%lld] is %g: not a finite number", where, key, (long long)i, (double)(*dst)[i]);
  return t.numel;
}

static bm_task header_task(const char *name, const msgpack_object *h) {
  const msgpack_object *t = h ? bm_map_get(h, "task") : NULL;
  if (!t) return BM_TASK_AUTO;
  char s[64];
  bm_task task;
  if (bm_obj_str(t, s, sizeof s) || bm_task_parse(s, &task))
    bm_die("%s: header \"task\" is not multiclass, multilabel or retrieval (give --task)", name);
  return task;
}

static void read_pairs(bm_reader *r, const msgpack_object *rec, bm_scoreset *s) {
  rows_buf img = {0}, txt = {0};
  float *v = NULL;
  size_t cap = 0;
  do {
    char where[512];
    int64_t d = get_vec(r, rec, "img_emb", s->d ? (int64_t)s->d : -1, &v, &cap, "the width of the first record's embeddings");
    if (!d) bm_die("%s: no \"img_emb\" (retrieval needs img_emb and txt_emb)", bm_reader_where(r, where, sizeof where));
    if (!s->d) {
      s->d = (size_t)d;
      img.row_bytes = txt.row_bytes = bm_mul_size(s->d, sizeof(float));
    }
    memcpy(rows_push(&img), v, img.row_bytes);
    if (!get_vec(r, rec, "txt_emb", (int64_t)s->d, &v, &cap, "the width of img_emb"))
      bm_die("%s: no \"txt_emb\" (retrieval needs img_emb and txt_emb)", bm_reader_where(r, where, sizeof where));
    memcpy(rows_push(&txt), v, txt.row_bytes);
  } while (bm_reader_next(r, &rec) == 1);
  free(v);
  s->n = img.rows;
  /* give back the growth slack (large blocks shrink in place) */
  s->img = bm_xrealloc(img.data, bm_mul_size(img.rows, img.row_bytes));
  s->txt = bm_xrealloc(txt.data, bm_mul_size(txt.rows, txt.row_bytes));
}

/* Probabilities of one record from "prob" or "scores", in double. */
static void to_prob(const float *v, int c, int softmax, double *p) {
  if (!softmax) {
    for (int k = 0; k < c; k++) p[k] = 1.0 / (1.0 + exp(-(double)v[k]));
    return;
  }
  double m = v[0], sum = 0;
  for (int k = 1; k < c; k++) m = v[k] > m ? v[k] : m;
  for (int k = 0; k < c; k++) sum += p[k] = exp((double)v[k] - m);
  for (int k = 0; k < c; k++) p[k] /= sum;
}

static void read_labels(bm_reader *r, const msgpack_object *rec, bm_scoreset *s) {
  int c = s->c;
  int multiclass = s->task == BM_TASK_MULTICLASS;
  rows_buf pb = {0}, yb = {0}, tb = {.row_bytes = sizeof(int32_t)};
  float *v = NULL;
  size_t cap = 0;
  char what[128];
  do {
    char where[512];
    bm_reader_where(r, where, sizeof where);
    if (c < 0) { /* no class list in the header: the first target sets C */
      int64_t m = get_vec(r, rec, "target", -1, &v, &cap, "");
      if (m > 1 << 20) bm_die("%s: \"target\" has %lld values: too many classes", where, (long long)m);
      c = s->c = (int)m;
    }
    if (pb.row_bytes == 0) {
      pb.row_bytes = bm_mul_size((size_t)c, sizeof(double));
      yb.row_bytes = (size_t)c;
      snprintf(what, sizeof what, s->classes ? "the header names %d classes" : "the first target has %d values", c);
    }
    if (!get_vec(r, rec, "target", c, &v, &cap, what)) bm_die("%s: no \"target\"", where);
    uint8_t *y = rows_push(&yb);
    int ones = 0;
    for (int k = 0; k < c; k++) {
      if (v[k] != 0 && v[k] != 1) bm_die("%s: \"target\"[%d] is %g: targets must be 0 or 1", where, k, (double)v[k]);
      y[k] = v[k] == 1;
      ones += y[k];
    }
    if (multiclass && ones != 1) bm_die("%s: \"target\" has %d ones: a multiclass target is one-hot", where, ones);
    double *p = rows_push(&pb);
    if (get_vec(r, rec, "prob", c, &v, &cap, what)) {
      for (int k = 0; k < c; k++) {
        if (v[k] < 0 || v[k] > 1) bm_die("%s: \"prob\"[%d] is %g: not a probability", where, k, (double)v[k]);
        p[k] = v[k];
      }
    } else if (get_vec(r, rec, "scores", c, &v, &cap, what)) {
      to_prob(v, c, multiclass, p);
    } else {
      bm_die("%s: no \"scores\" or \"prob\"", where);
    }
    int32_t top = 0;
    for (int k = 1; k < c; k++) top = v[k] > v[top] ? k : top;
    *(int32_t *)rows_push(&tb) = top;
  } while (bm_reader_next(r, &rec) == 1);
  free(v);
  /* class-major, so that each class's column is contiguous for sorting */
  size_t n = s->n = pb.rows;
  s->p = bm_xmalloc(bm_mul_size(n * (size_t)c, sizeof(double)));
  s->y = bm_xmalloc(bm_mul_size(n, (size_t)c));
  const double *pr = pb.data;
  const uint8_t *yr = yb.data;
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < c; k++) {
      s->p[(size_t)k * n + i] = pr[i * (size_t)c + (size_t)k];
      s->y[(size_t)k * n + i] = yr[i * (size_t)c + (size_t)k];
    }
  free(pb.data);
  free(yb.data);
  s->top = tb.data;
}

void bm_scoreset_read(const char *path, bm_task want, bm_scoreset *s) {
  memset(s, 0, sizeof *s);
  s->c = -1;
  bm_reader *r = bm_reader_open(path);
  s->name = bm_xstrdup(bm_reader_name(r));
  const msgpack_object *h = bm_reader_header(r), *rec;
  if (bm_reader_error(r)) exit(1);
  int got = bm_reader_next(r, &rec);
  if (got < 0) exit(1);
  if (got == 0) bm_die("%s: empty stream: no records to score", s->name);
  bm_task task = want;
  if (task == BM_TASK_AUTO && !bm_map_get(rec, "target") && bm_map_get(rec, "img_emb") &&
      bm_map_get(rec, "txt_emb"))
    task = BM_TASK_RETRIEVAL; /* no targets but pairs: retrieval, whatever the header says */
  if (task == BM_TASK_AUTO) task = header_task(s->name, h);
  if (task == BM_TASK_AUTO)
    bm_die("%s: the header names no task (multiclass or multilabel): give --task", s->name);
  s->task = task;
  if (task == BM_TASK_RETRIEVAL) {
    read_pairs(r, rec, s);
  } else {
    if (h && bm_map_get(h, "classes")) {
      s->c = bm_header_classes(h, &s->classes);
      if (s->c < 1) bm_die("%s: header \"classes\" is not a non-empty array of names", s->name);
      for (int k = 0; k < s->c; k++) /* names key per_class: they must differ */
        for (int j = 0; j < k; j++)
          if (strcmp(s->classes[j], s->classes[k]) == 0)
            bm_die("%s: header \"classes\" names \"%s\" twice", s->name, s->classes[k]);
    }
    read_labels(r, rec, s);
    if (!s->classes) { /* no names: the class index stands for the name */
      s->classes = bm_xcalloc((size_t)s->c + 1, sizeof *s->classes);
      for (int k = 0; k < s->c; k++) {
        char b[16];
        snprintf(b, sizeof b, "%d", k);
        s->classes[k] = bm_xstrdup(b);
      }
    }
    if (task == BM_TASK_MULTICLASS && s->c < 2) bm_die("%s: multiclass needs at least 2 classes, got %d", s->name, s->c);
  }
  if (bm_reader_error(r)) exit(1);
  bm_reader_close(r);
}

void bm_scoreset_free(bm_scoreset *s) {
  bm_free_strings(s->classes, s->c > 0 ? s->c : 0);
  free(s->name);
  free(s->p);
  free(s->y);
  free(s->top);
  free(s->img);
  free(s->txt);
  memset(s, 0, sizeof *s);
}
