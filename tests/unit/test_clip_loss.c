/* test_clip_loss.c - CLIP's symmetric contrastive loss: against PyTorch
 * (tests/fixtures/clip_loss.bmr from tests/ref/make_clip_loss_fixture.py),
 * its three gradients against central finite differences on fresh random
 * L2-normalized rows, against a plain double implementation, large logits
 * (scale 100, near-identical rows), the thread count, and the clamp. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "clip_loss.h"
#include "kernels.h"
#include "record.h"
#include "util.h"

static float *get(const msgpack_object *rec, const char *key, int64_t *shape) {
  bm_tensor t;
  char err[256];
  if (bm_rec_tensor(rec, key, &t, err, sizeof err) != 1) bm_die("fixture lacks %s %s", key, err);
  float *v = bm_xmalloc(bm_mul_size((size_t)t.numel + 1, sizeof(float)));
  bm_tensor_to_f32(&t, v);
  if (shape) memcpy(shape, t.shape, sizeof(int64_t) * (size_t)t.ndim);
  return v;
}

static double max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
  return m;
}

/* worst |got - want| relative to the largest |want| */
static double rel_err(const float *got, const float *want, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)got[i] - want[i]));
  double s = max_abs(want, n);
  return e / (s > 0 ? s : 1);
}

static int all_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

static void poison(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = NAN;
}

static void unit_rows(bm_rng *rng, float *x, int B, int E) {
  for (int i = 0; i < B; i++) {
    double n = 0;
    for (int e = 0; e < E; e++) {
      /* sum of uniforms: roughly normal, so the directions are spread */
      double v = bm_rng_uniform(rng) + bm_rng_uniform(rng) + bm_rng_uniform(rng) - 1.5;
      x[i * E + e] = (float)v;
      n += v * v;
    }
    for (int e = 0; e < E; e++) x[i * E + e] = (float)(x[i * E + e] / sqrt(n));
  }
}

static int torch_cases(void) {
  const char *dir = getenv("BM_TESTS");
  char path[4096];
  snprintf(path, sizeof path, "%s/fixtures/clip_loss.bmr", dir ? dir : "tests");
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *rec;
  int cases = 0;
  while (bm_reader_next(r, &rec) == 1) {
    int64_t shape[8];
    float *img = get(rec, "img", shape), *txt = get(rec, "txt", NULL);
    float *ls = get(rec, "log_scale", NULL), *wdi = get(rec, "dimg", NULL),
          *wdt = get(rec, "dtxt", NULL), *wdl = get(rec, "dlog_scale", NULL);
    double want = NAN;
    if (bm_obj_number(bm_map_get(rec, "loss"), &want) != 0) bm_die("fixture lacks loss");
    int B = (int)shape[0], E = (int)shape[1];
    size_t n = (size_t)B * E;
    float *di = bm_xmalloc(n * sizeof *di), *dt = bm_xmalloc(n * sizeof *dt), dl = NAN;
    poison(di, n), poison(dt, n);
    double loss = bm_clip_loss(img, txt, B, E, ls[0], di, dt, &dl);
    double ei = rel_err(di, wdi, n), et = rel_err(dt, wdt, n);
    double el = fabs(dl - wdl[0]) / fmax(fabs(wdl[0]), 1e-3);
    CHECK(fabs(loss - want) <= 1e-6 * fmax(1, fabs(want)) && ei < 1e-5 && et < 1e-5 && el < 1e-5,
          "torch B=%d E=%d scale %.3g: loss %.9g vs %.9g, dimg rel %.2g, dtxt rel %.2g, dlog_scale %.7g vs %.7g",
          B, E, exp(ls[0]), loss, want, ei, et, dl, wdl[0]);
    free(img), free(txt), free(ls), free(wdi), free(wdt), free(wdl), free(di), free(dt);
    cases++;
  }
  int bad = bm_reader_error(r);
  bm_reader_close(r);
  return bad ? -1 : cases;
}

/* Every input of dimg/dtxt (a random sample of 60 for the larger B) and the
 * log scale against central differences of the returned loss. */
