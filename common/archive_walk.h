/* archive_walk.h - the files of a data set, one after the other, from tar,
 * tar.gz, zip (anything libarchive reads, streamed, never extracted) and from
 * folders (walked recursively in byte order of names, so every machine sees
 * the same order). Only regular files are members. */
#ifndef BM_ARCHIVE_WALK_H
#define BM_ARCHIVE_WALK_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *container; /* the archive or folder given */
  const char *name;      /* path inside it ("images/00000001_000.png") */
  int64_t size;          /* bytes, -1 when the archive does not say */
} bm_member;

typedef struct bm_walk bm_walk;

/* inputs: archive files and folders, walked in the order given. */
bm_walk *bm_walk_open(char *const *inputs, int n);
void bm_walk_close(bm_walk *w);

/* 1: *m is the next member (valid until the next call). 0: no more.
 * -1: the current input failed (cannot open, not an archive, truncated,
 * corrupt): err says why, m->container and m->name (the member being read,
 * or "") say where; the next call goes on with the next input. */
int bm_walk_next(bm_walk *w, bm_member *m, char *err, size_t errlen);

/* Read the current member whole (malloc'd into *data). 0 ok; -1 the member
 * is unreadable or larger than max bytes (the walk goes on); -2 the archive
 * broke while reading it (truncated or corrupt): the next bm_walk_next
 * moves to the next input. */
int bm_walk_read(bm_walk *w, void **data, size_t *n, size_t max, char *err, size_t errlen);
#endif
