/* test_vit_ext.c - what the multimodal modes need of the image tower
 * (vit_train.h), on the tiny model:
 *   - the tokens output: bm_vit_forward's bits, for every freezing;
 *   - finite differences of L = sum(emb*R1) + sum(tokens*R2), and of each
 *     term alone, on the largest-gradient element of every tensor (the
 *     head's gradient exactly 0 from the tokens alone);
 *   - patch dropout: the kept count (torch's rule), kept sets deterministic,
 *     different across steps and images, uniform; the forward equals a
 *     reference built by hand (gather the kept tokens, run the inference
 *     kernels); its gradient against finite differences; dropped patches
 *     contribute exactly nothing;
 *   - checkpointing: the same gradient bits (unlock all, unlock 1, with
 *     patch dropout), fewer bytes; the bytes at ViT-B/16 batch 16 from the
 *     sizing alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels.h"
#include "model.h"
#include "util.h"
#include "vit_train.h"

static float *rnd(bm_rng *r, size_t n, float scale) {
  float *x = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  for (size_t i = 0; i < n; i++) x[i] = scale * (float)(2.0 * bm_rng_uniform(r) - 1.0);
  return x;
}

static float *nanbuf(size_t n) {
  float *x = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(float)));
  for (size_t i = 0; i < n; i++) x[i] = NAN;
  return x;
}

static void tokens_bits(const bm_vit *v, const float *img, int B) {
  int E = v->embed_dim, W = v->width, T = v->ntok;
  size_t ne = (size_t)B * E, nt = (size_t)B * T * W;
  float *we = nanbuf(ne), *wt = nanbuf(nt), *ge = nanbuf(ne), *gt = nanbuf(nt);
  bm_vit_acts va = {0};
  bm_vit_forward(v, &va, img, B, we, wt);
  int ok = 1, fin = 1;
  for (size_t i = 0; i < nt; i++) fin &= isfinite(wt[i]);
  for (int k = 0; k < 5; k++) {
    int unlock = k == 1 ? 1 : k == 2 ? 0 : -1;
    bm_vit_train vt;
    bm_vit_train_init(&vt, v, unlock, k == 3);
    vt.checkpoint = k == 4;
    bm_vt_acts a = {0};
    for (size_t i = 0; i < ne; i++) ge[i] = NAN;
    for (size_t i = 0; i < nt; i++) gt[i] = NAN;
    bm_vit_train_forward_tokens(&vt, &a, img, B, ge, gt);
    ok &= !memcmp(ge, we, ne * sizeof(float)) && !memcmp(gt, wt, nt * sizeof(float));
    for (size_t i = 0; i < ne; i++) ge[i] = NAN;
    bm_vit_train_forward_tokens(&vt, &a, img, B, ge, NULL); /* emb alone */
    ok &= !memcmp(ge, we, ne * sizeof(float));
    bm_vt_acts_free(&a);
    bm_vit_train_free(&vt);
  }
  CHECK(ok && fin, "tokens[%d*%d,%d] and emb = bm_vit_forward's bits (all, last 1, norm+head, frozen, checkpointed)",
        B, T, W);
  bm_vit_acts_free(&va);
  free(we), free(wt), free(ge), free(gt);
}

/* L = sum(emb*R1) + sum(tokens*R2) (either R may be NULL), in double */
static double loss_at(bm_vit_train *vt, bm_vt_acts *a, const float *img, int B, const float *R1, const float *R2,
                      float *emb, float *tok) {
  bm_vit_train_forward_tokens(vt, a, img, B, emb, tok);
  double L = 0;
  size_t ne = (size_t)B * vt->v.embed_dim, nt = (size_t)B * a->T * vt->v.width;
  if (R1)
    for (size_t i = 0; i < ne; i++) L += (double)emb[i] * R1[i];
  if (R2)
    for (size_t i = 0; i < nt; i++) L += (double)tok[i] * R2[i];
  return L;
}

