/* resample.c - see resample.h. The arithmetic mirrors Pillow's
 * libImaging/Resample.c (precompute_coeffs, normalize_coeffs_8bpc, the 8bpc
 * passes); the code is this project's own. */
#include "resample.h"

#include <math.h>
#ifdef __SSE4_1__
#include <smmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#define PREC 22 /* 32 - 8 - 2: room for the negative lobes and overshoot */

static double cubic(double x) { /* a = -0.5 */
  const double a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/* One axis: for each output index, the first input index, the tap count and
 * ksize fixed-point weights. Returns ksize, 0 when out of memory. */
static int coeffs(int in_size, int out_size, int **boundsp, int32_t **kkp) {
  double scale = (double)in_size / out_size;
  double fscale = scale < 1 ? 1 : scale;
  double support = 2.0 * fscale;
  int ksize = (int)ceil(support) * 2 + 1;
  int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
  int32_t *kk = malloc(sizeof(int32_t) * (size_t)ksize * (size_t)out_size);
  double *w = malloc(sizeof(double) * (size_t)ksize);
  if (!bounds || !kk || !w) {
    free(bounds), free(kk), free(w);
    return 0;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale, sum = 0;
    /* (int) truncates toward zero, as Pillow's "round" does */
    int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
    if (xmin < 0) xmin = 0;
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      w[x] = cubic((x + xmin - center + 0.5) / fscale);
      sum += w[x];
    }
    int32_t *k = kk + (size_t)xx * ksize;
    for (int x = 0; x < ksize; x++) {
      double v = x < xmax ? (sum != 0 ? w[x] / sum : w[x]) : 0;
      k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PREC) : 0.5 + v * (1 << PREC));
    }
    bounds[2 * xx] = xmin;
    bounds[2 * xx + 1] = xmax;
  }
  free(w);
  *boundsp = bounds;
  *kkp = kk;
  return ksize;
}

static inline uint8_t clip8(int32_t ss) {
  int v = ss >> PREC; /* arithmetic shift: floor, as Pillow's table lookup */
  return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* rows [y0, y0+nrows) of in (w wide) -> out (ow wide, nrows rows). Inlined
 * with c a constant below, so the compiler unrolls the channel loop. */
static inline void pass_h_c(const uint8_t *in, int w, const int c, int y0, int nrows, uint8_t *out,
                            int ow, const int *bounds, const int32_t *kk, int ksize) {
  for (int y = 0; y < nrows; y++) {
    const uint8_t *row = in + (size_t)(y0 + y) * w * c;
    uint8_t *orow = out + (size_t)y * ow * c;
    for (int xx = 0; xx < ow; xx++) {
      int xmin = bounds[2 * xx], n = bounds[2 * xx + 1];
      const int32_t *k = kk + (size_t)xx * ksize;
      for (int ch = 0; ch < c; ch++) {
        int32_t ss = 1 << (PREC - 1);
        const uint8_t *p = row + (size_t)xmin * c + ch;
        for (int x = 0; x < n; x++) ss += p[(size_t)x * c] * k[x];
        orow[xx * c + ch] = clip8(ss);
      }
    }
  }
}

#ifdef __SSE4_1__
/* Grey (NIH's case): four taps at a time. Integer sums are exact in any
 * order, so this equals the scalar loop and Pillow. */
static void pass_h_grey(const uint8_t *in, int w, int y0, int nrows, uint8_t *out, int ow,
                        const int *bounds, const int32_t *kk, int ksize) {
  for (int y = 0; y < nrows; y++) {
    const uint8_t *row = in + (size_t)(y0 + y) * w;
    uint8_t *orow = out + (size_t)y * ow;
    for (int xx = 0; xx < ow; xx++) {
      int xmin = bounds[2 * xx], n = bounds[2 * xx + 1], x = 0;
      const int32_t *k = kk + (size_t)xx * ksize;
      const uint8_t *p = row + xmin;
      __m128i acc = _mm_setzero_si128();
      for (; x + 4 <= n; x += 4) {
        int32_t four;
        memcpy(&four, p + x, 4);
        __m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(four));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_loadu_si128((const __m128i *)(k + x))));
      }
      acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
      acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
      int32_t ss = (1 << (PREC - 1)) + _mm_cvtsi128_si32(acc);
      for (; x < n; x++) ss += p[x] * k[x];
      orow[xx] = clip8(ss);
    }
  }
}
#endif

