/* tower_vit.cu - the image tower on the GPU (see bmcuda_towers.h; the CPU
 * peer is bm_vit_forward in vit.c, step for step). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bmcuda_fwd.h"
#include "bmcuda_towers.h"
#include "cuda_int.cuh"

typedef struct {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b, *qkv_b, *proj_b, *fc1_b, *fc2_b; /* fp32 */
  const void *qkv_w, *proj_w, *fc1_w, *fc2_w;                                  /* T */
} gblock;

struct bm_cuda_vit {
  bm_cuda *c;
  const bm_vit *m;
  bm_prec t;
  int cap, batched_attention;
  bm_dev_list mem;
  gblock *blocks;
  const float *patch_b, *cls, *pos, *norm_w, *norm_b;
  const void *patch_w, *head_w;
  /* activations */
  float *x, *patches, *pooled, *emb, *tok, *scores; /* scores only when batched */
  void *probs;
  void *cols, *ln, *qkv, *att, *h, *pooled_t;
  int *start, *len, *rows;
  float *img[2];
  bm_cuda_event *copied[2], *done[2];
};

static const float *up32(bm_cuda_vit *g, const float *w, size_t n, const char *what) {
  return (const float *)bm_dev_keep(&g->mem, bm_cuda_upload(g->c, w, n, BM_PREC_FP32, what));
}
static const void *upT(bm_cuda_vit *g, const float *w, size_t n, const char *what) {
  return bm_dev_keep(&g->mem, bm_cuda_upload(g->c, w, n, g->t, what));
}
static void *alloc(bm_cuda_vit *g, size_t bytes, const char *what) {
  return bm_dev_keep(&g->mem, bm_cuda_malloc(bytes, what));
}

extern "C" bm_cuda_vit *bm_cuda_vit_new(bm_cuda *c, const bm_vit *m, bm_prec t, int max_batch) {
  bm_cuda_vit *g = (bm_cuda_vit *)calloc(1, sizeof *g);
  if (!g) bm_die("bm_cuda_vit_new: out of memory");
  g->c = c, g->m = m, g->t = t, g->cap = max_batch;
  const char *attn = getenv("BM_CUDA_ATTN");
  size_t W = (size_t)m->width, M = (size_t)m->mlp, P = (size_t)m->patch, T = (size_t)m->ntok;
  size_t GG = (size_t)m->grid * m->grid, S = (size_t)m->image_size, B = (size_t)max_batch;
  size_t es = bm_prec_size(t);
  g->blocks = (gblock *)calloc((size_t)m->depth, sizeof *g->blocks);
  if (!g->blocks) bm_die("bm_cuda_vit_new: out of memory");
  for (int l = 0; l < m->depth; l++) {
    const bm_vit_block *b = &m->blocks[l];
    gblock *d = &g->blocks[l];
    d->ln1_w = up32(g, b->ln1_w, W, "vit ln1.weight");
    d->ln1_b = up32(g, b->ln1_b, W, "vit ln1.bias");
    d->ln2_w = up32(g, b->ln2_w, W, "vit ln2.weight");
    d->ln2_b = up32(g, b->ln2_b, W, "vit ln2.bias");
    d->qkv_b = up32(g, b->qkv_b, 3 * W, "vit qkv.bias");
    d->proj_b = up32(g, b->proj_b, W, "vit proj.bias");
    d->fc1_b = up32(g, b->fc1_b, M, "vit fc1.bias");
    d->fc2_b = up32(g, b->fc2_b, W, "vit fc2.bias");
    d->qkv_w = upT(g, b->qkv_w, 3 * W * W, "vit qkv.weight");
    d->proj_w = upT(g, b->proj_w, W * W, "vit proj.weight");
    d->fc1_w = upT(g, b->fc1_w, M * W, "vit fc1.weight");
    d->fc2_w = upT(g, b->fc2_w, W * M, "vit fc2.weight");
  }
  g->patch_w = upT(g, m->patch_w, W * 3 * P * P, "vit patch_embed.weight");
  g->patch_b = up32(g, m->patch_b, W, "vit patch_embed.bias");
  g->cls = up32(g, m->cls, W, "vit cls_token");
  g->pos = up32(g, m->pos, T * W, "vit pos_embed");
  g->norm_w = up32(g, m->norm_w, W, "vit norm.weight");
  g->norm_b = up32(g, m->norm_b, W, "vit norm.bias");
  g->head_w = upT(g, m->head_w, (size_t)m->embed_dim * W, "vit head");

  size_t BT = B * T;
  g->x = (float *)alloc(g, BT * W * 4, "vit residual stream");
  g->patches = (float *)alloc(g, B * GG * W * 4, "vit patches");
  g->pooled = (float *)alloc(g, B * W * 4, "vit pooled");
  g->emb = (float *)alloc(g, B * (size_t)m->embed_dim * 4, "vit embeddings");
  g->tok = (float *)alloc(g, BT * W * 4, "vit token outputs");
  g->cols = alloc(g, B * GG * 3 * P * P * es, "vit im2col");
  g->ln = alloc(g, BT * W * es, "vit layernorm out");
  g->qkv = alloc(g, BT * 3 * W * es, "vit qkv");
  g->att = alloc(g, BT * W * es, "vit attention out");
  g->h = alloc(g, BT * M * es, "vit mlp hidden");
  g->pooled_t = alloc(g, B * W * es, "vit pooled");
  for (int s = 0; s < 2; s++) {
    g->img[s] = (float *)alloc(g, B * 3 * S * S * 4, "vit input images");
    g->copied[s] = bm_cuda_event_new();
    g->done[s] = bm_cuda_event_new();
  }
  /* every image is one sequence of T tokens; its class token is row b*T */
  int *idx = (int *)malloc(sizeof(int) * 3 * B);
  if (!idx) bm_die("bm_cuda_vit_new: out of memory");
  for (size_t b = 0; b < B; b++) idx[b] = (int)(b * T), idx[B + b] = (int)T, idx[2 * B + b] = (int)(b * T);
  g->start = (int *)alloc(g, sizeof(int) * 3 * B, "vit sequence starts");
  g->len = g->start + B, g->rows = g->start + 2 * B;
  bm_cuda_h2d(c, g->start, idx, sizeof(int) * 3 * B, BM_STREAM_COMPUTE);
  bm_cuda_sync(c, BM_STREAM_COMPUTE);
  free(idx);
  if (attn && !strcmp(attn, "batched")) bm_cuda_vit_set_attention(g, 1);
  return g;
}

