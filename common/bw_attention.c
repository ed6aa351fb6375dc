/* bw_attention.c - multi-head attention over packed sequences: the training
 * forward that keeps the probabilities, and the backward (see backward.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "backward.h"
#include "bw_internal.h"
#include "kernels.h"
#include "util.h"

size_t bm_attention_probs_size(const int *len, int nseq, int heads) {
  size_t n = 0;
  for (int s = 0; s < nseq; s++) n += (size_t)len[s] * (size_t)len[s];
  return n * (size_t)heads;
}

size_t bm_attention_backward_scratch(int maxlen) {
  return (size_t)omp_get_max_threads() * (size_t)maxlen * (size_t)maxlen;
}

/* off[s] = float offset of sequence s's heads in P. */
static size_t *probs_offsets(const int *len, int nseq, int heads) {
  size_t *off = bm_xmalloc(sizeof(size_t) * (size_t)(nseq + 1));
  off[0] = 0;
  for (int s = 0; s < nseq; s++) off[s + 1] = off[s] + (size_t)heads * len[s] * len[s];
  return off;
}

void bm_attention_train(float *out, float *P, const float *qkv, const int *start, const int *len,
                        int nseq, int C, int heads, const uint8_t *key_keep) {
  int hd = C / heads, ld = 3 * C;
  float scale = 1.0f / sqrtf((float)hd);
  size_t *off = probs_offsets(len, nseq, heads);
  /* Each (sequence, head) owns its block of P and its columns of out:
   * results do not depend on which thread runs it. */
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < nseq * heads; job++) {
    int s = job / heads, h = job % heads, T = len[s];
    float *S = P + off[s] + (size_t)h * T * T; /* [T,T] */
    const float *q = qkv + (size_t)start[s] * ld + h * hd;
    const float *k = q + C, *v = q + 2 * C;
    /* S[T,T] = scale * q[T,hd] @ k[T,hd]^T, then masked softmax, as bm_attention */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, S, T);
    for (int i = 0; i < T; i++) {
      float *row = S + (size_t)i * T;
      if (key_keep)
        for (int j = 0; j < T; j++)
          if (!key_keep[start[s] + j]) row[j] = -3.4028235e38f;
      bm_softmax(row, T);
    }
    /* out[T,hd] = P[T,T] @ v[T,hd] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T, v, ld, 0.0f,
                out + (size_t)start[s] * C + h * hd, C);
  }
  free(off);
}

void bm_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *P,
                           const int *start, const int *len, int nseq, int C, int heads,
                           float *scratch) {
  int hd = C / heads, ld = 3 * C;
  int maxlen = 0;
  for (int s = 0; s < nseq; s++) maxlen = len[s] > maxlen ? len[s] : maxlen;
  float scale = 1.0f / sqrtf((float)hd);
  size_t *off = probs_offsets(len, nseq, heads);
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < nseq * heads; job++) {
    int s = job / heads, h = job % heads, T = len[s];
    const float *Ps = P + off[s] + (size_t)h * T * T;                /* [T,T] */
    float *dS = scratch + (size_t)omp_get_thread_num() * maxlen * maxlen; /* [T,T] */
    size_t row0 = (size_t)start[s];
    const float *q = qkv + row0 * ld + h * hd, *k = q + C, *v = q + 2 * C;
    const float *dO = dout + row0 * C + h * hd;                      /* [T,hd], ld C */
    float *dq = dqkv + row0 * ld + h * hd, *dk = dq + C, *dv = dq + 2 * C;
    /* dP[T,T] = dO[T,hd] @ v[T,hd]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO, C, v, ld, 0.0f, dS, T);
    /* dv[T,hd] = P^T @ dO: a masked key's column of P is 0, so is its dv */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, Ps, T, dO, C, 0.0f, dv, ld);
    /* softmax backward per row: dS = P * (dP - sum(P * dP)) */
    for (int i = 0; i < T; i++) {
      const float *pr = Ps + (size_t)i * T;
      float *r = dS + (size_t)i * T, dot = 0.0f;
      for (int j = 0; j < T; j++) dot += pr[j] * r[j];
      for (int j = 0; j < T; j++) r[j] = pr[j] * (r[j] - dot);
    }
    /* scores were scale * q k^T: dq = scale dS @ k, dk = scale dS^T @ q */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dS, T, k, ld, 0.0f, dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dS, T, q, ld, 0.0f, dk, ld);
  }
  free(off);
}
