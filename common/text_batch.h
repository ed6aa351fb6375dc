/* text_batch.h - the text tower's input for a batch of records: the
 * records' "text" tokenized with the model's tokenizer, packed id after id
 * (bert.h: text s at start[s], len[s] ids), read from the record file one
 * batch at a time like the images, never the whole set.
 *
 * With learned prompts (--text prompt|both, CoOp) the n_ctx prompt
 * positions follow [CLS] as negative ids: -1 is prompt vector 0, -k is
 * vector k-1 (id < 0 = learned vector -1-id, the trainable text tower's
 * convention):
 *   key:    [CLS] text... [SEP]
 *   prompt: [CLS] -1 .. -n_ctx [SEP]
 *   both:   [CLS] -1 .. -n_ctx text... [SEP]
 * truncated to the tower's context as bm_tokenize truncates ([SEP] kept;
 * the prompt positions are never cut). */
#ifndef BM_TEXT_BATCH_H
#define BM_TEXT_BATCH_H
#include <stddef.h>
#include <stdint.h>
#include "recfile.h"
#include "tokenizer.h"
#include "train_data.h"

typedef struct {
  int32_t *ids;     /* [n_ids] packed */
  int *start, *len; /* [n] */
  int n, n_ids;
  int cap_ids, cap_seq;
} bm_text_batch;

void bm_text_batch_init(bm_text_batch *b);
void bm_text_batch_free(bm_text_batch *b);
void bm_text_batch_clear(bm_text_batch *b);
/* Appends one text (len bytes, need not end in NUL; unused for prompt).
 * source: BM_TEXT_KEY, BM_TEXT_PROMPT or BM_TEXT_BOTH (train_opts.h).
 * Returns the text's number of ids, or -1 when context cannot hold
 * [CLS], the prompt and [SEP]. */
int bm_text_batch_add(bm_text_batch *b, const bm_tokenizer *tok, int source, int n_ctx, int context,
                      const char *text, size_t len);
/* The texts of records idx[0..B-1] of ds (cleared first). Exits 1 naming
 * the file and record when a "text" went missing since ds was checked. */
void bm_text_batch_read(bm_text_batch *b, const bm_trainset *ds, const long *idx, int B, bm_recslot *slot,
                        const bm_tokenizer *tok, int source, int n_ctx, int context);
#endif
