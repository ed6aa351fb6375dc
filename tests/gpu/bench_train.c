/* bench_train.c - samples/s of the GPU fine-tuning step (bm_cuda_ft_grad +
 * bm_cuda_ft_step) of a full-size ViT-B/16 224 + linear head, random
 * weights built here (no checkpoint needed: the speed does not depend on the
 * values), and the measured bf16 GEMM peak for the MFU.
 *   bench_train [--batch B] [--steps N] [--prec bf16|fp16|fp32] [--classes C]
 *               [--feed SIZE [--readers R]]
 * --feed: instead of the peak, the steps fed as bm-train feeds them, from B
 * generated u8 records stored at SIZE (224; larger: random-resized crops)
 * in $TMPDIR (page cache): the read alone, steps with the batch read
 * before each (serial), and steps with the next batch read by R threads
 * during each (train_prefetch.h, page-locked buffers).
 * Prints "key value" lines; tests/gpu/bench_train.sh puts them in a table.
 * MFU = 3 x 35.1 GFLOP (ViT-B/16 224 forward, 17.56 GMAC) x samples/s / peak. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cuda/bmcuda_train.h"
#include "finetune.h"
#include "record.h"
#include "train_prefetch.h"
#include "util.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *filled(bm_rng *r, size_t n, float scale, float base) {
  float *x = bm_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = base + (float)(bm_rng_uniform(r) * 2 - 1) * scale;
  return x;
}

/* ViT-B/16 224 with random weights (timm's init scale: 0.02) */
static void vit_b16(bm_vit *v, bm_rng *r) {
  memset(v, 0, sizeof *v);
  v->image_size = 224, v->patch = 16, v->grid = 14, v->ntok = 197;
  v->width = 768, v->depth = 12, v->heads = 12, v->mlp = 3072, v->embed_dim = 512, v->eps = 1e-6f;
  size_t W = 768, M = 3072;
  v->patch_w = filled(r, W * 768, 0.02f, 0), v->patch_b = filled(r, W, 0.02f, 0);
  v->cls = filled(r, W, 0.02f, 0), v->pos = filled(r, 197 * W, 0.02f, 0);
  v->blocks = bm_xcalloc(12, sizeof(bm_vit_block));
  for (int l = 0; l < 12; l++) {
    bm_vit_block *b = &v->blocks[l];
    b->ln1_w = filled(r, W, 0.02f, 1), b->ln1_b = filled(r, W, 0.02f, 0);
    b->qkv_w = filled(r, 3 * W * W, 0.02f, 0), b->qkv_b = filled(r, 3 * W, 0.02f, 0);
    b->proj_w = filled(r, W * W, 0.02f, 0), b->proj_b = filled(r, W, 0.02f, 0);
    b->ln2_w = filled(r, W, 0.02f, 1), b->ln2_b = filled(r, W, 0.02f, 0);
    b->fc1_w = filled(r, M * W, 0.02f, 0), b->fc1_b = filled(r, M, 0.02f, 0);
    b->fc2_w = filled(r, W * M, 0.02f, 0), b->fc2_b = filled(r, W, 0.02f, 0);
  }
  v->norm_w = filled(r, W, 0.02f, 1), v->norm_b = filled(r, W, 0.02f, 0);
  v->head_w = filled(r, 512 * W, 0.02f, 0);
}

/* n random u8 images [3,size,size] with one-hot targets of C classes */
static void feed_records(const char *path, int n, int size, int C) {
  bm_writer *w = bm_writer_open(path);
  bm_out o;
  bm_out_init(&o);
  bm_out_str(&o, "task", "multiclass");
  msgpack_packer *pk = bm_out_key(&o, "classes");
  msgpack_pack_array(pk, (size_t)C);
  for (int k = 0; k < C; k++) {
    char name[16];
    snprintf(name, sizeof name, "c%d", k);
    bm_pack_str(pk, name);
  }
  bm_write_header(w, NULL, &o);
  bm_rng r;
  bm_rng_seed(&r, 3);
  size_t np = (size_t)3 * size * size;
  uint8_t *img = bm_xmalloc(np);
  float *y = bm_xcalloc((size_t)C, sizeof(float));
  for (int i = 0; i < n; i++) {
    bm_out_reset(&o);
    for (size_t j = 0; j < np; j++) img[j] = (uint8_t)(bm_rng_next(&r) >> 56);
    memset(y, 0, sizeof(float) * (size_t)C);
    y[i % C] = 1;
    bm_out_tensor(&o, "image", BM_U8, 3, (int64_t[]){3, size, size}, img);
    bm_out_tensor(&o, "target", BM_F32, 1, (int64_t[]){C}, y);
    if (bm_write_record(w, NULL, &o)) bm_die("bench_train: %s: cannot write", path);
  }
  if (bm_writer_close(w)) bm_die("bench_train: %s: cannot write", path);
  bm_out_free(&o);
  free(img), free(y);
}

