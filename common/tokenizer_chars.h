/* tokenizer_chars.h - what the BERT uncased normalizer and pre-tokenizer do
 * to one code point, as HuggingFace tokenizers does it (REFERENCE.md 1).
 * Internal to the tokenizer; exposed for the test that compares every code
 * point with the reference. */
#ifndef BM_TOKENIZER_CHARS_H
#define BM_TOKENIZER_CHARS_H

#include <stdint.h>

/* The cleaning step's verdict on one input code point. */
enum {
  BM_CH_KEEP,  /* goes on to NFD, accent stripping and lowercasing */
  BM_CH_DROP,  /* U+0000, U+FFFD, control/format/private/surrogate */
  BM_CH_SPACE, /* whitespace: ends a word */
  BM_CH_CJK,   /* CJK ideograph: a word of its own */
};

/* open_clip splits on Python's str.isspace() before the tokenizer runs; that
 * set adds U+000B, U+000C, U+001C..U+001F and U+0085 to Rust's whitespace,
 * characters the BERT cleaning would otherwise drop without splitting. */
int bm_ch_py_space(int32_t cp);
/* Rust char::is_whitespace (Unicode White_Space). */
int bm_ch_space(int32_t cp);
int bm_ch_clean(int32_t cp);
/* Nonspacing mark, dropped after NFD (strip_accents). */
int bm_ch_mn(int32_t cp);
/* ASCII punctuation or Unicode P*: a word of its own. */
int bm_ch_punct(int32_t cp);
/* Lowercase as Rust's char::to_lowercase: up to 3 code points in out. */
int bm_ch_lower(int32_t cp, int32_t out[3]);

/* Canonical decomposition (NFD) of one code point, as tokenizers knows it;
 * out[0] = cp when there is none. Returns the count. */
#define BM_CH_MAX_NFD 8
int bm_ch_nfd(int32_t cp, int32_t out[BM_CH_MAX_NFD]);
/* Canonical combining class, for NFD's reordering of combining marks. */
int bm_ch_ccc(int32_t cp);

/* The normalizer on a single code point alone: clean, CJK spacing, NFD,
 * accent stripping, lowercase. Up to cap code points in out; returns the
 * count (0 when dropped). For tests: a string is more than its characters
 * only through canonical reordering, which bm_tokenize handles. */
int bm_ch_normalize(int32_t cp, int32_t *out, int cap);

#endif
