/* linhead.h - a linear classification head on record features, as bm-train
 * --mode linear trains it and bm-fuse -m applies it: the same feature
 * extraction and the same forward on both sides, so a trained head scores
 * the same bits in both programs.
 *
 * Features are "img_emb", "txt_emb" or both concatenated (img first), each
 * an f32/f16 [D] tensor. logits = x W^T + b with W [C,D], b [C].
 *
 * A checkpoint (man bm-train) is a .safetensors file with "head.weight" f32
 * [C,D], "head.bias" f32 [C] and a "config" JSON in its metadata naming
 * mode "linear", features, feature_dims, task and classes. */
#ifndef BM_LINHEAD_H
#define BM_LINHEAD_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

#include "weights.h"

typedef enum { BM_FEAT_IMG, BM_FEAT_TXT, BM_FEAT_BOTH } bm_feat;

const char *bm_feat_name(bm_feat f);
int bm_feat_parse(const char *s, bm_feat *f); /* 0 ok */

/* The features of one record into dst (room for dims[0] + dims[1] values).
 * dims[k] == 0 is learnt from this record; afterwards every record must
 * match. Returns D (> 0); 0 with *missing set to the absent key; -1 with a
 * reason in err (wrong dtype, rank, size, or a value that is not finite). */
int bm_linhead_features(const msgpack_object *rec, bm_feat f, int dims[2], float *dst,
                        size_t cap, const char **missing, char *err, size_t errlen);

/* Below this many multiply-adds a batch runs on one thread: a linear probe
 * of a few classes spends its time reading records, and waking threads for
 * each batch cost more than it saved (4x slower measured on a busy 2-core
 * machine at B*C*D = 1.8M). */
#define BM_LINEAR_PAR_MIN (1L << 23)

/* logits[B,C] = X[B,D] W[C,D]^T + b[C], each dot product summed in double in
 * index order: the bits do not depend on the thread count. */
void bm_linhead_forward(const float *X, const float *W, const float *b, int B, int D, int C,
                        float *logits);
/* dW[C,D] = dlogits^T X and db[C] = column sums of dlogits (overwritten, not
 * accumulated), summed over the batch in order, in double. */
void bm_linhead_backward(const float *X, const float *dlogits, int B, int D, int C, float *dW,
                         float *db);

/* prob from logits: softmax across classes (multiclass) or the sigmoid of
 * each (multilabel), in double. */
void bm_linhead_prob(const float *logits, int C, int multilabel, float *prob);

typedef struct {
  bm_feat feat;
  int dims[2]; /* widths of img_emb / txt_emb as trained (0 when unused) */
  int D, C, multilabel;
  char **classes; /* [C] */
  const float *W, *b; /* point into ws */
  json_t *config;
  bm_weights ws;
} bm_linhead;

/* Opens a bm-train linear checkpoint and checks its config against its
 * tensors. 0 ok; -1 with a message in err naming the file. */
int bm_linhead_load(const char *path, bm_linhead *h, char *err, size_t errlen);
void bm_linhead_free(bm_linhead *h);

#endif
