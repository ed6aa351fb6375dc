#define _GNU_SOURCE
#include "svgplot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "util.h"

/* Tableau's 20 colours: distinct enough for NIH's 14 classes. */
static const char *palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                                "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                                "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"};

static void put_escaped(FILE *f, const char *s) {
  for (; *s; s++) switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default: fputc(*s, f);
    }
}

static void save(const char *prefix, const char *suffix, char *text, size_t len) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s%s", prefix, suffix) >= (int)sizeof path) bm_die("--plot: prefix too long");
  if (bm_write_file_atomic(path, text, len)) bm_die("cannot write %s: %s", path, strerror(errno));
  free(text);
}

static FILE *svg_open(char **text, size_t *len, int w, int h) {
  FILE *f = open_memstream(text, len);
  if (!f) bm_die("out of memory");
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
             "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n"
             "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", w, h, w, h);
  return f;
}

static void svg_close(FILE *f) {
  fputs("</svg>\n", f);
  if (fclose(f)) bm_die("out of memory");
}

static void roc_plot(const char *prefix, const bm_scoreset *s, const json_t *report) {
  const int L = 70, T = 50, S = 440; /* plot square: left, top, side */
  int legend_h = 24 + 18 * s->c, H = T + S + 60 > legend_h + T ? T + S + 60 : legend_h + T;
  char *text;
  size_t len;
  FILE *f = svg_open(&text, &len, L + S + 290, H);
  fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" font-weight=\"bold\">ROC curves, one class against the rest (%zu records)</text>\n", L, s->n);
  for (int i = 0; i <= 5; i++) { /* grid and ticks every 0.2 */
    double v = i / 5.0;
    int x = L + (int)lround(v * S), y = T + S - (int)lround(v * S);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e4e4e4\"/>\n", x, T, x, T + S);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#e4e4e4\"/>\n", L, y, L + S, y);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%.1f</text>\n", x, T + S + 18, v);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.1f</text>\n", L - 6, y + 4, v);
  }
  fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\" stroke-dasharray=\"5,4\"/>\n", L, T + S, L + S, T);
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"black\"/>\n", L, T, S, S);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">false positive rate (1 - specificity)</text>\n", L + S / 2, T + S + 42);
  fprintf(f, "<text transform=\"translate(%d,%d) rotate(-90)\" text-anchor=\"middle\">true positive rate (sensitivity)</text>\n", L - 42, T + S / 2);
  size_t n = s->n, *ord = bm_xmalloc(bm_mul_size(n, sizeof *ord));
  const json_t *pc = json_object_get(report, "per_class");
  for (int k = 0; k < s->c; k++) {
    const char *col = palette[k % 20];
    const json_t *auc = json_object_get(json_object_get(pc, s->classes[k]), "auc");
    int ly = T + 12 + 18 * k;
    if (json_is_number(auc)) {
      const double *p = s->p + (size_t)k * n;
      bm_order_desc(p, n, ord);
      double *x, *y;
      size_t m = bm_roc_curve(p, s->y + (size_t)k * n, ord, n, &x, &y);
      fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"", col);
      double lx = -1, lyv = -1;
      for (size_t i = 0; i < m; i++) /* at most a vertex per ~half pixel */
        if (i == 0 || i == m - 1 || fabs(x[i] - lx) + fabs(y[i] - lyv) >= 0.002) {
          fprintf(f, "%.2f,%.2f ", L + x[i] * S, T + S - y[i] * S);
          lx = x[i];
          lyv = y[i];
        }
      fputs("\"/>\n", f);
      free(x);
      free(y);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"/>\n", L + S + 20, ly - 4, L + S + 44, ly - 4,
            json_is_number(auc) ? col : "#ddd");
    fprintf(f, "<text x=\"%d\" y=\"%d\">", L + S + 50, ly);
    put_escaped(f, s->classes[k]);
    if (json_is_number(auc)) fprintf(f, " (AUC %.3f)</text>\n", json_number_value(auc));
    else fputs(" (no AUC: one target value)</text>\n", f);
  }
  free(ord);
  svg_close(f);
  save(prefix, "-roc.svg", text, len);
}

