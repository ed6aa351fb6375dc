/* problems.c - see problems.h. */
#include "problems.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *names[BM_P_NKINDS] = {
    "corrupt image", "not an image", "image without metadata row", "metadata row without image",
    "unknown label", "empty age", "bad metadata row", "duplicate image", "image in no split list",
    "archive error"};

const char *bm_problem_name(int kind) { return kind >= 0 && kind < BM_P_NKINDS ? names[kind] : "?"; }

void bm_problem(bm_problems *p, int kind, const char *where, const char *member, const char *fmt,
                ...) {
  p->count[kind]++;
  if (p->max_lines && p->shown[kind] >= p->max_lines && !p->strict) {
    if (p->shown[kind] == p->max_lines)
      bm_warn("%s: further '%s' problems are counted, not shown (--max-warnings)", where,
              names[kind]);
    p->shown[kind]++;
    return;
  }
  p->shown[kind]++;
  char reason[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  if (member && *member) bm_warn("%s: %s: %s: %s", where, member, names[kind], reason);
  else bm_warn("%s: %s: %s", where, names[kind], reason);
  if (p->strict) bm_die("stopping at the first problem (--strict)");
}

long bm_problem_total(const bm_problems *p) {
  long t = 0;
  for (int k = 0; k < BM_P_NKINDS; k++) t += p->count[k];
  return t;
}

void bm_problem_summary(const bm_problems *p, long records) {
  char line[2048];
  int n = snprintf(line, sizeof line, "%ld records written; ", records);
  if (!bm_problem_total(p)) {
    snprintf(line + n, sizeof line - (size_t)n, "no problems");
  } else {
    n += snprintf(line + n, sizeof line - (size_t)n, "problems:");
    const char *sep = " ";
    for (int k = 0; k < BM_P_NKINDS && n < (int)sizeof line; k++)
      if (p->count[k]) {
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%ld %s", sep, p->count[k], names[k]);
        sep = ", ";
      }
  }
  bm_warn("%s", line);
}
