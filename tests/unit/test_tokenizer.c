/* test_tokenizer.c - the C tokenizer against HuggingFace's, id for id.
 * Fixtures from tests/ref/make_tokenizer_fixture.py: a hard corpus and 3000
 * random strings with the ids of a real 30522-token uncased vocab and of a
 * small made-up one, and what tokenizers does to every code point. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tokenizer.h"
#include "tokenizer_chars.h"
#include "util.h"

static char *fixture_path(const char *name) {
  const char *dir = getenv("BM_TESTS");
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s/fixtures/%s", dir ? dir : "tests", name);
  return buf;
}

static char *slurp(const char *name, size_t *len) {
  const char *path = fixture_path(name);
  FILE *f = fopen(path, "rb");
  if (!f) bm_die("cannot open %s", path);
  size_t cap = 1 << 16, n = 0;
  char *s = bm_xmalloc(cap);
  size_t got;
  while ((got = fread(s + n, 1, cap - n - 1, f)) > 0) {
    n += got;
    if (n + 1 == cap) s = bm_xrealloc(s, cap *= 2);
  }
  if (ferror(f)) bm_die("cannot read %s", path);
  fclose(f);
  s[n] = 0;
  *len = n;
  return s;
}

static bm_tokenizer *load(const char *name) {
  size_t len;
  char *v = slurp(name, &len), err[256];
  bm_tokenizer *t = bm_tokenizer_new(v, len, err, sizeof err);
  if (!t) bm_die("%s: %s", name, err);
  free(v);
  return t;
}

/* ---- every code point ---- */
static int class_of(int32_t cp) { return bm_ch_space(cp) ? 2 : bm_ch_punct(cp) ? 3 : 1; }

static long bad_chars, seen_chars;

static void check_cp(int32_t cp, const int32_t *want, int nwant, int cls) {
  int32_t got[16];
  int n = bm_ch_normalize(cp, got, 16);
  int ok = n == nwant && memcmp(got, want, (size_t)n * sizeof *got) == 0 && class_of(cp) == cls;
  seen_chars++;
  if (!ok && bad_chars++ < 10) {
    printf("#   U+%04X: got %d code points (", (unsigned)cp, n);
    for (int i = 0; i < n; i++) printf(" %X", (unsigned)got[i]);
    printf(" ) class %d; want %d (", class_of(cp), nwant);
    for (int i = 0; i < nwant; i++) printf(" %X", (unsigned)want[i]);
    printf(" ) class %d\n", cls);
  }
}

static void test_chars(void) {
  size_t len;
  char *s = slurp("tokenizer_chars.txt", &len);
  int lines = 0, malformed = 0;
  for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), lines++) {
    char kind;
    unsigned lo, hi;
    int delta, cls, used;
    int32_t want[16];
    if (sscanf(line, "%c %x %x %d %d", &kind, &lo, &hi, &delta, &cls) == 5 &&
        (kind == 'R' || kind == 'C')) {
      for (uint32_t cp = lo; cp <= hi; cp++) {
        if (kind == 'R') {
          want[0] = (int32_t)cp + delta;
          check_cp((int32_t)cp, want, 1, cls);
        } else {
          want[0] = ' ', want[1] = (int32_t)cp + delta, want[2] = ' ';
          check_cp((int32_t)cp, want, 3, cls);
        }
      }
    } else if (sscanf(line, "%c %x %x %d", &kind, &lo, &hi, &cls) == 4 && kind == 'E') {
      for (uint32_t cp = lo; cp <= hi; cp++) check_cp((int32_t)cp, want, 0, cls);
    } else if (sscanf(line, "%c %x %x %d", &kind, &lo, &hi, &cls) == 4 && kind == 'H') {
      for (uint32_t cp = lo; cp <= hi; cp++) {
        int si = (int)cp - 0xac00, n = 0;
        want[n++] = 0x1100 + si / 588;
        want[n++] = 0x1161 + (si % 588) / 28;
        if (si % 28) want[n++] = 0x11a7 + si % 28;
        check_cp((int32_t)cp, want, n, cls);
      }
    } else if (sscanf(line, "%c %x %d%n", &kind, &lo, &cls, &used) == 3 && kind == 'M') {
      int n = 0;
      unsigned x;
      int k;
      const char *p = line + used;
      while (n < 16 && sscanf(p, "%x%n", &x, &k) == 1) want[n++] = (int32_t)x, p += k;
      check_cp((int32_t)lo, want, n, cls);
    } else {
      malformed++;
    }
  }
  free(s);
  CHECK(malformed == 0 && lines > 1000, "tokenizer_chars.txt parsed (%d lines, %d malformed)", lines,
        malformed);
  CHECK(seen_chars == 0x110000 - 0x800, "every code point but the surrogates covered (%ld)",
        seen_chars);
  CHECK(bad_chars == 0, "normalizer and pre-tokenizer agree with tokenizers on every code point "
                        "(%ld differ)", bad_chars);
}

