#define _GNU_SOURCE
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "records hold little-endian tensors; this build assumes a little-endian host"
#endif

static const char *dtype_names[] = {"u8", "i32", "i64", "f16", "f32"};
static const size_t dtype_sizes[] = {1, 4, 8, 2, 4};

const char *bm_dtype_name(bm_dtype d) { return dtype_names[d]; }
size_t bm_dtype_size(bm_dtype d) { return dtype_sizes[d]; }

int bm_dtype_parse(const char *s, size_t n, bm_dtype *out) {
  for (int i = 0; i < 5; i++) {
    if (strlen(dtype_names[i]) == n && memcmp(dtype_names[i], s, n) == 0) {
      *out = (bm_dtype)i;
      return 0;
    }
  }
  return -1;
}

float bm_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: renormalize */
      int e = -1;
      do {
        e++;
        man <<= 1;
      } while (!(man & 0x400));
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t bm_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000u) /* inf or nan */
    return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
  if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow */
    return (uint16_t)(sign | 0x7c00);
  if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
    if (absx < 0x33000000u) return (uint16_t)sign; /* < 2^-25 rounds to 0 */
    uint32_t e = absx >> 23;
    uint32_t m = (absx & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t half = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((absx >> 13) - ((127 - 15) << 10));
  uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)(sign | half);
}

void bm_tensor_to_f32(const bm_tensor *t, float *dst) {
  const unsigned char *p = t->data;
  int64_t n = t->numel;
  switch (t->dtype) {
  case BM_U8:
    for (int64_t i = 0; i < n; i++) dst[i] = (float)p[i];
    break;
  case BM_I32:
    for (int64_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, p + 4 * i, 4);
      dst[i] = (float)v;
    }
    break;
  case BM_I64:
    for (int64_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, p + 8 * i, 8);
      dst[i] = (float)v;
    }
    break;
  case BM_F16:
    for (int64_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, p + 2 * i, 2);
      dst[i] = bm_f16_to_f32(v);
    }
    break;
  case BM_F32:
    memcpy(dst, p, (size_t)n * 4);
    break;
  }
}

/* ---------------------------------------------------------------- reader */

struct bm_reader {
  int fd, own_fd;
  char *name;
  msgpack_unpacker u;
  msgpack_unpacked first; /* the first record: the header, or a sample held back */
  msgpack_unpacked msg;
  int first_read, first_is_header, first_pending;
  int eof, error;
  size_t limit;
  uint64_t fed;       /* bytes read from fd so far */
  uint64_t offset;    /* stream offset of the last record */
  uint64_t next_start; /* stream offset where the next record begins */
  long index;         /* number of the last record, header = 0 */
};

bm_reader *bm_reader_open_fd(int fd, const char *name) {
  bm_reader *r = bm_xcalloc(1, sizeof *r);
  r->fd = fd;
  r->name = bm_xstrdup(name);
  if (!msgpack_unpacker_init(&r->u, 1 << 16)) bm_die("out of memory creating a msgpack reader");
  msgpack_unpacked_init(&r->first);
  msgpack_unpacked_init(&r->msg);
  r->limit = BM_DEFAULT_MAX_RECORD;
  const char *env = getenv("BM_MAX_RECORD_MB");
  long mb;
  if (env && !bm_parse_long(env, 1, 1L << 20, &mb)) r->limit = (size_t)mb << 20;
  r->index = -1;
  return r;
}

bm_reader *bm_reader_open(const char *path) {
  if (!path || strcmp(path, "-") == 0) return bm_reader_open_fd(0, "<stdin>");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) bm_die("cannot open %s: %s", path, strerror(errno));
  bm_reader *r = bm_reader_open_fd(fd, path);
  r->own_fd = 1;
  return r;
}

void bm_reader_close(bm_reader *r) {
  if (!r) return;
  if (r->own_fd) close(r->fd);
  msgpack_unpacked_destroy(&r->first);
  msgpack_unpacked_destroy(&r->msg);
  msgpack_unpacker_destroy(&r->u);
  free(r->name);
  free(r);
}

void bm_reader_set_limit(bm_reader *r, size_t max_record_bytes) { r->limit = max_record_bytes; }
int bm_reader_error(const bm_reader *r) { return r->error; }
const char *bm_reader_name(const bm_reader *r) { return r->name; }
long bm_reader_index(const bm_reader *r) { return r->index; }
uint64_t bm_reader_offset(const bm_reader *r) { return r->offset; }

