/* vit.h - the image tower: timm's VisionTransformer as BiomedCLIP uses it
 * (vit_base_patch16_224, eval mode) plus open_clip's linear head.
 *
 *   x = [cls; patch_embed(img)] + pos        x[B, T, W], T = 1 + G*G
 *   depth pre-norm blocks:
 *     x += proj(MHSA(LN1(x)));  x += fc2(GELU(fc1(LN2(x))))
 *   LN (final norm), token 0, head [E, W] without bias, L2 normalize.
 * Sizes are whatever the weights say (model.c fills them in). */
#ifndef BM_VIT_H
#define BM_VIT_H

typedef struct {
  const float *ln1_w, *ln1_b;   /* [W] */
  const float *qkv_w, *qkv_b;   /* [3W, W], [3W] */
  const float *proj_w, *proj_b; /* [W, W], [W] */
  const float *ln2_w, *ln2_b;   /* [W] */
  const float *fc1_w, *fc1_b;   /* [M, W], [M] */
  const float *fc2_w, *fc2_b;   /* [W, M], [W] */
} bm_vit_block;

typedef struct {
  int image_size, patch, grid, ntok; /* S, P, G = S/P, T = 1 + G*G */
  int width, depth, heads, mlp, embed_dim;
  float eps;
  const float *patch_w, *patch_b; /* [W, 3*P*P], [W] */
  const float *cls, *pos;         /* [W], [T, W] */
  bm_vit_block *blocks;           /* [depth] */
  const float *norm_w, *norm_b;   /* [W] */
  const float *head_w;            /* [E, W] */
} bm_vit;

/* Activation buffers, grown to the largest batch seen, reused across calls. */
typedef struct {
  int cap;                 /* images they hold */
  float *x, *ln, *qkv, *att, *h; /* [B*T, W], [B*T, W], [B*T, 3W], [B*T, W], [B*T, M] */
  float *cols, *patches;   /* [B*G*G, 3*P*P], [B*G*G, W] */
  float *pooled;           /* [B, W] */
  float *scratch;          /* attention scores, per thread */
  int *start, *len;        /* [B] */
} bm_vit_acts;

void bm_vit_acts_free(bm_vit_acts *a);

/* x[b, 0] = cls + pos[0];  x[b, 1+p] = patches[b, p] + pos[1+p]:
 * patches[B*G*G, W] -> x[B*T, W] (the training forward shares it). */
void bm_vit_tokens(const bm_vit *m, const float *patches, int B, float *x);

/* img[B, 3, S, S] normalized floats -> emb[B, E] (L2 normalized) and, when
 * tokens != NULL, tokens[B, T, W] = the final norm of every token. */
void bm_vit_forward(const bm_vit *m, bm_vit_acts *a, const float *img, int B, float *emb,
                    float *tokens);

#endif
