/* augment.c - random-resized crop and flip (augment.h). */
#include "augment.h"

#include <math.h>
#include <stdlib.h>

#include "resample.h"
#include "util.h"

/* uniform integer in [0, n] */
static int upto(bm_rng *r, int n) { return (int)(bm_rng_uniform(r) * (n + 1)); }

int bm_random_resized_crop(const uint8_t *src, int H, int W, int S, double smin, uint64_t seed, uint8_t *dst) {
  bm_rng r;
  bm_rng_seed(&r, seed);
  double area = (double)H * W, lo = log(3.0 / 4.0), hi = log(4.0 / 3.0);
  int ch = 0, cw = 0, ci = 0, cj = 0;
  for (int t = 0; t < 10 && !ch; t++) {
    double ta = area * (smin + (1 - smin) * bm_rng_uniform(&r));
    double ar = exp(lo + (hi - lo) * bm_rng_uniform(&r));
    int w = (int)lround(sqrt(ta * ar)), h = (int)lround(sqrt(ta / ar));
    if (w > 0 && w <= W && h > 0 && h <= H) ch = h, cw = w, ci = upto(&r, H - h), cj = upto(&r, W - w);
  }
  if (!ch) { /* torchvision's fallback: the whole image clamped to the ratio bounds, centred */
    double ratio = (double)W / H;
    if (ratio < 3.0 / 4.0) cw = W, ch = (int)lround(W / (3.0 / 4.0));
    else if (ratio > 4.0 / 3.0) ch = H, cw = (int)lround(H * (4.0 / 3.0));
    else cw = W, ch = H;
    if (ch > H) ch = H;
    if (cw > W) cw = W;
    ci = (H - ch) / 2, cj = (W - cw) / 2;
  }
  int flip = bm_rng_uniform(&r) < 0.5;
  /* the crop interleaved [ch, cw, 3] for the resampler, then back to planar */
  uint8_t *in = malloc((size_t)ch * cw * 3), *out = malloc((size_t)S * S * 3);
  if (!in || !out) {
    free(in), free(out);
    return -1;
  }
  for (int y = 0; y < ch; y++)
    for (int x = 0; x < cw; x++)
      for (int c = 0; c < 3; c++)
        in[((size_t)y * cw + x) * 3 + c] = src[((size_t)c * H + ci + y) * W + cj + x];
  if (bm_resize_bicubic(in, cw, ch, 3, out, S, S)) {
    free(in), free(out);
    return -1;
  }
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++)
        dst[((size_t)c * S + y) * S + x] = out[((size_t)y * S + (flip ? S - 1 - x : x)) * 3 + c];
  free(in), free(out);
  return 0;
}
