#include "scoretable.h"

#include <string.h>

/* A figure with 4 decimals, or "-" when it is null (undefined). */
static void cell(FILE *f, const json_t *v, int width) {
  if (json_is_number(v)) fprintf(f, " %*.4f", width, json_number_value(v));
  else fprintf(f, " %*s", width, "-");
}

static const char *str(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "?";
}

static void retrieval_table(FILE *f, const json_t *r) {
  fprintf(f, "bm-score: retrieval, %lld pairs, %lld-dim embeddings (ties ranked %s)\n",
          (long long)json_integer_value(json_object_get(r, "n")),
          (long long)json_integer_value(json_object_get(r, "dim")), str(r, "ties"));
  fprintf(f, "%-12s %7s %7s %7s %12s\n", "query", "R@1", "R@5", "R@10", "tied queries");
  static const char *dirs[][2] = {{"i2t", "image->text"}, {"t2i", "text->image"}};
  for (int d = 0; d < 2; d++) {
    char key[32];
    fprintf(f, "%-12s", dirs[d][1]);
    static const int ks[] = {1, 5, 10};
    for (int i = 0; i < 3; i++) {
      snprintf(key, sizeof key, "%s_r%d", dirs[d][0], ks[i]);
      cell(f, json_object_get(r, key), 7);
    }
    snprintf(key, sizeof key, "%s_tied_queries", dirs[d][0]);
    fprintf(f, " %12lld\n", (long long)json_integer_value(json_object_get(r, key)));
  }
}

static void confusion_table(FILE *f, const json_t *r, int multilabel, int w) {
  const json_t *conf = json_object_get(r, "confusion"), *classes = json_object_get(r, "classes");
  size_t k;
  const json_t *row;
  if (multilabel) {
    fprintf(f, "\nconfusion per class (at the thresholds above)\n%-*s %8s %8s %8s %8s\n", w, "class", "TP", "FP", "FN", "TN");
    json_array_foreach(conf, k, row) {
      const json_t *neg = json_array_get(row, 0), *pos = json_array_get(row, 1);
      fprintf(f, "%-*s %8lld %8lld %8lld %8lld\n", w, json_string_value(json_array_get(classes, k)),
              (long long)json_integer_value(json_array_get(pos, 1)), (long long)json_integer_value(json_array_get(neg, 1)),
              (long long)json_integer_value(json_array_get(pos, 0)), (long long)json_integer_value(json_array_get(neg, 0)));
    }
    return;
  }
  fprintf(f, "\nconfusion matrix (rows: true class, columns: predicted class)\n%-*s", w, "");
  const json_t *name;
  json_array_foreach(classes, k, name) fprintf(f, " %8.8s", json_string_value(name));
  fputc('\n', f);
  json_array_foreach(conf, k, row) {
    fprintf(f, "%-*s", w, json_string_value(json_array_get(classes, k)));
    size_t j;
    const json_t *v;
    json_array_foreach(row, j, v) fprintf(f, " %8lld", (long long)json_integer_value(v));
    fputc('\n', f);
  }
}

void bm_score_table(FILE *f, const json_t *r) {
  if (strcmp(str(r, "task"), "retrieval") == 0) {
    retrieval_table(f, r);
  } else {
    int ml = strcmp(str(r, "task"), "multilabel") == 0;
    const json_t *pc = json_object_get(r, "per_class"), *e;
    const char *name;
    int w = 8, ci = json_object_get(r, "bootstrap") != NULL;
    json_object_foreach((json_t *)pc, name, e) w = (int)strlen(name) > w ? (int)strlen(name) : w;
    fprintf(f, "bm-score: %s, %lld records, %zu classes", str(r, "task"),
            (long long)json_integer_value(json_object_get(r, "n")), json_object_size(pc));
    if (ml && json_is_string(json_object_get(r, "thresholds_from")))
      fprintf(f, ", thresholds maximizing %s on %s", str(r, "threshold_metric"), str(r, "thresholds_from"));
    fprintf(f, "\n%-*s %8s %7s %7s %7s %7s %7s", w, "class", "support", "auc", "ap", "f1", "sens", "spec");
    if (ml) fprintf(f, " %7s %7s", "acc", "thresh");
    if (ci) fprintf(f, "   auc 95%% CI");
    fputc('\n', f);
    static const char *figs[] = {"auc", "ap", "f1", "sensitivity", "specificity"};
    json_object_foreach((json_t *)pc, name, e) {
      fprintf(f, "%-*s %8lld", w, name, (long long)json_integer_value(json_object_get(e, "support")));
      for (int i = 0; i < 5; i++) cell(f, json_object_get(e, figs[i]), 7);
      if (ml) {
        cell(f, json_object_get(e, "accuracy"), 7);
        cell(f, json_object_get(e, "threshold"), 7);
      }
      const json_t *iv = json_object_get(e, "auc_ci");
      if (ci && json_is_array(iv))
        fprintf(f, "   [%.4f, %.4f]", json_number_value(json_array_get(iv, 0)), json_number_value(json_array_get(iv, 1)));
      else if (ci) fprintf(f, "   -");
      fputc('\n', f);
    }
    static const char *avg[] = {"macro", "micro"};
    for (int a = 0; a < 2; a++) {
      fprintf(f, "%-*s %8s", w, avg[a], "");
      for (int i = 0; i < 5; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s_%s", figs[i], avg[a]);
        cell(f, json_object_get(r, key), 7);
      }
      if (ml) {
        char key[64];
        snprintf(key, sizeof key, "label_accuracy_%s", avg[a]);
        cell(f, json_object_get(r, key), 7);
      }
      char key[64];
      snprintf(key, sizeof key, "auc_%s_ci", avg[a]);
      const json_t *iv = json_object_get(r, key);
      if (ci && json_is_array(iv))
        fprintf(f, "%s   [%.4f, %.4f]", ml ? "        " : "", json_number_value(json_array_get(iv, 0)), json_number_value(json_array_get(iv, 1)));
      fputc('\n', f);
    }
    fprintf(f, "\naccuracy%s", ml ? " (exact match)" : "");
    cell(f, json_object_get(r, "accuracy"), 0);
    fprintf(f, "   balanced accuracy%s", ml ? " (mean over classes)" : "");
    cell(f, json_object_get(r, "balanced_accuracy"), 0);
    fputc('\n', f);
    confusion_table(f, r, ml, w);
  }
  const json_t *notes = json_object_get(r, "notes"), *n;
  size_t i;
  if (json_array_size(notes)) fputs("\nnotes:\n", f);
  json_array_foreach(notes, i, n) fprintf(f, "  %s\n", json_string_value(n));
}
