/* recfile.h - random access to a record file, for training: one pass builds
 * an index of record offsets (16 bytes a record), then any record can be read
 * by number with pread. The data set never has to fit in memory; shuffling
 * an epoch is shuffling the index. */
#ifndef BM_RECFILE_H
#define BM_RECFILE_H

#include <msgpack.h>
#include <stdint.h>

typedef struct bm_recfile bm_recfile;

/* Opens and indexes path (a regular file, not a pipe). Dies with a message
 * naming the record on malformed input. */
bm_recfile *bm_recfile_open(const char *path);
void bm_recfile_close(bm_recfile *f);
long bm_recfile_count(const bm_recfile *f);          /* sample records */
const msgpack_object *bm_recfile_header(const bm_recfile *f); /* NULL if none */
const char *bm_recfile_name(const bm_recfile *f);

/* A record read by number (0-based sample index). Each slot holds one record
 * at a time, so several threads can read with a slot each. */
typedef struct {
  msgpack_unpacked msg;
  char *buf;
  size_t cap;
} bm_recslot;
void bm_recslot_init(bm_recslot *s);
void bm_recslot_free(bm_recslot *s);
/* The record, valid until the slot is reused; dies on a read error. */
const msgpack_object *bm_recfile_read(const bm_recfile *f, long index, bm_recslot *slot);
/* The same, returning NULL with bm_recfile_read's message in err instead of
 * dying (a reader thread hands its error to the thread that reports it). */
const msgpack_object *bm_recfile_read_try(const bm_recfile *f, long index, bm_recslot *slot, char *err,
                                          size_t errn);

/* A seeded permutation of 0..n-1 (Fisher-Yates with bm_rng). */
void bm_permutation(long *perm, long n, uint64_t seed);

#endif
