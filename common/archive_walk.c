/* archive_walk.c - see archive_walk.h. */
#define _GNU_SOURCE
#include "archive_walk.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

struct bm_walk {
  char *const *inputs;
  int ninputs, cur; /* cur: index of the input being walked, -1 before */
  struct archive *a; /* open archive, or NULL */
  int a_dead;        /* the archive failed: move on */
  char **files;      /* folder input: its files, relative, sorted */
  long nfiles, fi;
  char *path;        /* folder input: the full path of the current file */
  char *name;        /* current member name (owned) */
};

bm_walk *bm_walk_open(char *const *inputs, int n) {
  bm_walk *w = bm_xcalloc(1, sizeof *w);
  w->inputs = inputs;
  w->ninputs = n;
  w->cur = -1;
  return w;
}

static void end_input(bm_walk *w) {
  if (w->a) archive_read_free(w->a);
  w->a = NULL;
  w->a_dead = 0;
  for (long i = 0; i < w->nfiles; i++) free(w->files[i]);
  free(w->files);
  w->files = NULL;
  w->nfiles = w->fi = 0;
}

void bm_walk_close(bm_walk *w) {
  if (!w) return;
  end_input(w);
  free(w->path);
  free(w->name);
  free(w);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Append the regular files under root/rel (rel "" for root itself). */
static int list_dir(bm_walk *w, const char *root, const char *rel, long *cap, char *err,
                    size_t errlen) {
  char *dir;
  if (asprintf(&dir, "%s%s%s", root, *rel ? "/" : "", rel) < 0) bm_die("out of memory");
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "cannot open folder: %s", strerror(errno));
    free(dir);
    return -1;
  }
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *r, *full;
    if (asprintf(&r, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < 0 ||
        asprintf(&full, "%s/%s", dir, e->d_name) < 0)
      bm_die("out of memory");
    struct stat st;
    if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) {
      rc = list_dir(w, root, r, cap, err, errlen);
      free(r);
    } else {
      /* dangling links and other non-regular files are listed too: reading
       * them fails and is reported, rather than silently dropped */
      if (w->nfiles == *cap) w->files = bm_xrealloc(w->files, sizeof(char *) * (size_t)(*cap = *cap ? 2 * *cap : 256));
      w->files[w->nfiles++] = r;
    }
    free(full);
    if (rc) break;
  }
  closedir(d);
  free(dir);
  return rc;
}

static int start_input(bm_walk *w, char *err, size_t errlen) {
  const char *in = w->inputs[w->cur];
  struct stat st;
  if (stat(in, &st)) {
    snprintf(err, errlen, "cannot open: %s", strerror(errno));
    return -1;
  }
  if (S_ISDIR(st.st_mode)) {
    long cap = 0;
    if (list_dir(w, in, "", &cap, err, errlen)) return -1;
    if (w->nfiles) qsort(w->files, (size_t)w->nfiles, sizeof(char *), cmp_str);
    return 0;
  }
  w->a = archive_read_new();
  archive_read_support_filter_all(w->a);
  archive_read_support_format_all(w->a);
  if (archive_read_open_filename(w->a, in, 1 << 20) != ARCHIVE_OK) {
    snprintf(err, errlen, "cannot open archive: %s", archive_error_string(w->a));
    return -1;
  }
  return 0;
}

int bm_walk_next(bm_walk *w, bm_member *m, char *err, size_t errlen) {
  for (;;) {
    if (w->cur >= 0 && (w->a || w->files) && !w->a_dead) {
      m->container = w->inputs[w->cur];
      if (w->files) {
        if (w->fi < w->nfiles) {
          free(w->name);
          w->name = bm_xstrdup(w->files[w->fi++]);
          free(w->path);
          if (asprintf(&w->path, "%s/%s", w->inputs[w->cur], w->name) < 0) bm_die("out of memory");
          struct stat st;
          m->name = w->name;
          m->size = stat(w->path, &st) == 0 ? (int64_t)st.st_size : -1;
          return 1;
        }
      } else {
        struct archive_entry *e;
        int r = archive_read_next_header(w->a, &e);
        if (r == ARCHIVE_OK || r == ARCHIVE_WARN) {
          if (archive_entry_filetype(e) != AE_IFREG) continue;
          free(w->name);
          const char *nm = archive_entry_pathname(e);
          w->name = bm_xstrdup(nm ? nm : "(no name)");
          m->name = w->name;
          m->size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
          return 1;
        }
        if (r != ARCHIVE_EOF) {
          snprintf(err, errlen, "archive broken after member %s: %s", w->name ? w->name : "(none)",
                   archive_error_string(w->a));
          m->name = w->name ? w->name : "";
          end_input(w);
          return -1;
        }
      }
    }
    end_input(w);
    free(w->name);
    w->name = NULL;
    if (++w->cur >= w->ninputs) return 0;
    m->container = w->inputs[w->cur];
    m->name = "";
    if (start_input(w, err, errlen)) {
      end_input(w);
      return -1;
    }
  }
}

int bm_walk_read(bm_walk *w, void **data, size_t *n, size_t max, char *err, size_t errlen) {
  *data = NULL;
  *n = 0;
  if (w->files) {
    FILE *f = fopen(w->path, "rb");
    if (!f) {
      snprintf(err, errlen, "cannot open: %s", strerror(errno));
      return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
      snprintf(err, errlen, S_ISREG(st.st_mode) ? "larger than %zu bytes" : "not a regular file", max);
      fclose(f);
      return -1;
    }
    char *buf = bm_xmalloc((size_t)st.st_size + 1);
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f) || got != (size_t)st.st_size;
    fclose(f);
    if (bad) {
      free(buf);
      snprintf(err, errlen, "read error");
      return -1;
    }
    *data = buf;
    *n = got;
    return 0;
  }
  if (!w->a || w->a_dead) {
    snprintf(err, errlen, "no member to read");
    return -2;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = bm_xmalloc(cap);
  for (;;) {
    if (len == cap) {
      if (cap >= max) {
        free(buf);
        snprintf(err, errlen, "larger than %zu bytes", max);
        return -1;
      }
      buf = bm_xrealloc(buf, cap *= 2);
    }
    la_ssize_t r = archive_read_data(w->a, buf + len, cap - len);
    if (r == 0) break;
    if (r < 0) {
      if (r == ARCHIVE_WARN) continue;
      snprintf(err, errlen, "%s", archive_error_string(w->a) ? archive_error_string(w->a) : "read error");
      free(buf);
      w->a_dead = 1;
      return -2;
    }
    len += (size_t)r;
  }
  *data = buf;
  *n = len;
  return 0;
}
