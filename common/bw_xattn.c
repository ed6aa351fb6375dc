/* bw_xattn.c - multi-head cross-attention between two packed sets of
 * sequences (fusion's co-attention): the training forward that keeps the
 * probabilities, and the backward (see backward.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "backward.h"
#include "bw_internal.h"
#include "kernels.h"
#include "util.h"

size_t bm_xattn_probs_size(const int *qlen, const int *klen, int nseq, int heads) {
  size_t n = 0;
  for (int s = 0; s < nseq; s++) n += (size_t)qlen[s] * (size_t)klen[s];
  return n * (size_t)heads;
}

static size_t max_pair(const int *qlen, const int *klen, int nseq) {
  size_t m = 1;
  for (int s = 0; s < nseq; s++)
    if ((size_t)qlen[s] * (size_t)klen[s] > m) m = (size_t)qlen[s] * (size_t)klen[s];
  return m;
}

size_t bm_xattn_backward_scratch(const int *qlen, const int *klen, int nseq) {
  return (size_t)omp_get_max_threads() * max_pair(qlen, klen, nseq);
}

/* off[s] = float offset of sequence s's heads in P. */
static size_t *probs_offsets(const int *qlen, const int *klen, int nseq, int heads) {
  size_t *off = bm_xmalloc(sizeof(size_t) * (size_t)(nseq + 1));
  off[0] = 0;
  for (int s = 0; s < nseq; s++) off[s + 1] = off[s] + (size_t)heads * qlen[s] * klen[s];
  return off;
}

void bm_xattn_train(float *out, float *P, const float *q, const float *kv, const int *qstart,
                    const int *qlen, const int *kstart, const int *klen, int nseq, int C, int heads) {
  int hd = C / heads, ldkv = 2 * C;
  float scale = 1.0f / sqrtf((float)hd);
  size_t *off = probs_offsets(qlen, klen, nseq, heads);
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < nseq * heads; job++) {
    int s = job / heads, h = job % heads, Tq = qlen[s], Tk = klen[s];
    float *S = P + off[s] + (size_t)h * Tq * Tk; /* [Tq,Tk] */
    const float *qs = q + (size_t)qstart[s] * C + h * hd;
    const float *k = kv + (size_t)kstart[s] * ldkv + h * hd, *v = k + C;
    /* S = scale * q[Tq,hd] @ k[Tk,hd]^T, softmax over keys */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, hd, scale, qs, C, k, ldkv, 0.0f, S,
                Tk);
    for (int i = 0; i < Tq; i++) bm_softmax(S + (size_t)i * Tk, Tk);
    /* out[Tq,hd] = P[Tq,Tk] @ v[Tk,hd] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, Tk, 1.0f, S, Tk, v, ldkv, 0.0f,
                out + (size_t)qstart[s] * C + h * hd, C);
  }
  free(off);
}

void bm_xattn_backward(float *dq, float *dkv, const float *dout, const float *q, const float *kv,
                       const float *P, const int *qstart, const int *qlen, const int *kstart,
                       const int *klen, int nseq, int C, int heads, float *scratch) {
  int hd = C / heads, ldkv = 2 * C;
  float scale = 1.0f / sqrtf((float)hd);
  size_t mp = max_pair(qlen, klen, nseq);
  size_t *off = probs_offsets(qlen, klen, nseq, heads);
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < nseq * heads; job++) {
    int s = job / heads, h = job % heads, Tq = qlen[s], Tk = klen[s];
    const float *Ps = P + off[s] + (size_t)h * Tq * Tk;       /* [Tq,Tk] */
    float *dS = scratch + (size_t)omp_get_thread_num() * mp;   /* [Tq,Tk] */
    const float *qs = q + (size_t)qstart[s] * C + h * hd;
    const float *k = kv + (size_t)kstart[s] * ldkv + h * hd, *v = k + C;
    const float *dO = dout + (size_t)qstart[s] * C + h * hd; /* [Tq,hd], ld C */
    /* dP[Tq,Tk] = dO @ v^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Tq, Tk, hd, 1.0f, dO, C, v, ldkv, 0.0f, dS,
                Tk);
    if (dkv) /* dv[Tk,hd] = P^T @ dO */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, hd, Tq, 1.0f, Ps, Tk, dO, C, 0.0f,
                  dkv + (size_t)kstart[s] * ldkv + C + h * hd, ldkv);
    /* softmax backward per row: dS = P * (dP - sum(P * dP)) */
    for (int i = 0; i < Tq; i++) {
      const float *pr = Ps + (size_t)i * Tk;
      float *r = dS + (size_t)i * Tk, dot = 0.0f;
      for (int j = 0; j < Tk; j++) dot += pr[j] * r[j];
      for (int j = 0; j < Tk; j++) r[j] = pr[j] * (r[j] - dot);
    }
    /* scores were scale * q k^T: dq = scale dS @ k, dk = scale dS^T @ q */
    if (dq)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Tq, hd, Tk, scale, dS, Tk, k, ldkv, 0.0f,
                  dq + (size_t)qstart[s] * C + h * hd, C);
    if (dkv)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Tk, hd, Tq, scale, dS, Tk, qs, C, 0.0f,
                  dkv + (size_t)kstart[s] * ldkv + h * hd, ldkv);
  }
  free(off);
}
