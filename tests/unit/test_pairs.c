/* test_pairs.c - the pieces of bm-decode --format pairs that need no
 * images: caption cleaning (trim, UTF-8 validity) and the per-id split. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "splits.h"
#include "util.h"
#include "wds.h"

static int clean_is(const char *in, int want_rc, const char *want) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", in);
  int rc = bm_caption_clean(buf);
  return rc == want_rc && (rc || !strcmp(buf, want));
}

int main(void) {
  CHECK(clean_is("  a b \r\n\t", 0, "a b"), "trims white space at both ends, keeps inner");
  CHECK(clean_is(" \n ", 0, ""), "all white space: empty");
  CHECK(clean_is("\xc3\xbc \xe8\x82\xba \xf0\x9f\x98\x80", 0, "\xc3\xbc \xe8\x82\xba \xf0\x9f\x98\x80"),
        "2-, 3- and 4-byte UTF-8 accepted");
  CHECK(clean_is("bad \xff", -1, NULL), "a 0xFF byte refused");
  CHECK(clean_is("\xc0\xaf", -1, NULL), "an overlong '/' refused");
  CHECK(clean_is("\xed\xa0\x80", -1, NULL), "a UTF-16 surrogate refused");
  CHECK(clean_is("\xf4\x90\x80\x80", -1, NULL), "a code point past U+10FFFF refused");
  CHECK(clean_is("\xe8\x82", -1, NULL), "a truncated sequence refused");
  CHECK(clean_is("latin1 caf\xe9!", -1, NULL), "Latin-1 text refused");

  /* the split of an id: fractions hold in expectation, the seed moves it */
  uint64_t seed = (uint64_t)time(NULL);
  printf("# seed %llu\n", (unsigned long long)seed);
  enum { N = 200000 };
  long n[3] = {0, 0, 0}, moved = 0, same = 0;
  char id[64];
  for (int i = 0; i < N; i++) {
    snprintf(id, sizeof id, "img/%llu-%d.png", (unsigned long long)seed, i);
    int s = bm_split_of(id, 0.1, 0.15, seed);
    n[s]++;
    same += s == bm_split_of(id, 0.1, 0.15, seed);
    moved += s != bm_split_of(id, 0.1, 0.15, seed + 1);
  }
  /* binomial sd at N = 2e5, p = 0.1: 0.00067; 6 sd */
  CHECK(same == N, "the same id and seed: the same split");
  double ft = (double)n[BM_SPLIT_TEST] / N, fv = (double)n[BM_SPLIT_VAL] / N;
  CHECK(fabs(ft - 0.15) < 0.005 && fabs(fv - 0.1) < 0.004,
        "test 0.15, val 0.1 in expectation: %.4f, %.4f of %d ids", ft, fv, N);
  /* two seeds agree where both hashes fall on the same side: about
   * 0.15^2 + 0.1^2 + 0.75^2 = 0.595 of the ids */
  CHECK(fabs((double)(N - moved) / N - 0.595) < 0.01, "another seed: an independent split (%.4f agree)",
        (double)(N - moved) / N);
  CHECK(bm_split_of("x", 0, 0, seed) == BM_SPLIT_TRAIN && bm_split_of("x", 0, 1, seed) == BM_SPLIT_TEST &&
            bm_split_of("x", 1, 0, seed) == BM_SPLIT_VAL,
        "fractions 0 and 1 are exact");
  CHECK_DONE();
}
