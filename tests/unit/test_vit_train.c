/* test_vit_train.c - the image tower's training forward and backward
 * (vit_train.h) and the tower + head training step (finetune.h):
 *   - the training forward gives bm_vit_forward's bits, for every freezing;
 *   - one step of the tiny model against PyTorch (tests/fixtures/finetune.bmr
 *     from tests/ref/make_finetune_fixture.py): loss within 1e-5 relative,
 *     every parameter gradient within 1e-4 of its tensor's largest value, and
 *     10 AdamW steps with two groups giving torch's losses within 1e-4;
 *   - --unlock-last: the trained tensors get the same gradients bit for bit,
 *     the others none;
 *   - finite differences of the loss on a few parameters of the whole tower,
 *     also with dropout on the embedding (the same mask each time). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "finetune.h"
#include "kernels.h"
#include "model.h"
#include "record.h"
#include "util.h"

static float *get(const msgpack_object *rec, const char *key, size_t *numel) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1) return NULL;
  float *v = bm_xmalloc(bm_mul_size((size_t)t.numel + 1, sizeof(float)));
  bm_tensor_to_f32(&t, v);
  if (numel) *numel = (size_t)t.numel;
  return v;
}

static double num(const msgpack_object *o) {
  double v = NAN;
  if (!o || bm_obj_number(o, &v)) return NAN;
  return v;
}

static double rel_err(const float *a, const float *b, size_t n) {
  double scale = 0, err = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isnan(a[i]) ? INFINITY : fabs(a[i] - b[i]));
  return err / (scale > 0 ? scale : 1);
}

/* B images u8 -> normalized floats */
static float *images(const bm_model *m, const uint8_t *u8, int B) {
  int S = m->vit.image_size;
  size_t n = (size_t)3 * S * S;
  float *x = bm_xmalloc(bm_mul_size((size_t)B * n, sizeof(float)));
  for (int i = 0; i < B; i++) bm_model_normalize_image(m, u8 + (size_t)i * n, S, x + (size_t)i * n);
  return x;
}

static void bits_case(const bm_model *m) {
  int B = 3, S = m->vit.image_size, E = m->vit.embed_dim;
  size_t n = (size_t)B * 3 * S * S;
  uint8_t *u8 = bm_xmalloc(n);
  bm_rng st;
  bm_rng_seed(&st, 12345);
  for (size_t i = 0; i < n; i++) u8[i] = (uint8_t)(bm_rng_next(&st) >> 56);
  float *img = images(m, u8, B);
  float *want = bm_xmalloc(sizeof(float) * (size_t)B * E), *got = bm_xmalloc(sizeof(float) * (size_t)B * E);
  bm_vit_acts va = {0};
  bm_vit_forward(&m->vit, &va, img, B, want, NULL);
  int unlocks[4] = {-1, 1, 0, -1}, ok = 1;
  for (int k = 0; k < 4; k++) {
    bm_vit_train vt;
    bm_vit_train_init(&vt, &m->vit, unlocks[k], k == 3);
    bm_vt_acts a = {0};
    for (int i = 0; i < B * E; i++) got[i] = NAN;
    bm_vit_train_forward(&vt, &a, img, B, got);
    ok &= !memcmp(got, want, sizeof(float) * (size_t)B * E);
    if (k == 0) { /* after an update too: perturb every parameter, both forwards see it */
      for (size_t i = 0; i < vt.np; i++) vt.p[i] *= 1.01f;
      float *w2 = bm_xmalloc(sizeof(float) * (size_t)B * E);
      bm_vit_acts vb = {0};
      bm_vit_forward(&vt.v, &vb, img, B, w2, NULL);
      bm_vit_train_forward(&vt, &a, img, B, got);
      CHECK(!memcmp(got, w2, sizeof(float) * (size_t)B * E) && memcmp(got, want, sizeof(float) * (size_t)B * E),
            "training forward on changed weights: inference forward's bits on them");
      bm_vit_acts_free(&vb);
      free(w2);
    }
    bm_vt_acts_free(&a);
    bm_vit_train_free(&vt);
  }
  CHECK(ok, "training forward = bm_vit_forward bit for bit (all, last 1, norm+head, frozen)");
  bm_vit_acts_free(&va);
  free(u8), free(img), free(want), free(got);
}

