/* fusion.h - the co-attention fusion module between the towers and the
 * classifier (issue 6, seed 000 approaches 2 and 3; METER-style, pre-norm).
 *
 * Inputs: image tokens xi[B*Ti, Di] (the image tower's final-norm tokens, all
 * Ti of each image, token 0 = CLS) and text tokens xt[Nt, Dt] packed (text s
 * at rows tstart[s] .. tstart[s]+tlen[s]-1, token 0 = [CLS], tlen[s] >= 1),
 * one text per image. With F the fusion width:
 *   hi = xi Wi_in^T + bi_in        ht = xt Wt_in^T + bt_in
 *   each of L layers, for stream s in {img, txt} and the other stream o:
 *     y_s = h_s + SelfAttn_s(LN1_s(h_s))          (within each sequence)
 *     (both streams' self-attention first, then with n = LN2(y) of both:)
 *     z_s = y_s + CrossAttn_s(q = n_s, kv = n_o)  (image s attends to text s
 *                                                   only, and text s to image s)
 *     h_s = z_s + fc2_s(GELU(fc1_s(LN3_s(z_s))))
 *   pooled_s = LNf_s(h_s)[token 0 of each sequence]          [B, F] each
 *   out = [pooled_img, pooled_txt]  [B, 2F]   (BM_FUSE_CONCAT, approach 2)
 *      or (pooled_img + pooled_txt) / 2  [B, F]  (BM_FUSE_MEAN, approach 3)
 * Attention: heads of F/heads columns, scores / sqrt(F/heads), no mask.
 * CrossAttn_s's key/value weights belong to stream s and are applied to the
 * OTHER stream's normed tokens (METER's BertCrossLayer). LayerNorm eps is
 * 1e-5 (torch's default; BM_FUSION_EPS); GELU is the erf form. The
 * classifier head and dropout are not part of the module.
 *
 * Parameters live in one float buffer p (gradients in g, same layout), in
 * this order, under these checkpoint names (tests/ref/make_fusion_fixture.py
 * builds a torch module whose state_dict has exactly these keys):
 *   fusion.img_in.weight [F,Di], fusion.img_in.bias [F]
 *   fusion.txt_in.weight [F,Dt], fusion.txt_in.bias [F]
 *   for l in 0..L-1, for S in img, txt, prefix fusion.layers.l.S.:
 *     ln1.weight [F], ln1.bias [F]
 *     self.qkv.weight [3F,F], self.qkv.bias [3F]      (q, k, v row blocks)
 *     self.proj.weight [F,F], self.proj.bias [F]
 *     ln2.weight [F], ln2.bias [F]
 *     cross.q.weight [F,F], cross.q.bias [F]
 *     cross.kv.weight [2F,F], cross.kv.bias [2F]      (k, v row blocks)
 *     cross.proj.weight [F,F], cross.proj.bias [F]
 *     ln3.weight [F], ln3.bias [F]
 *     mlp.fc1.weight [M,F], mlp.fc1.bias [M]
 *     mlp.fc2.weight [F,M], mlp.fc2.bias [F]
 *   fusion.img_norm.weight [F], fusion.img_norm.bias [F]
 *   fusion.txt_norm.weight [F], fusion.txt_norm.bias [F]
 * Weight decay (bm_fusion_tensor.decay) applies to the matrices only.
 *
 * Gradient rules as backward.h: parameter gradients ACCUMULATE into g (zero
 * them per step), input gradients are WRITTEN. Every step partitions its
 * outputs over threads, so the forward gives the same bits for any thread
 * count wherever the GEMMs do (tests/unit/test_fusion.c checks 1 vs 2). */
#ifndef BM_FUSION_H
#define BM_FUSION_H

#include <stddef.h>
#include <stdint.h>

#include "adamw.h"
#include "weights.h"

#define BM_FUSION_EPS 1e-5f

enum { BM_FUSE_CONCAT = 0, BM_FUSE_MEAN = 1 };

typedef struct {
  int Di, Dt;       /* input widths: image tokens, text tokens */
  int F;            /* fusion width */
  int layers, heads;
  int mlp;          /* MLP width M; <= 0 means 4F (bm_fusion_init/load fill it in) */
  int combine;      /* BM_FUSE_CONCAT or BM_FUSE_MEAN */
} bm_fusion_cfg;

typedef struct {
  char name[96];
  int ndim;
  int64_t shape[4];
  size_t off, n;    /* in p and g (floats) */
  int decay;        /* 1: matrices; 0: norms and biases */
} bm_fusion_tensor;