const char *bm_reader_where(const bm_reader *r, char *buf, size_t n) {
  snprintf(buf, n, "%s: record %ld (byte %" PRIu64 ")", r->name, r->index, r->offset);
  return buf;
}

/* Report a problem with record number recno starting at byte offset. */
static int fail(bm_reader *r, long recno, uint64_t offset, const char *fmt, const char *detail) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, detail);
  bm_warn("%s: record %ld (byte %" PRIu64 "): %s", r->name, recno, offset, msg);
  r->error = 1;
  return -1;
}

/* Unpack the next map into dst. 1 ok, 0 clean end, -1 error. */
static int read_map(bm_reader *r, msgpack_unpacked *dst) {
  if (r->error) return -1;
  for (;;) {
    /* the unpacker consumes a partial record as it goes, so the start of a
     * record is where the previous one ended */
    uint64_t start = r->next_start;
    long recno = r->index + 1;
    msgpack_unpack_return ret = msgpack_unpacker_next(&r->u, dst);
    if (ret == MSGPACK_UNPACK_SUCCESS) {
      r->index++;
      r->offset = start;
      r->next_start = r->fed - (uint64_t)(r->u.used - r->u.off);
      const msgpack_object *o = &dst->data;
      if (o->type != MSGPACK_OBJECT_MAP)
        return fail(r, recno, start, "%s", "not a map (every record is a msgpack map)");
      for (uint32_t i = 0; i < o->via.map.size; i++)
        if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
          return fail(r, recno, start, "%s", "a key that is not a string");
      return 1;
    }
    if (ret == MSGPACK_UNPACK_PARSE_ERROR) return fail(r, recno, start, "%s", "malformed msgpack");
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
      return fail(r, recno, start, "%s", "out of memory (a container larger than memory?)");
    /* CONTINUE: need more bytes */
    size_t pending = r->u.used - r->u.off;
    if (msgpack_unpacker_message_size(&r->u) > r->limit) {
      char lim[64];
      snprintf(lim, sizeof lim, "%zu", r->limit);
      return fail(r, recno, start, "larger than the record size limit of %s bytes (BM_MAX_RECORD_MB)",
                  lim);
    }
    if (r->eof) {
      if (pending == 0) return 0;
      return fail(r, recno, start, "%s", "truncated: the stream ends inside a record");
    }
    if (!msgpack_unpacker_reserve_buffer(&r->u, 1 << 16))
      return fail(r, recno, start, "%s", "out of memory growing the read buffer");
    ssize_t n;
    do {
      n = read(r->fd, msgpack_unpacker_buffer(&r->u), msgpack_unpacker_buffer_capacity(&r->u));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return fail(r, recno, start, "read error: %s", strerror(errno));
    if (n == 0) {
      r->eof = 1;
    } else {
      msgpack_unpacker_buffer_consumed(&r->u, (size_t)n);
      r->fed += (uint64_t)n;
    }
  }
}

static int is_header(const msgpack_object *o) {
  return o->via.map.size == 1 && bm_obj_is_str(&o->via.map.ptr[0].key, "header") &&
         o->via.map.ptr[0].val.type == MSGPACK_OBJECT_MAP;
}

static int read_first(bm_reader *r) {
  if (r->first_read) return 0;
  r->first_read = 1;
  int got = read_map(r, &r->first);
  if (got < 0) return -1;
  if (got == 0) return 0;
  if (is_header(&r->first.data)) {
    r->first_is_header = 1;
  } else {
    r->first_pending = 1;
    r->index = 1; /* no header: samples still count from 1 */
  }
  return 0;
}

const msgpack_object *bm_reader_header(bm_reader *r) {
  if (read_first(r) < 0 || !r->first_is_header) return NULL;
  return &r->first.data.via.map.ptr[0].val;
}

int bm_reader_next(bm_reader *r, const msgpack_object **rec) {
  if (read_first(r) < 0) return -1;
  if (r->first_pending) {
    r->first_pending = 0;
    *rec = &r->first.data;
    return 1;
  }
  int got = read_map(r, &r->msg);
  if (got <= 0) return got;
  if (is_header(&r->msg.data))
    return fail(r, r->index, r->offset, "%s", "a header record in the middle of the stream "
                                     "(streams concatenated with cat? use bm-cat)");
  *rec = &r->msg.data;
  return 1;
}

/* ------------------------------------------------------------- accessors */

const msgpack_object *bm_map_get(const msgpack_object *map, const char *key) {
  if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
  size_t kl = strlen(key);
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object *k = &map->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
        memcmp(k->via.str.ptr, key, kl) == 0)
      return &map->via.map.ptr[i].val;
  }
  return NULL;
}