/* --feed: bm-train's feeding of the step, serial and prefetched */
static void feed(bm_cuda *cu, bm_cuda_ft *g, const bm_vit *v, int B, int C, int steps, int size, int readers) {
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char path[4096];
  snprintf(path, sizeof path, "%s/bench-feed-%d-%d.bmr", dir, (int)getpid(), size);
  feed_records(path, B, size, C);
  bm_model m;
  memset(&m, 0, sizeof m);
  m.vit = *v;
  for (int c = 0; c < 3; c++) m.mean[c] = 0.45f, m.std[c] = 0.27f;
  bm_trainset ds;
  bm_trainset_load(path, BM_NEED_IMAGE | BM_NEED_TARGET, BM_FEAT_IMG, NULL, &m, 1, 0, "--mode finetune", &ds);
  remove(path); /* the index keeps it open */
  long *idx = bm_xmalloc(sizeof(long) * (size_t)B * (size_t)(steps + 1));
  for (int s = 0; s <= steps; s++) bm_permutation(idx + (size_t)s * B, B, (uint64_t)s);
  float *X = bm_cuda_host_alloc(sizeof(float) * (size_t)B * ds.D, "images");
  float *Y = bm_cuda_host_alloc(sizeof(float) * (size_t)B * C, "targets");
  bm_recslot slot;
  bm_recslot_init(&slot);
  double t0 = now();
  for (int s = 0; s < steps; s++) bm_trainset_batch(&ds, BM_FEAT_IMG, idx + (size_t)s * B, B, &slot, (uint64_t)s, X, Y);
  double rd = (now() - t0) / steps;
  printf("feed_stored %d\nread_ms_one_thread %.1f\n", size, 1e3 * rd);
  /* serial: the batch read, then its step (bm-train with BM_TRAIN_PREFETCH=0) */
  bm_cuda_ft_grad_acc(g, X, Y, B, 0, 1.0, 1), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  t0 = now();
  for (int s = 0; s < steps; s++) {
    bm_trainset_batch(&ds, BM_FEAT_IMG, idx + (size_t)s * B, B, &slot, (uint64_t)s, X, Y);
    bm_cuda_ft_grad_acc(g, X, Y, B, (uint64_t)s, 1.0, 1), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  }
  double ser = (now() - t0) / steps;
  printf("serial_ms_per_step %.1f\nserial_samples_per_s %.1f\n", 1e3 * ser, B / ser);
  /* prefetched, as bm-train --device cuda: R readers into page-locked buffers */
  bm_prefetch *p = bm_prefetch_new(&ds, BM_FEAT_IMG, B, readers, bm_cuda_host_alloc, bm_cuda_host_free);
  float *bx, *by;
  t0 = now();
  bm_prefetch_get(p, idx, B, 0, &bx, &by);
  double rr = now() - t0;
  printf("readers %d\nread_ms_readers %.1f\n", readers, 1e3 * rr);
  bm_prefetch_start(p, idx + B, B, 1);
  bm_cuda_ft_grad_acc(g, bx, by, B, 0, 1.0, 1), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  t0 = now();
  for (int s = 1; s <= steps; s++) {
    bm_prefetch_get(p, idx + (size_t)s * B, B, (uint64_t)s, &bx, &by);
    if (s < steps) bm_prefetch_start(p, idx + (size_t)(s + 1) * B, B, (uint64_t)(s + 1));
    bm_cuda_ft_grad_acc(g, bx, by, B, (uint64_t)s, 1.0, 1), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  }
  double pre = (now() - t0) / steps;
  printf("prefetch_ms_per_step %.1f\nprefetch_samples_per_s %.1f\n", 1e3 * pre, B / pre);
  bm_prefetch_free(p);
  bm_recslot_free(&slot);
  bm_cuda_host_free(X), bm_cuda_host_free(Y);
  free(idx);
  bm_trainset_free(&ds);
  (void)cu;
}

