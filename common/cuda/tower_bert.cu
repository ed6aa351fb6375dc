/* tower_bert.cu - the text tower on the GPU (see bmcuda_towers.h; the CPU
 * peer is bm_bert_forward in bert.c, step for step). */
#include <stdlib.h>
#include <string.h>

#include "bmcuda_fwd.h"
#include "bmcuda_towers.h"
#include "cuda_int.cuh"

typedef struct {
  const float *qkv_b, *o_b, *ln1_w, *ln1_b, *fc1_b, *fc2_b, *ln2_w, *ln2_b; /* fp32 */
  const void *qkv_w, *o_w, *fc1_w, *fc2_w;                                  /* T */
} glayer;

struct bm_cuda_bert {
  bm_cuda *c;
  const bm_bert *m;
  bm_prec t;
  int cap_seq, cap_tok, nctx;
  bm_dev_list mem;
  glayer *layers;
  const float *word, *pos, *type, *emb_ln_w, *emb_ln_b;
  float *ctx;
  const void *proj0, *proj2;
  /* activations */
  float *x, *pooled, *emb;
  void *x_t, *qkv, *att, *h, *pooled_t, *ph;
  /* per slot: ids, posi, start, len packed as ints, on the host (pinned) and device */
  int *in_host[2], *in_dev[2];
  bm_cuda_event *copied[2], *done[2];
};

static const float *up32(bm_cuda_bert *g, const float *w, size_t n, const char *what) {
  return (const float *)bm_dev_keep(&g->mem, bm_cuda_upload(g->c, w, n, BM_PREC_FP32, what));
}
static const void *upT(bm_cuda_bert *g, const float *w, size_t n, const char *what) {
  return bm_dev_keep(&g->mem, bm_cuda_upload(g->c, w, n, g->t, what));
}
static void *alloc(bm_cuda_bert *g, size_t bytes, const char *what) {
  return bm_dev_keep(&g->mem, bm_cuda_malloc(bytes, what));
}
static size_t in_ints(const bm_cuda_bert *g) { return 2 * (size_t)g->cap_tok + 2 * (size_t)g->cap_seq; }

extern "C" bm_cuda_bert *bm_cuda_bert_new(bm_cuda *c, const bm_bert *m, bm_prec t, int max_seq,
                                          int max_tok) {
  bm_cuda_bert *g = (bm_cuda_bert *)calloc(1, sizeof *g);
  if (!g) bm_die("bm_cuda_bert_new: out of memory");
  g->c = c, g->m = m, g->t = t, g->cap_seq = max_seq, g->cap_tok = max_tok;
  size_t W = (size_t)m->width, M = (size_t)m->mlp, H = (size_t)m->proj_hidden;
  size_t E = (size_t)m->embed_dim, N = (size_t)max_tok, S = (size_t)max_seq;
  size_t es = bm_prec_size(t);
  g->layers = (glayer *)calloc((size_t)m->depth, sizeof *g->layers);
  if (!g->layers) bm_die("bm_cuda_bert_new: out of memory");
  for (int i = 0; i < m->depth; i++) {
    const bm_bert_layer *l = &m->layers[i];
    glayer *d = &g->layers[i];
    d->qkv_b = up32(g, l->qkv_b, 3 * W, "bert qkv bias");
    d->o_b = up32(g, l->o_b, W, "bert attention.output.dense.bias");
    d->ln1_w = up32(g, l->ln1_w, W, "bert attention.output.LayerNorm.weight");
    d->ln1_b = up32(g, l->ln1_b, W, "bert attention.output.LayerNorm.bias");
    d->fc1_b = up32(g, l->fc1_b, M, "bert intermediate.dense.bias");
    d->fc2_b = up32(g, l->fc2_b, W, "bert output.dense.bias");
    d->ln2_w = up32(g, l->ln2_w, W, "bert output.LayerNorm.weight");
    d->ln2_b = up32(g, l->ln2_b, W, "bert output.LayerNorm.bias");
    d->qkv_w = upT(g, l->qkv_w, 3 * W * W, "bert qkv weight");
    d->o_w = upT(g, l->o_w, W * W, "bert attention.output.dense.weight");
    d->fc1_w = upT(g, l->fc1_w, M * W, "bert intermediate.dense.weight");
    d->fc2_w = upT(g, l->fc2_w, W * M, "bert output.dense.weight");
  }
  g->word = up32(g, m->word, (size_t)m->vocab * W, "bert word_embeddings");
  g->pos = up32(g, m->pos, (size_t)m->maxpos * W, "bert position_embeddings");
  g->type = up32(g, m->type, W, "bert token_type_embeddings");
  g->emb_ln_w = up32(g, m->emb_ln_w, W, "bert embeddings.LayerNorm.weight");
  g->emb_ln_b = up32(g, m->emb_ln_b, W, "bert embeddings.LayerNorm.bias");
  g->proj0 = upT(g, m->proj0, H * W, "bert proj.0");
  g->proj2 = upT(g, m->proj2, E * H, "bert proj.2");

  g->x = (float *)alloc(g, N * W * 4, "bert residual stream");
  g->pooled = (float *)alloc(g, S * W * 4, "bert pooled");
  g->emb = (float *)alloc(g, S * E * 4, "bert embeddings");
  g->x_t = alloc(g, N * W * es, "bert hidden");
  g->qkv = alloc(g, N * 3 * W * es, "bert qkv");
  g->att = alloc(g, N * W * es, "bert attention out");
  g->h = alloc(g, N * M * es, "bert mlp hidden");
  g->pooled_t = alloc(g, S * W * es, "bert pooled");
  g->ph = alloc(g, S * H * es, "bert projection hidden");
  for (int s = 0; s < 2; s++) {
    g->in_host[s] = (int *)bm_cuda_host_alloc(sizeof(int) * in_ints(g), "bert token ids");
    g->in_dev[s] = (int *)alloc(g, sizeof(int) * in_ints(g), "bert token ids");
    g->copied[s] = bm_cuda_event_new();
    g->done[s] = bm_cuda_event_new();
  }
  return g;
}

