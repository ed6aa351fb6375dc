/* held.c - records held back while a batch fills (see held.h). */
#include "held.h"

#include <stdlib.h>

#include "util.h"

void bm_held_init(bm_held *h) {
  msgpack_sbuffer_init(&h->buf);
  msgpack_packer_init(&h->pk, &h->buf, msgpack_sbuffer_write);
  h->off = bm_xmalloc(sizeof(size_t));
  h->off[0] = 0;
  h->n = 0;
  h->cap = 0;
  msgpack_unpacked_init(&h->u);
}

void bm_held_free(bm_held *h) {
  msgpack_sbuffer_destroy(&h->buf);
  msgpack_unpacked_destroy(&h->u);
  free(h->off);
}

int bm_held_push(bm_held *h, const msgpack_object *rec) {
  if (h->n + 1 > h->cap) {
    h->cap = h->cap ? 2 * h->cap : 64;
    h->off = bm_xrealloc(h->off, sizeof(size_t) * (size_t)(h->cap + 1));
  }
  if (msgpack_pack_object(&h->pk, *rec)) bm_die("out of memory holding a record");
  h->off[++h->n] = h->buf.size;
  return h->n - 1;
}

const msgpack_object *bm_held_get(bm_held *h, int i) {
  size_t pos = 0;
  if (msgpack_unpack_next(&h->u, h->buf.data + h->off[i], h->off[i + 1] - h->off[i], &pos) !=
      MSGPACK_UNPACK_SUCCESS)
    bm_die("internal error: a held record does not unpack");
  return &h->u.data;
}

void bm_held_clear(bm_held *h) {
  msgpack_sbuffer_clear(&h->buf);
  h->n = 0;
}
