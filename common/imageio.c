/* imageio.c - see imageio.h. */
#include "imageio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <vips/vips.h>

#include "resample.h"

static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {
  (void)domain, (void)level, (void)msg, (void)data; /* the failure itself is reported */
}

int bm_image_init(const char *argv0) {
  if (VIPS_INIT(argv0 ? argv0 : "bm")) return -1;
  g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet_log, NULL);
  /* the caller runs one decode per core; libvips' own threads would only
   * oversubscribe, and its operation cache would hold every image */
  vips_concurrency_set(1);
  vips_cache_set_max(0);
  vips_cache_set_max_mem(0);
  return 0;
}

void bm_resize_dims(int w, int h, int size, int *ow, int *oh) {
  if (w <= h) {
    *ow = size;
    *oh = (int)((double)((long long)size * h) / w);
  } else {
    *oh = size;
    *ow = (int)((double)((long long)size * w) / h);
  }
}

int bm_center_offset(int total, int win) {
  return (int)nearbyint((total - win) / 2.0); /* default rounding: half to even */
}

int bm_is_image_name(const char *name) {
  static const char *ext[] = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp",
                              ".webp", ".gif", ".jp2", ".pgm", ".ppm", NULL};
  const char *dot = strrchr(name, '.');
  if (!dot || strchr(dot, '/')) return 0;
  for (int i = 0; ext[i]; i++)
    if (!strcasecmp(dot, ext[i])) return 1;
  return 0;
}

static void vips_reason(char *err, size_t errlen, const char *what) {
  char *v = vips_error_buffer_copy(); /* takes and clears it under libvips' lock */
  char one[512];
  snprintf(one, sizeof one, "%s", v && *v ? v : "unknown error");
  g_free(v);
  for (char *s = one; *s; s++)
    if (*s == '\n') *s = *(s + 1) ? ';' : 0; /* one line per problem */
  snprintf(err, errlen, "%s: %s", what, one);
}

/* libvips image -> interleaved 8-bit pixels of 1..4 bands (malloc'd). */
static uint8_t *to_u8(VipsImage *im, int *w, int *h, int *c, int *bits, char *err, size_t errlen) {
  VipsImage *cur = im, *t = NULL;
  g_object_ref(cur);
  if (vips_image_get_interpretation(cur) == VIPS_INTERPRETATION_CMYK) {
    if (vips_colourspace(cur, &t, VIPS_INTERPRETATION_sRGB, NULL)) goto fail;
    g_object_unref(cur), cur = t;
  }
  VipsBandFormat fmt = vips_image_get_format(cur);
  *bits = fmt == VIPS_FORMAT_UCHAR ? 8 : fmt == VIPS_FORMAT_USHORT ? 16 : 0;
  if (fmt != VIPS_FORMAT_UCHAR && fmt != VIPS_FORMAT_USHORT) {
    if (vips_cast(cur, &t, VIPS_FORMAT_UCHAR, NULL)) goto fail;
    g_object_unref(cur), cur = t;
  }
  int bands = vips_image_get_bands(cur);
  if (bands < 1 || bands > 4) {
    snprintf(err, errlen, "unsupported image: %d bands", bands);
    g_object_unref(cur);
    return NULL;
  }
  size_t n = 0;
  void *mem = vips_image_write_to_memory(cur, &n); /* decoding happens here */
  int iw = vips_image_get_width(cur), ih = vips_image_get_height(cur);
  g_object_unref(cur);
  if (!mem) {
    vips_reason(err, errlen, "cannot decode");
    return NULL;
  }
  size_t npx = (size_t)iw * ih * bands;
  if (fmt == VIPS_FORMAT_USHORT) { /* keep the high byte, as Pillow's ";16B" modes do */
    const uint16_t *s = mem;
    uint8_t *d = malloc(npx ? npx : 1);
    if (d)
      for (size_t i = 0; i < npx; i++) d[i] = (uint8_t)(s[i] >> 8);
    g_free(mem);
    if (!d) snprintf(err, errlen, "out of memory");
    mem = d;
  }
  /* 8-bit: the caller frees mem with free(), which is right for g_malloc'd
   * memory since GLib 2.46 (g_malloc is the system malloc) */
  *w = iw, *h = ih, *c = bands;
  return mem;
fail:
  g_object_unref(cur);
  vips_reason(err, errlen, "cannot convert");
  return NULL;
}

int bm_image_prepare(const void *buf, size_t n, const bm_prep *p, bm_pixels *out, char *err,
                     size_t errlen) {
  memset(out, 0, sizeof *out);
  VipsImage *im = vips_image_new_from_buffer(buf, n, "", "access", VIPS_ACCESS_SEQUENTIAL,
                                             "fail_on", VIPS_FAIL_ON_ERROR, NULL);
  if (!im) {
    vips_reason(err, errlen, "not a readable image");
    return -1;
  }
  int w, h, c, bits;
  uint8_t *px = to_u8(im, &w, &h, &c, &bits, err, errlen);
  g_object_unref(im);
  if (!px) return -1;
  out->src_w = w, out->src_h = h, out->src_bands = c, out->src_bits = bits;

  int rw = w, rh = h;
  if (p->size > 0) bm_resize_dims(w, h, p->size, &rw, &rh);
  if (rw < 1 || rh < 1) {
    free(px);
    snprintf(err, errlen, "image %dx%d too thin to resize to short side %d", w, h, p->size);
    return -1;
  }
  uint8_t *rs = px;
  if (rw != w || rh != h) {
    int alpha = c == 2 || c == 4;
    /* Pillow resizes LA/RGBA as premultiplied La/RGBa, then converts back */
    if (alpha) bm_premultiply(px, (long)w * h, c);
    rs = malloc((size_t)rw * rh * c);
    if (!rs || bm_resize_bicubic(px, w, h, c, rs, rw, rh)) {
      free(px), free(rs);
      snprintf(err, errlen, "out of memory resizing %dx%d", w, h);
      return -1;
    }
    free(px);
    if (alpha) bm_unpremultiply(rs, (long)rw * rh, c);
  }
  int ow = rw, oh = rh, x0 = 0, y0 = 0;
  if (p->size > 0 && p->crop) {
    ow = oh = p->size;
    x0 = bm_center_offset(rw, ow);
    y0 = bm_center_offset(rh, oh);
  }
  uint8_t *chw = malloc((size_t)3 * ow * oh);
  if (!chw) {
    free(rs);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  /* to RGB, planar: grey is replicated, alpha dropped without compositing */
  for (int ch = 0; ch < 3; ch++) {
    int src = c >= 3 ? ch : 0;
    uint8_t *d = chw + (size_t)ch * ow * oh;
    for (int y = 0; y < oh; y++) {
      const uint8_t *s = rs + ((size_t)(y + y0) * rw + x0) * c + src;
      for (int x = 0; x < ow; x++) d[(size_t)y * ow + x] = s[(size_t)x * c];
    }
  }
  free(rs);
  out->chw = chw, out->w = ow, out->h = oh;
  return 0;
}
