/* fuzz_tokenizer.c - libFuzzer target for the BERT tokenizer.
 *
 * Build and run (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icommon \
 *     tests/fuzz/fuzz_tokenizer.c common/tokenizer.c common/tokenizer_chars.c \
 *     -lutf8proc -o build/fuzz_tokenizer
 *   build/fuzz_tokenizer -max_total_time=60 tests/fuzz/corpus_tokenizer
 * BM_FUZZ_VOCAB=tests/fixtures/vocab-bert-uncased.txt uses that vocab instead
 * of tests/fixtures/vocab-tiny.txt.
 *
 * The first input byte picks max_len; the rest is the text (any bytes).
 * Besides memory errors it checks the promises of tokenizer.h: [CLS] first,
 * [SEP] last, 2 <= L <= max_len, every id in the vocab, nothing written past
 * L, and truncation keeping a prefix of the untruncated ids. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static bm_tokenizer *tok;
static int32_t cls_id, sep_id;

static void load(void) {
  const char *path = getenv("BM_FUZZ_VOCAB");
  if (!path) path = "tests/fixtures/vocab-tiny.txt";
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "fuzz_tokenizer: cannot open %s (run from the repository root)\n", path);
    abort();
  }
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  char err[256];
  tok = bm_tokenizer_new(buf, n, err, sizeof err);
  if (!tok) {
    fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err);
    abort();
  }
  int32_t ids[2];
  bm_tokenize(tok, "", ids, 2);
  cls_id = ids[0], sep_id = ids[1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tok) load();
  if (size == 0) return 0;
  int max_len = 2 + data[0] % 64;
  const char *text = (const char *)data + 1;
  size_t len = size - 1;
  enum { BIG = 1024 };
  static int32_t full[BIG + 1], cut[BIG + 1];
  for (int i = 0; i <= BIG; i++) full[i] = cut[i] = -1;
  int nf = bm_tokenize_n(tok, text, len, full, BIG);
  int nc = bm_tokenize_n(tok, text, len, cut, max_len);
  if (nf < 2 || nf > BIG || full[0] != cls_id || full[nf - 1] != sep_id || full[nf] != -1) abort();
  if (nc < 2 || nc > max_len || cut[0] != cls_id || cut[nc - 1] != sep_id || cut[nc] != -1) abort();
  for (int i = 0; i < nf; i++)
    if (full[i] < 0 || full[i] >= bm_tokenizer_vocab_size(tok)) abort();
  /* truncation keeps the first pieces */
  if (nc > nf || (nc < nf && nc != max_len)) abort();
  if (memcmp(cut, full, (size_t)(nc - 1) * sizeof *cut)) abort();
  return 0;
}
