/* test_kernels.c - the layer functions against plain double-precision loops:
 * both ways of splitting a GEMM over threads, the fused bias/GELU/residual
 * epilogues, LayerNorm, softmax, GELU against erf, masked attention over
 * packed sequences of different lengths, and the im2col patch embedding.
 * Inputs are fresh random numbers and outputs are poisoned before each run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cblas.h>

#include "check.h"
#include "kernels.h"
#include "util.h"

static bm_rng rng;

static float *rnd(size_t n, float scale) {
  float *p = bm_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = (float)((bm_rng_uniform(&rng) * 2 - 1) * scale);
  return p;
}

static float *poisoned(size_t n) {
  float *p = bm_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = NAN;
  return p;
}

static double maxdiff(const float *a, const double *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= m)) m = isnan(d) ? INFINITY : d;
  }
  return m;
}

static double gelu_ref(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

static void test_linear(int N, int in, int out, int threads) {
  bm_set_threads(threads);
  float *x = rnd((size_t)N * in, 1), *W = rnd((size_t)out * in, 0.2f), *b = rnd(out, 1);
  float *y0 = rnd((size_t)N * out, 1);
  double *ref = bm_xmalloc(sizeof(double) * (size_t)N * out);
  for (int i = 0; i < N; i++)
    for (int o = 0; o < out; o++) {
      double s = b[o];
      for (int k = 0; k < in; k++) s += (double)x[(size_t)i * in + k] * W[(size_t)o * in + k];
      ref[(size_t)i * out + o] = s;
    }
  float *y = poisoned((size_t)N * out);
  bm_linear(y, x, W, b, N, in, out);
  CHECK(maxdiff(y, ref, (size_t)N * out) < 1e-4, "linear %dx%d->%d, %d threads", N, in, out, threads);
  memcpy(y, y0, sizeof(float) * (size_t)N * out);
  bm_linear_residual(y, x, W, b, N, in, out);
  double *r2 = bm_xmalloc(sizeof(double) * (size_t)N * out);
  for (size_t i = 0; i < (size_t)N * out; i++) r2[i] = ref[i] + y0[i];
  CHECK(maxdiff(y, r2, (size_t)N * out) < 1e-4, "linear + residual %dx%d->%d", N, in, out);
  for (size_t i = 0; i < (size_t)N * out; i++) r2[i] = gelu_ref(ref[i]);
  free(y);
  y = poisoned((size_t)N * out);
  bm_linear_gelu(y, x, W, b, N, in, out);
  CHECK(maxdiff(y, r2, (size_t)N * out) < 1e-4, "linear + bias + GELU %dx%d->%d", N, in, out);
  free(x), free(W), free(b), free(y0), free(y), free(ref), free(r2);
}

static void test_gelu_softmax_ln(void) {
  size_t n = 20001;
  float *x = rnd(n, 12);
  double *ref = bm_xmalloc(sizeof(double) * n);
  for (size_t i = 0; i < n; i++) ref[i] = gelu_ref(x[i]);
  bm_gelu(x, n);
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(x[i] - ref[i]) / (1 + fabs(ref[i]));
    m = d > m || isnan(d) ? d : m;
  }
  CHECK(m < 5e-7, "GELU within 5e-7 (relative) of the erf form: %.3g", m);
  free(x);
  x = rnd(333, 30);
  x[5] = -1e30f; /* a masked score */
  for (size_t i = 0; i < 333; i++) ref[i] = exp((double)x[i]);
  double s = 0;
  for (size_t i = 0; i < 333; i++) s += ref[i];
  for (size_t i = 0; i < 333; i++) ref[i] /= s;
  bm_softmax(x, 333);
  CHECK(maxdiff(x, ref, 333) < 1e-6 && x[5] == 0.0f, "softmax (a -1e30 score gives 0)");
  free(x);
  int N = 37, C = 96;
  x = rnd((size_t)N * C, 3);
  float *g = rnd(C, 1), *b = rnd(C, 1), *y = poisoned((size_t)N * C);
  for (int i = 0; i < N; i++) x[(size_t)i * C] += 100; /* a large offset: two-pass variance */
  for (int i = 0; i < N; i++) {
    double mu = 0, var = 0;
    for (int j = 0; j < C; j++) mu += x[(size_t)i * C + j];
    mu /= C;
    for (int j = 0; j < C; j++) var += (x[(size_t)i * C + j] - mu) * (x[(size_t)i * C + j] - mu);
    var /= C;
    for (int j = 0; j < C; j++) ref[(size_t)i * C + j] = (x[(size_t)i * C + j] - mu) / sqrt(var + 1e-6) * g[j] + b[j];
  }
  bm_layernorm(y, x, g, b, N, C, 1e-6f);
  CHECK(maxdiff(y, ref, (size_t)N * C) < 1e-4, "layernorm");
  bm_layernorm(x, x, g, b, N, C, 1e-6f);
  CHECK(maxdiff(x, ref, (size_t)N * C) < 1e-4, "layernorm in place");
  float v[4] = {3, 0, -4, 0}, z[4] = {0, 0, 0, 0};
  bm_l2_normalize(v, 1, 4);
  bm_l2_normalize(z, 1, 4);
  CHECK(fabsf(v[0] - 0.6f) < 1e-7 && fabsf(v[2] + 0.8f) < 1e-7 && z[0] == 0, "l2 normalize (zero stays zero)");
  free(x), free(g), free(b), free(y), free(ref);
}

