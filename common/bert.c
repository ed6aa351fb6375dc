/* bert.c - text tower forward pass (see bert.h). */
#include "bert.h"

#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

void bm_bert_acts_free(bm_bert_acts *a) {
  free(a->x), free(a->qkv), free(a->att), free(a->h);
  free(a->pooled), free(a->ph), free(a->scratch);
  memset(a, 0, sizeof *a);
}

static float *grow(float *p, size_t n) {
  free(p);
  return bm_xmalloc(bm_mul_size(n, sizeof(float)));
}

static void acts_reserve(const bm_bert *m, bm_bert_acts *a, int N, int S) {
  size_t W = (size_t)m->width;
  if (N > a->cap_tok) {
    a->x = grow(a->x, (size_t)N * W);
    a->qkv = grow(a->qkv, (size_t)N * 3 * W);
    a->att = grow(a->att, (size_t)N * W);
    a->h = grow(a->h, (size_t)N * (size_t)m->mlp);
    a->cap_tok = N;
  }
  if (S > a->cap_seq) {
    a->pooled = grow(a->pooled, (size_t)S * W);
    a->ph = grow(a->ph, (size_t)S * (size_t)m->proj_hidden);
    a->cap_seq = S;
  }
  if (!a->scratch) a->scratch = grow(NULL, bm_attention_scratch(m->context));
}

/* x[N, W] through one post-norm layer. */
static void layer_forward(const bm_bert *m, const bm_bert_layer *l, bm_bert_acts *a, int N,
                          const int *start, const int *len, int nseq) {
  int W = m->width, M = m->mlp;
  bm_linear(a->qkv, a->x, l->qkv_w, l->qkv_b, N, W, 3 * W);                    /* qkv[N,3W] */
  bm_attention(a->att, a->qkv, start, len, nseq, W, m->heads, NULL, a->scratch); /* att[N,W] */
  bm_linear_residual(a->x, a->att, l->o_w, l->o_b, N, W, W);                    /* x += O(att) */
  bm_layernorm(a->x, a->x, l->ln1_w, l->ln1_b, N, W, m->eps);
  bm_linear_gelu(a->h, a->x, l->fc1_w, l->fc1_b, N, W, M);                      /* h[N,M] */
  bm_linear_residual(a->x, a->h, l->fc2_w, l->fc2_b, N, M, W);                  /* x += fc2(h) */
  bm_layernorm(a->x, a->x, l->ln2_w, l->ln2_b, N, W, m->eps);
}

void bm_bert_embed_sum(const bm_bert *m, const int32_t *ids, const int *start, const int *len,
                       int nseq, const float *ctx, float *x) {
  int W = m->width;
  for (int s = 0; s < nseq; s++)
    for (int i = 0; i < len[s]; i++) {
      int32_t id = ids[start[s] + i];
      if (id >= m->vocab || (id < 0 && !ctx))
        bm_die("text %d token %d: id %d outside the vocabulary (%d)%s", s, i, (int)id, m->vocab,
               id < 0 ? " and no prompt vectors given" : "");
    }
  /* HuggingFace's order of the sums: (word + type) + pos */
#pragma omp parallel for schedule(static)
  for (int s = 0; s < nseq; s++)
    for (int i = 0; i < len[s]; i++) {
      int n = start[s] + i;
      int32_t id = ids[n];
      const float *wv = id >= 0 ? m->word + (size_t)id * W : ctx + (size_t)(-1 - (int64_t)id) * W;
      const float *pv = m->pos + (size_t)i * W;
      float *xr = x + (size_t)n * W;
      for (int c = 0; c < W; c++) xr[c] = (wv[c] + m->type[c]) + pv[c];
    }
}

void bm_bert_forward_ctx(const bm_bert *m, bm_bert_acts *a, const int32_t *ids, const int *start,
                         const int *len, int nseq, const float *ctx, float *emb, float *tokens) {
  int N = 0, W = m->width;
  for (int s = 0; s < nseq; s++) N = start[s] + len[s] > N ? start[s] + len[s] : N;
  acts_reserve(m, a, N, nseq);
  bm_bert_embed_sum(m, ids, start, len, nseq, ctx, a->x);
  bm_layernorm(a->x, a->x, m->emb_ln_w, m->emb_ln_b, N, W, m->eps);
  for (int l = 0; l < m->depth; l++) layer_forward(m, &m->layers[l], a, N, start, len, nseq);
  if (tokens) memcpy(tokens, a->x, sizeof(float) * (size_t)N * W);
  for (int s = 0; s < nseq; s++)
    memcpy(a->pooled + (size_t)s * W, a->x + (size_t)start[s] * W, sizeof(float) * (size_t)W);
  bm_linear_gelu(a->ph, a->pooled, m->proj0, NULL, nseq, W, m->proj_hidden); /* ph[S,H] */
  bm_linear(emb, a->ph, m->proj2, NULL, nseq, m->proj_hidden, m->embed_dim);  /* emb[S,E] */
  bm_l2_normalize(emb, nseq, m->embed_dim);
}

void bm_bert_forward(const bm_bert *m, bm_bert_acts *a, const int32_t *ids, const int *start,
                     const int *len, int nseq, float *emb, float *tokens) {
  bm_bert_forward_ctx(m, a, ids, start, len, nseq, NULL, emb, tokens);
}