/* The worst gradient error over the reference's tensors; names the worst. */
static double grads_err(const bm_ft *f, const msgpack_object *rec, int *ncmp, char *worst, size_t wl) {
  double e = 0;
  *ncmp = 0;
  for (int i = 0; i < f->vt.nt; i++) {
    const bm_vt_tensor *t = &f->vt.t[i];
    char key[128];
    size_t n, keep = t->n;
    snprintf(key, sizeof key, "d%s", t->name);
    float *want = get(rec, key, &n);
    if (!want) { /* the patch weight: its first 16 output channels */
      snprintf(key, sizeof key, "d%s[:16]", t->name);
      if (!(want = get(rec, key, &n))) continue;
      keep = n;
    }
    const float *g = bm_vit_train_grad(&f->vt, i);
    double r = g && n == keep ? rel_err(g, want, n) : INFINITY;
    if (r >= e) e = r, snprintf(worst, wl, "%s", t->name);
    (*ncmp)++;
    free(want);
  }
  const char *hn[2] = {"dhead.weight", "dhead.bias"};
  const float *hg[2] = {f->gW, f->gb};
  for (int k = 0; k < 2; k++) {
    size_t n;
    float *want = get(rec, hn[k], &n);
    double r = want ? rel_err(hg[k], want, n) : INFINITY;
    if (r >= e) e = r, snprintf(worst, wl, "%s", hn[k]);
    (*ncmp)++;
    free(want);
  }
  return e;
}

/* loss of the current parameters (forward only), in double */
static double loss_at(bm_ft *f, const float *img, const float *Y, int B) {
  bm_ft_logits(f, img, B);
  return bm_ft_loss(f, f->logits, Y, B, NULL);
}

