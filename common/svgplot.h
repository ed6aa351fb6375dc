/* svgplot.h - bm-score --plot: ROC curves and the confusion matrix as
 * plain SVG files (no library: a few rectangles, lines and text). */
#ifndef BM_SVGPLOT_H
#define BM_SVGPLOT_H

#include <jansson.h>

#include "scoreset.h"

/* PREFIX-roc.svg (one curve per class with a defined AUROC, the chance
 * diagonal, a legend with each class's AUROC) and PREFIX-confusion.svg
 * (multiclass: the C x C matrix shaded by row share; multilabel: one row
 * per class of TP, FN, FP, TN). Dies when a file cannot be written. */
void bm_plot_all(const char *prefix, const bm_scoreset *s, const json_t *report);

#endif
