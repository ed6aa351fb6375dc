/* pool.c - see pool.h. */
#include "pool.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
  char *items;
  int n;
} batch;

static int fill(const bm_pool *p, batch *b, int cap, int *done) {
  size_t bytes = 0;
  b->n = 0;
  while (!*done && b->n < cap && (!p->batch_bytes || bytes < p->batch_bytes)) {
    char *it = b->items + (size_t)b->n * p->item_size;
    memset(it, 0, p->item_size);
    size_t w = 0;
    if (!p->produce(p->ctx, it, &w)) {
      *done = 1;
      break;
    }
    bytes += w;
    b->n++;
  }
  return b->n;
}

void bm_pool_run(const bm_pool *p) {
  int cap = p->batch > 0 ? p->batch : 8 * omp_get_max_threads();
  batch b[2];
  for (int i = 0; i < 2; i++) b[i].items = bm_xmalloc(bm_mul_size((size_t)cap, p->item_size));
  int done = 0, cur = 0;
  fill(p, &b[cur], cap, &done);
#pragma omp parallel
#pragma omp single
  while (b[cur].n > 0) {
    for (int i = 0; i < b[cur].n; i++) {
      char *it = b[cur].items + (size_t)i * p->item_size;
#pragma omp task firstprivate(it)
      p->work(p->ctx, it);
    }
    b[!cur].n = 0;
    fill(p, &b[!cur], cap, &done); /* read ahead while the others work */
#pragma omp taskwait
    for (int i = 0; i < b[cur].n; i++) p->consume(p->ctx, b[cur].items + (size_t)i * p->item_size);
    if (p->batch_done) p->batch_done(p->ctx);
    b[cur].n = 0;
    cur = !cur;
  }
  free(b[0].items);
  free(b[1].items);
}
