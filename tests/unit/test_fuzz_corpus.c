/* test_fuzz_corpus - every input under tests/fuzz/corpus_<target>/ (the
 * seeds, and crashers found by `make fuzz` once fixed) goes through the same
 * parser its fuzz target drives. Under `make test-asan` this is the
 * regression test for everything the fuzzers ever found. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "unpickle.h"
#include "util.h"
#include "weights_int.h"

static unsigned char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *b = NULL;
  size_t n = 0, cap = 0, r;
  do {
    if (n == cap) b = bm_xrealloc(b, cap = cap ? cap * 2 : 4096);
    r = fread(b + n, 1, cap - n, f);
    n += r;
  } while (r > 0);
  fclose(f);
  *len = n;
  return b;
}

/* 1 when the input parsed, 0 when it was refused */
static int run(const char *target, const unsigned char *d, size_t n) {
  char err[1024];
  static const unsigned char empty[1];
  if (!n) d = empty;
  if (!strcmp(target, "unpickle")) {
    bm_pk_state st;
    if (bm_unpickle_state_dict(d, n, "corpus/data.pkl", &st, err, sizeof err)) return 0;
    bm_pk_state_free(&st);
    return 1;
  }
  bm_weights ws = {0};
  int rc = !strcmp(target, "safetensors") ? bm_safetensors_load("corpus", d, n, &ws, err, sizeof err)
                                          : bm_torchzip_load("corpus", d, n, &ws, err, sizeof err);
  if (rc) return 0;
  bm_weights_free(&ws);
  return 1;
}

int main(void) {
  const char *tests = getenv("BM_TESTS");
  static const char *const targets[] = {"unpickle", "safetensors", "torchzip"};
  for (int t = 0; t < 3; t++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus_%s", tests ? tests : "tests", targets[t]);
    DIR *dp = opendir(dir);
    CHECK(dp != NULL, "corpus_%s exists", targets[t]);
    if (!dp) continue;
    int files = 0, parsed = 0, seeds_ok = 1;
    struct dirent *de;
    while ((de = readdir(dp))) {
      if (de->d_name[0] == '.') continue;
      char path[8192];
      snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
      size_t n;
      unsigned char *d = slurp(path, &n);
      if (!d) continue;
      int ok = run(targets[t], d, n);
      /* the valid seeds written by make_loader_fixtures.py must parse */
      if (!strncmp(de->d_name, "seed_", 5) && strncmp(de->d_name, "seed_bad", 8) && !ok) {
        printf("# %s did not parse\n", path);
        seeds_ok = 0;
      }
      files++;
      parsed += ok;
      free(d);
    }
    closedir(dp);
    CHECK(files >= 2, "corpus_%s: %d inputs replayed without a memory error (%d parsed)", targets[t], files,
          parsed);
    CHECK(seeds_ok && parsed >= 1, "corpus_%s: the valid seeds parse", targets[t]);
  }
  CHECK_DONE();
}
