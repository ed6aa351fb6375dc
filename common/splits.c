/* splits.c - see splits.h. */
#include "splits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *bm_split_name(int s) {
  return s == BM_SPLIT_TRAIN ? "train" : s == BM_SPLIT_VAL ? "val" : s == BM_SPLIT_TEST ? "test" : "none";
}

int bm_split_parse(const char *s) {
  for (int i = 0; i < 3; i++)
    if (!strcmp(s, bm_split_name(i))) return i;
  return BM_SPLIT_NONE;
}

typedef struct {
  int stratum;
  uint64_t h;
  const char *name;
  long i;
} key;

static int cmp_key(const void *pa, const void *pb) {
  const key *a = pa, *b = pb;
  if (a->stratum != b->stratum) return a->stratum < b->stratum ? -1 : 1;
  if (a->h != b->h) return a->h < b->h ? -1 : 1;
  return strcmp(a->name, b->name); /* hash ties: still a total order */
}

void bm_split_groups(char *const *groups, const int *stratum, long n, double val_fraction,
                     double test_fraction, uint64_t seed, int *split) {
  key *k = bm_xmalloc(bm_mul_size((size_t)n, sizeof *k));
  for (long i = 0; i < n; i++)
    k[i] = (key){stratum ? stratum[i] : 0, bm_hash64(groups[i], strlen(groups[i]), seed), groups[i], i};
  qsort(k, (size_t)n, sizeof *k, cmp_key);
  for (long s = 0; s < n;) {
    long e = s;
    while (e < n && k[e].stratum == k[s].stratum) e++;
    long m = e - s;
    long ntest = (long)floor(m * test_fraction + 0.5), nval = (long)floor(m * val_fraction + 0.5);
    if (ntest + nval > m) nval = m - ntest;
    for (long j = 0; j < m; j++)
      split[k[s + j].i] = j < ntest ? BM_SPLIT_TEST : j < ntest + nval ? BM_SPLIT_VAL : BM_SPLIT_TRAIN;
    s = e;
  }
  free(k);
}

int bm_split_of(const char *id, double val_fraction, double test_fraction, uint64_t seed) {
  /* the top 53 bits: an exact double in [0,1) */
  double u = (double)(bm_hash64(id, strlen(id), seed) >> 11) / 9007199254740992.0;
  return u < test_fraction ? BM_SPLIT_TEST : u < test_fraction + val_fraction ? BM_SPLIT_VAL : BM_SPLIT_TRAIN;
}

int bm_shard_of(const char *id, int count) {
  if (count <= 1) return 0;
  /* a fixed seed: the shards of a data set do not move with --seed */
  return (int)(bm_hash64(id, strlen(id), 0x5ca1ab1eULL) % (uint64_t)count);
}
