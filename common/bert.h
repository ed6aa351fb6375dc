/* bert.h - the text tower: HuggingFace BertModel (eval mode, no pooler) as
 * open_clip's HFTextEncoder runs it for BiomedCLIP, plus the MLP projection.
 *
 *   x = LN(word[id] + type[0] + pos[i])               x[L, W]
 *   depth post-norm layers:
 *     x = LN1(x + O(MHSA(x)));  x = LN2(x + fc2(GELU(fc1(x))))
 *   token 0 ([CLS]) -> Linear(W->H) -> GELU -> Linear(H->E) -> L2 normalize
 * A batch of texts is packed token after token: each runs on its real length
 * L, never on padding, and the linear layers see all tokens at once. */
#ifndef BM_BERT_H
#define BM_BERT_H

#include <stdint.h>

typedef struct {
  const float *qkv_w, *qkv_b;   /* [3W, W] query/key/value rows stacked, [3W] */
  const float *o_w, *o_b;       /* [W, W], [W] attention.output.dense */
  const float *ln1_w, *ln1_b;   /* [W] attention.output.LayerNorm */
  const float *fc1_w, *fc1_b;   /* [M, W], [M] intermediate.dense */
  const float *fc2_w, *fc2_b;   /* [W, M], [W] output.dense */
  const float *ln2_w, *ln2_b;   /* [W] output.LayerNorm */
} bm_bert_layer;

typedef struct {
  int vocab, maxpos, context; /* V, P (position rows), ids per text (<= P) */
  int width, depth, heads, mlp, proj_hidden, embed_dim;
  float eps;
  int ntypes;                     /* rows of type (0 read as 1) */
  const float *word, *pos, *type; /* [V, W], [P, W], [types, W]: type 0 used */
  const float *emb_ln_w, *emb_ln_b;
  bm_bert_layer *layers;          /* [depth] */
  const float *proj0, *proj2;     /* [H, W], [E, H] */
} bm_bert;

typedef struct {
  int cap_tok, cap_seq;
  float *x, *qkv, *att, *h; /* [N, W], [N, 3W], [N, W], [N, M] */
  float *pooled, *ph;       /* [S, W], [S, H] */
  float *scratch;           /* attention scores, per thread */
} bm_bert_acts;

void bm_bert_acts_free(bm_bert_acts *a);

/* ids: the texts' token ids packed (text s at start[s], len[s] ids, each
 * len <= context); -> emb[nseq, E] (L2 normalized) and, when tokens != NULL,
 * tokens[N, W] = the last hidden state of every token (N = sum of len). */
void bm_bert_forward(const bm_bert *m, bm_bert_acts *a, const int32_t *ids, const int *start,
                     const int *len, int nseq, float *emb, float *tokens);

/* bm_bert_forward with learned prompt vectors (CoOp): an id < 0 at a token
 * stands for row -1-id of ctx[n_ctx, W], which replaces the word embedding
 * there (type and position embeddings are still added, then the embedding
 * LayerNorm). ctx may be NULL when no id is negative (bm_bert_forward). */
void bm_bert_forward_ctx(const bm_bert *m, bm_bert_acts *a, const int32_t *ids, const int *start,
                         const int *len, int nseq, const float *ctx, float *emb, float *tokens);

/* The embedding sum before its LayerNorm, x[n] = (word[id] or ctx row) +
 * type[0] + pos[i], shared by the inference and the training forwards so
 * their bits agree. Dies on an id outside [-n_ctx, vocab) as far as it can
 * tell (a negative id with ctx NULL). */
void bm_bert_embed_sum(const bm_bert *m, const int32_t *ids, const int *start, const int *len,
                       int nseq, const float *ctx, float *x);

#endif
