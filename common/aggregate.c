#include "aggregate.h"

#include <math.h>
#include <string.h>

#include "util.h"

typedef struct {
  const char *const *paths;
  int n;
  json_t *notes;
} agg_ctx;

static json_t *merge(agg_ctx *c, json_t **v, const char *path, json_t **std);

static json_t *merge_numbers(agg_ctx *c, json_t **v, const char *path, json_t **std) {
  double sum = 0, x[c->n];
  int k = 0;
  for (int i = 0; i < c->n; i++) {
    if (!v[i] || json_is_null(v[i])) continue;
    if (!json_is_number(v[i])) bm_die("%s: \"%s\" is a number in %s but not here", c->paths[i], path, c->paths[0]);
    sum += x[k++] = json_number_value(v[i]);
  }
  if (k < c->n) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: null or absent in %d of %d runs: mean and std over the other %d", path, c->n - k, c->n, k);
    json_array_append_new(c->notes, json_string(msg));
  }
  double mean = sum / k, ss = 0;
  for (int i = 0; i < k; i++) ss += (x[i] - mean) * (x[i] - mean);
  *std = k >= 2 ? json_real(sqrt(ss / (k - 1))) : json_null();
  return json_real(mean);
}

static json_t *merge_object(agg_ctx *c, json_t **v, const char *path, json_t **std) {
  json_t *mean = json_object(), *sd = json_object(), *seen = json_object();
  json_t *kids[c->n];
  for (int i = 0; i < c->n; i++) {
    if (!v[i] || json_is_null(v[i])) continue;
    if (!json_is_object(v[i])) bm_die("%s: \"%s\" is an object in %s but not here", c->paths[i], path, c->paths[0]);
    const char *key;
    json_t *val;
    json_object_foreach(v[i], key, val) {
      if (json_object_get(seen, key) || (!*path && strcmp(key, "notes") == 0)) continue;
      json_object_set_new(seen, key, json_true());
      for (int j = 0; j < c->n; j++) kids[j] = json_is_object(v[j]) ? json_object_get(v[j], key) : NULL;
      char sub[1024];
      snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
      json_t *s = NULL;
      json_object_set_new(mean, key, merge(c, kids, sub, &s));
      if (s) json_object_set_new(sd, key, s);
    }
  }
  json_decref(seen);
  if (json_object_size(sd)) *std = sd;
  else json_decref(sd);
  return mean;
}

static json_t *merge_array(agg_ctx *c, json_t **v, const char *path, json_t **std) {
  int first = 0;
  while (!json_is_array(v[first])) first++;
  size_t len = json_array_size(v[first]);
  for (int i = 0; i < c->n; i++) /* a run's null (an undefined interval) stands for nulls */
    if ((v[i] && !json_is_null(v[i])) && (!json_is_array(v[i]) || json_array_size(v[i]) != len))
      bm_die("%s: \"%s\" is not an array of %zu like in %s", c->paths[i], path, len, c->paths[first]);
  json_t *mean = json_array(), *sd = json_array(), *kids[c->n];
  int any = 0;
  for (size_t j = 0; j < len; j++) {
    for (int i = 0; i < c->n; i++) kids[i] = json_array_get(v[i], j);
    char sub[1024];
    snprintf(sub, sizeof sub, "%s[%zu]", path, j);
    json_t *s = NULL;
    json_array_append_new(mean, merge(c, kids, sub, &s));
    any |= s != NULL;
    json_array_append_new(sd, s ? s : json_null());
  }
  if (any) *std = sd;
  else json_decref(sd);
  return mean;
}

/* Strings that differ between runs (a per-seed validation file) become the
 * array of the runs' values; "task" must agree. */
static json_t *merge_strings(agg_ctx *c, json_t **v, const char *path) {
  int same = 1;
  for (int i = 1; i < c->n; i++) same &= json_equal(v[0], v[i]);
  if (same) return json_deep_copy(v[0]);
  if (strcmp(path, "task") == 0) bm_die("the runs do not share one task: %s in %s", json_string_value(v[0]), c->paths[0]);
  json_t *a = json_array();
  for (int i = 0; i < c->n; i++) json_array_append(a, v[i] ? v[i] : json_null());
  return a;
}

