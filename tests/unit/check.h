/* check.h - the C tests' checks: one "ok - what" / "not ok - what" line each,
 * counted by tests/run.sh. */
#ifndef BM_CHECK_H
#define BM_CHECK_H
#include <stdio.h>

static int check_failures;

#define CHECK(cond, ...)                                                            \
  do {                                                                              \
    int check_ok_ = !!(cond); /* evaluated once: cond may have effects */           \
    if (check_ok_) {                                                                \
      printf("ok - ");                                                              \
    } else {                                                                        \
      printf("not ok - ");                                                          \
      check_failures++;                                                             \
    }                                                                               \
    printf(__VA_ARGS__);                                                            \
    if (!check_ok_) printf("  [%s:%d: %s]", __FILE__, __LINE__, #cond);                \
    printf("\n");                                                                   \
    fflush(stdout);                                                                 \
  } while (0)

#define CHECK_DONE() return check_failures ? 1 : 0
#endif
