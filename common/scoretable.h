/* scoretable.h - the readable tables of bm-score, drawn from the same JSON
 * object that --json prints. */
#ifndef BM_SCORETABLE_H
#define BM_SCORETABLE_H

#include <jansson.h>
#include <stdio.h>

void bm_score_table(FILE *f, const json_t *report);

#endif
