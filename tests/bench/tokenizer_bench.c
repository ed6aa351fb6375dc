/* tokenizer_bench.c - tokens/s of bm_tokenize over the lines of a file, one
 * thread, open_clip's context of 256. Built and run by tokenizer_bench.sh.
 *   tokenizer_bench VOCAB TEXT [REPEAT] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) bm_die("cannot open %s", path);
  if (fseek(f, 0, SEEK_END) || (*len = (size_t)ftell(f), fseek(f, 0, SEEK_SET))) bm_die("cannot seek %s", path);
  char *s = bm_xmalloc(*len + 1);
  if (fread(s, 1, *len, f) != *len) bm_die("cannot read %s", path);
  fclose(f);
  s[*len] = 0;
  return s;
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  if (argc < 3) bm_usage_die("usage: tokenizer_bench VOCAB TEXT [REPEAT]");
  size_t vlen, tlen;
  char *vocab = slurp(argv[1], &vlen), *text = slurp(argv[2], &tlen), err[256];
  int repeat = argc > 3 ? atoi(argv[3]) : 3;
  bm_tokenizer *t = bm_tokenizer_new(vocab, vlen, err, sizeof err);
  if (!t) bm_die("%s: %s", argv[1], err);
  int32_t ids[256];
  double best = 1e30;
  long tokens = 0, lines = 0;
  for (int r = 0; r < repeat; r++) {
    tokens = lines = 0;
    double t0 = bm_now();
    for (char *p = text, *e; p < text + tlen; p = e + 1) {
      e = memchr(p, '\n', (size_t)(text + tlen - p));
      if (!e) e = text + tlen;
      tokens += bm_tokenize_n(t, p, (size_t)(e - p), ids, 256);
      lines++;
    }
    double dt = bm_now() - t0;
    if (dt < best) best = dt;
  }
  printf("C bm_tokenize: %ld lines, %ld tokens, %.2f MB in %.3f s: %.0f tokens/s, %.0f lines/s, %.1f MB/s\n",
         lines, tokens, tlen / 1e6, best, tokens / best, lines / best, tlen / 1e6 / best);
  bm_tokenizer_free(t);
  free(vocab);
  free(text);
  return 0;
}
