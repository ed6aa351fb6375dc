/* fuzz_tokenizer_vocab.c - libFuzzer target for the vocab readers: the input
 * is taken as a vocab.txt and as a tokenizer.json; whatever loads must then
 * tokenize a few hard strings within the promises of tokenizer.h.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icommon \
 *     tests/fuzz/fuzz_tokenizer_vocab.c common/tokenizer.c common/tokenizer_chars.c \
 *     common/tokenizer_json.c -lutf8proc -ljansson -o build/fuzz_tokenizer_vocab
 *   build/fuzz_tokenizer_vocab -max_total_time=60 tests/fuzz/corpus_tokenizer_vocab
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static void exercise(bm_tokenizer *t) {
  static const char *texts[] = {"hello world", "[CLS] a [SEP]b[MASK]", "Café ﬁ 中文 q\xf0\x9d\x85\xad",
                                "##ab ## #", "\xff\xfe broken \xc3", "x"};
  int32_t ids[40];
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    for (int max = 2; max <= 40; max += 19) {
      int n = bm_tokenize(t, texts[i], ids, max);
      if (n < 2 || n > max) abort();
      for (int k = 0; k < n; k++)
        if (ids[k] < 0 || ids[k] >= bm_tokenizer_vocab_size(t)) abort();
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  bm_tokenizer *t = bm_tokenizer_new((const char *)data, size, err, sizeof err);
  if (t) {
    exercise(t);
    bm_tokenizer_free(t);
  } else if (!memchr(err, 0, sizeof err)) {
    abort();
  }
  char *vocab;
  size_t vlen;
  if (bm_vocab_from_tokenizer_json((const char *)data, size, &vocab, &vlen, err, sizeof err) == 0) {
    t = bm_tokenizer_new(vocab, vlen, err, sizeof err);
    if (t) exercise(t);
    bm_tokenizer_free(t);
    free(vocab);
  }
  return 0;
}
