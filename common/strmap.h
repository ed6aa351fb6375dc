/* strmap.h - string -> index hash table (open addressing). Keys are copied. */
#ifndef BM_STRMAP_H
#define BM_STRMAP_H
#include <stddef.h>

typedef struct {
  char **keys;
  long *vals;
  size_t cap, n;
} bm_strmap;

void bm_strmap_init(bm_strmap *m);
void bm_strmap_free(bm_strmap *m);
/* The value of key, or -1. */
long bm_strmap_get(const bm_strmap *m, const char *key);
/* Insert key -> val unless present. Returns the value now stored. */
long bm_strmap_put(bm_strmap *m, const char *key, long val);
#endif