static void pass_h(const uint8_t *in, int w, int c, int y0, int nrows, uint8_t *out, int ow,
                   const int *bounds, const int32_t *kk, int ksize) {
  switch (c) {
#ifdef __SSE4_1__
  case 1: pass_h_grey(in, w, y0, nrows, out, ow, bounds, kk, ksize); break;
#else
  case 1: pass_h_c(in, w, 1, y0, nrows, out, ow, bounds, kk, ksize); break;
#endif
  case 2: pass_h_c(in, w, 2, y0, nrows, out, ow, bounds, kk, ksize); break;
  case 3: pass_h_c(in, w, 3, y0, nrows, out, ow, bounds, kk, ksize); break;
  default: pass_h_c(in, w, 4, y0, nrows, out, ow, bounds, kk, ksize); break;
  }
}

static void pass_v(const uint8_t *in, int w, int c, uint8_t *out, int oh, const int *bounds,
                   const int32_t *kk, int ksize) {
  size_t stride = (size_t)w * c;
  int32_t *acc = malloc(sizeof(int32_t) * stride);
  for (int yy = 0; yy < oh; yy++) {
    int ymin = bounds[2 * yy], n = bounds[2 * yy + 1];
    const int32_t *k = kk + (size_t)yy * ksize;
    uint8_t *orow = out + (size_t)yy * stride;
    if (acc) { /* row-wise accumulation: the same sums, cache-friendly order */
      for (size_t i = 0; i < stride; i++) acc[i] = 1 << (PREC - 1);
      for (int y = 0; y < n; y++) {
        const uint8_t *row = in + (size_t)(ymin + y) * stride;
        int32_t ky = k[y];
        for (size_t i = 0; i < stride; i++) acc[i] += row[i] * ky;
      }
      for (size_t i = 0; i < stride; i++) orow[i] = clip8(acc[i]);
    } else {
      for (size_t i = 0; i < stride; i++) {
        int32_t ss = 1 << (PREC - 1);
        for (int y = 0; y < n; y++) ss += in[(size_t)(ymin + y) * stride + i] * k[y];
        orow[i] = clip8(ss);
      }
    }
  }
  free(acc);
}

int bm_resize_bicubic(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh) {
  int need_h = ow != w, need_v = oh != h;
  if (!need_h && !need_v) {
    memcpy(out, in, (size_t)w * h * c);
    return 0;
  }
  int *bv = NULL, *bh = NULL;
  int32_t *kv = NULL, *kh = NULL;
  int ksv = 0, ksh = 0;
  uint8_t *tmp = NULL;
  int rc = -1;
  if (need_v && !(ksv = coeffs(h, oh, &bv, &kv))) goto done;
  if (need_h) {
    if (!(ksh = coeffs(w, ow, &bh, &kh))) goto done;
    if (!need_v) {
      pass_h(in, w, c, 0, h, out, ow, bh, kh, ksh);
      rc = 0;
      goto done;
    }
    /* only the rows the vertical pass will read */
    int first = bv[0], last = bv[2 * (oh - 1)] + bv[2 * (oh - 1) + 1];
    if (!(tmp = malloc((size_t)ow * c * (size_t)(last - first)))) goto done;
    pass_h(in, w, c, first, last - first, tmp, ow, bh, kh, ksh);
    for (int i = 0; i < oh; i++) bv[2 * i] -= first;
    pass_v(tmp, ow, c, out, oh, bv, kv, ksv);
  } else {
    pass_v(in, w, c, out, oh, bv, kv, ksv);
  }
  rc = 0;
done:
  free(bv), free(kv), free(bh), free(kh), free(tmp);
  return rc;
}

void bm_premultiply(uint8_t *px, long npix, int c) {
  for (long i = 0; i < npix; i++, px += c) {
    unsigned a = px[c - 1];
    for (int ch = 0; ch < c - 1; ch++) {
      unsigned t = px[ch] * a + 128;
      px[ch] = (uint8_t)(((t >> 8) + t) >> 8);
    }
  }
}

void bm_unpremultiply(uint8_t *px, long npix, int c) {
  for (long i = 0; i < npix; i++, px += c) {
    unsigned a = px[c - 1];
    if (a == 0 || a == 255) continue;
    for (int ch = 0; ch < c - 1; ch++) {
      unsigned v = 255u * px[ch] / a;
      px[ch] = (uint8_t)(v > 255 ? 255 : v);
    }
  }
}
