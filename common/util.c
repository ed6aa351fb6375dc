#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *progname = "bm";

void bm_set_progname(const char *argv0) {
  const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
  progname = slash ? slash + 1 : (argv0 ? argv0 : "bm");
}

const char *bm_progname(void) { return progname; }

static void vmessage(const char *fmt, va_list ap) {
  char line[4096];
  int n = snprintf(line, sizeof line, "%s: ", progname);
  if (n < 0) n = 0;
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  size_t len = strlen(line);
  if (len + 1 < sizeof line) { line[len++] = '\n'; line[len] = 0; }
  /* one write so lines from several processes in a pipeline do not interleave */
  ssize_t w = write(2, line, len);
  (void)w;
}

void bm_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(fmt, ap);
  va_end(ap);
}

void bm_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(fmt, ap);
  va_end(ap);
  exit(1);
}

void bm_usage_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(fmt, ap);
  va_end(ap);
  char hint[256];
  int n = snprintf(hint, sizeof hint, "Try '%s --help' for more information.\n", progname);
  ssize_t w = write(2, hint, (size_t)n);
  (void)w;
  exit(2);
}

void *bm_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) bm_die("out of memory allocating %zu bytes", n);
  return p;
}

void *bm_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) bm_die("out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

void *bm_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) bm_die("out of memory allocating %zu bytes", n);
  return q;
}

char *bm_xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = bm_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

size_t bm_mul_size(size_t count, size_t size) {
  if (size && count > SIZE_MAX / size) bm_die("size overflow (%zu x %zu)", count, size);
  return count * size;
}

int bm_parse_long(const char *s, long min, long max, long *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

int bm_parse_double(const char *s, double *out) {
  if (!s || !*s) return -1;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

int bm_parse_shard(const char *s, int *index, int *count) {
  const char *slash = s ? strchr(s, '/') : NULL;
  if (!slash || slash == s) return -1;
  char k[32];
  size_t kl = (size_t)(slash - s);
  if (kl >= sizeof k) return -1;
  memcpy(k, s, kl);
  k[kl] = 0;
  long kk, nn;
  if (bm_parse_long(k, 1, INT_MAX, &kk) || bm_parse_long(slash + 1, 1, INT_MAX, &nn) || kk > nn)
    return -1;
  *index = (int)kk - 1;
  *count = (int)nn;
  return 0;
}

int bm_shard_from_env(int *index, int *count) {
  *index = 0;
  *count = 1;
  const char *id = getenv("SLURM_ARRAY_TASK_ID");
  const char *n = getenv("SLURM_ARRAY_TASK_COUNT");
  const char *mn = getenv("SLURM_ARRAY_TASK_MIN");
  long vid, vn, vmin = 0;
  if (!id || !n || bm_parse_long(id, 0, INT_MAX, &vid) || bm_parse_long(n, 1, INT_MAX, &vn))
    return 0;
  if (mn && bm_parse_long(mn, 0, INT_MAX, &vmin)) vmin = 0;
  if (vid < vmin || vid - vmin >= vn)
    bm_die("SLURM_ARRAY_TASK_ID=%ld is outside the array (min %ld, count %ld)", vid, vmin, vn);
  *index = (int)(vid - vmin);
  *count = (int)vn;
  return 1;
}

double bm_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bm_progress_init(bm_progress *p, int quiet) {
  memset(p, 0, sizeof *p);
  p->start = p->last = bm_now();
  p->tty = isatty(2);
  p->quiet = quiet;
}

void bm_progress_update(bm_progress *p, const char *fmt, ...) {
  if (p->quiet) return;
  double now = bm_now();
  double every = p->tty ? 0.25 : 30.0;
  if (now - p->last < every) return;
  p->last = now;
  char line[512];
  int n = snprintf(line, sizeof line, "%s%s: ", p->tty ? "\r\033[K" : "", progname);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  size_t len = strlen(line);
  if (!p->tty) line[len++] = '\n';
  ssize_t w = write(2, line, len);
  (void)w;
  p->dirty = p->tty;
}

void bm_progress_done(bm_progress *p) {
  if (p->dirty) {
    ssize_t w = write(2, "\r\033[K", 4);
    (void)w;
  }
  p->dirty = 0;
}

uint64_t bm_hash64(const void *data, size_t n, uint64_t seed) {
  const unsigned char *b = data;
  uint64_t h = 1469598103934665603ULL ^ (seed * 0x9E3779B97F4A7C15ULL);
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

void bm_rng_seed(bm_rng *r, uint64_t seed) { r->s = seed; }

uint64_t bm_rng_next(bm_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double bm_rng_uniform(bm_rng *r) { return (double)(bm_rng_next(r) >> 11) * 0x1.0p-53; }

int bm_write_file_atomic(const char *path, const void *data, size_t n) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  const char *p = data;
  size_t left = n;
  while (left) {
    ssize_t w = write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      unlink(tmp);
      errno = e;
      return -1;
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) || close(fd)) {
    int e = errno;
    unlink(tmp);
    errno = e;
    return -1;
  }
  if (rename(tmp, path)) {
    int e = errno;
    unlink(tmp);
    errno = e;
    return -1;
  }
  return 0;
}
