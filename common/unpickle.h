/* unpickle.h - a restricted reader for the data.pkl of a torch.save zip.
 *
 * It understands the opcodes torch.save emits (protocol 2; the protocol 4/5
 * framing and memo opcodes too) and knows exactly these globals:
 *   collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 *   torch._utils._rebuild_parameter, torch.{Float,Half,BFloat16,Long,Int,
 *   Byte}Storage.
 * Any other global is refused by name before anything is built, so loading a
 * checkpoint never runs code. The result is a list of named tensor views on
 * storages (archive members data/<key>), each checked to lie inside its
 * storage. Nothing here reads the archive: the fuzzer drives it directly. */
#ifndef BM_UNPICKLE_H
#define BM_UNPICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "weights.h"

typedef struct {
  char *key;        /* archive member data/<key> */
  bm_wdtype dtype;
  int64_t numel;    /* elements of dtype */
} bm_pk_storage;

typedef struct {
  char *name;
  int storage;      /* index into bm_pk_state.st */
  int64_t offset;   /* in elements */
  int ndim;
  int64_t shape[BM_W_MAX_DIMS];
  int64_t stride[BM_W_MAX_DIMS];
  int64_t numel;
} bm_pk_tensor;

typedef struct {
  bm_pk_storage *st;
  int nst;
  bm_pk_tensor *t;
  int nt;
} bm_pk_state;

/* Reads a pickled state dict (an OrderedDict or dict of tensors, or a dict
 * whose "state_dict" entry is one; a "module." prefix on every key, as
 * DistributedDataParallel leaves it, is dropped). `what` names the pickle in
 * messages (e.g. "archive/data.pkl"). 0 ok; -1 with err (out left empty). */
int bm_unpickle_state_dict(const uint8_t *buf, size_t n, const char *what, bm_pk_state *out,
                           char *err, size_t errlen);
void bm_pk_state_free(bm_pk_state *s);

#endif
