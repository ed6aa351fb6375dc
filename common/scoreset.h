/* scoreset.h - what bm-score keeps of a record stream: per record only the
 * C probabilities and C targets (classification) or the two embeddings
 * (retrieval); every other key (images, token features) is skipped as the
 * stream goes by.
 *
 * Classification records carry "target" (C values, each 0 or 1; exactly
 * one 1 for multiclass) and "prob" (C values in [0,1]) or "scores" (C finite
 * logits, turned into probabilities by the sigmoid for multilabel and the
 * softmax for multiclass, in double precision). Retrieval records carry
 * "img_emb" and "txt_emb" of one width D. Any tensor dtype is accepted.
 * The loader dies (status 1) with a message naming the input and record on
 * the first bad record, before anything was printed. */
#ifndef BM_SCORESET_H
#define BM_SCORESET_H

#include <stddef.h>
#include <stdint.h>

typedef enum { BM_TASK_AUTO, BM_TASK_MULTICLASS, BM_TASK_MULTILABEL, BM_TASK_RETRIEVAL } bm_task;

const char *bm_task_name(bm_task t);
int bm_task_parse(const char *s, bm_task *t); /* 0 ok */

typedef struct {
  bm_task task;
  char *name; /* the input, for messages */
  size_t n;   /* records */
  /* classification */
  int c;
  char **classes;
  double *p;    /* probabilities, class-major: p[k * n + i] */
  uint8_t *y;   /* targets, class-major */
  int32_t *top; /* multiclass: first index of the largest given value */
  /* retrieval */
  size_t d;
  float *img, *txt; /* n x d row-major */
} bm_scoreset;

/* Read a whole stream (path NULL or "-": stdin). task AUTO takes the
 * header's "task"; without one, records with "img_emb" and "txt_emb" and
 * no "target" are retrieval, others need the header or want (an error
 * otherwise). */
void bm_scoreset_read(const char *path, bm_task want, bm_scoreset *s);
void bm_scoreset_free(bm_scoreset *s);

#endif
