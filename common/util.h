/* util.h - the small things every program needs: messages that name the
 * program, checked allocation, a progress line, and --shard parsing. */
#ifndef BM_UTIL_H
#define BM_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The program name is set once from argv[0] and only read afterwards. */
void bm_set_progname(const char *argv0);
const char *bm_progname(void);

/* "prog: message\n" on stderr, written with one write(2) so lines of the
 * stages of a pipeline do not interleave. bm_die exits with status 1,
 * bm_usage_die with 2 (a wrong command line, as the Unix tools do). */
void bm_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bm_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void bm_usage_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void *bm_xmalloc(size_t n);
void *bm_xcalloc(size_t count, size_t size);
void *bm_xrealloc(void *p, size_t n);
char *bm_xstrdup(const char *s);

/* Size in bytes of count elements of size; dies on overflow. */
size_t bm_mul_size(size_t count, size_t size);

/* Parse "K/N" (1 <= K <= N, 1-based like Slurm's task ids printed by people;
 * see bm_shard_from_env for the 0-based SLURM_ARRAY_TASK_ID). Returns 0 on
 * success and fills *index (0-based) and *count. */
int bm_parse_shard(const char *s, int *index, int *count);
/* Defaults from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (and
 * SLURM_ARRAY_TASK_MIN when the array does not start at 0). Returns 1 when
 * the environment set them, 0 otherwise (index 0, count 1). */
int bm_shard_from_env(int *index, int *count);

/* Parse a whole decimal number / float; 0 on success. */
int bm_parse_long(const char *s, long min, long max, long *out);
int bm_parse_double(const char *s, double *out);

/* A progress line on stderr, redrawn at most a few times a second when stderr
 * is a terminal, and printed every `every_s` seconds as whole lines when it is
 * not (logs of batch jobs). Silent when quiet. */
typedef struct {
  double start, last;
  int tty, quiet, dirty;
} bm_progress;
void bm_progress_init(bm_progress *p, int quiet);
void bm_progress_update(bm_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void bm_progress_done(bm_progress *p);
double bm_now(void); /* monotonic seconds */

/* Deterministic 64-bit hash (FNV-1a then a mixer) and a small seeded PRNG
 * (splitmix64), so splits and shards are the same on every machine. */
uint64_t bm_hash64(const void *data, size_t n, uint64_t seed);
typedef struct { uint64_t s; } bm_rng;
void bm_rng_seed(bm_rng *r, uint64_t seed);
uint64_t bm_rng_next(bm_rng *r);
double bm_rng_uniform(bm_rng *r); /* [0,1) */

/* Write a file atomically: data goes to path.tmp.PID, then fsync + rename. */
int bm_write_file_atomic(const char *path, const void *data, size_t n);

#endif