int bm_obj_is_str(const msgpack_object *o, const char *s) {
  size_t n = strlen(s);
  return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
         memcmp(o->via.str.ptr, s, n) == 0;
}

int bm_obj_str(const msgpack_object *o, char *buf, size_t n) {
  if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= n) return -1;
  memcpy(buf, o->via.str.ptr, o->via.str.size);
  buf[o->via.str.size] = 0;
  return 0;
}

char *bm_obj_strdup(const msgpack_object *o) {
  if (!o || o->type != MSGPACK_OBJECT_STR) return NULL;
  char *s = bm_xmalloc((size_t)o->via.str.size + 1);
  memcpy(s, o->via.str.ptr, o->via.str.size);
  s[o->via.str.size] = 0;
  return s;
}

int bm_obj_number(const msgpack_object *o, double *out) {
  if (!o) return -1;
  switch (o->type) {
  case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 0;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 0;
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 0;
  default: return -1;
  }
}

int bm_tensor_parse(const msgpack_object *o, bm_tensor *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  if (!o || o->type != MSGPACK_OBJECT_MAP) {
    snprintf(err, errlen, "not a tensor map");
    return -1;
  }
  const msgpack_object *dt = bm_map_get(o, "dtype");
  const msgpack_object *sh = bm_map_get(o, "shape");
  const msgpack_object *da = bm_map_get(o, "data");
  if (!dt || dt->type != MSGPACK_OBJECT_STR ||
      bm_dtype_parse(dt->via.str.ptr, dt->via.str.size, &t->dtype)) {
    snprintf(err, errlen, "missing or unknown \"dtype\" (u8, i32, i64, f16 or f32)");
    return -1;
  }
  if (!sh || sh->type != MSGPACK_OBJECT_ARRAY || sh->via.array.size > BM_MAX_DIMS) {
    snprintf(err, errlen, "missing \"shape\" or more than %d dimensions", BM_MAX_DIMS);
    return -1;
  }
  if (!da || da->type != MSGPACK_OBJECT_BIN) {
    snprintf(err, errlen, "missing \"data\" (bin)");
    return -1;
  }
  t->ndim = (int)sh->via.array.size;
  uint64_t numel = 1;
  for (int i = 0; i < t->ndim; i++) {
    const msgpack_object *d = &sh->via.array.ptr[i];
    if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > (1ULL << 40)) {
      snprintf(err, errlen, "shape[%d] is not a non-negative integer", i);
      return -1;
    }
    t->shape[i] = (int64_t)d->via.u64;
    if (d->via.u64 && numel > (1ULL << 40) / d->via.u64) {
      snprintf(err, errlen, "shape too large");
      return -1;
    }
    numel *= d->via.u64;
  }
  t->numel = (int64_t)numel;
  t->nbytes = (size_t)numel * bm_dtype_size(t->dtype);
  if (da->via.bin.size != t->nbytes) {
    snprintf(err, errlen, "data has %u bytes, shape and dtype need %zu", da->via.bin.size,
             t->nbytes);
    return -1;
  }
  t->data = da->via.bin.ptr;
  return 0;
}

int bm_rec_tensor(const msgpack_object *rec, const char *key, bm_tensor *t, char *err,
                  size_t errlen) {
  const msgpack_object *o = bm_map_get(rec, key);
  if (!o) {
    if (errlen) err[0] = 0;
    return 0;
  }
  char why[256];
  if (bm_tensor_parse(o, t, why, sizeof why)) {
    snprintf(err, errlen, "\"%s\": %s", key, why);
    return -1;
  }
  return 1;
}

/* --------------------------------------------------------------- builder */

void bm_out_init(bm_out *o) {
  memset(o, 0, sizeof *o);
  msgpack_sbuffer_init(&o->buf);
  msgpack_packer_init(&o->pk, &o->buf, msgpack_sbuffer_write);
}

