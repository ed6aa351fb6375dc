/* scorereport.h - the figures bm-score reports, as one JSON object.
 *
 * Every figure is computed here once; the table, the plots and --aggregate
 * read this object, so the JSON and the table can never disagree.
 * Undefined figures (a zero denominator, AUROC of a one-valued class) are
 * JSON null and are left out of the macro means; each such case adds a
 * line to "notes". man/man1/bm-score.1 defines every key. */
#ifndef BM_SCOREREPORT_H
#define BM_SCOREREPORT_H

#include <jansson.h>
#include <stdint.h>

#include "metrics.h"
#include "retrieval.h"
#include "scoreset.h"

typedef struct {
  const double *thr;      /* multilabel: per-class thresholds, or NULL */
  double default_thr;     /* when thr is NULL (or a class's is NAN) */
  const char *thr_metric; /* "fixed", "f1" or "youden" */
  const char *thr_from;   /* the validation stream, or NULL */
  long bootstrap;         /* resamples for AUROC intervals; 0: none */
  uint64_t seed;
} bm_report_opts;

/* A JSON number, or null when x is not finite. */
json_t *bm_json_num(double x);

/* Per-class thresholds chosen on a validation set (multilabel), NAN where
 * the class's validation targets hold one value (a note says so). */
double *bm_choose_thresholds(const bm_scoreset *val, bm_thr_metric m, json_t *notes);

json_t *bm_report_classify(const bm_scoreset *s, const bm_report_opts *o, json_t *notes);
json_t *bm_report_retrieval(const bm_scoreset *s, const bm_retrieval_opts *ro, int pessimistic);

#endif