/* ---- whole texts ---- */
static int hexval(int c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

static int parse_ids(const char *s, int32_t *ids, int cap) {
  int n = 0, k;
  long v;
  while (n < cap && sscanf(s, "%ld%n", &v, &k) == 1) ids[n++] = (int32_t)v, s += k;
  return n;
}

static void test_cases(const char *file, bm_tokenizer *const *toks, const char *const *names) {
  size_t len;
  char *s = slurp(file, &len);
  int cases = 0, malformed = 0, bad[2] = {0, 0};
  enum { CAP = 1024 };
  int32_t *want = bm_xmalloc(CAP * sizeof *want), *got = bm_xmalloc((CAP + 8) * sizeof *got);
  char *saveline = NULL;
  for (char *line = strtok_r(s, "\n", &saveline); line; line = strtok_r(NULL, "\n", &saveline)) {
    char *f[5];
    int nf = 0;
    for (char *p = line; nf < 5 && p;) {
      f[nf++] = p;
      p = strchr(p, '\t');
      if (p) *p++ = 0;
    }
    if (nf != 4 || strlen(f[1]) % 2) {
      malformed++;
      continue;
    }
    int max_len = atoi(f[0]);
    size_t nb = strlen(f[1]) / 2;
    char *text = bm_xmalloc(nb + 1);
    for (size_t i = 0; i < nb; i++) text[i] = (char)(hexval(f[1][2 * i]) * 16 + hexval(f[1][2 * i + 1]));
    text[nb] = 0;
    cases++;
    for (int v = 0; v < 2; v++) {
      int nw = parse_ids(f[2 + v], want, CAP);
      for (int i = 0; i < CAP + 8; i++) got[i] = -777; /* poison */
      int ng = bm_tokenize_n(toks[v], text, nb, got, max_len);
      int ok = ng == nw && memcmp(got, want, (size_t)nw * sizeof *got) == 0 && got[ng] == -777;
      if (ok && !memchr(text, 0, nb)) { /* the NUL-terminated entry point agrees */
        int32_t again[CAP];
        ok = bm_tokenize(toks[v], text, again, max_len) == ng && !memcmp(again, got, (size_t)ng * 4);
      }
      if (!ok && bad[v]++ < 5) {
        printf("#   %s, %s, max_len %d, text %s\n#     got ", file, names[v], max_len, f[1]);
        for (int i = 0; i < ng && i < 40; i++) printf(" %d", got[i]);
        printf("\n#     want");
        for (int i = 0; i < nw && i < 40; i++) printf(" %d", want[i]);
        printf("\n");
      }
    }
    free(text);
  }
  CHECK(malformed == 0 && cases > 100, "%s parsed (%d cases, %d malformed)", file, cases,
        malformed);
  for (int v = 0; v < 2; v++)
    CHECK(bad[v] == 0, "%s: ids identical to HuggingFace with the %s vocab (%d of %d differ)",
          file, names[v], bad[v], cases);
  free(want);
  free(got);
  free(s);
}

/* ---- the API's small promises ---- */
static void test_api(bm_tokenizer *big, bm_tokenizer *tiny) {
  CHECK(bm_tokenizer_vocab_size(big) == 30522, "real vocab: 30522 ids (%d)",
        bm_tokenizer_vocab_size(big));
  CHECK(bm_tokenizer_pad_id(big) == 0, "real vocab: [PAD] is 0");
  CHECK(bm_tokenizer_vocab_size(tiny) == 79, "tiny vocab: 79 ids (%d)",
        bm_tokenizer_vocab_size(tiny));
  CHECK(bm_tokenizer_pad_id(tiny) == 7, "tiny vocab: [PAD] looked up, 7 (%d)",
        bm_tokenizer_pad_id(tiny));
  int32_t ids[8] = {-5, -5, -5, -5, -5, -5, -5, -5};
  CHECK(bm_tokenize(big, "hello", ids, 1) == -1 && ids[0] == -5, "max_len 1 refused, nothing written");
  int n = bm_tokenize(big, "hello world again", ids, 3);
  CHECK(n == 3 && ids[0] == 101 && ids[1] == 7592 && ids[2] == 102 && ids[3] == -5,
        "truncation to 3 keeps [CLS] hello [SEP] and writes no further");
  n = bm_tokenize(tiny, "", ids, 8);
  CHECK(n == 2 && ids[0] == 5 && ids[1] == 3, "empty text: [CLS] [SEP] with the tiny vocab's ids");

  char err[256];
  struct {
    const char *vocab;
    const char *msg;
  } bad[] = {{"", "empty vocab"},
             {"[PAD]\n[UNK]\n[SEP]\n", "no [CLS]"},
             {"[PAD]\n[CLS]\n[SEP]\n", "no [UNK]"},
             {"[UNK]\n[CLS]\n[SEP]\n", "no [PAD]"},
             {"[PAD]\n[UNK]\n[CLS]\n", "no [SEP]"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = 0;
    bm_tokenizer *t = bm_tokenizer_new(bad[i].vocab, strlen(bad[i].vocab), err, sizeof err);
    CHECK(!t && strstr(err, bad[i].msg), "bad vocab refused: %s (%s)", bad[i].msg, err);
    bm_tokenizer_free(t);
  }
  static const char nul[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\0c\n";
  bm_tokenizer *t = bm_tokenizer_new(nul, sizeof nul - 1, err, sizeof err);
  CHECK(!t && strstr(err, "line 5"), "a NUL byte in the vocab is refused, naming the line (%s)", err);
  bm_tokenizer_free(t);
  /* CRLF lines, trailing blanks and duplicates as tokenizers reads them */
  static const char crlf[] = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nfoo \r\nbar\r\nfoo";
  t = bm_tokenizer_new(crlf, sizeof crlf - 1, err, sizeof err);
  n = t ? bm_tokenize(t, "bar foo baz", ids, 8) : 0;
  CHECK(t && bm_tokenizer_vocab_size(t) == 7 && n == 5 && ids[1] == 5 && ids[2] == 6 && ids[3] == 1,
        "CRLF vocab, trailing blank trimmed, the later duplicate wins");
  bm_tokenizer_free(t);
}

/* Replace the first `from` in s (a fresh copy). */
static char *replaced(const char *s, const char *from, const char *to) {
  const char *at = strstr(s, from);
  if (!at) bm_die("test: \"%s\" not in the JSON", from);
  char *r = bm_xmalloc(strlen(s) - strlen(from) + strlen(to) + 1);
  sprintf(r, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
  return r;
}

/* tokenizer.json: the same vocab as vocab.txt, and refusals by name. */
static bm_tokenizer *test_json(void) {
  size_t len, vlen;
  char *json = slurp("tokenizer-tiny.json", &len), *vocab, err[256] = "";
  CHECK(bm_vocab_from_tokenizer_json(json, len, &vocab, &vlen, err, sizeof err) == 0,
        "tokenizer.json of the tiny vocab read (%s)", err);
  bm_tokenizer *t = bm_tokenizer_new(vocab, vlen, err, sizeof err);
  CHECK(t && bm_tokenizer_vocab_size(t) == 79 && bm_tokenizer_pad_id(t) == 7,
        "its vocab has the ids of vocab-tiny.txt, holes of duplicates included");
  free(vocab);
  struct {
    const char *from, *to, *msg;
  } bad[] = {
      {"\"lowercase\": true", "\"lowercase\": false", "uncased BERT"},
      {"\"strip_accents\": null", "\"strip_accents\": false", "uncased BERT"},
      {"\"handle_chinese_chars\": true", "\"handle_chinese_chars\": false", "uncased BERT"},
      {"\"type\": \"BertNormalizer\"", "\"type\": \"NFKC\"", "normalizer NFKC"},
      {"\"type\": \"BertPreTokenizer\"", "\"type\": \"Whitespace\"", "pre_tokenizer Whitespace"},
      {"\"type\": \"WordPiece\",\n    \"unk_token\"", "\"type\": \"BPE\",\n    \"unk_token\"",
       "model is BPE"},
      {"\"continuing_subword_prefix\": \"##\"", "\"continuing_subword_prefix\": \"@@\"",
       "prefix \"@@\""},
      {"\"max_input_chars_per_word\": 100", "\"max_input_chars_per_word\": 200",
       "max_input_chars_per_word 200"},
      {"\"single\": [\n      {\n        \"SpecialToken\": {\n          \"id\": \"[CLS]\"",
       "\"single\": [\n      {\n        \"SpecialToken\": {\n          \"id\": \"[SEP]\"",
       "not [CLS] $A [SEP]"},
      {"\"content\": \"[MASK]\"", "\"content\": \"<mask>\"", "added token \"<mask>\""},
      {"\"hello\": 74", "\"hello \": 74", "ends in a blank"},
      {"\"hello\": 74", "\"hello\": 0", "id 0 given to"},
      {"\"hello\": 74", "\"hello\": -3", "has no valid id"},
      {"\"hello\": 74", "\"hello\": 1000", "ids up to 1000 for 75 tokens: too sparse"},
      {"\"version\"", "\"version\" :: ", "not JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *j = replaced(json, bad[i].from, bad[i].to);
    err[0] = 0;
    vocab = (char *)"untouched";
    int rc = bm_vocab_from_tokenizer_json(j, strlen(j), &vocab, &vlen, err, sizeof err);
    CHECK(rc == -1 && !vocab && strstr(err, bad[i].msg), "tokenizer.json refused: %s (%s)",
          bad[i].msg, err);
    free(j);
  }
  free(json);
  return t;
}

int main(void) {
  bm_tokenizer *toks[2] = {load("vocab-bert-uncased.txt"), load("vocab-tiny.txt")};
  const char *names[2] = {"bert-uncased", "tiny"};
  test_api(toks[0], toks[1]);
  test_chars();
  test_cases("tokenizer_cases.txt", toks, names);
  test_cases("tokenizer_random.txt", toks, names);
  bm_tokenizer *from_json[2] = {toks[0], test_json()};
  const char *json_names[2] = {"bert-uncased", "tiny from tokenizer.json"};
  test_cases("tokenizer_cases.txt", from_json, json_names);
  bm_tokenizer_free(from_json[1]);
  bm_tokenizer_free(toks[0]);
  bm_tokenizer_free(toks[1]);
  CHECK_DONE();
}
