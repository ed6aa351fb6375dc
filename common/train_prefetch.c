/* train_prefetch.c - the next training batch read on worker threads.
 *
 * Threads per batch (pthread_create in start, pthread_join in get): a batch
 * takes milliseconds to hundreds of them, a thread tens of microseconds, and
 * joins are the whole synchronization. The worker splits the batch into
 * contiguous shares among `threads` readers (itself one), each with its
 * own record slot and crop scratch; those belong to the worker between
 * create and join, to the caller otherwise (it reads only with no worker in
 * flight). */
#include "train_prefetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* one reader's share of a batch: records [lo, hi) */
typedef struct {
  bm_prefetch *p;
  int lo, hi, rc;
  bm_recslot slot;
  uint8_t *crop;
  pthread_t th;
  char err[1024];
} reader;

struct bm_prefetch {
  const bm_trainset *ds;
  bm_feat feat;
  int batch, nr;
  float *X[2], *Y[2];
  reader *r; /* [nr] */
  void (*dealloc)(void *);
  int cur; /* the buffer the last get handed out, -1: none */
  /* the batch in flight (busy): its records, seed, buffer and result */
  int busy, which, B, rc;
  long *idx;
  uint64_t seed;
  pthread_t th;
  char err[1024];
};

static void *xalloc(size_t n, const char *what) {
  (void)what;
  return bm_xmalloc(n);
}

bm_prefetch *bm_prefetch_new(const bm_trainset *ds, bm_feat feat, int batch, int threads,
                             void *(*alloc)(size_t, const char *), void (*dealloc)(void *)) {
  bm_prefetch *p = bm_xcalloc(1, sizeof *p);
  p->ds = ds, p->feat = feat, p->batch = batch, p->cur = -1;
  p->nr = threads < 1 ? 1 : threads > batch ? (batch > 0 ? batch : 1) : threads;
  if (!alloc) alloc = xalloc, dealloc = free;
  p->dealloc = dealloc;
  size_t nx = bm_mul_size(bm_mul_size((size_t)batch, (size_t)ds->D), sizeof(float));
  size_t ny = bm_mul_size(bm_mul_size((size_t)batch, (size_t)(ds->C ? ds->C : 1)), sizeof(float));
  for (int k = 0; k < 2; k++) {
    p->X[k] = alloc(nx, "a training batch's images");
    p->Y[k] = ds->y ? alloc(ny, "a training batch's targets") : NULL;
  }
  p->r = bm_xcalloc((size_t)p->nr, sizeof *p->r);
  for (int k = 0; k < p->nr; k++) {
    reader *r = &p->r[k];
    r->p = p;
    bm_recslot_init(&r->slot);
    if (ds->need & BM_NEED_IMAGE) {
      int S = ds->model->vit.image_size;
      r->crop = bm_xmalloc(bm_mul_size((size_t)3 * S, (size_t)S));
    }
  }
  p->idx = bm_xmalloc(sizeof(long) * (size_t)(batch > 0 ? batch : 1));
  return p;
}

/* reads records [lo, hi) of the batch p->idx, p->B into buffer p->which */
static void *read_share(void *arg) {
  reader *r = arg;
  bm_prefetch *p = r->p;
  size_t D = (size_t)p->ds->D, C = (size_t)p->ds->C;
  float *Y = p->Y[p->which];
  r->rc = r->lo < r->hi ? bm_trainset_batch_try(p->ds, p->feat, p->idx + r->lo, r->hi - r->lo, &r->slot, r->crop,
                                                p->seed, p->X[p->which] + (size_t)r->lo * D,
                                                Y ? Y + (size_t)r->lo * C : NULL, r->err, sizeof r->err)
                        : 0;
  return NULL;
}

/* The batch p->idx, p->B, p->seed into buffer p->which, split among the
 * readers (each record's values depend on its number and the seed only, so
 * any split gives the same bits); p->rc, p->err: the first error in the
 * batch's order, as one reader of the whole batch would meet it. */
static void read_batch(bm_prefetch *p) {
  int n = p->B < p->nr ? p->B : p->nr, started[n];
  for (int k = 0; k < n; k++) {
    p->r[k].lo = (int)((long)p->B * k / n), p->r[k].hi = (int)((long)p->B * (k + 1) / n);
    /* reader 0 is this thread; one without a thread reads here too */
    started[k] = k > 0 && pthread_create(&p->r[k].th, NULL, read_share, &p->r[k]) == 0;
  }
  for (int k = 0; k < n; k++)
    if (!started[k]) read_share(&p->r[k]);
  p->rc = 0;
  for (int k = 0; k < n; k++) {
    if (started[k]) {
      int e = pthread_join(p->r[k].th, NULL);
      if (e) bm_die("internal error: pthread_join of a batch reader: %s", strerror(e));
    }
    if (p->r[k].rc && !p->rc) p->rc = -1, memcpy(p->err, p->r[k].err, sizeof p->err);
  }
}

static void *worker(void *arg) {
  read_batch(arg);
  return NULL;
}

/* waits for the batch in flight; 1: there was one */
static int wait_worker(bm_prefetch *p) {
  if (!p->busy) return 0;
  int e = pthread_join(p->th, NULL);
  if (e) bm_die("internal error: pthread_join of the batch reader: %s", strerror(e));
  p->busy = 0;
  return 1;
}

void bm_prefetch_start(bm_prefetch *p, const long *idx, int B, uint64_t aug_seed) {
  if (B < 1 || B > p->batch) bm_die("internal error: prefetch of %d records, buffers of %d", B, p->batch);
  wait_worker(p);
  p->which = p->cur == 0;
  p->B = B, p->seed = aug_seed;
  memcpy(p->idx, idx, sizeof(long) * (size_t)B);
  /* no thread (resources): the batch is read when asked for, as without prefetch */
  p->busy = pthread_create(&p->th, NULL, worker, p) == 0;
}

int bm_prefetch_get(bm_prefetch *p, const long *idx, int B, uint64_t aug_seed, float **X, float **Y) {
  if (B < 1 || B > p->batch) bm_die("internal error: a batch of %d records, buffers of %d", B, p->batch);
  int had = wait_worker(p);
  if (!(had && p->B == B && p->seed == aug_seed && !memcmp(p->idx, idx, sizeof(long) * (size_t)B))) {
    /* nothing prefetched, or another batch: read it now */
    p->which = p->cur == 0;
    p->B = B, p->seed = aug_seed;
    memcpy(p->idx, idx, sizeof(long) * (size_t)B);
    read_batch(p);
    had = 0;
  }
  if (p->rc) bm_die("%s", p->err); /* a reader's error, reported here */
  p->cur = p->which;
  *X = p->X[p->cur];
  if (Y) *Y = p->Y[p->cur];
  return had;
}

void bm_prefetch_free(bm_prefetch *p) {
  if (!p) return;
  wait_worker(p);
  for (int k = 0; k < 2; k++) {
    p->dealloc(p->X[k]);
    if (p->Y[k]) p->dealloc(p->Y[k]);
  }
  for (int k = 0; k < p->nr; k++) bm_recslot_free(&p->r[k].slot), free(p->r[k].crop);
  free(p->r), free(p->idx);
  free(p);
}

int bm_prefetch_enabled(void) {
  const char *e = getenv("BM_TRAIN_PREFETCH");
  return !(e && !strcmp(e, "0"));
}
