/* bench_embed.c - GPU throughput of the full-size towers (random weights of
 * BiomedCLIP's shapes: ViT-B/16 at 224 and PubMedBERT-base) and the
 * measured bf16 GEMM peak the MFU is taken against.
 *
 *   bench_embed [--device cuda:N] [--precision bf16] [--batch 256] [--reps 20]
 *               [--text-len 128]
 * Prints "key value" lines (tests/gpu/bench_embed.sh reads them). Timing:
 * after 3 warm-up batches, reps batches alternate the two slots as
 * bm-embed-img does (copies of the next batch overlap the current one);
 * wall time from the first submit to the last wait, synchronized. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bmcuda.h"
#include "cuda/bmcuda_towers.h"
#include "util.h"

static uint64_t rng = 88172645463325252ull;
static float urand(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (float)(rng >> 40) / 16777216.0f * 2.0f - 1.0f;
}
static float *arena;
static size_t arena_n, arena_used;
static const float *param(size_t n, float scale, float offset) {
  if (arena_used + n > arena_n) bm_die("bench arena too small");
  float *p = arena + arena_used;
  arena_used += n;
  for (size_t i = 0; i < n; i++) p[i] = offset + scale * urand();
  return p;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
  bm_set_progname(argv[0]);
  const char *dev = "cuda";
  bm_prec t = BM_PREC_BF16;
  long B = 256, reps = 20, tlen = 128;
  static const struct option longs[] = {{"device", 1, 0, 'd'}, {"precision", 1, 0, 'p'},
                                        {"batch", 1, 0, 'b'},  {"reps", 1, 0, 'r'},
                                        {"text-len", 1, 0, 'L'}, {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "d:p:b:r:L:", longs, NULL)) != -1) {
    if (c == 'd') dev = optarg;
    else if (c == 'p') { if (bm_prec_parse(optarg, &t)) bm_usage_die("--precision %s", optarg); }
    else if (c == 'b') { if (bm_parse_long(optarg, 1, 4096, &B)) bm_usage_die("--batch %s", optarg); }
    else if (c == 'r') { if (bm_parse_long(optarg, 1, 10000, &reps)) bm_usage_die("--reps %s", optarg); }
    else if (c == 'L') { if (bm_parse_long(optarg, 1, 512, &tlen)) bm_usage_die("--text-len %s", optarg); }
    else bm_usage_die("unknown option");
  }
  char err[512];
  bm_cuda *C = bm_cuda_open(dev, err, sizeof err);
  if (!C) bm_die("%s", err);
  printf("device %s\nprecision %s\nbatch %ld\n", bm_cuda_describe(C), bm_prec_name(t), B);
  fflush(stdout);

  /* peak: a large bf16 GEMM (8192^3, bf16 out, fp32 accumulation) */
  {
    int n = 8192;
    size_t nn = (size_t)n * n;
    /* random operands: constants or zeros run faster than real data */
    float *h = bm_xmalloc(nn * sizeof(float));
    for (size_t i = 0; i < nn; i++) h[i] = urand();
    void *A = bm_cuda_upload(C, h, nn, BM_PREC_BF16, "peak A");
    for (size_t i = 0; i < nn; i++) h[i] = urand();
    void *Bm = bm_cuda_upload(C, h, nn, BM_PREC_BF16, "peak B"), *Y = bm_cuda_malloc(nn * 2, "peak C");
    free(h);
    bm_cuda_event *e0 = bm_cuda_event_new(), *e1 = bm_cuda_event_new();
    double ms[20];
    for (int r = 0; r < 23; r++) {
      bm_cuda_event_record(C, e0, BM_STREAM_COMPUTE);
      bm_cuda_gemm(C, Y, BM_PREC_BF16, A, Bm, BM_PREC_BF16, NULL, n, n, n, 1.0f, 0.0f);
      bm_cuda_event_record(C, e1, BM_STREAM_COMPUTE);
      bm_cuda_event_sync(e1);
      if (r >= 3) ms[r - 3] = bm_cuda_event_ms(e0, e1);
    }
    double med = median(ms, 20);
    printf("peak_bf16_tflops %.1f\n", 2.0 * n * (double)n * n / (med * 1e-3) / 1e12);
    bm_cuda_event_free(e0), bm_cuda_event_free(e1);
    bm_cuda_free(A), bm_cuda_free(Bm), bm_cuda_free(Y);
  }

  /* ViT-B/16 224 + the 768 -> 512 head */
  int W = 768, D = 12, H = 12, M = 3072, P = 16, S = 224, G = S / P, T = 1 + G * G, E = 512;
  arena_n = (size_t)200 * 1000 * 1000;
  arena = bm_xmalloc(arena_n * sizeof(float));
  bm_vit v = {.image_size = S, .patch = P, .grid = G, .ntok = T, .width = W, .depth = D,
              .heads = H, .mlp = M, .embed_dim = E, .eps = 1e-6f};
  bm_vit_block *vb = bm_xcalloc((size_t)D, sizeof *vb);
  for (int l = 0; l < D; l++) {
    vb[l].ln1_w = param(W, 0.1f, 1), vb[l].ln1_b = param(W, 0.02f, 0);
    vb[l].qkv_w = param((size_t)3 * W * W, 0.02f, 0), vb[l].qkv_b = param(3 * W, 0.02f, 0);
    vb[l].proj_w = param((size_t)W * W, 0.02f, 0), vb[l].proj_b = param(W, 0.02f, 0);
    vb[l].ln2_w = param(W, 0.1f, 1), vb[l].ln2_b = param(W, 0.02f, 0);
    vb[l].fc1_w = param((size_t)M * W, 0.02f, 0), vb[l].fc1_b = param(M, 0.02f, 0);
    vb[l].fc2_w = param((size_t)W * M, 0.02f, 0), vb[l].fc2_b = param(W, 0.02f, 0);
  }
  v.blocks = vb;
  v.patch_w = param((size_t)W * 3 * P * P, 0.02f, 0), v.patch_b = param(W, 0.02f, 0);
  v.cls = param(W, 0.02f, 0), v.pos = param((size_t)T * W, 0.02f, 0);
  v.norm_w = param(W, 0.1f, 1), v.norm_b = param(W, 0.02f, 0);
  v.head_w = param((size_t)E * W, 0.02f, 0);
  bm_cuda_vit *gv = bm_cuda_vit_new(C, &v, t, (int)B);
  const char *attn_names[2] = {"fused", "batched"};
  size_t npix = (size_t)B * 3 * S * S;
  float *img[2], *emb[2];
  for (int s = 0; s < 2; s++) {
    img[s] = bm_cuda_host_alloc(npix * sizeof(float), "images");
    emb[s] = bm_cuda_host_alloc((size_t)B * E * sizeof(float), "embeddings");
    for (size_t i = 0; i < npix; i++) img[s][i] = urand();
  }
  /* both attention paths; the fused kernel's numbers are the main ones */
  for (int mode = 1; mode >= 0; mode--) {
    bm_cuda_vit_set_attention(gv, mode);
    const char *sfx = mode ? "_batched_attention" : "";
    for (int r = 0; r < 3; r++) bm_cuda_vit_forward(gv, img[0], (int)B, emb[0], NULL);
    double t0 = bm_now();
    for (int r = 0; r < reps; r++) {
      bm_cuda_vit_submit(gv, r & 1, img[r & 1], (int)B, emb[r & 1], NULL);
      if (r) bm_cuda_vit_wait(gv, (r - 1) & 1);
    }
    bm_cuda_vit_wait(gv, (int)((reps - 1) & 1));
    double secs = bm_now() - t0;
    printf("vit_images_per_s%s %.1f\n", sfx, (double)B * reps / secs);
    /* one batch alone, no overlap, for the latency */
    double one[5];
    for (int r = 0; r < 5; r++) {
      double a = bm_now();
      bm_cuda_vit_forward(gv, img[0], (int)B, emb[0], NULL);
      one[r] = bm_now() - a;
    }
    printf("vit_batch_ms%s %.2f\n", sfx, 1e3 * median(one, 5));
    int finite = 1;
    for (size_t i = 0; i < (size_t)B * E; i++) finite &= emb[0][i] == emb[0][i];
    printf("vit_output_finite%s %d (%s)\n", sfx, finite, attn_names[mode]);
    fflush(stdout);
  }
  bm_cuda_vit_free(gv);

  /* PubMedBERT-base + the 768 -> 640 -> 512 MLP projection */
  arena_used = 0;
  int V = 30522, Pm = 512, Hp = 640;
  bm_bert b = {.vocab = V, .maxpos = Pm, .context = 256, .width = W, .depth = D, .heads = H,
               .mlp = M, .proj_hidden = Hp, .embed_dim = E, .eps = 1e-12f};
  bm_bert_layer *bl = bm_xcalloc((size_t)D, sizeof *bl);
  for (int l = 0; l < D; l++) {
    bl[l].qkv_w = param((size_t)3 * W * W, 0.02f, 0), bl[l].qkv_b = param(3 * W, 0.02f, 0);
    bl[l].o_w = param((size_t)W * W, 0.02f, 0), bl[l].o_b = param(W, 0.02f, 0);
    bl[l].ln1_w = param(W, 0.1f, 1), bl[l].ln1_b = param(W, 0.02f, 0);
    bl[l].fc1_w = param((size_t)M * W, 0.02f, 0), bl[l].fc1_b = param(M, 0.02f, 0);
    bl[l].fc2_w = param((size_t)W * M, 0.02f, 0), bl[l].fc2_b = param(W, 0.02f, 0);
    bl[l].ln2_w = param(W, 0.1f, 1), bl[l].ln2_b = param(W, 0.02f, 0);
  }
  b.layers = bl;
  b.word = param((size_t)V * W, 0.02f, 0), b.pos = param((size_t)Pm * W, 0.02f, 0);
  b.type = param((size_t)2 * W, 0.02f, 0);
  b.emb_ln_w = param(W, 0.1f, 1), b.emb_ln_b = param(W, 0.02f, 0);
  b.proj0 = param((size_t)Hp * W, 0.02f, 0), b.proj2 = param((size_t)E * Hp, 0.02f, 0);
  int N = (int)(B * tlen);
  bm_cuda_bert *gb = bm_cuda_bert_new(C, &b, t, (int)B, N);
  int32_t *ids = bm_xmalloc(sizeof(int32_t) * (size_t)N);
  int *start = bm_xmalloc(sizeof(int) * (size_t)B), *len = bm_xmalloc(sizeof(int) * (size_t)B);
  for (int i = 0; i < N; i++) ids[i] = (int32_t)((urand() + 1.0f) * 0.5f * (V - 1));
  for (int s = 0; s < B; s++) start[s] = s * (int)tlen, len[s] = (int)tlen;
  for (int r = 0; r < 3; r++) bm_cuda_bert_forward(gb, ids, start, len, (int)B, emb[0], NULL);
  double t0 = bm_now();
  for (int r = 0; r < reps; r++) {
    bm_cuda_bert_submit(gb, r & 1, ids, start, len, (int)B, emb[r & 1], NULL);
    if (r) bm_cuda_bert_wait(gb, (r - 1) & 1);
  }
  bm_cuda_bert_wait(gb, (int)((reps - 1) & 1));
  double secs = bm_now() - t0;
  printf("text_len %ld\ntext_texts_per_s %.1f\n", tlen, (double)B * reps / secs);
  bm_cuda_bert_free(gb);
  bm_cuda_close(C);
  free(arena), free(vb), free(bl), free(ids), free(start), free(len);
  for (int s = 0; s < 2; s++) bm_cuda_host_free(img[s]), bm_cuda_host_free(emb[s]);
  return 0;
}