void bm_out_reset(bm_out *o) {
  msgpack_sbuffer_clear(&o->buf);
  o->count = 0;
  for (int i = 0; i < o->nkeys; i++) free(o->keys[i]);
  o->nkeys = 0;
}

void bm_out_free(bm_out *o) {
  bm_out_reset(o);
  free(o->keys);
  msgpack_sbuffer_destroy(&o->buf);
  memset(o, 0, sizeof *o);
}

static void remember_key(bm_out *o, const char *key) {
  for (int i = 0; i < o->nkeys; i++)
    if (strcmp(o->keys[i], key) == 0) bm_die("internal error: key \"%s\" set twice", key);
  if (o->nkeys == o->capkeys) {
    o->capkeys = o->capkeys ? 2 * o->capkeys : 8;
    o->keys = bm_xrealloc(o->keys, sizeof(char *) * (size_t)o->capkeys);
  }
  o->keys[o->nkeys++] = bm_xstrdup(key);
}

void bm_pack_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

msgpack_packer *bm_out_key(bm_out *o, const char *key) {
  remember_key(o, key);
  bm_pack_str(&o->pk, key);
  o->count++;
  return &o->pk;
}

void bm_out_drop(bm_out *o, const char *key) { remember_key(o, key); }

void bm_out_str(bm_out *o, const char *key, const char *s) { bm_pack_str(bm_out_key(o, key), s); }

void bm_out_int(bm_out *o, const char *key, int64_t v) {
  msgpack_pack_int64(bm_out_key(o, key), v);
}

void bm_out_double(bm_out *o, const char *key, double v) {
  msgpack_pack_double(bm_out_key(o, key), v);
}

void bm_out_obj(bm_out *o, const char *key, const msgpack_object *v) {
  msgpack_pack_object(bm_out_key(o, key), *v);
}

void bm_pack_tensor(msgpack_packer *pk, bm_dtype dt, int ndim, const int64_t *shape,
                    const void *data) {
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) numel = bm_mul_size(numel, (size_t)shape[i]);
  size_t nbytes = bm_mul_size(numel, bm_dtype_size(dt));
  if (nbytes > UINT32_MAX) bm_die("tensor of %zu bytes is larger than msgpack's 4 GiB bin", nbytes);
  msgpack_pack_map(pk, 3);
  bm_pack_str(pk, "dtype");
  bm_pack_str(pk, bm_dtype_name(dt));
  bm_pack_str(pk, "shape");
  msgpack_pack_array(pk, (size_t)ndim);
  for (int i = 0; i < ndim; i++) msgpack_pack_uint64(pk, (uint64_t)shape[i]);
  bm_pack_str(pk, "data");
  msgpack_pack_bin(pk, nbytes);
  msgpack_pack_bin_body(pk, data, nbytes);
}

void bm_out_tensor(bm_out *o, const char *key, bm_dtype dt, int ndim, const int64_t *shape,
                   const void *data) {
  bm_pack_tensor(bm_out_key(o, key), dt, ndim, shape, data);
}

static int out_names(const bm_out *o, const msgpack_object *key) {
  for (int i = 0; i < o->nkeys; i++) {
    size_t n = strlen(o->keys[i]);
    if (key->via.str.size == n && memcmp(key->via.str.ptr, o->keys[i], n) == 0) return 1;
  }
  return 0;
}

void bm_pack_merged(msgpack_packer *pk, const msgpack_object *in, const bm_out *o) {
  uint32_t kept = 0;
  if (in && in->type == MSGPACK_OBJECT_MAP)
    for (uint32_t i = 0; i < in->via.map.size; i++)
      if (!o || !out_names(o, &in->via.map.ptr[i].key)) kept++;
  msgpack_pack_map(pk, kept + (o ? o->count : 0));
  if (in && in->type == MSGPACK_OBJECT_MAP)
    for (uint32_t i = 0; i < in->via.map.size; i++)
      if (!o || !out_names(o, &in->via.map.ptr[i].key)) {
        msgpack_pack_object(pk, in->via.map.ptr[i].key);
        msgpack_pack_object(pk, in->via.map.ptr[i].val);
      }
  if (o && o->count) msgpack_sbuffer_write(pk->data, o->buf.data, o->buf.size);
}

/* ---------------------------------------------------------------- writer */

