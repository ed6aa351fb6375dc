/* weights.c - bm_weights_load: what -m points at, to named tensors.
 * Decides between folder, torch.save zip and safetensors, then fills the
 * config and vocab from the files that travel with the weights. */
#define _GNU_SOURCE
#include "weights.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weights_int.h"

#define SIDE_MAX ((size_t)64 << 20) /* config, vocab.txt, tokenizer.json */

void *bm_w_alloc(size_t nbytes) {
  size_t n = (nbytes + 63) & ~(size_t)63;
  if (n < nbytes) return NULL;
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
  return p;
}

int bm_w_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

void bm_w_free_tensors(bm_weights *ws) {
  for (int i = 0; i < ws->n; i++) {
    free(ws->w[i].name);
    free(ws->w[i].data);
  }
  free(ws->w);
  ws->w = NULL;
  ws->n = 0;
}

void bm_weights_free(bm_weights *ws) {
  if (!ws) return;
  bm_w_free_tensors(ws);
  free(ws->config_json);
  free(ws->vocab);
  free(ws->source);
  memset(ws, 0, sizeof *ws);
}

const char *bm_wdtype_name(bm_wdtype t) {
  static const char *const names[] = {"f32", "f16", "bf16", "i64", "i32", "u8"};
  return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

size_t bm_wdtype_size(bm_wdtype t) {
  static const size_t sizes[] = {4, 2, 2, 8, 4, 1};
  return (unsigned)t < sizeof sizes / sizeof sizes[0] ? sizes[t] : 0;
}

const bm_weight *bm_weights_get(const bm_weights *ws, const char *name) {
  for (int i = 0; i < ws->n; i++)
    if (!strcmp(ws->w[i].name, name)) return &ws->w[i];
  return NULL;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
  size_t o = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < ndim && o < cap; d++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? "," : "", (long long)shape[d]);
  if (o < cap) snprintf(buf + o, cap - o, "]");
}

const bm_weight *bm_weights_expect(const bm_weights *ws, const char *name, int ndim,
                                   const int64_t *shape, char *err, size_t errlen) {
  const bm_weight *w = bm_weights_get(ws, name);
  if (!w) {
    bm_w_err(err, errlen, "%s: tensor %s is missing", ws->source ? ws->source : "model", name);
    return NULL;
  }
  int ok = w->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = shape[d] < 0 || shape[d] == w->shape[d];
  if (ok) return w;
  char got[160], want[160];
  shape_str(got, sizeof got, w->ndim, w->shape);
  shape_str(want, sizeof want, ndim, shape);
  bm_w_err(err, errlen, "%s: tensor %s has shape %s, expected %s (-1: any)",
           ws->source ? ws->source : "model", name, got, want);
  return NULL;
}

void bm_weights_list(const bm_weights *ws, FILE *f) {
  for (int i = 0; i < ws->n; i++) {
    char sh[160];
    shape_str(sh, sizeof sh, ws->w[i].ndim, ws->w[i].shape);
    fprintf(f, "%s %s %s %zu\n", ws->w[i].name, bm_wdtype_name(ws->w[i].dtype), sh, ws->w[i].nbytes);
  }
}

