/* test_optim.c - losses and AdamW against PyTorch (tests/fixtures/optim.bmr,
 * made by tests/ref/make_optim_fixture.py), and the loss gradients against
 * finite differences on fresh random inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adamw.h"
#include "check.h"
#include "loss.h"
#include "record.h"
#include "util.h"

/* A float32 copy of tensor key (dies when absent: the fixture is ours). */
static float *get(const msgpack_object *rec, const char *key, int64_t *numel, int64_t *shape) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1) bm_die("fixture lacks %s %s", key, err);
  float *v = bm_xmalloc(bm_mul_size((size_t)t.numel + 1, sizeof(float)));
  bm_tensor_to_f32(&t, v);
  if (numel) *numel = t.numel;
  if (shape) memcpy(shape, t.shape, sizeof(int64_t) * (size_t)t.ndim);
  return v;
}

static double max_rel_err(const float *got, const float *want, int64_t n) {
  double scale = 0, err = 0;
  for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (int64_t i = 0; i < n; i++) err = fmax(err, fabs(got[i] - want[i]));
  return err / (scale > 0 ? scale : 1);
}

static void loss_case(const msgpack_object *rec, int bce) {
  int64_t n, shape[8];
  float *x = get(rec, "logits", &n, shape);
  float *y = get(rec, "target", NULL, NULL);
  float *want_loss = get(rec, "loss", NULL, NULL);
  float *want_d = get(rec, "dlogits", NULL, NULL);
  float *pw = bce ? get(rec, "pos_weight", NULL, NULL) : NULL;
  int B = (int)shape[0], C = (int)shape[1];
  float *d = bm_xmalloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) d[i] = NAN; /* poison */
  double loss = bce ? bm_bce_logits(x, y, pw, B, C, d) : bm_softmax_xent(x, y, B, C, d);
  double lerr = fabs(loss - want_loss[0]) / fabs(want_loss[0]);
  double derr = max_rel_err(d, want_d, n);
  CHECK(lerr < 1e-5 && derr < 1e-5, "%s B=%d C=%d equals PyTorch (loss rel %.2g, grad rel %.2g)",
        bce ? "BCE-with-logits + pos_weight" : "softmax cross-entropy", B, C, lerr, derr);
  free(x), free(y), free(want_loss), free(want_d), free(pw), free(d);
}

/* Central differences of the loss in each logit against the analytic gradient. */
static void finite_difference(int bce, bm_rng *rng) {
  int B = 4, C = 5;
  float x[20], y[20], pw[5], d[20];
  for (int i = 0; i < B * C; i++) x[i] = (float)(6 * bm_rng_uniform(rng) - 3);
  for (int i = 0; i < B * C; i++) y[i] = 0;
  for (int b = 0; b < B; b++) {
    if (bce) {
      for (int c = 0; c < C; c++) y[b * C + c] = bm_rng_uniform(rng) < 0.4 ? 1.0f : 0.0f;
    } else {
      y[b * C + (int)(bm_rng_next(rng) % (uint64_t)C)] = 1;
    }
  }
  for (int c = 0; c < C; c++) pw[c] = (float)(0.2 + 5 * bm_rng_uniform(rng));
  for (int i = 0; i < B * C; i++) d[i] = NAN;
  if (bce) bm_bce_logits(x, y, pw, B, C, d);
  else bm_softmax_xent(x, y, B, C, d);
  double worst = 0;
  for (int i = 0; i < B * C; i++) {
    float keep = x[i];
    float hi = keep + 1e-2f, lo = keep - 1e-2f;
    x[i] = hi;
    double lp = bce ? bm_bce_logits(x, y, pw, B, C, NULL) : bm_softmax_xent(x, y, B, C, NULL);
    x[i] = lo;
    double lm = bce ? bm_bce_logits(x, y, pw, B, C, NULL) : bm_softmax_xent(x, y, B, C, NULL);
    x[i] = keep;
    double fd = (lp - lm) / ((double)hi - (double)lo);
    worst = fmax(worst, fabs(fd - d[i]) / fmax(fabs(fd), 1e-3));
  }
  CHECK(worst < 1e-3, "%s gradient equals finite differences (worst rel %.2g)",
        bce ? "BCE" : "cross-entropy", worst);
}

