/* tokenizer.c - BERT uncased WordPiece as open_clip runs it for BiomedCLIP:
 * open_clip's whitespace clean, then the HuggingFace fast tokenizer
 * (BertNormalizer lowercase + strip accents + CJK, BertPreTokenizer,
 * WordPiece "##" with max 100 characters a word, [CLS] ... [SEP]).
 *
 * One pass over the bytes, no allocation per call except when a run of more
 * than 32 non-spacing-mark-free combining characters needs reordering.
 *
 * Differences from open_clip, by design:
 * - ftfy.fix_text and html.unescape (applied twice) are not applied: the C
 *   tokenizer equals open_clip on text that ftfy leaves alone and that holds
 *   no '&'. Where ftfy acts, ids differ: it turns curly quotes into straight
 *   ones (’ " “ -> ' "), ligatures into letters (ﬁ -> fi), fullwidth and
 *   halfwidth forms into ASCII and kana (Ｘ -> X), C1 controls into the
 *   Windows-1252 characters they were meant to be (\x80 -> €), line breaks
 *   (U+0085, U+2028/9) into \n, removes terminal escapes (ESC [ 0 m) and
 *   C0 controls that BERT does not drop alone (U+000B, U+001C..U+001F), and
 *   repairs mojibake ("cafÃ©" -> "café"). html.unescape decodes "&amp;",
 *   "&lt;", "&#233;" and the other HTML entities. On the hard corpus of
 *   tests/fixtures/tokenizer_cases.txt 11 of 165 texts get other ids from the
 *   full open_clip pipeline, all for those reasons; plain ASCII captions and
 *   prompts are not affected. Clean such text before bm-embed-txt if needed.
 * - Invalid UTF-8: every byte that does not start a valid sequence is dropped,
 *   as Python's decode(errors="replace") followed by BERT's cleaning (which
 *   drops U+FFFD) would do. A dropped byte does not split a word. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_chars.h"

#define WORD_MAX_CHARS 100 /* tokenizers' max_input_chars_per_word */
#define WORD_MAX_BYTES (WORD_MAX_CHARS * 4)

typedef struct {
  uint32_t off, len; /* the token's bytes in t->text */
  int32_t id;        /* -1: empty slot */
} slot;

typedef struct {
  slot *slots;
  uint32_t mask;
  uint32_t maxlen; /* longest key in bytes: bounds the greedy search */
} table;

typedef struct {
  const char *s;
  size_t len;
  int32_t id;
} special;

struct bm_tokenizer {
  char *text;      /* the vocab, copied */
  int32_t n;       /* ids 0..n-1 = lines */
  table first;     /* tokens that start a word */
  table cont;      /* "##x" continuation tokens, stored without the "##" */
  int32_t pad, unk, cls, sep;
  special specials[5];
  int nspecials;
};

static uint32_t hash_bytes(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h ^ (h >> 15);
}

/* A later duplicate wins, as in tokenizers (a HashMap insert per line). */
static void table_put(table *tb, const char *text, uint32_t off, uint32_t len, int32_t id) {
  uint32_t i = hash_bytes(text + off, len) & tb->mask;
  for (;; i = (i + 1) & tb->mask) {
    slot *s = &tb->slots[i];
    if (s->id < 0 || (s->len == len && memcmp(text + s->off, text + off, len) == 0)) {
      s->off = off, s->len = len, s->id = id;
      if (len > tb->maxlen) tb->maxlen = len;
      return;
    }
  }
}

static int32_t table_get(const table *tb, const char *text, const char *key, size_t len) {
  uint32_t i = hash_bytes(key, len) & tb->mask;
  for (;; i = (i + 1) & tb->mask) {
    const slot *s = &tb->slots[i];
    if (s->id < 0) return -1;
    if (s->len == len && memcmp(text + s->off, key, len) == 0) return s->id;
  }
}

static int table_init(table *tb, size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap *= 2;
  tb->slots = malloc(cap * sizeof(slot));
  if (!tb->slots) return -1;
  for (size_t i = 0; i < cap; i++) tb->slots[i].id = -1;
  tb->mask = (uint32_t)(cap - 1);
  tb->maxlen = 0;
  return 0;
}

void bm_tokenizer_free(bm_tokenizer *t) {
  if (!t) return;
  free(t->first.slots);
  free(t->cont.slots);
  free(t->text);
  free(t);
}