extern "C" void bm_cuda_vit_set_attention(bm_cuda_vit *g, int batched) {
  g->batched_attention = batched;
  if (batched && !g->scores) {
    size_t n = (size_t)g->cap * g->m->ntok * g->m->ntok;
    g->scores = (float *)alloc(g, n * 4, "vit attention scores");
    g->probs = alloc(g, n * bm_prec_size(g->t), "vit attention probabilities");
  }
}

/* att = softmax(q k^T / sqrt(hd)) v per image and head, as GEMMs batched
 * over the B images (every sequence has T tokens). */
static void attention_batched(bm_cuda_vit *g, int B) {
  const bm_vit *m = g->m;
  int T = m->ntok, C = m->width, hd = C / m->heads;
  size_t es = bm_prec_size(g->t);
  const char *qkv = (const char *)g->qkv;
  for (int h = 0; h < m->heads; h++) {
    bm_cuda_gemm_batched(g->c, g->scores, BM_PREC_FP32, qkv + (size_t)h * hd * es,
                         qkv + ((size_t)C + h * hd) * es, g->t, T, T, hd, 1, 3 * C, 3 * C, T,
                         (long long)T * 3 * C, (long long)T * 3 * C, (long long)T * T, B,
                         1.0f / sqrtf((float)hd), 0.0f);
    bm_cuda_softmax_to(g->c, g->probs, g->t, g->scores, B * T, T);
    bm_cuda_gemm_batched(g->c, (char *)g->att + (size_t)h * hd * es, g->t, g->probs,
                         qkv + (2 * (size_t)C + h * hd) * es, g->t, T, hd, T, 0, T, 3 * C, C,
                         (long long)T * T, (long long)T * 3 * C, (long long)T * C, B, 1.0f, 0.0f);
  }
}

extern "C" void bm_cuda_vit_free(bm_cuda_vit *g) {
  if (!g) return;
  bm_cuda_sync(g->c, BM_STREAM_COMPUTE);
  bm_cuda_sync(g->c, BM_STREAM_COPY);
  for (int s = 0; s < 2; s++) bm_cuda_event_free(g->copied[s]), bm_cuda_event_free(g->done[s]);
  bm_dev_free_all(&g->mem);
  free(g->blocks);
  free(g);
}