extern "C" void bm_cuda_bert_free(bm_cuda_bert *g) {
  if (!g) return;
  bm_cuda_sync(g->c, BM_STREAM_COMPUTE);
  bm_cuda_sync(g->c, BM_STREAM_COPY);
  for (int s = 0; s < 2; s++) {
    bm_cuda_event_free(g->copied[s]), bm_cuda_event_free(g->done[s]);
    bm_cuda_host_free(g->in_host[s]);
  }
  bm_cuda_free(g->ctx);
  bm_dev_free_all(&g->mem);
  free(g->layers);
  free(g);
}

extern "C" void bm_cuda_bert_set_ctx(bm_cuda_bert *g, const float *ctx, int nctx) {
  bm_cuda_sync(g->c, BM_STREAM_COMPUTE);
  bm_cuda_free(g->ctx);
  g->ctx = NULL, g->nctx = 0;
  if (!ctx || nctx <= 0) return;
  g->ctx = (float *)bm_cuda_upload(g->c, ctx, (size_t)nctx * g->m->width, BM_PREC_FP32,
                                   "bert prompt vectors");
  g->nctx = nctx;
}

static void layer_forward(bm_cuda_bert *g, const glayer *l, int N, const int *start,
                          const int *len, int nseq, int maxlen) {
  const bm_bert *m = g->m;
  bm_cuda *c = g->c;
  bm_prec t = g->t;
  int W = m->width, M = m->mlp;
  bm_cuda_gemm(c, g->qkv, t, g->x_t, l->qkv_w, t, l->qkv_b, N, W, 3 * W, 1.0f, 0.0f);
  bm_cuda_attention(c, g->att, g->qkv, t, start, len, nseq, maxlen, W, m->heads);
  bm_cuda_gemm(c, g->x, BM_PREC_FP32, g->att, l->o_w, t, l->o_b, N, W, W, 1.0f, 1.0f);
  bm_cuda_layernorm(c, g->x, g->x_t, t, g->x, l->ln1_w, l->ln1_b, N, W, m->eps);
  bm_cuda_gemm(c, g->h, t, g->x_t, l->fc1_w, t, NULL, N, W, M, 1.0f, 0.0f);
  bm_cuda_bias_gelu(c, g->h, t, l->fc1_b, N, M);
  bm_cuda_gemm(c, g->x, BM_PREC_FP32, g->h, l->fc2_w, t, l->fc2_b, N, M, W, 1.0f, 1.0f);
  bm_cuda_layernorm(c, g->x, g->x_t, t, g->x, l->ln2_w, l->ln2_b, N, W, m->eps);
}

