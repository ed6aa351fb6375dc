/* bm_pool: every item worked once, consumed in production order, batches
 * bounded by count and by weight, whatever the thread count. */
#include <omp.h>
#include <stdlib.h>

#include "check.h"
#include "pool.h"

typedef struct {
  long i;
  long result, spin;
  int worked;
} item;

typedef struct {
  long n, next, consumed, bad_order, bad_work, batches;
  size_t weight;
} ctx;

static int produce(void *c_, void *it_, size_t *w) {
  ctx *c = c_;
  item *it = it_;
  if (c->next >= c->n) return 0;
  it->i = c->next++;
  *w = c->weight;
  return 1;
}

static void work(void *c_, void *it_) {
  (void)c_;
  item *it = it_;
  unsigned long x = (unsigned long)it->i * 2654435761UL; /* uneven work: tasks end out of order */
  for (long k = 0; k < (it->i * 7919) % 20000; k++) x = x * 6364136223846793005UL + 1;
  it->result = it->i * it->i;
  it->spin = (long)(x >> 1); /* keeps the loop */
  it->worked++;
}

static void consume(void *c_, void *it_) {
  ctx *c = c_;
  item *it = it_;
  c->bad_order += it->i != c->consumed;
  c->bad_work += it->worked != 1 || it->result != it->i * it->i;
  c->consumed++;
}

static void done(void *c_) { ((ctx *)c_)->batches++; }

int main(void) {
  for (int threads = 1; threads <= 4; threads += 3) {
    omp_set_num_threads(threads);
    ctx c = {.n = 1003};
    bm_pool p = {.item_size = sizeof(item), .batch = 10, .ctx = &c, .produce = produce,
                 .work = work, .consume = consume, .batch_done = done};
    bm_pool_run(&p);
    CHECK(c.consumed == 1003 && !c.bad_order && !c.bad_work,
          "%d threads: 1003 items each worked once, consumed in order", threads);
    CHECK(c.batches == 101, "%d threads: batches of 10 (%ld batches)", threads, c.batches);
    ctx c2 = {.n = 50, .weight = 100};
    p.ctx = &c2;
    p.batch_bytes = 250;
    bm_pool_run(&p);
    CHECK(c2.consumed == 50 && !c2.bad_order && c2.batches == 17,
          "%d threads: batches close at the byte bound (3 items of 100 for 250; %ld batches)", threads, c2.batches);
    ctx c3 = {.n = 0};
    p.ctx = &c3;
    bm_pool_run(&p);
    CHECK(c3.consumed == 0 && c3.batches == 0, "%d threads: empty input, nothing consumed", threads);
  }
  CHECK_DONE();
}
