/* resample.h - Pillow's bicubic resize, bit for bit, on 8-bit images.
 *
 * Pillow (Image.resize with BICUBIC, the path torchvision's Resize takes for
 * PIL images and so BiomedCLIP's preprocessing) resizes separably: a
 * horizontal pass into an 8-bit buffer, then a vertical pass, each a
 * convolution with the a=-0.5 cubic kernel stretched by the downscale factor
 * (antialiasing), weights normalised to sum 1 and then rounded to 22-bit
 * fixed point. This file reimplements that arithmetic so the pixels equal
 * Pillow's; tests/bench/pillow_compare.py and tests/t-decode-pixels.sh check it. */
#ifndef BM_RESAMPLE_H
#define BM_RESAMPLE_H
#include <stdint.h>

/* Resize an interleaved image of c channels (1..4), w x h, into ow x oh.
 * Channels are independent (premultiply alpha first, as Pillow does).
 * out must hold ow*oh*c bytes. Returns 0, or -1 when out of memory. */
int bm_resize_bicubic(const uint8_t *in, int w, int h, int c, uint8_t *out, int ow, int oh);

/* Pillow's alpha conversions around a resize (RGBA <-> RGBa, LA <-> La):
 * premultiply with MULDIV255, undo with 255*v/a clipped. The colour channels
 * are 0..c-2, alpha is the last one; c is 2 or 4. */
void bm_premultiply(uint8_t *px, long npix, int c);
void bm_unpremultiply(uint8_t *px, long npix, int c);
#endif
