/* datasets.h - the metadata side of bm-decode: each data set's release
 * layout (which archives or folders hold the images, which CSV and lists
 * label them) turned into one table of samples with id, split, group,
 * target, metadata and optional text. bm-decode then walks the images and
 * looks each one up here by its key (the file name without folders and
 * without an image extension). */
#ifndef BM_DATASETS_H
#define BM_DATASETS_H
#include <stdint.h>

#include "problems.h"
#include "strmap.h"

enum { BM_META_INT, BM_META_NUM, BM_META_STR };

typedef struct {
  char *key, *id, *group, *text;
  char *path;       /* pairs from a CSV: the image file (NULL otherwise) */
  int split;        /* BM_SPLIT_*, BM_SPLIT_NONE when unknown */
  float *target;    /* [nclasses] */
  char **meta;      /* [nmeta] values as text; NULL or "" when absent */
  long line;        /* metadata line, for messages */
  int problem;      /* a BM_P_* kind found in the metadata, or -1 */
  char *why;        /* its reason */
  int skip;         /* the problem keeps the sample out of the output */
  int seen;         /* its image was found */
} bm_sample;

typedef struct {
  /* what the caller asks */
  const char *format, *dir, *csv;         /* csv NULL: the release's name */
  double val_fraction, test_fraction;     /* test_fraction < 0: the format's default */
  uint64_t seed;
  /* folder format only */
  const char *id_column, *label_column, *label_columns, *classes_opt;
  int multilabel;
  char **extra_inputs; int nextra;        /* further folders/archives given */
  /* pairs format only: the CSV's columns (NULL: filepath/title, else image/caption) */
  const char *image_col, *caption_col;
} bm_dataset_opts;

typedef struct {
  const char *name, *task;                /* "nih-chestxray14", "multilabel" */
  char **classes; int nclasses;
  char **meta_keys; int *meta_types; int nmeta;
  bm_sample *s; long n, cap;
  bm_strmap index;                        /* key -> sample */
  char **inputs; int ninputs;             /* archives and folders, walk order */
  char *csv_path;
  double val_fraction, test_fraction;
  int webdataset;                         /* pairs: inputs are webdataset shards, no samples */
  char delim;                             /* pairs CSV: ',' or '\t' */
  const char *image_col, *caption_col;    /* pairs CSV: the columns used */
} bm_dataset;

/* Format "pairs" (image-caption pairs, task "pairs", no classes): opts->dir
 * is a CSV/TSV file, a folder holding exactly one .csv/.tsv at the top, or a
 * webdataset shard (tar) or folder with none, further shards in
 * extra_inputs. From a CSV the samples are its rows (id the image path as
 * written, "#2", "#3" added to later rows of the same path; group and key the
 * path; text the caption; path the file); from shards there are no samples
 * (d->webdataset, d->inputs the shards: see wds.h). Either way each sample's
 * split is bm_split_of(group) with val and test fractions 0.1 by default.
 *
 * Load the metadata of opts->format under opts->dir. Missing or unreadable
 * files, an unknown format or a layout without images: a message and exit 1
 * (nothing has been written yet). Problems with single rows are stored in
 * the samples, for the caller to report (it knows what it selects). */
bm_dataset *bm_dataset_load(const bm_dataset_opts *opts);
void bm_dataset_free(bm_dataset *d);

/* The lookup key of a file or id: the last path component, without an image
 * extension. Written into buf. */
const char *bm_sample_key(const char *name, char *buf, int n);
#endif