/* gradients of L into vt->g (zeroed first) */
static void grad_at(bm_vit_train *vt, bm_vt_acts *a, const float *img, int B, const float *R1, const float *R2,
                    float *emb, float *tok) {
  bm_vit_train_zero_grad(vt);
  loss_at(vt, a, img, B, R1, R2, emb, tok);
  bm_vit_train_backward_tokens(vt, a, R1, R2, B);
}

/* Finite differences on the largest-gradient element of every tensor that
 * trains; returns the worst relative error, counts the tensors in *n. */
static double fd_all(bm_vit_train *vt, const float *img, int B, const float *R1, const float *R2, int *n,
                     char *worst, size_t wl) {
  bm_vt_acts a = {0};
  size_t ne = (size_t)B * vt->v.embed_dim, nt = (size_t)B * vt->v.ntok * vt->v.width;
  float *emb = nanbuf(ne), *tok = nanbuf(nt);
  grad_at(vt, &a, img, B, R1, R2, emb, tok);
  double w = 0;
  *n = 0;
  for (int i = 0; i < vt->nt; i++) {
    const float *g = bm_vit_train_grad(vt, i);
    if (!g) continue;
    const bm_vt_tensor *t = &vt->t[i];
    size_t j = 0;
    for (size_t q = 1; q < t->n; q++)
      if (fabsf(g[q]) > fabsf(g[j])) j = q;
    if (!R1 && i == vt->nt - 1) { /* the head: tokens do not depend on it, its gradient is exactly 0 */
      int zero = 1;
      for (size_t q = 0; q < t->n; q++) zero &= g[q] == 0;
      if (!zero) w = INFINITY, snprintf(worst, wl, "%s (not 0)", t->name);
      (*n)++;
      continue;
    }
    /* h: 2% of the value; smaller steps drown in the float forward's rounding
     * where a gradient is small (the patch bias's is 0.014 against 0.3) */
    float *p = vt->p + t->off + j, keep = *p, h = 2e-2f * fmaxf(fabsf(keep), 0.1f);
    *p = keep + h;
    double lp = loss_at(vt, &a, img, B, R1, R2, emb, tok);
    *p = keep - h;
    double lm = loss_at(vt, &a, img, B, R1, R2, emb, tok);
    *p = keep;
    double fd = (lp - (double)lm) / ((double)(keep + h) - (double)(keep - h));
    double r = fabs(fd - g[j]) / fmax(fabs(g[j]), 1e-3);
    if (isnan(r) || g[j] == 0) r = INFINITY; /* a zero largest gradient is a defect too */
    if (r > w || *n == 0) w = r, snprintf(worst, wl, "%s", t->name);
    (*n)++;
  }
  bm_vt_acts_free(&a);
  free(emb), free(tok);
  return w;
}

static void fd_case(const bm_vit *v, const float *img, int B, float pd) {
  bm_rng r;
  bm_rng_seed(&r, 99);
  int E = v->embed_dim, W = v->width, T = v->ntok;
  float *R1 = rnd(&r, (size_t)B * E, 1.0f), *R2 = rnd(&r, (size_t)B * T * W, 1.0f);
  const char *what[3] = {"emb and tokens", "emb alone", "tokens alone"};
  for (int k = 0; k < 3; k++) {
    bm_vit_train vt;
    bm_vit_train_init(&vt, v, -1, 0);
    vt.patch_dropout = pd, vt.pd_seed = 5, vt.pd_step = 11;
    char worst[128] = "-";
    int n;
    double w = fd_all(&vt, img, B, k == 2 ? NULL : R1, k == 1 ? NULL : R2, &n, worst, sizeof worst);
    CHECK(n == vt.nt && w < 1e-2, "patch dropout %g, L from %s: finite differences on all %d tensors (worst rel %.2g in %s)",
          pd, what[k], n, w, worst);
    bm_vit_train_free(&vt);
  }
  free(R1), free(R2);
}

