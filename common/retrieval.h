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
 * Scores are compared exactly: a tie is equality of bm_pair_score, the
 * double-precision dot product summed in index order, the same function for
 * every pair, so equal embeddings always tie and the result does not depend
 * on tiling, threads or the BLAS kernels. To get there at GEMM speed, S is
 * computed tile by tile (block x block, OpenBLAS GEMM over the full width;
 * memory O(block^2 + block*d) beyond the inputs, one pass for both
 * directions, in sgemm), and a GEMM score decides a comparison only when it
 * lies farther from the true pair's score than the rounding error bound of
 * the two computations; the few pairs inside that window are scored again
 * with bm_pair_score.
 */
#ifndef BM_RETRIEVAL_H
#define BM_RETRIEVAL_H

#include <stddef.h>
#include <stdint.h>

/* The score of one pair: sum over k in order of (double)img[k] * txt[k]. */
double bm_pair_score(const float *img, const float *txt, size_t d);

typedef struct {
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