int main(int argc, char **argv) {
  int B = 128, steps = 20, C = 14, prec = BM_PREC_BF16, feed_size = 0, readers = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--classes")) C = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--feed")) feed_size = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--readers")) readers = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--prec")) {
      bm_prec p;
      if (bm_prec_parse(argv[i + 1], &p)) bm_usage_die("bench_train: bad --prec %s", argv[i + 1]);
      prec = p;
    } else bm_usage_die("usage: bench_train [--batch B] [--steps N] [--prec P] [--classes C] [--feed SIZE [--readers R]]");
  }
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) bm_die("bench_train: %s", err);
  printf("device %s\n", bm_cuda_describe(cu));

  /* the bf16 peak: 8192^3 GEMMs, median of 20 timed with events */
  if (!feed_size) {
    bmct_ctx *c = bmct_ctx_new(cu);
    size_t n = (size_t)8192 * 8192;
    bm_rng r;
    bm_rng_seed(&r, 1);
    float *h = filled(&r, n, 1, 0);
    void *A = bm_cuda_malloc(n * 2, "A"), *Bm = bm_cuda_malloc(n * 2, "B"), *Cm = bm_cuda_malloc(n * 2, "C");
    bmct_upload_as(c, A, BM_PREC_BF16, h, n), bmct_upload_as(c, Bm, BM_PREC_BF16, h, n);
    free(h);
    bm_cuda_event *e0 = bm_cuda_event_new(), *e1 = bm_cuda_event_new();
    float ms[20];
    for (int k = 0; k < 25; k++) {
      bm_cuda_event_record(cu, e0, BM_STREAM_COMPUTE);
      bmct_gemm(c, BM_PREC_BF16, 0, 0, 1, 8192, 8192, 8192, 1.0f, A, 8192, 0, Bm, 8192, 0, 0.0f, Cm, 8192, 0, 1);
      bm_cuda_event_record(cu, e1, BM_STREAM_COMPUTE);
      bm_cuda_event_sync(e1);
      if (k >= 5) ms[k - 5] = bm_cuda_event_ms(e0, e1);
    }
    for (int i = 0; i < 20; i++) /* insertion sort for the median */
      for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) { float t = ms[j]; ms[j] = ms[j - 1]; ms[j - 1] = t; }
    double med = 0.5 * (ms[9] + ms[10]);
    printf("bf16_gemm_tflops %.1f\n", 2.0 * 8192 * 8192 * 8192 / (med * 1e-3) / 1e12);
    bm_cuda_free(A), bm_cuda_free(Bm), bm_cuda_free(Cm);
    bm_cuda_event_free(e0), bm_cuda_event_free(e1);
    bmct_ctx_free(c);
  }

  bm_rng r;
  bm_rng_seed(&r, 2);
  bm_vit v;
  vit_b16(&v, &r);
  int E = 512;
  float *W = filled(&r, (size_t)C * E, 0.05f, 0), *b = filled(&r, C, 0.0f, 0);
  bm_ft f;
  bm_ft_init(&f, &v, -1, 0, C, 0, NULL, W, b, 1e-5, 1e-3, 0.1);
  bm_cuda_ft *g = bm_cuda_ft_init(&f, cu, prec);
  size_t ni = (size_t)B * 3 * 224 * 224;
  float *img = filled(&r, ni, 2.0f, 0), *Y = bm_xcalloc((size_t)B * C, sizeof(float));
  for (int i = 0; i < B; i++) Y[(size_t)i * C + i % C] = 1;
  double loss = 0;
  if (feed_size) {
    if (feed_size < 224 || readers < 1) bm_usage_die("bench_train: --feed SIZE >= 224, --readers >= 1");
    printf("batch %d\nprec %s\n", B, bm_prec_name(prec));
    feed(cu, g, &v, B, C, steps, feed_size, readers);
    bm_cuda_ft_free(g);
    bm_ft_free(&f);
    bm_cuda_close(cu);
    free(img), free(Y);
    return 0;
  }
  for (int s = 0; s < 3; s++) loss = bm_cuda_ft_grad(g, img, Y, B, (uint64_t)s), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  double t0 = now();
  for (int s = 0; s < steps; s++) loss = bm_cuda_ft_grad(g, img, Y, B, (uint64_t)s), bm_cuda_ft_step(g, 1.0, 1.0, NULL);
  double dt = now() - t0;
  if (!isfinite(loss)) bm_die("bench_train: the loss is %f", loss);
  printf("prec %s\nbatch %d\nms_per_step %.1f\nsamples_per_s %.1f\nmodel_tflops %.1f\nloss %.4f\n",
         bm_prec_name(prec), B, 1e3 * dt / steps, B * steps / dt, 3 * 35.1e9 * B * steps / dt / 1e12, loss);
  bm_cuda_ft_free(g);
  bm_ft_free(&f);
  bm_cuda_close(cu);
  return 0;
}
