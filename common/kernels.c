/* kernels.c - CPU layer functions (see kernels.h). */
#include "kernels.h"

#include "fastmath.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The element-wise kernels are compiled for the baseline and for AVX2+FMA and
 * AVX-512 machines; the loader picks one at start-up (GNU ifunc). */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define BM_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define BM_CLONES
#endif

void bm_blas_init(char **argv) {
  if (getenv("OPENBLAS_CORETYPE")) return;
  static const char *const generic[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                        "Atom", "Sandybridge", "Katmai", "Northwood", "Banias"};
  const char *core = openblas_get_corename();
  int fallback = 0;
  for (size_t i = 0; core && i < sizeof generic / sizeof *generic; i++)
    fallback |= strcasecmp(core, generic[i]) == 0;
  if (!fallback) return;
  const char *want = NULL;
#if defined(__x86_64__)
  __builtin_cpu_init();
  int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  /* Cooperlake: SkylakeX's sgemm plus the bfloat16 kernels (sbgemm) */
  if (avx512 && __builtin_cpu_supports("avx512bf16"))
    want = "Cooperlake";
  else if (avx512)
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    want = "Haswell";
#endif
  if (!want || strcasecmp(core, want) == 0) return;
  if (setenv("OPENBLAS_CORETYPE", want, 1)) return;
  execv("/proc/self/exe", argv);
  /* no re-exec possible: run on, slower */
}

void bm_set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
  openblas_set_num_threads(1);
}

int bm_threads(void) { return omp_get_max_threads(); }

/* ---- GEMM split over threads ----
 * Many rows: each thread takes a band of rows (weights packed once per thread,
 * negligible next to the rows' work). Few rows (a short prompt): each thread
 * takes a band of output columns instead, so no thread idles. */
enum { EPI_NONE, EPI_BIAS, EPI_BIAS_GELU };

static void bias_gelu_rows(float *y, int ldy, const float *b, int rows, int cols, int gelu);

static void linear_part(float *y, const float *x, const float *W, const float *b, int N, int in,
                        int out, float beta, int epi) {
  int nt = omp_get_max_threads();
  if (nt > 1 && omp_in_parallel()) nt = 1;
  int by_rows = N >= 32 * nt || out < 64 * nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int t = omp_get_thread_num(), n = omp_get_num_threads();
    int total = by_rows ? N : out;
    int unit = by_rows ? 8 : 16; /* keep bands aligned to whole SIMD rows */
    int chunks = (total + unit - 1) / unit;
    int c0 = (int)((long)chunks * t / n), c1 = (int)((long)chunks * (t + 1) / n);
    int i0 = c0 * unit, i1 = c1 * unit < total ? c1 * unit : total;
    if (i1 > i0) {
      if (by_rows) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, i1 - i0, out, in, 1.0f,
                    x + (size_t)i0 * in, in, W, in, beta, y + (size_t)i0 * out, out);
        if (epi != EPI_NONE) bias_gelu_rows(y + (size_t)i0 * out, out, b, i1 - i0, out, epi == EPI_BIAS_GELU);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, i1 - i0, in, 1.0f, x, in,
                    W + (size_t)i0 * in, in, beta, y + i0, out);
        if (epi != EPI_NONE) bias_gelu_rows(y + i0, out, b ? b + i0 : NULL, N, i1 - i0, epi == EPI_BIAS_GELU);
      }
    }
  }
}

void bm_linear(float *y, const float *x, const float *W, const float *b, int N, int in, int out) {
  linear_part(y, x, W, b, N, in, out, 0.0f, b ? EPI_BIAS : EPI_NONE);
}

void bm_linear_gelu(float *y, const float *x, const float *W, const float *b, int N, int in,
                    int out) {
  linear_part(y, x, W, b, N, in, out, 0.0f, EPI_BIAS_GELU);
}

void bm_linear_residual(float *y, const float *x, const float *W, const float *b, int N, int in,
                        int out) {
  linear_part(y, x, W, b, N, in, out, 1.0f, b ? EPI_BIAS : EPI_NONE);
}

BM_CLONES static void bias_gelu_rows(float *y, int ldy, const float *b, int rows, int cols,
                                     int gelu) {
  for (int i = 0; i < rows; i++) {
    float *r = y + (size_t)i * ldy;
    if (b && gelu) {
#pragma omp simd
      for (int j = 0; j < cols; j++) r[j] = bm_fast_gelu(r[j] + b[j]);
    } else if (b) {
#pragma omp simd
      for (int j = 0; j < cols; j++) r[j] += b[j];
    } else if (gelu) {
#pragma omp simd
      for (int j = 0; j < cols; j++) r[j] = bm_fast_gelu(r[j]);
    }
  }
}

void bm_gelu(float *x, size_t n) {
  /* in pieces, so that the vectorized clones do the work (an OpenMP region's
   * body is outlined and not cloned) */
  const size_t piece = 4096;
#pragma omp parallel for schedule(static) if (n > 16 * piece && !omp_in_parallel())
  for (size_t i = 0; i < n; i += piece)
    bias_gelu_rows(x + i, 0, NULL, 1, (int)(n - i < piece ? n - i : piece), 1);
}

