/* csv.c - see csv.h. */
#include "csv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static char *slurp(const char *path, size_t *n, char *err, int errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, (size_t)errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = bm_xmalloc(cap + 1);
  size_t got;
  while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
    len += got;
    if (len == cap) buf = bm_xrealloc(buf, (cap *= 2) + 1);
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    snprintf(err, (size_t)errlen, "%s: read error", path);
    free(buf);
    return NULL;
  }
  buf[len] = 0;
  *n = len;
  return buf;
}

bm_csv *bm_csv_load(const char *path, char *err, int errlen) {
  return bm_csv_load_delim(path, ',', err, errlen);
}

bm_csv *bm_csv_load_delim(const char *path, char delim, char *err, int errlen) {
  size_t n;
  char *d = slurp(path, &n, err, errlen);
  if (!d) return NULL;
  bm_csv *c = bm_xcalloc(1, sizeof *c);
  c->path = bm_xstrdup(path);
  c->data = d;
  size_t i = 0, w = 0; /* read and write positions: unquoting shrinks in place */
  if (n >= 3 && !memcmp(d, "\xEF\xBB\xBF", 3)) i = 3;
  long line = 1, caprows = 0;
  while (i < n) {
    if (d[i] == '\n' || d[i] == '\r') { /* blank line */
      if (d[i] == '\n') line++;
      i++;
      continue;
    }
    bm_csv_row row = {NULL, 0, line};
    int capf = 0;
    for (;;) { /* one field */
      char *start = d + w;
      if (d[i] == '"') {
        long qline = line;
        i++;
        for (;;) {
          if (i >= n) {
            snprintf(err, (size_t)errlen, "%s: line %ld: unterminated quoted field", path, qline);
            free(row.f);
            bm_csv_free(c);
            return NULL;
          }
          if (d[i] == '"') {
            if (i + 1 < n && d[i + 1] == '"') d[w++] = '"', i += 2;
            else { i++; break; }
          } else {
            if (d[i] == '\n') line++;
            d[w++] = d[i++];
          }
        }
        while (i < n && d[i] != delim && d[i] != '\n' && d[i] != '\r') d[w++] = d[i++];
      } else {
        while (i < n && d[i] != delim && d[i] != '\n' && d[i] != '\r') d[w++] = d[i++];
      }
      char sep = i < n ? d[i] : '\n';
      i++;
      d[w++] = 0; /* w <= i: the separator's slot holds the terminator */
      if (row.n == capf) row.f = bm_xrealloc(row.f, sizeof(char *) * (size_t)(capf = capf ? 2 * capf : 16));
      row.f[row.n++] = start;
      if (sep != delim) {
        if (sep == '\r' && i < n && d[i] == '\n') i++;
        line++;
        break;
      }
      if (i >= n) { /* a trailing comma at the very end: one more empty field */
        if (row.n == capf) row.f = bm_xrealloc(row.f, sizeof(char *) * (size_t)(capf += 1));
        row.f[row.n++] = d + w - 1;
        break;
      }
    }
    if (c->nrows == caprows) c->rows = bm_xrealloc(c->rows, sizeof(bm_csv_row) * (size_t)(caprows = caprows ? 2 * caprows : 1024));
    c->rows[c->nrows++] = row;
  }
  if (c->nrows == 0) {
    snprintf(err, (size_t)errlen, "%s: empty file, no header", path);
    bm_csv_free(c);
    return NULL;
  }
  return c;
}

void bm_csv_free(bm_csv *c) {
  if (!c) return;
  for (long r = 0; r < c->nrows; r++) free(c->rows[r].f);
  free(c->rows);
  free(c->data);
  free(c->path);
  free(c);
}

int bm_csv_col(const bm_csv *c, const char *name) {
  const bm_csv_row *h = &c->rows[0];
  size_t len = strlen(name);
  for (int j = 0; j < h->n; j++) {
    const char *s = h->f[j];
    while (*s == ' ' || *s == '\t') s++;
    size_t k = strlen(s);
    while (k && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
    if (k == len && !strncmp(s, name, len)) return j;
  }
  return -1;
}
