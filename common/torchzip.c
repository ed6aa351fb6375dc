/* torchzip.c - the zip that torch.save writes (torch >= 1.6), read with
 * libarchive: ARCHIVE/data.pkl (the pickled state dict), ARCHIVE/data/<key>
 * (one raw little-endian storage each), ARCHIVE/version and, since torch 2.1,
 * ARCHIVE/byteorder. The top folder's name is whatever the file was called
 * when saved, so it is taken from the data.pkl member.
 *
 * Two passes over the central directory: the first finds and unpickles
 * data.pkl, the second reads every storage once. A storage that holds exactly
 * one contiguous tensor is read straight into that tensor's final buffer;
 * shared or strided storages go through one temporary buffer and are copied
 * out, so the peak is the model plus its largest shared storage. */
#include <archive.h>
#include <archive_entry.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unpickle.h"
#include "weights_int.h"

#define PKL_MAX ((int64_t)512 << 20)

typedef struct {
  const char *path;
  const void *mem;
  size_t memlen;
  char *err;
  size_t errlen;
} src;

static struct archive *open_zip(const src *s) {
  struct archive *a = archive_read_new();
  if (!a) {
    bm_w_err(s->err, s->errlen, "%s: out of memory", s->path);
    return NULL;
  }
  archive_read_support_format_zip_seekable(a);
  int r = s->mem ? archive_read_open_memory(a, s->mem, s->memlen)
                 : archive_read_open_filename(a, s->path, 1 << 16);
  if (r != ARCHIVE_OK) {
    bm_w_err(s->err, s->errlen, "%s: not a readable zip archive: %s", s->path,
             archive_error_string(a) ? archive_error_string(a) : "unknown error");
    archive_read_free(a);
    return NULL;
  }
  return a;
}

/* Reads exactly n bytes of the current member into buf; 0 ok. */
static int read_member(const src *s, struct archive *a, const char *name, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    la_ssize_t r = archive_read_data(a, (char *)buf + got, n - got);
    if (r < 0)
      return bm_w_err(s->err, s->errlen, "%s: member %s: %s", s->path, name,
                      archive_error_string(a) ? archive_error_string(a) : "read error");
    if (r == 0)
      return bm_w_err(s->err, s->errlen, "%s: member %s ends after %zu of %zu bytes", s->path,
                      name, got, n);
    got += (size_t)r;
  }
  return 0;
}

/* A small text member (version, byteorder) without its trailing newline. */
static int read_small(const src *s, struct archive *a, struct archive_entry *e, const char *name,
                      char *buf, size_t cap) {
  int64_t sz = archive_entry_size(e);
  if (sz < 0 || (uint64_t)sz >= cap)
    return bm_w_err(s->err, s->errlen, "%s: member %s has an unexpected size %lld", s->path, name,
                    (long long)sz);
  if (read_member(s, a, name, buf, (size_t)sz)) return -1;
  buf[sz] = 0;
  while (sz > 0 && (buf[sz - 1] == '\n' || buf[sz - 1] == '\r' || buf[sz - 1] == ' ')) buf[--sz] = 0;
  return 0;
}

static int next_header(const src *s, struct archive *a, struct archive_entry **e, int *done) {
  int r = archive_read_next_header(a, e);
  if (r == ARCHIVE_EOF) {
    *done = 1;
    return 0;
  }
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
    return bm_w_err(s->err, s->errlen, "%s: bad zip archive: %s", s->path,
                    archive_error_string(a) ? archive_error_string(a) : "unknown error");
  if (!archive_entry_pathname(*e))
    return bm_w_err(s->err, s->errlen, "%s: zip member without a name", s->path);
  return 0;
}

