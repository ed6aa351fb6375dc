/* bert_train.h - the text tower (bert.h) as a trainable thing, as
 * vit_train.h is for the image tower: its parameters copied into one buffer
 * that training owns, a training forward that keeps what the backward needs,
 * and that backward (backward.h's layers composed; parameter gradients
 * ACCUMULATE as backward.h says). Learned prompt vectors (CoOp context
 * vectors) enter as negative ids: id -1-k at a token takes row k of
 * ctx[n_ctx, W] in place of a word embedding (bm_bert_forward_ctx).
 *
 * Parameters live in one float buffer p, with open_clip's names, in the order
 *   text.transformer.embeddings.word_embeddings.weight [V,W],
 *     position_embeddings.weight [P,W], token_type_embeddings.weight [T,W],
 *     LayerNorm.weight, .bias [W];
 *   text.transformer.encoder.layer.L. (L = 0..depth-1)
 *     attention.self.query.weight, key.weight, value.weight [W,W] (adjacent:
 *       together the [3W,W] matrix bert.c's one qkv GEMM takes), query.bias,
 *       key.bias, value.bias [W] (adjacent, the [3W] bias);
 *     attention.output.dense.weight [W,W], .bias; attention.output.LayerNorm
 *     .weight, .bias; intermediate.dense.weight [M,W], .bias; output.dense
 *     .weight [W,M], .bias; output.LayerNorm.weight, .bias;
 *   text.proj.0.weight [H,W], text.proj.2.weight [E,H]
 * so that what trains (the last N layers and the projection) is a suffix of
 * p: the gradient buffer g covers only that suffix. `m` is a bm_bert whose
 * pointers point into p, so bm_bert_forward runs on the trained weights.
 *
 * The training forward gives bm_bert_forward_ctx's bits (the same row
 * functions and GEMM calls; tests/unit/test_bert_train.c checks it). */
#ifndef BM_BERT_TRAIN_H
#define BM_BERT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "adamw.h"
#include "bert.h"

typedef struct {
  char name[96];        /* open_clip name, e.g. "text.transformer.encoder.layer.1.output.dense.weight" */
  int ndim;
  int64_t shape[2];
  size_t off, n;        /* in p (floats) */
  int decay;            /* 1: weight decay applies (matrices); 0: norms, biases, embeddings */
} bm_bt_tensor;

/* What trains: everything (unlock < 0 or >= depth), the last `unlock`
 * layers + projection (0 <= unlock < depth: unlock 0 is the projection
 * only), or nothing (frozen). Input gradients (dctx) flow through frozen
 * layers whenever the backward is asked for them. */
typedef struct {
  bm_bert m;             /* views into p */
  bm_bt_tensor *t;       /* [nt] in the order above */
  int nt;
  float *p;              /* [np] parameters */
  size_t np;
  float *g;              /* [np - goff] gradients of p[goff..np); NULL when frozen */
  size_t goff;
  int first;             /* lowest layer that trains (depth when only the projection or frozen) */
  int embed_trains;      /* the embeddings (word, position, type, their LayerNorm) train */
  int frozen;
  int checkpoint;        /* 1: the forward keeps only each layer's input; the backward
                            recomputes the layer (same gradients, bit for bit) */
} bm_bert_train;

/* Copies the weights of src (any bm_bert, e.g. bm_model's) into a new
 * trainable tower. Gradients are zeroed; checkpoint is 0 (set it before the
 * first forward). */
void bm_bert_train_init(bm_bert_train *bt, const bm_bert *src, int unlock, int frozen);
void bm_bert_train_free(bm_bert_train *bt);
/* The gradient of tensor i, or NULL when it does not train. */
float *bm_bert_train_grad(const bm_bert_train *bt, int i);
void bm_bert_train_zero_grad(bm_bert_train *bt);
/* Adds every tensor that trains to opt: matrices to group_decay, the rest
 * (norms, biases, embeddings) to group_nodecay. */
void bm_bert_train_add_params(bm_bert_train *bt, bm_adamw *opt, int group_decay, int group_nodecay);

