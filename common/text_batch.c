/* text_batch.c - packed token ids of a batch, learned prompts included. */
#include "text_batch.h"

#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "train_opts.h"
#include "util.h"

void bm_text_batch_init(bm_text_batch *b) { memset(b, 0, sizeof *b); }

void bm_text_batch_free(bm_text_batch *b) {
  free(b->ids), free(b->start), free(b->len);
  memset(b, 0, sizeof *b);
}

void bm_text_batch_clear(bm_text_batch *b) { b->n = b->n_ids = 0; }

static void reserve(bm_text_batch *b, int ids) {
  if (b->n_ids + ids > b->cap_ids) {
    int cap = b->cap_ids ? b->cap_ids : 256;
    while (cap < b->n_ids + ids) cap *= 2;
    b->ids = bm_xrealloc(b->ids, sizeof(int32_t) * (size_t)cap);
    b->cap_ids = cap;
  }
  if (b->n + 1 > b->cap_seq) {
    int cap = b->cap_seq ? 2 * b->cap_seq : 16;
    b->start = bm_xrealloc(b->start, sizeof(int) * (size_t)cap);
    b->len = bm_xrealloc(b->len, sizeof(int) * (size_t)cap);
    b->cap_seq = cap;
  }
}

int bm_text_batch_add(bm_text_batch *b, const bm_tokenizer *tok, int source, int n_ctx, int context,
                      const char *text, size_t len) {
  int prompt = source == BM_TEXT_KEY ? 0 : n_ctx;
  if (context < prompt + 2) return -1;
  reserve(b, context);
  int32_t *dst = b->ids + b->n_ids;
  /* the text (or nothing, for prompts alone: [CLS] [SEP]) in the room the
   * prompt leaves, then the prompt slid in after [CLS] */
  int L = source == BM_TEXT_PROMPT ? bm_tokenize_n(tok, "", 0, dst, 2)
                                   : bm_tokenize_n(tok, text, len, dst, context - prompt);
  if (L < 2) return -1;
  memmove(dst + 1 + prompt, dst + 1, sizeof(int32_t) * (size_t)(L - 1));
  for (int k = 0; k < prompt; k++) dst[1 + k] = -1 - k;
  L += prompt;
  b->start[b->n] = b->n_ids;
  b->len[b->n] = L;
  b->n++, b->n_ids += L;
  return L;
}

void bm_text_batch_read(bm_text_batch *b, const bm_trainset *ds, const long *idx, int B, bm_recslot *slot,
                        const bm_tokenizer *tok, int source, int n_ctx, int context) {
  bm_text_batch_clear(b);
  for (int j = 0; j < B; j++) {
    const char *s = "";
    size_t n = 0;
    if (source != BM_TEXT_PROMPT) {
      const msgpack_object *rec = bm_recfile_read(ds->f, idx[j], slot);
      const msgpack_object *t = bm_map_get(rec, "text");
      if (!t || t->type != MSGPACK_OBJECT_STR) /* checked when indexed: the file changed under us */
        bm_die("%s: record %ld: \"text\" is gone or not a string since the file was indexed", ds->name, idx[j] + 1);
      s = t->via.str.ptr, n = t->via.str.size;
    }
    if (bm_text_batch_add(b, tok, source, n_ctx, context, s, n) < 0)
      bm_die("%s: record %ld: a text tower of %d positions cannot hold [CLS], %d prompt vectors and [SEP]", ds->name,
             idx[j] + 1, context, n_ctx);
  }
}
