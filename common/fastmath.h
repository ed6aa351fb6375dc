/* fastmath.h - exp and erf written out so that loops over them vectorize
 * (libm's expf and erff are scalar calls, several times slower in the
 * element-wise layers). Both are accurate to a few float ulps of the
 * result's scale: exp relative 1e-7 (Cody-Waite reduction by ln 2, Cephes
 * polynomial), erf absolute 1.5e-7 (Abramowitz & Stegun 7.1.26). */
#ifndef BM_FASTMATH_H
#define BM_FASTMATH_H

#include <stdint.h>

/* e^x; 0 below -87, clamped to e^88 above. */
static inline float bm_fast_expf(float x) {
  float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  /* n = round(x / ln 2) by adding and removing 1.5 * 2^23 (vectorizes) */
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f; /* ln 2 split in two for exactness */
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  union { float f; int32_t i; } s;
  s.i = ((int32_t)n + 127) << 23;
  return x < -87.0f ? 0.0f : p * s.f;
}

/* erf(z) = 1 - t P(t) e^{-z^2}, t = 1 / (1 + 0.3275911 |z|), odd in z.
 * e^{-z^2} is passed in (the caller often needs it too). */
static inline float bm_fast_erff_e(float z, float exp_mz2) {
  float az = z < 0 ? -z : z;
  float t = 1.0f / (1.0f + 0.3275911f * az);
  float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
               t * (-1.453152027f + t * 1.061405429f))));
  float e = 1.0f - poly * exp_mz2;
  return z < 0 ? -e : e;
}

/* GELU, erf form: 0.5 x (1 + erf(x / sqrt 2)); the one arithmetic of the
 * inference and training forwards, so they give the same bits. */
static inline float bm_fast_gelu(float x) {
  float z = x * 0.70710678118654752f;
  return 0.5f * x * (1.0f + bm_fast_erff_e(z, bm_fast_expf(-z * z)));
}

#endif
