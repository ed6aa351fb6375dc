#include "retrieval.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* One tile of S: rows [r0, r0+nr) of img against texts [c0, c0+nc), into
 * out (nr x nc doubles). The float inputs are widened block by block into
 * wa/wb (double) or multiplied as they are (single). */
typedef struct {
  const float *img, *txt;
  size_t d;
  int single;
  double *wa, *wb; /* block x d widened rows (double) */
  float *fs;       /* block x block sgemm result (single) */
  size_t wa_row;   /* first row held in wa, or (size_t)-1 */
} tiler;

static void widen(const float *src, size_t rows, size_t d, double *dst) {
  for (size_t i = 0; i < rows * d; i++) dst[i] = src[i];
}

static void tile(tiler *t, size_t r0, size_t nr, size_t c0, size_t nc, double *out) {
  size_t d = t->d;
  if (t->single) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)d, 1.0f,
                t->img + r0 * d, (int)d, t->txt + c0 * d, (int)d, 0.0f, t->fs, (int)nc);
    for (size_t i = 0; i < nr * nc; i++) out[i] = t->fs[i];
    return;
  }
  if (t->wa_row != r0) {
    widen(t->img + r0 * d, nr, d, t->wa);
    t->wa_row = r0;
  }
  widen(t->txt + c0 * d, nc, d, t->wb);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, (int)d, 1.0, t->wa,
              (int)d, t->wb, (int)d, 0.0, out, (int)nc);
}

/* Add one tile's comparisons to the counts: row i against its true pair's
 * score drow[i] (image queries), column j against dcol[j] (text queries).
 * Rows go to threads; each thread sums its columns apart, then adds them. */
static void count_tile(const double *S, size_t nr, size_t nc, const double *drow, const double *dcol,
                       int64_t *ib, int64_t *it, int64_t *tb, int64_t *tt) {
#pragma omp parallel if (nr * nc >= (size_t)1 << 16) /* small tiles: not worth the threads */
  {
    int64_t *cb = bm_xcalloc(nc, sizeof *cb), *ce = bm_xcalloc(nc, sizeof *ce);
#pragma omp for schedule(static)
    for (size_t i = 0; i < nr; i++) {
      const double *row = S + i * nc;
      double di = drow[i];
      int64_t gt = 0, eq = 0;
#pragma omp simd reduction(+ : gt, eq)
      for (size_t j = 0; j < nc; j++) {
        double s = row[j];
        gt += s > di;
        eq += s == di;
        cb[j] += s > dcol[j]; /* the same score seen from text query j */
        ce[j] += s == dcol[j];
      }
      ib[i] += gt;
      it[i] += eq;
    }
#pragma omp critical
    for (size_t j = 0; j < nc; j++) {
      tb[j] += cb[j];
      tt[j] += ce[j];
    }
    free(cb);
    free(ce);
  }
}

/* OpenBLAS 0.3.21 does not know some recent Xeons by model (a VM may show
 * just "Intel Xeon Processor") and falls back to its SSE3 "Prescott"
 * kernels: 2-4x slower GEMM. The core type can only be chosen in the
 * environment before the library loads, so say how. */
static void check_kernels(void) {
  static const char *fast[] = {"haswell", "skylakex", "cooperlake", "sapphirerapids", "zen"};
  const char *core = openblas_get_corename();
  if (!core || getenv("OPENBLAS_CORETYPE") || !__builtin_cpu_supports("avx2")) return;
  for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++)
    if (strcasecmp(core, fast[i]) == 0) return;
  int avx512 = __builtin_cpu_supports("avx512f");
  bm_warn("OpenBLAS chose its %s kernels on a CPU with %s: GEMM runs 2-4x slower than it can; "
          "set OPENBLAS_CORETYPE=%s", core, avx512 ? "AVX-512" : "AVX2", avx512 ? "SkylakeX" : "Haswell");
}

void bm_retrieval_counts(const float *img, const float *txt, size_t n, size_t d,
                         const bm_retrieval_opts *opt, int64_t *i2t_better, int64_t *i2t_tied,
                         int64_t *t2i_better, int64_t *t2i_tied) {
  if (!opt->quiet) check_kernels();
  size_t B = opt->block ? opt->block : 1024;
  if (B > n) B = n ? n : 1;
  if (d > (size_t)INT32_MAX / 2 || B > 46340) bm_die("retrieval: embedding width %zu or block %zu too large", d, B);
  tiler t = {.img = img, .txt = txt, .d = d, .single = opt->single, .wa_row = (size_t)-1};
  if (t.single) {
    t.fs = bm_xmalloc(bm_mul_size(B * B, sizeof(float)));
  } else {
    t.wa = bm_xmalloc(bm_mul_size(B * d, sizeof(double)));
    t.wb = bm_xmalloc(bm_mul_size(B * d, sizeof(double)));
  }
  double *S = bm_xmalloc(bm_mul_size(B * B, sizeof(double)));
  double *diag = bm_xmalloc(bm_mul_size(n ? n : 1, sizeof(double)));
  memset(i2t_better, 0, n * sizeof *i2t_better);
  memset(i2t_tied, 0, n * sizeof *i2t_tied);
  memset(t2i_better, 0, n * sizeof *t2i_better);
  memset(t2i_tied, 0, n * sizeof *t2i_tied);

  /* The true pairs' scores from the diagonal tiles, computed by the same
   * call (shape and operands) that gives them in the main pass below. */
  for (size_t b = 0; b < n; b += B) {
    size_t nb = n - b < B ? n - b : B;
    tile(&t, b, nb, b, nb, S);
    for (size_t i = 0; i < nb; i++) diag[b + i] = S[i * nb + i];
  }

  bm_progress prog;
  bm_progress_init(&prog, opt->quiet);
  size_t nblk = (n + B - 1) / B, done = 0;
  for (size_t r0 = 0; r0 < n; r0 += B) {
    size_t nr = n - r0 < B ? n - r0 : B;
    for (size_t c0 = 0; c0 < n; c0 += B) {
      size_t nc = n - c0 < B ? n - c0 : B;
      tile(&t, r0, nr, c0, nc, S);
      count_tile(S, nr, nc, diag + r0, diag + c0, i2t_better + r0, i2t_tied + r0, t2i_better + c0,
                 t2i_tied + c0);
      if (r0 == c0) /* the true pairs took part above: take them out */
        for (size_t i = 0; i < nr; i++) {
          double s = S[i * nc + i];
          i2t_better[r0 + i] -= s > diag[r0 + i];
          i2t_tied[r0 + i] -= s == diag[r0 + i];
          t2i_better[r0 + i] -= s > diag[r0 + i];
          t2i_tied[r0 + i] -= s == diag[r0 + i];
        }
      done++;
      bm_progress_update(&prog, "retrieval: tile %zu of %zu", done, nblk * nblk);
    }
  }
  bm_progress_done(&prog);
  free(diag);
  free(S);
  free(t.fs);
  free(t.wa);
  free(t.wb);
}

double bm_recall_at(const int64_t *better, const int64_t *tied, size_t n, int pessimistic, int64_t k) {
  if (n == 0) return 0;
  size_t hit = 0;
  for (size_t i = 0; i < n; i++) hit += better[i] + (pessimistic ? tied[i] : 0) + 1 <= k;
  return (double)hit / (double)n;
}
