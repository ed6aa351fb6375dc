/* strmap.c - see strmap.h. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void bm_strmap_init(bm_strmap *m) { memset(m, 0, sizeof *m); }

void bm_strmap_free(bm_strmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

static size_t slot(const bm_strmap *m, const char *key) {
  size_t i = bm_hash64(key, strlen(key), 0) & (m->cap - 1);
  while (m->keys[i] && strcmp(m->keys[i], key)) i = (i + 1) & (m->cap - 1);
  return i;
}

long bm_strmap_get(const bm_strmap *m, const char *key) {
  if (!m->cap) return -1;
  size_t i = slot(m, key);
  return m->keys[i] ? m->vals[i] : -1;
}

static void grow(bm_strmap *m) {
  bm_strmap bigger = {bm_xcalloc(m->cap ? m->cap * 2 : 64, sizeof(char *)),
                      bm_xcalloc(m->cap ? m->cap * 2 : 64, sizeof(long)),
                      m->cap ? m->cap * 2 : 64, m->n};
  for (size_t i = 0; i < m->cap; i++)
    if (m->keys[i]) {
      size_t j = slot(&bigger, m->keys[i]);
      bigger.keys[j] = m->keys[i];
      bigger.vals[j] = m->vals[i];
    }
  free(m->keys);
  free(m->vals);
  *m = bigger;
}

long bm_strmap_put(bm_strmap *m, const char *key, long val) {
  if ((m->n + 1) * 2 > m->cap) grow(m);
  size_t i = slot(m, key);
  if (m->keys[i]) return m->vals[i];
  m->keys[i] = bm_xstrdup(key);
  m->vals[i] = val;
  m->n++;
  return val;
}
