/* train_prefetch.h - reads the next training batch on a thread of its own
 * while the current one computes, so that a GPU (or the CPU's threads) is
 * not idle while records are read, decoded, cropped and normalized.
 *
 * Two buffers of X [batch,D] and Y [batch,C]: bm_prefetch_get hands out
 * one, the worker fills the other. A batch is what bm_trainset_batch makes
 * of the same records, crops and seed, bit for bit: the worker runs the
 * same code with its own record slot and crop scratch, and shares nothing it
 * writes with the caller. Errors found by the worker (a record that changed
 * since it was indexed) are reported by bm_prefetch_get, on the caller's
 * thread, with bm_trainset_batch's message.
 *
 *   p = bm_prefetch_new(ds, feat, batch, threads, NULL, NULL);
 *   bm_prefetch_get(p, idx0, B0, seed0, &X, &Y);      read now (nothing started)
 *   bm_prefetch_start(p, idx1, B1, seed1);             the worker reads batch 1
 *   ... compute on X, Y ...
 *   bm_prefetch_get(p, idx1, B1, seed1, &X, &Y);      waits for it
 */
#ifndef BM_TRAIN_PREFETCH_H
#define BM_TRAIN_PREFETCH_H
#include <stddef.h>
#include <stdint.h>

#include "train_data.h"

typedef struct bm_prefetch bm_prefetch;

/* Buffers for batches of up to `batch` records of ds (kept, not owned; its
 * y and crop are not written), read by `threads` threads at once (a GPU's
 * host is otherwise idle: a batch of 256 crops takes one core longer than
 * an H100's step). alloc/dealloc: how the buffers are allocated
 * (bm_cuda_host_alloc / bm_cuda_host_free: page-locked, for asynchronous
 * copies to a GPU); NULL: malloc. */
bm_prefetch *bm_prefetch_new(const bm_trainset *ds, bm_feat feat, int batch, int threads,
                             void *(*alloc)(size_t, const char *), void (*dealloc)(void *));
/* Waits for the worker, then frees everything. NULL: nothing. */
void bm_prefetch_free(bm_prefetch *p);

/* Starts reading records idx[0..B-1] (copied) with aug_seed on the worker,
 * into the buffer that the last bm_prefetch_get did not hand out. At most
 * one batch is in flight: a batch started and never asked for is waited for
 * and dropped by the next start. */
void bm_prefetch_start(bm_prefetch *p, const long *idx, int B, uint64_t aug_seed);
/* The batch of records idx[0..B-1] and aug_seed in *X, *Y (Y: NULL when
 * ds has no targets), valid until the next bm_prefetch_get: the one
 * started, if it is this one (waiting for it); otherwise read now (this
 * thread and the readers). Dies with the read's message. Returns 1 when the batch had been
 * prefetched, 0 when it was read now. */
int bm_prefetch_get(bm_prefetch *p, const long *idx, int B, uint64_t aug_seed, float **X, float **Y);

/* Off with BM_TRAIN_PREFETCH=0 in the environment (1 otherwise): the
 * serial reads, to check that both give the same run. */
int bm_prefetch_enabled(void);
#endif