static void finite_differences(bm_rng *rng, int B) {
  int E = 4 + (int)(bm_rng_next(rng) % 13);
  float ls = (float)(2.0 * bm_rng_uniform(rng)); /* scale 1 .. 7.4 */
  size_t n = (size_t)B * E;
  float *img = bm_xmalloc(n * sizeof *img), *txt = bm_xmalloc(n * sizeof *txt);
  float *di = bm_xmalloc(n * sizeof *di), *dt = bm_xmalloc(n * sizeof *dt), dl = NAN;
  unit_rows(rng, img, B, E), unit_rows(rng, txt, B, E);
  poison(di, n), poison(dt, n);
  bm_clip_loss(img, txt, B, E, ls, di, dt, &dl);
  double worst = 0, gmax = fmax(max_abs(di, n), max_abs(dt, n));
  int probes = n <= 60 ? (int)n * 2 : 120;
  for (int k = 0; k < probes; k++) {
    int which = n <= 60 ? k / (int)n : (int)(bm_rng_next(rng) % 2);
    size_t at = n <= 60 ? (size_t)k % n : bm_rng_next(rng) % n;
    float *x = which ? txt : img;
    const float *g = which ? dt : di;
    float keep = x[at], h = 2e-3f;
    x[at] = keep + h;
    double hi = (double)x[at], lp = bm_clip_loss(img, txt, B, E, ls, NULL, NULL, NULL);
    x[at] = keep - h;
    double lo = (double)x[at], lm = bm_clip_loss(img, txt, B, E, ls, NULL, NULL, NULL);
    x[at] = keep;
    worst = fmax(worst, fabs((lp - lm) / (hi - lo) - g[at]));
  }
  float h = 1e-3f;
  double lp = bm_clip_loss(img, txt, B, E, ls + h, NULL, NULL, NULL);
  double lm = bm_clip_loss(img, txt, B, E, ls - h, NULL, NULL, NULL);
  double fd = (lp - lm) / ((double)(ls + h) - (double)(ls - h));
  CHECK(all_finite(di, n) && all_finite(dt, n) && worst <= 2e-3 * fmax(gmax, 1e-2),
        "B=%d E=%d scale %.2f: dimg, dtxt equal finite differences (worst %.2g, largest gradient %.2g)",
        B, E, exp(ls), worst, gmax);
  CHECK(fabs(fd - dl) <= 2e-3 * fmax(fabs(fd), 1e-2),
        "B=%d: dlog_scale %.7g equals finite difference %.7g", B, dl, fd);
  free(img), free(txt), free(di), free(dt);
}

/* The loss and gradients in plain double, straight from the definition. */
static double naive(const float *img, const float *txt, int B, int E, double scale, double *dimg,
                    double *dtxt, double *dls) {
  double *L = calloc((size_t)B * B, sizeof *L), *G = calloc((size_t)B * B, sizeof *G);
  for (int i = 0; i < B; i++)
    for (int j = 0; j < B; j++) {
      double s = 0;
      for (int e = 0; e < E; e++) s += (double)img[i * E + e] * txt[j * E + e];
      L[i * B + j] = scale * s;
    }
  double loss = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < B; i++) {
      /* pass 0: row i; pass 1: column i */
#define AT(k) (pass ? L[(k) * B + i] : L[i * B + (k)])
      double mx = AT(0), sum = 0;
      for (int k = 1; k < B; k++) mx = fmax(mx, AT(k));
      for (int k = 0; k < B; k++) sum += exp(AT(k) - mx);
      double lse = mx + log(sum);
      loss += (lse - L[i * B + i]) / (2.0 * B);
      for (int k = 0; k < B; k++) {
        double p = exp(AT(k) - lse) - (k == i);
        if (pass) G[k * B + i] += p / (2.0 * B);
        else G[i * B + k] += p / (2.0 * B);
      }
#undef AT
    }
  *dls = 0;
  for (size_t k = 0; k < (size_t)B * B; k++) *dls += G[k] * L[k];
  for (int i = 0; i < B; i++)
    for (int e = 0; e < E; e++) {
      double a = 0, b = 0;
      for (int j = 0; j < B; j++) {
        a += G[i * B + j] * txt[j * E + e];
        b += G[j * B + i] * img[j * E + e];
      }
      dimg[i * E + e] = scale * a;
      dtxt[i * E + e] = scale * b;
    }
  free(L), free(G);
  return loss;
}

static void against_naive(bm_rng *rng, int B, int E, float ls, int near_identical) {
  size_t n = (size_t)B * E;
  float *img = bm_xmalloc(n * sizeof *img), *txt = bm_xmalloc(n * sizeof *txt);
  float *di = bm_xmalloc(n * sizeof *di), *dt = bm_xmalloc(n * sizeof *dt), dl = NAN;
  double *ri = bm_xmalloc(n * sizeof *ri), *rt = bm_xmalloc(n * sizeof *rt), rl;
  unit_rows(rng, img, B, E), unit_rows(rng, txt, B, E);
  if (near_identical) { /* every row the same direction up to 1e-3: logits all near scale */
    for (int i = 0; i < B; i++)
      for (int e = 0; e < E; e++) {
        img[i * E + e] = img[e] + 1e-3f * img[i * E + e];
        txt[i * E + e] = img[e] + 1e-3f * txt[i * E + e];
      }
    /* renormalize */
    for (int i = 0; i < B; i++)
      for (int w = 0; w < 2; w++) {
        float *x = (w ? txt : img) + (size_t)i * E;
        double s = 0;
        for (int e = 0; e < E; e++) s += (double)x[e] * x[e];
        for (int e = 0; e < E; e++) x[e] = (float)(x[e] / sqrt(s));
      }
  }
  poison(di, n), poison(dt, n);
  double loss = bm_clip_loss(img, txt, B, E, ls, di, dt, &dl);
  double want = naive(img, txt, B, E, exp((double)ls), ri, rt, &rl);
  double e = 0, s = 0;
  for (size_t k = 0; k < n; k++) {
    e = fmax(e, fmax(fabs(di[k] - ri[k]), fabs(dt[k] - rt[k])));
    s = fmax(s, fmax(fabs(ri[k]), fabs(rt[k])));
  }
  /* float dot products times scale 100: logits exact to ~1e-5 absolute */
  double tol = ls > 4 ? 1e-4 : 1e-5;
  CHECK(isfinite(loss) && all_finite(di, n) && all_finite(dt, n) && isfinite(dl) &&
            fabs(loss - want) <= tol * fmax(1, fabs(want)) && e <= 20 * tol * fmax(s, 1e-3) &&
            fabs(dl - rl) <= 20 * tol * fmax(fabs(rl), 1e-2),
        "B=%d E=%d scale %.4g%s: loss %.9g vs double %.9g, gradients worst %.2g of %.2g, dlog_scale %.6g vs %.6g",
        B, E, exp(ls), near_identical ? " near-identical rows" : "", loss, want, e, s, dl, rl);
  free(img), free(txt), free(di), free(dt), free(ri), free(rt);
}

