/* train_prefetch.c - the next training batch read on a worker thread.
 *
 * One thread per batch (pthread_create in start, pthread_join in get): a
 * batch takes milliseconds to hundreds of them, a thread tens of
 * microseconds, and a join is the whole synchronization. The record slot
 * and the crop scratch belong to whichever thread reads: the worker between
 * create and join, the caller otherwise (serial reads happen only with no
 * worker in flight). */
#include "train_prefetch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct bm_prefetch {
  const bm_trainset *ds;
  bm_feat feat;
  int batch;
  float *X[2], *Y[2];
  uint8_t *crop;
  bm_recslot slot;
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

bm_prefetch *bm_prefetch_new(const bm_trainset *ds, bm_feat feat, int batch, void *(*alloc)(size_t, const char *),
                             void (*dealloc)(void *)) {
  bm_prefetch *p = bm_xcalloc(1, sizeof *p);
  p->ds = ds, p->feat = feat, p->batch = batch, p->cur = -1;
  if (!alloc) alloc = xalloc, dealloc = free;
  p->dealloc = dealloc;
  size_t nx = bm_mul_size(bm_mul_size((size_t)batch, (size_t)ds->D), sizeof(float));
  size_t ny = bm_mul_size(bm_mul_size((size_t)batch, (size_t)(ds->C ? ds->C : 1)), sizeof(float));
  for (int k = 0; k < 2; k++) {
    p->X[k] = alloc(nx, "a training batch's images");
    p->Y[k] = ds->y ? alloc(ny, "a training batch's targets") : NULL;
  }
  if (ds->need & BM_NEED_IMAGE) {
    int S = ds->model->vit.image_size;
    p->crop = bm_xmalloc(bm_mul_size((size_t)3 * S, (size_t)S));
  }
  p->idx = bm_xmalloc(sizeof(long) * (size_t)(batch > 0 ? batch : 1));
  bm_recslot_init(&p->slot);
  return p;
}

static void *worker(void *arg) {
  bm_prefetch *p = arg;
  p->rc = bm_trainset_batch_try(p->ds, p->feat, p->idx, p->B, &p->slot, p->crop, p->seed, p->X[p->which],
                                p->Y[p->which], p->err, sizeof p->err);
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
  p->B = B, p->seed = aug_seed, p->rc = 0;
  memcpy(p->idx, idx, sizeof(long) * (size_t)B);
  /* no thread (resources): the batch is read when asked for, as without prefetch */
  p->busy = pthread_create(&p->th, NULL, worker, p) == 0;
}

int bm_prefetch_get(bm_prefetch *p, const long *idx, int B, uint64_t aug_seed, float **X, float **Y) {
  if (B < 1 || B > p->batch) bm_die("internal error: a batch of %d records, buffers of %d", B, p->batch);
  int had = wait_worker(p);
  if (had && p->B == B && p->seed == aug_seed && !memcmp(p->idx, idx, sizeof(long) * (size_t)B)) {
    if (p->rc) bm_die("%s", p->err); /* the worker's error, reported here */
    p->cur = p->which;
  } else { /* nothing prefetched, or another batch: read it now */
    p->cur = p->cur == 0;
    if (bm_trainset_batch_try(p->ds, p->feat, idx, B, &p->slot, p->crop, aug_seed, p->X[p->cur], p->Y[p->cur],
                              p->err, sizeof p->err))
      bm_die("%s", p->err);
    had = 0;
  }
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
  bm_recslot_free(&p->slot);
  free(p->crop), free(p->idx);
  free(p);
}

int bm_prefetch_enabled(void) {
  const char *e = getenv("BM_TRAIN_PREFETCH");
  return !(e && !strcmp(e, "0"));
}