static void torch_case(const bm_model *m, const msgpack_object *rec, int mc) {
  const char *cs = mc ? "multiclass" : "multilabel";
  bm_tensor ti;
  char err[256];
  if (bm_rec_tensor(rec, "images", &ti, err, sizeof err) != 1 || ti.dtype != BM_U8) bm_die("finetune.bmr: images");
  int B = (int)ti.shape[0];
  float *img = images(m, ti.data, B);
  size_t nw, nb, ny;
  float *W = get(rec, "head.weight", &nw), *b = get(rec, "head.bias", &nb), *Y = get(rec, "target", &ny);
  float *pw = mc ? NULL : get(rec, "pos_weight", NULL);
  const msgpack_object *cfg = bm_map_get(rec, "config");
  int C = (int)nb;
  bm_ft f;
  bm_ft_init(&f, &m->vit, -1, 0, C, !mc, pw, W, b, 1e-5, 1e-3, 0.1);
  for (size_t i = 0; i < f.vt.np; i++) f.vt.g[i] = NAN; /* zeroed by the step */
  double loss = bm_ft_grad(&f, img, Y, B), want = num(bm_map_get(rec, "loss"));
  CHECK(isfinite(loss) && fabs(loss - want) <= 1e-5 * fabs(want), "%s: loss %.8f, torch %.8f", cs, loss, want);
  char worst[128] = "-";
  int ncmp;
  double e = grads_err(&f, rec, &ncmp, worst, sizeof worst);
  CHECK(e < 1e-4 && ncmp >= (mc ? f.vt.nt + 2 : 7), "%s: %d parameter gradients equal torch's (worst rel %.2g in %s)",
        cs, ncmp, e, worst);
  if (mc) {
    /* unlock the last block (then none): its tensors, the norm and the
     * projection get the same bits; nothing below has a gradient */
    for (int un = 1; un >= 0; un--) {
      bm_ft u;
      bm_ft_init(&u, &m->vit, un, 0, C, 0, NULL, W, b, 1e-5, 1e-3, 0.1);
      bm_ft_grad(&u, img, Y, B);
      int same = 1, none = 1, trained = 0;
      for (int i = 0; i < u.vt.nt; i++) {
        const float *gu = bm_vit_train_grad(&u.vt, i), *gf = bm_vit_train_grad(&f.vt, i);
        const char *n = u.vt.t[i].name;
        int lower = strstr(n, "blocks.0.") || (un == 0 && strstr(n, "blocks.1.")) || !strstr(n, "blocks.");
        int top = !strstr(n, "blocks.") && !strstr(n, "embed") && !strstr(n, "cls_token");
        if (!gu) none &= lower && !top;
        else trained++, same &= !memcmp(gu, gf, u.vt.t[i].n * sizeof(float)) && (!lower || top);
      }
      CHECK(same && none && trained == 12 * un + 3 && u.opt.nparams == 12 * un + 5,
            "unlock-last %d: %d tensors train, with the full run's gradient bits; the others none", un, trained);
      bm_ft_free(&u);
    }

    { /* a frozen tower: only the head trains, with the same head gradients */
      bm_ft z;
      bm_ft_init(&z, &m->vit, -1, 1, C, 0, NULL, W, b, 1e-5, 1e-3, 0.1);
      double lz = bm_ft_grad(&z, img, Y, B);
      int none = !z.vt.g;
      for (int i = 0; i < z.vt.nt; i++) none &= !bm_vit_train_grad(&z.vt, i);
      CHECK(none && z.opt.nparams == 2 && lz == loss && !memcmp(z.gW, f.gW, sizeof(float) * (size_t)C * f.E) &&
                !memcmp(z.gb, f.gb, sizeof(float) * (size_t)C),
            "frozen tower: the loss and the head's gradients of the full run, no tower gradient");
      bm_ft_free(&z);
    }

    /* finite differences on a few parameters of the whole tower */
    static const char *fd_names[] = {"visual.trunk.patch_embed.proj.weight", "visual.trunk.pos_embed",
                                     "visual.trunk.cls_token", "visual.trunk.blocks.0.attn.qkv.weight",
                                     "visual.trunk.blocks.1.mlp.fc1.bias", "visual.trunk.norm.weight",
                                     "visual.head.proj.weight"};
    double fd_worst = 0;
    int nfd = 0;
    for (int k = 0; k < 7; k++)
      for (int i = 0; i < f.vt.nt; i++) {
        if (strcmp(f.vt.t[i].name, fd_names[k])) continue;
        const bm_vt_tensor *t = &f.vt.t[i];
        const float *g = bm_vit_train_grad(&f.vt, i);
        size_t j = 0; /* the largest gradient of the tensor */
        for (size_t q = 1; q < t->n; q++)
          if (fabsf(g[q]) > fabsf(g[j])) j = q;
        float *p = f.vt.p + t->off + j, keep = *p, h = 1e-2f * fmaxf(fabsf(keep), 0.1f);
        *p = keep + h;
        double lp = loss_at(&f, img, Y, B);
        *p = keep - h;
        double lm = loss_at(&f, img, Y, B);
        *p = keep;
        double fd = (lp - lm) / (2.0 * (double)h), r = fabs(fd - g[j]) / fmax(fabs(g[j]), 1e-3);
        fd_worst = r <= fd_worst ? fd_worst : isnan(r) ? INFINITY : r;
        nfd++;
      }
    CHECK(nfd == 7 && fd_worst < 2e-2, "finite differences on %d tower parameters (worst rel %.2g)", nfd, fd_worst);

    { /* dropout on emb: finite differences of the loss with the same mask
       * (same seed and step) check the tower's gradient through it */
      bm_ft d;
      bm_ft_init(&d, &m->vit, -1, 0, C, 0, NULL, W, b, 1e-5, 1e-3, 0.1);
      d.dropout = 0.3f, d.drop_seed = 77, d.drop_step = 5;
      double ld = bm_ft_grad(&d, img, Y, B);
      int differs = ld != loss && memcmp(d.gW, f.gW, sizeof(float) * (size_t)C * d.E);
      int ti[7];
      size_t tj[7];
      float tg[7];
      int nd = 0;
      for (int k = 0; k < 7; k++)
        for (int i = 0; i < d.vt.nt; i++) {
          if (strcmp(d.vt.t[i].name, fd_names[k])) continue;
          const float *g = bm_vit_train_grad(&d.vt, i);
          size_t j = 0;
          for (size_t q = 1; q < d.vt.t[i].n; q++)
            if (fabsf(g[q]) > fabsf(g[j])) j = q;
          ti[nd] = i, tj[nd] = j, tg[nd] = g[j], nd++;
        }
      double dworst = 0;
      for (int k = 0; k < nd; k++) { /* bm_ft_grad's loss: the dropped forward */
        float *p = d.vt.p + d.vt.t[ti[k]].off + tj[k], keep = *p, h = 1e-2f * fmaxf(fabsf(keep), 0.1f);
        *p = keep + h;
        double lp = bm_ft_grad(&d, img, Y, B);
        *p = keep - h;
        double lm = bm_ft_grad(&d, img, Y, B);
        *p = keep;
        double fd = (lp - lm) / (2.0 * (double)h), r = fabs(fd - tg[k]) / fmax(fabs(tg[k]), 1e-3);
        dworst = r <= dworst ? dworst : isnan(r) ? INFINITY : r;
      }
      CHECK(differs && nd == 7 && dworst < 2e-2,
            "dropout 0.3 on emb: another loss and head gradient; finite differences with the same mask on %d tower "
            "parameters (worst rel %.2g)", nd, dworst);
      bm_ft_free(&d);
    }

    /* 10 AdamW steps on the same batch, torch's groups */
    const msgpack_object *lo = bm_map_get(rec, "losses");
    char *cj = bm_obj_strdup(cfg);
    json_t *jc = cj ? json_loads(cj, 0, NULL) : NULL;
    if (!json_is_object(jc)) bm_die("finetune.bmr: \"config\" is not a JSON object");
    double lr_enc = json_number_value(json_object_get(jc, "lr_encoder"));
    double lr_head = json_number_value(json_object_get(jc, "lr_head"));
    double wd = json_number_value(json_object_get(jc, "weight_decay"));
    json_decref(jc), free(cj);
    bm_ft s;
    bm_ft_init(&s, &m->vit, -1, 0, C, 0, NULL, W, b, lr_enc, lr_head, wd);
    double worst_l = lo && lo->type == MSGPACK_OBJECT_ARRAY && lo->via.array.size == 10 ? 0 : INFINITY;
    for (int k = 0; k < 10 && isfinite(worst_l); k++) {
      double l = bm_ft_grad(&s, img, Y, B), w = num(&lo->via.array.ptr[k]);
      double r = fabs(l - w) / fabs(w);
      worst_l = r <= worst_l ? worst_l : isnan(r) ? INFINITY : r; /* NaN fails */
      bm_adamw_step(&s.opt, 1.0);
    }
    CHECK(worst_l < 1e-4, "10 AdamW steps (tower lr %g, head lr %g, wd %g on matrices): losses equal torch's (worst rel %.2g)",
          lr_enc, lr_head, wd, worst_l);
    bm_ft_free(&s);
  }
  bm_ft_free(&f);
  free(img), free(W), free(b), free(Y), free(pw);
}

int main(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096], err[1024];
  bm_set_threads(2);
  snprintf(path, sizeof path, "%s/fixtures/tiny-model", dir ? dir : "tests");
  bm_model m;
  if (bm_model_load(&m, path, BM_LOAD_VISION, err, sizeof err)) bm_die("%s", err);
  bits_case(&m);
  snprintf(path, sizeof path, "%s/fixtures/finetune.bmr", dir ? dir : "tests");
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *rec;
  int cases = 0;
  while (bm_reader_next(r, &rec) == 1) {
    int mc = bm_obj_is_str(bm_map_get(rec, "case"), "mc");
    if (mc || bm_obj_is_str(bm_map_get(rec, "case"), "ml")) torch_case(&m, rec, mc), cases++;
  }
  CHECK(cases == 2 && !bm_reader_error(r), "both reference cases read (%d)", cases);
  bm_reader_close(r);
  bm_model_free(&m);
  CHECK_DONE();
}