/* The tower on the kept tokens, built from the inference kernels. */
static void ref_dropped(const bm_vit *v, const float *img, int B, const int *keep, int K, float *emb, float *tok) {
  int T = v->ntok, Tk = 1 + K, W = v->width, M = v->mlp, GG = v->grid * v->grid, PP = v->patch * v->patch;
  size_t Nk = (size_t)B * Tk;
  float *cols = bm_xmalloc(sizeof(float) * (size_t)B * GG * 3 * PP), *pat = bm_xmalloc(sizeof(float) * (size_t)B * GG * W);
  float *x = bm_xmalloc(sizeof(float) * (size_t)B * T * W), *xg = bm_xmalloc(sizeof(float) * Nk * W);
  float *ln = bm_xmalloc(sizeof(float) * Nk * W), *qkv = bm_xmalloc(sizeof(float) * Nk * 3 * W);
  float *att = bm_xmalloc(sizeof(float) * Nk * W), *h = bm_xmalloc(sizeof(float) * Nk * M);
  float *sc = bm_xmalloc(sizeof(float) * bm_attention_scratch(Tk)), *pooled = bm_xmalloc(sizeof(float) * (size_t)B * W);
  int *start = bm_xmalloc(sizeof(int) * (size_t)B), *len = bm_xmalloc(sizeof(int) * (size_t)B);
  bm_patch_embed(pat, img, v->patch_w, v->patch_b, cols, B, v->image_size, v->patch, W);
  bm_vit_tokens(v, pat, B, x);
  for (int b = 0; b < B; b++) {
    start[b] = b * Tk, len[b] = Tk;
    memcpy(xg + (size_t)b * Tk * W, x + (size_t)b * T * W, sizeof(float) * W);
    for (int j = 0; j < K; j++)
      memcpy(xg + ((size_t)b * Tk + 1 + j) * W, x + ((size_t)b * T + 1 + keep[b * K + j]) * W, sizeof(float) * W);
  }
  for (int l = 0; l < v->depth; l++) {
    const bm_vit_block *k = &v->blocks[l];
    bm_layernorm(ln, xg, k->ln1_w, k->ln1_b, (int)Nk, W, v->eps);
    bm_linear(qkv, ln, k->qkv_w, k->qkv_b, (int)Nk, W, 3 * W);
    bm_attention(att, qkv, start, len, B, W, v->heads, NULL, sc);
    bm_linear_residual(xg, att, k->proj_w, k->proj_b, (int)Nk, W, W);
    bm_layernorm(ln, xg, k->ln2_w, k->ln2_b, (int)Nk, W, v->eps);
    bm_linear_gelu(h, ln, k->fc1_w, k->fc1_b, (int)Nk, W, M);
    bm_linear_residual(xg, h, k->fc2_w, k->fc2_b, (int)Nk, M, W);
  }
  bm_layernorm(tok, xg, v->norm_w, v->norm_b, (int)Nk, W, v->eps);
  for (int b = 0; b < B; b++) memcpy(pooled + (size_t)b * W, tok + (size_t)b * Tk * W, sizeof(float) * W);
  bm_linear(emb, pooled, v->head_w, NULL, B, W, v->embed_dim);
  bm_l2_normalize(emb, B, v->embed_dim);
  free(cols), free(pat), free(x), free(xg), free(ln), free(qkv), free(att), free(h), free(sc), free(pooled);
  free(start), free(len);
}

static int sorted_unique(const int *k, int K, int GG) {
  for (int j = 0; j < K; j++)
    if (k[j] < 0 || k[j] >= GG || (j && k[j] <= k[j - 1])) return 0;
  return 1;
}