struct bm_writer {
  int fd, own_fd;
  char *name;
  msgpack_sbuffer buf;
  msgpack_packer pk;
  long written;
};

bm_writer *bm_writer_open(const char *path) {
  bm_writer *w = bm_xcalloc(1, sizeof *w);
  if (!path || strcmp(path, "-") == 0) {
    w->fd = 1;
    w->name = bm_xstrdup("<stdout>");
  } else {
    w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) bm_die("cannot create %s: %s", path, strerror(errno));
    w->own_fd = 1;
    w->name = bm_xstrdup(path);
  }
  msgpack_sbuffer_init(&w->buf);
  msgpack_packer_init(&w->pk, &w->buf, msgpack_sbuffer_write);
  return w;
}

static int flush_buf(bm_writer *w) {
  const char *p = w->buf.data;
  size_t left = w->buf.size;
  while (left) {
    ssize_t n = write(w->fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE) exit(141); /* the reader went away: stop quietly */
      bm_warn("write error on %s: %s", w->name, strerror(errno));
      msgpack_sbuffer_clear(&w->buf);
      return -1;
    }
    p += n;
    left -= (size_t)n;
  }
  msgpack_sbuffer_clear(&w->buf);
  w->written++;
  return 0;
}

int bm_write_record(bm_writer *w, const msgpack_object *in, const bm_out *o) {
  bm_pack_merged(&w->pk, in, o);
  return flush_buf(w);
}

int bm_write_header(bm_writer *w, const msgpack_object *in_header, const bm_out *o) {
  bm_out ver;
  bm_out_init(&ver);
  /* version is ours to set; everything else comes from o over in_header */
  if (!o || !out_names(o, &(msgpack_object){.type = MSGPACK_OBJECT_STR,
                                            .via.str = {.size = 7, .ptr = "version"}}))
    bm_out_int(&ver, "version", BM_FORMAT_VERSION);
  msgpack_pack_map(&w->pk, 1);
  bm_pack_str(&w->pk, "header");
  /* merge: in_header's pairs not named by o or ver, then ver's, then o's */
  uint32_t kept = 0;
  if (in_header && in_header->type == MSGPACK_OBJECT_MAP)
    for (uint32_t i = 0; i < in_header->via.map.size; i++) {
      const msgpack_object *k = &in_header->via.map.ptr[i].key;
      if (!(o && out_names(o, k)) && !out_names(&ver, k)) kept++;
    }
  msgpack_pack_map(&w->pk, kept + ver.count + (o ? o->count : 0));
  if (in_header && in_header->type == MSGPACK_OBJECT_MAP)
    for (uint32_t i = 0; i < in_header->via.map.size; i++) {
      const msgpack_object *k = &in_header->via.map.ptr[i].key;
      if (!(o && out_names(o, k)) && !out_names(&ver, k)) {
        msgpack_pack_object(&w->pk, *k);
        msgpack_pack_object(&w->pk, in_header->via.map.ptr[i].val);
      }
    }
  if (ver.count) msgpack_sbuffer_write(&w->buf, ver.buf.data, ver.buf.size);
  if (o && o->count) msgpack_sbuffer_write(&w->buf, o->buf.data, o->buf.size);
  bm_out_free(&ver);
  return flush_buf(w);
}

int bm_writer_close(bm_writer *w) {
  if (!w) return 0;
  int rc = 0;
  if (w->own_fd && close(w->fd)) {
    bm_warn("error closing %s: %s", w->name, strerror(errno));
    rc = -1;
  }
  msgpack_sbuffer_destroy(&w->buf);
  free(w->name);
  free(w);
  return rc;
}

int bm_header_classes(const msgpack_object *header, char ***names) {
  *names = NULL;
  const msgpack_object *c = bm_map_get(header, "classes");
  if (!c || c->type != MSGPACK_OBJECT_ARRAY) return -1;
  int n = (int)c->via.array.size;
  char **v = bm_xcalloc((size_t)n + 1, sizeof *v);
  for (int i = 0; i < n; i++) {
    v[i] = bm_obj_strdup(&c->via.array.ptr[i]);
    if (!v[i]) {
      bm_free_strings(v, i);
      return -1;
    }
  }
  *names = v;
  return n;
}

void bm_free_strings(char **s, int n) {
  if (!s) return;
  for (int i = 0; i < n; i++) free(s[i]);
  free(s);
}
