/* pool.h - an ordered parallel map over a stream, in bounded memory.
 *
 * One thread produces items in order (reading an archive, a record stream),
 * the work on them runs on all cores (OpenMP tasks), and the results are
 * consumed in the order produced, so output does not depend on the thread
 * count. Two batches exist at a time: while one is worked on, the producer
 * fills the next. */
#ifndef BM_POOL_H
#define BM_POOL_H
#include <stddef.h>

typedef struct {
  size_t item_size;   /* bytes of one item */
  int batch;          /* items per batch; 0: 8 per thread */
  size_t batch_bytes; /* a batch closes when its items weigh this much; 0: no limit */
  void *ctx;
  /* The next item into *item (zeroed): 1 produced, 0 no more. *weight: the
   * bytes it holds, for batch_bytes. Called on one thread, in order. */
  int (*produce)(void *ctx, void *item, size_t *weight);
  /* Called in parallel, once per item. */
  void (*work)(void *ctx, void *item);
  /* Called on one thread, in production order, after work. */
  void (*consume)(void *ctx, void *item);
  /* Called on the consuming thread after each batch (progress), may be NULL. */
  void (*batch_done)(void *ctx);
} bm_pool;

void bm_pool_run(const bm_pool *p);
#endif
