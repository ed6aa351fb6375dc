/* wds.c - see wds.h. One sample is open at a time: members join it while
 * their key (and archive) stays the same; a member with another key closes
 * it, and the closed sample comes out before the new member is read further. */
#define _GNU_SOURCE
#include "wds.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "problems.h"
#include "util.h"

enum { MAX_IMAGE = 1 << 30, MAX_CAPTION = 1 << 20 };

struct bm_wds {
  bm_walk *walk;
  bm_wds_want want;
  void *ctx;
  bm_strmap seen;   /* keys of closed samples: a key met again is a duplicate */
  int open, wanted; /* a sample is open; it is selected */
  bm_wds_sample cur;
  char *txt_member;
  int done;
};

bm_wds *bm_wds_open(bm_walk *walk, bm_wds_want want, void *ctx) {
  bm_wds *r = bm_xcalloc(1, sizeof *r);
  r->walk = walk;
  r->want = want;
  r->ctx = ctx;
  bm_strmap_init(&r->seen);
  return r;
}

void bm_wds_sample_free(bm_wds_sample *s) {
  free(s->key), free(s->container), free(s->member), free(s->img), free(s->caption);
  memset(s, 0, sizeof *s);
}

void bm_wds_close(bm_wds *r) {
  if (!r) return;
  bm_wds_sample_free(&r->cur);
  free(r->txt_member);
  bm_strmap_free(&r->seen);
  free(r);
}

int bm_caption_clean(char *s) {
  size_t n = strlen(s), a = 0;
  while (n && (s[n - 1] == ' ' || (s[n - 1] >= '\t' && s[n - 1] <= '\r'))) n--;
  while (a < n && (s[a] == ' ' || (s[a] >= '\t' && s[a] <= '\r'))) a++;
  memmove(s, s + a, n - a);
  s[n - a] = 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len) return -1;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; k++) {
      if ((p[k] & 0xC0) != 0x80) return -1;
      cp = cp << 6 | (p[k] & 0x3F);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    p += len;
  }
  return 0;
}

/* "dir/000123.seg.png" -> key "dir/000123", extension "seg.png"; no dot in
 * the file name: no key (NULL). */
static char *split_name(const char *name, const char **ext) {
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  const char *dot = strchr(base, '.');
  if (!dot || dot == base) return NULL;
  *ext = dot + 1;
  return strndup(name, (size_t)(dot - name));
}

static int is_image_ext(const char *e) {
  return !strcasecmp(e, "jpg") || !strcasecmp(e, "jpeg") || !strcasecmp(e, "png") || !strcasecmp(e, "webp");
}

