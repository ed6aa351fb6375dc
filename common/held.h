/* held.h - records held back while a batch fills.
 *
 * A filter that computes on batches must keep each record until its batch is
 * done, but the reader's record is only valid until the next read. The held
 * records are packed one after the other into one growing buffer (no malloc
 * per record) and unpacked again, in order, when the batch is written. */
#ifndef BM_HELD_H
#define BM_HELD_H

#include <msgpack.h>
#include <stddef.h>

typedef struct {
  msgpack_sbuffer buf;
  msgpack_packer pk;
  size_t *off; /* [n + 1] start of each record in buf */
  int n, cap;
  msgpack_unpacked u;
} bm_held;

void bm_held_init(bm_held *h);
void bm_held_free(bm_held *h);
/* Copy rec in; returns its index. */
int bm_held_push(bm_held *h, const msgpack_object *rec);
/* Record i, valid until the next bm_held_get or bm_held_clear. */
const msgpack_object *bm_held_get(bm_held *h, int i);
void bm_held_clear(bm_held *h);

#endif