static void keep_rule(void) {
  /* torch: max(1, int(n * (1 - p))) in double with p as written */
  int c1 = bm_vit_patch_keep_count(196, 0.5f), c2 = bm_vit_patch_keep_count(10, 0.2f);
  int c3 = bm_vit_patch_keep_count(196, 0.3f), c4 = bm_vit_patch_keep_count(9, 0.99f);
  int c5 = bm_vit_patch_keep_count(196, 0.0f), c6 = bm_vit_patch_keep_count(196, 0.75f);
  CHECK(c1 == 98 && c2 == 8 && c3 == 137 && c4 == 1 && c5 == 196 && c6 == 49,
        "kept count max(1, int(GG*(1-p))): 196/0.5 %d, 10/0.2 %d, 196/0.3 %d, 9/0.99 %d, 196/0 %d, 196/0.75 %d", c1, c2,
        c3, c4, c5, c6);
  int GG = 196, K = 98, k1[98], k2[98], k3[98], k4[98], k5[98];
  for (int j = 0; j < K; j++) k1[j] = k2[j] = -1;
  bm_vit_patch_keep(k1, GG, K, 7, 3, 0);
  bm_vit_patch_keep(k2, GG, K, 7, 3, 0);
  bm_vit_patch_keep(k3, GG, K, 7, 4, 0); /* next step */
  bm_vit_patch_keep(k4, GG, K, 7, 3, 1); /* next image */
  bm_vit_patch_keep(k5, GG, K, 8, 3, 0); /* another seed */
  size_t sz = sizeof k1;
  CHECK(!memcmp(k1, k2, sz) && memcmp(k1, k3, sz) && memcmp(k1, k4, sz) && memcmp(k1, k5, sz) &&
            sorted_unique(k1, K, GG) && sorted_unique(k3, K, GG) && sorted_unique(k4, K, GG),
        "kept sets: the same for the same (seed, step, image), another for the next step, image or seed; ascending, distinct");
  /* uniform: each of 9 patches kept 4/9 of the time over 4000 draws (6 sigma 0.047) */
  int cnt[9] = {0}, kk[4];
  for (int s = 0; s < 4000; s++) {
    bm_vit_patch_keep(kk, 9, 4, 1, (uint64_t)s / 4, s % 4);
    for (int j = 0; j < 4; j++) cnt[kk[j]]++;
  }
  double dev = 0;
  for (int i = 0; i < 9; i++) dev = fmax(dev, fabs(cnt[i] / 4000.0 - 4.0 / 9));
  CHECK(dev < 0.047, "kept sets uniform: each patch kept 4/9 of 4000 draws (worst deviation %.3f)", dev);
}