static void set_problem(bm_wds_sample *s, int kind, const char *member, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void set_problem(bm_wds_sample *s, int kind, const char *member, const char *fmt, ...) {
  if (s->kind >= 0) return; /* the first problem of a sample stands */
  s->kind = kind;
  if (member) free(s->member), s->member = bm_xstrdup(member);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
}

/* Close the open sample into *out: 1 when it has something to say. */
static int close_sample(bm_wds *r, bm_wds_sample *out) {
  if (!r->open) return 0;
  r->open = 0;
  bm_wds_sample *c = &r->cur;
  bm_strmap_put(&r->seen, c->key, 1);
  if (!r->wanted) {
    bm_wds_sample_free(c);
    free(r->txt_member), r->txt_member = NULL;
    return 0;
  }
  if (c->kind < 0 && !c->img)
    set_problem(c, BM_P_NO_IMAGE, r->txt_member, "caption without image (no %s.jpg, .jpeg, .png or .webp)", c->key);
  else if (c->kind < 0 && !c->caption)
    set_problem(c, BM_P_NO_ROW, NULL, "image without caption (no %s.txt)", c->key);
  if (c->kind >= 0) free(c->img), c->img = NULL, c->nimg = 0, free(c->caption), c->caption = NULL;
  *out = *c;
  memset(c, 0, sizeof *c);
  free(r->txt_member), r->txt_member = NULL;
  return 1;
}

static void member_problem(bm_wds_sample *s, int kind, const bm_member *m, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void member_problem(bm_wds_sample *s, int kind, const bm_member *m, const char *fmt, ...) {
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->key = bm_xstrdup(m->name);
  s->member = bm_xstrdup(m->name);
  s->container = bm_xstrdup(m->container);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
}

int bm_wds_next(bm_wds *r, bm_wds_sample *s) {
  char err[1024];
  bm_member m;
  for (;;) {
    if (r->done) return 0;
    int rc = bm_walk_next(r->walk, &m, err, sizeof err);
    if (rc == 0) {
      r->done = 1;
      return close_sample(r, s);
    }
    if (rc < 0) {
      member_problem(s, BM_P_ARCHIVE, &m, "%s", err);
      return 1;
    }
    const char *base = strrchr(m.name, '/');
    base = base ? base + 1 : m.name;
    if (!strncmp(base, "._", 2) || strstr(m.name, "__MACOSX/") || !strcmp(base, ".DS_Store")) {
      if (r->want(r->ctx, m.name)) {
        member_problem(s, BM_P_NOT_IMAGE, &m, "skipped by name");
        return 1;
      }
      continue;
    }
    const char *ext = NULL;
    char *key = split_name(m.name, &ext);
    int img = key && is_image_ext(ext), txt = key && !strcasecmp(ext, "txt");
    if (!img && !txt) { /* another loader's member (json, cls, ...) */
      free(key);
      continue;
    }
    int closed = 0;
    bm_wds_sample out;
    if (r->open && (strcmp(r->cur.key, key) || strcmp(r->cur.container, m.container)))
      closed = close_sample(r, &out);
    if (!r->open) { /* a new sample */
      bm_wds_sample *c = &r->cur;
      memset(c, 0, sizeof *c);
      c->kind = -1;
      c->key = key;
      c->container = bm_xstrdup(m.container);
      r->open = 1;
      r->wanted = r->want(r->ctx, key);
      if (r->wanted && bm_strmap_get(&r->seen, key) >= 0)
        set_problem(c, BM_P_DUPLICATE, m.name, "key %s met again (samples must be whole and adjacent)", key);
    } else {
      free(key);
    }
    bm_wds_sample *c = &r->cur;
    if (r->wanted && c->kind < 0) {
      if ((img && c->img) || (txt && c->caption)) {
        set_problem(c, BM_P_DUPLICATE, m.name, "a second %s for key %s", img ? "image" : "caption", c->key);
      } else {
        void *data;
        size_t n;
        int rr = bm_walk_read(r->walk, &data, &n, img ? MAX_IMAGE : MAX_CAPTION, err, sizeof err);
        if (rr) {
          set_problem(c, rr == -2 ? BM_P_ARCHIVE : BM_P_CORRUPT, m.name, "%s%s",
                      rr == -2 ? "truncated or corrupt archive: " : "", err);
        } else if (img) {
          c->img = data, c->nimg = n;
          free(c->member), c->member = bm_xstrdup(m.name);
        } else {
          char *t = bm_xmalloc(n + 1);
          memcpy(t, data, n);
          t[n] = 0;
          free(data);
          free(r->txt_member), r->txt_member = bm_xstrdup(m.name);
          if (strlen(t) != n) set_problem(c, BM_P_BAD_ROW, m.name, "caption holds a NUL byte");
          else if (bm_caption_clean(t)) set_problem(c, BM_P_BAD_ROW, m.name, "caption is not UTF-8");
          else if (!*t) set_problem(c, BM_P_BAD_ROW, m.name, "empty caption");
          if (c->kind >= 0) free(t);
          else c->caption = t;
        }
      }
    }
    if (closed) {
      *s = out;
      return 1;
    }
  }
}
