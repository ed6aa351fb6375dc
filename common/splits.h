/* splits.h - deterministic group-level train/val/test splits and shards.
 *
 * Groups (patients, lesions) are the unit: all samples of a group land on the
 * same side. Within each stratum (e.g. a lesion's diagnosis) the groups are
 * ordered by a seeded hash of their name and the first round(n*test) go to
 * test, the next round(n*val) to val, the rest to train. The order depends on
 * the seed and the names only, so every machine computes the same split. */
#ifndef BM_SPLITS_H
#define BM_SPLITS_H
#include <stdint.h>

enum { BM_SPLIT_TRAIN = 0, BM_SPLIT_VAL = 1, BM_SPLIT_TEST = 2, BM_SPLIT_NONE = -1 };
const char *bm_split_name(int s);
int bm_split_parse(const char *s); /* BM_SPLIT_NONE when unknown */

/* groups[i], stratum[i] (>= 0) for n distinct groups -> split[i]. */
void bm_split_groups(char *const *groups, const int *stratum, long n, double val_fraction,
                     double test_fraction, uint64_t seed, int *split);

/* The split of one id on its own, for data read as a stream (image-caption
 * pairs): the seeded hash of the id as a fraction u in [0,1): u < test is
 * test, u < test + val is val, the rest train. The fractions hold in
 * expectation, not exactly as bm_split_groups makes them; the split of an id
 * never depends on the other ids, so every layout of the same pairs splits
 * alike. */
int bm_split_of(const char *id, double val_fraction, double test_fraction, uint64_t seed);

/* The shard (0..count-1) a sample with this id belongs to. */
int bm_shard_of(const char *id, int count);
#endif