static void dropout_case(const bm_vit *v, const float *img, int B) {
  int W = v->width, E = v->embed_dim, GG = v->grid * v->grid, S = v->image_size, P = v->patch;
  float pd = 0.5f;
  int K = bm_vit_patch_keep_count(GG, pd), Tk = 1 + K;
  size_t ne = (size_t)B * E, nt = (size_t)B * Tk * W;
  bm_vit_train vt;
  bm_vit_train_init(&vt, v, -1, 0);
  vt.patch_dropout = pd, vt.pd_seed = 42, vt.pd_step = 3;
  bm_vt_acts a = {0};
  float *emb = nanbuf(ne), *tok = nanbuf(nt + W), *remb = nanbuf(ne), *rtok = nanbuf(nt);
  tok[nt] = 12345.0f; /* a guard row past B*(1+K) rows */
  bm_vit_train_forward_tokens(&vt, &a, img, B, emb, tok);
  int *keep = bm_xmalloc(sizeof(int) * (size_t)B * K), kept_ok = a.T == Tk;
  for (int b = 0; b < B; b++) {
    bm_vit_patch_keep(keep + b * K, GG, K, 42, 3, b);
    kept_ok &= sorted_unique(keep + b * K, K, GG);
  }
  kept_ok &= !memcmp(keep, a.keep, sizeof(int) * (size_t)B * K);
  ref_dropped(&vt.v, img, B, keep, K, remb, rtok);
  CHECK(kept_ok && tok[nt] == 12345.0f && !memcmp(emb, remb, ne * sizeof(float)) &&
            !memcmp(tok, rtok, nt * sizeof(float)),
        "patch dropout %g: %d images of 1 CLS + %d of %d patches; emb and tokens[%zu rows] = the hand-built reference's bits",
        pd, B, K, GG, (size_t)B * Tk);

  /* another step: other patches, another embedding; p = 0 again: no dropout */
  float *e2 = nanbuf(ne), *e0 = nanbuf(ne), *ef = nanbuf(ne);
  vt.pd_step = 4;
  bm_vit_train_forward_tokens(&vt, &a, img, B, e2, NULL);
  int other = memcmp(a.keep, keep, sizeof(int) * (size_t)B * K) && memcmp(e2, emb, ne * sizeof(float));
  vt.patch_dropout = 0;
  bm_vit_train_forward(&vt, &a, img, B, e0); /* the same acts, resized */
  bm_vit_acts va = {0};
  bm_vit_forward(&vt.v, &va, img, B, ef, NULL);
  CHECK(other && a.T == v->ntok && !memcmp(e0, ef, ne * sizeof(float)),
        "patch dropout: the next step drops other patches; p = 0 on the same buffers gives the inference bits");
  bm_vit_acts_free(&va);

  /* dropped patches contribute nothing: new pixels inside them change no
   * output and no gradient bit */
  bm_rng r;
  bm_rng_seed(&r, 4242);
  float *R1 = rnd(&r, ne, 1.0f), *R2 = rnd(&r, nt, 1.0f);
  float *img2 = bm_xmalloc(sizeof(float) * (size_t)B * 3 * S * S);
  memcpy(img2, img, sizeof(float) * (size_t)B * 3 * S * S);
  int changed = 0;
  for (int b = 0; b < B; b++)
    for (int p = 0, j = 0; p < GG; p++) {
      if (j < K && keep[b * K + j] == p) {
        j++;
        continue;
      }
      int gy = p / v->grid, gx = p % v->grid;
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < P; y++)
          for (int x = 0; x < P; x++)
            img2[(((size_t)b * 3 + c) * S + gy * P + y) * S + gx * P + x] = 3.0f * (float)bm_rng_uniform(&r), changed++;
    }
  vt.patch_dropout = pd, vt.pd_step = 3;
  size_t ng = vt.np - vt.goff;
  float *g1 = bm_xmalloc(sizeof(float) * ng), *t2 = nanbuf(nt);
  grad_at(&vt, &a, img, B, R1, R2, emb, tok);
  memcpy(g1, vt.g, sizeof(float) * ng);
  grad_at(&vt, &a, img2, B, R1, R2, e2, t2);
  CHECK(changed > 0 && !memcmp(e2, emb, ne * sizeof(float)) && !memcmp(t2, tok, nt * sizeof(float)) &&
            !memcmp(g1, vt.g, sizeof(float) * ng),
        "dropped patches: %d new pixels inside them change no output and no gradient bit", changed);

  /* one image: the positional gradient of its dropped positions is exactly 0 */
  grad_at(&vt, &a, img, 1, R1, R2, emb, tok);
  const float *gpos = bm_vit_train_grad(&vt, 3);
  int zero = 1, nonzero = 1;
  for (int p = 0, j = 0; p < GG; p++) {
    int kept = j < K && keep[j] == p;
    j += kept;
    for (int c = 0; c < W; c++) {
      float g = gpos[(size_t)(1 + p) * W + c];
      if (kept) nonzero &= g != 0;
      else zero &= g == 0;
    }
  }
  CHECK(zero && nonzero, "one image: dropped positions get exactly zero pos_embed gradient, kept ones not");
  bm_vt_acts_free(&a);
  bm_vit_train_free(&vt);
  free(emb), free(tok), free(remb), free(rtok), free(keep), free(e2), free(e0), free(ef), free(R1), free(R2);
  free(img2), free(g1), free(t2);
}

