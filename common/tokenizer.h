/* tokenizer.h - BERT uncased WordPiece, exactly as the HuggingFace fast
 * tokenizer that open_clip uses for BiomedCLIP (REFERENCE.md section 1). */
#ifndef BM_TOKENIZER_H
#define BM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct bm_tokenizer bm_tokenizer;

/* From the text of a vocab.txt (one token per line, id = line number).
 * NULL with a message in err when the vocab is unusable (no [PAD], [UNK],
 * [CLS] or [SEP]; a NUL byte). Read as tokenizers reads it: trailing blanks
 * and CR trimmed, a later duplicate line wins the token, the vocab size is
 * the number of lines. [MASK] is optional (HuggingFace would add a missing
 * one at an id past the vocab; we do not). */
bm_tokenizer *bm_tokenizer_new(const char *vocab, size_t len, char *err, size_t errlen);
void bm_tokenizer_free(bm_tokenizer *t);

/* [CLS] + pieces + [SEP], truncated to max_len ids (open_clip: 256), no
 * padding. Returns the number of ids L (2 <= L <= max_len). */
int bm_tokenize(const bm_tokenizer *t, const char *text, int32_t *ids, int max_len);
/* The same on len bytes that need not end in NUL (a msgpack str); a NUL byte
 * inside is dropped like U+0000. Both return -1 when max_len < 2.
 *
 * Behaviour in full (the comment atop tokenizer.c says more):
 * - open_clip's whitespace clean is applied (Python's str.split() set);
 *   its ftfy.fix_text and html.unescape are NOT: "&amp;" stays five
 *   characters, mojibake is not repaired.
 * - "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]" written in the text are
 *   those special tokens, as in HuggingFace (case-sensitive, raw text).
 * - Invalid UTF-8 bytes are dropped (as decode(errors="replace") followed by
 *   BERT's cleaning of U+FFFD); they do not split words.
 * - Thread-safe: t is read only. */
int bm_tokenize_n(const bm_tokenizer *t, const char *text, size_t len, int32_t *ids,
                  int max_len);

/* The vocab.txt text equivalent to a HuggingFace tokenizer.json, for model
 * folders without vocab.txt: malloc'd into *vocab (free it), ids with no
 * token become empty lines. Refuses, with a message in err, anything
 * bm_tokenize would not reproduce: another model than WordPiece "##"/[UNK]
 * with 100 characters a word, another normalizer than uncased
 * BertNormalizer, another pre-tokenizer than BertPreTokenizer, another
 * template than [CLS] $A [SEP], added tokens beyond BERT's five. 0 ok. */
int bm_vocab_from_tokenizer_json(const char *json, size_t len, char **vocab, size_t *vlen,
                                 char *err, size_t errlen);

int32_t bm_tokenizer_pad_id(const bm_tokenizer *t);
int32_t bm_tokenizer_vocab_size(const bm_tokenizer *t);

#endif
