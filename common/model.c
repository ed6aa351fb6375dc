/* model.c - build the towers from a checkpoint's tensors (see model.h). */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Loading state: the first error wins and later lookups are skipped. */
typedef struct {
  bm_model *m;
  char *err;
  size_t errlen;
  int failed;
} loader;

static void fail(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(loader *L, const char *fmt, ...) {
  if (L->failed) return;
  L->failed = 1;
  int k = snprintf(L->err, L->errlen, "%s: ", L->m->ws.source ? L->m->ws.source : "model");
  if (k < 0 || (size_t)k >= L->errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(L->err + k, L->errlen - (size_t)k, fmt, ap);
  va_end(ap);
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
  size_t k = 0;
  k += (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += shape[i] < 0 ? (size_t)snprintf(buf + k, n - k, "%s*", i ? "," : "")
                      : (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

static void own(bm_model *m, float *p) {
  m->owned = bm_xrealloc(m->owned, sizeof(float *) * (size_t)(m->nowned + 1));
  m->owned[m->nowned++] = p;
}

/* The tensor `name` as float32 with exactly the given shape (ndim dims;
 * a negative expected dim accepts any size and stores what was found back
 * into shape[]). NULL after fail(). */
static const float *lookup(loader *L, const char *name, int ndim, int64_t *shape, int want_data) {
  if (L->failed) return NULL;
  const bm_weight *w = bm_weights_get(&L->m->ws, name);
  char want[160], got[160];
  shape_str(want, sizeof want, ndim, shape);
  if (!w) {
    fail(L, "missing tensor %s (expected shape %s)", name, want);
    return NULL;
  }
  shape_str(got, sizeof got, w->ndim, w->shape);
  int ok = w->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == w->shape[i];
  if (!ok) {
    fail(L, "tensor %s has shape %s, expected %s", name, got, want);
    return NULL;
  }
  for (int i = 0; i < ndim; i++) shape[i] = w->shape[i];
  if (!want_data) return NULL;
  if (w->dtype == BM_W_F32) return w->data;
  float *f = bm_weight_to_f32(w);
  if (!f) {
    fail(L, "tensor %s is not a floating-point tensor", name);
    return NULL;
  }
  own(L->m, f);
  return f;
}

static const float *tensor(loader *L, const char *name, int ndim, int64_t *shape) {
  return lookup(L, name, ndim, shape, 1);
}
/* Only the shape (sizes read before the tensor is used), no conversion. */
static void shape_of(loader *L, const char *name, int ndim, int64_t *shape) {
  lookup(L, name, ndim, shape, 0);
}

static const float *t1(loader *L, const char *name, int64_t a) {
  int64_t s[1] = {a};
  return tensor(L, name, 1, s);
}
static const float *t2(loader *L, const char *name, int64_t a, int64_t b) {
  int64_t s[2] = {a, b};
  return tensor(L, name, 2, s);
}

static int exists(const bm_model *m, const char *fmt, int i) {
  char name[256];
  snprintf(name, sizeof name, fmt, i);
  return bm_weights_get(&m->ws, name) != NULL;
}

/* ---- the config (optional) ---- */
typedef struct {
  json_t *root;
  json_t *vision, *text, *pre, *bm; /* borrowed; NULL when absent */
} config;

static int config_int(json_t *obj, const char *key, long *out) {
  json_t *v = obj ? json_object_get(obj, key) : NULL;
  if (!v || !json_is_integer(v)) return 0;
  *out = (long)json_integer_value(v);
  return 1;
}

/* Heads: width/64 unless the config says otherwise. open_clip's config has
 * no field for it that its timm and HuggingFace towers read (text_cfg "heads"
 * is a default-filled field they ignore: a dump may carry heads 8 for a
 * 768-wide BERT), so the count comes from our own top-level object, which
 * open_clip ignores: {"bm_cfg": {"vision_heads": N, "text_heads": N}}, or for
 * the image tower from vision_cfg "head_width" (open_clip's, default 64). */
static int tower_heads(loader *L, const config *c, const char *tower, int width) {
  long heads = 0, hw = 0;
  char key[32];
  snprintf(key, sizeof key, "%s_heads", tower);
  json_t *tcfg = strcmp(tower, "vision") == 0 ? c->vision : NULL;
  if (config_int(c->bm, key, &heads)) {
  } else if (config_int(tcfg, "head_width", &hw) && hw > 0) {
    heads = width % hw ? 0 : width / hw;
  } else {
    heads = width % 64 ? 0 : width / 64;
  }
  if (heads <= 0 || width % heads) {
    fail(L, "%s width %d cannot be split into %ld heads; set bm_cfg.%s in the config", tower,
         width, heads, key);
    return 1;
  }
  return (int)heads;
}

static void config_parse(loader *L, config *c) {
  memset(c, 0, sizeof *c);
  if (!L->m->ws.config_json) return;
  json_error_t je;
  c->root = json_loads(L->m->ws.config_json, 0, &je);
  if (!c->root || !json_is_object(c->root)) {
    fail(L, "the model config is not a JSON object (line %d: %s)", je.line, je.text);
    return;
  }
  json_t *mc = json_object_get(c->root, "model_cfg");
  if (!json_is_object(mc)) mc = c->root;
  c->vision = json_object_get(mc, "vision_cfg");
  c->text = json_object_get(mc, "text_cfg");
  c->pre = json_object_get(c->root, "preprocess_cfg");
  c->bm = json_object_get(c->root, "bm_cfg");
}

static void preprocess(loader *L, const config *c) {
  static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  memcpy(L->m->mean, mean, sizeof mean);
  memcpy(L->m->std, std, sizeof std);
  const char *keys[2] = {"mean", "std"};
  float *dst[2] = {L->m->mean, L->m->std};
  for (int k = 0; k < 2 && c->pre; k++) {
    json_t *a = json_object_get(c->pre, keys[k]);
    if (!a) continue;
    if (!json_is_array(a) || json_array_size(a) != 3) {
      fail(L, "preprocess_cfg.%s must be a list of 3 numbers", keys[k]);
      return;
    }
    for (int i = 0; i < 3; i++) {
      json_t *v = json_array_get(a, (size_t)i);
      if (!json_is_number(v) || (k == 1 && json_number_value(v) <= 0)) {
        fail(L, "preprocess_cfg.%s[%d] is not a usable number", keys[k], i);
        return;
      }
      dst[k][i] = (float)json_number_value(v);
    }
  }
}

/* ---- image tower ---- */
static void load_vision(loader *L, const config *c) {
  bm_model *m = L->m;
  bm_vit *v = &m->vit;
  int64_t pw[4] = {-1, 3, -1, -1};
  shape_of(L, "visual.trunk.patch_embed.proj.weight", 4, pw);
  if (L->failed) return;
  if (pw[2] != pw[3] || pw[2] <= 0) {
    fail(L, "visual.trunk.patch_embed.proj.weight has shape [%lld,3,%lld,%lld]: patches must be square",
         (long long)pw[0], (long long)pw[2], (long long)pw[3]);
    return;
  }
  int W = (int)pw[0], P = (int)pw[2];
  /* Used in place as [W, 3*P*P]: the conv weight is that matrix row-major. */
  v->patch_w = tensor(L, "visual.trunk.patch_embed.proj.weight", 4, (int64_t[]){W, 3, P, P});
  v->patch_b = t1(L, "visual.trunk.patch_embed.proj.bias", W);
  int64_t ps[3] = {1, -1, W};
  v->pos = tensor(L, "visual.trunk.pos_embed", 3, ps);
  if (L->failed) return;
  int T = (int)ps[1], G = (int)lround(sqrt((double)(T - 1)));
  if (T < 2 || G * G != T - 1) {
    fail(L, "visual.trunk.pos_embed has %d tokens: expected 1 + a square number of patches", T);
    return;
  }
  v->cls = tensor(L, "visual.trunk.cls_token", 3, (int64_t[]){1, 1, W});
  v->width = W, v->patch = P, v->grid = G, v->ntok = T, v->image_size = G * P;
  v->eps = 1e-6f;
  v->depth = 0;
  while (exists(m, "visual.trunk.blocks.%d.norm1.weight", v->depth)) v->depth++;
  if (v->depth == 0) {
    fail(L, "missing tensor visual.trunk.blocks.0.norm1.weight (expected shape [%d])", W);
    return;
  }
  int64_t f1[2] = {-1, W};
  shape_of(L, "visual.trunk.blocks.0.mlp.fc1.weight", 2, f1);
  if (L->failed) return;
  int M = v->mlp = (int)f1[0];
  v->heads = tower_heads(L, c, "vision", W);
  v->blocks = bm_xcalloc((size_t)v->depth, sizeof(bm_vit_block));
  for (int i = 0; i < v->depth && !L->failed; i++) {
    bm_vit_block *b = &v->blocks[i];
    char n[160];
#define VT1(field, suffix, d0) (snprintf(n, sizeof n, "visual.trunk.blocks.%d.%s", i, suffix), b->field = t1(L, n, d0))
#define VT2(field, suffix, d0, d1) (snprintf(n, sizeof n, "visual.trunk.blocks.%d.%s", i, suffix), b->field = t2(L, n, d0, d1))
    VT1(ln1_w, "norm1.weight", W), VT1(ln1_b, "norm1.bias", W);
    VT2(qkv_w, "attn.qkv.weight", 3 * W, W), VT1(qkv_b, "attn.qkv.bias", 3 * W);
    VT2(proj_w, "attn.proj.weight", W, W), VT1(proj_b, "attn.proj.bias", W);
    VT1(ln2_w, "norm2.weight", W), VT1(ln2_b, "norm2.bias", W);
    VT2(fc1_w, "mlp.fc1.weight", M, W), VT1(fc1_b, "mlp.fc1.bias", M);
    VT2(fc2_w, "mlp.fc2.weight", W, M), VT1(fc2_b, "mlp.fc2.bias", W);
#undef VT1
#undef VT2
  }
  v->norm_w = t1(L, "visual.trunk.norm.weight", W);
  v->norm_b = t1(L, "visual.trunk.norm.bias", W);
  int64_t hs[2] = {-1, W};
  v->head_w = tensor(L, "visual.head.proj.weight", 2, hs);
  v->embed_dim = (int)hs[0];
}

/* ---- text tower ---- */
static void load_text(loader *L, const config *c) {
  bm_model *m = L->m;
  bm_bert *t = &m->bert;
  const char *E = "text.transformer.embeddings.";
  char n[200];
  int64_t ws[2] = {-1, -1};
  snprintf(n, sizeof n, "%sword_embeddings.weight", E);
  t->word = tensor(L, n, 2, ws);
  if (L->failed) return;
  int V = t->vocab = (int)ws[0], W = t->width = (int)ws[1];
  int64_t pshape[2] = {-1, W}, tshape[2] = {-1, W};
  snprintf(n, sizeof n, "%sposition_embeddings.weight", E);
  t->pos = tensor(L, n, 2, pshape);
  snprintf(n, sizeof n, "%stoken_type_embeddings.weight", E);
  t->type = tensor(L, n, 2, tshape);
  snprintf(n, sizeof n, "%sLayerNorm.weight", E);
  t->emb_ln_w = t1(L, n, W);
  snprintf(n, sizeof n, "%sLayerNorm.bias", E);
  t->emb_ln_b = t1(L, n, W);
  if (L->failed) return;
  t->maxpos = (int)pshape[0];
  t->ntypes = (int)tshape[0];
  long ctx = t->maxpos < 256 ? t->maxpos : 256;
  config_int(c->text, "context_length", &ctx);
  if (ctx < 2 || ctx > t->maxpos) {
    fail(L, "context_length %ld does not fit the %d position embeddings", ctx, t->maxpos);
    return;
  }
  t->context = (int)ctx;
  t->eps = 1e-12f;
  t->depth = 0;
  while (exists(m, "text.transformer.encoder.layer.%d.attention.self.query.weight", t->depth)) t->depth++;
  if (t->depth == 0) {
    fail(L, "missing tensor text.transformer.encoder.layer.0.attention.self.query.weight (expected shape [%d,%d])", W, W);
    return;
  }
  int64_t f1[2] = {-1, W};
  shape_of(L, "text.transformer.encoder.layer.0.intermediate.dense.weight", 2, f1);
  if (L->failed) return;
  int M = t->mlp = (int)f1[0];
  t->heads = tower_heads(L, c, "text", W);
  t->layers = bm_xcalloc((size_t)t->depth, sizeof(bm_bert_layer));
  for (int i = 0; i < t->depth && !L->failed; i++) {
    bm_bert_layer *l = &t->layers[i];
#define TT1(field, suffix, d0) (snprintf(n, sizeof n, "text.transformer.encoder.layer.%d.%s", i, suffix), l->field = t1(L, n, d0))
#define TT2(field, suffix, d0, d1) (snprintf(n, sizeof n, "text.transformer.encoder.layer.%d.%s", i, suffix), l->field = t2(L, n, d0, d1))
    /* query, key and value stacked into one [3W, W] matrix: one GEMM */
    const char *qkv[3] = {"query", "key", "value"};
    float *wp = bm_xmalloc(bm_mul_size((size_t)3 * W * W, sizeof(float)));
    float *bp = bm_xmalloc(sizeof(float) * 3 * (size_t)W);
    own(m, wp), own(m, bp);
    for (int k = 0; k < 3 && !L->failed; k++) {
      snprintf(n, sizeof n, "text.transformer.encoder.layer.%d.attention.self.%s.weight", i, qkv[k]);
      const float *w = t2(L, n, W, W);
      snprintf(n, sizeof n, "text.transformer.encoder.layer.%d.attention.self.%s.bias", i, qkv[k]);
      const float *b = t1(L, n, W);
      if (L->failed) break;
      memcpy(wp + (size_t)k * W * W, w, sizeof(float) * (size_t)W * W);
      memcpy(bp + (size_t)k * W, b, sizeof(float) * (size_t)W);
    }
    l->qkv_w = wp, l->qkv_b = bp;
    TT2(o_w, "attention.output.dense.weight", W, W), TT1(o_b, "attention.output.dense.bias", W);
    TT1(ln1_w, "attention.output.LayerNorm.weight", W), TT1(ln1_b, "attention.output.LayerNorm.bias", W);
    TT2(fc1_w, "intermediate.dense.weight", M, W), TT1(fc1_b, "intermediate.dense.bias", M);
    TT2(fc2_w, "output.dense.weight", W, M), TT1(fc2_b, "output.dense.bias", W);
    TT1(ln2_w, "output.LayerNorm.weight", W), TT1(ln2_b, "output.LayerNorm.bias", W);
#undef TT1
#undef TT2
  }
  int64_t p0[2] = {-1, W};
  t->proj0 = tensor(L, "text.proj.0.weight", 2, p0);
  if (L->failed) return;
  t->proj_hidden = (int)p0[0];
  int64_t p2[2] = {-1, t->proj_hidden};
  t->proj2 = tensor(L, "text.proj.2.weight", 2, p2);
  t->embed_dim = (int)p2[0];
  if (L->failed) return;
  if (!m->ws.vocab) {
    fail(L, "no vocabulary (vocab.txt) next to the weights");
    return;
  }
  char terr[256];
  m->tok = bm_tokenizer_new(m->ws.vocab, m->ws.vocab_len, terr, sizeof terr);
  if (!m->tok) {
    fail(L, "vocabulary: %s", terr);
    return;
  }
  if (bm_tokenizer_vocab_size(m->tok) > V)
    fail(L, "the vocabulary has %d tokens but text.transformer.embeddings.word_embeddings.weight only %d rows",
         (int)bm_tokenizer_vocab_size(m->tok), V);
}

int bm_model_load(bm_model *m, const char *path, int parts, char *err, size_t errlen) {
  memset(m, 0, sizeof *m);
  if (bm_weights_load(path, &m->ws, err, errlen)) return -1;
  loader L = {m, err, errlen, 0};
  config c;
  config_parse(&L, &c);
  preprocess(&L, &c);
  if (parts & BM_LOAD_VISION) load_vision(&L, &c);
  if (parts & BM_LOAD_TEXT) load_text(&L, &c);
  m->parts = parts;
  if (!L.failed && (parts & BM_LOAD_VISION) && (parts & BM_LOAD_TEXT) &&
      m->vit.embed_dim != m->bert.embed_dim)
    fail(&L, "the image tower embeds into %d dimensions, the text tower into %d",
         m->vit.embed_dim, m->bert.embed_dim);
  m->embed_dim = (parts & BM_LOAD_VISION) ? m->vit.embed_dim : m->bert.embed_dim;
  m->logit_scale = NAN;
  const bm_weight *ls = bm_weights_get(&m->ws, "logit_scale");
  if (ls && ls->numel == 1) {
    float *f = bm_weight_to_f32(ls);
    if (f) m->logit_scale = f[0], free(f);
  }
  json_decref(c.root);
  if (L.failed) {
    bm_model_free(m);
    return -1;
  }
  return 0;
}

void bm_model_free(bm_model *m) {
  for (int i = 0; i < m->nowned; i++) free(m->owned[i]);
  free(m->owned);
  free(m->vit.blocks);
  free(m->bert.layers);
  if (m->tok) bm_tokenizer_free(m->tok);
  bm_weights_free(&m->ws);
  memset(m, 0, sizeof *m);
}

void bm_model_normalize_image(const bm_model *m, const uint8_t *u8, int S, float *dst) {
  size_t plane = (size_t)S * S;
  for (int c = 0; c < 3; c++) {
    float mean = m->mean[c], std = m->std[c];
    for (size_t i = 0; i < plane; i++) {
      float x = (float)u8[c * plane + i] / 255.0f;
      dst[c * plane + i] = (x - mean) / std;
    }
  }
}
