/* vit_train.h - the image tower (vit.h) as a trainable thing: its
 * parameters copied into one buffer that training owns and updates, a
 * training forward that keeps what the backward needs, and that backward
 * (backward.h's layers composed, gradients ACCUMULATED as backward.h says).
 *
 * Parameters live in one float buffer p, in the order
 *   patch_embed W [W,3,P,P], b [W]; cls_token [1,1,W]; pos_embed [1,T,W];
 *   blocks 0..depth-1: norm1 w,b; qkv W [3W,W], b; proj W [W,W], b;
 *                      norm2 w,b; fc1 W [M,W], b; fc2 W [W,M], b;
 *   norm w,b [W]; head.proj W [E,W]
 * so that what trains (the last N blocks, the final norm and the head) is a
 * suffix of p: the gradient buffer g covers only that suffix, and frozen
 * tensors have no gradient at all. `v` is a bm_vit whose pointers point into
 * p, so the inference forward (bm_vit_forward) runs on the trained weights.
 *
 * The training forward gives the same bits as bm_vit_forward (the same row
 * functions and GEMM calls; tests/unit/test_vit_train.c checks it) unless
 * patch dropout is on; checkpointing changes no bit of anything
 * (tests/unit/test_vit_ext.c). */
#ifndef BM_VIT_TRAIN_H
#define BM_VIT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "vit.h"

typedef struct {
  char name[96];        /* open_clip name, e.g. "visual.trunk.blocks.3.attn.qkv.weight" */
  int ndim;
  int64_t shape[4];
  size_t off, n;        /* in p (floats) */
  int decay;            /* 1: weight decay applies (matrices); 0: norms, biases, cls, pos */
} bm_vt_tensor;

/* What trains: everything (unlock < 0 or >= depth), the last `unlock`
 * blocks + final norm + head (0 <= unlock < depth: unlock 0 is norm + head),
 * or nothing (frozen: the tower is a fixed feature extractor). */
typedef struct {
  bm_vit v;              /* views into p */
  bm_vt_tensor *t;       /* [nt] in the order above */
  int nt;
  float *p;              /* [np] parameters */
  size_t np;
  float *g;              /* [np - goff] gradients of p[goff..np); NULL when frozen */
  size_t goff;
  int first;             /* lowest block that trains (depth when only norm/head or frozen) */
  int embed_trains;      /* patch embed, cls, pos train */
  int frozen;
  /* Training options, all 0 after init (set them before a forward):
   * patch_dropout p in [0,1): each image keeps K = bm_vit_patch_keep_count
   *   patch tokens and its CLS token (open_clip/timm PatchDropout, see below);
   *   the kept set of image b (its index in the batch) is
   *   bm_vit_patch_keep(pd_seed, pd_step, b): give every forward its own
   *   pd_step, e.g. step * accum + micro-batch, or two micro-batches of one
   *   step drop the same patches; a resumed run then repeats the sets.
   * checkpoint: the forward keeps only each training block's input; the
   *   backward recomputes a block's activations right before its backward
   *   (same bits as without; ~1/3 more compute for the blocks). */
  float patch_dropout;
  uint64_t pd_seed, pd_step;
  int checkpoint;
} bm_vit_train;

/* Copies the weights of src (any bm_vit, e.g. bm_model's) into a new trainable
 * tower. Gradients are zeroed. */
void bm_vit_train_init(bm_vit_train *vt, const bm_vit *src, int unlock, int frozen);
void bm_vit_train_free(bm_vit_train *vt);
/* The gradient of tensor i, or NULL when it does not train. */
float *bm_vit_train_grad(const bm_vit_train *vt, int i);
void bm_vit_train_zero_grad(bm_vit_train *vt);

/* Activations of one block, N = B*T rows. */
typedef struct {
  float *x;               /* [N,W] block input (kept for LN1's backward) */
  float *ln1, *m1, *r1;   /* [N,W] LN1 out, [N] mean, [N] rstd */
  float *qkv;             /* [N,3W] */
  float *P;               /* attention probabilities (backward.h layout) */
  float *att;             /* [N,W] attention output (proj input) */
  float *xm;              /* [N,W] x + proj(att) (LN2 input) */
  float *ln2, *m2, *r2;   /* [N,W], [N], [N] */
  float *pre, *h;         /* [N,M] fc1 pre-activation, GELU(pre) (fc2 input) */
} bm_vt_block_acts;