extern "C" void bm_cuda_bert_submit(bm_cuda_bert *g, int slot, const int32_t *ids,
                                    const int *start, const int *len, int nseq, float *emb,
                                    float *tokens) {
  const bm_bert *m = g->m;
  bm_cuda *c = g->c;
  bm_prec t = g->t;
  int N = 0, maxlen = 0, W = m->width;
  for (int s = 0; s < nseq; s++) {
    if (start[s] + len[s] > N) N = start[s] + len[s];
    if (len[s] > maxlen) maxlen = len[s];
    if (len[s] > m->maxpos) bm_die("bm_cuda_bert_submit: text %d has %d tokens, over %d", s, len[s], m->maxpos);
  }
  if (nseq > g->cap_seq || N > g->cap_tok)
    bm_die("bm_cuda_bert_submit: %d texts / %d tokens over the capacity %d / %d", nseq, N,
           g->cap_seq, g->cap_tok);
  if (nseq <= 0) return;
  /* ids[N], posi[N], start[S], len[S] in one copy; tokens between texts
   * (none when packed) keep position 0 and are never read back as outputs */
  int *h = g->in_host[slot], *d = g->in_dev[slot];
  int *posi = h + N, *st = h + 2 * N, *ln = st + nseq;
  memset(h, 0, sizeof(int) * 2 * (size_t)N);
  for (int s = 0; s < nseq; s++)
    for (int i = 0; i < len[s]; i++) {
      int n = start[s] + i, id = ids[n];
      if (id >= m->vocab || (id < 0 && -id - 1 >= g->nctx))
        bm_die("bm_cuda_bert_submit: text %d token %d: id %d is outside the vocabulary (%d) "
               "and the %d prompt vectors", s, i, id, m->vocab, g->nctx);
      h[n] = id, posi[n] = i;
    }
  memcpy(st, start, sizeof(int) * (size_t)nseq);
  memcpy(ln, len, sizeof(int) * (size_t)nseq);
  bm_cuda_h2d(c, d, h, sizeof(int) * (2 * (size_t)N + 2 * (size_t)nseq), BM_STREAM_COPY);
  bm_cuda_event_record(c, g->copied[slot], BM_STREAM_COPY);
  bm_cuda_stream_wait(c, BM_STREAM_COMPUTE, g->copied[slot]);
  const int *dst = d + 2 * N, *dln = dst + nseq;
  bm_cuda_bert_embed(c, g->x, d, d + N, g->word, m->vocab, g->ctx, g->nctx, g->type, g->pos, N,
                     W);
  bm_cuda_layernorm(c, g->x, g->x_t, t, g->x, g->emb_ln_w, g->emb_ln_b, N, W, m->eps);
  for (int l = 0; l < m->depth; l++) layer_forward(g, &g->layers[l], N, dst, dln, nseq, maxlen);
  if (tokens) bm_cuda_d2h(c, tokens, g->x, sizeof(float) * (size_t)N * W, BM_STREAM_COMPUTE);
  bm_cuda_gather_rows(c, g->pooled, g->x, dst, nseq, W);
  bm_cuda_convert(c, g->pooled_t, t, g->pooled, (size_t)nseq * W);
  bm_cuda_gemm(c, g->ph, t, g->pooled_t, g->proj0, t, NULL, nseq, W, m->proj_hidden, 1.0f, 0.0f);
  bm_cuda_bias_gelu(c, g->ph, t, NULL, nseq, m->proj_hidden);
  bm_cuda_gemm(c, g->emb, BM_PREC_FP32, g->ph, g->proj2, t, NULL, nseq, m->proj_hidden,
               m->embed_dim, 1.0f, 0.0f);
  bm_cuda_l2_normalize(c, g->emb, nseq, m->embed_dim);
  bm_cuda_d2h(c, emb, g->emb, sizeof(float) * (size_t)nseq * m->embed_dim, BM_STREAM_COMPUTE);
  bm_cuda_event_record(c, g->done[slot], BM_STREAM_COMPUTE);
}

extern "C" void bm_cuda_bert_wait(bm_cuda_bert *g, int slot) { bm_cuda_event_sync(g->done[slot]); }

extern "C" void bm_cuda_bert_forward(bm_cuda_bert *g, const int32_t *ids, const int *start,
                                     const int *len, int nseq, float *emb, float *tokens) {
  bm_cuda_bert_submit(g, 0, ids, start, len, nseq, emb, tokens);
  bm_cuda_bert_wait(g, 0);
}