static float half_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | man << 13;
  } else if (exp) {
    bits = sign | (exp + 112) << 23 | man << 13;
  } else if (man) { /* subnormal: normalize */
    int e = -1;
    do { man <<= 1; e++; } while (!(man & 0x400));
    bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
  } else {
    bits = sign;
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

float *bm_weight_to_f32(const bm_weight *w) {
  if (w->dtype != BM_W_F32 && w->dtype != BM_W_F16 && w->dtype != BM_W_BF16) return NULL;
  if ((uint64_t)w->numel > SIZE_MAX / 4) return NULL;
  float *out = bm_w_alloc((size_t)w->numel * 4);
  if (!out) return NULL;
  const uint16_t *h = w->data;
  if (w->dtype == BM_W_F32)
    memcpy(out, w->data, (size_t)w->numel * 4);
  else if (w->dtype == BM_W_F16)
    for (int64_t i = 0; i < w->numel; i++) out[i] = half_to_f32(h[i]);
  else
    for (int64_t i = 0; i < w->numel; i++) {
      uint32_t bits = (uint32_t)h[i] << 16;
      memcpy(&out[i], &bits, 4);
    }
  return out;
}

/* A whole side file; 0 with *buf NULL when it does not exist. */
static int read_side(const char *path, char **buf, size_t *len, char *err, size_t errlen) {
  *buf = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : bm_w_err(err, errlen, "%s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > SIDE_MAX) {
    close(fd);
    return bm_w_err(err, errlen, "%s: not a regular file of at most %zu bytes", path, SIDE_MAX);
  }
  char *b = malloc((size_t)sb.st_size + 1);
  size_t got = 0;
  while (b && got < (size_t)sb.st_size) {
    ssize_t r = read(fd, b + got, (size_t)sb.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (!b || got != (size_t)sb.st_size) {
    free(b);
    return bm_w_err(err, errlen, "%s: cannot read", path);
  }
  b[got] = 0;
  *buf = b;
  if (len) *len = got;
  return 0;
}

/* tokenizer.json's model.vocab {token: id} as vocab.txt text in id order */
static int vocab_from_tokenizer_json(const char *path, const char *text, size_t n, char **vocab,
                                     size_t *vlen, char *err, size_t errlen) {
  json_error_t je;
  json_t *root = json_loadb(text, n, 0, &je);
  if (!root) return bm_w_err(err, errlen, "%s: line %d: %s", path, je.line, je.text);
  json_t *model = json_object_get(root, "model"), *v = json_object_get(model, "vocab"),
         *type = json_object_get(model, "type");
  int rc = 0;
  const char **tok = NULL;
  if (!json_is_object(v) || (type && (!json_is_string(type) || strcmp(json_string_value(type), "WordPiece")))) {
    rc = bm_w_err(err, errlen, "%s: no WordPiece model.vocab object", path);
    goto out;
  }
  size_t count = json_object_size(v), total = 0;
  tok = calloc(count + 1, sizeof *tok);
  if (!tok) {
    rc = bm_w_err(err, errlen, "%s: out of memory", path);
    goto out;
  }
  const char *key;
  json_t *id;
  json_object_foreach(v, key, id) {
    json_int_t i = json_is_integer(id) ? json_integer_value(id) : -1;
    if (i < 0 || (size_t)i >= count || tok[i]) {
      rc = bm_w_err(err, errlen, "%s: vocab id of %s is not a unique id below %zu", path, key, count);
      goto out;
    }
    if (strpbrk(key, "\r\n")) {
      rc = bm_w_err(err, errlen, "%s: vocab token with a line break", path);
      goto out;
    }
    tok[i] = key;
    total += strlen(key) + 1;
  }
  char *out = malloc(total + 1), *p = out;
  if (!out) {
    rc = bm_w_err(err, errlen, "%s: out of memory", path);
    goto out;
  }
  for (size_t i = 0; i < count; i++) {
    size_t l = strlen(tok[i]);
    memcpy(p, tok[i], l);
    p[l] = '\n';
    p += l + 1;
  }
  *p = 0;
  *vocab = out;
  *vlen = total;
out:
  free(tok);
  json_decref(root);
  return rc;
}

/* config and vocab from dir, where the weights left them NULL */
static int companions(const char *dir, bm_weights *ws, char *err, size_t errlen) {
  char p[PATH_MAX];
  if (!ws->config_json) {
    if (snprintf(p, sizeof p, "%s/open_clip_config.json", dir) >= (int)sizeof p) return bm_w_err(err, errlen, "%s: path too long", dir);
    if (read_side(p, &ws->config_json, NULL, err, errlen)) return -1;
  }
  if (!ws->vocab) {
    if (snprintf(p, sizeof p, "%s/vocab.txt", dir) >= (int)sizeof p) return bm_w_err(err, errlen, "%s: path too long", dir);
    if (read_side(p, &ws->vocab, &ws->vocab_len, err, errlen)) return -1;
  }
  if (!ws->vocab) {
    char *tj;
    size_t n;
    if (snprintf(p, sizeof p, "%s/tokenizer.json", dir) >= (int)sizeof p) return bm_w_err(err, errlen, "%s: path too long", dir);
    if (read_side(p, &tj, &n, err, errlen)) return -1;
    if (tj) {
      int rc = vocab_from_tokenizer_json(p, tj, n, &ws->vocab, &ws->vocab_len, err, errlen);
      free(tj);
      if (rc) return -1;
    }
  }
  return 0;
}

static int load_file(const char *path, bm_weights *out, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return bm_w_err(err, errlen, "%s: %s", path, strerror(errno));
  unsigned char m[9] = {0};
  ssize_t r = read(fd, m, sizeof m);
  close(fd);
  if (r < 0) return bm_w_err(err, errlen, "%s: %s", path, strerror(errno));
  if (r == 0) return bm_w_err(err, errlen, "%s: empty file", path);
  if (r >= 4 && m[0] == 'P' && m[1] == 'K' && (m[2] == 3 || m[2] == 5))
    return bm_torchzip_load(path, NULL, 0, out, err, errlen);
  /* safetensors before pickle: its length prefix may well start with 0x80 */
  if (r == 9 && m[8] == '{')
    return bm_safetensors_load(path, NULL, 0, out, err, errlen);
  if (r >= 2 && m[0] == 0x80 && m[1] <= 5)
    return bm_w_err(err, errlen, "%s: a bare pickle (torch.save before torch 1.6 or with "
                    "_use_new_zipfile_serialization=False); re-save it with a recent torch", path);
  return bm_w_err(err, errlen, "%s: neither a torch.save zip nor a safetensors file", path);
}

int bm_weights_load(const char *path, bm_weights *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  struct stat sb;
  if (stat(path, &sb)) return bm_w_err(err, errlen, "%s: %s", path, strerror(errno));
  char dir[PATH_MAX], file[PATH_MAX];
  if (strlen(path) >= sizeof dir - 64) return bm_w_err(err, errlen, "%s: path too long", path);
  if (S_ISDIR(sb.st_mode)) {
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(file, sizeof file, "%s/open_clip_model.safetensors", path);
    if (access(file, F_OK)) snprintf(file, sizeof file, "%s/open_clip_pytorch_model.bin", path);
    if (access(file, F_OK))
      return bm_w_err(err, errlen, "%s: folder holds neither open_clip_model.safetensors nor "
                      "open_clip_pytorch_model.bin", path);
  } else {
    snprintf(file, sizeof file, "%s", path);
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = 0;
    else snprintf(dir, sizeof dir, ".");
  }
  int rc = load_file(file, out, err, errlen);
  if (!rc) rc = companions(dir, out, err, errlen);
  if (!rc && !(out->source = strdup(path))) rc = bm_w_err(err, errlen, "%s: out of memory", path);
  if (rc) bm_weights_free(out);
  return rc;
}