typedef struct {
  bm_fusion_cfg cfg;
  float *p;         /* [np] parameters */
  size_t np;
  float *g;         /* [np] gradients */
  bm_fusion_tensor *t;
  int nt;
} bm_fusion;

/* Width of out: 2F (concat) or F (mean). */
int bm_fusion_out_dim(const bm_fusion_cfg *c);
/* NULL when c is usable, else a sentence saying why not. */
const char *bm_fusion_check_cfg(const bm_fusion_cfg *c);
/* Fresh parameters, seeded: every weight matrix normal with std 0.02
 * truncated at +-2 std (timm's trunc_normal_), biases 0, LayerNorm gains 1
 * and biases 0; g zeroed. Dies on a bad cfg (check it first). */
void bm_fusion_init(bm_fusion *f, const bm_fusion_cfg *c, uint64_t seed);
/* Parameters from the "fusion.*" tensors of a checkpoint, every shape checked
 * against c. 0 ok; -1 with err naming the tensor (and the cfg problem). */
int bm_fusion_load(bm_fusion *f, const bm_fusion_cfg *c, const bm_weights *w, char *err,
                   size_t errlen);
void bm_fusion_free(bm_fusion *f);
void bm_fusion_zero_grad(bm_fusion *f);
/* Every tensor into opt: matrices to group_decay, norms and biases to
 * group_nodecay. Names point into f->t: f must outlive opt. */
void bm_fusion_add_params(bm_fusion *f, bm_adamw *opt, int group_decay, int group_nodecay);
/* Index of the tensor named name, or -1. */
int bm_fusion_find(const bm_fusion *f, const char *name);

/* Activations of one stream in one layer (N rows of that stream). */
typedef struct {
  float *x;                 /* [N,F] layer input (LN1's input) */
  float *ln1, *m1, *r1;     /* [N,F], [N], [N] */
  float *qkv, *P1, *att;    /* [N,3F], self-attention probabilities, [N,F] */
  float *y;                 /* [N,F] after self-attention (LN2's input) */
  float *ln2, *m2, *r2;     /* n_s: [N,F], [N], [N] */
  float *cq, *ckv, *P2, *catt; /* [N,F] queries, [N_o,2F] keys/values from the other
                                * stream, cross probabilities, [N,F] */
  float *z;                 /* [N,F] after cross-attention (LN3's input) */
  float *ln3, *m3, *r3;     /* [N,F], [N], [N] */
  float *pre, *hh;          /* [N,M] fc1 pre-activation, GELU of it */
} bm_fusion_stream_acts;

/* Everything the backward needs from the last forward, grown (never shrunk)
 * to the largest batch seen; zero-initialize, free with bm_fusion_acts_free. */
typedef struct {
  size_t cap_rows[2], cap_B, cap_P1[2], cap_P2[2], cap_scratch; /* capacities (floats/rows) */
  int L;                         /* layers the arrays were made for */
  bm_fusion_stream_acts *la;     /* [L*2]: layer l stream s at l*2 + s (0 img, 1 txt) */
  float *in[2];                  /* [N_s, D_s] copies of xi, xt */
  float *h[2];                   /* [N_s, F] residual streams after the last layer */
  float *pin[2], *pooled[2], *mf[2], *rf[2]; /* [B,F] token 0 rows, LNf of them, [B], [B] */
  int *start[2], *len[2];        /* [B] sequences of each stream */
  int B, N[2];                   /* the last forward's batch and rows */
  /* backward scratch */
  float *d[2], *dln[2], *datt[2], *dqkv[2], *dcq[2], *dckv[2], *dh[2], *dpin[2], *dpooled[2];
  float *scratch;
} bm_fusion_acts;

void bm_fusion_acts_free(bm_fusion_acts *a);

/* out[B, bm_fusion_out_dim] from xi[B*Ti, Di] and xt (rows up to the largest
 * tstart[s]+tlen[s]; rows in no sequence are allowed and ignored). The inputs
 * are copied into a, so the caller may reuse them before the backward. */
void bm_fusion_forward(bm_fusion *f, bm_fusion_acts *a, const float *xi, int B, int Ti,
                       const float *xt, const int *tstart, const int *tlen, float *out);
/* From dout[B, outdim] = dL/d(out) of the last forward: parameter gradients
 * added to f->g; dxi[B*Ti, Di] and dxt[Nt, Dt] written (rows of xt in no
 * sequence get 0); either may be NULL. */
void bm_fusion_backward(bm_fusion *f, bm_fusion_acts *a, const float *dout, float *dxi, float *dxt);

#endif
