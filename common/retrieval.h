/* retrieval.h - exact cross-modal ranks of matched pairs, in bounded memory.
 *
 * Pair i is (img[i], txt[i]); the similarity of image i and text j is the
 * dot product S[i][j] (unit-norm embeddings make it the cosine). For each
 * image query i the candidates are all n texts, and for each text query j
 * all n images. We count, for every query, the other candidates that score
 * strictly higher than the true pair ("better") and those that score
 * exactly the same ("tied"); the rank of the true pair is then
 *   better + 1            when ties are ranked optimistically,
 *   better + tied + 1     when ties are ranked pessimistically (default),
 * and Recall@k is the fraction of queries whose rank is <= k.
 *
 * S is computed tile by tile (block x block, OpenBLAS GEMM over the full
 * embedding width), so memory is O(block^2 + block*d) beyond the inputs and
 * one GEMM pass covers both directions. The true pair's score is read from
 * the same GEMM tile shape as every other score, so equal embeddings give
 * exactly equal scores. Double precision (dgemm on the float32 inputs,
 * whose products are exact in double) by default; single uses sgemm. */
#ifndef BM_RETRIEVAL_H
#define BM_RETRIEVAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int single;   /* sgemm instead of dgemm */
  size_t block; /* tile edge; 0 means the default (1024) */
  int quiet;    /* no progress line on stderr */
} bm_retrieval_opts;

/* better/tied: n counts each for image->text (i2t_*) and text->image
 * (t2i_*) queries. img and txt are n x d row-major. */
void bm_retrieval_counts(const float *img, const float *txt, size_t n, size_t d,
                         const bm_retrieval_opts *opt, int64_t *i2t_better, int64_t *i2t_tied,
                         int64_t *t2i_better, int64_t *t2i_tied);

/* Fraction of queries whose rank (see above) is <= k. */
double bm_recall_at(const int64_t *better, const int64_t *tied, size_t n, int pessimistic, int64_t k);

#endif
