/* train_loop.c - bm-train's epochs, steps, validation and checkpoints. */
#include "train_loop.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "scorereport.h"
#include "scoreset.h"
#include "util.h"

double bm_task_loss(const bm_train_task *t, const float *logits, const float *Y, int B, float *dlogits) {
  return t->multilabel ? bm_bce_logits(logits, Y, t->pw, B, t->C, dlogits)
                       : bm_softmax_xent(logits, Y, B, t->C, dlogits);
}

bm_val_result bm_train_evaluate(bm_train_task *t, const bm_trainset *vs, int batch) {
  size_t n = (size_t)vs->n, C = (size_t)t->C;
  float *Y = bm_xmalloc(bm_mul_size((size_t)batch, C * sizeof(float)));
  float *L = bm_xmalloc(bm_mul_size((size_t)batch, C * sizeof(float)));
  float *P = bm_xmalloc(C * sizeof(float));
  long *idx = bm_xmalloc(sizeof(long) * (size_t)batch);
  bm_scoreset s = {.task = t->multilabel ? BM_TASK_MULTILABEL : BM_TASK_MULTICLASS, .n = n, .c = t->C,
                   .classes = vs->classes, .name = (char *)vs->name};
  s.p = bm_xmalloc(bm_mul_size(n * C, sizeof(double)));
  s.y = bm_xmalloc(bm_mul_size(n, C));
  s.top = bm_xmalloc(bm_mul_size(n, sizeof(int32_t)));
  double total = 0;
  for (size_t at = 0; at < n; at += (size_t)batch) {
    int B = (int)(n - at < (size_t)batch ? n - at : (size_t)batch);
    for (int j = 0; j < B; j++) idx[j] = (long)at + j;
    for (size_t q = 0; q < (size_t)B * C; q++) Y[q] = vs->y[at * C + q];
    t->logits(t, vs, idx, B, L);
    total += bm_task_loss(t, L, Y, B, NULL) * B;
    for (int j = 0; j < B; j++) {
      const float *l = L + (size_t)j * C;
      size_t i = at + (size_t)j;
      bm_linhead_prob(l, t->C, t->multilabel, P);
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
  bm_val_result r = {.v = {total / (double)n}};
  for (int k = 1; k < BM_NSEL; k++) {
    json_t *v = json_object_get(rep, bm_sel_names[k]);
    r.v[k] = json_is_number(v) ? json_number_value(v) : NAN;
  }
  json_decref(rep);
  json_decref(notes);
  free(s.p), free(s.y), free(s.top), free(Y), free(L), free(P), free(idx);
  return r;
}

/* Is a better than b for this metric? NAN is worse than anything. */
static int better(int sel, double a, double b) {
  if (isnan(a)) return 0;
  if (isnan(b)) return 1;
  return sel == BM_SEL_LOSS ? a < b : a > b;
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

/* --accum: sum of bs * (mean gradient) per micro-batch, in double so that
 * a group's gradient is its samples' mean to float rounding whatever N */
static double **acc_new(const bm_adamw *opt) {
  double **acc = bm_xcalloc((size_t)opt->nparams, sizeof *acc);
  for (int i = 0; i < opt->nparams; i++) acc[i] = bm_xcalloc(opt->params[i].n, sizeof(double));
  return acc;
}

static void acc_add(double **acc, const bm_adamw *opt, int bs) {
  for (int i = 0; i < opt->nparams; i++) {
    const float *gr = opt->params[i].grad;
    double *a = acc[i];
    for (size_t k = 0; k < opt->params[i].n; k++) a[k] += (double)bs * gr[k];
  }
}

/* the gradient of the group's mean loss into the params; the sums restart */
static void acc_take(double **acc, bm_adamw *opt, long gn) {
  for (int i = 0; i < opt->nparams; i++) {
    float *gr = opt->params[i].grad;
    double *a = acc[i];
    for (size_t k = 0; k < opt->params[i].n; k++) gr[k] = (float)(a[k] / (double)gn), a[k] = 0;
  }
}

/* Batch s of an epoch shuffled by perm: its records into bidx; their count. */
static int batch_of(const long *perm, const long *idx, long m, long B, long s, long *bidx) {
  int bs = (int)(m - s * B < B ? m - s * B : B);
  for (int j = 0; j < bs; j++) bidx[j] = idx[perm[s * B + j]];
  return bs;
}

/* The validation and the checkpoints of an epoch end; 1: stop (patience). */
static int epoch_end(bm_train_task *t, const bm_train_opts *o, const bm_trainset *vs, bm_train_state *st,
                     const char *lastp, json_t *ej) {
  int improved;
  if (vs) {
    st->last_val = t->evaluate ? t->evaluate(t, vs, (int)o->batch) : bm_train_evaluate(t, vs, (int)o->batch);
    st->has_val = 1;
    double v = st->last_val.v[o->select];
    improved = st->best_epoch == 0 || better(o->select, v, st->best);
    if (improved) st->best = v, st->best_epoch = st->epoch, st->bad_epochs = 0;
    else st->bad_epochs++;
    json_object_set_new(ej, "val", bm_val_json(&st->last_val));
  } else {
    improved = 1; /* nothing to select on: OUT is the last epoch */
    st->best_epoch = st->epoch;
  }
  if (st->epoch == o->epochs || (o->patience && st->bad_epochs >= o->patience)) st->finished = 1;
  json_object_set_new(ej, "best_epoch", json_integer(st->best_epoch));
  if (improved) t->save(t, o->out, 0, st);
  t->save(t, lastp, 1, st); /* with the moments, for --resume */
  return st->finished && st->epoch < o->epochs;
}

void bm_train_run(bm_train_task *t, const bm_train_opts *o, const bm_trainset *ds, const long *idx, long m,
                  const bm_trainset *vs, bm_train_state *st, const char *lastp) {
  bm_adamw *opt = t->opt;
  FILE *lf = NULL;
  if (o->log && !(lf = fopen(o->log, o->resume ? "a" : "w"))) bm_die("cannot open %s: %s", o->log, strerror(errno));
  /* an optimizer step every N batches of an epoch (groups never cross epochs,
   * so a run resumes at any epoch end) */
  long B = o->batch, N = o->accum, spe = (m + B - 1) / B, gpe = (spe + N - 1) / N, total = o->epochs * gpe;
  long *perm = bm_xmalloc(sizeof(long) * (size_t)m), *bidx = bm_xmalloc(sizeof(long) * (size_t)B);
  /* t->next: the next batch, maybe the next epoch's first (its permutation
   * made early, in nperm) */
  long *nperm = t->next ? bm_xmalloc(sizeof(long) * (size_t)m) : NULL, *nidx = NULL, pe = -1;
  if (t->next) nidx = bm_xmalloc(sizeof(long) * (size_t)B);
  if (N > 1 && t->step && !t->grad_acc) bm_die("internal error: --accum %ld: the task does not accumulate", N);
  double **acc = N > 1 && !t->grad_acc ? acc_new(opt) : NULL;
  bm_progress prog;
  bm_progress_init(&prog, o->quiet);
  double t0 = bm_now();
  long steps_here = 0, end = o->stop_after && o->stop_after < o->epochs ? o->stop_after : o->epochs;
  for (long e = st->epoch; e < end; e++) {
    if (pe == e) {
      long *tmp = perm;
      perm = nperm, nperm = tmp;
    } else bm_permutation(perm, m, bm_sub_seed((uint64_t)o->seed, (uint64_t)e));
    double sum = 0;
    for (long g = 0; g < gpe; g++) {
      double ts = bm_now(), gsum = 0, loss = 0;
      long s1 = (g + 1) * N < spe ? (g + 1) * N : spe, gn = 0;
      long gtot = (s1 * B < m ? s1 * B : m) - g * N * B; /* the group's records */
      for (long s = g * N; s < s1; s++) {
        int bs = batch_of(perm, idx, m, B, s, bidx);
        if (t->next && (s + 1 < spe || e + 1 < end)) {
          long ne = s + 1 < spe ? e : e + 1, ns = s + 1 < spe ? s + 1 : 0;
          if (ne != e && pe != ne) bm_permutation(nperm, m, bm_sub_seed((uint64_t)o->seed, (uint64_t)ne)), pe = ne;
          int nb = batch_of(ne == e ? perm : nperm, idx, m, B, ns, nidx);
          t->next(t, nidx, nb, ne, (uint64_t)(ne * spe + ns));
        }
        if (t->grad_acc && N > 1)
          loss = t->grad_acc(t, bidx, bs, e, (uint64_t)(e * spe + s), (double)bs / (double)gtot, s == g * N);
        else loss = t->grad(t, bidx, bs, e, (uint64_t)(e * spe + s));
        if (!isfinite(loss)) {
          bm_progress_done(&prog);
          if (e > 0)
            bm_die("loss is %s at step %ld (epoch %ld, step %ld of the epoch): stopped; %s holds epoch %ld, the last "
                   "good one", isnan(loss) ? "nan" : "inf", st->step + 1, e + 1, g + 1, lastp, e);
          bm_die("loss is %s at step %ld (epoch 1, step %ld of the epoch): stopped; no checkpoint was written",
                 isnan(loss) ? "nan" : "inf", st->step + 1, g + 1);
        }
        if (acc) acc_add(acc, opt, bs);
        gsum += loss * bs, gn += bs;
      }
      if (acc) acc_take(acc, opt, gn);
      if (s1 - g * N > 1) loss = gsum / (double)gn; /* one batch: its loss as it was */
      double gnorm, f = bm_cosine_warmup(st->step, o->warmup, total);
      int took = 1;
      if (t->step) took = t->step(t, f, o->clip, &gnorm); /* a skipped fp16 step still counts in the schedule */
      else {
        gnorm = bm_clip_grad_norm(opt, o->clip);
        bm_adamw_step(opt, f);
      }
      if (took && t->after_step) t->after_step(t);
      st->step++, steps_here++;
      sum += gsum;
      double now = bm_now();
      char eta[32];
      fmt_eta((now - t0) / (double)steps_here * (double)(end * gpe - st->step), eta, sizeof eta);
      bm_progress_update(&prog, "epoch %ld/%ld step %ld/%ld loss %.4f ETA %s", e + 1, o->epochs, st->step, total,
                         loss, eta);
      json_t *lj = json_pack("{sIsIsfsf}", "step", (json_int_t)st->step, "epoch", (json_int_t)(e + 1), "loss", loss,
                             "lr", t->log_lr * f);
      /* JSON has no inf or NaN: an fp16 step that overflowed logs null */
      json_object_set_new(lj, "grad_norm", isfinite(gnorm) ? json_real(gnorm) : json_null());
      if (!took) json_object_set_new(lj, "skipped", json_true());
      json_object_set_new(lj, "samples_per_s", json_real(gn / (now - ts > 1e-9 ? now - ts : 1e-9)));
      log_line(lf, lj, o->log);
    }
    st->epoch = e + 1;
    json_t *ej = json_pack("{sIsIsf}", "epoch", (json_int_t)st->epoch, "step", (json_int_t)st->step, "train_loss",
                           sum / (double)m);
    int stop = epoch_end(t, o, vs, st, lastp, ej);
    log_line(lf, ej, o->log);
    if (stop) {
      bm_progress_done(&prog);
      if (!o->quiet) bm_warn("no improvement of %s for %ld epochs: stopped after epoch %ld", bm_sel_names[o->select],
                             st->bad_epochs, st->epoch);
      break;
    }
  }
  bm_progress_done(&prog);
  if (!o->quiet) {
    char b[64] = "";
    if (vs) snprintf(b, sizeof b, " (%s %.6g)", bm_sel_names[o->select], st->best);
    bm_warn("%ld of %ld epochs, %ld steps on %ld of %ld records; best epoch %ld%s in %s, last in %s", st->epoch,
            o->epochs, st->step, m, ds->n, st->best_epoch, b, o->out, lastp);
  }
  if (lf && fclose(lf)) bm_die("%s: %s", o->log, strerror(errno));
  free(perm), free(bidx), free(nperm), free(nidx);
  for (int i = 0; acc && i < opt->nparams; i++) free(acc[i]);
  free(acc);
}
