/* bw_embed.c - embeddings, token assembly, pooling and dropout (see backward.h).
 * The scatter-adds split the C columns over threads and add tokens in order,
 * so two tokens with the same id never race and the bits do not depend on
 * the thread count. */
#include <stdlib.h>
#include <string.h>

#include "backward.h"
#include "bw_internal.h"
#include "util.h"

void bm_embedding_backward(float *dtable, const float *dy, const int *ids, int ntok, int C) {
  int nt = bw_team();
#pragma omp parallel num_threads(nt) if (nt > 1 && (size_t)ntok * C > 16384)
  {
    int j0, j1;
    bw_band(C, 16, omp_get_thread_num(), omp_get_num_threads(), &j0, &j1);
    for (int t = 0; t < ntok; t++) {
      float *d = dtable + (size_t)ids[t] * C;
      const float *g = dy + (size_t)t * C;
      for (int j = j0; j < j1; j++) d[j] += g[j];
    }
  }
}

void bm_pos_embed_backward(float *dpos, const float *dx, const int *start, const int *len,
                           int nseq, int C) {
  int nt = bw_team();
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int j0, j1;
    bw_band(C, 16, omp_get_thread_num(), omp_get_num_threads(), &j0, &j1);
    for (int s = 0; s < nseq; s++)
      for (int i = 0; i < len[s]; i++) {
        float *d = dpos + (size_t)i * C;
        const float *g = dx + ((size_t)start[s] + i) * C;
        for (int j = j0; j < j1; j++) d[j] += g[j];
      }
  }
}

void bm_vit_tokens_backward(float *dpatch, float *dcls, float *dpos, const float *dx, int B,
                            int GG, int C) {
  int T = GG + 1;
  if (dpatch) {
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int b = 0; b < B; b++)
      memcpy(dpatch + (size_t)b * GG * C, dx + ((size_t)b * T + 1) * C,
             sizeof(float) * (size_t)GG * C);
  }
  if (dcls)
    for (int b = 0; b < B; b++) {
      const float *g = dx + (size_t)b * T * C;
      for (int j = 0; j < C; j++) dcls[j] += g[j];
    }
  if (dpos) {
    int *start = bm_xmalloc(sizeof(int) * 2 * (size_t)(B > 0 ? B : 1)), *len = start + B;
    for (int b = 0; b < B; b++) start[b] = b * T, len[b] = T;
    bm_pos_embed_backward(dpos, dx, start, len, B, C);
    free(start);
  }
}

void bm_pool_token0_backward(float *dx, const float *dpooled, const int *start, int nseq,
                             int ntok, int C) {
  memset(dx, 0, sizeof(float) * (size_t)ntok * C);
  for (int s = 0; s < nseq; s++)
    memcpy(dx + (size_t)start[s] * C, dpooled + (size_t)s * C, sizeof(float) * (size_t)C);
}

/* splitmix64's finalizer: a bijection that scrambles every input bit. */
static inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void bm_dropout(float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t step,
                uint64_t site) {
  if (p <= 0.0f) {
    if (y != x) memmove(y, x, sizeof(float) * n);
    return;
  }
  uint64_t key = mix64(mix64(mix64(seed) ^ step) ^ site);
  /* keep when a 24-bit uniform u/2^24 >= p: P(keep) = 1 - p to 2^-24 */
  uint32_t thresh = (uint32_t)((double)p * 16777216.0 + 0.5);
  float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > 65536 && !omp_in_parallel())
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t)(mix64(key ^ (uint64_t)i) >> 40);
    y[i] = u >= thresh ? x[i] * scale : 0.0f;
  }
}

void bm_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                         uint64_t step, uint64_t site) {
  bm_dropout(dx, dy, n, p, seed, step, site);
}
