/* vit.c - image tower forward pass (see vit.h). */
#include "vit.h"

#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

void bm_vit_acts_free(bm_vit_acts *a) {
  free(a->x), free(a->ln), free(a->qkv), free(a->att), free(a->h);
  free(a->cols), free(a->patches), free(a->pooled), free(a->scratch);
  free(a->start), free(a->len);
  memset(a, 0, sizeof *a);
}

static float *grow(float *p, size_t n) {
  free(p);
  return bm_xmalloc(bm_mul_size(n, sizeof(float)));
}

static void acts_reserve(const bm_vit *m, bm_vit_acts *a, int B) {
  if (B <= a->cap) return;
  size_t BT = (size_t)B * m->ntok, BG = (size_t)B * m->grid * m->grid;
  size_t W = (size_t)m->width, P = (size_t)m->patch;
  a->x = grow(a->x, BT * W);
  a->ln = grow(a->ln, BT * W);
  a->qkv = grow(a->qkv, BT * 3 * W);
  a->att = grow(a->att, BT * W);
  a->h = grow(a->h, BT * (size_t)m->mlp);
  a->cols = grow(a->cols, BG * 3 * P * P);
  a->patches = grow(a->patches, BG * W);
  a->pooled = grow(a->pooled, (size_t)B * W);
  a->scratch = grow(a->scratch, bm_attention_scratch(m->ntok));
  free(a->start), free(a->len);
  a->start = bm_xmalloc(sizeof(int) * (size_t)B);
  a->len = bm_xmalloc(sizeof(int) * (size_t)B);
  a->cap = B;
}

/* x[B*T, W] += attention and MLP branches of one pre-norm block. */
static void block_forward(const bm_vit *m, const bm_vit_block *b, bm_vit_acts *a, int B) {
  int N = B * m->ntok, W = m->width, M = m->mlp;
  bm_layernorm(a->ln, a->x, b->ln1_w, b->ln1_b, N, W, m->eps);          /* ln[N,W] */
  bm_linear(a->qkv, a->ln, b->qkv_w, b->qkv_b, N, W, 3 * W);            /* qkv[N,3W] */
  bm_attention(a->att, a->qkv, a->start, a->len, B, W, m->heads, NULL, a->scratch); /* att[N,W] */
  bm_linear_residual(a->x, a->att, b->proj_w, b->proj_b, N, W, W);      /* x += proj(att) */
  bm_layernorm(a->ln, a->x, b->ln2_w, b->ln2_b, N, W, m->eps);          /* ln[N,W] */
  bm_linear_gelu(a->h, a->ln, b->fc1_w, b->fc1_b, N, W, M);             /* h[N,M] */
  bm_linear_residual(a->x, a->h, b->fc2_w, b->fc2_b, N, M, W);          /* x += fc2(h) */
}

void bm_vit_tokens(const bm_vit *m, const float *patches, int B, float *x) {
  int T = m->ntok, W = m->width, GG = m->grid * m->grid;
#pragma omp parallel for schedule(static)
  for (int i = 0; i < B; i++) {
    float *xi = x + (size_t)i * T * W;
    for (int c = 0; c < W; c++) xi[c] = m->cls[c] + m->pos[c];
    for (int p = 0; p < GG; p++) {
      const float *src = patches + ((size_t)i * GG + p) * W, *pos = m->pos + (size_t)(p + 1) * W;
      float *dst = xi + (size_t)(p + 1) * W;
      for (int c = 0; c < W; c++) dst[c] = src[c] + pos[c];
    }
  }
}

void bm_vit_forward(const bm_vit *m, bm_vit_acts *a, const float *img, int B, float *emb,
                    float *tokens) {
  acts_reserve(m, a, B);
  int T = m->ntok, W = m->width;
  for (int i = 0; i < B; i++) a->start[i] = i * T, a->len[i] = T;
  /* patches[B*GG, W] = conv(img) */
  bm_patch_embed(a->patches, img, m->patch_w, m->patch_b, a->cols, B, m->image_size, m->patch, W);
  bm_vit_tokens(m, a->patches, B, a->x);
  for (int l = 0; l < m->depth; l++) block_forward(m, &m->blocks[l], a, B);
  if (tokens) {
    /* tokens[B*T, W] = LN(x); pooled = token 0 of each image */
    bm_layernorm(tokens, a->x, m->norm_w, m->norm_b, B * T, W, m->eps);
    for (int i = 0; i < B; i++)
      memcpy(a->pooled + (size_t)i * W, tokens + (size_t)i * T * W, sizeof(float) * (size_t)W);
  } else {
    for (int i = 0; i < B; i++)
      memcpy(a->pooled + (size_t)i * W, a->x + (size_t)i * T * W, sizeof(float) * (size_t)W);
    bm_layernorm(a->pooled, a->pooled, m->norm_w, m->norm_b, B, W, m->eps);
  }
  bm_linear(emb, a->pooled, m->head_w, NULL, B, W, m->embed_dim); /* emb[B,E] */
  bm_l2_normalize(emb, B, m->embed_dim);
}
