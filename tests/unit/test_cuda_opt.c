/* test_cuda_opt.c - the GPU optimizer (common/cuda/bmcuda_opt.h) against
 * the CPU's AdamW and clipping (adamw.h) on fresh random tensors: a resumed
 * state (step 7, random moments), two groups with their own lr and weight
 * decay, three parameters in two gradient buffers, three steps with
 * clipping active and a changing schedule factor, in fp32, bf16 and fp16
 * (the gradients uploaded times the loss scale, as a task's backward makes
 * them). Checked: the norm (1e-6 relative), every parameter's change
 * (1e-4 of the largest change: fp32 vs double rounding in the update), the
 * compute-type copies (the master rounded to bf16/fp16, bit for bit), the moments and
 * step downloaded; fp16 with an inf gradient: the step skipped, nothing
 * changed, the loss scale halved. GPU outputs are poisoned first.
 * Without a GPU (or without nvcc) it prints one "# skip" line. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#ifndef BM_HAVE_CUDA
int main(void) {
  printf("# skip: test_cuda_opt: no GPU (built without CUDA)\n");
  CHECK_DONE();
}
#else

#include "adamw.h"
#include "cuda/bmcuda_opt.h"
#include "util.h"

static bm_rng rng;

static void fill(float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = lo + (float)bm_rng_uniform(&rng) * (hi - lo);
}
static float *dev(bmct_ctx *c, const float *h, size_t n) {
  float *d = (float *)bm_cuda_malloc(n * 4 + 4, "test");
  bmct_upload(c, d, h, n * 4);
  return d;
}
static float *host(bmct_ctx *c, const void *d, int prec, size_t n) {
  float *h = bm_xmalloc(sizeof(float) * n);
  bmct_download_as(c, h, d, prec, n);
  return h;
}
/* max |got-w0 - (want-w0)| / max |want-w0| */
static double change_err(const float *got, const float *want, const float *w0, size_t n) {
  double big = 0, err = 0;
  for (size_t i = 0; i < n; i++) big = fmax(big, fabs((double)want[i] - w0[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY);
  return err / (big > 0 ? big : 1);
}
static double rel_err(const float *got, const float *want, size_t n) {
  double big = 0, err = 0;
  for (size_t i = 0; i < n; i++) big = fmax(big, fabs(want[i]));
  for (size_t i = 0; i < n; i++) err = fmax(err, isfinite(got[i]) ? fabs((double)got[i] - want[i]) : INFINITY);
  return err / (big > 0 ? big : 1);
}

/* x rounded to bf16 / fp16, round to nearest even (finite x) */
static float round_to(int prec, float x) {
  if (prec == BM_PREC_FP16) return (float)(_Float16)x;
  uint32_t u;
  memcpy(&u, &x, 4);
  u += 0x7fff + ((u >> 16) & 1);
  u &= 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

enum { NP = 3 };
static const size_t sizes[NP] = {3001, 64, 777}; /* A, B share gradient buffer 0; C has buffer 1 */

static void run(bmct_ctx *c, int prec) {
  const char *pn = bm_prec_name((bm_prec)prec);
  size_t total = sizes[0] + sizes[1] + sizes[2];
  float *w = bm_xmalloc(sizeof(float) * total), *g = bm_xmalloc(sizeof(float) * total);
  fill(w, total, -1, 1);
  float *w0 = bm_xmalloc(sizeof(float) * total);
  bm_adamw cpu, mirror;
  bm_adamw_init(&cpu, 0.9, 0.98, 1e-6);
  bm_adamw_init(&mirror, 0.9, 0.98, 1e-6);
  for (int k = 0; k < 2; k++) {
    bm_adamw_add_group(&cpu, k ? 5e-4 : 1e-3, k ? 0.0 : 0.1);
    bm_adamw_add_group(&mirror, k ? 5e-4 : 1e-3, k ? 0.0 : 0.1);
  }
  static const char *names[NP] = {"a", "b", "c"};
  float *wm = bm_xmalloc(sizeof(float) * total), *gm = bm_xmalloc(sizeof(float) * total);
  size_t off[NP];
  for (int k = 0, o = 0; k < NP; o += (int)sizes[k], k++) {
    off[k] = (size_t)o;
    bm_adamw_add_param(&cpu, names[k], w + o, g + o, sizes[k], k == 1);
    bm_adamw_add_param(&mirror, names[k], wm + o, gm + o, sizes[k], k == 1);
  }
  /* a resumed run: step 7, moments of earlier steps */
  cpu.step = mirror.step = 7;
  for (int k = 0; k < NP; k++) {
    fill(cpu.params[k].m, sizes[k], -1e-2f, 1e-2f);
    fill(cpu.params[k].v, sizes[k], 1e-6f, 1e-4f);
    memcpy(mirror.params[k].m, cpu.params[k].m, sizes[k] * 4);
    memcpy(mirror.params[k].v, cpu.params[k].v, sizes[k] * 4);
  }
  bmct_opt *o = bmct_opt_new(c, &mirror, prec);
  float *wd = dev(c, w, total), *gd = (float *)bm_cuda_malloc(total * 4, "test");
  void *wc = NULL;
  if (prec != BM_PREC_FP32) {
    wc = bm_cuda_malloc(total * bm_prec_size((bm_prec)prec), "test");
    bmct_poison(c, wc, prec, total);
  }
  /* buffer 0: A and B; buffer 1: C */
  for (int k = 0; k < NP; k++)
    bmct_opt_bind(o, k, wd + off[k], wc ? (char *)wc + off[k] * bm_prec_size((bm_prec)prec) : NULL, gd + off[k]);
  bmct_opt_grads(o, gd, sizes[0] + sizes[1]);
  bmct_opt_grads(o, gd + off[2], sizes[2]);
  float scale = bmct_opt_loss_scale(o);
  CHECK(prec == BM_PREC_FP16 ? scale == 1024.0f : scale == 1.0f, "%s: loss scale %g at first", pn, scale);
  float *gs = bm_xmalloc(sizeof(float) * total);
  for (int s = 0; s < 3; s++) {
    fill(g, total, -0.05f, 0.05f);
    for (size_t i = 0; i < total; i++) gs[i] = g[i] * scale;
    bmct_upload(c, gd, gs, total * 4);
    memcpy(w0, w, sizeof(float) * total);
    double f = 1.0 - 0.3 * s; /* the schedule's factor */
    double want = bm_clip_grad_norm(&cpu, 0.5);
    bm_adamw_step(&cpu, f);
    double got = NAN;
    int took = bmct_opt_step(o, f, 0.5, &got);
    CHECK(took == 1, "%s step %d taken", pn, s + 1);
    CHECK(want > 0.5 && fabs(got - want) <= 1e-6 * want, "%s step %d: norm %.9f vs CPU %.9f (clipping active)", pn,
          s + 1, got, want);
    float *wg = host(c, wd, BM_PREC_FP32, total);
    double e = change_err(wg, w, w0, total);
    CHECK(e <= 1e-4, "%s step %d: parameter changes, max error %.2e of the largest change (limit 1e-4)", pn, s + 1, e);
    if (wc) { /* the copy is the master rounded to prec (nearest even), bit for bit */
      float *wcg = host(c, wc, prec, total);
      size_t bad = 0, first = 0;
      for (size_t i = 0; i < total; i++)
        if (!(wcg[i] == round_to(prec, wg[i])) && !bad++) first = i;
      CHECK(!bad, "%s step %d: compute copy = rounded master (%zu differ; first [%zu] %.9g for %.9g)", pn, s + 1, bad,
            first, wcg[first], wg[first]);
      free(wcg);
    }
    free(wg);
  }
  /* the moments and the step back into the mirror */
  for (int k = 0; k < NP; k++) /* poisoned: the download must write every value */
    for (size_t i = 0; i < sizes[k]; i++) mirror.params[k].m[i] = mirror.params[k].v[i] = NAN;
  bmct_opt_download(o, &mirror);
  double em = 0, ev = 0;
  for (int k = 0; k < NP; k++) {
    em = fmax(em, rel_err(mirror.params[k].m, cpu.params[k].m, sizes[k]));
    ev = fmax(ev, rel_err(mirror.params[k].v, cpu.params[k].v, sizes[k]));
  }
  CHECK(em <= 1e-5 && ev <= 1e-5, "%s: moments downloaded, errors m %.2e v %.2e (limit 1e-5)", pn, em, ev);
  CHECK(mirror.step == 10, "%s: step count %ld after 3 steps from 7", pn, mirror.step);
  if (prec == BM_PREC_FP16) { /* an overflowed backward: skipped, nothing moves, the scale halves */
    float *before = host(c, wd, BM_PREC_FP32, total);
    gs[5] = INFINITY;
    bmct_upload(c, gd, gs, total * 4);
    double nrm = 0;
    int took = bmct_opt_step(o, 1.0, 0.5, &nrm);
    float *after = host(c, wd, BM_PREC_FP32, total);
    CHECK(took == 0 && !isfinite(nrm), "fp16: an inf gradient skips the step (took %d, norm %g)", took, nrm);
    CHECK(!memcmp(before, after, sizeof(float) * total), "fp16: the skipped step changed no parameter");
    CHECK(bmct_opt_loss_scale(o) == scale / 2, "fp16: loss scale %g -> %g", scale, bmct_opt_loss_scale(o));
    bmct_opt_download(o, &mirror);
    CHECK(mirror.step == 10, "fp16: the skipped step is not counted (%ld)", mirror.step);
    free(before), free(after);
  }
  bmct_opt_free(o);
  bm_cuda_free(wd), bm_cuda_free(gd), bm_cuda_free(wc);
  bm_adamw_free(&cpu), bm_adamw_free(&mirror);
  free(w), free(g), free(w0), free(wm), free(gm), free(gs);
}

int main(void) {
  char err[512];
  bm_cuda *cu = bm_cuda_open("cuda", err, sizeof err);
  if (!cu) {
    printf("# skip: test_cuda_opt: no GPU (%s)\n", err);
    return 0;
  }
  uint64_t seed = (uint64_t)(bm_now() * 1e9);
  printf("# seed %llu\n", (unsigned long long)seed);
  bm_rng_seed(&rng, seed);
  bmct_ctx *c = bmct_ctx_new(cu);
  int precs[3] = {BM_PREC_FP32, BM_PREC_BF16, BM_PREC_FP16};
  for (int k = 0; k < 3; k++) run(c, precs[k]);
  bmct_ctx_free(c);
  bm_cuda_close(cu);
  CHECK_DONE();
}
#endif
