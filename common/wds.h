/* wds.h - webdataset-style image-caption samples out of tar shards (or
 * folders): the members of one sample share a key and lie next to each other,
 *   000123.jpg  000123.txt  000124.png  000124.txt ...
 * The key is the member's path up to the first dot of its file name (folders
 * kept, as webdataset's own loader splits "dir/000123.seg.png" into key
 * "dir/000123" and extension "seg.png"); the extension, without case, says
 * what the member is: jpg, jpeg, png, webp (the image) and txt (the caption).
 * Other extensions (json, cls, ...) belong to other loaders and are passed
 * over; __MACOSX/, ._* and .DS_Store members are reported. */
#ifndef BM_WDS_H
#define BM_WDS_H
#include <stddef.h>

#include "archive_walk.h"
#include "strmap.h"

typedef struct {
  int kind;           /* -1: a complete pair; else the BM_P_* problem in err */
  char *key;          /* the sample's key (or the member's name for a member problem) */
  char *container;    /* the archive or folder */
  char *member;       /* the image member (or the one the problem is about) */
  void *img;          /* the image file's bytes (pair only) */
  size_t nimg;
  char *caption;      /* UTF-8, trimmed, NUL-terminated (pair only) */
  char err[512];
} bm_wds_sample;

/* want(ctx, key): 0 leaves the sample out (another split or shard): its
 * members are not read and its problems not reported. */
typedef int (*bm_wds_want)(void *ctx, const char *key);

typedef struct bm_wds bm_wds;
bm_wds *bm_wds_open(bm_walk *walk, bm_wds_want want, void *ctx);
void bm_wds_close(bm_wds *r);

/* 1: *s is the next pair or problem, in input order (the caller frees it
 * with bm_wds_sample_free); 0: the end of the inputs. Problems: an image
 * without caption (BM_P_NO_ROW), a caption without image (BM_P_NO_IMAGE),
 * two images or captions for one key or a key met again later
 * (BM_P_DUPLICATE), an empty caption or one that is not UTF-8 (BM_P_BAD_ROW),
 * an unreadable member or archive (BM_P_CORRUPT, BM_P_ARCHIVE), a member
 * that is not an image (BM_P_NOT_IMAGE). A sample with a problem is
 * skipped whole. */
int bm_wds_next(bm_wds *r, bm_wds_sample *s);
void bm_wds_sample_free(bm_wds_sample *s);

/* Trim ASCII white space at both ends in place; 0 when s is valid UTF-8
 * (no overlong forms, surrogates or code points past U+10FFFF). */
int bm_caption_clean(char *s);
#endif
