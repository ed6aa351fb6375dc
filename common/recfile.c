#define _GNU_SOURCE
#include "recfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.h"
#include "util.h"

struct bm_recfile {
  int fd;
  char *name;
  uint64_t *offset; /* [n+1]: start of each sample record, then the end */
  long n;
  msgpack_sbuffer header_bytes;
  msgpack_unpacked header;
  int has_header;
};

bm_recfile *bm_recfile_open(const char *path) {
  struct stat st;
  if (stat(path, &st)) bm_die("cannot open %s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode))
    bm_die("%s: training reads record files it can seek, not pipes (write the stream to a file first)", path);
  bm_recfile *f = bm_xcalloc(1, sizeof *f);
  f->name = bm_xstrdup(path);
  msgpack_sbuffer_init(&f->header_bytes);
  msgpack_unpacked_init(&f->header);
  /* One streaming pass with the ordinary reader gives the offsets. */
  bm_reader *r = bm_reader_open(path);
  const msgpack_object *h = bm_reader_header(r);
  if (bm_reader_error(r)) exit(1);
  if (h) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->header_bytes, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *h);
    msgpack_unpack_next(&f->header, f->header_bytes.data, f->header_bytes.size, NULL);
    f->has_header = 1;
  }
  long cap = 1024;
  f->offset = bm_xmalloc(sizeof(uint64_t) * (size_t)cap);
  const msgpack_object *rec;
  int got;
  while ((got = bm_reader_next(r, &rec)) == 1) {
    if (f->n + 1 >= cap) {
      cap *= 2;
      f->offset = bm_xrealloc(f->offset, sizeof(uint64_t) * (size_t)cap);
    }
    f->offset[f->n++] = bm_reader_offset(r);
  }
  if (got < 0) exit(1);
  bm_reader_close(r);
  f->offset[f->n] = (uint64_t)st.st_size;
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) bm_die("cannot open %s: %s", path, strerror(errno));
  return f;
}

void bm_recfile_close(bm_recfile *f) {
  if (!f) return;
  close(f->fd);
  free(f->offset);
  free(f->name);
  msgpack_unpacked_destroy(&f->header);
  msgpack_sbuffer_destroy(&f->header_bytes);
  free(f);
}

long bm_recfile_count(const bm_recfile *f) { return f->n; }
const char *bm_recfile_name(const bm_recfile *f) { return f->name; }
const msgpack_object *bm_recfile_header(const bm_recfile *f) {
  return f->has_header ? &f->header.data : NULL;
}

void bm_recslot_init(bm_recslot *s) {
  memset(s, 0, sizeof *s);
  msgpack_unpacked_init(&s->msg);
}

void bm_recslot_free(bm_recslot *s) {
  msgpack_unpacked_destroy(&s->msg);
  free(s->buf);
  memset(s, 0, sizeof *s);
}

const msgpack_object *bm_recfile_read_try(const bm_recfile *f, long index, bm_recslot *slot, char *err,
                                          size_t errn) {
  if (index < 0 || index >= f->n) {
    snprintf(err, errn, "%s: record %ld out of range (%ld records)", f->name, index + 1, f->n);
    return NULL;
  }
  uint64_t start = f->offset[index];
  size_t len = (size_t)(f->offset[index + 1] - start);
  if (len > slot->cap) {
    slot->buf = bm_xrealloc(slot->buf, len);
    slot->cap = len;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(f->fd, slot->buf + done, len - done, (off_t)(start + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      snprintf(err, errn, "%s: record %ld (byte %llu): %s", f->name, index + 1, (unsigned long long)start,
               n < 0 ? strerror(errno) : "file shrank since it was indexed");
      return NULL;
    }
    done += (size_t)n;
  }
  size_t off = 0;
  if (msgpack_unpack_next(&slot->msg, slot->buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
    snprintf(err, errn, "%s: record %ld (byte %llu): changed since it was indexed", f->name, index + 1,
             (unsigned long long)start);
    return NULL;
  }
  return &slot->msg.data;
}

const msgpack_object *bm_recfile_read(const bm_recfile *f, long index, bm_recslot *slot) {
  char err[1024];
  const msgpack_object *r = bm_recfile_read_try(f, index, slot, err, sizeof err);
  if (!r) bm_die("%s", err);
  return r;
}

void bm_permutation(long *perm, long n, uint64_t seed) {
  bm_rng rng;
  bm_rng_seed(&rng, seed);
  for (long i = 0; i < n; i++) perm[i] = i;
  for (long i = n - 1; i > 0; i--) {
    long j = (long)(bm_rng_next(&rng) % (uint64_t)(i + 1));
    long t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}