static json_t *merge(agg_ctx *c, json_t **v, const char *path, json_t **std) {
  json_t *first = NULL;
  for (int i = 0; i < c->n && !first; i++)
    if (v[i] && !json_is_null(v[i])) first = v[i];
  *std = NULL;
  if (!first) {
    *std = json_null();
    return json_null();
  }
  if (json_is_number(first)) return merge_numbers(c, v, path, std);
  if (json_is_object(first)) return merge_object(c, v, path, std);
  if (json_is_array(first)) return merge_array(c, v, path, std);
  return merge_strings(c, v, path);
}

json_t *bm_aggregate_files(const char *const *paths, int n) {
  json_t **runs = bm_xcalloc((size_t)n, sizeof *runs);
  agg_ctx c = {.paths = paths, .n = n, .notes = json_array()};
  for (int i = 0; i < n; i++) {
    json_error_t err;
    runs[i] = json_load_file(paths[i], 0, &err);
    if (!runs[i]) bm_die("%s: line %d: %s", paths[i], err.line, err.text);
    if (!json_is_string(json_object_get(runs[i], "task")) || json_object_get(runs[i], "mean"))
      bm_die("%s: not the JSON output of one bm-score run (no \"task\")", paths[i]);
  }
  json_t *sd = NULL, *mean = merge(&c, runs, "", &sd);
  json_t *r = json_object();
  json_object_set(r, "task", json_object_get(mean, "task"));
  json_t *names = json_array();
  for (int i = 0; i < n; i++) {
    json_array_append_new(names, json_string(paths[i]));
    size_t k;
    json_t *note;
    json_array_foreach(json_object_get(runs[i], "notes"), k, note) {
      char msg[1200];
      snprintf(msg, sizeof msg, "%s: %s", paths[i], json_string_value(note));
      json_array_append_new(c.notes, json_string(msg));
    }
    json_decref(runs[i]);
  }
  json_object_set_new(r, "runs", names);
  json_object_set_new(r, "n_runs", json_integer(n));
  json_object_set_new(r, "std_ddof", json_integer(1));
  json_object_set_new(r, "mean", mean);
  json_object_set_new(r, "std", sd ? sd : json_object());
  json_object_set_new(r, "notes", c.notes);
  free(runs);
  return r;
}

/* One row per number of the mean tree outside arrays (the confusion
 * matrices and intervals stay in the JSON). */
static void rows(FILE *f, const json_t *mean, const json_t *sd, const char *path) {
  const char *key;
  json_t *m;
  json_object_foreach((json_t *)mean, key, m) {
    char sub[1024];
    snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
    const json_t *s = json_object_get(sd, key);
    if (json_is_object(m)) rows(f, m, s, sub);
    if (!json_is_number(m)) continue;
    fprintf(f, "%-40s %10.4f", sub, json_number_value(m));
    if (json_is_number(s)) fprintf(f, " %10.4f\n", json_number_value(s));
    else fprintf(f, " %10s\n", "-");
  }
}

void bm_aggregate_table(FILE *f, const json_t *a) {
  fprintf(f, "bm-score: %s, mean and sample standard deviation (ddof=1) over %lld runs\n",
          json_string_value(json_object_get(a, "task")), (long long)json_integer_value(json_object_get(a, "n_runs")));
  fprintf(f, "%-40s %10s %10s\n", "figure", "mean", "std");
  rows(f, json_object_get(a, "mean"), json_object_get(a, "std"), "");
  const json_t *notes = json_object_get(a, "notes"), *n;
  size_t i;
  if (json_array_size(notes)) fputs("\nnotes:\n", f);
  json_array_foreach(notes, i, n) fprintf(f, "  %s\n", json_string_value(n));
}