static void test_attention(int heads, int threads, int masked) {
  bm_set_threads(threads);
  int C = 24 * heads, nseq = 4, len[4] = {1, 7, 19, 5}, start[4], N = 0;
  for (int s = 0; s < nseq; s++) start[s] = N, N += len[s];
  float *qkv = rnd((size_t)N * 3 * C, 2), *out = poisoned((size_t)N * C);
  uint8_t *keep = NULL;
  if (masked) {
    keep = bm_xmalloc((size_t)N);
    for (int n = 0; n < N; n++) keep[n] = (n % 3) != 2;
  }
  double *ref = bm_xmalloc(sizeof(double) * (size_t)N * C), *p = bm_xmalloc(sizeof(double) * 32);
  int hd = C / heads;
  for (int s = 0; s < nseq; s++)
    for (int h = 0; h < heads; h++)
      for (int i = 0; i < len[s]; i++) {
        const float *q = qkv + (size_t)(start[s] + i) * 3 * C + h * hd;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < len[s]; j++) {
          const float *k = qkv + (size_t)(start[s] + j) * 3 * C + C + h * hd;
          double d = 0;
          for (int c = 0; c < hd; c++) d += (double)q[c] * k[c];
          p[j] = keep && !keep[start[s] + j] ? -INFINITY : d / sqrt(hd);
          mx = p[j] > mx ? p[j] : mx;
        }
        for (int j = 0; j < len[s]; j++) sum += p[j] = isinf(p[j]) ? 0 : exp(p[j] - mx);
        for (int c = 0; c < hd; c++) {
          double o = 0;
          for (int j = 0; j < len[s]; j++) o += p[j] / sum * qkv[(size_t)(start[s] + j) * 3 * C + 2 * C + h * hd + c];
          ref[(size_t)(start[s] + i) * C + h * hd + c] = o;
        }
      }
  float *scratch = bm_xmalloc(sizeof(float) * bm_attention_scratch(19));
  bm_attention(out, qkv, start, len, nseq, C, heads, keep, scratch);
  CHECK(maxdiff(out, ref, (size_t)N * C) < 1e-5, "attention, %d heads, %d threads%s", heads, threads,
        masked ? ", masked keys" : "");
  free(qkv), free(out), free(keep), free(ref), free(p), free(scratch);
}

static void test_patch_embed(void) {
  int B = 3, S = 32, P = 8, C = 20, G = S / P, K = 3 * P * P;
  float *img = rnd((size_t)B * 3 * S * S, 1), *W = rnd((size_t)C * K, 0.1f), *b = rnd(C, 1);
  float *cols = poisoned((size_t)B * G * G * K), *y = poisoned((size_t)B * G * G * C);
  double *ref = bm_xmalloc(sizeof(double) * (size_t)B * G * G * C);
  for (int i = 0; i < B; i++)
    for (int gy = 0; gy < G; gy++)
      for (int gx = 0; gx < G; gx++)
        for (int o = 0; o < C; o++) {
          double s = b[o];
          for (int c = 0; c < 3; c++)
            for (int ky = 0; ky < P; ky++)
              for (int kx = 0; kx < P; kx++)
                s += (double)W[((size_t)o * 3 + c) * P * P + ky * P + kx] *
                     img[(((size_t)i * 3 + c) * S + gy * P + ky) * S + gx * P + kx];
          ref[((size_t)(i * G + gy) * G + gx) * C + o] = s;
        }
  bm_patch_embed(y, img, W, b, cols, B, S, P, C);
  CHECK(maxdiff(y, ref, (size_t)B * G * G * C) < 1e-4, "patch embedding (conv as im2col + GEMM)");
  free(img), free(W), free(b), free(cols), free(y), free(ref);
}

/* After bm_blas_init, a CPU with AVX2 never runs OpenBLAS's SSE3 fallback. */
static void test_blas_core(void) {
  const char *core = openblas_get_corename();
  __builtin_cpu_init();
  int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  int generic = !strcasecmp(core, "Prescott") || !strcasecmp(core, "Core2") ||
                !strcasecmp(core, "Nehalem") || !strcasecmp(core, "Sandybridge");
  const char *env = getenv("OPENBLAS_CORETYPE");
  /* a user's own choice of kernels is kept, whatever it is */
  int users = env && strcasecmp(env, "Haswell") && strcasecmp(env, "SkylakeX") && strcasecmp(env, "Cooperlake");
  CHECK(!(avx2 && generic) || users, "OpenBLAS kernels: %s (OPENBLAS_CORETYPE=%s)", core, env ? env : "unset");
}

int main(int argc, char **argv) {
  (void)argc;
  bm_blas_init(argv);
  test_blas_core();
  bm_rng_seed(&rng, (uint64_t)time(NULL));
  test_linear(200, 48, 40, 2);  /* many rows: split by rows */
  test_linear(3, 64, 300, 2);   /* a short prompt: split by output columns */
  test_linear(17, 33, 29, 1);
  test_gelu_softmax_ln();
  test_attention(3, 2, 0);
  test_attention(2, 1, 1);
  test_attention(1, 2, 1);
  test_patch_embed();
  CHECK_DONE();
}