static void block_forward(bm_cuda_vit *g, const gblock *b, int B) {
  const bm_vit *m = g->m;
  bm_cuda *c = g->c;
  bm_prec t = g->t;
  int N = B * m->ntok, W = m->width, M = m->mlp;
  bm_cuda_layernorm(c, NULL, g->ln, t, g->x, b->ln1_w, b->ln1_b, N, W, m->eps);
  bm_cuda_gemm(c, g->qkv, t, g->ln, b->qkv_w, t, b->qkv_b, N, W, 3 * W, 1.0f, 0.0f);
  if (g->batched_attention) attention_batched(g, B);
  else bm_cuda_attention(c, g->att, g->qkv, t, g->start, g->len, B, m->ntok, W, m->heads);
  bm_cuda_gemm(c, g->x, BM_PREC_FP32, g->att, b->proj_w, t, b->proj_b, N, W, W, 1.0f, 1.0f);
  bm_cuda_layernorm(c, NULL, g->ln, t, g->x, b->ln2_w, b->ln2_b, N, W, m->eps);
  bm_cuda_gemm(c, g->h, t, g->ln, b->fc1_w, t, NULL, N, W, M, 1.0f, 0.0f);
  bm_cuda_bias_gelu(c, g->h, t, b->fc1_b, N, M);
  bm_cuda_gemm(c, g->x, BM_PREC_FP32, g->h, b->fc2_w, t, b->fc2_b, N, M, W, 1.0f, 1.0f);
}

extern "C" void bm_cuda_vit_submit(bm_cuda_vit *g, int slot, const float *img, int B, float *emb,
                                   float *tokens) {
  const bm_vit *m = g->m;
  bm_cuda *c = g->c;
  if (B > g->cap) bm_die("bm_cuda_vit_submit: batch of %d over the capacity %d", B, g->cap);
  if (B <= 0) return;
  int T = m->ntok, W = m->width, S = m->image_size, GG = m->grid * m->grid;
  bm_cuda_h2d(c, g->img[slot], img, sizeof(float) * 3 * (size_t)B * S * S, BM_STREAM_COPY);
  bm_cuda_event_record(c, g->copied[slot], BM_STREAM_COPY);
  bm_cuda_stream_wait(c, BM_STREAM_COMPUTE, g->copied[slot]);
  bm_cuda_im2col(c, g->cols, g->t, g->img[slot], B, S, m->patch);
  bm_cuda_gemm(c, g->patches, BM_PREC_FP32, g->cols, g->patch_w, g->t, g->patch_b, B * GG,
               3 * m->patch * m->patch, W, 1.0f, 0.0f);
  bm_cuda_vit_tokens(c, g->x, g->patches, g->cls, g->pos, B, T, W);
  for (int l = 0; l < m->depth; l++) block_forward(g, &g->blocks[l], B);
  if (tokens) {
    bm_cuda_layernorm(c, g->tok, NULL, BM_PREC_FP32, g->x, g->norm_w, g->norm_b, B * T, W,
                      m->eps);
    bm_cuda_d2h(c, tokens, g->tok, sizeof(float) * (size_t)B * T * W, BM_STREAM_COMPUTE);
  }
  bm_cuda_gather_rows(c, g->pooled, g->x, g->rows, B, W);
  bm_cuda_layernorm(c, NULL, g->pooled_t, g->t, g->pooled, g->norm_w, g->norm_b, B, W, m->eps);
  bm_cuda_gemm(c, g->emb, BM_PREC_FP32, g->pooled_t, g->head_w, g->t, NULL, B, W, m->embed_dim,
               1.0f, 0.0f);
  bm_cuda_l2_normalize(c, g->emb, B, m->embed_dim);
  bm_cuda_d2h(c, emb, g->emb, sizeof(float) * (size_t)B * m->embed_dim, BM_STREAM_COMPUTE);
  bm_cuda_event_record(c, g->done[slot], BM_STREAM_COMPUTE);
}

extern "C" void bm_cuda_vit_wait(bm_cuda_vit *g, int slot) { bm_cuda_event_sync(g->done[slot]); }

extern "C" void bm_cuda_vit_forward(bm_cuda_vit *g, const float *img, int B, float *emb,
                                    float *tokens) {
  bm_cuda_vit_submit(g, 0, img, B, emb, tokens);
  bm_cuda_vit_wait(g, 0);
}
