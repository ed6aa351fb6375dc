/* test_recfile.c - random access by record number, and the seeded shuffle. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "recfile.h"
#include "record.h"
#include "util.h"

int main(void) {
  char path[] = "/tmp/bm-test-recfile-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) bm_die("mkstemp");
  close(fd);
  bm_rng rng;
  bm_rng_seed(&rng, (uint64_t)time(NULL));
  enum { N = 200 };
  int sizes[N];
  bm_writer *w = bm_writer_open(path);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "multiclass");
  bm_write_header(w, NULL, &o);
  for (int i = 0; i < N; i++) {
    bm_out_reset(&o);
    sizes[i] = (int)(bm_rng_next(&rng) % 5000);
    unsigned char *img = bm_xmalloc((size_t)sizes[i] + 1);
    for (int j = 0; j < sizes[i]; j++) img[j] = (unsigned char)(i * 7 + j);
    char id[16];
    snprintf(id, sizeof id, "r%d", i);
    bm_out_str(&o, "id", id);
    bm_out_tensor(&o, "image", BM_U8, 1, (int64_t[]){sizes[i]}, img);
    bm_write_record(w, NULL, &o);
    free(img);
  }
  bm_writer_close(w);
  bm_out_free(&o);

  bm_recfile *f = bm_recfile_open(path);
  CHECK(bm_recfile_count(f) == N, "index counts %ld sample records", bm_recfile_count(f));
  CHECK(bm_obj_is_str(bm_map_get(bm_recfile_header(f), "task"), "multiclass"), "header kept");
  long perm[N];
  bm_permutation(perm, N, 42);
  int seen[N] = {0}, good = 1;
  for (int i = 0; i < N; i++) seen[perm[i]]++;
  for (int i = 0; i < N; i++) good &= seen[i] == 1;
  CHECK(good, "bm_permutation is a permutation");
  long again[N];
  bm_permutation(again, N, 42);
  CHECK(memcmp(perm, again, sizeof perm) == 0, "the same seed gives the same order");
  bm_permutation(again, N, 43);
  CHECK(memcmp(perm, again, sizeof perm) != 0, "another seed gives another order");
  bm_recslot slot;
  bm_recslot_init(&slot);
  good = 1;
  for (int k = 0; k < N; k++) {
    long i = perm[k];
    const msgpack_object *rec = bm_recfile_read(f, i, &slot);
    char id[16], want[16];
    snprintf(want, sizeof want, "r%ld", i);
    bm_tensor t;
    char err[128];
    good &= bm_obj_str(bm_map_get(rec, "id"), id, sizeof id) == 0 && strcmp(id, want) == 0;
    good &= bm_rec_tensor(rec, "image", &t, err, sizeof err) == 1 && t.numel == sizes[i];
    for (int j = 0; good && j < sizes[i]; j++)
      good &= ((const unsigned char *)t.data)[j] == (unsigned char)(i * 7 + j);
  }
  CHECK(good, "every record read back by number in shuffled order, bytes intact");
  bm_recslot_free(&slot);
  bm_recfile_close(f);
  unlink(path);
  CHECK_DONE();
}