bm_tokenizer *bm_tokenizer_new(const char *vocab, size_t len, char *err, size_t errlen) {
  if (len >= (size_t)1 << 31) {
    snprintf(err, errlen, "vocab of %zu bytes is too large", len);
    return NULL;
  }
  bm_tokenizer *t = calloc(1, sizeof *t);
  if (!t || !(t->text = malloc(len + 1))) {
    free(t);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(t->text, vocab, len);
  t->text[len] = 0;
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += vocab[i] == '\n';
  if (len && vocab[len - 1] != '\n') lines++;
  if (lines == 0 || lines > INT32_MAX || table_init(&t->first, lines) ||
      table_init(&t->cont, lines)) {
    snprintf(err, errlen, lines ? "out of memory" : "empty vocab");
    bm_tokenizer_free(t);
    return NULL;
  }
  size_t pos = 0;
  int32_t id = 0;
  while (pos < len) {
    const char *nl = memchr(t->text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - t->text) : len;
    if (memchr(t->text + pos, 0, end - pos)) {
      snprintf(err, errlen, "line %d holds a NUL byte: not a vocab.txt", id + 1);
      bm_tokenizer_free(t);
      return NULL;
    }
    /* tokenizers trims trailing whitespace from each line (CRLF files) */
    size_t e = end;
    while (e > pos && strchr(" \t\r\v\f", t->text[e - 1])) e--;
    size_t n = e - pos;
    if (n > 2 && t->text[pos] == '#' && t->text[pos + 1] == '#')
      table_put(&t->cont, t->text, (uint32_t)pos + 2, (uint32_t)n - 2, id);
    table_put(&t->first, t->text, (uint32_t)pos, (uint32_t)n, id);
    id++;
    pos = end + 1;
  }
  t->n = id;
  static const char *names[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  int32_t ids[5];
  for (int i = 0; i < 5; i++) {
    ids[i] = table_get(&t->first, t->text, names[i], strlen(names[i]));
    if (ids[i] < 0 && i < 4) {
      snprintf(err, errlen, "vocab has no %s token (%d lines)", names[i], id);
      bm_tokenizer_free(t);
      return NULL;
    }
    if (ids[i] >= 0) t->specials[t->nspecials++] = (special){names[i], strlen(names[i]), ids[i]};
  }
  t->pad = ids[0], t->unk = ids[1], t->cls = ids[2], t->sep = ids[3];
  return t;
}

int32_t bm_tokenizer_pad_id(const bm_tokenizer *t) { return t->pad; }
int32_t bm_tokenizer_vocab_size(const bm_tokenizer *t) { return t->n; }

/* ---- one call's state ---- */
typedef struct {
  const bm_tokenizer *t;
  int32_t *ids;
  int n, cap;          /* ids written; cap = max_len - 1 leaves room for [SEP] */
  char word[WORD_MAX_BYTES + 4];
  uint16_t off[WORD_MAX_CHARS + 2]; /* char starts in word, off[nchars] = end */
  int nchars;          /* may exceed WORD_MAX_CHARS: then word is not stored */
  int32_t pend_stack[32], *pend; /* combining marks awaiting canonical order */
  int npend, cappend;
} run;

static int full(const run *r) { return r->n >= r->cap; }

static void emit(run *r, int32_t id) {
  if (!full(r)) r->ids[r->n++] = id;
}

/* WordPiece: greedy longest match from the left; all or nothing. */
static void end_word(run *r) {
  int nc = r->nchars;
  r->nchars = 0;
  if (nc == 0) return;
  const bm_tokenizer *t = r->t;
  if (nc > WORD_MAX_CHARS) {
    emit(r, t->unk);
    return;
  }
  int32_t pieces[WORD_MAX_CHARS];
  int np = 0;
  for (int s = 0; s < nc;) {
    const table *tb = s ? &t->cont : &t->first;
    int32_t id = -1;
    int e = nc;
    while (e > s && (uint32_t)(r->off[e] - r->off[s]) > tb->maxlen) e--;
    for (; e > s; e--) {
      id = table_get(tb, t->text, r->word + r->off[s], (size_t)(r->off[e] - r->off[s]));
      if (id >= 0) break;
    }
    if (id < 0) {
      emit(r, t->unk);
      return;
    }
    pieces[np++] = id;
    s = e;
  }
  for (int i = 0; i < np; i++) emit(r, pieces[i]);
}

static void add_char(run *r, int32_t cp) {
  if (r->nchars < WORD_MAX_CHARS) {
    uint16_t at = r->nchars ? r->off[r->nchars] : 0;
    utf8proc_ssize_t k = utf8proc_encode_char(cp, (utf8proc_uint8_t *)r->word + at);
    r->off[r->nchars] = at;
    r->off[r->nchars + 1] = (uint16_t)(at + k);
  }
  r->nchars++;
}

/* A normalized, lowercased character enters the pre-tokenizer. */
static void pretok(run *r, int32_t cp) {
  if (bm_ch_space(cp)) {
    end_word(r);
  } else if (bm_ch_punct(cp)) {
    end_word(r);
    add_char(r, cp);
    end_word(r);
  } else {
    add_char(r, cp);
  }
}

static void lower_out(run *r, int32_t cp) {
  int32_t lo[3];
  int n = bm_ch_lower(cp, lo);
  for (int i = 0; i < n; i++) pretok(r, lo[i]);
}

/* Release the pending combining marks in canonical order (stable by class:
 * they were inserted in order). */
static void flush_marks(run *r) {
  for (int i = 0; i < r->npend; i++) lower_out(r, r->pend[i]);
  r->npend = 0;
}

/* One character of the decomposition (NFD). Non-spacing marks are dropped;
 * since that happens after NFD's reordering, a mark with class 0 still ends
 * the run of combining characters before it. */
static void decomposed(run *r, int32_t cp) {
  int ccc = bm_ch_ccc(cp);
  if (ccc == 0) flush_marks(r);
  if (bm_ch_mn(cp)) return;
  if (ccc == 0) {
    lower_out(r, cp);
    return;
  }
  if (r->npend == r->cappend) {
    int cap = 2 * r->cappend;
    int32_t *p = malloc((size_t)cap * sizeof *p);
    if (!p) { /* out of memory: give up on reordering this run */
      flush_marks(r);
      lower_out(r, cp);
      return;
    }
    memcpy(p, r->pend, (size_t)r->npend * sizeof *p);
    if (r->pend != r->pend_stack) free(r->pend);
    r->pend = p, r->cappend = cap;
  }
  int i = r->npend++;
  while (i > 0 && bm_ch_ccc(r->pend[i - 1]) > ccc) {
    r->pend[i] = r->pend[i - 1];
    i--;
  }
  r->pend[i] = cp;
}

static const special *special_at(const bm_tokenizer *t, const char *s, const char *end) {
  for (int i = 0; i < t->nspecials; i++) {
    const special *sp = &t->specials[i];
    if ((size_t)(end - s) >= sp->len && memcmp(s, sp->s, sp->len) == 0) return sp;
  }
  return NULL;
}

int bm_tokenize(const bm_tokenizer *t, const char *text, int32_t *ids, int max_len) {
  return bm_tokenize_n(t, text, strlen(text), ids, max_len);
}

int bm_tokenize_n(const bm_tokenizer *t, const char *text, size_t len, int32_t *ids,
                  int max_len) {
  if (max_len < 2) return -1;
  run r = {.t = t, .ids = ids, .n = 1, .cap = max_len - 1, .cappend = 32};
  r.pend = r.pend_stack;
  ids[0] = t->cls;
  const char *p = text, *end = text + len;
  while (p < end && !full(&r)) {
    uint8_t b = (uint8_t)*p;
    int32_t cp;
    if (b < 0x80) {
      /* ASCII: no decomposition, no marks, no table look-ups */
      if (b == '[') {
        const special *sp = special_at(t, p, end);
        if (sp) { /* HF matches special tokens in the raw text */
          flush_marks(&r);
          end_word(&r);
          emit(&r, sp->id);
          p += sp->len;
          continue;
        }
      }
      p++;
      if (b <= ' ' || b == 0x7f) {
        if (b == ' ' || (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f)) {
          flush_marks(&r);
          end_word(&r);
        }
        continue; /* other C0 controls and DEL vanish before NFD sees them */
      }
      flush_marks(&r);
      pretok(&r, b >= 'A' && b <= 'Z' ? b + 32 : b);
      continue;
    }
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p, end - p, &cp);
    if (k <= 0) { /* not UTF-8: drop the byte */
      p++;
      continue;
    }
    p += k;
    if (bm_ch_py_space(cp)) {
      flush_marks(&r);
      end_word(&r);
      continue;
    }
    int cls = bm_ch_clean(cp);
    if (cls == BM_CH_DROP) continue;
    if (cls == BM_CH_SPACE) {
      flush_marks(&r);
      end_word(&r);
      continue;
    }
    int32_t dec[BM_CH_MAX_NFD];
    int nd = bm_ch_nfd(cp, dec);
    if (cls == BM_CH_CJK) {
      flush_marks(&r);
      end_word(&r);
    }
    for (int i = 0; i < nd; i++) decomposed(&r, dec[i]);
    if (cls == BM_CH_CJK) {
      flush_marks(&r);
      end_word(&r);
    }
  }
  flush_marks(&r);
  end_word(&r);
  if (r.pend != r.pend_stack) free(r.pend);
  ids[r.n] = t->sep;
  return r.n + 1;
}
