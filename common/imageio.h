/* imageio.h - encoded image bytes in memory -> the BiomedCLIP input pixels.
 *
 * libvips decodes (PNG, JPEG, TIFF, WebP, GIF, ... whatever it was built
 * with); the resize is Pillow's bicubic (resample.h), so the pixels are
 * those of torchvision's Resize(N, BICUBIC) + CenterCrop(N) + convert("RGB")
 * on a PIL image. Differences from Pillow, by design (see bm-decode(1)):
 * 16-bit grey keeps its high byte (Pillow saturates it to 255 in mode "I"),
 * palette images are expanded before the resize (Pillow resizes "P" with
 * NEAREST), CMYK is converted to sRGB by libvips before the resize. */
#ifndef BM_IMAGEIO_H
#define BM_IMAGEIO_H
#include <stddef.h>
#include <stdint.h>

/* Start libvips for this process (once, before any thread decodes). 0 ok. */
int bm_image_init(const char *argv0);

typedef struct {
  int size; /* short side; 0 keeps the original size */
  int crop; /* 1: center crop to size x size; 0: keep the whole resized image */
} bm_prep;

typedef struct {
  uint8_t *chw; /* RGB, [3][h][w], malloc'd */
  int h, w;
  int src_w, src_h, src_bands, src_bits; /* what the file held */
} bm_pixels;

/* Decode buf and preprocess it. 0 ok; -1 with a reason in err (corrupt or
 * truncated data, unsupported layout). Safe to call from many threads. */
int bm_image_prepare(const void *buf, size_t n, const bm_prep *p, bm_pixels *out, char *err,
                     size_t errlen);

/* The resized size for short side `size`: the long side is
 * int(size * long / short), truncated, as torchvision computes it. */
void bm_resize_dims(int w, int h, int size, int *ow, int *oh);
/* Offset of a centered window: round((total - win) / 2), half to even. */
int bm_center_offset(int total, int win);

/* Whether a member name looks like an image file (by extension). */
int bm_is_image_name(const char *name);
#endif