int main(void) {
  bm_set_threads(0);
  uint64_t seed = (uint64_t)time(NULL);
  printf("# seed %llu\n", (unsigned long long)seed);
  bm_rng rng;
  bm_rng_seed(&rng, seed);

  int cases = torch_cases();
  CHECK(cases == 5, "all torch reference cases read (%d)", cases);

  int Bs[] = {1, 2, 7, 33};
  for (int k = 0; k < 4; k++) finite_differences(&rng, Bs[k]);

  against_naive(&rng, 70, 24, (float)BM_CLIP_LOG_SCALE_INIT, 0);
  against_naive(&rng, 130, 8, (float)BM_CLIP_LOG_SCALE_MAX, 0);
  against_naive(&rng, 64, 32, (float)BM_CLIP_LOG_SCALE_MAX, 1);

  /* Opposed rows make logits from -100 to +100; the naive exp would
   * overflow far sooner at larger scales: scale e^8 ~ 2981 stays finite. */
  {
    enum { B = 40, E = 6 };
    float img[B * E], txt[B * E], di[B * E], dt[B * E], dl = NAN;
    unit_rows(&rng, img, B, E);
    for (int i = 0; i < B * E; i++) txt[i] = (i / E) % 2 ? -img[i] : img[i];
    poison(di, B * E), poison(dt, B * E);
    double loss = bm_clip_loss(img, txt, B, E, 8.0f, di, dt, &dl);
    CHECK(isfinite(loss) && loss >= 0 && all_finite(di, B * E) && all_finite(dt, B * E) && isfinite(dl),
          "scale e^8, logits of both signs: loss %.6g and gradients finite", loss);
  }

  /* thread count: same loss (rows and columns are reduced in a fixed order) */
  {
    enum { B = 300, E = 20 };
    float *img = bm_xmalloc(sizeof(float) * B * E), *txt = bm_xmalloc(sizeof(float) * B * E);
    float *d1 = bm_xmalloc(sizeof(float) * B * E), *d2 = bm_xmalloc(sizeof(float) * B * E);
    unit_rows(&rng, img, B, E), unit_rows(&rng, txt, B, E);
    float l1s, l2s;
    bm_set_threads(1);
    double l1 = bm_clip_loss(img, txt, B, E, 3.0f, d1, NULL, &l1s);
    bm_set_threads(2);
    double l2 = bm_clip_loss(img, txt, B, E, 3.0f, d2, NULL, &l2s);
    bm_set_threads(0);
    CHECK(l1 == l2 && l1s == l2s && rel_err(d1, d2, (size_t)B * E) < 1e-6,
          "1 and 2 threads: loss %.17g vs %.17g, dlog_scale %.9g vs %.9g", l1, l2, l1s, l2s);
    free(img), free(txt), free(d1), free(d2);
  }

  /* NULL outputs are allowed; B = 0 is an empty batch */
  {
    float img[8], txt[8], dl = NAN;
    unit_rows(&rng, img, 2, 4), unit_rows(&rng, txt, 2, 4);
    double a = bm_clip_loss(img, txt, 2, 4, 1.0f, NULL, NULL, NULL);
    double b = bm_clip_loss(img, txt, 2, 4, 1.0f, NULL, NULL, &dl);
    CHECK(a == b && isfinite(dl), "NULL gradient pointers: same loss %.9g", a);
    dl = NAN;
    CHECK(bm_clip_loss(img, txt, 0, 4, 1.0f, NULL, NULL, &dl) == 0 && dl == 0, "B = 0: loss 0");
  }

  CHECK(bm_clip_clamp_log_scale(-0.5f) == 0.0f && bm_clip_clamp_log_scale(2.5f) == 2.5f &&
            bm_clip_clamp_log_scale(7.0f) == (float)BM_CLIP_LOG_SCALE_MAX &&
            fabsf(expf(bm_clip_clamp_log_scale(9.0f)) - 100.0f) < 1e-4f &&
            isnan(bm_clip_clamp_log_scale(NAN)),
        "clamp to [0, ln 100] as open_clip after each step");
  CHECK(fabs(exp(BM_CLIP_LOG_SCALE_INIT) - 1 / 0.07) < 1e-9, "initial log scale is log(1/0.07)");
  CHECK_DONE();
}