/* A shaded cell with its count; share in [0,1] picks the shade. */
static void count_cell(FILE *f, int x, int y, int w, int h, long long count, double share) {
  if (!isfinite(share)) share = 0;
  int r = (int)lround(255 - share * (255 - 8)), g = (int)lround(255 - share * (255 - 48)), b = (int)lround(255 - share * (255 - 107));
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,%d)\" stroke=\"white\"/>\n", x, y, w, h, r, g, b);
  fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\" font-size=\"%d\">%lld</text>\n", x + w / 2, y + h / 2 + 4,
          share > 0.5 ? "white" : "black", w < 40 ? 10 : 13, count);
}

static int name_width(const bm_scoreset *s) {
  size_t m = 4;
  for (int k = 0; k < s->c; k++) m = strlen(s->classes[k]) > m ? strlen(s->classes[k]) : m;
  return 20 + 8 * (int)(m > 30 ? 30 : m);
}

static void confusion_plot(const char *prefix, const bm_scoreset *s, const json_t *report) {
  const json_t *conf = json_object_get(report, "confusion");
  int c = s->c, ml = s->task == BM_TASK_MULTILABEL, nw = name_width(s);
  int cols = ml ? 4 : c, cell = ml ? 72 : (c <= 8 ? 64 : 480 / c < 28 ? 28 : 480 / c);
  int ch = ml ? 32 : cell; /* cell height */
  int L = nw + 30, T = 80, W = L + cols * cell + 40, H = T + c * ch + (ml ? 30 : (nw - 20) * 85 / 100 + 40);
  W = W < 640 ? 640 : W; /* room for the title */
  char *text;
  size_t len;
  FILE *f = svg_open(&text, &len, W, H);
  fprintf(f, "<text x=\"20\" y=\"28\" font-size=\"16\" font-weight=\"bold\">%s</text>\n",
          ml ? "Confusion per class at its threshold" : "Confusion matrix (rows: true class, columns: predicted)");
  fprintf(f, "<text x=\"20\" y=\"48\" fill=\"#555\">%s</text>\n",
          ml ? "shade: share of the class's negatives (TN, FP) or positives (FN, TP)" : "shade: share of the true class's records (row)");
  static const char *mlcols[] = {"TP", "FN", "FP", "TN"};
  for (int j = 0; j < cols; j++) {
    int x = L + j * cell + cell / 2;
    if (ml) {
      fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-weight=\"bold\">%s</text>\n", x, T - 8, mlcols[j]);
    } else {
      fprintf(f, "<text transform=\"translate(%d,%d) rotate(-55)\" text-anchor=\"end\">", x + 4, T + c * ch + 12);
      put_escaped(f, s->classes[j]);
      fputs("</text>\n", f);
    }
  }
  for (int i = 0; i < c; i++) {
    int y = T + i * ch;
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", L - 8, y + ch / 2 + 4);
    put_escaped(f, s->classes[i]);
    fputs("</text>\n", f);
    const json_t *row = json_array_get(conf, (size_t)i);
    if (ml) { /* [[tn, fp], [fn, tp]] */
      long long tn = json_integer_value(json_array_get(json_array_get(row, 0), 0));
      long long fp = json_integer_value(json_array_get(json_array_get(row, 0), 1));
      long long fn = json_integer_value(json_array_get(json_array_get(row, 1), 0));
      long long tp = json_integer_value(json_array_get(json_array_get(row, 1), 1));
      long long v[4] = {tp, fn, fp, tn};
      double den[4] = {(double)(tp + fn), (double)(tp + fn), (double)(tn + fp), (double)(tn + fp)};
      for (int j = 0; j < 4; j++) count_cell(f, L + j * cell, y, cell, ch, v[j], bm_ratio((double)v[j], den[j]));
    } else {
      long long total = 0;
      for (int j = 0; j < c; j++) total += json_integer_value(json_array_get(row, (size_t)j));
      for (int j = 0; j < c; j++) {
        long long v = json_integer_value(json_array_get(row, (size_t)j));
        count_cell(f, L + j * cell, y, cell, cell, v, bm_ratio((double)v, (double)total));
      }
    }
  }
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n", L, T, cols * cell, c * ch);
  svg_close(f);
  save(prefix, "-confusion.svg", text, len);
}

void bm_plot_all(const char *prefix, const bm_scoreset *s, const json_t *report) {
  roc_plot(prefix, s, report);
  confusion_plot(prefix, s, report);
}