BM_CLONES void bm_add(float *y, const float *x, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; i++) y[i] += x[i];
}

BM_CLONES void bm_softmax(float *x, int n) {
  float m = -INFINITY;
  /* a max reduction the compiler may vectorize (a plain loop stays a serial
   * chain of scalar max: two thirds of the softmax's time) */
#pragma omp simd reduction(max : m)
  for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; i++) {
    x[i] = bm_fast_expf(x[i] - m);
    s += x[i];
  }
  float inv = 1.0f / s;
#pragma omp simd
  for (int i = 0; i < n; i++) x[i] *= inv;
}

/* One row; mean and rstd (may be NULL) keep what the backward needs. */
BM_CLONES static void layernorm_row(float *y, float *mean_out, float *rstd_out, const float *x,
                                    const float *g, const float *b, int C, float eps) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < C; j++) s += x[j];
  float mean = s / (float)C, v = 0.0f;
#pragma omp simd reduction(+ : v)
  for (int j = 0; j < C; j++) v += (x[j] - mean) * (x[j] - mean);
  float rstd = 1.0f / sqrtf(v / (float)C + eps);
#pragma omp simd
  for (int j = 0; j < C; j++) y[j] = (x[j] - mean) * rstd * g[j] + b[j];
  if (mean_out) *mean_out = mean;
  if (rstd_out) *rstd_out = rstd;
}

void bm_layernorm(float *y, const float *x, const float *g, const float *b, int N, int C,
                  float eps) {
#pragma omp parallel for schedule(static) if (N >= 16 && !omp_in_parallel())
  for (int i = 0; i < N; i++)
    layernorm_row(y + (size_t)i * C, NULL, NULL, x + (size_t)i * C, g, b, C, eps);
}

void bm_layernorm_train(float *y, float *mean, float *rstd, const float *x, const float *g,
                        const float *b, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if (N >= 16 && !omp_in_parallel())
  for (int i = 0; i < N; i++)
    layernorm_row(y + (size_t)i * C, mean + i, rstd + i, x + (size_t)i * C, g, b, C, eps);
}

void bm_l2_normalize(float *x, int N, int C) {
  for (int i = 0; i < N; i++) {
    float *r = x + (size_t)i * C;
    double s = 0;
    for (int j = 0; j < C; j++) s += (double)r[j] * r[j];
    float nrm = (float)sqrt(s);
    float d = nrm > 1e-12f ? nrm : 1e-12f;
    for (int j = 0; j < C; j++) r[j] /= d;
  }
}

/* ---- attention ---- */
size_t bm_attention_scratch(int maxlen) {
  return (size_t)omp_get_max_threads() * (size_t)maxlen * (size_t)maxlen;
}

void bm_attention(float *out, const float *qkv, const int *start, const int *len, int nseq,
                  int C, int heads, const uint8_t *key_keep, float *scratch) {
  int hd = C / heads, ld = 3 * C;
  int maxlen = 0;
  for (int s = 0; s < nseq; s++) maxlen = len[s] > maxlen ? len[s] : maxlen;
  float scale = 1.0f / sqrtf((float)hd);
  /* Dynamic: texts of different lengths make unequal work items. */
#pragma omp parallel for schedule(dynamic, 1)
  for (int job = 0; job < nseq * heads; job++) {
    int s = job / heads, h = job % heads, T = len[s];
    float *S = scratch + (size_t)omp_get_thread_num() * maxlen * maxlen; /* [T,T] */
    const float *q = qkv + (size_t)start[s] * ld + h * hd;
    const float *k = q + C, *v = q + 2 * C;
    /* S[T,T] = scale * q[T,hd] @ k[T,hd]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, S, T);
    for (int i = 0; i < T; i++) {
      float *row = S + (size_t)i * T;
      if (key_keep) /* as HuggingFace: the most negative float added, exp underflows to 0 */
        for (int j = 0; j < T; j++)
          if (!key_keep[start[s] + j]) row[j] = -3.4028235e38f;
      bm_softmax(row, T);
    }
    /* out[T,hd] = S[T,T] @ v[T,hd] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, S, T, v, ld, 0.0f,
                out + (size_t)start[s] * C + h * hd, C);
  }
}

/* ---- patch embedding ---- */
void bm_patch_embed(float *y, const float *img, const float *W, const float *b, float *cols,
                    int B, int S, int P, int C) {
  int G = S / P, K = 3 * P * P;
  /* cols[(b*G + gy)*G + gx, c*P*P + ky*P + kx] = img[b, c, gy*P+ky, gx*P+kx] */
#pragma omp parallel for collapse(2) schedule(static)
  for (int bi = 0; bi < B; bi++)
    for (int gy = 0; gy < G; gy++)
      for (int gx = 0; gx < G; gx++) {
        float *dst = cols + ((size_t)(bi * G + gy) * G + gx) * K;
        for (int c = 0; c < 3; c++)
          for (int ky = 0; ky < P; ky++)
            memcpy(dst + (c * P + ky) * P,
                   img + (((size_t)bi * 3 + c) * S + (size_t)gy * P + ky) * S + (size_t)gx * P,
                   sizeof(float) * (size_t)P);
      }
  bm_linear(y, cols, W, b, B * G * G, K, C);
}
