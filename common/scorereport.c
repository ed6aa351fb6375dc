#include "scorereport.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

json_t *bm_json_num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static void note(json_t *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(json_t *notes, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  json_array_append_new(notes, json_string(buf));
}

static const char *one_value(const uint8_t *y, size_t n) {
  int64_t P, N;
  bm_count_pn(y, NULL, n, &P, &N);
  return P == 0 ? "no positive targets" : N == 0 ? "no negative targets" : NULL;
}

double *bm_choose_thresholds(const bm_scoreset *val, bm_thr_metric m, json_t *notes) {
  size_t n = val->n;
  double *thr = bm_xmalloc(bm_mul_size((size_t)val->c, sizeof *thr));
  size_t *ord = bm_xmalloc(bm_mul_size(n, sizeof *ord));
  for (int k = 0; k < val->c; k++) {
    const double *p = val->p + (size_t)k * n;
    const uint8_t *y = val->y + (size_t)k * n;
    bm_order_desc(p, n, ord);
    thr[k] = bm_best_threshold(p, y, ord, n, m);
    if (isnan(thr[k]))
      note(notes, "class \"%s\": %s in the validation stream: threshold left at the default", val->classes[k], one_value(y, n));
  }
  free(ord);
  return thr;
}

/* Per-class figures and the counts behind them. */
typedef struct {
  bm_counts cnt;
  int64_t support;
  double auc, ap, f1, sens, spec, acc, bal, thr, ci_lo, ci_hi;
} class_fig;

/* Percentile intervals of AUROC over resamples drawn with replacement
 * (weights = draw counts), per class, macro (mean over the classes defined
 * in that resample) and micro. lo/hi: c + 2 entries (classes, macro, micro). */
static void bootstrap(const bm_scoreset *s, size_t **ord, const size_t *cell_ord,
                      const bm_report_opts *o, double *lo, double *hi, long *undefined) {
  size_t n = s->n, c = (size_t)s->c, B = (size_t)o->bootstrap;
  double *vals = bm_xmalloc(bm_mul_size(B * (c + 2), sizeof *vals)); /* figure-major */
#pragma omp parallel
  {
    uint32_t *w = bm_xmalloc(bm_mul_size(n, sizeof *w));
    uint32_t *wc = bm_xmalloc(bm_mul_size(n * c, sizeof *wc));
    double *per = bm_xmalloc(bm_mul_size(c, sizeof *per));
#pragma omp for schedule(dynamic)
    for (size_t b = 0; b < B; b++) {
      /* Resample b takes draws b*n .. b*n+n-1 of the one seeded sequence,
       * whatever the thread: splitmix64's state is a counter stepping by
       * its constant, so it can start there directly. */
      bm_rng rng;
      bm_rng_seed(&rng, o->seed + (uint64_t)b * (uint64_t)n * 0x9E3779B97F4A7C15ULL);
      memset(w, 0, n * sizeof *w);
      for (size_t i = 0; i < n; i++) w[(size_t)(bm_rng_uniform(&rng) * (double)n)]++;
      for (size_t k = 0; k < c; k++) {
        per[k] = bm_auc(s->p + k * n, s->y + k * n, w, ord[k], n);
        vals[k * B + b] = per[k];
        memcpy(wc + k * n, w, n * sizeof *w);
      }
      vals[c * B + b] = bm_nanmean(per, c, 1, NULL);
      vals[(c + 1) * B + b] = bm_auc(s->p, s->y, wc, cell_ord, n * c);
    }
    free(per);
    free(wc);
    free(w);
  }
  for (size_t f = 0; f < c + 2; f++) {
    double *v = vals + f * B;
    size_t m = 0;
    for (size_t b = 0; b < B; b++)
      if (isfinite(v[b])) v[m++] = v[b];
    undefined[f] = (long)(B - m);
    lo[f] = bm_percentile(v, m, 2.5);
    hi[f] = bm_percentile(v, m, 97.5);
  }
  free(vals);
}

static json_t *ci_json(double lo, double hi) {
  if (!isfinite(lo) || !isfinite(hi)) return json_null();
  return json_pack("[oo]", json_real(lo), json_real(hi));
}

static json_t *count_matrix(const int64_t *m, size_t rows, size_t cols) {
  json_t *a = json_array();
  for (size_t i = 0; i < rows; i++) {
    json_t *r = json_array();
    for (size_t j = 0; j < cols; j++) json_array_append_new(r, json_integer(m[i * cols + j]));
    json_array_append_new(a, r);
  }
  return a;
}

/* A line in notes for each class with undefined figures. */
static void class_notes(const bm_scoreset *s, const class_fig *f, json_t *notes) {
  for (int k = 0; k < s->c; k++) {
    const class_fig *x = &f[k];
    char which[128] = "";
    struct { const char *name; double v; } figs[] = {{"auc", x->auc}, {"ap", x->ap}, {"f1", x->f1}, {"sensitivity", x->sens}, {"specificity", x->spec}};
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++)
      if (!isfinite(figs[i].v)) {
        if (*which) strcat(which, ", ");
        strcat(which, figs[i].name);
      }
    if (!*which) continue;
    const char *why = one_value(s->y + (size_t)k * s->n, s->n);
    note(notes, "class \"%s\": %s: %s undefined (null), left out of the macro means", s->classes[k],
         why ? why : "zero denominators", which);
  }
}