typedef struct {
  int cap;                     /* images the buffers hold */
  int T;                       /* tokens per image they are sized for: 1 + K */
  int ckpt;                    /* sized for checkpointing */
  int B;                       /* images of the last forward */
  size_t bytes;                /* bytes of all buffers below */
  int nslot;                   /* block activation sets: depth - first, plus one scratch */
  bm_vt_block_acts *blk;       /* [nslot]: slot of block l is l - first; frozen blocks share the last
                                  (the scratch slot exists only when some block uses it); with
                                  checkpointing the per-block slots hold only x, and every block
                                  runs (and is recomputed) in the scratch slot */
  int scratch_blk;             /* block whose activations the scratch slot holds, -1 none */
  float *x;                    /* [N,W] the residual stream between blocks (after the forward: the
                                  last block's output, the final norm's input) */
  float *xr;                   /* [N,W] checkpointing: the stream of a recomputed block */
  int *keep;                   /* [B*K] patch dropout: kept patches of each image, ascending */
  float *mt, *rt;              /* [N] final norm statistics of every token (tokens output) */
  int has_tokens;              /* the last forward computed the tokens output */
  float *cols, *patches;       /* [B*G*G, 3PP], [B*G*G, W] */
  float *pin, *pooled, *mf, *rf; /* [B,W] token 0 of x, final norm of it, [B] mean, rstd */
  float *raw, *emb;            /* [B,E] head output before / after L2 normalize */
  int *start, *len;            /* [B] */
  /* backward scratch */
  float *d, *dln, *datt, *dqkv, *dh, *dpatch, *dpin, *dpooled, *draw, *bscratch;
} bm_vt_acts;

void bm_vt_acts_free(bm_vt_acts *a);
/* Bytes the buffers of a hold (activations kept by the forward plus the
 * backward's scratch), after a forward. */
size_t bm_vt_acts_bytes(const bm_vt_acts *a);
/* The same number without allocating anything, from the shape alone (only
 * v's sizes are read: a bm_vit with NULL weights will do): the tower with
 * blocks first..depth-1 training (first = depth: only norm and head;
 * frozen: none), B images of T tokens (1 + K with patch dropout). */
size_t bm_vt_acts_plan(const bm_vit *v, int first, int frozen, int checkpoint, int B, int T);

/* Patch dropout as open_clip's PatchDropout (transformer.py) and timm's
 * (layers/patch_dropout.py, which BiomedCLIP's timm trunk gets through
 * open_clip's patch_dropout option): after the positional embedding, each
 * image keeps K = max(1, int(GG * (1 - p))) of its GG patch tokens, a
 * uniformly random subset drawn per image, and its CLS token first; training
 * only (bm_vit_forward never drops). torch draws the subset from torch.randn
 * (open_clip: topk, timm: argsort); here patch i of image b gets the score
 * bm_hash64((step, b, i), seed) and the K smallest scores are kept: the same
 * distribution, a different stream, reproducible from (seed, step, b) alone.
 * The kept patches stay in ascending position order (timm's ordered=True;
 * torch's default order is the random one). Order changes nothing but the row
 * order of the tokens output: attention is permutation-equivariant and the
 * positions are already added. */
int bm_vit_patch_keep_count(int GG, float p);
/* keep[K] = the kept patch indices (0..GG-1, ascending) of image b. */
void bm_vit_patch_keep(int *keep, int GG, int K, uint64_t seed, uint64_t step, int b);

/* img[B,3,S,S] normalized -> emb[B,E] (L2 normalized; also kept in a->emb). */
void bm_vit_train_forward(bm_vit_train *vt, bm_vt_acts *a, const float *img, int B, float *emb);
/* From demb[B,E] = dL/d(emb) of the last forward: gradients added to vt->g. */
void bm_vit_train_backward(bm_vit_train *vt, bm_vt_acts *a, const float *demb, int B);

/* As bm_vit_train_forward, and tokens[B*T', W] = the final LayerNorm of every
 * token (bm_vit_forward's tokens output, the same bits), T' = T, or 1 + K
 * with patch dropout: image b's rows are its CLS token then its kept patches
 * in a->keep order. emb and tokens may each be NULL (emb is kept in a->emb
 * anyway). */
void bm_vit_train_forward_tokens(bm_vit_train *vt, bm_vt_acts *a, const float *img, int B,
                                 float *emb, float *tokens);
/* Gradients of the last forward added to vt->g from demb[B,E] and
 * dtokens[B*T',W], either NULL (dtokens needs a forward that gave tokens). */
void bm_vit_train_backward_tokens(bm_vit_train *vt, bm_vt_acts *a, const float *demb,
                                  const float *dtokens, int B);

#endif