/* pass 1: the one top-level FOLDER/data.pkl; sets *prefix (malloc'd) and *pkl */
static int find_pickle(const src *s, char **prefix, uint8_t **pkl, size_t *pkl_len) {
  struct archive *a = open_zip(s);
  if (!a) return -1;
  struct archive_entry *e;
  int done = 0, rc = 0;
  while (!rc && !(rc = next_header(s, a, &e, &done)) && !done) {
    const char *name = archive_entry_pathname(e);
    const char *slash = strchr(name, '/');
    if (!slash || strcmp(slash, "/data.pkl")) continue;
    if (*prefix) {
      rc = bm_w_err(s->err, s->errlen, "%s: two pickles (%s/data.pkl and %s): not a torch.save file",
                    s->path, *prefix, name);
      break;
    }
    int64_t sz = archive_entry_size(e);
    if (!archive_entry_size_is_set(e) || sz <= 0 || sz > PKL_MAX) {
      rc = bm_w_err(s->err, s->errlen, "%s: member %s has a bad size %lld", s->path, name,
                    (long long)sz);
      break;
    }
    *prefix = strndup(name, (size_t)(slash - name));
    *pkl = malloc((size_t)sz);
    if (!*prefix || !*pkl) {
      rc = bm_w_err(s->err, s->errlen, "%s: out of memory", s->path);
      break;
    }
    *pkl_len = (size_t)sz;
    rc = read_member(s, a, name, *pkl, (size_t)sz);
  }
  archive_read_free(a);
  if (!rc && !*prefix)
    rc = bm_w_err(s->err, s->errlen, "%s: no ARCHIVE/data.pkl member: not a torch.save file", s->path);
  return rc;
}

static int contiguous(const bm_pk_tensor *t) {
  int64_t want = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != want) return 0;
    want *= t->shape[d];
  }
  return 1;
}

/* copies the strided view out of its storage into dst, row-major */
static void gather(char *dst, const char *base, size_t es, const bm_pk_tensor *t) {
  if (t->numel == 0) return;
  if (contiguous(t)) {
    memcpy(dst, base + (size_t)t->offset * es, (size_t)t->numel * es);
    return;
  }
  int64_t idx[BM_W_MAX_DIMS] = {0};
  int nd = t->ndim, last = nd - 1;
  int64_t inner = t->shape[last], istride = t->stride[last];
  for (;;) {
    int64_t off = t->offset;
    for (int d = 0; d < last; d++) off += idx[d] * t->stride[d];
    for (int64_t i = 0; i < inner; i++, dst += es)
      memcpy(dst, base + (size_t)(off + i * istride) * es, es);
    int d = last - 1;
    while (d >= 0 && ++idx[d] == t->shape[d]) idx[d--] = 0;
    if (d < 0) return;
  }
}

typedef struct {
  int found;
  int users;   /* tensors viewing this storage */
  int direct;  /* the index of the one tensor that takes the buffer, or -1 */
} st_plan;

static int read_storages(const src *s, const char *prefix, const bm_pk_state *ps, bm_weights *out) {
  st_plan *plan = calloc((size_t)ps->nst + 1, sizeof *plan);
  if (!plan) return bm_w_err(s->err, s->errlen, "%s: out of memory", s->path);
  for (int i = 0; i < ps->nst; i++) plan[i].direct = -1;
  for (int i = 0; i < ps->nt; i++) {
    const bm_pk_tensor *t = &ps->t[i];
    if (plan[t->storage].users++ == 0 && t->offset == 0 && contiguous(t) &&
        t->numel == ps->st[t->storage].numel)
      plan[t->storage].direct = i;
  }
  for (int i = 0; i < ps->nst; i++)
    if (plan[i].users != 1) plan[i].direct = -1;

  struct archive *a = open_zip(s);
  if (!a) {
    free(plan);
    return -1;
  }
  size_t plen = strlen(prefix);
  struct archive_entry *e;
  int done = 0, rc = 0, byteorder_seen = 0;
  while (!rc && !(rc = next_header(s, a, &e, &done)) && !done) {
    const char *name = archive_entry_pathname(e);
    if (strncmp(name, prefix, plen) || name[plen] != '/') continue;
    const char *rest = name + plen + 1;
    char small[32];
    if (!strcmp(rest, "byteorder")) {
      if ((rc = read_small(s, a, e, name, small, sizeof small))) break;
      if (!strcmp(small, "big"))
        rc = bm_w_err(s->err, s->errlen, "%s: member %s: the checkpoint is big-endian; only "
                      "little-endian checkpoints are supported (re-save it on a little-endian machine)",
                      s->path, name);
      else if (strcmp(small, "little"))
        rc = bm_w_err(s->err, s->errlen, "%s: member %s: unknown byte order", s->path, name);
      byteorder_seen = 1;
      continue;
    }
    if (!strcmp(rest, "version")) {
      if ((rc = read_small(s, a, e, name, small, sizeof small))) break;
      if (!small[0] || strspn(small, "0123456789") != strlen(small))
        rc = bm_w_err(s->err, s->errlen, "%s: member %s: not a format version number", s->path, name);
      continue;
    }
    if (strncmp(rest, "data/", 5)) continue;
    int si = -1;
    for (int i = 0; i < ps->nst; i++)
      if (!strcmp(ps->st[i].key, rest + 5)) si = i;
    if (si < 0) continue; /* a storage nothing in the state dict uses */
    const bm_pk_storage *st = &ps->st[si];
    if (plan[si].found++) {
      rc = bm_w_err(s->err, s->errlen, "%s: member %s appears twice", s->path, name);
      break;
    }
    size_t es = bm_wdtype_size(st->dtype);
    size_t want = (size_t)st->numel * es; /* numel <= 2^44 was checked */
    int64_t have = archive_entry_size(e);
    if (!archive_entry_size_is_set(e) || have < 0 || (uint64_t)have < want) {
      const char *who = "";
      for (int i = 0; i < ps->nt && !*who; i++)
        if (ps->t[i].storage == si) who = ps->t[i].name;
      rc = bm_w_err(s->err, s->errlen, "%s: member %s holds %lld bytes but tensor %s needs a "
                    "storage of %zu", s->path, name, (long long)have, who, want);
      break;
    }
    if (plan[si].direct >= 0) {
      bm_weight *w = &out->w[plan[si].direct];
      rc = read_member(s, a, name, w->data, want);
      continue;
    }
    char *tmp = bm_w_alloc(want);
    if (!tmp) {
      rc = bm_w_err(s->err, s->errlen, "%s: member %s: out of memory for %zu bytes", s->path, name, want);
      break;
    }
    if (!(rc = read_member(s, a, name, tmp, want)))
      for (int i = 0; i < ps->nt; i++)
        if (ps->t[i].storage == si) gather(out->w[i].data, tmp, es, &ps->t[i]);
    free(tmp);
  }
  archive_read_free(a);
  (void)byteorder_seen; /* torch before 2.1 wrote none; those were little-endian */
  for (int i = 0; !rc && i < ps->nst; i++)
    if (!plan[i].found && ps->st[i].numel > 0) {
      const char *who = "";
      for (int j = 0; j < ps->nt && !*who; j++)
        if (ps->t[j].storage == i) who = ps->t[j].name;
      rc = bm_w_err(s->err, s->errlen, "%s: member %s/data/%s is missing (storage of tensor %s)",
                    s->path, prefix, ps->st[i].key, who);
    }
  free(plan);
  return rc;
}