/* The mean over classes of one double field, undefined values left out. */
static double macro_mean(const class_fig *f, size_t c, size_t off) {
  double *v = bm_xmalloc(bm_mul_size(c, sizeof *v));
  for (size_t k = 0; k < c; k++) memcpy(&v[k], (const char *)&f[k] + off, sizeof *v);
  double m = bm_nanmean(v, c, 1, NULL);
  free(v);
  return m;
}

json_t *bm_report_classify(const bm_scoreset *s, const bm_report_opts *o, json_t *notes) {
  size_t n = s->n, c = (size_t)s->c;
  int multilabel = s->task == BM_TASK_MULTILABEL;
  class_fig *f = bm_xcalloc(c, sizeof *f);
  size_t **ord = bm_xcalloc(c, sizeof *ord);
  int64_t *conf = NULL;
  int64_t exact = 0;

  if (!multilabel) { /* rows: true class, columns: the top-scoring class */
    conf = bm_xcalloc(c * c, sizeof *conf);
    for (size_t i = 0; i < n; i++) {
      size_t t = 0;
      while (!s->y[t * n + i]) t++;
      conf[t * c + (size_t)s->top[i]]++;
      exact += t == (size_t)s->top[i];
    }
  } else {
    uint8_t *all = bm_xmalloc(n);
    memset(all, 1, n);
    for (size_t k = 0; k < c; k++) {
      double t = o->thr && isfinite(o->thr[k]) ? o->thr[k] : o->default_thr;
      f[k].thr = t;
      bm_counts *x = &f[k].cnt;
      for (size_t i = 0; i < n; i++) {
        int pred = s->p[k * n + i] >= t, y = s->y[k * n + i];
        x->tp += pred && y;
        x->fp += pred && !y;
        x->fn += !pred && y;
        x->tn += !pred && !y;
        if (pred != y) all[i] = 0;
      }
    }
    for (size_t i = 0; i < n; i++) exact += all[i];
    free(all);
  }

  bm_counts sum = {0};
  for (size_t k = 0; k < c; k++) {
    class_fig *x = &f[k];
    const double *p = s->p + k * n;
    const uint8_t *y = s->y + k * n;
    if (!multilabel) {
      int64_t row = 0, col = 0;
      for (size_t j = 0; j < c; j++) {
        row += conf[k * c + j];
        col += conf[j * c + k];
      }
      x->cnt.tp = conf[k * c + k];
      x->cnt.fn = row - x->cnt.tp;
      x->cnt.fp = col - x->cnt.tp;
      x->cnt.tn = (int64_t)n - row - x->cnt.fp;
    }
    ord[k] = bm_xmalloc(bm_mul_size(n, sizeof **ord));
    bm_order_desc(p, n, ord[k]);
    x->auc = bm_auc(p, y, NULL, ord[k], n);
    x->ap = bm_ap(p, y, NULL, ord[k], n);
    x->f1 = bm_f1(&x->cnt);
    x->sens = bm_sensitivity(&x->cnt);
    x->spec = bm_specificity(&x->cnt);
    x->acc = (double)(x->cnt.tp + x->cnt.tn) / (double)n;
    double ss[2] = {x->sens, x->spec};
    x->bal = bm_nanmean(ss, 2, 1, NULL); /* sklearn's binary balanced accuracy */
    x->support = x->cnt.tp + x->cnt.fn;
    sum.tp += x->cnt.tp;
    sum.fp += x->cnt.fp;
    sum.fn += x->cnt.fn;
    sum.tn += x->cnt.tn;
  }
  size_t *cell_ord = bm_xmalloc(bm_mul_size(n * c, sizeof *cell_ord));
  bm_order_desc(s->p, n * c, cell_ord);
  double auc_micro = bm_auc(s->p, s->y, NULL, cell_ord, n * c);
  double ap_micro = bm_ap(s->p, s->y, NULL, cell_ord, n * c);

#define MACRO(field) macro_mean(f, c, offsetof(class_fig, field))
  json_t *r = json_object();
  json_object_set_new(r, "task", json_string(bm_task_name(s->task)));
  json_object_set_new(r, "n", json_integer((json_int_t)n));
  json_t *cls = json_array();
  for (size_t k = 0; k < c; k++) json_array_append_new(cls, json_string(s->classes[k]));
  json_object_set_new(r, "classes", cls);
  json_object_set_new(r, "accuracy", json_real((double)exact / (double)n));
  json_object_set_new(r, "balanced_accuracy", bm_json_num(multilabel ? MACRO(bal) : MACRO(sens)));
  json_object_set_new(r, "f1_macro", bm_json_num(MACRO(f1)));
  json_object_set_new(r, "f1_micro", bm_json_num(bm_f1(&sum)));
  json_object_set_new(r, "auc_macro", bm_json_num(MACRO(auc)));
  json_object_set_new(r, "auc_micro", bm_json_num(auc_micro));
  json_object_set_new(r, "ap_macro", bm_json_num(MACRO(ap)));
  json_object_set_new(r, "ap_micro", bm_json_num(ap_micro));
  json_object_set_new(r, "sensitivity_macro", bm_json_num(MACRO(sens)));
  json_object_set_new(r, "sensitivity_micro", bm_json_num(bm_sensitivity(&sum)));
  json_object_set_new(r, "specificity_macro", bm_json_num(MACRO(spec)));
  json_object_set_new(r, "specificity_micro", bm_json_num(bm_specificity(&sum)));
  if (multilabel) {
    json_object_set_new(r, "exact_match", json_real((double)exact / (double)n));
    json_object_set_new(r, "label_accuracy_micro", json_real((double)(sum.tp + sum.tn) / ((double)n * (double)c)));
    json_object_set_new(r, "label_accuracy_macro", bm_json_num(MACRO(acc)));
    json_object_set_new(r, "threshold_metric", json_string(o->thr_metric));
    json_object_set_new(r, "thresholds_from", o->thr_from ? json_string(o->thr_from) : json_null());
  }
#undef MACRO

  double *lo = NULL, *hi = NULL;
  long *undef = NULL;
  if (o->bootstrap > 0) {
    lo = bm_xmalloc((c + 2) * sizeof *lo);
    hi = bm_xmalloc((c + 2) * sizeof *hi);
    undef = bm_xmalloc((c + 2) * sizeof *undef);
    bootstrap(s, ord, cell_ord, o, lo, hi, undef);
    json_object_set_new(r, "auc_macro_ci", ci_json(lo[c], hi[c]));
    json_object_set_new(r, "auc_micro_ci", ci_json(lo[c + 1], hi[c + 1]));
    json_object_set_new(r, "bootstrap", json_pack("{sIsIsfss}", "resamples", (json_int_t)o->bootstrap, "seed",
                                                  (json_int_t)o->seed, "level", 0.95, "method", "percentile"));
  }

  json_t *pc = json_object();
  for (size_t k = 0; k < c; k++) {
    class_fig *x = &f[k];
    json_t *e = json_object();
    json_object_set_new(e, "auc", bm_json_num(x->auc));
    if (lo) json_object_set_new(e, "auc_ci", ci_json(lo[k], hi[k]));
    json_object_set_new(e, "ap", bm_json_num(x->ap));
    json_object_set_new(e, "f1", bm_json_num(x->f1));
    json_object_set_new(e, "sensitivity", bm_json_num(x->sens));
    json_object_set_new(e, "specificity", bm_json_num(x->spec));
    if (multilabel) {
      json_object_set_new(e, "accuracy", json_real(x->acc));
      json_object_set_new(e, "threshold", json_real(x->thr));
    }
    json_object_set_new(e, "support", json_integer(x->support));
    json_object_set_new(pc, s->classes[k], e);
  }
  json_object_set_new(r, "per_class", pc);
  if (multilabel) {
    json_t *m = json_array();
    for (size_t k = 0; k < c; k++) {
      bm_counts *x = &f[k].cnt;
      int64_t cm[4] = {x->tn, x->fp, x->fn, x->tp};
      json_array_append_new(m, count_matrix(cm, 2, 2));
    }
    json_object_set_new(r, "confusion", m);
  } else {
    json_object_set_new(r, "confusion", count_matrix(conf, c, c));
  }

  class_notes(s, f, notes);
  if (undef)
    for (size_t k = 0; k < c + 2; k++)
      if (undef[k])
        note(notes, "bootstrap: AUROC of %s%s%s undefined in %ld of %ld resamples (one-valued targets), left out of its interval",
             k < c ? "class \"" : k == c ? "the macro mean" : "the micro average", k < c ? s->classes[k] : "",
             k < c ? "\"" : "", undef[k], o->bootstrap);

  for (size_t k = 0; k < c; k++) free(ord[k]);
  free(ord);
  free(cell_ord);
  free(conf);
  free(f);
  free(lo);
  free(hi);
  free(undef);
  return r;
}

