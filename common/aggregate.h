/* aggregate.h - bm-score --aggregate: the mean and the sample standard
 * deviation (ddof = 1, the papers' "+-" over seeds) of every number in
 * several bm-score --json outputs, matched by key path (per_class and the
 * confusion matrices included). */
#ifndef BM_AGGREGATE_H
#define BM_AGGREGATE_H

#include <jansson.h>
#include <stdio.h>

/* {"task", "runs", "n_runs", "std_ddof": 1, "mean": {..}, "std": {..},
 * "notes"}: mean has the runs' shape; std has the numbers only. A figure
 * null in some runs is averaged over the others (a note says so); with
 * fewer than two values its std is null. Dies on unreadable files, a task
 * mismatch or arrays of different lengths. */
json_t *bm_aggregate_files(const char *const *paths, int n);
void bm_aggregate_table(FILE *f, const json_t *agg);

#endif
