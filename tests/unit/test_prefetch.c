/* test_prefetch.c - the training batch prefetcher (train_prefetch.h)
 * against bm_trainset_batch on generated image records (some at the model's
 * size, some larger: random-resized crops), fresh random pixels each run:
 *   - a pipeline of batches (get one, start the next) of random sizes,
 *     records and seeds: every batch bit for bit the serial read, the
 *     prefetcher's buffers poisoned (NaN) before the worker refills them;
 *   - a batch asked for that is not the one started (read now), a start
 *     that replaces another, a start never asked for (freed while reading);
 *   - records that changed after indexing, found by the readers: the
 *     process lives on until the batch is asked for, then exits 1 with the
 *     serial read's message (the first bad record in the batch's order). */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "record.h"
#include "train_prefetch.h"
#include "util.h"

enum { N = 61, S = 16, C = 3, BATCH = 7 };

static bm_rng rng;

static int upto(int n) { return (int)(bm_rng_next(&rng) % (uint64_t)n); }

static void write_records(const char *path) {
  bm_writer *w = bm_writer_open(path);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "multiclass");
  msgpack_packer *pk = bm_out_key(&o, "classes");
  msgpack_pack_array(pk, C);
  for (int k = 0; k < C; k++) bm_pack_str(pk, (const char *[]){"akiec", "bcc", "nv"}[k]);
  bm_write_header(w, NULL, &o);
  for (int i = 0; i < N; i++) {
    bm_out_reset(&o);
    int H = i % 3 ? S + 6 + upto(9) : S, W = i % 3 ? S + 6 + upto(9) : S; /* two in three cropped */
    if (i == 1) H = W = 4 * S; /* many crops to draw from */
    uint8_t *img = bm_xmalloc((size_t)3 * H * W);
    for (int j = 0; j < 3 * H * W; j++) img[j] = (uint8_t)upto(256);
    float y[C] = {0};
    y[upto(C)] = 1;
    bm_out_tensor(&o, "image", BM_U8, 3, (int64_t[]){3, H, W}, img);
    bm_out_tensor(&o, "target", BM_F32, 1, (int64_t[]){C}, y);
    bm_write_record(w, NULL, &o);
    free(img);
  }
  bm_writer_close(w);
  bm_out_free(&o);
}

static void rand_batch(long *idx, int *B, uint64_t *seed) {
  *B = 1 + upto(BATCH);
  for (int j = 0; j < *B; j++) idx[j] = upto(N);
  *seed = bm_rng_next(&rng);
}

