/* test_augment.c - random-resized crop and flip (augment.h): colours kept,
 * crops inside the image, both flips drawn about equally, reproducible. */
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "check.h"
#include "util.h"

int main(void) {
  int H = 60, W = 80, S = 32;
  uint8_t *src = bm_xmalloc((size_t)3 * H * W), *dst = bm_xmalloc((size_t)3 * S * S), *dst2 = bm_xmalloc((size_t)3 * S * S);
  /* channel 0: constant 77; channel 1: 3*x (a left-right ramp); channel 2: 2*y + 10 */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      src[(size_t)y * W + x] = 77;
      src[((size_t)H + y) * W + x] = (uint8_t)(3 * x);
      src[((size_t)2 * H + y) * W + x] = (uint8_t)(2 * y + 10);
    }
  int constant = 1, monotone = 1, flips = 0, range = 1, same = 1, differ = 0;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    memset(dst, 0xAB, (size_t)3 * S * S);
    if (bm_random_resized_crop(src, H, W, S, 0.5, seed, dst)) bm_die("out of memory");
    for (int i = 0; i < S * S; i++) constant &= dst[i] == 77;
    /* the ramp rises or falls along every row, so the crop was flipped or not */
    int inc = dst[(size_t)S * S + S - 1] > dst[(size_t)S * S];
    flips += !inc;
    for (int y = 0; y < S; y++)
      for (int x = 1; x < S; x++) {
        int a = dst[(size_t)S * S + (size_t)y * S + x - 1], b = dst[(size_t)S * S + (size_t)y * S + x];
        monotone &= inc ? b >= a : b <= a;
      }
    for (int i = 0; i < S * S; i++) range &= dst[2 * S * S + i] >= 9 && dst[2 * S * S + i] <= 2 * (H - 1) + 11;
    bm_random_resized_crop(src, H, W, S, 0.5, seed, dst2);
    same &= !memcmp(dst, dst2, (size_t)3 * S * S);
    bm_random_resized_crop(src, H, W, S, 0.5, seed + 1000, dst2);
    differ += !!memcmp(dst, dst2, (size_t)3 * S * S);
  }
  CHECK(constant, "a constant channel stays constant");
  CHECK(monotone, "a left-right ramp stays monotone along every row (a crop, resized, maybe flipped)");
  CHECK(flips > 70 && flips < 130, "flipped in %d of 200 draws", flips);
  CHECK(range, "values stay within the image's (a crop inside it)");
  CHECK(same && differ > 190, "the same seed gives the same bits; other seeds other crops (%d of 200)", differ);
  free(src), free(dst), free(dst2);
  CHECK_DONE();
}