/* Activations of one layer, N packed tokens. */
typedef struct {
  float *qkv;             /* [N,3W] */
  float *P;               /* attention probabilities (backward.h layout) */
  float *att;             /* [N,W] attention output (dense input) */
  float *xm;              /* [N,W] x + dense(att) (LN1 input) */
  float *a1, *m1, *r1;    /* [N,W] LN1 out (MLP input), [N] mean, [N] rstd */
  float *pre, *h;         /* [N,M] fc1 pre-activation, GELU(pre) (fc2 input) */
  float *xm2, *m2, *r2;   /* [N,W] a1 + fc2(h) (LN2 input), [N], [N] */
} bm_bt_layer_acts;

typedef struct {
  int cap_tok, cap_seq;       /* sizes the buffers hold */
  size_t cap_P;               /* floats of each P */
  int lo;                     /* lowest layer whose input the buffers keep */
  int nslot;                  /* full layer activation sets */
  int checkpoint;             /* the buffers' layout */
  size_t bytes;               /* what bm_bt_acts_bytes returns */
  bm_bt_layer_acts *la;       /* [nslot] */
  float **xin;                /* [depth + 1]: layer inputs, kept for layers >= lo, else NULL */
  /* the last forward */
  int N, nseq, kept;          /* tokens, texts, lowest layer kept (depth: none) */
  int has_ctx;                /* ctx was given (dctx possible) */
  const int32_t *ids;         /* the caller's arrays: valid until the backward */
  const int *start, *len;
  float *e0, *em, *er;        /* [N,W] embedding sum (LN input), [N] mean, rstd */
  float *x;                   /* [N,W] the residual stream; the last hidden state after the forward */
  float *pooled, *ppre, *ph;  /* [S,W] token 0, [S,H] proj.0 pre-activation, GELU of it */
  float *raw, *emb;           /* [S,E] projection before / after L2 normalize */
  /* backward scratch */
  float *d, *dr, *dqkv, *dh, *datt, *dph, *draw, *dpooled, *bscratch;
  float *dcomp;               /* [N,W] embedding gradients of word-id tokens, compacted */
  int *icomp;                 /* [N] their rows */
} bm_bt_acts;

void bm_bt_acts_free(bm_bt_acts *a);
/* Bytes of the activations the last forward keeps for the backward (layer
 * inputs and layer activation sets, embedding and projection activations);
 * not counting the backward's scratch. */
size_t bm_bt_acts_bytes(const bm_bt_acts *a);
/* What a forward of N tokens in nseq texts with nP attention probabilities
 * (bm_attention_probs_size) keeps, layers from lo up (0 with ctx, else the
 * first that trains), with or without checkpointing: for sizing a run. */
size_t bm_bt_acts_bytes_for(const bm_bert *m, int N, int nseq, size_t nP, int lo, int checkpoint);

/* ids packed as bm_bert_forward takes them (negative: prompt vector -1-id of
 * ctx[n_ctx, W]; ctx may be NULL when none is negative) -> emb[nseq, E]
 * (L2 normalized; may be NULL) and tokens[N, W] (the last hidden state; may
 * be NULL). ids, start and len must stay valid until the backward. Passing
 * ctx keeps every layer's activations (dctx may be asked); without it frozen
 * layers below the first that trains keep none. */
void bm_bert_train_forward(bm_bert_train *bt, bm_bt_acts *a, const int32_t *ids, const int *start,
                           const int *len, int nseq, const float *ctx, float *emb, float *tokens);
/* From demb[nseq, E] and/or dtokens[N, W] (either may be NULL; both: the
 * gradients add) of the last forward: parameter gradients added to bt->g,
 * and the prompt vectors' gradient ADDED to dctx[n_ctx, W] (NULL: not
 * wanted; then the backward stops at the lowest layer that trains). */
void bm_bert_train_backward(bm_bert_train *bt, bm_bt_acts *a, const float *demb, const float *dtokens,
                            float *dctx);

#endif
