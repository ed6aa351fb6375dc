/* bm-score - the metrics of a scored record stream: classification figures
 * as scikit-learn computes them, or cross-modal retrieval Recall@k; a
 * readable table or one JSON object; ROC and confusion plots; the mean and
 * sample standard deviation over several runs' JSON.
 *
 *   bm-score [--json] [--thresholds-from VAL] [--bootstrap N] [--plot P] [FILE]
 *   bm-score --aggregate A.json B.json ...
 */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "kernels.h"
#include "scorereport.h"
#include "scoretable.h"
#include "svgplot.h"
#include "util.h"

static const char usage[] =
    "Usage: bm-score [OPTION]... [FILE]\n"
    "       bm-score --aggregate [--json] RUN.json...\n"
    "Score a record stream: records with \"target\" and \"scores\" or \"prob\" give\n"
    "classification metrics (the header's task: multiclass or multilabel); records\n"
    "with \"img_emb\" and \"txt_emb\" (pair i matches) and no \"target\" give\n"
    "retrieval Recall@1/5/10 both ways. With no FILE, or FILE -, read stdin.\n"
    "\n"
    "  -j, --json                 print one JSON object instead of a table\n"
    "  -t, --task TASK            multiclass, multilabel or retrieval (default: the\n"
    "                             header's \"task\"; retrieval when there are no targets)\n"
    "  -r, --retrieval            the same as --task retrieval\n"
    "      --threshold T          multilabel decision threshold on probabilities\n"
    "                             (positive when prob >= T; default 0.5)\n"
    "      --thresholds-from VAL  choose each class's threshold on the validation\n"
    "                             stream VAL (never the scored stream)\n"
    "      --threshold-metric M   f1 (default) or youden: what the choice maximizes\n"
    "  -b, --bootstrap N          95% percentile intervals of AUROC from N resamples\n"
    "  -s, --seed S               the resamples' seed (default 0)\n"
    "  -p, --plot PREFIX          write PREFIX-roc.svg and PREFIX-confusion.svg\n"
    "      --ties RULE            retrieval: pessimistic (default; a tie ranks ahead\n"
    "                             of the true pair) or optimistic (behind it)\n"
    "      --block N              retrieval tile edge (default 1024)\n"
    "  -a, --aggregate            the arguments are bm-score --json outputs: print the\n"
    "                             mean and sample standard deviation (ddof=1) of each figure\n"
    "  -q, --quiet                no progress line\n"
    "  -h, --help                 this help\n"
    "\n"
    "Exit status: 0 ok, 1 bad input or a failed write, 2 usage.\n";

typedef struct {
  int json, aggregate, quiet, optimistic;
  bm_task task;
  double threshold;
  const char *thr_from, *plot;
  bm_thr_metric thr_metric;
  long bootstrap;
  uint64_t seed;
  bm_retrieval_opts ropt;
} options;

enum { OPT_THRESHOLD = 256, OPT_THR_FROM, OPT_THR_METRIC, OPT_TIES, OPT_BLOCK };