int bm_torchzip_load(const char *path, const void *mem, size_t memlen, bm_weights *out, char *err,
                     size_t errlen) {
  src s = {.path = path, .mem = mem, .memlen = memlen, .err = err, .errlen = errlen};
  char *prefix = NULL;
  uint8_t *pkl = NULL;
  size_t pkl_len = 0;
  bm_pk_state ps = {0};
  int rc = find_pickle(&s, &prefix, &pkl, &pkl_len);
  if (!rc) {
    char what[512], perr[768];
    snprintf(what, sizeof what, "%s/data.pkl", prefix);
    if (bm_unpickle_state_dict(pkl, pkl_len, what, &ps, perr, sizeof perr))
      rc = bm_w_err(err, errlen, "%s: %s", path, perr);
  }
  free(pkl);
  if (!rc) {
    out->w = calloc((size_t)ps.nt + 1, sizeof *out->w);
    if (!out->w) rc = bm_w_err(err, errlen, "%s: out of memory", path);
  }
  for (int i = 0; !rc && i < ps.nt; i++) {
    const bm_pk_tensor *t = &ps.t[i];
    bm_weight *w = &out->w[i];
    w->name = ps.t[i].name;
    ps.t[i].name = NULL;
    out->n = i + 1;
    w->dtype = ps.st[t->storage].dtype;
    w->ndim = t->ndim;
    memcpy(w->shape, t->shape, sizeof w->shape);
    w->numel = t->numel;
    w->nbytes = (size_t)t->numel * bm_wdtype_size(w->dtype);
    if (!(w->data = bm_w_alloc(w->nbytes)))
      rc = bm_w_err(err, errlen, "%s: tensor %s: out of memory for %zu bytes", path, w->name, w->nbytes);
  }
  /* the first `moved` names belong to out->w now; ps only borrows them */
  int moved = out->n;
  for (int i = 0; i < moved; i++) ps.t[i].name = out->w[i].name;
  if (!rc) rc = read_storages(&s, prefix, &ps, out);
  for (int i = 0; i < moved; i++) ps.t[i].name = NULL;
  bm_pk_state_free(&ps);
  free(prefix);
  if (rc) bm_w_free_tensors(out);
  return rc;
}