json_t *bm_report_retrieval(const bm_scoreset *s, const bm_retrieval_opts *ro, int pessimistic) {
  size_t n = s->n;
  int64_t *cnt = bm_xmalloc(bm_mul_size(4 * n, sizeof *cnt));
  int64_t *ib = cnt, *it = cnt + n, *tb = cnt + 2 * n, *tt = cnt + 3 * n;
  bm_retrieval_counts(s->img, s->txt, n, s->d, ro, ib, it, tb, tt);
  json_t *r = json_object();
  json_object_set_new(r, "task", json_string("retrieval"));
  json_object_set_new(r, "n", json_integer((json_int_t)n));
  json_object_set_new(r, "dim", json_integer((json_int_t)s->d));
  json_object_set_new(r, "ties", json_string(pessimistic ? "pessimistic" : "optimistic"));
  static const int ks[] = {1, 5, 10};
  for (int dir = 0; dir < 2; dir++)
    for (int i = 0; i < 3; i++) {
      char key[16];
      snprintf(key, sizeof key, "%s_r%d", dir ? "t2i" : "i2t", ks[i]);
      json_object_set_new(r, key, json_real(bm_recall_at(dir ? tb : ib, dir ? tt : it, n, pessimistic, ks[i])));
    }
  int64_t ti = 0, tq = 0;
  for (size_t i = 0; i < n; i++) {
    ti += it[i] > 0;
    tq += tt[i] > 0;
  }
  /* how many queries the tie rule touched: how much it could matter */
  json_object_set_new(r, "i2t_tied_queries", json_integer(ti));
  json_object_set_new(r, "t2i_tied_queries", json_integer(tq));
  free(cnt);
  return r;
}
