/* train_data.h - bm-train's record files: an offset index (recfile.h) read
 * one batch at a time; only the targets (C bytes a record) stay in memory.
 * Every record is checked once when the file is loaded, before training,
 * so that bad input stops a run before anything is written. */
#ifndef BM_TRAIN_DATA_H
#define BM_TRAIN_DATA_H
#include <stdint.h>
#include "linhead.h"
#include "model.h"
#include "recfile.h"

/* what the records must hold */
enum {
  BM_NEED_FEATURES = 1, /* img_emb/txt_emb as --features says (linear) */
  BM_NEED_IMAGE = 2,    /* "image" u8 [3,S,S] at the model's size (or larger: augment) */
  BM_NEED_TEXT = 4,     /* "text", a string */
  BM_NEED_TARGET = 8,   /* "target" one-hot / 0-1 over the header's classes */
  BM_ALLOW_LABEL_TEXT = 16, /* a text naming a class is counted, not refused */
};

typedef struct {
  bm_recfile *f;
  const char *name;
  long n;
  int C, multilabel, pairs; /* pairs: header task "pairs", no classes nor targets */
  char **classes;           /* [C] */
  uint8_t *y;               /* [n,C] targets, or NULL */
  int dims[2], D;           /* feature widths; D: the values read_batch writes per record */
  int need;                 /* BM_NEED_* */
  const bm_model *model;    /* image records: the model that takes them */
  int augment;              /* training set: larger images are cropped (augment.h) */
  uint8_t *crop;            /* [3,S,S] the crop of one image */
  const char *mode;         /* for messages: "--mode finetune" */
  long label_text;          /* records whose text names a class (--allow-label-text) */
} bm_trainset;

/* Index path and check every record. dims: the feature widths to expect
 * (a resumed run's) or NULL; model: for image records; augment: a training
 * set. The header must name the task and classes, or (allow_pairs) be a
 * "pairs" header without them. Exits 1 naming the file and record. */
void bm_trainset_load(const char *path, int need, bm_feat feat, const int *dims, const bm_model *model,
                      int augment, int allow_pairs, const char *mode, bm_trainset *ds);
void bm_trainset_free(bm_trainset *ds);

/* A batch of records idx[0..B-1]: features or normalized images X [B,D]
 * and targets Y [B,C] (Y may be NULL); aug_seed draws the crops of larger
 * training images (one crop per record and seed). */
void bm_trainset_batch(const bm_trainset *ds, bm_feat feat, const long *idx, int B, bm_recslot *slot,
                       uint64_t aug_seed, float *X, float *Y);
/* The same with crop ([3,S,S] u8 scratch of the caller, so that a reader
 * thread shares nothing it writes with ds) and, instead of dying, -1 with
 * bm_trainset_batch's message in err (0: done). */
int bm_trainset_batch_try(const bm_trainset *ds, bm_feat feat, const long *idx, int B, bm_recslot *slot,
                          uint8_t *crop, uint64_t aug_seed, float *X, float *Y, char *err, size_t errn);

/* The stratified subset (man bm-train, FEW-SHOT SUBSETS) of fraction F:
 * indices into the file, ascending, *m of them. */
long *bm_trainset_subset(const bm_trainset *ds, double F, uint64_t seed, long *m);
/* positives per class [C] among records idx[0..m-1] (malloc'd) */
long *bm_trainset_positives(const bm_trainset *ds, const long *idx, long m);

/* The seed of one purpose (subset, epoch e, ...), so that each draws its
 * own stream from --seed. */
static inline uint64_t bm_sub_seed(uint64_t seed, uint64_t tag) { return seed ^ (0x9E3779B97F4A7C15ULL * (tag + 1)); }
#define BM_SUBSET_TAG 0xFFFFFFFFULL
#define BM_HEAD_TAG 0xFFFFFFFEULL
#define BM_AUG_TAG 0xA06E000000000000ULL
#define BM_DROP_TAG 0xD509000000000000ULL
#endif