static void parse_options(int argc, char **argv, options *o) {
  static const struct option longs[] = {
      {"json", no_argument, 0, 'j'},         {"task", required_argument, 0, 't'},
      {"retrieval", no_argument, 0, 'r'},    {"threshold", required_argument, 0, OPT_THRESHOLD},
      {"thresholds-from", required_argument, 0, OPT_THR_FROM},
      {"threshold-metric", required_argument, 0, OPT_THR_METRIC},
      {"bootstrap", required_argument, 0, 'b'}, {"seed", required_argument, 0, 's'},
      {"plot", required_argument, 0, 'p'},   {"ties", required_argument, 0, OPT_TIES},
      {"block", required_argument, 0, OPT_BLOCK},
      {"aggregate", no_argument, 0, 'a'},    {"quiet", no_argument, 0, 'q'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  int c;
  long v;
  while ((c = getopt_long(argc, argv, "jt:rb:s:p:aqh", longs, NULL)) != -1) {
    switch (c) {
    case 'j': o->json = 1; break;
    case 't':
      if (bm_task_parse(optarg, &o->task)) bm_usage_die("--task: not multiclass, multilabel or retrieval: %s", optarg);
      break;
    case 'r': o->task = BM_TASK_RETRIEVAL; break;
    case OPT_THRESHOLD:
      if (bm_parse_double(optarg, &o->threshold) || !(o->threshold >= 0 && o->threshold <= 1))
        bm_usage_die("--threshold: not a probability: %s", optarg);
      break;
    case OPT_THR_FROM: o->thr_from = optarg; break;
    case OPT_THR_METRIC:
      if (strcmp(optarg, "f1") == 0) o->thr_metric = BM_THR_F1;
      else if (strcmp(optarg, "youden") == 0) o->thr_metric = BM_THR_YOUDEN;
      else bm_usage_die("--threshold-metric: not f1 or youden: %s", optarg);
      break;
    case 'b':
      if (bm_parse_long(optarg, 0, 1000000, &o->bootstrap)) bm_usage_die("--bootstrap: not a count (0..1000000): %s", optarg);
      break;
    case 's':
      if (bm_parse_long(optarg, 0, 1L << 62, &v)) bm_usage_die("--seed: not a non-negative integer: %s", optarg);
      o->seed = (uint64_t)v;
      break;
    case 'p': o->plot = optarg; break;
    case OPT_TIES:
      if (strcmp(optarg, "pessimistic") == 0) o->optimistic = 0;
      else if (strcmp(optarg, "optimistic") == 0) o->optimistic = 1;
      else bm_usage_die("--ties: not pessimistic or optimistic: %s", optarg);
      break;
    case OPT_BLOCK:
      if (bm_parse_long(optarg, 1, 16384, &v)) bm_usage_die("--block: not a size (1..16384): %s", optarg);
      o->ropt.block = (size_t)v;
      break;
    case 'a': o->aggregate = 1; break;
    case 'q': o->quiet = o->ropt.quiet = 1; break;
    case 'h': fputs(usage, stdout); exit(0);
    default: bm_usage_die("unknown option (see --help)");
    }
  }
}

/* Everything goes to stdout in one piece, only once it is complete. */
static void emit(const char *text, size_t len) {
  if (fwrite(text, 1, len, stdout) != len || fflush(stdout)) bm_die("write error on stdout");
}

static void emit_report(json_t *report, const options *o) {
  char *text;
  size_t len;
  if (o->json) {
    text = json_dumps(report, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    if (!text) bm_die("cannot format the report as JSON");
    len = strlen(text);
    text = bm_xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = 0;
  } else {
    FILE *m = open_memstream(&text, &len);
    if (!m) bm_die("out of memory");
    if (o->aggregate) bm_aggregate_table(m, report);
    else bm_score_table(m, report);
    if (fclose(m)) bm_die("out of memory");
  }
  emit(text, len);
  free(text);
}

static json_t *score_stream(const char *path, const options *o) {
  bm_scoreset s;
  bm_scoreset_read(path, o->task, &s);
  json_t *notes = json_array(), *report;
  if (s.task == BM_TASK_RETRIEVAL) {
    if (o->thr_from || o->bootstrap || o->plot)
      bm_usage_die("%s: --thresholds-from, --bootstrap and --plot apply to classification, not retrieval", s.name);
    report = bm_report_retrieval(&s, &o->ropt, !o->optimistic);
  } else {
    bm_report_opts ro = {.default_thr = o->threshold, .thr_metric = "fixed", .bootstrap = o->bootstrap, .seed = o->seed};
    double *thr = NULL;
    if (o->thr_from) {
      if (s.task != BM_TASK_MULTILABEL)
        bm_usage_die("%s: --thresholds-from applies to multilabel; multiclass predicts the top class", s.name);
      bm_scoreset val;
      bm_scoreset_read(o->thr_from, BM_TASK_MULTILABEL, &val);
      if (val.c != s.c) bm_die("%s: %d classes, but %s has %d", o->thr_from, val.c, s.name, s.c);
      for (int k = 0; k < s.c; k++)
        if (strcmp(val.classes[k], s.classes[k]))
          bm_die("%s: class %d is \"%s\", but in %s it is \"%s\"", o->thr_from, k, val.classes[k], s.name, s.classes[k]);
      thr = bm_choose_thresholds(&val, o->thr_metric, notes);
      bm_scoreset_free(&val);
      ro.thr = thr;
      ro.thr_metric = o->thr_metric == BM_THR_F1 ? "f1" : "youden";
      ro.thr_from = o->thr_from;
    }
    report = bm_report_classify(&s, &ro, notes);
    if (o->plot) bm_plot_all(o->plot, &s, report);
    free(thr);
  }
  json_object_set_new(report, "notes", notes);
  bm_scoreset_free(&s);
  return report;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  bm_blas_init(argv); /* retrieval GEMMs: OpenBLAS's right kernels */
  options o = {.threshold = 0.5, .thr_metric = BM_THR_F1};
  parse_options(argc, argv, &o);
  json_t *report;
  if (o.aggregate) {
    if (optind == argc) bm_usage_die("--aggregate needs the JSON outputs of bm-score runs");
    report = bm_aggregate_files((const char *const *)argv + optind, argc - optind);
  } else {
    if (argc - optind > 1) bm_usage_die("one input stream at a time (cat them into one stream)");
    report = score_stream(optind < argc ? argv[optind] : NULL, &o);
  }
  emit_report(report, &o);
  json_decref(report);
  return 0;
}