static void poison(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* X, Y of a batch the prefetcher handed out against the serial read */
static int same_as_serial(const bm_trainset *ds, const long *idx, int B, uint64_t seed, const float *X,
                          const float *Y) {
  size_t nx = (size_t)B * ds->D, ny = (size_t)B * C;
  float *Xr = bm_xmalloc(nx * sizeof(float)), *Yr = bm_xmalloc(ny * sizeof(float));
  poison(Xr, nx), poison(Yr, ny);
  bm_recslot slot;
  bm_recslot_init(&slot);
  bm_trainset_batch(ds, BM_FEAT_IMG, idx, B, &slot, seed, Xr, Yr);
  bm_recslot_free(&slot);
  int same = !memcmp(X, Xr, nx * sizeof(float)) && !memcmp(Y, Yr, ny * sizeof(float));
  free(Xr), free(Yr);
  return same;
}

/* runs fn in a child with stderr into a file; its status and stderr */
static int in_child(void (*fn)(void *), void *arg, char *err, size_t n) {
  char path[] = "/tmp/bm-test-prefetch-err-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) bm_die("mkstemp");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) bm_die("fork");
  if (pid == 0) {
    dup2(fd, 2);
    fn(arg);
    _exit(0);
  }
  int st;
  waitpid(pid, &st, 0);
  ssize_t got = pread(fd, err, n - 1, 0);
  err[got > 0 ? got : 0] = 0;
  close(fd);
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

typedef struct {
  const bm_trainset *ds;
  long idx[BATCH];
  int B;
} bad_batch;

static void serial_read(void *arg) {
  bad_batch *b = arg;
  float X[BATCH * 3 * S * S], Y[BATCH * C];
  bm_recslot slot;
  bm_recslot_init(&slot);
  bm_trainset_batch(b->ds, BM_FEAT_IMG, b->idx, b->B, &slot, 5, X, Y);
}

/* the worker meets the bad record; "alive" says the process outlived it */
static void prefetched_read(void *arg) {
  bad_batch *b = arg;
  bm_prefetch *p = bm_prefetch_new(b->ds, BM_FEAT_IMG, BATCH, 3, NULL, NULL);
  float *X, *Y;
  long first = 0;
  bm_prefetch_get(p, &first, 1, 5, &X, &Y);
  bm_prefetch_start(p, b->idx, b->B, 5);
  usleep(300 * 1000); /* the worker has long finished */
  ssize_t w = write(2, "alive\n", 6);
  (void)w;
  bm_prefetch_get(p, b->idx, b->B, 5, &X, &Y);
}

int main(void) {
  bm_set_progname("test_prefetch");
  uint64_t s0 = (uint64_t)time(NULL);
  printf("# seed %llu\n", (unsigned long long)s0);
  bm_rng_seed(&rng, s0);
  char path[] = "/tmp/bm-test-prefetch-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) bm_die("mkstemp");
  close(fd);
  write_records(path);
  bm_model model;
  memset(&model, 0, sizeof model);
  model.vit.image_size = S;
  for (int c = 0; c < 3; c++) model.mean[c] = 0.4f + 0.05f * c, model.std[c] = 0.25f + 0.01f * c;
  bm_trainset ds;
  bm_trainset_load(path, BM_NEED_IMAGE | BM_NEED_TARGET, BM_FEAT_IMG, NULL, &model, 1, 0, "--mode finetune", &ds);
  CHECK(ds.n == N && ds.D == 3 * S * S, "%ld records of %d values", ds.n, ds.D);

  /* the crops are real: another seed, other pixels for a larger image */
  long big = 1;
  float *a = bm_xmalloc(sizeof(float) * (size_t)ds.D), *b = bm_xmalloc(sizeof(float) * (size_t)ds.D);
  bm_recslot slot;
  bm_recslot_init(&slot);
  bm_trainset_batch(&ds, BM_FEAT_IMG, &big, 1, &slot, 1, a, NULL);
  int differ = 0;
  for (uint64_t sd = 2; sd < 10; sd++) {
    bm_trainset_batch(&ds, BM_FEAT_IMG, &big, 1, &slot, sd, b, NULL);
    differ += memcmp(a, b, sizeof(float) * (size_t)ds.D) != 0;
  }
  CHECK(differ >= 4, "record 2 (larger than the model's size) is cropped per seed (%d of 8 seeds differ)", differ);
  bm_recslot_free(&slot);
  free(a), free(b);

  /* the pipeline, as bm-train's loop runs it, with 1 and 3 readers */
  enum { NB = 40 };
  long idx[NB][BATCH];
  int B[NB];
  uint64_t seed[NB];
  bm_prefetch *p = NULL;
  for (int nr = 1; nr <= 3; nr += 2) {
    for (int k = 0; k < NB; k++) rand_batch(idx[k], &B[k], &seed[k]);
    bm_prefetch_free(p);
    p = bm_prefetch_new(&ds, BM_FEAT_IMG, BATCH, nr, NULL, NULL);
    int same = 0, pre = 0;
    for (int k = 0; k < NB; k++) {
      float *X, *Y;
      pre += bm_prefetch_get(p, idx[k], B[k], seed[k], &X, &Y);
      if (k + 1 < NB) bm_prefetch_start(p, idx[k + 1], B[k + 1], seed[k + 1]);
      same += same_as_serial(&ds, idx[k], B[k], seed[k], X, Y);
      poison(X, (size_t)BATCH * ds.D), poison(Y, (size_t)BATCH * C); /* the worker refills it after the next get */
    }
    CHECK(pre == NB - 1, "%d reader(s): %d of %d batches came from the worker (all but the first)", nr, pre, NB);
    CHECK(same == NB, "%d reader(s): %d of %d batches bit for bit the serial read (images, crops, targets)", nr, same,
          NB);
  }

  /* another batch than the one started; a start replaced; the same records with another seed */
  long x[BATCH], y[BATCH];
  int bx, by;
  uint64_t sx, sy;
  float *X, *Y;
  rand_batch(x, &bx, &sx), rand_batch(y, &by, &sy);
  bm_prefetch_start(p, x, bx, sx);
  int got = bm_prefetch_get(p, y, by, sy, &X, &Y);
  CHECK(got == 0 && same_as_serial(&ds, y, by, sy, X, Y), "a batch other than the one started is read now, right");
  bm_prefetch_start(p, y, by, sy);
  bm_prefetch_start(p, x, bx, sx);
  got = bm_prefetch_get(p, x, bx, sx, &X, &Y);
  CHECK(got == 1 && same_as_serial(&ds, x, bx, sx, X, Y), "a start replaces the one before");
  bm_prefetch_start(p, x, bx, sx);
  got = bm_prefetch_get(p, x, bx, sx + 1, &X, &Y);
  CHECK(got == 0 && same_as_serial(&ds, x, bx, sx + 1, X, Y), "the same records with another seed are read again");
  bm_prefetch_start(p, y, by, sy); /* never asked for: free waits for it */
  bm_prefetch_free(p);
  CHECK(1, "freed with a batch in flight");

  /* the file cut in half after indexing: 3 readers of 5 records, the bad
   * ones in the second and third shares; the serial read meets record N
   * first, and so must the message */
  bad_batch bb = {.ds = &ds, .B = 5, .idx = {4, 0, N - 1, 7, N - 2}};
  struct stat st;
  if (stat(path, &st) || truncate(path, st.st_size / 2)) bm_die("truncate %s", path);
  char serr[2048], perr[2048];
  int ss = in_child(serial_read, &bb, serr, sizeof serr);
  int ps = in_child(prefetched_read, &bb, perr, sizeof perr);
  serr[strcspn(serr, "\n")] = 0; /* one line: the message, without its newline */
  if (!strncmp(perr, "alive\n", 6)) perr[6 + strcspn(perr + 6, "\n")] = 0;
  char want[64];
  snprintf(want, sizeof want, "record %d (byte", N);
  CHECK(ss == 1 && strstr(serr, "file shrank since it was indexed") && strstr(serr, want),
        "the serial read dies at record %d: %d, %s", N, ss, serr);
  CHECK(ps == 1 && !strncmp(perr, "alive\n", 6) && !strcmp(perr + 6, serr),
        "the worker's error stops the process when the batch is asked for, with the same message (status %d): %s", ps,
        perr + (perr[0] == 'a' ? 6 : 0));
  bm_trainset_free(&ds);
  unlink(path);
  CHECK_DONE();
}
