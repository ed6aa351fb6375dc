/* safetensors.c - read and write the safetensors format:
 *   u64 little-endian N | N bytes of JSON | data
 * The JSON maps each tensor name to {"dtype", "shape", "data_offsets":[b,e]}
 * (offsets relative to the data), plus an optional "__metadata__" object of
 * string values. bm-train keeps the model's open_clip config JSON under the
 * metadata key "config" and the vocab.txt text under "vocab" (BM_ST_CONFIG,
 * BM_ST_VOCAB in weights.h).
 *
 * Reading checks every entry against the file: known dtype, shape times
 * element size equals the byte range, ranges inside the data and not
 * overlapping, names unique (jansson rejects duplicate keys). Each tensor is
 * read once into its own aligned buffer. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weights_int.h"

#define HEADER_MAX ((uint64_t)100 << 20) /* the Python library's own limit */

static const char *const st_names[] = {"F32", "F16", "BF16", "I64", "I32", "U8"};

typedef struct {
  const char *path;
  int fd;
  const unsigned char *mem;
  uint64_t size;
} stsrc;

static int src_read(const stsrc *s, uint64_t off, void *buf, size_t n) {
  if (off > s->size || n > s->size - off) return -1;
  if (s->mem) {
    memcpy(buf, s->mem + off, n);
    return 0;
  }
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(s->fd, (char *)buf + got, n - got, (off_t)(off + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

typedef struct {
  uint64_t b, e;
  int idx;
} range;

static int cmp_range(const void *x, const void *y) {
  const range *a = x, *b = y;
  return a->b < b->b ? -1 : a->b > b->b ? 1 : (a->e > b->e) - (a->e < b->e);
}

static int meta_string(const char *path, json_t *meta, const char *key, char **dst, size_t *len,
                       char *err, size_t errlen) {
  json_t *v = json_object_get(meta, key);
  if (!v) return 0;
  if (!json_is_string(v))
    return bm_w_err(err, errlen, "%s: metadata %s is not a string", path, key);
  size_t n = json_string_length(v);
  *dst = malloc(n + 1);
  if (!*dst) return bm_w_err(err, errlen, "%s: out of memory", path);
  memcpy(*dst, json_string_value(v), n);
  (*dst)[n] = 0;
  if (len) *len = n;
  return 0;
}

/* one header entry -> out->w[i] (no data yet) and its byte range */
static int parse_entry(const stsrc *s, const char *name, json_t *v, uint64_t dlen, bm_weight *w,
                       range *r, char *err, size_t errlen) {
  const char *path = s->path;
  if (!*name || strlen(name) > 4096)
    return bm_w_err(err, errlen, "%s: a tensor with an empty or overlong name", path);
  for (const char *c = name; *c; c++)
    if ((unsigned char)*c < 32) return bm_w_err(err, errlen, "%s: a tensor name holds a control character", path);
  json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
         *of = json_object_get(v, "data_offsets");
  if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(sh) || !json_is_array(of) ||
      json_array_size(of) != 2)
    return bm_w_err(err, errlen, "%s: tensor %s: header entry lacks dtype, shape or data_offsets",
                    path, name);
  int dtype = -1;
  for (int i = 0; i < (int)(sizeof st_names / sizeof st_names[0]); i++)
    if (!strcmp(json_string_value(dt), st_names[i])) dtype = i;
  if (dtype < 0)
    return bm_w_err(err, errlen, "%s: tensor %s has dtype %.16s, not one of F32 F16 BF16 I64 I32 U8",
                    path, name, json_string_value(dt));
  if (json_array_size(sh) > BM_W_MAX_DIMS)
    return bm_w_err(err, errlen, "%s: tensor %s has %zu dimensions (at most %d)", path, name,
                    json_array_size(sh), BM_W_MAX_DIMS);
  w->dtype = (bm_wdtype)dtype;
  w->ndim = (int)json_array_size(sh);
  w->numel = 1;
  for (int d = 0; d < w->ndim; d++) {
    json_t *x = json_array_get(sh, (size_t)d);
    if (!json_is_integer(x) || json_integer_value(x) < 0 ||
        __builtin_mul_overflow(w->numel, (int64_t)json_integer_value(x), &w->numel) ||
        w->numel > ((int64_t)1 << 44))
      return bm_w_err(err, errlen, "%s: tensor %s: bad shape", path, name);
    w->shape[d] = json_integer_value(x);
  }
  json_t *b = json_array_get(of, 0), *e = json_array_get(of, 1);
  if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
      json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > dlen)
    return bm_w_err(err, errlen, "%s: tensor %s: data_offsets outside the %llu data bytes", path,
                    name, (unsigned long long)dlen);
  r->b = (uint64_t)json_integer_value(b);
  r->e = (uint64_t)json_integer_value(e);
  w->nbytes = (size_t)w->numel * bm_wdtype_size(w->dtype);
  if (r->e - r->b != w->nbytes)
    return bm_w_err(err, errlen, "%s: tensor %s: shape needs %zu bytes but data_offsets span %llu",
                    path, name, w->nbytes, (unsigned long long)(r->e - r->b));
  return 0;
}

static int load(const stsrc *s, bm_weights *out, char *err, size_t errlen) {
  const char *path = s->path;
  unsigned char len8[8];
  if (s->size < 8 || src_read(s, 0, len8, 8))
    return bm_w_err(err, errlen, "%s: too short for a safetensors file", path);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
  if (hlen < 2 || hlen > HEADER_MAX || hlen > s->size - 8)
    return bm_w_err(err, errlen, "%s: safetensors header length %llu does not fit the %llu-byte file",
                    path, (unsigned long long)hlen, (unsigned long long)s->size);
  char *hdr = malloc((size_t)hlen);
  if (!hdr) return bm_w_err(err, errlen, "%s: out of memory", path);
  if (src_read(s, 8, hdr, (size_t)hlen)) {
    free(hdr);
    return bm_w_err(err, errlen, "%s: cannot read the safetensors header", path);
  }
  json_error_t je;
  json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
  free(hdr);
  if (!root) return bm_w_err(err, errlen, "%s: safetensors header: %s", path, je.text);
  int rc = 0;
  range *rg = NULL;
  uint64_t dstart = 8 + hlen, dlen = s->size - dstart;
  if (!json_is_object(root)) {
    rc = bm_w_err(err, errlen, "%s: safetensors header is not a JSON object", path);
    goto done;
  }
  json_t *meta = json_object_get(root, "__metadata__");
  if (meta) {
    const char *k;
    json_t *v;
    if (!json_is_object(meta)) {
      rc = bm_w_err(err, errlen, "%s: __metadata__ is not an object", path);
      goto done;
    }
    json_object_foreach(meta, k, v) if (!json_is_string(v)) {
      rc = bm_w_err(err, errlen, "%s: metadata %s is not a string", path, k);
      goto done;
    }
    if ((rc = meta_string(path, meta, BM_ST_CONFIG, &out->config_json, NULL, err, errlen)) ||
        (rc = meta_string(path, meta, BM_ST_VOCAB, &out->vocab, &out->vocab_len, err, errlen)))
      goto done;
  }
  size_t n = json_object_size(root) - (meta ? 1 : 0);
  out->w = calloc(n + 1, sizeof *out->w);
  rg = calloc(n + 1, sizeof *rg);
  if (!out->w || !rg) {
    rc = bm_w_err(err, errlen, "%s: out of memory", path);
    goto done;
  }
  const char *name;
  json_t *v;
  json_object_foreach(root, name, v) {
    if (!strcmp(name, "__metadata__")) continue;
    bm_weight *w = &out->w[out->n];
    rg[out->n].idx = out->n;
    if (!(w->name = strdup(name))) {
      rc = bm_w_err(err, errlen, "%s: out of memory", path);
      goto done;
    }
    out->n++;
    if ((rc = parse_entry(s, name, v, dlen, w, &rg[out->n - 1], err, errlen))) goto done;
  }
  qsort(rg, (size_t)out->n, sizeof *rg, cmp_range);
  for (int i = 1; i < out->n; i++)
    if (rg[i].b < rg[i - 1].e && rg[i].b < rg[i].e) {
      rc = bm_w_err(err, errlen, "%s: tensors %s and %s overlap in the data", path,
                    out->w[rg[i - 1].idx].name, out->w[rg[i].idx].name);
      goto done;
    }
  for (int i = 0; i < out->n; i++) {
    bm_weight *w = &out->w[rg[i].idx];
    if (!(w->data = bm_w_alloc(w->nbytes))) {
      rc = bm_w_err(err, errlen, "%s: tensor %s: out of memory for %zu bytes", path, w->name, w->nbytes);
      goto done;
    }
    if (src_read(s, dstart + rg[i].b, w->data, w->nbytes)) {
      rc = bm_w_err(err, errlen, "%s: tensor %s: cannot read its data", path, w->name);
      goto done;
    }
  }
done:
  json_decref(root);
  free(rg);
  if (rc) {
    bm_w_free_tensors(out);
    free(out->config_json);
    free(out->vocab);
    out->config_json = out->vocab = NULL;
    out->vocab_len = 0;
  }
  return rc;
}

int bm_safetensors_load(const char *path, const void *mem, size_t memlen, bm_weights *out,
                        char *err, size_t errlen) {
  stsrc s = {.path = path, .fd = -1, .mem = mem, .size = memlen};
  if (!mem) {
    struct stat sb;
    if ((s.fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
      return bm_w_err(err, errlen, "%s: %s", path, strerror(errno));
    if (fstat(s.fd, &sb)) {
      int e = errno;
      close(s.fd);
      return bm_w_err(err, errlen, "%s: %s", path, strerror(e));
    }
    s.size = (uint64_t)sb.st_size;
  }
  int rc = load(&s, out, err, errlen);
  if (s.fd >= 0) close(s.fd);
  return rc;
}

static int write_all(FILE *f, const void *p, size_t n) { return n && fwrite(p, 1, n, f) != n ? -1 : 0; }

int bm_safetensors_write(const char *path, const bm_weight *w, int n, const char *const *meta_keys,
                         const char *const *meta_vals, int nmeta, char *err, size_t errlen) {
  json_t *root = json_object(), *meta = nmeta > 0 ? json_object() : NULL;
  if (!root || (nmeta > 0 && !meta)) return bm_w_err(err, errlen, "%s: out of memory", path);
  int rc = 0;
  for (int i = 0; i < nmeta; i++)
    if (!meta_keys[i] || !meta_vals[i] || json_object_set_new(meta, meta_keys[i], json_string(meta_vals[i]))) {
      rc = bm_w_err(err, errlen, "%s: metadata %s is not valid UTF-8", path, meta_keys[i] ? meta_keys[i] : "(null)");
      goto out;
    }
  if (meta) json_object_set(root, "__metadata__", meta);
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const bm_weight *t = &w[i];
    if (!t->name || !*t->name || !strcmp(t->name, "__metadata__") || json_object_get(root, t->name)) {
      rc = bm_w_err(err, errlen, "%s: tensor name %s is empty, reserved or used twice", path,
                    t->name ? t->name : "(null)");
      goto out;
    }
    if ((unsigned)t->dtype >= sizeof st_names / sizeof st_names[0] || t->ndim < 0 ||
        t->ndim > BM_W_MAX_DIMS || t->nbytes != (size_t)t->numel * bm_wdtype_size(t->dtype) ||
        (t->nbytes && !t->data)) {
      rc = bm_w_err(err, errlen, "%s: tensor %s: inconsistent dtype, shape or size", path, t->name);
      goto out;
    }
    int64_t numel = 1;
    json_t *shape = json_array(), *offs = json_array(), *e = json_object();
    for (int d = 0; d < t->ndim; d++) {
      numel *= t->shape[d];
      json_array_append_new(shape, json_integer(t->shape[d]));
    }
    json_array_append_new(offs, json_integer((json_int_t)off));
    json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes)));
    json_object_set_new(e, "dtype", json_string(st_names[t->dtype]));
    json_object_set_new(e, "shape", shape);
    json_object_set_new(e, "data_offsets", offs);
    if (json_object_set_new(root, t->name, e) || numel != t->numel) {
      rc = bm_w_err(err, errlen, "%s: tensor %s: name is not UTF-8 or shape disagrees with numel",
                    path, t->name);
      goto out;
    }
    off += t->nbytes;
  }
  char *hdr = json_dumps(root, JSON_COMPACT);
  if (!hdr) {
    rc = bm_w_err(err, errlen, "%s: cannot format the header", path);
    goto out;
  }
  size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7; /* data starts 8-aligned */
  unsigned char len8[8];
  for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  char tmp[PATH_MAX];
  FILE *f = NULL;
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp ||
      !(f = fopen(tmp, "wb"))) {
    rc = bm_w_err(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    free(hdr);
    goto out;
  }
  int bad = write_all(f, len8, 8) || write_all(f, hdr, hlen) ||
            write_all(f, "        ", padded - hlen);
  free(hdr);
  for (int i = 0; !bad && i < n; i++) bad = write_all(f, w[i].data, w[i].nbytes);
  if (bad || fflush(f) || fsync(fileno(f))) bad = 1;
  if (fclose(f)) bad = 1;
  if (bad || rename(tmp, path)) {
    rc = bm_w_err(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    unlink(tmp);
  }
out:
  json_decref(meta);
  json_decref(root);
  return rc;
}