static void ckpt_case(const bm_vit *v, const float *img, int B) {
  bm_rng r;
  bm_rng_seed(&r, 777);
  int E = v->embed_dim, W = v->width, T = v->ntok;
  float *R1 = rnd(&r, (size_t)B * E, 1.0f), *R2 = rnd(&r, (size_t)B * T * W, 1.0f);
  float *emb = nanbuf((size_t)B * E), *tok = nanbuf((size_t)B * T * W);
  int unlocks[3] = {-1, 1, -1};
  for (int k = 0; k < 3; k++) {
    float pd = k == 2 ? 0.4f : 0.0f;
    bm_vit_train p, c;
    bm_vit_train_init(&p, v, unlocks[k], 0);
    bm_vit_train_init(&c, v, unlocks[k], 0);
    p.patch_dropout = c.patch_dropout = pd, p.pd_step = c.pd_step = 9;
    c.checkpoint = 1;
    bm_vt_acts ap = {0}, ac = {0};
    grad_at(&p, &ap, img, B, R1, R2, emb, tok);
    for (size_t i = 0; i < c.np - c.goff; i++) c.g[i] = NAN; /* zeroed by grad_at */
    grad_at(&c, &ac, img, B, R1, R2, emb, tok);
    size_t ng = p.np - p.goff, bp = bm_vt_acts_bytes(&ap), bc = bm_vt_acts_bytes(&ac);
    int first = p.first, same = ng == c.np - c.goff && !memcmp(p.g, c.g, ng * sizeof(float));
    /* a second step on the same buffers: the recompute does not depend on what the last left */
    grad_at(&c, &ac, img, B, R1, R2, emb, tok);
    same &= !memcmp(p.g, c.g, ng * sizeof(float));
    size_t plan_p = bm_vt_acts_plan(v, first, 0, 0, B, ap.T), plan_c = bm_vt_acts_plan(v, first, 0, 1, B, ac.T);
    CHECK(same && bc < bp && plan_p == bp && plan_c == bc,
          "checkpointing (unlock %d, patch dropout %g): gradients bit-identical (twice); %zu bytes instead of %zu, "
          "as bm_vt_acts_plan says", unlocks[k], pd, bc, bp);
    bm_vt_acts_free(&ap), bm_vt_acts_free(&ac);
    bm_vit_train_free(&p), bm_vit_train_free(&c);
  }
  free(R1), free(R2), free(emb), free(tok);
}

/* ViT-B/16 at batch 16, sized without allocating. */
static void vitb_bytes(void) {
  bm_vit b = {.image_size = 224, .patch = 16, .grid = 14, .ntok = 197, .width = 768, .depth = 12, .heads = 12,
              .mlp = 3072, .embed_dim = 512, .eps = 1e-6f};
  double mb = 1 << 20;
  size_t full = bm_vt_acts_plan(&b, 0, 0, 0, 16, 197), ck = bm_vt_acts_plan(&b, 0, 0, 1, 16, 197);
  size_t pd = bm_vt_acts_plan(&b, 0, 0, 0, 16, 1 + 98), pdck = bm_vt_acts_plan(&b, 0, 0, 1, 16, 1 + 98);
  size_t u1 = bm_vt_acts_plan(&b, 11, 0, 0, 16, 197), u1c = bm_vt_acts_plan(&b, 11, 0, 1, 16, 197);
  CHECK(ck * 3 < full && pdck < ck && u1c <= u1,
        "ViT-B/16 batch 16, unlock all: %.0f MiB of activations, %.0f MiB checkpointed (%.1fx less); with patch "
        "dropout 0.5: %.0f / %.0f MiB; unlock 1: %.0f / %.0f MiB",
        full / mb, ck / mb, (double)full / ck, pd / mb, pdck / mb, u1 / mb, u1c / mb);
}

int main(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096], err[1024];
  bm_set_threads(2);
  snprintf(path, sizeof path, "%s/fixtures/tiny-model", dir ? dir : "tests");
  bm_model m;
  if (bm_model_load(&m, path, BM_LOAD_VISION, err, sizeof err)) bm_die("%s", err);
  const bm_vit *v = &m.vit;
  int B = 3, S = v->image_size;
  bm_rng r;
  bm_rng_seed(&r, 2024);
  float *img = rnd(&r, (size_t)B * 3 * S * S, 2.0f);
  tokens_bits(v, img, B);
  fd_case(v, img, B, 0.0f);
  keep_rule();
  dropout_case(v, img, B);
  fd_case(v, img, B, 0.5f);
  ckpt_case(v, img, B);
  vitb_bytes();
  free(img);
  bm_model_free(&m);
  CHECK_DONE();
}
