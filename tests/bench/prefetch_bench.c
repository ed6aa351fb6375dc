/* prefetch_bench.c - what bm-train's batch prefetch (train_prefetch.h) can
 * hide: the time to read, crop and normalize a training batch of 224x224
 * images (generated u8 records, file in the page cache), and the wall time
 * of steps that compute for STEP_MS (a busy main thread, as a GPU wait that
 * spins, or the CPU's own step) with the batches read serially before each
 * step vs by the worker during the step before.
 *   prefetch_bench DIR [BATCH [SIZE [REPS [STEP_MS [THREADS]]]]]   (JSON lines)
 * THREADS: the prefetcher's readers (bm-train on a GPU: -j).
 * SIZE: the stored image side (224: no crop; larger: random-resized crop to
 * 224, as --size 256 records are trained). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record.h"
#include "train_prefetch.h"
#include "util.h"

enum { S = 224, C = 7 };

static void write_records(const char *path, int n, int size) {
  bm_writer *w = bm_writer_open(path);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "multiclass");
  msgpack_packer *pk = bm_out_key(&o, "classes");
  msgpack_pack_array(pk, C);
  for (int k = 0; k < C; k++) bm_pack_str(pk, (const char *[]){"a", "b", "c", "d", "e", "f", "g"}[k]);
  bm_write_header(w, NULL, &o);
  bm_rng r;
  bm_rng_seed(&r, 1);
  size_t np = (size_t)3 * size * size;
  uint8_t *img = bm_xmalloc(np);
  for (int i = 0; i < n; i++) {
    bm_out_reset(&o);
    for (size_t j = 0; j < np; j++) img[j] = (uint8_t)(bm_rng_next(&r) >> 56);
    float y[C] = {0};
    y[i % C] = 1;
    bm_out_tensor(&o, "image", BM_U8, 3, (int64_t[]){3, size, size}, img);
    bm_out_tensor(&o, "target", BM_F32, 1, (int64_t[]){C}, y);
    if (bm_write_record(w, NULL, &o)) bm_die("%s: cannot write", path);
  }
  free(img);
  if (bm_writer_close(w)) bm_die("%s: cannot write", path);
  bm_out_free(&o);
}

static double thread_cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void spin(double s) {
  double t = bm_now() + s;
  while (bm_now() < t) {
  }
}

int main(int argc, char **argv) {
  if (argc < 2) bm_usage_die("prefetch_bench DIR [BATCH [SIZE [REPS [STEP_MS [THREADS]]]]]");
  int B = argc > 2 ? atoi(argv[2]) : 256, size = argc > 3 ? atoi(argv[3]) : 224, reps = argc > 4 ? atoi(argv[4]) : 5;
  double step = (argc > 5 ? atof(argv[5]) : 105) / 1000;
  int threads = argc > 6 ? atoi(argv[6]) : 1;
  if (B < 1 || size < S || reps < 1 || step < 0 || threads < 1) bm_usage_die("prefetch_bench DIR [BATCH [SIZE [REPS [STEP_MS [THREADS]]]]]");
  char path[4096];
  snprintf(path, sizeof path, "%s/prefetch-bench-%d-%d.bmr", argv[1], B, size);
  write_records(path, B, size);
  bm_model model;
  memset(&model, 0, sizeof model);
  model.vit.image_size = S;
  for (int c = 0; c < 3; c++) model.mean[c] = 0.45f, model.std[c] = 0.27f; /* values do not change the time */
  bm_trainset ds;
  bm_trainset_load(path, BM_NEED_IMAGE | BM_NEED_TARGET, BM_FEAT_IMG, NULL, &model, 1, 0, "--mode finetune", &ds);
  long *idx = bm_xmalloc(sizeof(long) * (size_t)B);
  float *X = bm_xmalloc(bm_mul_size((size_t)B * ds.D, sizeof(float))), *Y = bm_xmalloc(sizeof(float) * (size_t)B * C);
  bm_recslot slot;
  bm_recslot_init(&slot);
  /* the read alone: the file is in the page cache (just written and indexed) */
  double best = 1e30, sum = 0, cpu = 0;
  for (int r = 0; r <= reps; r++) {
    bm_permutation(idx, B, (uint64_t)r);
    double t0 = bm_now(), c0 = thread_cpu();
    bm_trainset_batch(&ds, BM_FEAT_IMG, idx, B, &slot, (uint64_t)r, X, Y);
    double t = bm_now() - t0, c = thread_cpu() - c0;
    if (r == 0) continue; /* warm-up */
    sum += t, cpu += c;
    if (t < best) best = t;
  }
  /* cpu_ms: this thread's CPU time, which a loaded machine disturbs less than the wall time */
  printf("{\"what\": \"read+crop+normalize a batch\", \"batch\": %d, \"stored\": %d, \"side\": %d, \"mean_ms\": %.2f, "
         "\"best_ms\": %.2f, \"cpu_ms\": %.2f, \"images_per_s\": %.0f}\n", B, size, S, 1e3 * sum / reps, 1e3 * best,
         1e3 * cpu / reps, B / (sum / reps));
  /* steps of STEP_MS: serial reads vs the worker's */
  for (int pf = 0; pf < 2; pf++) {
    bm_prefetch *p = bm_prefetch_new(&ds, BM_FEAT_IMG, B, threads, NULL, NULL);
    long *nidx = bm_xmalloc(sizeof(long) * (size_t)B);
    bm_permutation(idx, B, 100);
    double t0 = 0;
    for (int r = 0; r <= reps; r++) { /* step 0 (nothing prefetched yet) is not timed */
      if (r == 1) t0 = bm_now();
      float *bx, *by;
      if (pf) {
        bm_prefetch_get(p, idx, B, (uint64_t)r, &bx, &by);
        bm_permutation(nidx, B, (uint64_t)(101 + r));
        if (r < reps) bm_prefetch_start(p, nidx, B, (uint64_t)(r + 1));
        memcpy(idx, nidx, sizeof(long) * (size_t)B);
      } else {
        bm_trainset_batch(&ds, BM_FEAT_IMG, idx, B, &slot, (uint64_t)r, X, Y);
        bm_permutation(idx, B, (uint64_t)(101 + r));
      }
      spin(step);
    }
    double t = (bm_now() - t0) / reps;
    printf("{\"what\": \"steps of %.0f ms with %s reads\", \"batch\": %d, \"stored\": %d, \"readers\": %d, "
           "\"step_ms\": %.2f, \"samples_per_s\": %.0f}\n", step * 1e3, pf ? "prefetched" : "serial", B, size,
           pf ? threads : 1, 1e3 * t, B / t);
    free(nidx);
    bm_prefetch_free(p);
  }
  bm_recslot_free(&slot);
  bm_trainset_free(&ds);
  free(idx), free(X), free(Y);
  remove(path);
  return 0;
}