static void adamw_case(const msgpack_object *rec) {
  int64_t ngrad, gshape[8], nn;
  float *grads = get(rec, "grads", &ngrad, gshape);
  float *norms = get(rec, "norms", &nn, NULL);
  float *factors = get(rec, "factors", NULL, NULL);
  int steps = (int)gshape[0], total = (int)gshape[1];
  bm_adamw opt;
  bm_adamw_init(&opt, 0.9, 0.98, 1e-6);
  int enc = bm_adamw_add_group(&opt, 1e-5, 0.1), head = bm_adamw_add_group(&opt, 1e-3, 0.0);
  float *params[3], *want[3], *g[3];
  int64_t n[3];
  int group[3] = {enc, head, head};
  for (int i = 0; i < 3; i++) {
    char key[32];
    snprintf(key, sizeof key, "init%d", i);
    params[i] = get(rec, key, &n[i], NULL);
    snprintf(key, sizeof key, "final%d", i);
    want[i] = get(rec, key, NULL, NULL);
    g[i] = bm_xmalloc(sizeof(float) * (size_t)n[i]);
    static const char *const names[] = {"p0", "p1", "p2"}; /* must outlive opt */
    bm_adamw_add_param(&opt, names[i], params[i], g[i], (size_t)n[i], group[i]);
  }
  double worst_norm = 0, worst_factor = 0;
  for (int t = 0; t < steps; t++) {
    const float *row = grads + (long)t * total;
    for (int i = 0, off = 0; i < 3; off += (int)n[i], i++) memcpy(g[i], row + off, sizeof(float) * (size_t)n[i]);
    double f = bm_cosine_warmup(t, 3, steps);
    worst_factor = fmax(worst_factor, fabs(f - factors[t]));
    double norm = bm_clip_grad_norm(&opt, 1.0);
    worst_norm = fmax(worst_norm, fabs(norm - norms[t]) / norms[t]);
    bm_adamw_step(&opt, f);
  }
  CHECK(worst_factor < 1e-6, "cosine schedule with warm-up equals open_clip's (worst %.2g)", worst_factor);
  CHECK(worst_norm < 1e-5, "gradient norm before clipping equals torch's (worst rel %.2g)", worst_norm);
  double worst = 0;
  for (int i = 0; i < 3; i++) {
    for (int64_t j = 0; j < n[i]; j++)
      worst = fmax(worst, fabs(params[i][j] - want[i][j]) / fmax(fabs(want[i][j]), 1e-3));
  }
  CHECK(worst < 1e-5, "10 AdamW steps, two groups, clipping: parameters equal torch's (worst rel %.2g)", worst);
  for (int i = 0; i < 3; i++) free(params[i]), free(want[i]), free(g[i]);
  free(grads), free(norms), free(factors);
  bm_adamw_free(&opt);
}

int main(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096];
  snprintf(path, sizeof path, "%s/fixtures/optim.bmr", dir ? dir : "tests");
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *rec;
  int cases = 0;
  while (bm_reader_next(r, &rec) == 1) {
    cases++;
    if (bm_obj_is_str(bm_map_get(rec, "case"), "softmax_xent")) loss_case(rec, 0);
    else if (bm_obj_is_str(bm_map_get(rec, "case"), "bce_logits")) loss_case(rec, 1);
    else if (bm_obj_is_str(bm_map_get(rec, "case"), "adamw")) adamw_case(rec);
  }
  CHECK(cases == 6 && !bm_reader_error(r), "all reference cases read (%d)", cases);
  bm_reader_close(r);
  bm_rng rng;
  bm_rng_seed(&rng, (uint64_t)time(NULL));
  finite_difference(0, &rng);
  finite_difference(1, &rng);
  long npos[3] = {10, 1, 0};
  float w[3];
  bm_pos_weight_inverse_freq(npos, 100, 3, w);
  CHECK(w[0] == 9.0f && w[1] == 99.0f && w[2] == 1.0f, "inverse positive frequency: n_neg/n_pos, 1 without positives");
  CHECK_DONE();
}
